//! Quorum maths: how many replicas a read (R) or a write (W) waits for, out
//! of N, and whether the two overlap (W + R > N).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A per-request consistency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Consistency {
    One,
    Quorum,
    All,
    /// An explicit number of replicas.
    Count(usize),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuorumError {
    #[error("unknown consistency level {0:?}: use ONE, QUORUM, ALL or a number of replicas")]
    UnknownLevel(String),
    #[error("{what} = {value} is out of range: it must be between 1 and N = {n}")]
    OutOfRange {
        what: &'static str,
        value: usize,
        n: usize,
    },
    #[error("a cluster needs at least one replica")]
    NoReplicas,
}

impl Consistency {
    /// Number of replicas this level needs out of `n`.
    pub fn replicas(self, n: usize) -> usize {
        match self {
            Consistency::One => 1,
            Consistency::Quorum => n / 2 + 1,
            Consistency::All => n,
            Consistency::Count(k) => k,
        }
    }

    pub fn validate(self, n: usize, what: &'static str) -> Result<usize, QuorumError> {
        if n == 0 {
            return Err(QuorumError::NoReplicas);
        }
        let value = self.replicas(n);
        if value == 0 || value > n {
            return Err(QuorumError::OutOfRange { what, value, n });
        }
        Ok(value)
    }

    /// The level's name, for a named level ("ONE", "QUORUM", "ALL"): what
    /// it displays as, with nothing to format (a metrics label per
    /// request takes it as it is).
    pub fn name(&self) -> Option<&'static str> {
        match self {
            Consistency::One => Some("ONE"),
            Consistency::Quorum => Some("QUORUM"),
            Consistency::All => Some("ALL"),
            Consistency::Count(_) => None,
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.name()) {
            (Consistency::Count(k), _) => write!(f, "{k}"),
            // Every other level has a name (the test below holds them).
            (_, name) => f.write_str(name.unwrap_or_default()),
        }
    }
}

impl FromStr for Consistency {
    type Err = QuorumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ONE" => Ok(Consistency::One),
            "QUORUM" => Ok(Consistency::Quorum),
            "ALL" => Ok(Consistency::All),
            other => other
                .parse::<usize>()
                .map(Consistency::Count)
                .map_err(|_| QuorumError::UnknownLevel(s.to_string())),
        }
    }
}

/// A validated (N, R, W) triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumSpec {
    pub n: usize,
    pub r: usize,
    pub w: usize,
}

impl QuorumSpec {
    pub fn new(n: usize, r: usize, w: usize) -> Result<Self, QuorumError> {
        let r = Consistency::Count(r).validate(n, "R")?;
        let w = Consistency::Count(w).validate(n, "W")?;
        Ok(QuorumSpec { n, r, w })
    }

    /// The same level for reads and writes.
    pub fn from_level(n: usize, level: Consistency) -> Result<Self, QuorumError> {
        Ok(QuorumSpec {
            n,
            r: level.validate(n, "R")?,
            w: level.validate(n, "W")?,
        })
    }

    /// Whether every read quorum meets every write quorum.
    pub fn overlapping(&self) -> bool {
        self.r + self.w > self.n
    }
}

impl fmt::Display for QuorumSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rel = if self.overlapping() { ">" } else { "<=" };
        write!(f, "N={} R={} W={} (W+R {rel} N)", self.n, self.r, self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_for_five_replicas() {
        assert_eq!(Consistency::One.replicas(5), 1);
        assert_eq!(Consistency::Quorum.replicas(5), 3);
        assert_eq!(Consistency::Quorum.replicas(4), 3);
        assert_eq!(Consistency::All.replicas(5), 5);
        assert!(QuorumSpec::from_level(5, Consistency::Quorum)
            .unwrap()
            .overlapping());
        assert!(!QuorumSpec::from_level(5, Consistency::One)
            .unwrap()
            .overlapping());
        assert!(QuorumSpec::new(5, 1, 5).unwrap().overlapping());
        assert!(!QuorumSpec::new(5, 2, 2).unwrap().overlapping());
    }

    /// Every level displays as what parses back to it; the named ones as
    /// their name, which the metrics label takes.
    #[test]
    fn levels_display_as_their_names_and_parse_back() {
        for (level, shown) in [
            (Consistency::One, "ONE"),
            (Consistency::Quorum, "QUORUM"),
            (Consistency::All, "ALL"),
            (Consistency::Count(4), "4"),
        ] {
            assert_eq!(level.to_string(), shown);
            assert_eq!(
                level.name(),
                (!matches!(level, Consistency::Count(_))).then_some(shown)
            );
            assert_eq!(shown.parse::<Consistency>(), Ok(level));
        }
    }

    #[test]
    fn parse_and_validate() {
        assert_eq!("quorum".parse::<Consistency>(), Ok(Consistency::Quorum));
        assert_eq!("3".parse::<Consistency>(), Ok(Consistency::Count(3)));
        assert!(matches!(
            "MOST".parse::<Consistency>(),
            Err(QuorumError::UnknownLevel(_))
        ));
        assert_eq!(
            QuorumSpec::new(5, 0, 3),
            Err(QuorumError::OutOfRange {
                what: "R",
                value: 0,
                n: 5
            })
        );
        assert_eq!(
            QuorumSpec::new(5, 3, 6),
            Err(QuorumError::OutOfRange {
                what: "W",
                value: 6,
                n: 5
            })
        );
    }

    #[test]
    fn a_cluster_of_no_replicas_is_refused_at_every_level() {
        for level in [
            Consistency::One,
            Consistency::Quorum,
            Consistency::All,
            Consistency::Count(0),
            Consistency::Count(1),
        ] {
            assert_eq!(level.validate(0, "R"), Err(QuorumError::NoReplicas));
            assert_eq!(
                QuorumSpec::from_level(0, level),
                Err(QuorumError::NoReplicas)
            );
        }
        assert_eq!(QuorumSpec::new(0, 1, 1), Err(QuorumError::NoReplicas));
    }

    #[test]
    fn quorums_overlap_only_when_reads_and_writes_add_up_past_n() {
        assert!(!QuorumSpec::new(4, 2, 2).unwrap().overlapping());
        assert!(QuorumSpec::new(4, 3, 2).unwrap().overlapping());
        assert!(!QuorumSpec::new(2, 1, 1).unwrap().overlapping());
        assert!(QuorumSpec::from_level(2, Consistency::Quorum)
            .unwrap()
            .overlapping());
    }

    #[test]
    fn a_spec_displays_whether_its_quorums_overlap() {
        assert_eq!(
            QuorumSpec::from_level(5, Consistency::Quorum)
                .unwrap()
                .to_string(),
            "N=5 R=3 W=3 (W+R > N)"
        );
        assert_eq!(
            QuorumSpec::new(4, 2, 2).unwrap().to_string(),
            "N=4 R=2 W=2 (W+R <= N)"
        );
    }

    #[test]
    fn levels_parse_whatever_their_case_and_surrounding_spaces() {
        for text in ["quorum", " QUORUM", "Quorum\n", "\tquorum "] {
            assert_eq!(text.parse::<Consistency>(), Ok(Consistency::Quorum));
        }
        assert_eq!(" 2 ".parse::<Consistency>(), Ok(Consistency::Count(2)));
        assert_eq!(
            " most ".parse::<Consistency>(),
            Err(QuorumError::UnknownLevel(" most ".into()))
        );
    }
}
