//! `quorumsim` (run it as `cargo sim …`): sweep seeds of a scenario, replay
//! one seed, check a history file, or print the verdict table.
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use quorumlog_sim::check::file::{budget_from_flags, check_file, undecided_note, Verdict};
use quorumlog_sim::check::{Budget, ModelKind};
use quorumlog_sim::guarantee::Guarantee;
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
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Swarm testing: every seed draws its own configuration (cluster
    /// size, R and W, timeouts, breaker, read repair, hedging,
    /// anti-entropy, workload mix, about half the fault families with
    /// their own rates) and runs it; exits 1 if a seed broke a guarantee
    /// its configuration promises.
    Swarm {
        #[arg(long, default_value = "0..200", value_parser = parse_seeds)]
        seeds: Range<u64>,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Replay one seed exactly: fault log, summary, checker report.
    Replay {
        #[command(flatten)]
        scenario: ScenarioArgs,
        #[command(flatten)]
        pick: PickArgs,
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
    /// Shrink a failing seed to a minimal schedule: drop faults, shorten
    /// their holds, fewer operations, clients and keys, each change kept
    /// only if the same guarantee still breaks; writes a schedule file
    /// that `cargo sim replay --schedule` runs.
    Shrink {
        #[command(flatten)]
        scenario: ScenarioArgs,
        #[command(flatten)]
        pick: PickArgs,
        /// The guarantee that must keep breaking (no-stale-reads,
        /// no-lost-updates, …); default: the first promised one the seed
        /// breaks.
        #[arg(long)]
        guarantee: Option<Guarantee>,
        /// Where to write the schedule file.
        #[arg(long, default_value = "shrunk.json")]
        out: PathBuf,
    },
    /// Check a history file (JSON lines); exits 1 on a violation.
    ///
    /// Exits 0 when every check passes, 1 on a violation, 3 when no
    /// violation was found but some key's linearizability is undecided
    /// (its search ran out of budget or memory: raise --budget or
    /// --memory-mib), 2 on bad input.
    Check {
        /// The history: one JSON object per line, as docs/history-format.md
        /// describes (the simulator writes it; `quorumd nemesis` records one
        /// from a real cluster).
        file: PathBuf,
        /// Sequential model for linearizability: register, cas-register, kv, mv-register.
        #[arg(long, default_value = "mv-register")]
        model: ModelKind,
        /// Linearizability search steps per key (no cap over the history
        /// when given) [default: 2000000 per key, 200000000 in all].
        #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
        budget: Option<u64>,
        /// Memory one key's linearizability search may take, in MiB.
        #[arg(long, value_name = "MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        memory_mib: u64,
        /// Stop the linearizability search at the first key without a
        /// linearization (the keys after it are not checked).
        #[arg(long)]
        first_violation: bool,
    },
    /// Run every configuration under every fault schedule and print the table.
    Verdicts {
        #[arg(long, default_value = "0..40", value_parser = parse_seeds)]
        seeds: Range<u64>,
        /// Worker threads [default: one per core].
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        jobs: Option<usize>,
        /// Also write the table as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write the table as CSV here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
}

/// Which run a replay or shrink takes: a seed of the scenario the flags
/// give, a seed's swarm draw, or a seed or schedule file.
#[derive(Args, Clone)]
struct PickArgs {
    /// The seed (a seed or schedule file brings its own).
    #[arg(long, required_unless_present = "schedule")]
    seed: Option<u64>,
    /// The configuration `cargo sim swarm` drew for the seed.
    #[arg(long, conflicts_with = "schedule")]
    swarm: bool,
    /// A seed or schedule file (`cargo sim shrink`'s output, seeds/*.json):
    /// its scenario, fault script and seed.
    #[arg(long, value_name = "FILE")]
    schedule: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct SweepArgs {
    /// Worker threads, each seed alone in its own runtime (the report is
    /// the same for any number) [default: one per core].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    jobs: Option<usize>,
    /// Write the history of every failing seed into this directory.
    #[arg(long)]
    save_failures: Option<PathBuf>,
    /// Shrink the smallest failing seed and write its schedule here.
    #[arg(long, value_name = "FILE")]
    shrink: Option<PathBuf>,
    /// Where a panic aborts (`cargo sim`'s build): stop after this many
    /// seeds panicked, each keeping a parked thread and its seed's memory,
    /// and report every seed up to the last of them. A build that unwinds
    /// catches every panic and runs every seed.
    #[arg(long, value_name = "N", default_value_t = quorumlog_sim::isolate::MAX_PARKED,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    max_panics: usize,
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    /// The scenario as JSON (`{"faults":"all","level":"ONE"}`) or a file
    /// holding it; every field left out takes the standard scenario's
    /// value, and the flags below override it.
    #[arg(long, value_name = "JSON|FILE")]
    scenario: Option<String>,
    /// Fault schedule: none, partitions, crashes, pauses, crashes-pauses,
    /// disk-loss, all [standard: partitions].
    #[arg(long)]
    faults: Option<FaultSchedule>,
    /// Consistency: ONE, QUORUM, ALL, or R=r,W=w [standard: QUORUM].
    #[arg(long)]
    level: Option<Levels>,
    /// Give clients their own levels (repeat: client i uses the i-th mod
    /// count); overrides --level for the clients.
    #[arg(long = "client-level")]
    client_levels: Vec<Levels>,
    /// Nodes, each a replica of every key [standard: 5].
    #[arg(long)]
    nodes: Option<usize>,
    /// Client processes [standard: 4].
    #[arg(long)]
    clients: Option<usize>,
    /// Operations per seed, across all clients [standard: 500].
    #[arg(long)]
    ops: Option<usize>,
    /// Keys most operations go to [standard: 3].
    #[arg(long)]
    hot_keys: Option<usize>,
    /// Other keys [standard: 12].
    #[arg(long)]
    cold_keys: Option<usize>,
    /// Blind writes overwrite (last-writer-wins) instead of adding a sibling.
    #[arg(long)]
    overwrite: bool,
    /// Turn read repair off on every node: replicas converge by hints and
    /// anti-entropy alone.
    #[arg(long)]
    no_read_repair: bool,
    /// Turn on a seed-drawn set of fault points in the core's own code:
    /// requests between replicas dropped, duplicated or answered late,
    /// replies lost, background read repairs dropped, batches whose
    /// committer loses its database session.
    #[arg(long)]
    fault_points: bool,
    /// Commits (per mille) each node's disk fails with nothing applied;
    /// default: 20 when nodes crash, else 0.
    #[arg(long, value_name = "PERMILLE")]
    commit_failures: Option<u16>,
    /// Commits (per mille) each node's disk applies and then reports as
    /// failed (an unknown outcome); default: 10 when nodes crash, else 0.
    #[arg(long, value_name = "PERMILLE")]
    commit_unknown: Option<u16>,
}

// Only the simulator (built with --cfg madsim) turns arguments into a scenario.
#[cfg_attr(not(madsim), allow(dead_code))]
impl ScenarioArgs {
    /// The scenario: `--scenario` (or the standard one), then the flags.
    fn scenario(&self) -> Result<Scenario> {
        let mut scenario = match &self.scenario {
            None => Scenario::default(),
            Some(text) if text.trim_start().starts_with('{') => {
                Scenario::from_json(text).context("--scenario")?
            }
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--scenario: cannot read {path}"))?;
                Scenario::from_json(&text).with_context(|| format!("--scenario {path}"))?
            }
        };
        self.apply(&mut scenario);
        scenario.validate()?;
        Ok(scenario)
    }

    /// Whether any flag sets part of the scenario.
    fn is_set(&self) -> bool {
        self.scenario.is_some()
            || self.faults.is_some()
            || self.level.is_some()
            || !self.client_levels.is_empty()
            || self.nodes.is_some()
            || self.clients.is_some()
            || self.ops.is_some()
            || self.hot_keys.is_some()
            || self.cold_keys.is_some()
            || self.overwrite
            || self.no_read_repair
            || self.fault_points
            || self.commit_failures.is_some()
            || self.commit_unknown.is_some()
    }

    fn apply(&self, scenario: &mut Scenario) {
        if let Some(faults) = self.faults {
            scenario.faults = faults;
        }
        if let Some(level) = self.level {
            scenario.levels = level;
        }
        if !self.client_levels.is_empty() {
            scenario.client_levels = self.client_levels.clone();
        }
        scenario.nodes = self.nodes.unwrap_or(scenario.nodes);
        scenario.clients = self.clients.unwrap_or(scenario.clients);
        scenario.operations = self.ops.unwrap_or(scenario.operations);
        scenario.hot_keys = self.hot_keys.unwrap_or(scenario.hot_keys);
        scenario.cold_keys = self.cold_keys.unwrap_or(scenario.cold_keys);
        scenario.overwrite |= self.overwrite;
        if self.no_read_repair {
            scenario.tuning.read_repair = quorumlog_core::ReadRepair::Off;
        }
        scenario.fault_points |= self.fault_points;
        if self.commit_failures.is_some() || self.commit_unknown.is_some() {
            let default = scenario.disk_faults();
            scenario.disk = Some(DiskFaults {
                failed_permille: self.commit_failures.unwrap_or(default.failed_permille),
                unknown_permille: self.commit_unknown.unwrap_or(default.unknown_permille),
            });
        }
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
            eprintln!(
                "error: {}",
                quorumlog_core::error_report::one_line(e.as_ref())
            );
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check {
            file,
            model,
            budget,
            memory_mib,
            first_violation,
        } => check(file, model, budget_from_flags(budget, memory_mib, first_violation)),
        #[cfg(madsim)]
        Command::Run { scenario, seeds, sweep } => {
            let scenario = scenario.scenario()?;
            simulator::run(simulator::Seeds::Fixed(Box::new(scenario)), seeds, sweep)
        }
        #[cfg(madsim)]
        Command::Swarm { seeds, sweep } => simulator::run(simulator::Seeds::Swarm, seeds, sweep),
        #[cfg(madsim)]
        Command::Replay { scenario, pick, history, save_seed, note } => {
            let (scenario, seed, expected) = simulator::pick(&scenario, pick)?;
            simulator::replay(scenario, seed, expected, history, save_seed, note)
        }
        #[cfg(madsim)]
        Command::Shrink { scenario, pick, guarantee, out } => {
            let (scenario, seed, _) = simulator::pick(&scenario, pick)?;
            simulator::shrink(&scenario, seed, guarantee, &out)
        }
        #[cfg(madsim)]
        Command::Verdicts { seeds, jobs, json, csv } => simulator::verdicts(seeds, jobs, json, csv),
        #[cfg(not(madsim))]
        _ => bail!("the simulator is built only with --cfg madsim: run it as `cargo sim …` (see .cargo/config.toml)"),
    }
}

fn check(file: PathBuf, model: ModelKind, budget: Budget) -> Result<ExitCode> {
    let summary = check_file(&file, model, budget)?;
    println!("{summary}");
    let verdict = Verdict::of(&summary);
    if verdict == Verdict::Undecided {
        println!("{}", undecided_note(&summary));
    }
    Ok(ExitCode::from(verdict.exit_code()))
}

#[cfg(madsim)]
mod simulator {
    use super::*;
    use indicatif::{ProgressBar, ProgressStyle};
    use quorumlog_sim::sweep::{
        default_jobs, process_cpu_seconds, run_and_check, sweep_totals, SweepTotals,
    };
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

    /// What a sweep runs: one scenario for every seed, or each seed's
    /// swarm draw.
    pub enum Seeds {
        Fixed(Box<Scenario>),
        Swarm,
    }

    impl Seeds {
        fn scenario_of(&self, seed: u64) -> Scenario {
            match self {
                Seeds::Fixed(scenario) => (**scenario).clone(),
                Seeds::Swarm => Scenario::swarm(seed),
            }
        }

        fn name(&self) -> String {
            match self {
                Seeds::Fixed(scenario) => scenario.name(),
                Seeds::Swarm => "swarm".into(),
            }
        }

        fn replay_command(&self, scenario: &Scenario, seed: u64) -> String {
            match self {
                Seeds::Fixed(_) => scenario.replay_command(seed),
                Seeds::Swarm => format!("cargo sim replay --swarm --seed {seed}"),
            }
        }
    }

    /// The scenario, seed and expected breaks a replay or shrink names:
    /// a schedule file, a swarm draw, or the flags.
    pub fn pick(
        args: &ScenarioArgs,
        pick: PickArgs,
    ) -> Result<(Scenario, u64, Option<Vec<Guarantee>>)> {
        let PickArgs {
            seed,
            swarm,
            schedule,
        } = pick;
        if let Some(path) = schedule {
            if args.is_set() {
                bail!("--schedule brings its own scenario: leave out the scenario flags");
            }
            let file = quorumlog_sim::seeds::SeedFile::load(&path)?;
            let expected = file.broken.iter().copied().collect();
            return Ok((file.scenario, seed.unwrap_or(file.seed), Some(expected)));
        }
        let seed = seed.context("--seed is required")?;
        if swarm {
            if args.is_set() {
                bail!(
                    "--swarm draws the whole scenario from the seed: leave out the scenario flags"
                );
            }
            return Ok((Scenario::swarm(seed), seed, None));
        }
        Ok((args.scenario()?, seed, None))
    }

    /// A file a long piece of work reports into, opened before the work
    /// so that a path that cannot be written fails at once rather than
    /// after the sweep; what was there stays until the report replaces it,
    /// and a file opened here for a report that never came is removed.
    struct Output {
        path: PathBuf,
        /// None once the report is written.
        file: Option<std::fs::File>,
        /// Whether opening it created it (then no report leaves no file).
        created: bool,
    }

    impl Output {
        fn open(path: &std::path::Path) -> Result<Output> {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map(|file| (file, true))
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map(|file| (file, false)),
                    _ => Err(e),
                });
            let (file, created) =
                file.with_context(|| format!("cannot write {}", path.display()))?;
            Ok(Output {
                path: path.to_path_buf(),
                file: Some(file),
                created,
            })
        }

        fn write(mut self, contents: &[u8]) -> Result<()> {
            use std::io::Write;
            let mut file = self.file.take().expect("an output is written once");
            file.set_len(0)
                .and_then(|()| file.write_all(contents))
                .with_context(|| format!("writing {}", self.path.display()))
        }
    }

    impl Drop for Output {
        fn drop(&mut self) {
            if self.file.is_some() && self.created {
                // Best effort: the error that ended the work is the one to report.
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }

    pub fn run(seeds_of: Seeds, seeds: Range<u64>, args: SweepArgs) -> Result<ExitCode> {
        // Where failing histories go must exist before the sweep, not be
        // found missing after it.
        if let Some(dir) = &args.save_failures {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let bar = bar(seeds.end - seeds.start, &seeds_of.name());
        let started = std::time::Instant::now();
        let cpu_before = process_cpu_seconds();
        let SweepTotals {
            figures,
            kept: failing,
            panics,
        } = sweep_totals(
            &|seed| seeds_of.scenario_of(seed),
            seeds.clone(),
            args.jobs.unwrap_or_else(default_jobs),
            args.max_panics,
            &|| bar.inc(1),
            &|o| !o.failures().is_empty(),
        );
        bar.finish_and_clear();
        let elapsed = started.elapsed();
        let cpu = process_cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        match &seeds_of {
            Seeds::Fixed(scenario) => {
                println!("scenario   {} ({})", scenario.name(), describe(scenario)?)
            }
            Seeds::Swarm => println!(
                "scenario   swarm: every seed draws its own configuration ({} of {} promise fresh reads)",
                figures.promising_fresh_reads, figures.runs
            ),
        }
        let runs = figures.runs + panics.len();
        // No rate from no measurable CPU time (an empty range): it would
        // be a division by zero, not a speed.
        let per_cpu = cpu.filter(|cpu| *cpu > 0.0).map_or(String::new(), |cpu| {
            format!(
                "; {cpu:.1} s CPU, {:.1} seeds per CPU-second",
                runs as f64 / cpu
            )
        });
        println!(
            "seeds      {}..{} ({runs} runs in {:.1}s, {:.1} seeds/s{per_cpu})",
            seeds.start,
            seeds.end,
            elapsed.as_secs_f64(),
            runs as f64 / elapsed.as_secs_f64().max(1e-9)
        );
        println!(
            "operations {}: {}",
            figures.operations,
            fmt_counts(&figures.outcomes)
        );
        println!(
            "faults     {}",
            if figures.faults.is_empty() {
                "none".into()
            } else {
                fmt_counts(&figures.faults)
            }
        );
        println!("disks      {}", fmt_disk(&figures.disk));
        println!(
            "checks     {} stale reads, {} lost updates, {} misreported writes, {} acknowledged writes on no store, {} seeds not linearizable, {} refused while reachable",
            figures.stale_reads,
            figures.lost_updates,
            figures.misreported_writes,
            figures.missing_writes,
            figures.not_linearizable,
            figures.refused_while_reachable
        );
        let agreement_ms = &figures.agreement_ms;
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
            figures.runs,
            at(0.5),
            at(0.99)
        );
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
            let broken: Vec<String> = o.failures().iter().map(|g| g.to_string()).collect();
            println!(
                "  seed {}: {}  replay: {}",
                o.seed,
                broken.join(", "),
                seeds_of.replay_command(&o.scenario, o.seed)
            );
            if matches!(seeds_of, Seeds::Swarm) {
                println!("    drew {}: {}", o.scenario.name(), o.scenario.to_json());
            }
            if let Some(dir) = &args.save_failures {
                let path = dir.join(format!(
                    "{}-{}.jsonl",
                    seeds_of.name().replace(['/', ',', '=', ' '], "_"),
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
                seeds_of.replay_command(&p.scenario, p.seed)
            );
        }
        let next = seeds.start + runs as u64;
        if next < seeds.end {
            println!(
                "  stopped after {} panicking seeds (--max-panics), at seed {}: this build aborts on a \
                 panic, and keeps each panicked seed's thread; the rest are --seeds {next}..{}",
                panics.len(),
                next - 1,
                seeds.end
            );
        }
        if let (Some(out), Some(first)) = (&args.shrink, failing.first()) {
            println!();
            shrink(&first.scenario, first.seed, None, out)?;
        }
        Ok(ExitCode::from(1))
    }

    /// Shrink `seed` of `scenario` and write the schedule file to `out`.
    pub fn shrink(
        scenario: &Scenario,
        seed: u64,
        target: Option<Guarantee>,
        out: &std::path::Path,
    ) -> Result<ExitCode> {
        let output = Output::open(out)?;
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(
            ProgressStyle::with_template("{spinner} shrinking seed {prefix}: {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        spinner.set_prefix(seed.to_string());
        let report = quorumlog_sim::shrink::shrink(scenario, seed, target, &|step| {
            spinner.set_message(step.to_string());
            spinner.tick();
        })?;
        spinner.finish_and_clear();
        print!("{report}");
        let note = format!(
            "{} shrunk from {} (cargo sim shrink)",
            report.target, report.before
        );
        let file = quorumlog_sim::seeds::SeedFile::record(
            &report.scenario,
            report.seed,
            &report.broken,
            Some(note),
        );
        output.write(file.as_bytes())?;
        println!("schedule   {}", out.display());
        println!("replay     cargo sim replay --schedule {}", out.display());
        Ok(ExitCode::SUCCESS)
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
        expected: Option<Vec<Guarantee>>,
        history: Option<PathBuf>,
        save_seed: Option<PathBuf>,
        note: Option<String>,
    ) -> Result<ExitCode> {
        let spec = describe(&scenario)?;
        let outcome = run_and_check(&scenario, seed);
        println!("scenario {} ({spec}), seed {seed}", scenario.name());
        if scenario.fault_mix.is_some() || scenario.script.is_some() {
            println!("drawn    {}", scenario.to_json());
        }
        println!(
            "\nfault schedule:\n{}",
            if outcome.fault_events.is_empty() {
                "  (none)\n".into()
            } else {
                outcome.fault_log()
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
        match &outcome.read_repair {
            Some(report) => println!("{report}"),
            None => println!("read repair: off, not judged"),
        }
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
        if let Some(expected) = expected {
            let names = |gs: &[Guarantee]| {
                if gs.is_empty() {
                    "nothing".to_string()
                } else {
                    gs.iter().map(|g| g.key()).collect::<Vec<_>>().join(", ")
                }
            };
            if expected != outcome.broken {
                println!(
                    "CHANGED: the file expects this run to break {}; it broke {}",
                    names(&expected),
                    names(&outcome.broken)
                );
            } else {
                println!("as the file expects, the run broke {}", names(&expected));
            }
        }
        let failures = outcome.failures();
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
        let json = json.as_deref().map(Output::open).transpose()?;
        let csv = csv.as_deref().map(Output::open).transpose()?;
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
        if let Some(output) = json {
            output.write(table.to_json().as_bytes())?;
        }
        if let Some(output) = csv {
            output.write(table.to_csv().as_bytes())?;
        }
        Ok(if table.has_bugs() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    }
}
