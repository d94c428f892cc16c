//! `quorumd bench`: a closed-loop load generator against the gateway.
//!
//! For each level in turn, `concurrency` workers issue requests for
//! `duration`: a `mix` percentage of writes, the rest reads. Each worker
//! owns its write keys and passes back the context its last write to a key
//! returned, so writes supersede instead of piling up siblings; reads go to
//! keys written during the fill phase. Latency goes into HDR histograms.
use crate::gateway_client::{GatewayClient, KeyContext};
use crate::record::Recorder;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use quorumlog_core::Consistency;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: String,
    pub concurrency: usize,
    pub duration: Duration,
    /// Percentage of operations that are writes.
    pub write_percent: u8,
    pub levels: Vec<Consistency>,
    /// Keys each worker writes (and that reads choose from).
    pub keys_per_worker: usize,
    pub value_size: usize,
    pub progress: bool,
    /// Record every operation, and a final read of every key at ALL, as a
    /// history file for `quorumd check`.
    pub history: Option<PathBuf>,
}

#[derive(Debug)]
pub struct OpStats {
    pub histogram: Histogram<u64>,
    pub errors: BTreeMap<u16, u64>,
}

impl OpStats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            errors: BTreeMap::new(),
        })
    }

    fn add(&mut self, other: &OpStats) -> anyhow::Result<()> {
        self.histogram.add(&other.histogram)?;
        for (status, count) in &other.errors {
            *self.errors.entry(*status).or_default() += count;
        }
        Ok(())
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }
}

#[derive(Debug)]
pub struct LevelReport {
    pub level: Consistency,
    pub elapsed: Duration,
    pub writes: OpStats,
    pub reads: OpStats,
}

/// Small deterministic generator (xorshift64*): the bench needs no crypto.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn key(run: u64, worker: usize, i: usize) -> String {
    format!("bench-{run}-{worker}-{i}")
}

struct Worker {
    id: usize,
    run: u64,
    client: GatewayClient,
    contexts: Vec<KeyContext>,
    rng: Rng,
    value_size: usize,
    /// Writes issued so far: numbers this worker's values.
    written: u64,
}

impl Worker {
    /// A value no other write of the run has: `c<worker>-<n>-` padded with
    /// `x` to the value size (the checkers tell writes apart by value where
    /// a version carries no dot).
    fn next_value(&mut self) -> String {
        let mut value = format!("c{}-{}-", self.client.id, self.written);
        self.written += 1;
        while value.len() < self.value_size {
            value.push('x');
        }
        value
    }

    /// One write; returns the HTTP status.
    async fn write(&mut self, level: Consistency, i: usize) -> u16 {
        let value = self.next_value();
        let key = key(self.run, self.id, i);
        self.client
            .write(level, &key, &value, &mut self.contexts[i])
            .await
            .status
    }

    async fn read(&mut self, level: Consistency, worker: usize, i: usize) -> u16 {
        // A read of another worker's key must not change the context this
        // worker's next write of its own key sends.
        let mut scratch = KeyContext::default();
        self.client
            .read(level, &key(self.run, worker, i), false, &mut scratch)
            .await
            .status
    }
}

pub async fn run(config: BenchConfig) -> anyhow::Result<Vec<LevelReport>> {
    if config.concurrency == 0 || config.keys_per_worker == 0 || config.levels.is_empty() {
        anyhow::bail!("concurrency, keys and levels must be non-zero");
    }
    if config.write_percent > 100 {
        anyhow::bail!("--mix is a percentage of writes (0-100)");
    }
    let base = config.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency * 2)
        .timeout(Duration::from_secs(10))
        .build()?;
    let health = http.get(format!("{base}/api/logs/health")).send().await?;
    let health: Value = health.json().await?;
    let mut out = std::io::stdout();
    writeln!(
        out,
        "gateway {base}: {} ({} of {} nodes up)",
        health["status"].as_str().unwrap_or("?"),
        health["up"],
        health["n"]
    )?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let recorder = match &config.history {
        Some(path) => Some(Arc::new(Recorder::create(
            path,
            "bench",
            None,
            health["n"].as_u64().and_then(|n| usize::try_from(n).ok()),
        )?)),
        None => None,
    };
    let mut workers: Vec<Worker> = (0..config.concurrency)
        .map(|id| Worker {
            id,
            run,
            client: GatewayClient::new(http.clone(), &base, client_id(id), recorder.clone()),
            contexts: vec![KeyContext::default(); config.keys_per_worker],
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ ((id as u64 + 1) * 0x1000_0001)),
            value_size: config.value_size.max(1),
            written: 0,
        })
        .collect();

    // Fill: every worker writes each of its keys once at ALL, so reads find them.
    let fill = ProgressBar::new((config.concurrency * config.keys_per_worker) as u64);
    if config.progress {
        fill.set_style(ProgressStyle::with_template(
            "fill  {bar:40} {pos}/{len} keys",
        )?);
    } else {
        fill.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let tasks: Vec<_> = workers
        .drain(..)
        .map(|mut w| {
            let fill = fill.clone();
            let keys = config.keys_per_worker;
            tokio::spawn(async move {
                let mut failed = 0u64;
                for i in 0..keys {
                    if w.write(Consistency::All, i).await != 200 {
                        failed += 1;
                    }
                    fill.inc(1);
                }
                (w, failed)
            })
        })
        .collect();
    let mut fill_failed = 0;
    for task in tasks {
        let (w, failed) = task.await?;
        fill_failed += failed;
        workers.push(w);
    }
    fill.finish_and_clear();
    if fill_failed > 0 {
        writeln!(
            out,
            "warning: {fill_failed} fill writes failed; reads of those keys answer 404"
        )?;
    }

    let mut reports = Vec::new();
    for &level in &config.levels {
        let bar = ProgressBar::new(config.duration.as_millis() as u64);
        if config.progress {
            bar.set_style(ProgressStyle::with_template(&format!(
                "{level:<6} {{bar:40}} {{elapsed}}/{} {{msg}}",
                humantime(config.duration)
            ))?);
        } else {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let started = Instant::now();
        let deadline = started + config.duration;
        let tasks: Vec<_> = workers
            .drain(..)
            .map(|mut w| {
                let write_percent = config.write_percent;
                let keys = config.keys_per_worker;
                let concurrency = config.concurrency;
                let bar = bar.clone();
                tokio::spawn(async move {
                    let mut writes = OpStats::new()?;
                    let mut reads = OpStats::new()?;
                    let mut ops = 0u64;
                    while Instant::now() < deadline {
                        let is_write = (w.rng.below(100) as u8) < write_percent;
                        let t = Instant::now();
                        let (status, stats) = if is_write {
                            let i = w.rng.below(keys);
                            (w.write(level, i).await, &mut writes)
                        } else {
                            let worker = w.rng.below(concurrency);
                            let i = w.rng.below(keys);
                            (w.read(level, worker, i).await, &mut reads)
                        };
                        let micros = t.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                        if status == 200 {
                            stats.histogram.record(micros)?;
                        } else {
                            *stats.errors.entry(status).or_default() += 1;
                        }
                        ops += 1;
                        if ops & 63 == 0 && w.id == 0 {
                            bar.set_position(t.duration_since(started).as_millis() as u64);
                        }
                    }
                    anyhow::Ok((w, writes, reads))
                })
            })
            .collect();
        let mut writes = OpStats::new()?;
        let mut reads = OpStats::new()?;
        for task in tasks {
            let (w, wr, rd) = task.await??;
            writes.add(&wr)?;
            reads.add(&rd)?;
            workers.push(w);
        }
        bar.finish_and_clear();
        let report = LevelReport {
            level,
            elapsed: started.elapsed(),
            writes,
            reads,
        };
        print_level(&mut out, &report)?;
        reports.push(report);
    }
    print_summary(&mut out, &config, &reports)?;
    if let Some(recorder) = recorder {
        let client = GatewayClient::new(
            http.clone(),
            &base,
            client_id(config.concurrency),
            Some(recorder.clone()),
        );
        let keys: Vec<String> = (0..config.concurrency)
            .flat_map(|w| (0..config.keys_per_worker).map(move |i| key(run, w, i)))
            .collect();
        let unread = final_reads(&client, &keys).await;
        recorder.finish()?;
        writeln!(
            out,
            "history    {} ({} keys read at ALL at the end{}); check it with: quorumd check {}",
            recorder.path().display(),
            keys.len(),
            if unread == 0 {
                String::new()
            } else {
                format!(", {unread} of them unreadable")
            },
            recorder.path().display()
        )?;
    }
    Ok(reports)
}

/// A worker's client id in the history (1-based, as the simulator's).
fn client_id(worker: usize) -> u32 {
    u32::try_from(worker + 1).unwrap_or(u32::MAX)
}

/// The quiescent read of every key at ALL that ends a recorded run, each
/// tried a few times (every try is recorded); returns how many keys no
/// try could read.
pub async fn final_reads(client: &GatewayClient, keys: &[String]) -> usize {
    const TRIES: u32 = 5;
    let mut unread = 0;
    for key in keys {
        let mut read = false;
        for attempt in 0..TRIES {
            let mut scratch = KeyContext::default();
            let answer = client.read(Consistency::All, key, true, &mut scratch).await;
            if answer.outcome == quorumlog_history::Outcome::Ok {
                read = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
        }
        if !read {
            unread += 1;
        }
    }
    unread
}

fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn print_level(out: &mut impl Write, r: &LevelReport) -> std::io::Result<()> {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    for (op, stats) in [("write", &r.writes), ("read", &r.reads)] {
        let count = stats.histogram.len();
        let errors: u64 = stats.errors.values().sum();
        if count == 0 && errors == 0 {
            continue;
        }
        let errors = if errors == 0 {
            String::new()
        } else {
            format!("  errors {:?}", stats.errors)
        };
        writeln!(out, "{:<6} {:<5} {:>8} ok {:>9.1} op/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  mean {:>7.2} ms{errors}",
            r.level.to_string(),
            op,
            count,
            count as f64 / secs,
            stats.quantile_ms(0.5),
            stats.quantile_ms(0.9),
            stats.quantile_ms(0.99),
            stats.histogram.max() as f64 / 1000.0,
            stats.histogram.mean() / 1000.0,
        )?;
    }
    Ok(())
}

/// The reference system's published write latencies, for comparison.
fn reference(level: Consistency) -> &'static str {
    match level {
        Consistency::One => "5-10 ms",
        Consistency::Quorum => "15-30 ms",
        Consistency::All => "50-100 ms",
        Consistency::Count(_) => "-",
    }
}

fn print_summary(
    out: &mut impl Write,
    config: &BenchConfig,
    reports: &[LevelReport],
) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{} clients, {}s per level, {}% writes; latency through the gateway (HTTP) in ms",
        config.concurrency,
        config.duration.as_secs(),
        config.write_percent
    )?;
    writeln!(
        out,
        "{:<7}| {:>9} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>10} | reference avg",
        "level", "w p50", "w p90", "w p99", "w max", "w mean", "r p50", "r p99", "r max", "op/s"
    )?;
    for r in reports {
        let ops = (r.writes.histogram.len() + r.reads.histogram.len()) as f64
            / r.elapsed.as_secs_f64().max(1e-9);
        writeln!(out, "{:<7}| {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} | {:>9.2} {:>9.2} {:>9.2} | {:>10.0} | {}",
            r.level.to_string(),
            r.writes.quantile_ms(0.5),
            r.writes.quantile_ms(0.9),
            r.writes.quantile_ms(0.99),
            r.writes.histogram.max() as f64 / 1000.0,
            r.writes.histogram.mean() / 1000.0,
            r.reads.quantile_ms(0.5),
            r.reads.quantile_ms(0.99),
            r.reads.histogram.max() as f64 / 1000.0,
            ops,
            reference(r.level),
        )?;
    }
    Ok(())
}
