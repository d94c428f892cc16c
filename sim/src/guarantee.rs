//! The guarantees a history can keep or break, and which of them a
//! configuration promises.
use crate::check::{CheckSummary, LinVerdict};
use crate::scenario::Scenario;
use serde::Serialize;
use std::fmt;

/// A property a history can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Every read sees every write acknowledged before it began.
    NoStaleReads,
    /// Every acknowledged write survives to the final read.
    NoLostUpdates,
    /// Answers report only what was written, as it was written: reads
    /// return only written values, siblings pairwise concurrent, inside
    /// the context they hand out; a write's acknowledgement reports the
    /// value and context its client sent (an overwrite's, itself alone).
    /// Its key keeps the name it had when it judged reads only.
    WellFormedReads,
    /// The history is linearizable (multi-value register model).
    Linearizable,
    /// No replica holds a key past N times the configured sibling and byte
    /// limits, and no node commits a version it minted into a set past the
    /// sibling limit that it makes larger (writes are refused past the
    /// limits themselves unless they keep the set from growing).
    BoundedKeys,
    /// Once faults heal and clients stop, every replica comes to hold the
    /// same versions of every key, without reads, within a bounded time.
    Converges,
    /// A read at ALL in a healed cluster leaves every replica holding the
    /// same versions of the key it read (read repair sends what the read
    /// merged to every replica that lacked part of it).
    #[serde(rename = "read-repair")]
    ReadRepairs,
    /// No operation is refused (unavailable, or no answer in a run without
    /// faults) while the replicas it needs were really reachable, judged
    /// against the nemesis's ground truth; and no write is refused as
    /// malformed for sending, unchanged, a context the cluster handed out.
    Available,
}

impl Guarantee {
    pub const EVERY: [Guarantee; 8] = [
        Guarantee::NoStaleReads,
        Guarantee::NoLostUpdates,
        Guarantee::WellFormedReads,
        Guarantee::Linearizable,
        Guarantee::BoundedKeys,
        Guarantee::Converges,
        Guarantee::ReadRepairs,
        Guarantee::Available,
    ];

    /// The name seed files and JSON reports use ("no-stale-reads").
    pub fn key(self) -> &'static str {
        match self {
            Guarantee::NoStaleReads => "no-stale-reads",
            Guarantee::NoLostUpdates => "no-lost-updates",
            Guarantee::WellFormedReads => "well-formed-reads",
            Guarantee::Linearizable => "linearizable",
            Guarantee::BoundedKeys => "bounded-keys",
            Guarantee::Converges => "converges",
            Guarantee::ReadRepairs => "read-repair",
            Guarantee::Available => "available",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Guarantee::NoStaleReads => "stale reads",
            Guarantee::NoLostUpdates => "lost updates",
            Guarantee::WellFormedReads => "malformed answers",
            Guarantee::Linearizable => "not linearizable",
            Guarantee::BoundedKeys => "keys over their limits",
            Guarantee::Converges => "replicas did not converge",
            Guarantee::ReadRepairs => "read repair left replicas apart",
            Guarantee::Available => "refused while reachable",
        }
    }

    /// Whether a configuration promises this. W+R>N promises fresh reads
    /// (W+R>N+1 when a disk may be lost); durability is promised unless
    /// writes overwrite or a write acknowledged by one replica may lose its
    /// disk; convergence is promised when anti-entropy runs, or hints
    /// where nothing can lose one (`Scenario::hints_suffice`), and agreement
    /// after a read at ALL when read repair does; every
    /// configuration promises well-formed reads, bounded keys and
    /// availability; no configuration of a leaderless quorum store promises
    /// linearizability.
    pub fn promised_by(self, scenario: &Scenario) -> bool {
        match self {
            Guarantee::NoStaleReads => scenario.promises_fresh_reads(),
            Guarantee::NoLostUpdates => scenario.promises_durability(),
            Guarantee::Converges => scenario.promises_convergence(),
            Guarantee::ReadRepairs => scenario.promises_read_repair(),
            Guarantee::WellFormedReads | Guarantee::BoundedKeys | Guarantee::Available => true,
            Guarantee::Linearizable => false,
        }
    }
}

impl std::str::FromStr for Guarantee {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Guarantee::EVERY
            .into_iter()
            .find(|g| g.key() == s.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Guarantee::EVERY.iter().map(|g| g.key()).collect();
                format!("unknown guarantee {s:?}: use one of {}", known.join(", "))
            })
    }
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which guarantees one history broke.
pub fn broken(summary: &CheckSummary) -> Vec<Guarantee> {
    let mut broken = Vec::new();
    if summary.stale_reads > 0 {
        broken.push(Guarantee::NoStaleReads);
    }
    if summary.lost_updates > 0 || !summary.durability.keeps_acknowledged_writes() {
        broken.push(Guarantee::NoLostUpdates);
    }
    // A write acknowledged as another write than the one sent is a
    // malformed answer at every level, durable or not.
    if !summary.staleness.reads_are_well_formed() || summary.misreported_writes > 0 {
        broken.push(Guarantee::WellFormedReads);
    }
    if summary.linearizable == LinVerdict::NotLinearizable {
        broken.push(Guarantee::Linearizable);
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_serde_names_and_parse_back() {
        for g in Guarantee::EVERY {
            assert_eq!(serde_json::to_value(g).unwrap(), g.key());
            assert_eq!(g.key().parse::<Guarantee>(), Ok(g));
        }
        assert!("fast"
            .parse::<Guarantee>()
            .unwrap_err()
            .contains("no-stale-reads"));
    }
}
