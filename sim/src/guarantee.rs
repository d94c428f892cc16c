//! The guarantees a history can keep or break, and which of them a
//! configuration promises.
use crate::check::{
    AvailabilityReport, CheckSummary, ConvergenceReport, LinVerdict, RepairReport, StoreReport,
};
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

/// What a run found beyond its history, each by its own checker.
#[derive(Debug, Clone, Copy)]
pub struct RunFindings<'a> {
    /// Acknowledged writes against what the replicas' stores hold.
    pub stores: &'a StoreReport,
    /// Keys some replica held past the limits.
    pub keys_over_limits: usize,
    /// Agreement after the heal.
    pub convergence: &'a ConvergenceReport,
    /// What the final reads at ALL left behind; `None` where read repair
    /// is not judged (it does not run).
    pub read_repair: Option<&'a RepairReport>,
    /// Refusals judged against who was really reachable.
    pub availability: &'a AvailabilityReport,
}

/// Which guarantees a run broke, in order: its history's ([`broken`]) and
/// those only the run itself shows (the stores, the keys' sizes, the
/// replicas after the heal, the nemesis's ground truth).
pub fn broken_by_run(summary: &CheckSummary, run: &RunFindings<'_>) -> Vec<Guarantee> {
    let mut broken = broken(summary);
    // An acknowledged write no store holds is lost, whatever the final
    // reads returned.
    if !run.stores.is_ok() && !broken.contains(&Guarantee::NoLostUpdates) {
        broken.push(Guarantee::NoLostUpdates);
    }
    if run.keys_over_limits > 0 {
        broken.push(Guarantee::BoundedKeys);
    }
    if !run.convergence.is_ok() {
        broken.push(Guarantee::Converges);
    }
    if run.read_repair.is_some_and(|report| !report.is_ok()) {
        broken.push(Guarantee::ReadRepairs);
    }
    if !run.availability.is_ok() {
        broken.push(Guarantee::Available);
    }
    broken.sort();
    broken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Actor, Clock, Dot, Event, History, ObservedVersion, OpKind, Outcome};
    use crate::scenario::{FaultSchedule, Levels};
    use quorumlog_core::Consistency;

    /// Replicas a level asks of `n`, by this test's own arithmetic.
    fn asked(level: Consistency, n: usize) -> usize {
        match level {
            Consistency::One => 1,
            Consistency::Quorum => n / 2 + 1,
            Consistency::All => n,
            Consistency::Count(k) => k,
        }
    }

    /// The standard levels under every fault schedule, and 500 swarm draws.
    fn scenarios() -> Vec<Scenario> {
        let mut all: Vec<Scenario> = (0..500).map(Scenario::swarm).collect();
        let levels = [
            Levels::same(Consistency::One),
            Levels::same(Consistency::Quorum),
            Levels::same(Consistency::All),
            Levels::explicit(1, 5),
            Levels::explicit(2, 2),
        ];
        for levels in levels {
            for faults in FaultSchedule::EVERY {
                for overwrite in [false, true] {
                    let mut s = Scenario::standard(faults, levels);
                    s.overwrite = overwrite;
                    all.push(s);
                }
            }
        }
        all
    }

    /// What a configuration promises is the contract the verdicts judge
    /// by: fresh reads where every read quorum meets every write quorum
    /// (by one replica more when a disk may be lost, since a write seen
    /// by one replica only may go with its disk), durability unless writes
    /// overwrite or one replica alone may acknowledge a write and then
    /// lose its disk, well-formed answers, bounded keys and availability
    /// always, linearizability never.
    #[test]
    fn each_configuration_promises_what_its_quorums_can_keep() {
        for s in scenarios() {
            let n = s.nodes;
            let read = (0..s.clients)
                .map(|c| asked(s.levels_of(c).read, n))
                .min()
                .unwrap();
            let write = (0..s.clients)
                .map(|c| asked(s.levels_of(c).write, n))
                .min()
                .unwrap();
            let lose_disks = s.may_lose_disks();
            let label = s.to_json();
            assert_eq!(
                Guarantee::NoStaleReads.promised_by(&s),
                read + write > n + usize::from(lose_disks),
                "{label}"
            );
            assert_eq!(
                Guarantee::NoLostUpdates.promised_by(&s),
                !s.overwrite && (!lose_disks || write >= 2),
                "{label}"
            );
            for always in [
                Guarantee::WellFormedReads,
                Guarantee::BoundedKeys,
                Guarantee::Available,
            ] {
                assert!(always.promised_by(&s), "{always}: {label}");
            }
            assert!(!Guarantee::Linearizable.promised_by(&s), "{label}");
        }
    }

    /// A clock over incarnation-0 actors: `[(node, counter)]`.
    fn clock(entries: &[(u32, u64)]) -> Clock {
        entries.iter().map(|&(n, c)| (Actor::node(n), c)).collect()
    }

    fn version(value: &str, node: u32, counter: u64, context: &[(u32, u64)]) -> ObservedVersion {
        ObservedVersion {
            value: value.into(),
            dot: Some(Dot::new(Actor::node(node), counter)),
            context: Some(clock(context)),
        }
    }

    /// One operation of a one-key history: `(client, kind, value sent,
    /// context sent, start, end, what it answered)`, where a write answers
    /// with the version it reports and a read with its siblings.
    type Op<'a> = (
        u32,
        OpKind,
        Option<&'a str>,
        &'a [(u32, u64)],
        u64,
        u64,
        Vec<ObservedVersion>,
    );

    /// A one-key history of `ops`, every one answered.
    fn history(ops: &[Op<'_>]) -> History {
        let mut history = History::default();
        for (id, (client, op, value, context, start, end, answer)) in ops.iter().enumerate() {
            let id = id as u64;
            history.push(Event::Invoke {
                id,
                client: *client,
                time_us: *start,
                key: "k".into(),
                op: *op,
                value: value.map(str::to_string),
                context: Some(clock(context)),
                level: None,
                r#final: false,
                overwrite: false,
                context_from: None,
            });
            let (values, version) = match op {
                OpKind::Read => (answer.clone(), None),
                _ => (Vec::new(), answer.first().cloned()),
            };
            history.push(Event::Complete {
                id,
                client: *client,
                time_us: *end,
                outcome: Outcome::Ok,
                values,
                version,
                context: None,
                error: None,
                invalid: false,
            });
        }
        history
    }

    /// Two clients' writes, both acknowledged under dot (1, 1), then `then`.
    fn writes_under_one_dot(then: &[Op<'_>]) -> History {
        let mut ops: Vec<Op<'_>> = vec![
            (
                1,
                OpKind::Write,
                Some("a"),
                &[],
                0,
                10,
                vec![version("a", 1, 1, &[])],
            ),
            (
                2,
                OpKind::Write,
                Some("b"),
                &[],
                0,
                10,
                vec![version("b", 1, 1, &[])],
            ),
        ];
        ops.extend_from_slice(then);
        history(&ops)
    }

    /// A single stale read breaks fresh reads: a read that began after a
    /// write was acknowledged and returned nothing.
    #[test]
    fn one_stale_read_breaks_fresh_reads() {
        let a = version("a", 1, 1, &[]);
        let stale = history(&[
            (1, OpKind::Write, Some("a"), &[], 0, 10, vec![a.clone()]),
            (2, OpKind::Read, None, &[], 20, 30, vec![]),
            (2, OpKind::Read, None, &[], 40, 50, vec![a]),
        ]);
        let summary = crate::check::check_history(&stale);
        assert!(
            broken(&summary).contains(&Guarantee::NoStaleReads),
            "{summary}"
        );
    }

    /// A write acknowledged as another value than the one its client sent
    /// is a malformed answer, whatever else the history shows.
    #[test]
    fn a_misreported_write_breaks_well_formed_answers() {
        // No read: nothing but the write's own answer is malformed.
        let misreported = history(&[(
            1,
            OpKind::Write,
            Some("a"),
            &[],
            0,
            10,
            vec![version("b", 1, 1, &[])],
        )]);
        let summary = crate::check::check_history(&misreported);
        assert!(summary.staleness.reads_are_well_formed(), "{summary}");
        assert!(summary.misreported_writes > 0, "{summary}");
        assert!(broken(&summary).contains(&Guarantee::WellFormedReads));
    }

    /// Two acknowledged writes reported under one dot: one of them cannot
    /// be held apart from the other, so durability is broken even though
    /// the final read returns a version under that dot.
    #[test]
    fn two_writes_acknowledged_under_one_dot_break_durability() {
        let reused = writes_under_one_dot(&[(
            3,
            OpKind::Read,
            None,
            &[],
            20,
            30,
            vec![version("a", 1, 1, &[])],
        )]);
        let summary = crate::check::check_history(&reused);
        assert!(summary.reused_dots > 0, "{summary}");
        assert!(
            broken(&summary).contains(&Guarantee::NoLostUpdates),
            "{summary}"
        );
    }

    /// A run that found nothing beyond its history: every report clean.
    struct CleanRun {
        stores: StoreReport,
        convergence: ConvergenceReport,
        read_repair: RepairReport,
        availability: AvailabilityReport,
    }

    impl CleanRun {
        fn new() -> Self {
            CleanRun {
                stores: StoreReport {
                    replicas: 5,
                    acknowledged_writes: 1,
                    held: 1,
                    ..StoreReport::default()
                },
                convergence: ConvergenceReport {
                    converged_after_ms: Some(300),
                    limit_ms: 20_000,
                    ..ConvergenceReport::default()
                },
                read_repair: RepairReport {
                    keys_read: 1,
                    ..RepairReport::default()
                },
                availability: AvailabilityReport::default(),
            }
        }

        fn findings(&self) -> RunFindings<'_> {
            RunFindings {
                stores: &self.stores,
                keys_over_limits: 0,
                convergence: &self.convergence,
                read_repair: Some(&self.read_repair),
                availability: &self.availability,
            }
        }
    }

    /// The summary of a history that kept every guarantee.
    fn clean_summary() -> CheckSummary {
        let a = version("a", 1, 1, &[]);
        let summary = crate::check::check_history(&history(&[
            (1, OpKind::Write, Some("a"), &[], 0, 10, vec![a.clone()]),
            (2, OpKind::Read, None, &[], 20, 30, vec![a]),
        ]));
        assert!(broken(&summary).is_empty(), "{summary}");
        summary
    }

    #[test]
    fn a_run_that_found_nothing_breaks_nothing() {
        let run = CleanRun::new();
        assert_eq!(broken_by_run(&clean_summary(), &run.findings()), []);
    }

    /// An acknowledged write that no replica's store holds is lost, even
    /// when every read of the history looked right.
    #[test]
    fn an_acknowledged_write_on_no_store_breaks_durability() {
        let mut run = CleanRun::new();
        run.stores.held = 0;
        run.stores.missing_writes = 1;
        assert_eq!(
            broken_by_run(&clean_summary(), &run.findings()),
            [Guarantee::NoLostUpdates]
        );
    }

    #[test]
    fn one_key_past_its_limits_breaks_bounded_keys() {
        let run = CleanRun::new();
        let findings = RunFindings {
            keys_over_limits: 1,
            ..run.findings()
        };
        assert_eq!(
            broken_by_run(&clean_summary(), &findings),
            [Guarantee::BoundedKeys]
        );
    }

    #[test]
    fn replicas_apart_after_the_heal_break_convergence() {
        let mut run = CleanRun::new();
        run.convergence.converged_after_ms = None;
        run.convergence.keys_differing = 1;
        assert_eq!(
            broken_by_run(&clean_summary(), &run.findings()),
            [Guarantee::Converges]
        );
    }

    /// Replicas a final read at ALL left apart break read repair where it
    /// is judged; where it is not (no report), nothing is broken.
    #[test]
    fn replicas_a_read_left_apart_break_read_repair_where_it_is_judged() {
        let mut run = CleanRun::new();
        run.read_repair.keys_differing = 1;
        assert_eq!(
            broken_by_run(&clean_summary(), &run.findings()),
            [Guarantee::ReadRepairs]
        );
        let unjudged = RunFindings {
            read_repair: None,
            ..run.findings()
        };
        assert_eq!(broken_by_run(&clean_summary(), &unjudged), []);
    }

    #[test]
    fn one_refusal_while_reachable_breaks_availability() {
        let mut run = CleanRun::new();
        run.availability.refused = 1;
        assert_eq!(
            broken_by_run(&clean_summary(), &run.findings()),
            [Guarantee::Available]
        );
    }

    /// What the history broke stays broken, beside what the run found,
    /// each once and in order.
    #[test]
    fn what_a_run_found_joins_what_its_history_broke() {
        let a = version("a", 1, 1, &[]);
        let stale = crate::check::check_history(&history(&[
            (1, OpKind::Write, Some("a"), &[], 0, 10, vec![a.clone()]),
            (2, OpKind::Read, None, &[], 20, 30, vec![]),
            (2, OpKind::Read, None, &[], 40, 50, vec![a]),
        ]));
        let mut run = CleanRun::new();
        run.stores.missing_writes = 1;
        run.availability.refused = 2;
        let findings = RunFindings {
            keys_over_limits: 3,
            ..run.findings()
        };
        // (A read that missed an acknowledged write is not linearizable
        // either.)
        assert_eq!(
            broken_by_run(&stale, &findings),
            [
                Guarantee::NoStaleReads,
                Guarantee::NoLostUpdates,
                Guarantee::Linearizable,
                Guarantee::BoundedKeys,
                Guarantee::Available
            ]
        );
        // Durability broken by the history and by the stores: listed once.
        let reused = crate::check::check_history(&writes_under_one_dot(&[]));
        assert!(
            broken(&reused).contains(&Guarantee::NoLostUpdates),
            "{reused}"
        );
        let durability = broken_by_run(&reused, &run.findings());
        assert_eq!(
            durability
                .iter()
                .filter(|g| **g == Guarantee::NoLostUpdates)
                .count(),
            1,
            "{durability:?}"
        );
    }

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
