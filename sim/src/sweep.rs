//! Run a scenario over a range of seeds (on every core), check each
//! history, and judge it against what the scenario's levels promise.
use crate::check::{
    check_availability, check_history_and_stores_ops, check_read_repair, AvailabilityReport,
    CheckSummary, ConvergenceReport, RepairReport, StoreReport,
};
pub use crate::guarantee::{broken, Guarantee};
use crate::guarantee::{broken_by_run, RunFindings};
use crate::harness::disk::DiskStats;
use crate::harness::{run_seed, RunStats};
use crate::history::History;
use crate::isolate::{run_isolated, MAX_PARKED};
use crate::scenario::Scenario;
use std::collections::BTreeMap;
use std::ops::Range;

/// The result of one seed.
pub struct SeedOutcome {
    pub seed: u64,
    /// What ran.
    pub scenario: Scenario,
    pub stats: RunStats,
    pub summary: CheckSummary,
    /// Every acknowledged write still on some replica's store (or
    /// superseded by a client): judged on the stores the harness owns.
    pub stores: StoreReport,
    /// The liveness phase: whether the replicas agreed, and how soon.
    pub convergence: ConvergenceReport,
    /// Whether the replicas agreed on each key after its final read at
    /// ALL; `None` with read repair off, which promises nothing of it.
    pub read_repair: Option<RepairReport>,
    /// Operations refused while the replicas they needed were reachable.
    pub availability: AvailabilityReport,
    pub broken: Vec<Guarantee>,
    /// Latencies (simulated µs) of successful non-final operations.
    pub latencies_us: Vec<u64>,
    pub history: History,
    /// The faults injected, as the nemesis logged them.
    pub fault_events: Vec<crate::fault::FaultEvent>,
}

impl SeedOutcome {
    /// The fault log, one line per event.
    pub fn fault_log(&self) -> String {
        crate::fault::log_text(&self.fault_events)
    }

    /// Broken guarantees that the scenario promised: real failures.
    pub fn failures(&self) -> Vec<Guarantee> {
        self.broken
            .iter()
            .copied()
            .filter(|g| g.promised_by(&self.scenario))
            .collect()
    }
}

/// A seed whose run panicked (a bug in the system or the harness).
#[derive(Debug, Clone)]
pub struct SeedPanic {
    pub seed: u64,
    pub scenario: Scenario,
    pub message: String,
}

pub fn run_and_check(scenario: &Scenario, seed: u64) -> SeedOutcome {
    let run = run_seed(scenario, seed);
    // Paired once, borrowed by every checker.
    let ops = run.history.operation_refs();
    let (summary, stores) = check_history_and_stores_ops(&ops, &run.stores);
    // Judged only where read repair runs: without it, nothing makes a
    // read leave the replicas agreeing.
    let read_repair = scenario
        .promises_read_repair()
        .then(|| check_read_repair(&ops, &run.stores));
    let availability = check_availability(&ops, &run.ground_truth);
    let broken = broken_by_run(
        &summary,
        &RunFindings {
            stores: &stores,
            keys_over_limits: run.stats.keys_over_limits,
            convergence: &run.convergence,
            read_repair: read_repair.as_ref(),
            availability: &availability,
        },
    );
    let latencies_us = ops
        .iter()
        .filter(|op| op.is_ok() && !op.is_final)
        .filter_map(|op| op.complete_us.map(|end| end.saturating_sub(op.invoke_us)))
        .collect();
    SeedOutcome {
        seed,
        scenario: scenario.clone(),
        stores,
        broken,
        fault_events: run.faults.clone(),
        convergence: run.convergence,
        read_repair,
        availability,
        stats: run.stats,
        summary,
        latencies_us,
        history: run.history,
    }
}

/// Run every seed of `seeds` on `jobs` threads (each seed in its own
/// runtime, so parallelism cannot change a result), calling `progress`
/// after each. `keep` decides, per outcome, whether to keep its history.
pub fn sweep(
    scenario: &Scenario,
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn() + Sync),
    keep: &(dyn Fn(&SeedOutcome) -> bool + Sync),
) -> (Vec<SeedOutcome>, Vec<SeedPanic>) {
    sweep_each(&|_| scenario.clone(), seeds, jobs, progress, keep)
}

/// [`sweep`] where every seed runs its own scenario, `scenario_of(seed)`
/// (swarm testing); each outcome carries it.
///
/// A seed that panics is reported with its message, and the others still
/// run ([`crate::isolate`]); in the simulator's own build, which aborts on
/// a panic, the sweep stops after [`MAX_PARKED`] panicking seeds,
/// reporting every seed up to the last of them (fewer runs than seeds
/// tell the caller so).
pub fn sweep_each(
    scenario_of: &(dyn Fn(u64) -> Scenario + Sync),
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn() + Sync),
    keep: &(dyn Fn(&SeedOutcome) -> bool + Sync),
) -> (Vec<SeedOutcome>, Vec<SeedPanic>) {
    sweep_each_stopping(scenario_of, seeds, jobs, MAX_PARKED, progress, keep)
}

/// [`sweep_each`], stopping after `max_panics` panicking seeds (at least
/// 1) where panics abort rather than unwind.
pub fn sweep_each_stopping(
    scenario_of: &(dyn Fn(u64) -> Scenario + Sync),
    seeds: Range<u64>,
    jobs: usize,
    max_panics: usize,
    progress: &(dyn Fn() + Sync),
    keep: &(dyn Fn(&SeedOutcome) -> bool + Sync),
) -> (Vec<SeedOutcome>, Vec<SeedPanic>) {
    sweep_folding(
        scenario_of,
        seeds,
        jobs,
        max_panics,
        progress,
        |mut outcome| {
            if !keep(&outcome) {
                outcome.history = History::new();
            }
            Some(outcome)
        },
    )
}

/// A whole sweep's figures, summed seed by seed as each finishes: a
/// sweep's report needs every seed's figures, but its outcomes whole only
/// for the seeds it names (the failures). Memory then grows with the
/// seeds kept, not with the seeds run: an outcome is 2 KB before its
/// history and its latencies, so a million-seed sweep that kept every
/// outcome held gigabytes.
///
/// Every figure is a sum, a count or a sorted list, so a sweep's figures
/// are the same whichever order its seeds finished in, for any `--jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepFigures {
    /// Seeds that ran to the end (panicked ones are in [`SweepTotals::panics`]).
    pub runs: usize,
    pub operations: usize,
    /// Operation outcomes by name (`ok`, `timeout`, ...), summed.
    pub outcomes: BTreeMap<String, usize>,
    /// Faults injected by kind, summed.
    pub faults: BTreeMap<String, usize>,
    pub disk: DiskStats,
    pub stale_reads: usize,
    pub lost_updates: usize,
    /// Acknowledged writes reported as another write than the one sent.
    pub misreported_writes: usize,
    /// Acknowledged writes found on no replica's store.
    pub missing_writes: usize,
    /// Seeds whose history had no linearization.
    pub not_linearizable: usize,
    /// Operations refused while the replicas they needed were reachable.
    pub refused_while_reachable: usize,
    /// Seeds whose scenario promises fresh reads (a swarm draws each).
    pub promising_fresh_reads: usize,
    /// Each converged seed's time to agreement after the heal (ms); sorted
    /// once the sweep has ended ([`sweep_totals`]).
    pub agreement_ms: Vec<u64>,
}

/// What [`sweep_totals`] gives back.
pub struct SweepTotals {
    /// Every seed's figures, summed.
    pub figures: SweepFigures,
    /// The outcomes `keep` chose, whole, in seed order.
    pub kept: Vec<SeedOutcome>,
    /// Seeds that panicked, in seed order.
    pub panics: Vec<SeedPanic>,
}

impl SweepFigures {
    /// Add one seed's figures.
    pub fn add(&mut self, o: &SeedOutcome) {
        self.runs += 1;
        self.operations += o.stats.operations;
        for (kind, count) in &o.stats.outcomes {
            *self.outcomes.entry(kind.clone()).or_default() += count;
        }
        for (kind, count) in &o.stats.faults {
            *self.faults.entry(kind.clone()).or_default() += count;
        }
        self.disk = self.disk.plus(o.stats.disk);
        self.stale_reads += o.summary.stale_reads;
        self.lost_updates += o.summary.lost_updates;
        self.misreported_writes += o.summary.misreported_writes;
        self.missing_writes += o.stores.missing_writes;
        self.not_linearizable += usize::from(o.broken.contains(&Guarantee::Linearizable));
        self.refused_while_reachable += o.availability.refused;
        self.promising_fresh_reads += usize::from(o.scenario.promises_fresh_reads());
        self.agreement_ms.extend(o.convergence.converged_after_ms);
    }
}

/// Run every seed of `seeds` as [`sweep_each_stopping`] does, summing
/// every seed's figures into the totals as it finishes and keeping whole
/// only the outcomes `keep` chooses.
pub fn sweep_totals(
    scenario_of: &(dyn Fn(u64) -> Scenario + Sync),
    seeds: Range<u64>,
    jobs: usize,
    max_panics: usize,
    progress: &(dyn Fn() + Sync),
    keep: &(dyn Fn(&SeedOutcome) -> bool + Sync),
) -> SweepTotals {
    let mut figures = SweepFigures::default();
    let (kept, panics) = sweep_folding(scenario_of, seeds, jobs, max_panics, progress, |outcome| {
        figures.add(&outcome);
        keep(&outcome).then_some(outcome)
    });
    figures.agreement_ms.sort_unstable();
    SweepTotals {
        figures,
        kept,
        panics,
    }
}

/// The sweep itself: `fold` sees each outcome on the calling thread as
/// its seed finishes (in whatever order the workers finish them) and
/// gives back what to keep of it; what it keeps comes back in seed order,
/// with the panics.
fn sweep_folding(
    scenario_of: &(dyn Fn(u64) -> Scenario + Sync),
    seeds: Range<u64>,
    jobs: usize,
    max_panics: usize,
    progress: &(dyn Fn() + Sync),
    mut fold: impl FnMut(Box<SeedOutcome>) -> Option<Box<SeedOutcome>>,
) -> (Vec<SeedOutcome>, Vec<SeedPanic>) {
    let items = seeds.clone().map(|seed| (seed, scenario_of(seed)));
    // Boxed, so that a seed whose outcome is not kept holds one word in
    // the run's list of results rather than the outcome's 2 KB.
    let run = run_isolated(
        items,
        jobs,
        max_panics,
        |(seed, scenario): (u64, Scenario)| Some(Box::new(run_and_check(&scenario, seed))),
        |result| {
            if let Ok(slot) = result {
                *slot = slot.take().and_then(&mut fold);
            }
            progress();
        },
    );
    let mut outcomes = Vec::new();
    let mut panics = Vec::new();
    for (seed, result) in seeds.zip(run.results) {
        match result {
            Ok(Some(outcome)) => outcomes.push(*outcome),
            Ok(None) => {}
            Err(message) => panics.push(SeedPanic {
                seed,
                scenario: scenario_of(seed),
                message,
            }),
        }
    }
    (outcomes, panics)
}

/// CPU time this process has used so far (user and system, every thread,
/// finished ones included), from `getrusage`, to the microsecond; None
/// where that fails. For rates per CPU-second: on a shared machine a
/// sweep's wall time says little. (`/proc/self/stat` counts in clock
/// ticks, a hundredth of a second: a short sweep read as no time at all.)
pub fn process_cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointer it is given,
    // which points at one; RUSAGE_SELF is always a valid target.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so it filled the struct (and a zeroed
    // rusage is a valid one anyway: plain integers).
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Default parallelism: the machine's cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::process_cpu_seconds;

    /// A clock tick is a hundredth of a second: a measure in ticks moves
    /// by 0.01 at a time, and reads a sweep shorter than that as none.
    #[test]
    fn cpu_time_is_measured_finer_than_a_clock_tick() {
        let start = process_cpu_seconds().expect("getrusage works here");
        let mut now = start;
        let mut work = 0u64;
        while now == start {
            for i in 0..1_000 {
                work = std::hint::black_box(work.wrapping_mul(31).wrapping_add(i));
            }
            now = process_cpu_seconds().expect("getrusage works here");
        }
        assert!(now > start, "CPU time went back: {start} -> {now}");
        assert!(
            now - start < 0.005,
            "the first change seen was {} s: not finer than a clock tick",
            now - start
        );
    }
}
