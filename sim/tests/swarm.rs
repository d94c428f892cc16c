//! Swarm testing (every seed draws its own configuration), explicit fault
//! scripts, and shrinking a failing seed to a minimal schedule.
#![cfg(madsim)]

use quorumlog_core::Consistency;
use quorumlog_sim::fault::Fault;
use quorumlog_sim::guarantee::Guarantee;
use quorumlog_sim::scenario::{FaultSchedule, Levels, Scenario, ScriptedFault};
use quorumlog_sim::seeds::SeedFile;
use quorumlog_sim::shrink::{script_of, shrink, ShrinkError};
use quorumlog_sim::sweep::{default_jobs, run_and_check, sweep_each};
use std::path::Path;

/// Seeds of the swarm sweep every CI run makes.
const SWARM_SEEDS: std::ops::Range<u64> = 0..200;

#[test]
fn a_swarm_sweep_keeps_every_promise_its_configurations_make() {
    let (outcomes, panics) = sweep_each(
        &Scenario::swarm,
        SWARM_SEEDS,
        default_jobs(),
        &|| {},
        &|o| !o.failures().is_empty(),
    );
    assert!(panics.is_empty(), "swarm seeds panicked: {panics:?}");
    for o in &outcomes {
        assert_eq!(
            o.scenario,
            Scenario::swarm(o.seed),
            "a seed ran its own draw"
        );
        let failures = o.failures();
        assert!(
            failures.is_empty(),
            "swarm seed {} broke {failures:?}; drew {}; replay: cargo sim replay --swarm --seed {}",
            o.seed,
            o.scenario.to_json(),
            o.seed
        );
    }
    // The sweep exercised what the draws vary: levels that promise fresh
    // reads and levels that do not, and the weak ones were caught.
    let fresh = outcomes
        .iter()
        .filter(|o| o.scenario.promises_fresh_reads())
        .count();
    assert!(
        fresh > 40 && fresh < outcomes.len() - 40,
        "{fresh} promise fresh reads"
    );
    let stale_where_allowed = outcomes
        .iter()
        .filter(|o| !o.scenario.promises_fresh_reads())
        .filter(|o| o.broken.contains(&Guarantee::NoStaleReads))
        .count();
    assert!(stale_where_allowed > 0, "no weak configuration read stale");
    let faults: usize = outcomes.iter().flat_map(|o| o.stats.faults.values()).sum();
    assert!(faults > outcomes.len(), "only {faults} faults in the sweep");
}

#[test]
fn a_script_is_played_as_written() {
    let mut scenario = Scenario::standard(FaultSchedule::All, Levels::same(Consistency::Quorum));
    scenario.script = Some(vec![
        ScriptedFault {
            at_us: 200_000,
            hold_us: 800_000,
            fault: Fault::Partition(vec![vec![1, 2], vec![3, 4, 5]]),
        },
        // Overlaps the partition and outlives it: healing the partition
        // must leave this link cut.
        ScriptedFault {
            at_us: 500_000,
            hold_us: 1_000_000,
            fault: Fault::OneWay {
                from: 1,
                to: vec![3],
            },
        },
        ScriptedFault {
            at_us: 300_000,
            hold_us: 400_000,
            fault: Fault::Crash(4),
        },
        // Long after the workload: never injected, and the run does not
        // wait for it.
        ScriptedFault {
            at_us: 3_000_000_000,
            hold_us: 1_000,
            fault: Fault::Crash(2),
        },
    ]);
    let outcome = run_and_check(&scenario, 3);
    assert!(
        outcome.stats.simulated_ms < 600_000,
        "the run waited {} ms for a fault after its workload",
        outcome.stats.simulated_ms
    );
    let played = script_of(&outcome.fault_events);
    let mut expected = scenario.script.clone().unwrap();
    expected.retain(|f| f.at_us < 3_000_000_000);
    expected.sort_by_key(|f| f.at_us);
    assert_eq!(played, expected, "log:\n{}", outcome.fault_log());
    assert!(outcome.failures().is_empty(), "{:?}", outcome.failures());
    // The cut links are what the availability judge was told about.
    assert!(outcome.fault_log().contains("one-way n1 -/-> [n3]"));
}

/// Shrinking starts from a seed's own fault log played back as a script:
/// that must be the same run, or a failing seed may pass once scripted and
/// cannot be shrunk. The nemesis playing it must wake when the drawn one
/// woke and do what it did, to the microsecond: every client operation
/// then sees the same cluster and ends the same way.
#[test]
fn a_seeds_fault_log_played_as_a_script_replays_the_seed() {
    let standard = Scenario::standard(FaultSchedule::All, Levels::same(Consistency::Quorum));
    let runs = (0..16)
        .map(|seed| (standard.clone(), seed))
        .chain((0..16).map(|seed| (Scenario::swarm(seed), seed)));
    let mut differing = Vec::new();
    for (scenario, seed) in runs {
        let drawn = run_and_check(&scenario, seed);
        let scripted = Scenario {
            script: Some(script_of(&drawn.fault_events)),
            disk: Some(scenario.disk_faults()),
            ..scenario.clone()
        };
        let replayed = run_and_check(&scripted, seed);
        // Past the header, which names the scenario (with its script).
        let same_history = replayed.history.events.get(1..) == drawn.history.events.get(1..);
        if !same_history
            || replayed.fault_log() != drawn.fault_log()
            || replayed.broken != drawn.broken
        {
            differing.push(format!("{} seed {seed}", scenario.name()));
        }
    }
    assert!(
        differing.is_empty(),
        "runs whose fault log, replayed as a script, ran differently: {differing:?}"
    );
}

#[test]
fn a_failing_seed_shrinks_to_a_smaller_schedule_that_still_fails() {
    // ONE under partitions reads stale (not promised, so shrunk by name).
    let scenario = Scenario::standard(FaultSchedule::Partitions, Levels::same(Consistency::One));
    let seed = 3;
    let report = shrink(&scenario, seed, Some(Guarantee::NoStaleReads), &|_| {}).unwrap();
    assert_eq!(report.target, Guarantee::NoStaleReads);
    let (before, after) = (report.before, report.after);
    assert!(after.faults <= before.faults && after.operations <= before.operations);
    assert!(after.clients <= before.clients && after.keys <= before.keys);
    assert!(
        after.operations < before.operations / 2,
        "{before} -> {after}"
    );
    // Every fault it kept is one the seed really injected.
    let original = script_of(&run_and_check(&scenario, seed).fault_events);
    for kept in report.scenario.script.iter().flatten() {
        assert!(
            original
                .iter()
                .any(|f| f.fault == kept.fault && f.at_us == kept.at_us),
            "{kept:?} was not in the original run"
        );
    }
    // The schedule file replays to the same break on its own.
    let text = SeedFile::record(&report.scenario, report.seed, &report.broken, None);
    let file = SeedFile::parse(Path::new("shrunk.json"), &text).unwrap();
    let replay = run_and_check(&file.scenario, file.seed);
    assert!(replay.broken.contains(&Guarantee::NoStaleReads));
    assert_eq!(replay.broken, report.broken);
    // Shrinking is deterministic.
    let again = shrink(&scenario, seed, Some(Guarantee::NoStaleReads), &|_| {}).unwrap();
    assert_eq!(again.scenario, report.scenario);
}

#[test]
fn shrinking_a_seed_that_keeps_its_promises_says_so() {
    let scenario = Scenario::standard(FaultSchedule::None, Levels::same(Consistency::Quorum));
    scenario.validate().unwrap();
    let small = Scenario {
        operations: 60,
        ..scenario
    };
    assert!(run_and_check(&small, 1).broken.is_empty());
    match shrink(&small, 1, None, &|_| {}) {
        Err(e @ ShrinkError::NotFailing { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("keeps every promised guarantee"),
                "{message}"
            );
            assert!(message.contains("breaks no guarantee at all"), "{message}");
        }
        other => panic!("expected NotFailing, got {:?}", other.map(|r| r.after)),
    }
    match shrink(&small, 1, Some(Guarantee::NoLostUpdates), &|_| {}) {
        Err(e @ ShrinkError::NotBroken { .. }) => {
            assert!(e.to_string().contains("does not break"), "{e}")
        }
        other => panic!("expected NotBroken, got {:?}", other.map(|r| r.after)),
    }

    // ONE promises no fresh reads: a seed whose reads were stale keeps its
    // promises, and the error names what it broke and how to shrink that.
    let one = Scenario {
        operations: 100,
        ..Scenario::standard(FaultSchedule::Partitions, Levels::same(Consistency::One))
    };
    let seed = (0..20)
        .find(|&seed| {
            run_and_check(&one, seed)
                .broken
                .contains(&Guarantee::NoStaleReads)
        })
        .expect("a seed of ONE under partitions with a stale read");
    match shrink(&one, seed, None, &|_| {}) {
        Err(e @ ShrinkError::NotFailing { .. }) => {
            let message = e.to_string();
            assert!(message.contains("does not promise"), "{message}");
            assert!(message.contains(Guarantee::NoStaleReads.key()), "{message}");
            assert!(message.contains("--guarantee"), "{message}");
        }
        other => panic!("expected NotFailing, got {:?}", other.map(|r| r.after)),
    }
}

/// The nemesis draws only faults a script may hold: a shrunk schedule
/// made of them replays. (A script written by hand is held to the same
/// shape when it is read.)
#[test]
fn every_drawn_fault_is_well_formed() {
    let mut drawn = 0;
    for seed in 0..40 {
        let scenario = Scenario::swarm(seed);
        for scripted in script_of(&run_and_check(&scenario, seed).fault_events) {
            assert_eq!(
                scripted.fault.shape_error(),
                None,
                "seed {seed}: {}",
                scripted.fault
            );
            drawn += 1;
        }
    }
    assert!(drawn > 40, "only {drawn} faults drawn over 40 seeds");
}
