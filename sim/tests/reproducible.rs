//! A seed's run depends on the seed and the scenario alone: not on which
//! thread ran it, nor on what that thread ran before, nor on how many
//! worker threads a sweep used.
#![cfg(madsim)]

use quorumlog_core::Consistency;
use quorumlog_sim::harness::run_seed;
use quorumlog_sim::scenario::{FaultSchedule, Levels, Scenario};
use quorumlog_sim::sweep::{sweep, SeedOutcome};

fn scenario() -> Scenario {
    Scenario::standard(FaultSchedule::All, Levels::same(Consistency::Quorum))
}

/// Everything a seed's report is made of, as text.
fn fingerprint(o: &SeedOutcome) -> String {
    format!(
        "seed {}\n{:?}\n{}\n{}\n{}\n{:?}",
        o.seed,
        o.broken,
        o.summary,
        o.fault_log(),
        o.history.to_jsonl(),
        o.latencies_us
    )
}

/// Seed 11, the seed both thread tests compare against, run on a thread
/// that never ran anything else.
fn seed_11_alone(scenario: &Scenario) -> quorumlog_sim::harness::RunResult {
    let scenario = scenario.clone();
    std::thread::spawn(move || run_seed(&scenario, 11))
        .join()
        .expect("seed 11 alone")
}

#[test]
fn a_seed_runs_the_same_after_other_seeds_on_the_same_thread() {
    let scenario = scenario();
    let alone = seed_11_alone(&scenario);
    let after_others = std::thread::spawn(move || {
        for seed in [3, 4, 5] {
            run_seed(&scenario, seed);
        }
        run_seed(&scenario, 11)
    })
    .join()
    .expect("seed 11 after seeds 3, 4, 5");
    assert!(!alone.faults.is_empty(), "the schedule injected nothing");
    assert_eq!(alone.fault_log(), after_others.fault_log());
    assert_eq!(alone.history.to_jsonl(), after_others.history.to_jsonl());
}

/// A run that panicked half-way (its runtime unwound with a cluster's
/// tasks alive, as a sweep catches a seed's panic) leaves nothing behind
/// on its thread for the next seed.
#[test]
fn a_seed_runs_the_same_after_a_panicked_run_on_the_same_thread() {
    let scenario = scenario();
    let alone = seed_11_alone(&scenario);
    let after_panic = std::thread::spawn(move || {
        let interrupted = scenario.clone();
        let unwound = std::panic::catch_unwind(move || {
            let runtime =
                madsim::runtime::Runtime::with_seed_and_config(3, madsim::Config::default());
            runtime.block_on(async move {
                let run = quorumlog_sim::harness::simulate(interrupted, 3);
                let midway = tokio::time::sleep(std::time::Duration::from_secs(2));
                tokio::select! {
                    _ = run => {}
                    _ = midway => panic!("a run that panics half-way"),
                }
            })
        });
        assert!(unwound.is_err(), "the interrupted run did not panic");
        run_seed(&scenario, 11)
    })
    .join()
    .expect("seed 11 after a panicked run");
    assert_eq!(alone.fault_log(), after_panic.fault_log());
    assert_eq!(alone.history.to_jsonl(), after_panic.history.to_jsonl());
}

#[test]
fn a_sweep_reports_the_same_for_any_number_of_jobs() {
    let scenario = scenario();
    let run = |jobs: usize| -> Vec<String> {
        let (outcomes, panics) = sweep(&scenario, 0..12, jobs, &|| {}, &|_| true);
        assert!(panics.is_empty(), "seeds panicked: {panics:?}");
        outcomes.iter().map(fingerprint).collect()
    };
    let one = run(1);
    assert_eq!(one.len(), 12);
    for jobs in [2, 3] {
        let many = run(jobs);
        for (a, b) in one.iter().zip(&many) {
            assert_eq!(a, b, "--jobs 1 and --jobs {jobs} differ");
        }
    }
}
