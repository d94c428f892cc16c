//! A seed's run depends on the seed and the scenario alone: not on which
//! thread ran it, nor on what that thread ran before, nor on how many
//! worker threads a sweep used.
#![cfg(madsim)]

use quorumlog_core::Consistency;
use quorumlog_sim::harness::run_seed;
use quorumlog_sim::scenario::{FaultSchedule, Levels, Scenario};
use quorumlog_sim::sweep::{sweep, sweep_totals, SeedOutcome};

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

/// A sweep that sums its seeds as they finish: its figures are what the
/// seeds' own outcomes add up to, whatever order the workers finished
/// them in, and only the outcomes it was asked to keep come back, whole
/// and in seed order.
#[test]
fn summed_figures_are_the_seeds_own_for_any_number_of_jobs() {
    let scenario = scenario();
    let seeds = 0..12;
    let (outcomes, panics) = sweep(&scenario, seeds.clone(), 1, &|| {}, &|_| true);
    assert!(panics.is_empty(), "seeds panicked: {panics:?}");
    // Added up here field by field, from each seed's own outcome.
    let mut outcome_counts = std::collections::BTreeMap::<String, usize>::new();
    let mut fault_counts = std::collections::BTreeMap::<String, usize>::new();
    for o in &outcomes {
        for (kind, n) in &o.stats.outcomes {
            *outcome_counts.entry(kind.clone()).or_default() += n;
        }
        for (kind, n) in &o.stats.faults {
            *fault_counts.entry(kind.clone()).or_default() += n;
        }
    }
    let mut agreement: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| o.convergence.converged_after_ms)
        .collect();
    agreement.sort_unstable();
    let commits: u64 = outcomes.iter().map(|o| o.stats.disk.commits).sum();
    let odd = |o: &SeedOutcome| o.seed % 2 == 1;
    for jobs in [1, 2, 3] {
        let summed = sweep_totals(&|_| scenario.clone(), seeds.clone(), jobs, 16, &|| {}, &odd);
        let figures = &summed.figures;
        assert_eq!(figures.runs, outcomes.len(), "--jobs {jobs}");
        assert_eq!(
            figures.operations,
            outcomes.iter().map(|o| o.stats.operations).sum::<usize>()
        );
        assert!(figures.operations > 0 && !fault_counts.is_empty());
        assert_eq!(figures.outcomes, outcome_counts, "--jobs {jobs}");
        assert_eq!(figures.faults, fault_counts, "--jobs {jobs}");
        assert_eq!(figures.disk.commits, commits, "--jobs {jobs}");
        assert_eq!(
            figures.stale_reads,
            outcomes
                .iter()
                .map(|o| o.summary.stale_reads)
                .sum::<usize>()
        );
        assert_eq!(
            figures.missing_writes,
            outcomes
                .iter()
                .map(|o| o.stores.missing_writes)
                .sum::<usize>()
        );
        assert_eq!(figures.agreement_ms, agreement, "--jobs {jobs}");
        assert!(summed.panics.is_empty());
        let kept: Vec<u64> = summed.kept.iter().map(|o| o.seed).collect();
        assert_eq!(kept, vec![1, 3, 5, 7, 9, 11], "--jobs {jobs}");
        for o in &summed.kept {
            let whole = &outcomes[o.seed as usize];
            assert!(!o.history.to_jsonl().is_empty());
            assert_eq!(fingerprint(o), fingerprint(whole), "--jobs {jobs}");
        }
    }
}
