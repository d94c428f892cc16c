//! What a simulation run is: the cluster shape, the workload, the
//! consistency levels the clients use and the fault schedule. A
//! `(scenario, seed)` pair replays a run exactly.
use quorumlog_core::{Consistency, QuorumSpec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Which faults the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultSchedule {
    /// No faults: the baseline.
    None,
    /// Network partitions (random splits including 3-2, one-way links).
    Partitions,
    /// Node crashes and restarts.
    Crashes,
    /// Paused (slow) nodes, clogged links and message delay.
    Pauses,
    /// Crashes with pauses.
    CrashesPauses,
    /// Crashes, one of which (per run) loses the node's disk: it restarts
    /// with an empty store, under a new incarnation.
    DiskLoss,
    /// Everything together (one lost disk per run at most).
    All,
}

impl FaultSchedule {
    pub const EVERY: [FaultSchedule; 7] = [
        FaultSchedule::None,
        FaultSchedule::Partitions,
        FaultSchedule::Crashes,
        FaultSchedule::Pauses,
        FaultSchedule::CrashesPauses,
        FaultSchedule::DiskLoss,
        FaultSchedule::All,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultSchedule::None => "none",
            FaultSchedule::Partitions => "partitions",
            FaultSchedule::Crashes => "crashes",
            FaultSchedule::Pauses => "pauses",
            FaultSchedule::CrashesPauses => "crashes-pauses",
            FaultSchedule::DiskLoss => "disk-loss",
            FaultSchedule::All => "all",
        }
    }

    pub fn partitions(self) -> bool {
        matches!(self, FaultSchedule::Partitions | FaultSchedule::All)
    }

    pub fn crashes(self) -> bool {
        matches!(
            self,
            FaultSchedule::Crashes
                | FaultSchedule::CrashesPauses
                | FaultSchedule::DiskLoss
                | FaultSchedule::All
        )
    }

    /// Whether a crash may lose the node's disk (once per run).
    pub fn disk_loss(self) -> bool {
        matches!(self, FaultSchedule::DiskLoss | FaultSchedule::All)
    }

    pub fn pauses(self) -> bool {
        matches!(
            self,
            FaultSchedule::Pauses | FaultSchedule::CrashesPauses | FaultSchedule::All
        )
    }
}

impl fmt::Display for FaultSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScenarioError {
    #[error("unknown fault schedule {0:?}: use one of none, partitions, crashes, pauses, crashes-pauses, disk-loss, all")]
    UnknownFaults(String),
    #[error("bad consistency {what}: {reason}")]
    BadLevel { what: &'static str, reason: String },
    #[error("{0}")]
    Invalid(String),
}

impl FromStr for FaultSchedule {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultSchedule::EVERY
            .into_iter()
            .find(|f| f.name() == s.trim())
            .ok_or_else(|| ScenarioError::UnknownFaults(s.to_string()))
    }
}

/// How often a simulated node's disk fails a commit, per mille of
/// commits: `failed` ones apply nothing; `unknown` ones apply and then
/// report an error, as a connection lost during COMMIT does (the caller
/// cannot tell which happened). Every commit also takes a seeded time,
/// whatever these rates (`harness::disk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DiskFaults {
    pub failed_permille: u16,
    pub unknown_permille: u16,
}

impl DiskFaults {
    /// A disk that never fails.
    pub const NONE: DiskFaults = DiskFaults {
        failed_permille: 0,
        unknown_permille: 0,
    };

    /// What a schedule's disks do unless a scenario says otherwise: a
    /// failing commit is a node fault, so it comes with the schedules
    /// whose nodes crash; the network and pause schedules keep their
    /// meaning, and "none" stays a baseline without any fault.
    pub fn of(schedule: FaultSchedule) -> DiskFaults {
        if schedule.crashes() {
            DiskFaults {
                failed_permille: 20,
                unknown_permille: 10,
            }
        } else {
            DiskFaults::NONE
        }
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        if u32::from(self.failed_permille) + u32::from(self.unknown_permille) > 1000 {
            return Err(ScenarioError::Invalid(format!(
                "commit failures {}\u{2030} and unknown outcomes {}\u{2030} add up to more than 1000\u{2030}",
                self.failed_permille, self.unknown_permille
            )));
        }
        Ok(())
    }
}

/// The levels clients read and write with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Levels {
    pub read: Consistency,
    pub write: Consistency,
}

impl Levels {
    pub fn same(level: Consistency) -> Self {
        Levels {
            read: level,
            write: level,
        }
    }

    pub fn explicit(r: usize, w: usize) -> Self {
        Levels {
            read: Consistency::Count(r),
            write: Consistency::Count(w),
        }
    }

    pub fn spec(&self, n: usize) -> Result<QuorumSpec, ScenarioError> {
        let r = self
            .read
            .validate(n, "R")
            .map_err(|e| ScenarioError::BadLevel {
                what: "R",
                reason: e.to_string(),
            })?;
        let w = self
            .write
            .validate(n, "W")
            .map_err(|e| ScenarioError::BadLevel {
                what: "W",
                reason: e.to_string(),
            })?;
        Ok(QuorumSpec { n, r, w })
    }

    /// "QUORUM", or "R=1,W=5" when the two differ.
    pub fn label(&self) -> String {
        match (self.read, self.write) {
            (r, w) if r == w && !matches!(r, Consistency::Count(_)) => r.to_string(),
            (r, w) => format!("R={r},W={w}"),
        }
    }
}

impl FromStr for Levels {
    type Err = ScenarioError;

    /// "ONE", "QUORUM", "ALL", or "R=2,W=2".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some((r, w)) = s.split_once(',') {
            let part = |text: &str, name: &'static str| -> Result<Consistency, ScenarioError> {
                let (label, value) = text.split_once('=').ok_or(ScenarioError::BadLevel {
                    what: name,
                    reason: format!("expected {name}=LEVEL in {s:?}"),
                })?;
                if !label.trim().eq_ignore_ascii_case(name) {
                    return Err(ScenarioError::BadLevel {
                        what: name,
                        reason: format!("expected {name}= in {s:?}"),
                    });
                }
                value
                    .parse()
                    .map_err(
                        |e: quorumlog_core::quorum::QuorumError| ScenarioError::BadLevel {
                            what: name,
                            reason: e.to_string(),
                        },
                    )
            };
            return Ok(Levels {
                read: part(r, "R")?,
                write: part(w, "W")?,
            });
        }
        s.parse()
            .map(Levels::same)
            .map_err(
                |e: quorumlog_core::quorum::QuorumError| ScenarioError::BadLevel {
                    what: "level",
                    reason: e.to_string(),
                },
            )
    }
}

/// Everything that defines a run except the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub faults: FaultSchedule,
    pub levels: Levels,
    /// Per-client levels (client i uses entry i mod len); empty: every
    /// client uses `levels`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_levels: Vec<Levels>,
    pub nodes: usize,
    pub clients: usize,
    /// Operations across all clients (the final reads come on top).
    pub operations: usize,
    /// Keys most operations go to (where conflicts and staleness show).
    pub hot_keys: usize,
    pub cold_keys: usize,
    /// Blind writes overwrite (`overwrite=true`: last-writer-wins) instead
    /// of adding a sibling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overwrite: bool,
    /// Read repair off on every node: only hints and anti-entropy bring
    /// replicas up to date.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_read_repair: bool,
    /// Fault points in the core's own code paths (requests between
    /// replicas dropped, duplicated or answered late, replies lost,
    /// background read repairs dropped): a seed-drawn set of them, each
    /// with a seed-drawn probability.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fault_points: bool,
    /// The disks' commit failure rates; None: the schedule's
    /// ([`DiskFaults::of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskFaults>,
}

impl Scenario {
    /// The standard scenario: 5 nodes, 4 clients, 500 operations.
    pub fn standard(faults: FaultSchedule, levels: Levels) -> Self {
        Scenario {
            faults,
            levels,
            client_levels: Vec::new(),
            nodes: 5,
            clients: 4,
            operations: 500,
            hot_keys: 3,
            cold_keys: 12,
            overwrite: false,
            no_read_repair: false,
            fault_points: false,
            disk: None,
        }
    }

    /// How every node's disk fails commits in this scenario.
    pub fn disk_faults(&self) -> DiskFaults {
        self.disk.unwrap_or_else(|| DiskFaults::of(self.faults))
    }

    pub fn validate(&self) -> Result<QuorumSpec, ScenarioError> {
        if self.nodes == 0 || self.nodes > 64 {
            return Err(ScenarioError::Invalid(format!(
                "nodes = {} must be between 1 and 64",
                self.nodes
            )));
        }
        if self.clients == 0 || self.clients > 256 {
            return Err(ScenarioError::Invalid(format!(
                "clients = {} must be between 1 and 256",
                self.clients
            )));
        }
        if self.hot_keys + self.cold_keys == 0 {
            return Err(ScenarioError::Invalid(
                "the workload needs at least one key".into(),
            ));
        }
        for levels in &self.client_levels {
            levels.spec(self.nodes)?;
        }
        self.disk_faults().validate()?;
        self.levels.spec(self.nodes)
    }

    /// The levels client `client` uses.
    pub fn levels_of(&self, client: usize) -> Levels {
        if self.client_levels.is_empty() {
            self.levels
        } else {
            self.client_levels[client % self.client_levels.len()]
        }
    }

    /// Whether every read quorum any client uses meets every write quorum
    /// any client uses (what fresh reads need when levels are mixed).
    pub fn overlapping(&self) -> bool {
        let all: Vec<Levels> = (0..self.clients).map(|c| self.levels_of(c)).collect();
        let smallest = |pick: fn(&Levels) -> quorumlog_core::Consistency| {
            all.iter()
                .map(|l| pick(l).replicas(self.nodes))
                .min()
                .unwrap_or(0)
        };
        smallest(|l| l.read) + smallest(|l| l.write) > self.nodes
    }

    /// Whether reads are promised fresh: every read quorum meets every
    /// write quorum — and, when a disk may be lost, meets it in a replica
    /// that still holds the write (a replica that lost its disk is refilled
    /// by hints and anti-entropy, not at once), which takes W+R > N+1.
    pub fn promises_fresh_reads(&self) -> bool {
        if !self.faults.disk_loss() {
            return self.overlapping();
        }
        let smallest_read = (0..self.clients)
            .map(|c| self.levels_of(c).read.replicas(self.nodes))
            .min()
            .unwrap_or(0);
        smallest_read + self.min_write_replicas() > self.nodes + 1
    }

    /// The fewest replicas any client's write is acknowledged by.
    pub fn min_write_replicas(&self) -> usize {
        (0..self.clients)
            .map(|c| self.levels_of(c).write.replicas(self.nodes))
            .min()
            .unwrap_or(0)
    }

    /// Whether every acknowledged write must survive: a write acknowledged
    /// by one replica is lost with that replica's disk, and an overwrite
    /// drops the siblings its coordinator holds by design.
    pub fn promises_durability(&self) -> bool {
        !self.overwrite && (!self.faults.disk_loss() || self.min_write_replicas() >= 2)
    }

    /// "QUORUM", or "ONE+QUORUM" for mixed clients; " overwrite" when
    /// blind writes overwrite.
    pub fn levels_label(&self) -> String {
        let levels = if self.client_levels.is_empty() {
            self.levels.label()
        } else {
            self.client_levels
                .iter()
                .map(Levels::label)
                .collect::<Vec<_>>()
                .join("+")
        };
        if self.overwrite {
            format!("{levels} overwrite")
        } else {
            levels
        }
    }

    /// A short name: "QUORUM/partitions".
    pub fn name(&self) -> String {
        format!("{}/{}", self.levels_label(), self.faults)
    }

    /// The command that replays `seed` of this scenario.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!(
            "cargo sim replay --faults {} --level {} --seed {seed}",
            self.faults,
            self.levels.label()
        );
        for levels in &self.client_levels {
            cmd += &format!(" --client-level {}", levels.label());
        }
        let standard = Scenario::standard(self.faults, self.levels);
        if self.nodes != standard.nodes {
            cmd += &format!(" --nodes {}", self.nodes);
        }
        if self.clients != standard.clients {
            cmd += &format!(" --clients {}", self.clients);
        }
        if self.operations != standard.operations {
            cmd += &format!(" --ops {}", self.operations);
        }
        if self.overwrite {
            cmd += " --overwrite";
        }
        if self.no_read_repair {
            cmd += " --no-read-repair";
        }
        if self.fault_points {
            cmd += " --fault-points";
        }
        if let Some(disk) = self.disk {
            cmd += &format!(
                " --commit-failures {} --commit-unknown {}",
                disk.failed_permille, disk.unknown_permille
            );
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_levels() {
        assert_eq!(
            "QUORUM".parse::<Levels>(),
            Ok(Levels::same(Consistency::Quorum))
        );
        assert_eq!("R=2,W=2".parse::<Levels>(), Ok(Levels::explicit(2, 2)));
        assert_eq!("r=1, w=ALL".parse::<Levels>().unwrap().label(), "R=1,W=ALL");
        assert!("R=2".parse::<Levels>().is_err());
        assert!("X=1,W=2".parse::<Levels>().is_err());
        assert!("MOST".parse::<Levels>().is_err());
        assert_eq!(
            Levels::explicit(2, 2).label().parse::<Levels>(),
            Ok(Levels::explicit(2, 2))
        );
        assert!(Levels::explicit(6, 1).spec(5).is_err());
    }

    #[test]
    fn mixed_clients_overlap_only_if_every_pair_does() {
        let mut s = Scenario::standard(FaultSchedule::None, Levels::same(Consistency::Quorum));
        assert!(s.overlapping());
        s.client_levels = vec![
            Levels::same(Consistency::Quorum),
            Levels::same(Consistency::All),
        ];
        assert!(s.overlapping());
        assert_eq!(s.levels_of(3), Levels::same(Consistency::All));
        s.client_levels.push(Levels::explicit(1, 5));
        // a QUORUM writer and an R=1 reader need not meet
        assert!(!s.overlapping());
        assert!(s.replay_command(4).contains("--client-level R=1,W=5"));
    }

    #[test]
    fn disk_faults_come_with_crashes_unless_set() {
        let none = Scenario::standard(FaultSchedule::None, Levels::same(Consistency::Quorum));
        assert_eq!(none.disk_faults(), DiskFaults::NONE);
        assert!(!none.replay_command(1).contains("--commit"));
        let mut crashes = Scenario {
            faults: FaultSchedule::Crashes,
            ..none
        };
        assert!(crashes.disk_faults().failed_permille > 0);
        assert!(crashes.disk_faults().unknown_permille > 0);
        crashes.disk = Some(DiskFaults::NONE);
        assert_eq!(crashes.disk_faults(), DiskFaults::NONE);
        assert!(crashes
            .replay_command(1)
            .contains("--commit-failures 0 --commit-unknown 0"));
        crashes.disk = Some(DiskFaults {
            failed_permille: 600,
            unknown_permille: 500,
        });
        assert!(crashes.validate().is_err());
    }

    #[test]
    fn parse_faults() {
        for f in FaultSchedule::EVERY {
            assert_eq!(f.name().parse::<FaultSchedule>(), Ok(f));
        }
        assert!("earthquake".parse::<FaultSchedule>().is_err());
    }
}
