//! The real-process nemesis's fault schedule: a pure function of the seed,
//! the enabled fault families, the node count and the run's length. Timing
//! is real when it is played, so a run replays in schedule (the same
//! faults on the same nodes at the same offsets), not byte for byte.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A family of faults the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// Splits of the nodes into two sides (any sizes) and one-way links.
    Partitions,
    /// `kill -9` and a restart on the same store.
    Kills,
    /// SIGSTOP, then SIGCONT.
    Pauses,
    /// A node's PostgreSQL sessions are cut and new ones refused for the
    /// hold, as a restart of its database server does (PostgreSQL only).
    PgRestarts,
    /// A node is killed, its store destroyed (database dropped, SQLite
    /// files deleted) and it restarts empty. At most one per run.
    DiskLoss,
    /// A share of the packets a node receives from its peers is dropped.
    Loss,
    /// A node's outgoing packets are delayed (`tc netem`) or, on a kernel
    /// without netem, throttled by a token bucket (`tc tbf`).
    Slow,
}

impl Family {
    pub const EVERY: [Family; 7] = [
        Family::Partitions,
        Family::Kills,
        Family::Pauses,
        Family::PgRestarts,
        Family::DiskLoss,
        Family::Loss,
        Family::Slow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Partitions => "partitions",
            Family::Kills => "kills",
            Family::Pauses => "pauses",
            Family::PgRestarts => "pg-restarts",
            Family::DiskLoss => "disk-loss",
            Family::Loss => "loss",
            Family::Slow => "slow",
        }
    }
}

/// A set of families, as `--faults` takes it: `all`, `none`, or a
/// comma-separated list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Families(pub BTreeSet<Family>);

impl FromStr for Families {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "all" => return Ok(Families(Family::EVERY.into_iter().collect())),
            "none" => return Ok(Families(BTreeSet::new())),
            _ => {}
        }
        let mut set = BTreeSet::new();
        for name in text.split(',').map(str::trim) {
            let family = Family::EVERY
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = Family::EVERY.iter().map(|f| f.name()).collect();
                    format!(
                        "unknown fault family {name:?}: use all, none, or a comma-separated list of {}",
                        known.join(", ")
                    )
                })?;
            set.insert(family);
        }
        Ok(Families(set))
    }
}

impl fmt::Display for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|f| f.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// One fault, held from `at` for `hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub at: Duration,
    pub hold: Duration,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// No traffic between `side` and the other nodes, either way.
    Split {
        side: Vec<u32>,
    },
    /// Packets from `from` do not reach `to`.
    OneWay {
        from: u32,
        to: u32,
    },
    Kill {
        node: u32,
    },
    Pause {
        node: u32,
    },
    PgRestart {
        node: u32,
    },
    DiskLoss {
        node: u32,
    },
    Loss {
        node: u32,
        percent: u32,
    },
    Slow {
        node: u32,
        delay_ms: u32,
    },
}

impl FaultKind {
    fn family(&self) -> Family {
        match self {
            FaultKind::Split { .. } | FaultKind::OneWay { .. } => Family::Partitions,
            FaultKind::Kill { .. } => Family::Kills,
            FaultKind::Pause { .. } => Family::Pauses,
            FaultKind::PgRestart { .. } => Family::PgRestarts,
            FaultKind::DiskLoss { .. } => Family::DiskLoss,
            FaultKind::Loss { .. } => Family::Loss,
            FaultKind::Slow { .. } => Family::Slow,
        }
    }

    /// The nodes whose process or store the fault holds (two such faults
    /// never overlap on one node: a paused process is not killed).
    fn holds_process(&self) -> Option<u32> {
        match self {
            FaultKind::Kill { node }
            | FaultKind::Pause { node }
            | FaultKind::PgRestart { node }
            | FaultKind::DiskLoss { node } => Some(*node),
            _ => None,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Split { side } => {
                let side: Vec<String> = side.iter().map(|n| format!("n{n}")).collect();
                write!(f, "partition {{{}}} from the rest", side.join(","))
            }
            FaultKind::OneWay { from, to } => write!(f, "one-way link: n{from} → n{to} dropped"),
            FaultKind::Kill { node } => write!(f, "kill -9 n{node}, restart at the end"),
            FaultKind::Pause { node } => write!(f, "pause n{node} (SIGSTOP/SIGCONT)"),
            FaultKind::PgRestart { node } => {
                write!(f, "cut n{node}'s PostgreSQL sessions, refuse new ones")
            }
            FaultKind::DiskLoss { node } => {
                write!(f, "kill n{node} and lose its disk, restart empty")
            }
            FaultKind::Loss { node, percent } => {
                write!(f, "drop {percent} % of the packets n{node} receives")
            }
            FaultKind::Slow { node, delay_ms } => write!(f, "slow n{node}'s link ({delay_ms} ms)"),
        }
    }
}

/// Faults start no earlier than this into the run (the workload warms up).
const WARM_UP: Duration = Duration::from_secs(2);
/// And end no later than this before its end (all are healed then anyway).
const COOL_DOWN: Duration = Duration::from_secs(2);

/// The schedule for `seed`: faults from `families` on nodes `1..=nodes`
/// over a run of `duration`, one every 0.5–3 s, each held 1–5 s, no two
/// process faults on one node at once, at most one lost disk.
pub fn schedule(seed: u64, families: &Families, nodes: u32, duration: Duration) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let enabled: Vec<Family> = families.0.iter().copied().collect();
    let mut faults: Vec<Fault> = Vec::new();
    if enabled.is_empty() || nodes < 2 || duration <= WARM_UP + COOL_DOWN {
        return faults;
    }
    let end = duration - COOL_DOWN;
    let mut at = WARM_UP;
    let mut disks_lost = 0;
    while at < end {
        let family = enabled[rng.gen_range(0..enabled.len())];
        let hold_ms = rng.gen_range(1_000u64..=5_000);
        let hold = Duration::from_millis(hold_ms).min(end - at);
        let node = rng.gen_range(1..=nodes);
        let kind = match family {
            Family::Partitions => {
                if rng.gen_bool(0.3) {
                    let mut to = rng.gen_range(1..nodes);
                    if to >= node {
                        to += 1;
                    }
                    FaultKind::OneWay { from: node, to }
                } else {
                    // Any split: each node joins the side with probability
                    // 1/2, redrawn until both sides are non-empty.
                    loop {
                        let side: Vec<u32> = (1..=nodes).filter(|_| rng.gen_bool(0.5)).collect();
                        if !side.is_empty() && side.len() < nodes as usize {
                            break FaultKind::Split { side };
                        }
                    }
                }
            }
            Family::Kills => FaultKind::Kill { node },
            Family::Pauses => FaultKind::Pause { node },
            Family::PgRestarts => FaultKind::PgRestart { node },
            Family::DiskLoss => FaultKind::DiskLoss { node },
            Family::Loss => FaultKind::Loss {
                node,
                percent: rng.gen_range(10..=40),
            },
            Family::Slow => FaultKind::Slow {
                node,
                delay_ms: rng.gen_range(20..=200),
            },
        };
        let gap = Duration::from_millis(rng.gen_range(500u64..=3_000));
        let busy = |faults: &[Fault], kind: &FaultKind| {
            faults.iter().any(|f| {
                f.at + f.hold > at
                    && (kind.holds_process().is_some()
                        && f.kind.holds_process() == kind.holds_process()
                        || matches!((&f.kind, kind), (FaultKind::Slow { node: a, .. }, FaultKind::Slow { node: b, .. }) if a == b))
            })
        };
        let allowed = match kind {
            FaultKind::DiskLoss { .. } => disks_lost == 0,
            _ => true,
        };
        if allowed && !busy(&faults, &kind) && !hold.is_zero() {
            if matches!(kind, FaultKind::DiskLoss { .. }) {
                disks_lost += 1;
            }
            faults.push(Fault { at, hold, kind });
        }
        at += gap;
    }
    faults
}

/// What a schedule holds, per family, for the report.
pub fn families_used(faults: &[Fault]) -> BTreeSet<Family> {
    faults.iter().map(|f| f.kind.family()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Families {
        "all".parse().expect("all")
    }

    #[test]
    fn a_schedule_is_a_function_of_its_seed() {
        let a = schedule(7, &all(), 5, Duration::from_secs(60));
        let b = schedule(7, &all(), 5, Duration::from_secs(60));
        let c = schedule(8, &all(), 5, Duration::from_secs(60));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.len() > 10, "one fault every 0.5-3 s: {}", a.len());
    }

    #[test]
    fn schedules_respect_their_bounds() {
        for seed in 0..200 {
            let faults = schedule(seed, &all(), 5, Duration::from_secs(30));
            let disk_losses = faults
                .iter()
                .filter(|f| matches!(f.kind, FaultKind::DiskLoss { .. }))
                .count();
            assert!(disk_losses <= 1, "seed {seed}: {disk_losses} lost disks");
            for (i, f) in faults.iter().enumerate() {
                assert!(f.at >= WARM_UP && f.at + f.hold <= Duration::from_secs(28));
                assert!(!f.hold.is_zero());
                if let FaultKind::Split { side } = &f.kind {
                    assert!(!side.is_empty() && side.len() < 5, "seed {seed}: {side:?}");
                }
                if let FaultKind::OneWay { from, to } = f.kind {
                    assert_ne!(from, to);
                    assert!((1..=5).contains(&from) && (1..=5).contains(&to));
                }
                for g in &faults[..i] {
                    let overlap = g.at + g.hold > f.at;
                    let same = f.kind.holds_process().is_some()
                        && f.kind.holds_process() == g.kind.holds_process();
                    assert!(!(overlap && same), "seed {seed}: {g:?} and {f:?}");
                }
            }
        }
    }

    #[test]
    fn the_docs_fault_table_lists_every_family_and_no_other() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/nemesis.md"))
                .expect("docs/nemesis.md");
        let documented: BTreeSet<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect();
        let families: BTreeSet<String> =
            Family::EVERY.iter().map(|f| f.name().to_string()).collect();
        assert_eq!(documented, families);
    }

    #[test]
    fn families_limit_what_is_drawn() {
        let only: Families = "kills,pauses".parse().expect("families");
        let faults = schedule(3, &only, 5, Duration::from_secs(60));
        let used = families_used(&faults);
        assert!(used.iter().all(|f| only.0.contains(f)), "{used:?}");
        assert!(schedule(
            3,
            &"none".parse().expect("none"),
            5,
            Duration::from_secs(60)
        )
        .is_empty());
        let err = "kills,floods"
            .parse::<Families>()
            .expect_err("unknown family");
        assert!(err.contains("\"floods\""), "{err}");
    }
}
