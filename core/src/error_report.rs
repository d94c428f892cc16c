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

    /// An error that returns its cause and, if `says_cause`, also says
    /// it in its message (as thiserror's `#[error("…: {source}")]` does;
    /// anyhow's context does not).
    #[derive(Debug)]
    struct Chained {
        what: &'static str,
        says_cause: bool,
        source: Box<dyn Error + 'static>,
    }

    impl fmt::Display for Chained {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.says_cause {
                write!(f, "{}: {}", self.what, self.source)
            } else {
                f.write_str(self.what)
            }
        }
    }

    impl Error for Chained {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.source.as_ref())
        }
    }

    fn saying(what: &'static str, source: Box<dyn Error + 'static>) -> Chained {
        Chained {
            what,
            says_cause: true,
            source,
        }
    }

    fn wrapping(what: &'static str, source: Box<dyn Error + 'static>) -> Chained {
        Chained {
            what,
            says_cause: false,
            source,
        }
    }

    fn refused() -> Box<dyn Error + 'static> {
        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn a_cause_the_message_already_says_is_said_once() {
        let io = refused().to_string();
        let error = saying(
            "could not open postgres://db",
            Box::new(saying("error communicating with database", refused())),
        );
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
        let error = wrapping(
            "starting node 1",
            Box::new(saying("could not open sqlite:x.db", refused())),
        );
        assert_eq!(
            one_line(&error),
            format!("starting node 1: could not open sqlite:x.db: {io}")
        );
        let bare = wrapping("reading the seed file", refused());
        assert_eq!(one_line(&bare), format!("reading the seed file: {io}"));
    }

    #[test]
    fn an_error_without_causes_is_its_message() {
        let io = refused();
        assert_eq!(one_line(io.as_ref()), io.to_string());
    }
}
