//! The faults the nemesis injects and the log it keeps of them: what a
//! fault script (a shrunk schedule) is written in, so it builds without
//! the simulator.
use serde::{Deserialize, Serialize};
use std::fmt;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Sides of a split (node ids); links between sides are cut both ways.
    Partition(Vec<Vec<u32>>),
    /// Messages from `from` to each of `to` are dropped, not the reverse.
    OneWay {
        from: u32,
        to: Vec<u32>,
    },
    /// A single link clogged both ways.
    Clog(u32, u32),
    Crash(u32),
    /// A crash that loses the node's disk: it restarts with an empty store.
    DiskLoss(u32),
    Pause(u32),
    /// Every message takes `min_ms..max_ms`.
    Delay {
        min_ms: u64,
        max_ms: u64,
    },
}

impl Fault {
    /// Every node the fault names.
    pub fn nodes(&self) -> Vec<u32> {
        match self {
            Fault::Partition(sides) => sides.iter().flatten().copied().collect(),
            Fault::OneWay { from, to } => {
                std::iter::once(*from).chain(to.iter().copied()).collect()
            }
            Fault::Clog(a, b) => vec![*a, *b],
            Fault::Crash(n) | Fault::DiskLoss(n) | Fault::Pause(n) => vec![*n],
            Fault::Delay { .. } => Vec::new(),
        }
    }

    /// What makes the fault ill-formed, whatever the cluster: a partition
    /// needs two or more sides, none empty and no node on two of them; a
    /// one-way cut needs targets other than its source; a clog, two
    /// different nodes. (The nemesis draws only well-formed faults; a
    /// script written by hand may not be.)
    pub fn shape_error(&self) -> Option<String> {
        match self {
            Fault::Partition(sides) => {
                if sides.len() < 2 || sides.iter().any(Vec::is_empty) {
                    return Some("a partition needs two or more sides, none of them empty".into());
                }
                let mut seen = std::collections::BTreeSet::new();
                let twice = sides.iter().flatten().find(|node| !seen.insert(**node));
                twice.map(|node| format!("n{node} is on two sides of the partition"))
            }
            Fault::OneWay { from, to } => {
                if to.is_empty() {
                    Some("a one-way cut needs at least one node it cuts off".into())
                } else if to.contains(from) {
                    Some(format!(
                        "a one-way cut from n{from} cannot cut n{from} off from itself"
                    ))
                } else {
                    None
                }
            }
            Fault::Clog(a, b) if a == b => {
                Some(format!("a clog needs two different nodes, not n{a} twice"))
            }
            _ => None,
        }
    }

    /// Whether the fault acts on links or latency (healing one must
    /// leave the others in place).
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Fault::Partition(_) | Fault::OneWay { .. } | Fault::Clog(..) | Fault::Delay { .. }
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition(_) => "partition",
            Fault::OneWay { .. } => "one-way",
            Fault::Clog(..) => "clog",
            Fault::Crash(_) => "crash",
            Fault::DiskLoss(_) => "disk-loss",
            Fault::Pause(_) => "pause",
            Fault::Delay { .. } => "delay",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = |v: &[u32]| {
            v.iter()
                .map(|n| format!("n{n}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Fault::Partition(sides) => {
                let sides: Vec<String> = sides.iter().map(|s| format!("[{}]", ids(s))).collect();
                write!(f, "partition {}", sides.join(" | "))
            }
            Fault::OneWay { from, to } => write!(f, "one-way n{from} -/-> [{}]", ids(to)),
            Fault::Clog(a, b) => write!(f, "clog n{a} <-/-> n{b}"),
            Fault::Crash(n) => write!(f, "crash n{n}"),
            Fault::DiskLoss(n) => write!(f, "crash n{n} and lose its disk"),
            Fault::Pause(n) => write!(f, "pause n{n}"),
            Fault::Delay { min_ms, max_ms } => write!(f, "delay {min_ms}..{max_ms} ms"),
        }
    }
}

/// The fault log, one line per event.
pub fn log_text(events: &[FaultEvent]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

/// A line of the fault log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultEvent {
    pub time_us: u64,
    pub start: bool,
    pub fault: Fault,
}

impl fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.start { "start" } else { "heal " };
        write!(
            f,
            "{:>9.3}s {verb} {}",
            self.time_us as f64 / 1e6,
            self.fault
        )
    }
}
