//! The verdict table: each consistency configuration under each fault
//! schedule over a seed range — availability, stale reads, lost updates,
//! linearizability, simulated latency — and for every broken guarantee the
//! smallest seed that shows it, with the command that replays it.
use crate::scenario::{FaultSchedule, Levels, Scenario};
use crate::sweep::{sweep, Guarantee, SeedOutcome, SeedPanic};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

/// The configurations of the table, for N = `n` (standard scenarios; the
/// fault schedule is filled in per row): the levels, and QUORUM with blind
/// writes that overwrite (last-writer-wins), whose lost updates the table
/// shows rather than claims.
pub fn standard_configs(n: usize) -> Vec<Scenario> {
    use quorumlog_core::Consistency::*;
    let mut configs: Vec<Scenario> = [
        Levels::same(One),
        Levels::same(Quorum),
        Levels::same(All),
        Levels::explicit(1, n),
        Levels::explicit(n, 1),
        Levels::explicit(2, 2),
    ]
    .into_iter()
    .map(|levels| {
        let mut scenario = Scenario::standard(FaultSchedule::None, levels);
        scenario.nodes = n;
        scenario
    })
    .collect();
    let mut overwrite = Scenario::standard(FaultSchedule::None, Levels::same(Quorum));
    overwrite.nodes = n;
    overwrite.overwrite = true;
    configs.push(overwrite);
    configs
}

pub fn standard_schedules() -> Vec<FaultSchedule> {
    vec![
        FaultSchedule::None,
        FaultSchedule::Partitions,
        FaultSchedule::Crashes,
        FaultSchedule::Pauses,
        FaultSchedule::DiskLoss,
        FaultSchedule::All,
    ]
}

/// The first seed that broke a guarantee.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Witness {
    pub guarantee: Guarantee,
    /// Whether the configuration promised it (a bug) or not (expected).
    pub promised: bool,
    pub seed: u64,
    /// Seeds (of the range) that broke it.
    pub seeds_broken: usize,
    pub replay: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictRow {
    pub config: String,
    pub overlapping: bool,
    pub faults: String,
    pub seeds: usize,
    pub operations: usize,
    /// Successful operations, percent.
    pub availability: f64,
    pub stale_reads: usize,
    pub lost_updates: usize,
    /// "NO" (some seed's history has no linearization), "held" (every
    /// seed's history was linearizable: evidence, not a promise), or
    /// "unknown" (the search budget ran out).
    pub linearizable: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Seeds whose replicas agreed on every key after the heal, without
    /// reads (the liveness phase).
    pub converged: usize,
    /// Simulated time from the heal to agreement, over converged seeds.
    pub converge_p50_s: f64,
    pub converge_p99_s: f64,
    pub witnesses: Vec<Witness>,
    /// Seeds whose run panicked: always a bug.
    pub panics: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictTable {
    pub seeds: Range<u64>,
    pub nodes: usize,
    pub rows: Vec<VerdictRow>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

/// Summarise one cell of the table.
pub fn row(
    scenario: &Scenario,
    seeds: Range<u64>,
    outcomes: &[SeedOutcome],
    panics: &[SeedPanic],
) -> VerdictRow {
    let operations: usize = outcomes.iter().map(|o| o.stats.operations).sum();
    let ok: usize = outcomes
        .iter()
        .map(|o| o.stats.outcomes.get("ok").copied().unwrap_or(0))
        .sum();
    let mut latencies: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let mut witnesses = Vec::new();
    for guarantee in Guarantee::EVERY {
        let breaking: Vec<&SeedOutcome> = outcomes
            .iter()
            .filter(|o| o.broken.contains(&guarantee))
            .collect();
        if let Some(first) = breaking.first() {
            witnesses.push(Witness {
                guarantee,
                promised: guarantee.promised_by(scenario),
                seed: first.seed,
                seeds_broken: breaking.len(),
                replay: scenario.replay_command(first.seed),
            });
        }
    }
    let not_linearizable = outcomes
        .iter()
        .any(|o| o.broken.contains(&Guarantee::Linearizable));
    let all_decided = outcomes
        .iter()
        .all(|o| o.summary.linearizable == crate::check::LinVerdict::Linearizable);
    let linearizable = if not_linearizable {
        "NO"
    } else if all_decided && !outcomes.is_empty() {
        "held"
    } else {
        "unknown"
    };
    let mut agreement_ms: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| o.convergence.converged_after_ms)
        .collect();
    agreement_ms.sort_unstable();
    VerdictRow {
        converged: agreement_ms.len(),
        // `percentile` divides by 1000: milliseconds in, seconds out.
        converge_p50_s: percentile(&agreement_ms, 50.0),
        converge_p99_s: percentile(&agreement_ms, 99.0),
        config: scenario.levels_label(),
        overlapping: scenario.overlapping(),
        faults: scenario.faults.to_string(),
        seeds: (seeds.end - seeds.start) as usize,
        operations,
        availability: if operations == 0 {
            0.0
        } else {
            (ok as f64 * 1000.0 / operations as f64).round() / 10.0
        },
        stale_reads: outcomes.iter().map(|o| o.summary.stale_reads).sum(),
        lost_updates: outcomes.iter().map(|o| o.summary.lost_updates).sum(),
        linearizable: linearizable.into(),
        p50_ms: percentile(&latencies, 50.0),
        p99_ms: percentile(&latencies, 99.0),
        witnesses,
        panics: panics.iter().map(|p| p.seed).collect(),
    }
}

/// Run the whole table. `progress` is called once per finished seed.
pub fn run_table(
    configs: &[Scenario],
    schedules: &[FaultSchedule],
    seeds: Range<u64>,
    jobs: usize,
    progress: &(dyn Fn() + Sync),
) -> VerdictTable {
    let mut rows = Vec::new();
    for config in configs {
        for &faults in schedules {
            let scenario = Scenario {
                faults,
                ..config.clone()
            };
            let (outcomes, panics) = sweep(&scenario, seeds.clone(), jobs, progress, &|_| false);
            rows.push(row(&scenario, seeds.clone(), &outcomes, &panics));
        }
    }
    VerdictTable {
        seeds,
        nodes: configs.first().map_or(5, |c| c.nodes),
        rows,
    }
}

impl VerdictTable {
    /// Whether some configuration broke a guarantee it promises.
    pub fn has_bugs(&self) -> bool {
        self.rows
            .iter()
            .any(|r| !r.panics.is_empty() || r.witnesses.iter().any(|w| w.promised))
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Verdicts for N={} over seeds {}..{} (standard scenario: 4 clients, 500 operations per seed)\n",
            self.nodes, self.seeds.start, self.seeds.end
        );
        let _ = writeln!(
            out,
            "{:<16} {:<5} {:<11} {:>7} {:>7} {:>6} {:>5} {:>12} {:>8} {:>8} {:>9} {:>13}",
            "config",
            "W+R>N",
            "faults",
            "ops",
            "avail%",
            "stale",
            "lost",
            "linearizable",
            "p50 ms",
            "p99 ms",
            "converged",
            "agree p50/p99"
        );
        let _ = writeln!(out, "{}", "-".repeat(123));
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<16} {:<5} {:<11} {:>7} {:>7.1} {:>6} {:>5} {:>12} {:>8.1} {:>8.1} {:>9} {:>13}",
                r.config,
                if r.overlapping { "yes" } else { "no" },
                r.faults,
                r.operations,
                r.availability,
                r.stale_reads,
                r.lost_updates,
                r.linearizable,
                r.p50_ms,
                r.p99_ms,
                format!("{}/{}", r.converged, r.seeds),
                format!("{:.1}/{:.1} s", r.converge_p50_s, r.converge_p99_s)
            );
        }
        let _ = writeln!(
            out,
            "\nlinearizable: NO = some seed's history has no linearization; held = every seed's was linearizable (evidence, not a promise)"
        );
        let _ = writeln!(
            out,
            "converged: seeds whose replicas all held the same versions of every key within {} s of the heal, compared on the stores with no reads; agree: simulated time to that agreement",
            crate::harness::LIVENESS_LIMIT.as_secs()
        );
        let bugs: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                let panics = r
                    .panics
                    .iter()
                    .map(move |s| format!("{}/{}: seed {s} panicked", r.config, r.faults));
                let broken = r.witnesses.iter().filter(|w| w.promised).map(move |w| {
                    format!(
                        "{}/{}: {} (promised!) first at seed {}: {}",
                        r.config, r.faults, w.guarantee, w.seed, w.replay
                    )
                });
                panics.chain(broken)
            })
            .collect();
        let expected: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.witnesses.iter().filter(|w| !w.promised).map(move |w| {
                    format!(
                        "{}/{}: {} in {} of {} seeds, first at seed {}: {}",
                        r.config, r.faults, w.guarantee, w.seeds_broken, r.seeds, w.seed, w.replay
                    )
                })
            })
            .collect();
        let _ = writeln!(
            out,
            "\nBroken promises (bugs): {}",
            if bugs.is_empty() { "none" } else { "" }
        );
        for line in bugs {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(
            out,
            "\nGuarantees a configuration does not promise, shown broken (W+R<=N reads may be stale; a write acknowledged by one replica is lost with its disk; overwrite drops what its coordinator holds; no level is linearizable):"
        );
        if expected.is_empty() {
            let _ = writeln!(out, "  none seen");
        }
        for line in expected {
            let _ = writeln!(out, "  {line}");
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the table serialises")
    }

    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "config,overlapping,faults,seeds,operations,availability_pct,stale_reads,lost_updates,linearizable,p50_ms,p99_ms,first_stale_seed,first_lost_seed,first_nonlinearizable_seed\n",
        );
        for r in &self.rows {
            let first = |g: Guarantee| {
                r.witnesses
                    .iter()
                    .find(|w| w.guarantee == g)
                    .map(|w| w.seed.to_string())
                    .unwrap_or_default()
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.1},{},{},{},{:.1},{:.1},{},{},{}",
                r.config.replace(',', ";"),
                r.overlapping,
                r.faults,
                r.seeds,
                r.operations,
                r.availability,
                r.stale_reads,
                r.lost_updates,
                r.linearizable,
                r.p50_ms,
                r.p99_ms,
                first(Guarantee::NoStaleReads),
                first(Guarantee::NoLostUpdates),
                first(Guarantee::Linearizable)
            );
        }
        out
    }
}

/// Count, per guarantee, how many rows broke it (for quick assertions).
pub fn broken_counts(table: &VerdictTable) -> BTreeMap<Guarantee, usize> {
    let mut counts = BTreeMap::new();
    for r in &table.rows {
        for w in &r.witnesses {
            *counts.entry(w.guarantee).or_default() += 1;
        }
    }
    counts
}
