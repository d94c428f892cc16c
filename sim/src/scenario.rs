//! What a simulation run is: the cluster shape, the workload, the
//! consistency levels the clients use and the fault schedule. A
//! `(scenario, seed)` pair replays a run exactly.
pub use crate::fault::Fault;
use quorumlog_core::anti_entropy::LEAF_ENTRIES;
use quorumlog_core::{Consistency, CoordinatorConfig, KeyLimits, QuorumSpec, ReadRepair};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Key limits of the simulated cluster: the deployed defaults scaled down
/// so that a 500-operation run reaches them (a burst of blind writes to a
/// hot key, a few big values), and the refusals and their handling are
/// exercised, not just configured.
///
/// The byte limit is small on purpose. Nothing simulated takes longer for
/// more bytes (madsim's links and the simulated disk have one latency for
/// any size), so what a run tests is how many big values fill a key, not
/// how big they are; but every byte is copied several times per message,
/// and at four times these sizes the big values took a fifth of a seed's
/// time.
pub const SIM_KEY_LIMITS: KeyLimits = KeyLimits {
    max_siblings: 16,
    max_bytes: 64 * 1024,
};

/// Replicas `level` takes among `n`, by the simulator's own arithmetic:
/// what a scenario promises must not follow the core's count, which is
/// what the promises judge (a core that counted QUORUM one short would
/// otherwise promise less and pass).
fn replicas(level: Consistency, n: usize) -> usize {
    match level {
        Consistency::One => 1,
        Consistency::Quorum => n / 2 + 1,
        Consistency::All => n,
        Consistency::Count(k) => k,
    }
}

/// `ours` without what it shares with `standard`, object by object.
fn only_differences(ours: serde_json::Value, standard: &serde_json::Value) -> serde_json::Value {
    match (ours, standard) {
        (serde_json::Value::Object(ours), serde_json::Value::Object(standard)) => ours
            .into_iter()
            .filter(|(key, value)| standard.get(key) != Some(value))
            .map(|(key, value)| {
                let value = match standard.get(&key) {
                    Some(theirs) if value.is_object() && theirs.is_object() => {
                        only_differences(value, theirs)
                    }
                    _ => value,
                };
                (key, value)
            })
            .collect(),
        (ours, _) => ours,
    }
}

/// The RNG stream a swarm configuration is drawn from (the run's own
/// streams are 1..=4, 100.. for clients and 1000.. for disks).
const SWARM_STREAM: u64 = 7;

/// Cold keys in the swarm seeds that draw many: from just past one leaf of
/// the anti-entropy index to several of its inner nodes' worth.
const MANY_COLD_KEYS: std::ops::RangeInclusive<usize> = LEAF_ENTRIES + 1..=200;

/// Which faults the nemesis injects.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultSchedule {
    /// No faults: the baseline.
    None,
    /// Network partitions (random splits including 3-2, one-way links).
    #[default]
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
#[serde(deny_unknown_fields)]
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

    /// What the disks of a scenario whose nodes crash do unless it says
    /// otherwise ([`Scenario::disk_faults`]).
    pub const WITH_CRASHES: DiskFaults = DiskFaults {
        failed_permille: 20,
        unknown_permille: 10,
    };

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

/// The levels clients read and write with; in JSON, their label
/// ("QUORUM", "R=2,W=2").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
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

impl From<Levels> for String {
    fn from(levels: Levels) -> String {
        levels.label()
    }
}

impl TryFrom<String> for Levels {
    type Error = ScenarioError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// The coordinator settings every node of a run uses: the deployed
/// defaults unless a scenario (or a swarm draw) says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tuning {
    /// How long a coordinator waits for replicas.
    pub replica_timeout_ms: u64,
    /// How long a client waits for a coordinator.
    pub client_timeout_ms: u64,
    /// Failed calls in a row that open a peer's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker keeps a peer out.
    pub breaker_open_ms: u64,
    pub read_repair: ReadRepair,
    /// Hedge a read after this long; None: never hedge.
    pub hedge_after_ms: Option<u64>,
    /// Hinted handoff on.
    pub hints: bool,
    /// Anti-entropy round interval; None: anti-entropy off.
    pub anti_entropy_ms: Option<u64>,
}

impl Default for Tuning {
    fn default() -> Self {
        let deployed = CoordinatorConfig::default();
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        Tuning {
            replica_timeout_ms: ms(deployed.replica_timeout),
            client_timeout_ms: 2000,
            breaker_threshold: deployed.breaker.failure_threshold,
            breaker_open_ms: ms(deployed.breaker.open_for),
            read_repair: deployed.read_repair,
            hedge_after_ms: deployed.hedge_after.map(ms),
            hints: deployed.hinted_handoff.is_some(),
            anti_entropy_ms: deployed.anti_entropy.map(|ae| ms(ae.interval)),
        }
    }
}

impl Tuning {
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let positive = [
            ("replica_timeout_ms", self.replica_timeout_ms),
            ("client_timeout_ms", self.client_timeout_ms),
            ("breaker_open_ms", self.breaker_open_ms),
            ("anti_entropy_ms", self.anti_entropy_ms.unwrap_or(1)),
        ];
        for (name, value) in positive {
            if value == 0 || value > 600_000 {
                return Err(ScenarioError::Invalid(format!(
                    "tuning.{name} = {value} must be between 1 and 600000 ms"
                )));
            }
        }
        if self.breaker_threshold == 0 {
            return Err(ScenarioError::Invalid(
                "tuning.breaker_threshold must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What the clients do, in shares of their operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadMix {
    /// Plain reads.
    pub read_percent: u8,
    /// Blind writes (no context); the rest are read-then-write pairs.
    pub blind_percent: u8,
    /// Operations on the hot keys (the rest go to the cold ones).
    pub hot_percent: u8,
    /// A client waits up to this long between operations.
    pub think_ms: u64,
    /// Filler added to each written value, up to this many bytes.
    pub value_padding: usize,
    /// Share of writes that misbehave (per mille); None: drawn per seed.
    pub adversarial_permille: Option<u16>,
    /// After a read-then-write pair's write succeeds, the chance (percent)
    /// that its client writes the key again with the token that write's
    /// answer handed out, without reading first (and again after that
    /// write, with the same chance): a client that keeps a key's token
    /// from write to write, as a real one may.
    pub chain_percent: u8,
}

impl Default for WorkloadMix {
    fn default() -> Self {
        WorkloadMix {
            read_percent: 45,
            blind_percent: 25,
            hot_percent: 80,
            think_ms: 20,
            value_padding: 0,
            adversarial_permille: None,
            chain_percent: 0,
        }
    }
}

impl WorkloadMix {
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if u16::from(self.read_percent) + u16::from(self.blind_percent) > 100 {
            return Err(ScenarioError::Invalid(format!(
                "mix.read_percent {} and mix.blind_percent {} add up to more than 100",
                self.read_percent, self.blind_percent
            )));
        }
        if self.hot_percent > 100 {
            return Err(ScenarioError::Invalid(format!(
                "mix.hot_percent = {} is over 100",
                self.hot_percent
            )));
        }
        // 100 would chain for ever: every write followed by another.
        if self.chain_percent > 90 {
            return Err(ScenarioError::Invalid(format!(
                "mix.chain_percent = {} is over 90",
                self.chain_percent
            )));
        }
        if self.think_ms == 0 || self.think_ms > 10_000 {
            return Err(ScenarioError::Invalid(format!(
                "mix.think_ms = {} must be between 1 and 10000",
                self.think_ms
            )));
        }
        if self.value_padding > 64 * 1024 {
            return Err(ScenarioError::Invalid(format!(
                "mix.value_padding = {} is over 65536 bytes",
                self.value_padding
            )));
        }
        if self.adversarial_permille.is_some_and(|p| p > 1000) {
            return Err(ScenarioError::Invalid(
                "mix.adversarial_permille is over 1000".into(),
            ));
        }
        Ok(())
    }
}

/// Which faults the nemesis draws, by relative weight (0: never), and
/// their rhythm: a calm, then one fault (or up to `stack` at once) held
/// for a while, then healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultMix {
    pub partition: u8,
    pub one_way: u8,
    pub clog: u8,
    pub crash: u8,
    /// A crash that loses the node's disk (one disk at a time).
    pub disk_loss: u8,
    pub pause: u8,
    pub delay: u8,
    /// Faults started together, at most.
    pub stack: u8,
    pub calm_ms: [u64; 2],
    pub hold_ms: [u64; 2],
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix::of(FaultSchedule::None)
    }
}

impl FaultMix {
    /// The mix a named schedule stands for.
    pub fn of(schedule: FaultSchedule) -> FaultMix {
        let partitions = u8::from(schedule.partitions());
        let crashes = u8::from(schedule.crashes());
        let pauses = u8::from(schedule.pauses());
        FaultMix {
            partition: 2 * partitions,
            one_way: partitions,
            clog: pauses,
            crash: 2 * crashes,
            disk_loss: u8::from(schedule.disk_loss()),
            pause: 2 * pauses,
            delay: pauses,
            stack: if schedule == FaultSchedule::All { 2 } else { 1 },
            calm_ms: [100, 600],
            hold_ms: [200, 1500],
        }
    }

    /// The families' weights in the nemesis's drawing order.
    pub fn weights(&self) -> [(&'static str, u8); 7] {
        [
            ("partition", self.partition),
            ("one-way", self.one_way),
            ("crash", self.crash),
            ("disk-loss", self.disk_loss),
            ("pause", self.pause),
            ("clog", self.clog),
            ("delay", self.delay),
        ]
    }

    pub fn is_quiet(&self) -> bool {
        self.weights().iter().all(|(_, w)| *w == 0)
    }

    /// "partition+crash+pause", or "none".
    pub fn label(&self) -> String {
        let on: Vec<&str> = self
            .weights()
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(name, _)| *name)
            .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join("+")
        }
    }

    pub fn validate(&self) -> Result<(), ScenarioError> {
        for (name, [lo, hi]) in [("calm_ms", self.calm_ms), ("hold_ms", self.hold_ms)] {
            if lo == 0 || lo >= hi || hi > 600_000 {
                return Err(ScenarioError::Invalid(format!(
                    "fault_mix.{name} = [{lo}, {hi}] must satisfy 1 <= low < high <= 600000"
                )));
            }
        }
        if self.stack == 0 || self.stack > 4 {
            return Err(ScenarioError::Invalid(format!(
                "fault_mix.stack = {} must be between 1 and 4",
                self.stack
            )));
        }
        Ok(())
    }
}

/// The latest a script's fault may start, and the longest it may be held
/// (µs): an hour, the simulated time a run may take at most.
pub const MAX_SCRIPT_US: u64 = 3_600_000_000;

/// One fault of an explicit script: started `at_us` after the run began
/// and healed `hold_us` later (or when the workload ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    pub at_us: u64,
    pub hold_us: u64,
    pub fault: Fault,
}

/// Everything that defines a run except the seed, in the one form the
/// CLI, seed and schedule files, replay commands and table labels share:
/// JSON with every field optional (missing fields take the standard
/// scenario's value, [`Scenario::default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// The named fault schedule; `fault_mix`, when set, replaces what it
    /// draws.
    pub faults: FaultSchedule,
    #[serde(rename = "level")]
    pub levels: Levels,
    /// Per-client levels (client i uses entry i mod len); empty: every
    /// client uses `levels`.
    pub client_levels: Vec<Levels>,
    pub nodes: usize,
    pub clients: usize,
    /// Operations across all clients (the final reads come on top).
    #[serde(rename = "ops")]
    pub operations: usize,
    /// Keys most operations go to (where conflicts and staleness show).
    pub hot_keys: usize,
    pub cold_keys: usize,
    /// Blind writes overwrite (`overwrite=true`: last-writer-wins) instead
    /// of adding a sibling.
    pub overwrite: bool,
    /// Fault points in the core's own code paths (requests between
    /// replicas dropped, duplicated or answered late, replies lost,
    /// background read repairs dropped, a committer losing its session):
    /// a seed-drawn set of them, each with a seed-drawn probability.
    pub fault_points: bool,
    /// The disks' commit failure rates; None: the faults'
    /// ([`Scenario::disk_faults`]).
    pub disk: Option<DiskFaults>,
    pub tuning: Tuning,
    pub mix: WorkloadMix,
    /// The nemesis's families and rhythm; None: the named schedule's.
    pub fault_mix: Option<FaultMix>,
    /// An explicit fault script (a shrunk schedule): played instead of
    /// drawing faults.
    pub script: Option<Vec<ScriptedFault>>,
}

impl Default for Scenario {
    /// The standard scenario: QUORUM under partitions, 5 nodes, 4
    /// clients, 500 operations, 3 hot and 12 cold keys.
    fn default() -> Self {
        Scenario {
            faults: FaultSchedule::default(),
            levels: Levels::same(Consistency::Quorum),
            client_levels: Vec::new(),
            nodes: 5,
            clients: 4,
            operations: 500,
            hot_keys: 3,
            cold_keys: 12,
            overwrite: false,
            fault_points: false,
            disk: None,
            tuning: Tuning::default(),
            mix: WorkloadMix::default(),
            fault_mix: None,
            script: None,
        }
    }
}

impl Scenario {
    /// The standard scenario with these faults and levels.
    pub fn standard(faults: FaultSchedule, levels: Levels) -> Self {
        Scenario {
            faults,
            levels,
            ..Scenario::default()
        }
    }

    /// The configuration swarm testing draws for `seed` (Groce et al.,
    /// ISSTA 2012): cluster size, levels (W+R<=N included), coordinator
    /// tuning, workload mix and a random half of the fault families, each
    /// with its own weight and rhythm. A function of the seed alone, drawn
    /// from a stream of its own (the run's other streams are untouched).
    pub fn swarm(seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(SWARM_STREAM);
        let nodes = rng.gen_range(3..=7usize);
        let r = rng.gen_range(1..=nodes);
        let w = rng.gen_range(1..=nodes);
        let replica_timeout_ms = rng.gen_range(100..=1000);
        let tuning = Tuning {
            replica_timeout_ms,
            client_timeout_ms: replica_timeout_ms * rng.gen_range(2..=5),
            breaker_threshold: rng.gen_range(1..=5),
            breaker_open_ms: rng.gen_range(200..=4000),
            read_repair: [
                ReadRepair::Off,
                ReadRepair::Background,
                ReadRepair::Blocking,
            ][rng.gen_range(0..3)],
            hedge_after_ms: rng.gen_bool(0.5).then(|| rng.gen_range(10..=200)),
            hints: rng.gen_bool(0.8),
            anti_entropy_ms: rng.gen_bool(0.8).then(|| rng.gen_range(500..=5000)),
        };
        let read_percent = rng.gen_range(10..=80u8);
        let mix = WorkloadMix {
            read_percent,
            blind_percent: rng.gen_range(0..=100 - read_percent),
            hot_percent: rng.gen_range(50..=100),
            think_ms: rng.gen_range(1..=40),
            value_padding: if rng.gen_bool(0.3) {
                rng.gen_range(1..=4096)
            } else {
                0
            },
            adversarial_permille: None,
            // Drawn last (below), so that adding it changed no other draw.
            chain_percent: 0,
        };
        let mut family = || {
            if rng.gen_bool(0.5) {
                rng.gen_range(1..=3u8)
            } else {
                0
            }
        };
        let (partition, one_way, clog, crash, disk_loss, pause, delay) = (
            family(),
            family(),
            family(),
            family(),
            family(),
            family(),
            family(),
        );
        let calm = rng.gen_range(50..=300);
        let hold = rng.gen_range(100..=500);
        let fault_mix = FaultMix {
            partition,
            one_way,
            clog,
            crash,
            disk_loss,
            pause,
            delay,
            stack: rng.gen_range(1..=2),
            calm_ms: [calm, calm + rng.gen_range(100..=1000)],
            hold_ms: [hold, hold + rng.gen_range(200..=2000)],
        };
        let disk = rng.gen_bool(0.5).then(|| DiskFaults {
            failed_permille: rng.gen_range(1..=50),
            unknown_permille: rng.gen_range(0..=25),
        });
        let mut scenario = Scenario {
            faults: FaultSchedule::default(),
            levels: Levels::explicit(r, w),
            client_levels: Vec::new(),
            nodes,
            clients: rng.gen_range(1..=8),
            operations: rng.gen_range(100..=600),
            hot_keys: rng.gen_range(1..=5),
            cold_keys: rng.gen_range(0..=20),
            overwrite: rng.gen_bool(0.1),
            fault_points: rng.gen_bool(0.5),
            disk: Some(disk.unwrap_or(DiskFaults::NONE)),
            tuning,
            mix,
            fault_mix: Some(fault_mix),
            script: None,
        };
        if rng.gen_bool(0.5) {
            scenario.mix.chain_percent = rng.gen_range(10..=80);
        }
        // Drawn after everything else, so that adding it changed no other
        // draw: a fifth of the seeds spread their cold writes over more
        // keys than a leaf of the anti-entropy index holds, so that its
        // comparisons go down through stored inner nodes (with 25 keys at
        // most, a replica's whole index is one leaf, answered as entries).
        if rng.gen_bool(0.2) {
            scenario.cold_keys = rng.gen_range(MANY_COLD_KEYS);
        }
        scenario
    }

    /// Parse the JSON form, naming the problem on bad input.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = serde_json::from_str(text)
            .map_err(|e| ScenarioError::Invalid(format!("not a scenario: {e}")))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The JSON form with only what differs from the standard scenario
    /// (in nested settings too: `{"tuning":{"hints":false}}`).
    pub fn to_json_value(&self) -> serde_json::Value {
        let ours = serde_json::to_value(self).expect("a scenario serialises");
        let standard = serde_json::to_value(Scenario::default()).expect("a scenario serialises");
        only_differences(ours, &standard)
    }

    /// The compact JSON form (only what differs from the standard scenario).
    pub fn to_json(&self) -> String {
        self.to_json_value().to_string()
    }

    /// The nemesis's families and rhythm in this scenario.
    pub fn fault_mix(&self) -> FaultMix {
        self.fault_mix.unwrap_or_else(|| FaultMix::of(self.faults))
    }

    /// Whether a crash may lose a node's disk in this scenario.
    pub fn may_lose_disks(&self) -> bool {
        match &self.script {
            Some(script) => script.iter().any(|f| matches!(f.fault, Fault::DiskLoss(_))),
            None => self.fault_mix().disk_loss > 0,
        }
    }

    /// Whether nodes crash in this scenario.
    pub fn crashes_nodes(&self) -> bool {
        match &self.script {
            Some(script) => script
                .iter()
                .any(|f| matches!(f.fault, Fault::Crash(_) | Fault::DiskLoss(_))),
            None => {
                let mix = self.fault_mix();
                mix.crash > 0 || mix.disk_loss > 0
            }
        }
    }

    /// How every node's disk fails commits in this scenario: failing
    /// commits are node faults, so they come with crashes; the network
    /// and pause schedules keep their meaning, and "none" stays a baseline
    /// without any fault.
    pub fn disk_faults(&self) -> DiskFaults {
        self.disk.unwrap_or(if self.crashes_nodes() {
            DiskFaults::WITH_CRASHES
        } else {
            DiskFaults::NONE
        })
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
        if self.operations > 1_000_000 {
            return Err(ScenarioError::Invalid(format!(
                "ops = {} is over 1000000",
                self.operations
            )));
        }
        if self.hot_keys + self.cold_keys == 0 || self.hot_keys + self.cold_keys > 100_000 {
            return Err(ScenarioError::Invalid(
                "the workload needs between 1 and 100000 keys (hot_keys + cold_keys)".into(),
            ));
        }
        for levels in &self.client_levels {
            levels.spec(self.nodes)?;
        }
        self.disk_faults().validate()?;
        self.tuning.validate()?;
        self.mix.validate()?;
        self.fault_mix().validate()?;
        for scripted in self.script.iter().flatten() {
            if scripted.at_us > MAX_SCRIPT_US || scripted.hold_us > MAX_SCRIPT_US {
                return Err(ScenarioError::Invalid(format!(
                    "the script's fault \"{}\" at {} µs held {} µs: both must be at most {MAX_SCRIPT_US} µs (an hour)",
                    scripted.fault, scripted.at_us, scripted.hold_us
                )));
            }
            if let Fault::Delay { min_ms, max_ms } = scripted.fault {
                if min_ms >= max_ms || max_ms > 60_000 {
                    return Err(ScenarioError::Invalid(format!(
                        "the script's delay {min_ms}..{max_ms} ms must satisfy min < max <= 60000"
                    )));
                }
            }
            if let Some(problem) = scripted.fault.shape_error() {
                return Err(ScenarioError::Invalid(format!(
                    "the script's fault \"{}\": {problem}",
                    scripted.fault
                )));
            }
            for node in scripted.fault.nodes() {
                if node == 0 || node as usize > self.nodes {
                    return Err(ScenarioError::Invalid(format!(
                        "the script's fault \"{}\" names n{node}, not one of n1..n{}",
                        scripted.fault, self.nodes
                    )));
                }
            }
        }
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
                .map(|l| replicas(pick(l), self.nodes))
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
        if !self.may_lose_disks() {
            return self.overlapping();
        }
        let smallest_read = (0..self.clients)
            .map(|c| replicas(self.levels_of(c).read, self.nodes))
            .min()
            .unwrap_or(0);
        smallest_read + self.min_write_replicas() > self.nodes + 1
    }

    /// The fewest replicas any client's write is acknowledged by.
    pub fn min_write_replicas(&self) -> usize {
        (0..self.clients)
            .map(|c| replicas(self.levels_of(c).write, self.nodes))
            .min()
            .unwrap_or(0)
    }

    /// Whether every acknowledged write must survive: a write acknowledged
    /// by one replica is lost with that replica's disk, and an overwrite
    /// drops the siblings its coordinator holds by design.
    pub fn promises_durability(&self) -> bool {
        !self.overwrite && (!self.may_lose_disks() || self.min_write_replicas() >= 2)
    }

    /// Whether every replica must come to agree after the heal without
    /// reads: anti-entropy promises it; so do hints, when nothing this
    /// scenario does can cost one (see [`Scenario::hints_suffice`]).
    pub fn promises_convergence(&self) -> bool {
        self.tuning.anti_entropy_ms.is_some() || (self.tuning.hints && self.hints_suffice())
    }

    /// Whether a read at ALL must leave every replica holding the same
    /// versions of its key: whenever read repair runs.
    pub fn promises_read_repair(&self) -> bool {
        self.tuning.read_repair != ReadRepair::Off
    }

    /// Whether hinted handoff alone must bring every replica to agree: a
    /// coordinator keeps a hint for every replica that did not acknowledge
    /// a write, and replays it once the replica answers. A hint is lost
    /// only with a node (a crash, or its disk), a commit that fails (the
    /// hint is not stored), a fault point (one loses the committer's
    /// session), or a limit: so no crashes, failing disks or fault points,
    /// and few enough keys that every key's hint for every target, at the
    /// most a replica can hold of a key, fits the hint limits.
    pub fn hints_suffice(&self) -> bool {
        // The limits every simulated node runs with (`sim_config`).
        let limits = CoordinatorConfig::default()
            .hinted_handoff
            .unwrap_or_default();
        let keys = self.hot_keys.saturating_add(self.cold_keys);
        let most_per_key = SIM_KEY_LIMITS.max_bytes.saturating_mul(self.nodes);
        let disk = self.disk_faults();
        !self.crashes_nodes()
            && disk.failed_permille == 0
            && disk.unknown_permille == 0
            && !self.fault_points
            && keys <= limits.max_per_target
            && keys.saturating_mul(most_per_key) <= limits.max_bytes_per_target
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

    /// What faults the run has: the schedule's name, the drawn families
    /// of a custom mix, or "script" for an explicit one.
    pub fn faults_label(&self) -> String {
        if self.script.is_some() {
            "script".into()
        } else if let Some(mix) = self.fault_mix {
            mix.label()
        } else {
            self.faults.to_string()
        }
    }

    /// A short name: "QUORUM/partitions" (with "N=3 " in front when the
    /// cluster is not the standard 5 nodes).
    pub fn name(&self) -> String {
        let nodes = if self.nodes == Scenario::default().nodes {
            String::new()
        } else {
            format!("N={} ", self.nodes)
        };
        format!("{nodes}{}/{}", self.levels_label(), self.faults_label())
    }

    /// The command that replays `seed` of this scenario: its faults and
    /// levels, then flags for what else has one and the rest as JSON
    /// (`--scenario`), all from the serde form.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!(
            "cargo sim replay --faults {} --level {} --seed {seed}",
            self.faults,
            self.levels.label()
        );
        let serde_json::Value::Object(fields) = self.to_json_value() else {
            return cmd;
        };
        let mut rest = serde_json::Map::new();
        for (key, value) in fields {
            let flag = match key.as_str() {
                "faults" | "level" => continue,
                "nodes" | "clients" | "ops" | "hot_keys" | "cold_keys" => key.replace('_', "-"),
                "overwrite" | "fault_points" if value == serde_json::Value::Bool(true) => {
                    cmd += &format!(" --{}", key.replace('_', "-"));
                    continue;
                }
                "client_levels" => {
                    for level in value.as_array().into_iter().flatten() {
                        cmd += &format!(" --client-level {}", level.as_str().unwrap_or_default());
                    }
                    continue;
                }
                _ => {
                    rest.insert(key, value);
                    continue;
                }
            };
            let text = match &value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd += &format!(" --{flag} {text}");
        }
        if !rest.is_empty() {
            cmd += &format!(" --scenario '{}'", serde_json::Value::Object(rest));
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
            .contains(r#"--scenario '{"disk":{"failed_permille":0,"unknown_permille":0}}'"#));
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

    #[test]
    fn the_json_form_is_the_standard_scenario_plus_what_differs() {
        assert_eq!(Scenario::from_json("{}").unwrap(), Scenario::default());
        let standard = Scenario::default();
        assert_eq!(standard.to_json(), "{}");
        let mut s = Scenario::standard(FaultSchedule::All, Levels::explicit(2, 2));
        s.tuning.hints = false;
        s.mix.read_percent = 60;
        assert_eq!(
            s.to_json(),
            r#"{"faults":"all","level":"R=2,W=2","mix":{"read_percent":60},"tuning":{"hints":false}}"#
        );
        assert_eq!(Scenario::from_json(&s.to_json()).unwrap(), s);
        // The replay command is built from the same form, and reads back.
        let cmd = s.replay_command(9);
        assert!(
            cmd.starts_with("cargo sim replay --faults all --level R=2,W=2 --seed 9 --scenario"),
            "{cmd}"
        );
        assert!(
            cmd.ends_with(r#"--scenario '{"mix":{"read_percent":60},"tuning":{"hints":false}}'"#),
            "{cmd}"
        );
    }

    #[test]
    fn bad_json_names_the_problem() {
        let err = |text: &str| Scenario::from_json(text).unwrap_err().to_string();
        assert!(err(r#"{"nodes":0}"#).contains("nodes = 0"));
        assert!(err(r#"{"nodez":5}"#).contains("nodez"));
        assert!(err(r#"{"level":"MOST"}"#).contains("MOST"));
        assert!(err(r#"{"mix":{"read_percent":70,"blind_percent":40}}"#).contains("more than 100"));
        assert!(err(r#"{"tuning":{"replica_timeout_ms":0}}"#).contains("replica_timeout_ms"));
        assert!(err(r#"{"fault_mix":{"calm_ms":[5,1]}}"#).contains("calm_ms"));
        let script = r#"{"nodes":3,"script":[{"at_us":0,"hold_us":5,"fault":{"crash":4}}]}"#;
        assert!(err(script).contains("n4"), "{}", err(script));
        assert!(err("[1]").contains("not a scenario"));
        let late = r#"{"script":[{"at_us":99999999999,"hold_us":5,"fault":{"crash":1}}]}"#;
        assert!(err(late).contains("at most"), "{}", err(late));
        let delay =
            r#"{"script":[{"at_us":0,"hold_us":5,"fault":{"delay":{"min_ms":9,"max_ms":3}}}]}"#;
        assert!(err(delay).contains("min < max"), "{}", err(delay));
        let refusal = |fault: &str| {
            err(&format!(
                r#"{{"script":[{{"at_us":0,"hold_us":5,"fault":{fault}}}]}}"#
            ))
        };
        for (fault, problem) in [
            (r#"{"partition":[[1,2],[2,3]]}"#, "n2 is on two sides"),
            (r#"{"partition":[[],[2,3]]}"#, "none of them empty"),
            (r#"{"partition":[[1,2,3]]}"#, "two or more sides"),
            (r#"{"one-way":{"from":1,"to":[]}}"#, "at least one node"),
            (r#"{"one-way":{"from":1,"to":[1,2]}}"#, "from itself"),
            (r#"{"clog":[3,3]}"#, "two different nodes"),
        ] {
            let message = refusal(fault);
            assert!(message.contains(problem), "{fault}: {message}");
        }
    }

    #[test]
    fn a_schedule_name_stands_for_its_fault_mix() {
        for schedule in FaultSchedule::EVERY {
            let named = Scenario::standard(schedule, Levels::same(Consistency::Quorum));
            let mixed = Scenario {
                fault_mix: Some(FaultMix::of(schedule)),
                ..named.clone()
            };
            assert_eq!(named.fault_mix(), mixed.fault_mix());
            assert_eq!(named.may_lose_disks(), schedule.disk_loss());
            assert_eq!(named.crashes_nodes(), schedule.crashes());
            assert_eq!(named.disk_faults(), mixed.disk_faults());
            assert_eq!(
                FaultMix::of(schedule).is_quiet(),
                schedule == FaultSchedule::None
            );
        }
    }

    #[test]
    fn a_script_decides_what_a_scenario_promises() {
        let mut s = Scenario::standard(FaultSchedule::All, Levels::explicit(3, 3));
        // A lost disk may happen under "all": W+R = N+1 is not enough.
        assert!(!s.promises_fresh_reads());
        s.script = Some(vec![ScriptedFault {
            at_us: 0,
            hold_us: 1_000,
            fault: Fault::Crash(2),
        }]);
        assert!(s.promises_fresh_reads());
        assert!(s.crashes_nodes());
        s.script = Some(vec![ScriptedFault {
            at_us: 0,
            hold_us: 1_000,
            fault: Fault::DiskLoss(2),
        }]);
        assert!(!s.promises_fresh_reads());
        assert_eq!(s.faults_label(), "script");
    }

    /// Hints alone promise convergence only where nothing can cost one:
    /// network faults and pauses, not crashes, failing disks, fault points,
    /// or more keys than the hint limits hold.
    #[test]
    fn hints_alone_promise_convergence_only_where_no_hint_can_be_lost() {
        let without_anti_entropy = |faults| {
            let mut s = Scenario::standard(faults, Levels::same(Consistency::Quorum));
            s.tuning.anti_entropy_ms = None;
            s
        };
        for faults in [
            FaultSchedule::None,
            FaultSchedule::Partitions,
            FaultSchedule::Pauses,
        ] {
            let mut s = without_anti_entropy(faults);
            assert!(s.promises_convergence(), "{faults}");
            s.tuning.hints = false;
            assert!(!s.promises_convergence(), "{faults} without hints");
            s.tuning.anti_entropy_ms = Some(1000);
            assert!(s.promises_convergence(), "{faults} with anti-entropy");
        }
        for faults in [
            FaultSchedule::Crashes,
            FaultSchedule::DiskLoss,
            FaultSchedule::All,
        ] {
            assert!(
                !without_anti_entropy(faults).promises_convergence(),
                "{faults}"
            );
        }
        let mut failing_disks = without_anti_entropy(FaultSchedule::Partitions);
        failing_disks.disk = Some(DiskFaults {
            failed_permille: 0,
            unknown_permille: 5,
        });
        assert!(!failing_disks.promises_convergence());
        let mut fault_points = without_anti_entropy(FaultSchedule::Partitions);
        fault_points.fault_points = true;
        assert!(!fault_points.promises_convergence());
        let mut many_keys = without_anti_entropy(FaultSchedule::Partitions);
        many_keys.cold_keys = quorumlog_core::HintLimits::DEFAULT_MAX_PER_TARGET;
        assert!(!many_keys.promises_convergence(), "more keys than hints");
    }

    #[test]
    fn swarm_draws_are_valid_varied_and_a_function_of_the_seed() {
        let draws: Vec<Scenario> = (0..2000).map(Scenario::swarm).collect();
        for (seed, s) in draws.iter().enumerate() {
            s.validate()
                .unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", s.to_json()));
            assert_eq!(&Scenario::swarm(seed as u64), s);
            assert_eq!(&Scenario::from_json(&s.to_json()).unwrap(), s);
        }
        let count = |f: &dyn Fn(&Scenario) -> bool| draws.iter().filter(|s| f(s)).count();
        let some = |what: &str, n: usize| {
            assert!(
                n > 20 && n < draws.len() - 20,
                "{what}: {n} of {}",
                draws.len()
            )
        };
        for nodes in 3..=7 {
            some(&format!("N={nodes}"), count(&|s| s.nodes == nodes));
        }
        some("W+R>N", count(&|s| s.overlapping()));
        some("hedging off", count(&|s| s.tuning.hedge_after_ms.is_none()));
        some(
            "anti-entropy off",
            count(&|s| s.tuning.anti_entropy_ms.is_none()),
        );
        some("hints off", count(&|s| !s.tuning.hints));
        for mode in [
            ReadRepair::Off,
            ReadRepair::Background,
            ReadRepair::Blocking,
        ] {
            some(
                &format!("{mode:?}"),
                count(&|s| s.tuning.read_repair == mode),
            );
        }
        some("fault points", count(&|s| s.fault_points));
        some(
            "failing disks",
            count(&|s| s.disk_faults() != DiskFaults::NONE),
        );
        some("overwrites", count(&|s| s.overwrite));
        some("padded values", count(&|s| s.mix.value_padding > 0));
        some("chained writes", count(&|s| s.mix.chain_percent > 0));
        some(
            "more keys than an anti-entropy leaf holds",
            count(&|s| s.hot_keys + s.cold_keys > LEAF_ENTRIES),
        );
        for (family, _) in FaultMix::default().weights() {
            let on = count(&|s| {
                s.fault_mix()
                    .weights()
                    .iter()
                    .any(|(f, w)| *f == family && *w > 0)
            });
            // About half the seeds turn each family on.
            assert!(on > 800 && on < 1200, "{family}: on in {on} of 2000");
        }
    }

    #[test]
    fn the_documented_fields_and_script_are_the_serde_form() {
        let doc = include_str!("../../docs/simulation.md");
        let standard = serde_json::to_value(Scenario::default()).unwrap();
        let mut rows = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            for name in line.split('|').nth(1).unwrap().split(',') {
                let name = name.trim().trim_matches('`');
                assert!(standard.get(name).is_some(), "docs name a field {name:?}");
                rows += 1;
            }
        }
        assert_eq!(
            rows,
            standard.as_object().unwrap().len(),
            "every field documented"
        );
        let block = doc
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap();
        let scripted = Scenario::from_json(block).unwrap();
        assert_eq!(scripted.script.map(|s| s.len()), Some(7));
    }
}
