//! `quorumsim` (run it as `cargo sim …`): sweep seeds of a scenario, replay
//! one seed, check a history file, or print the verdict table.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use quorumlog_sim::check::{check_with_model, ModelKind};
use quorumlog_sim::history::History;
use quorumlog_sim::scenario::{DiskFaults, FaultSchedule, Levels, Scenario};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo sim",
    about = "quorumlog's deterministic simulator and consistency checkers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario over a seed range and summarise; exits 1 if a seed
    /// broke a guarantee its consistency level promises.
    Run {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// Seeds to run: `A..B` (B excluded), `A..=B` or one seed.
        #[arg(long, default_value = "0..100", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Worker threads (each seed runs alone in its own runtime).
        #[arg(long)]
        jobs: Option<usize>,
        /// Write the history of every failing seed into this directory.
        #[arg(long)]
        save_failures: Option<PathBuf>,
    },
    /// Replay one seed exactly: fault log, summary, checker report.
    Replay {
        #[command(flatten)]
        scenario: ScenarioArgs,
        #[arg(long)]
        seed: u64,
        /// Write the history (JSON lines) to this file.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Record this run as a regression seed file (seeds/*.json) with
        /// the guarantees it breaks, for the test suite to replay.
        #[arg(long)]
        save_seed: Option<PathBuf>,
        /// A note stored in the seed file.
        #[arg(long, requires = "save_seed")]
        note: Option<String>,
    },
    /// Check a history file (JSON lines); exits 1 on a violation.
    Check {
        file: PathBuf,
        /// Sequential model for linearizability: register, cas-register, kv, mv-register.
        #[arg(long, default_value = "mv-register")]
        model: ModelKind,
    },
    /// Run every configuration under every fault schedule and print the table.
    Verdicts {
        #[arg(long, default_value = "0..40", value_parser = parse_seeds)]
        seeds: Range<u64>,
        #[arg(long)]
        jobs: Option<usize>,
        /// Also write the table as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write the table as CSV here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    /// Fault schedule: none, partitions, crashes, pauses, crashes-pauses,
    /// disk-loss, all.
    #[arg(long, default_value = "partitions")]
    faults: FaultSchedule,
    /// Consistency: ONE, QUORUM, ALL, or R=r,W=w.
    #[arg(long, default_value = "QUORUM")]
    level: Levels,
    /// Give clients their own levels (repeat: client i uses the i-th mod
    /// count); overrides --level for the clients.
    #[arg(long = "client-level")]
    client_levels: Vec<Levels>,
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Operations per seed, across all clients.
    #[arg(long, default_value_t = 500)]
    ops: usize,
    /// Blind writes overwrite (last-writer-wins) instead of adding a sibling.
    #[arg(long)]
    overwrite: bool,
    /// Turn read repair off on every node: replicas converge by hints and
    /// anti-entropy alone.
    #[arg(long)]
    no_read_repair: bool,
    /// Turn on a seed-drawn set of fault points in the core's own code:
    /// requests between replicas dropped, duplicated or answered late,
    /// replies lost, background read repairs dropped.
    #[arg(long)]
    fault_points: bool,
    /// Commits (per mille) each node's disk fails with nothing applied;
    /// default: 20 under schedules with crashes, else 0.
    #[arg(long, value_name = "PERMILLE")]
    commit_failures: Option<u16>,
    /// Commits (per mille) each node's disk applies and then reports as
    /// failed (an unknown outcome); default: 10 under schedules with
    /// crashes, else 0.
    #[arg(long, value_name = "PERMILLE")]
    commit_unknown: Option<u16>,
}

impl ScenarioArgs {
    // Only the simulator (built with --cfg madsim) turns arguments into a scenario.
    #[cfg_attr(not(madsim), allow(dead_code))]
    fn scenario(&self) -> Result<Scenario> {
        let mut scenario = Scenario::standard(self.faults, self.level);
        scenario.nodes = self.nodes;
        scenario.clients = self.clients;
        scenario.operations = self.ops;
        scenario.client_levels = self.client_levels.clone();
        scenario.overwrite = self.overwrite;
        scenario.no_read_repair = self.no_read_repair;
        scenario.fault_points = self.fault_points;
        if self.commit_failures.is_some() || self.commit_unknown.is_some() {
            let default = scenario.disk_faults();
            scenario.disk = Some(DiskFaults {
                failed_permille: self.commit_failures.unwrap_or(default.failed_permille),
                unknown_permille: self.commit_unknown.unwrap_or(default.unknown_permille),
            });
        }
        scenario.validate()?;
        Ok(scenario)
    }
}

fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a seed (a non-negative integer) in {text:?}"))
    };
    let range = if let Some((a, b)) = text.split_once("..=") {
        number(a)?..number(b)?.checked_add(1).ok_or("seed range too large")?
    } else if let Some((a, b)) = text.split_once("..") {
        number(a)?..number(b)?
    } else {
        let s = number(text)?;
        s..s + 1
    };
    if range.is_empty() {
        return Err(format!("seed range {text:?} is empty"));
    }
    Ok(range)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { file, model } => check(file, model),
        #[cfg(madsim)]
        Command::Run { scenario, seeds, jobs, save_failures } => simulator::run(scenario.scenario()?, seeds, jobs, save_failures),
        #[cfg(madsim)]
        Command::Replay { scenario, seed, history, save_seed, note } => {
            simulator::replay(scenario.scenario()?, seed, history, save_seed, note)
        }
        #[cfg(madsim)]
        Command::Verdicts { seeds, jobs, json, csv } => simulator::verdicts(seeds, jobs, json, csv),
        #[cfg(not(madsim))]
        _ => bail!("the simulator is built only with --cfg madsim: run it as `cargo sim …` (see .cargo/config.toml)"),
    }
}

fn check(file: PathBuf, model: ModelKind) -> Result<ExitCode> {
    let reader =
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let history = History::read_jsonl(std::io::BufReader::new(reader))
        .with_context(|| format!("{}", file.display()))?;
    if history.operations().is_empty() {
        bail!("{}: the history has no operations", file.display());
    }
    let summary = check_with_model(&history, model);
    println!("{summary}");
    Ok(if summary.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(madsim)]
mod simulator {
    use super::*;
    use indicatif::{ProgressBar, ProgressStyle};
    use quorumlog_sim::sweep::{default_jobs, run_and_check, sweep};
    use quorumlog_sim::verdict::{run_table, standard_configs, standard_schedules};
    use std::collections::BTreeMap;

    fn bar(total: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} seeds {per_sec} eta {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }

    pub fn run(
        scenario: Scenario,
        seeds: Range<u64>,
        jobs: Option<usize>,
        save: Option<PathBuf>,
    ) -> Result<ExitCode> {
        let bar = bar(seeds.end - seeds.start, &scenario.name());
        let started = std::time::Instant::now();
        let (outcomes, panics) = sweep(
            &scenario,
            seeds.clone(),
            jobs.unwrap_or_else(default_jobs),
            &|| bar.inc(1),
            &|o| !o.failures(&scenario).is_empty(),
        );
        bar.finish_and_clear();
        let elapsed = started.elapsed();
        let spec = describe(&scenario)?;
        let mut outcomes_total: BTreeMap<String, usize> = BTreeMap::new();
        let mut faults: BTreeMap<String, usize> = BTreeMap::new();
        let mut operations = 0;
        for o in &outcomes {
            operations += o.stats.operations;
            for (k, v) in &o.stats.outcomes {
                *outcomes_total.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &o.stats.faults {
                *faults.entry(k.clone()).or_default() += v;
            }
        }
        println!("scenario   {} ({spec})", scenario.name());
        println!(
            "seeds      {}..{} ({} runs in {:.1}s)",
            seeds.start,
            seeds.end,
            outcomes.len() + panics.len(),
            elapsed.as_secs_f64()
        );
        println!("operations {operations}: {}", fmt_counts(&outcomes_total));
        println!(
            "faults     {}",
            if faults.is_empty() {
                "none".into()
            } else {
                fmt_counts(&faults)
            }
        );
        let disk = outcomes.iter().fold(Default::default(), |sum, o| {
            quorumlog_sim::harness::disk::DiskStats::plus(sum, o.stats.disk)
        });
        println!("disks      {}", fmt_disk(&disk));
        let stale: usize = outcomes.iter().map(|o| o.summary.stale_reads).sum();
        let lost: usize = outcomes.iter().map(|o| o.summary.lost_updates).sum();
        let missing: usize = outcomes.iter().map(|o| o.stores.missing_writes).sum();
        let nonlin = outcomes
            .iter()
            .filter(|o| {
                o.broken
                    .contains(&quorumlog_sim::sweep::Guarantee::Linearizable)
            })
            .count();
        let refused: usize = outcomes.iter().map(|o| o.availability.refused).sum();
        println!(
            "checks     {stale} stale reads, {lost} lost updates, {missing} acknowledged writes on no store, {nonlin} seeds not linearizable, {refused} refused while reachable"
        );
        let mut agreement_ms: Vec<u64> = outcomes
            .iter()
            .filter_map(|o| o.convergence.converged_after_ms)
            .collect();
        agreement_ms.sort_unstable();
        let at = |q: f64| {
            agreement_ms
                .get(((agreement_ms.len() as f64 - 1.0) * q).round() as usize)
                .map_or("-".to_string(), |ms| {
                    format!("{:.1} s", *ms as f64 / 1000.0)
                })
        };
        println!(
            "converged  {} of {} seeds after the heal (time to agreement p50 {}, p99 {})",
            agreement_ms.len(),
            outcomes.len(),
            at(0.5),
            at(0.99)
        );
        let failing: Vec<_> = outcomes
            .iter()
            .filter(|o| !o.failures(&scenario).is_empty())
            .collect();
        if failing.is_empty() && panics.is_empty() {
            println!("verdict    every promised guarantee held");
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "verdict    FAILED: {} seeds broke a promised guarantee, {} panicked",
            failing.len(),
            panics.len()
        );
        for o in &failing {
            let broken: Vec<String> = o
                .failures(&scenario)
                .iter()
                .map(|g| g.to_string())
                .collect();
            println!(
                "  seed {}: {}  replay: {}",
                o.seed,
                broken.join(", "),
                scenario.replay_command(o.seed)
            );
            if let Some(dir) = &save {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!(
                    "{}-{}.jsonl",
                    scenario.name().replace(['/', ',', '='], "_"),
                    o.seed
                ));
                std::fs::write(&path, o.history.to_jsonl())
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("    history: {}", path.display());
            }
        }
        for p in &panics {
            println!(
                "  seed {} panicked: {}  replay: {}",
                p.seed,
                p.message,
                scenario.replay_command(p.seed)
            );
        }
        Ok(ExitCode::from(1))
    }

    /// "N=5 R=3 W=3 (W+R > N)", or for mixed clients whether every pair overlaps.
    fn describe(scenario: &Scenario) -> Result<String> {
        let spec = scenario.validate()?;
        if scenario.client_levels.is_empty() {
            return Ok(spec.to_string());
        }
        let rel = if scenario.overlapping() { ">" } else { "<=" };
        Ok(format!(
            "N={} mixed clients: smallest R + smallest W {rel} N",
            scenario.nodes
        ))
    }

    fn fmt_counts(counts: &BTreeMap<String, usize>) -> String {
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn replay(
        scenario: Scenario,
        seed: u64,
        history: Option<PathBuf>,
        save_seed: Option<PathBuf>,
        note: Option<String>,
    ) -> Result<ExitCode> {
        let spec = describe(&scenario)?;
        let outcome = run_and_check(&scenario, seed);
        println!("scenario {} ({spec}), seed {seed}", scenario.name());
        println!(
            "\nfault schedule:\n{}",
            if outcome.fault_log.is_empty() {
                "  (none)\n".into()
            } else {
                outcome.fault_log.clone()
            }
        );
        println!(
            "operations {}: {} ({}\u{2030} of writes adversarial)",
            outcome.stats.operations,
            fmt_counts(&outcome.stats.outcomes),
            outcome.stats.adversarial_permille
        );
        println!("disks      {}", fmt_disk(&outcome.stats.disk));
        println!("\n{}", outcome.summary);
        println!("{}", outcome.stores);
        println!("{}", outcome.convergence);
        println!("{}", outcome.availability);
        if let Some(path) = history {
            std::fs::write(&path, outcome.history.to_jsonl())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("history written to {}", path.display());
        }
        if let Some(path) = save_seed {
            let file =
                quorumlog_sim::seeds::SeedFile::record(&scenario, seed, &outcome.broken, note);
            std::fs::write(&path, file).with_context(|| format!("writing {}", path.display()))?;
            println!("seed file written to {}", path.display());
        }
        let failures = outcome.failures(&scenario);
        if failures.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            let names: Vec<String> = failures.iter().map(|g| g.to_string()).collect();
            println!("FAILED: broke promised guarantees: {}", names.join(", "));
            Ok(ExitCode::from(1))
        }
    }

    fn fmt_disk(disk: &quorumlog_sim::harness::disk::DiskStats) -> String {
        format!(
            "{} commits: {} failed, {} unknown outcome, {} lost in a crash",
            disk.commits, disk.failed, disk.unknown, disk.lost_in_crash
        )
    }

    pub fn verdicts(
        seeds: Range<u64>,
        jobs: Option<usize>,
        json: Option<PathBuf>,
        csv: Option<PathBuf>,
    ) -> Result<ExitCode> {
        let configs = standard_configs(5);
        let schedules = standard_schedules();
        let total = (seeds.end - seeds.start) * (configs.len() * schedules.len()) as u64;
        let bar = bar(total, "verdicts");
        let table = run_table(
            &configs,
            &schedules,
            seeds,
            jobs.unwrap_or_else(default_jobs),
            &|| bar.inc(1),
        );
        bar.finish_and_clear();
        print!("{}", table.render_text());
        if let Some(path) = json {
            std::fs::write(&path, table.to_json())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = csv {
            std::fs::write(&path, table.to_csv())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(if table.has_bugs() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
