//! One line for an error and its causes, as the binaries print it on the
//! way out.
//!
//! Errors differ on whether their message repeats their cause: the
//! project's own (`could not open sqlite:x.db: …`) and sqlx's (`error
//! communicating with database: …`) include it and also return it from
//! `source()`, anyhow's context does not. Printing every message of the
//! chain (`{:#}`) then says the same cause two or three times; printing
//! only the outermost loses what context added. This walks the chain and
//! adds a cause only when the line does not already end with it.
use std::error::Error;

/// `error` and each cause not already said, joined by `": "`.
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = next.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use std::error::Error;
    use std::fmt;

    /// An error that says its cause and returns it too, as thiserror's
    /// `#[error("…: {source}")]` does.
    #[derive(Debug)]
    struct Saying {
        what: &'static str,
        source: Box<dyn Error + 'static>,
    }

    impl fmt::Display for Saying {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{}: {}", self.what, self.source)
        }
    }

    impl Error for Saying {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.source.as_ref())
        }
    }

    /// An error that only returns its cause, as anyhow's context does.
    #[derive(Debug)]
    struct Wrapping {
        what: &'static str,
        source: Box<dyn Error + 'static>,
    }

    impl fmt::Display for Wrapping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.what)
        }
    }

    impl Error for Wrapping {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.source.as_ref())
        }
    }

    fn refused() -> Box<dyn Error + 'static> {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn a_cause_the_message_already_says_is_said_once() {
        let io = refused().to_string();
        let error = Saying {
            what: "could not open postgres://db",
            source: Box::new(Saying {
                what: "error communicating with database",
                source: refused(),
            }),
        };
        let line = one_line(&error);
        assert_eq!(
            line,
            format!("could not open postgres://db: error communicating with database: {io}")
        );
        assert_eq!(line.matches(&io).count(), 1, "{line}");
    }

    #[test]
    fn a_context_that_does_not_say_its_cause_gets_it_added() {
        let io = refused().to_string();
        let error = Wrapping {
            what: "starting node 1",
            source: Box::new(Saying {
                what: "could not open sqlite:x.db",
                source: refused(),
            }),
        };
        assert_eq!(
            one_line(&error),
            format!("starting node 1: could not open sqlite:x.db: {io}")
        );
        let bare = Wrapping {
            what: "reading the seed file",
            source: refused(),
        };
        assert_eq!(one_line(&bare), format!("reading the seed file: {io}"));
    }

    #[test]
    fn an_error_without_causes_is_its_message() {
        let io = refused();
        assert_eq!(one_line(io.as_ref()), io.to_string());
    }
}
