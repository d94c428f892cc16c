//! Shrinking a failing seed to a minimal reproduction.
//!
//! The seed's fault log becomes an explicit script, replayed instead of
//! drawn, and then deterministic delta debugging (Zeller's ddmin) removes
//! what the failure does not need: whole faults, then time off each
//! fault's hold, then operations, clients and keys, then the fault points,
//! the failing disks and the misbehaving clients. Every candidate is run
//! from scratch on the same seed and kept only if the same guarantee still
//! breaks, so the result is a scenario (with its script) that breaks it on
//! its own. Everything is a function of the input: the same failing seed
//! always shrinks to the same schedule.
use crate::fault::FaultEvent;
use crate::guarantee::Guarantee;
use crate::scenario::{DiskFaults, Scenario, ScriptedFault, MAX_SCRIPT_US};
use crate::sweep::{run_and_check, SeedOutcome};
use std::cell::Cell;
use std::fmt;
use thiserror::Error;

/// The shortest hold a fault is shrunk to.
const MIN_HOLD_US: u64 = 1_000;
/// Rounds of the whole reduction (each round repeats every step while it
/// still removes something).
const MAX_ROUNDS: usize = 4;

#[derive(Debug, Error)]
pub enum ShrinkError {
    #[error("seed {seed} of {scenario} keeps every promised guarantee: nothing to shrink ({unpromised})")]
    NotFailing {
        scenario: String,
        seed: u64,
        /// What it does break that its configuration does not promise, and
        /// how to shrink that instead.
        unpromised: String,
    },
    #[error("seed {seed} of {scenario} does not break {target} (it broke: {broken})")]
    NotBroken {
        scenario: String,
        seed: u64,
        target: Guarantee,
        broken: String,
    },
    #[error("seed {seed}: replaying its fault log as a script no longer breaks {target}, so it cannot be shrunk")]
    NotReproduced { seed: u64, target: Guarantee },
}

/// How big a reproduction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub faults: usize,
    /// Simulated time the faults are held, summed (µs).
    pub held_us: u64,
    pub operations: usize,
    pub clients: usize,
    pub keys: usize,
}

impl Size {
    fn of(scenario: &Scenario) -> Size {
        let script = scenario.script.as_deref().unwrap_or_default();
        Size {
            faults: script.len(),
            held_us: script
                .iter()
                .map(|f| f.hold_us)
                .fold(0, u64::saturating_add),
            operations: scenario.operations,
            clients: scenario.clients,
            keys: scenario.hot_keys + scenario.cold_keys,
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults held {:.1} s, {} operations, {} clients, {} keys",
            self.faults,
            self.held_us as f64 / 1e6,
            self.operations,
            self.clients,
            self.keys
        )
    }
}

/// What shrinking found.
pub struct ShrinkReport {
    /// The minimal scenario, with its script.
    pub scenario: Scenario,
    pub seed: u64,
    /// The guarantee that kept breaking.
    pub target: Guarantee,
    /// Everything the minimal run breaks (promised or not).
    pub broken: Vec<Guarantee>,
    pub before: Size,
    pub after: Size,
    /// Runs it took.
    pub runs: usize,
    /// The minimal run's fault log.
    pub fault_log: String,
}

impl fmt::Display for ShrinkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "shrunk     seed {} breaking {}", self.seed, self.target)?;
        writeln!(f, "before     {}", self.before)?;
        writeln!(f, "after      {}", self.after)?;
        let off: Vec<&str> = [
            (!self.scenario.fault_points, "fault points"),
            (
                self.scenario.disk == Some(DiskFaults::NONE),
                "failing disks",
            ),
            (
                self.scenario.mix.adversarial_permille == Some(0),
                "misbehaving clients",
            ),
        ]
        .into_iter()
        .filter(|(off, _)| *off)
        .map(|(_, what)| what)
        .collect();
        if !off.is_empty() {
            writeln!(f, "without    {}", off.join(", "))?;
        }
        writeln!(f, "runs       {}", self.runs)?;
        writeln!(f, "faults")?;
        if self.fault_log.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for line in self.fault_log.lines() {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// The fault log as a script: each fault from its start to its heal (a
/// fault never healed is held to the end of the run).
pub fn script_of(log: &[FaultEvent]) -> Vec<ScriptedFault> {
    let mut script = Vec::new();
    for (i, event) in log.iter().enumerate().filter(|(_, e)| e.start) {
        let healed = log[i + 1..]
            .iter()
            .find(|e| !e.start && e.fault == event.fault)
            .map_or(MAX_SCRIPT_US, |e| e.time_us);
        script.push(ScriptedFault {
            at_us: event.time_us,
            hold_us: healed.saturating_sub(event.time_us),
            fault: event.fault.clone(),
        });
    }
    script
}

/// Runs candidates and remembers how many.
struct Judge<'a> {
    seed: u64,
    target: Guarantee,
    /// Only a promised break counts (the default); with a guarantee named
    /// by the caller, any break of it does.
    promised_only: bool,
    runs: Cell<usize>,
    progress: &'a dyn Fn(&str),
}

impl Judge<'_> {
    fn outcome(&self, scenario: &Scenario) -> Option<SeedOutcome> {
        self.runs.set(self.runs.get() + 1);
        // A candidate that panics is a different failure, not this one
        // (run on a thread of its own: the simulator's build aborts on a
        // panic, and only a worker's panic is reported rather than fatal).
        let seed = self.seed;
        crate::isolate::run_isolated(
            [scenario.clone()],
            1,
            crate::isolate::MAX_PARKED,
            move |scenario: Scenario| run_and_check(&scenario, seed),
            |_| {},
        )
        .results
        .pop()
        .and_then(Result::ok)
    }

    /// Whether `scenario` still breaks the target (and promises it).
    fn fails(&self, scenario: &Scenario) -> bool {
        if scenario.validate().is_err() {
            return false;
        }
        self.outcome(scenario).is_some_and(|o| {
            if self.promised_only {
                o.failures().contains(&self.target)
            } else {
                o.broken.contains(&self.target)
            }
        })
    }

    fn step(&self, what: &str, best: &Scenario) {
        (self.progress)(&format!(
            "{what}; now {} after {} runs",
            Size::of(best),
            self.runs.get()
        ));
    }
}

/// Shrink `seed` of `scenario` keeping `target` broken, promised or not
/// (default: the first promised guarantee the seed breaks, kept broken
/// and promised). `progress` hears each step.
pub fn shrink(
    scenario: &Scenario,
    seed: u64,
    target: Option<Guarantee>,
    progress: &dyn Fn(&str),
) -> Result<ShrinkReport, ShrinkError> {
    let first = run_and_check(scenario, seed);
    let broken = || {
        let names: Vec<&str> = first.broken.iter().map(|g| g.key()).collect();
        if names.is_empty() {
            "nothing".to_string()
        } else {
            names.join(", ")
        }
    };
    let target = match target {
        Some(target) if first.broken.contains(&target) => target,
        Some(target) => {
            return Err(ShrinkError::NotBroken {
                scenario: scenario.name(),
                seed,
                target,
                broken: broken(),
            })
        }
        None => *first
            .failures()
            .first()
            .ok_or_else(|| ShrinkError::NotFailing {
                scenario: scenario.name(),
                seed,
                unpromised: if first.broken.is_empty() {
                    "it breaks no guarantee at all".to_string()
                } else {
                    format!(
                        "it breaks only guarantees its configuration does not promise: {}; \
                         name one with --guarantee to shrink that",
                        broken()
                    )
                },
            })?,
    };
    let judge = Judge {
        seed,
        target,
        promised_only: first.failures().contains(&target),
        runs: Cell::new(1),
        progress,
    };
    let mut best = scenario.clone();
    if best.script.is_none() {
        best.script = Some(script_of(&first.fault_events));
        // The disks fail as they did, whatever faults the script keeps.
        best.disk = Some(scenario.disk_faults());
    }
    let before = Size::of(&best);
    if !judge.fails(&best) {
        return Err(ShrinkError::NotReproduced { seed, target });
    }
    for _ in 0..MAX_ROUNDS {
        let size = Size::of(&best);
        let flags = (best.fault_points, best.disk, best.mix.adversarial_permille);
        drop_faults(&judge, &mut best);
        shorten_holds(&judge, &mut best);
        fewer_operations(&judge, &mut best);
        fewer_clients(&judge, &mut best);
        fewer_keys(&judge, &mut best);
        switch_off(&judge, &mut best);
        if Size::of(&best) == size
            && flags == (best.fault_points, best.disk, best.mix.adversarial_permille)
        {
            break;
        }
    }
    let mut last = judge
        .outcome(&best)
        .expect("the shrunk scenario ran without panicking before");
    // Faults after the workload ended were never injected: leave them out
    // (and run once more only if that changed the script).
    let played = script_of(&last.fault_events);
    let mut pruned = false;
    if let Some(script) = best.script.as_mut() {
        let before = script.len();
        script.retain(|f| {
            played
                .iter()
                .any(|p| p.fault == f.fault && p.at_us == f.at_us)
        });
        pruned = script.len() != before;
    }
    if pruned {
        last = judge
            .outcome(&best)
            .expect("the shrunk scenario ran without panicking before");
    }
    Ok(ShrinkReport {
        after: Size::of(&best),
        broken: last.broken.clone(),
        fault_log: last.fault_log(),
        scenario: best,
        seed,
        target,
        before,
        runs: judge.runs.get(),
    })
}

fn with_script(scenario: &Scenario, script: Vec<ScriptedFault>) -> Scenario {
    Scenario {
        script: Some(script),
        ..scenario.clone()
    }
}

/// ddmin over the script's faults: try removing each of n chunks (and
/// keeping each alone), refining n until single faults.
fn drop_faults(judge: &Judge, best: &mut Scenario) {
    let mut faults = best.script.clone().unwrap_or_default();
    if faults.is_empty() {
        return;
    }
    if judge.fails(&with_script(best, Vec::new())) {
        best.script = Some(Vec::new());
        judge.step("no fault needed", best);
        return;
    }
    let mut chunks = 2usize;
    while faults.len() >= 2 {
        let size = faults.len().div_ceil(chunks);
        let mut reduced = false;
        for start in (0..faults.len()).step_by(size) {
            let end = (start + size).min(faults.len());
            let alone: Vec<ScriptedFault> = faults[start..end].to_vec();
            if alone.len() < faults.len() && judge.fails(&with_script(best, alone.clone())) {
                faults = alone;
                chunks = 2;
                reduced = true;
                break;
            }
            let without: Vec<ScriptedFault> = faults[..start]
                .iter()
                .chain(&faults[end..])
                .cloned()
                .collect();
            if judge.fails(&with_script(best, without.clone())) {
                faults = without;
                chunks = (chunks - 1).max(2);
                reduced = true;
                break;
            }
        }
        best.script = Some(faults.clone());
        if reduced {
            judge.step("dropped faults", best);
            continue;
        }
        if chunks >= faults.len() {
            break;
        }
        chunks = (chunks * 2).min(faults.len());
    }
    best.script = Some(faults);
}

/// Halve each fault's hold while the failure stays.
fn shorten_holds(judge: &Judge, best: &mut Scenario) {
    let count = best.script.as_ref().map_or(0, Vec::len);
    for i in 0..count {
        loop {
            let Some(script) = best.script.as_ref() else {
                return;
            };
            let hold = script[i].hold_us;
            if hold <= MIN_HOLD_US {
                break;
            }
            let mut shorter = script.clone();
            shorter[i].hold_us = (hold / 2).max(MIN_HOLD_US);
            if !judge.fails(&with_script(best, shorter.clone())) {
                break;
            }
            best.script = Some(shorter);
            judge.step("shortened a hold", best);
        }
    }
}

/// Try `candidate(best)` repeatedly while it fails and changes something.
fn reduce_while(
    judge: &Judge,
    best: &mut Scenario,
    what: &str,
    candidate: impl Fn(&Scenario) -> Option<Scenario>,
) {
    while let Some(next) = candidate(best) {
        if next == *best || !judge.fails(&next) {
            break;
        }
        *best = next;
        judge.step(what, best);
    }
}

fn fewer_operations(judge: &Judge, best: &mut Scenario) {
    // Halve, then take off a quarter, then a tenth.
    for divisor in [2, 4, 10] {
        reduce_while(judge, best, "fewer operations", |s| {
            let cut = (s.operations / divisor).max(1);
            (s.operations > 1).then(|| Scenario {
                operations: s.operations - cut,
                ..s.clone()
            })
        });
    }
}

fn fewer_clients(judge: &Judge, best: &mut Scenario) {
    reduce_while(judge, best, "fewer clients", |s| {
        (s.clients > 1).then(|| Scenario {
            clients: s.clients - 1,
            ..s.clone()
        })
    });
}

fn fewer_keys(judge: &Judge, best: &mut Scenario) {
    reduce_while(judge, best, "no cold keys", |s| {
        (s.cold_keys > 0 && s.hot_keys > 0).then(|| Scenario {
            cold_keys: 0,
            ..s.clone()
        })
    });
    reduce_while(judge, best, "fewer cold keys", |s| {
        (s.cold_keys > 0).then(|| Scenario {
            cold_keys: s.cold_keys / 2,
            ..s.clone()
        })
    });
    reduce_while(judge, best, "fewer hot keys", |s| {
        (s.hot_keys > 1 || (s.hot_keys == 1 && s.cold_keys > 0)).then(|| Scenario {
            hot_keys: s.hot_keys - 1,
            ..s.clone()
        })
    });
}

/// Fault points off, disks that never fail, clients that never misbehave.
fn switch_off(judge: &Judge, best: &mut Scenario) {
    let candidates: [fn(&mut Scenario); 3] = [
        |s| s.fault_points = false,
        |s| s.disk = Some(DiskFaults::NONE),
        |s| s.mix.adversarial_permille = Some(0),
    ];
    for switch in candidates {
        let mut next = best.clone();
        switch(&mut next);
        let changed = next.fault_points != best.fault_points
            || next.disk_faults() != best.disk_faults()
            || next.mix.adversarial_permille != best.mix.adversarial_permille;
        if changed && judge.fails(&next) {
            *best = next;
            judge.step("switched off", best);
        }
    }
}
