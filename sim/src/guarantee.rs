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
    /// Reads return only written values, siblings pairwise concurrent.
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
    /// No operation is refused (unavailable, or no answer in a run without
    /// faults) while the replicas it needs were really reachable, judged
    /// against the nemesis's ground truth.
    Available,
}

impl Guarantee {
    pub const EVERY: [Guarantee; 7] = [
        Guarantee::NoStaleReads,
        Guarantee::NoLostUpdates,
        Guarantee::WellFormedReads,
        Guarantee::Linearizable,
        Guarantee::BoundedKeys,
        Guarantee::Converges,
        Guarantee::Available,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guarantee::NoStaleReads => "stale reads",
            Guarantee::NoLostUpdates => "lost updates",
            Guarantee::WellFormedReads => "malformed reads",
            Guarantee::Linearizable => "not linearizable",
            Guarantee::BoundedKeys => "keys over their limits",
            Guarantee::Converges => "replicas did not converge",
            Guarantee::Available => "refused while reachable",
        }
    }

    /// Whether a configuration promises this. W+R>N promises fresh reads
    /// (W+R>N+1 when a disk may be lost); durability is promised unless
    /// writes overwrite or a write acknowledged by one replica may lose its
    /// disk; every configuration promises well-formed reads, bounded keys
    /// and convergence; no configuration of a leaderless quorum store promises
    /// linearizability.
    pub fn promised_by(self, scenario: &Scenario) -> bool {
        match self {
            Guarantee::NoStaleReads => scenario.promises_fresh_reads(),
            Guarantee::NoLostUpdates => scenario.promises_durability(),
            Guarantee::WellFormedReads
            | Guarantee::BoundedKeys
            | Guarantee::Converges
            | Guarantee::Available => true,
            Guarantee::Linearizable => false,
        }
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
    if summary.lost_updates > 0 || !summary.durability.is_ok() {
        broken.push(Guarantee::NoLostUpdates);
    }
    if summary.staleness.phantom_reads > 0 || summary.staleness.sibling_violations > 0 {
        broken.push(Guarantee::WellFormedReads);
    }
    if summary.linearizable == LinVerdict::NotLinearizable {
        broken.push(Guarantee::Linearizable);
    }
    broken
}
