//! One simulated run: build the cluster, start the clients and the nemesis,
//! heal, read every key once more in quiet, and hand back the history.
use super::adversary::Adversary;
use super::cluster::{SimCluster, SimNode};
use super::disk::DiskStats;
use super::nemesis::{ground_truth, FaultEvent, Nemesis};
use super::workload::{observed, Recorder, SimClient};
use crate::check::{
    any_disagreement, disagreements, ConvergenceReport, GroundTruth, Outage, StoreContents,
};
use crate::history::{Event, History, OpKind, Outcome, HISTORY_FORMAT};
use crate::scenario::{Scenario, SIM_KEY_LIMITS};
use quorumlog_core::buggify::{self, FaultPoint};
use quorumlog_core::{
    breaker::BreakerConfig, AntiEntropyConfig, Client, Consistency, CoordinatorConfig, HintLimits,
    NodeId, ReadRepair, Siblings,
};
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Quiet time after the heal before the final reads: lets breakers close
/// and stalled messages drain (at least the breaker's open time and a
/// replica timeout more than this, whatever the tuning).
const QUIESCENCE: Duration = Duration::from_secs(5);
/// How long after the heal every replica must agree on every key (the
/// liveness phase): hints and anti-entropy must converge within it.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(60);
/// How often the liveness phase compares the stores.
const LIVENESS_POLL: Duration = Duration::from_millis(100);
/// How often the stores are compared while the final reads' background
/// repairs land.
const REPAIR_POLL: Duration = Duration::from_millis(10);
/// Attempts of the final read of each key.
const FINAL_READ_ATTEMPTS: usize = 10;
/// Simulated time after which a run is declared hung.
const TIME_LIMIT: Duration = Duration::from_secs(3600);
/// Sizes of the adversary's big values: from a sixteenth to three eighths
/// of the key's byte limit, so that three to sixteen of them fill a key.
const BIG_VALUE_BYTES: std::ops::Range<usize> =
    SIM_KEY_LIMITS.max_bytes / 16..SIM_KEY_LIMITS.max_bytes * 3 / 8;
/// Anti-entropy's repair bandwidth in the simulator: 32 full keys a second,
/// so that a round repairing many big keys is throttled, as a deployed one
/// repairing many large keys is.
const SIM_REPAIR_BYTES_PER_SECOND: u64 = 32 * SIM_KEY_LIMITS.max_bytes as u64;
/// Shares of a client's writes that misbehave, one drawn per seed.
const ADVERSARIAL_SHARES: [f64; 3] = [0.0, 0.05, 0.15];

/// The coordinator configuration every simulated node of `scenario` runs:
/// the deployed one with the scenario's tuning and the simulator's key limits.
pub fn sim_config(scenario: &Scenario) -> CoordinatorConfig {
    let tuning = &scenario.tuning;
    let deployed = CoordinatorConfig::default();
    CoordinatorConfig {
        key_limits: SIM_KEY_LIMITS,
        replica_timeout: Duration::from_millis(tuning.replica_timeout_ms),
        breaker: BreakerConfig {
            failure_threshold: tuning.breaker_threshold,
            open_for: Duration::from_millis(tuning.breaker_open_ms),
        },
        read_repair: tuning.read_repair,
        hedge_after: tuning.hedge_after_ms.map(Duration::from_millis),
        hinted_handoff: if tuning.hints {
            deployed.hinted_handoff.or(Some(HintLimits::default()))
        } else {
            None
        },
        anti_entropy: tuning.anti_entropy_ms.map(|ms| AntiEntropyConfig {
            interval: Duration::from_millis(ms),
            max_bytes_per_second: SIM_REPAIR_BYTES_PER_SECOND,
            ..deployed.anti_entropy.unwrap_or_default()
        }),
        ..deployed
    }
}

/// Counts for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    pub operations: usize,
    pub reads: usize,
    pub writes: usize,
    /// Per outcome ("ok", "unavailable", "timeout", "fail", "pending").
    pub outcomes: BTreeMap<String, usize>,
    /// Faults injected, per kind.
    pub faults: BTreeMap<String, usize>,
    pub simulated_ms: u64,
    /// Share of the clients' writes drawn to misbehave, per mille.
    pub adversarial_permille: u32,
    /// The most (replica, key) pairs whose stored set exceeded the key
    /// limits at once, checked every 100 ms and at the end: more siblings
    /// than allowed, or more value bytes than the byte limit (a lower bound
    /// of what the limit counts, so this never blames a key within it).
    pub keys_over_limits: usize,
    /// What the nodes' disks did: commits, failures, batches lost in crashes.
    pub disk: DiskStats,
}

pub struct RunResult {
    pub scenario: Scenario,
    pub seed: u64,
    pub history: History,
    pub faults: Vec<FaultEvent>,
    pub stats: RunStats,
    /// What every replica's store held at the end.
    pub stores: Vec<StoreContents>,
    /// Whether, and how soon after the heal, the replicas came to agree.
    pub convergence: ConvergenceReport,
    /// What the faults did to the cluster, for the availability judge.
    pub ground_truth: GroundTruth,
}

impl RunResult {
    /// The fault log, one line per event.
    pub fn fault_log(&self) -> String {
        crate::fault::log_text(&self.faults)
    }
}

/// Each fault point is active in about half the seeds, firing with a
/// probability drawn between these when reached.
const FAULT_POINT_PROBABILITY: std::ops::Range<f64> = 0.005..0.05;

/// The fault points a seed turns on, and how often each fires.
fn draw_fault_points(rng: &mut ChaCha8Rng) -> Vec<(FaultPoint, f64)> {
    let mut points = Vec::new();
    for point in FaultPoint::EVERY {
        if rng.gen_bool(0.5) {
            points.push((point, rng.gen_range(FAULT_POINT_PROBABILITY)));
        }
    }
    if points.is_empty() {
        let point = FaultPoint::EVERY[rng.gen_range(0..FaultPoint::EVERY.len())];
        points.push((point, rng.gen_range(FAULT_POINT_PROBABILITY)));
    }
    points
}

/// Independent RNG streams derived from the seed, so that adding a client
/// does not change what the nemesis does.
fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Run one seed of `scenario` in a fresh madsim runtime, on the calling
/// thread.
///
/// What a thread ran before cannot change the run. The one per-thread
/// state a runtime does not reset is std's `HashMap` keys (madsim seeds
/// them only when its runtime is the first to ask on a thread), and no
/// `HashMap` order reaches a run: madsim (the project's copy of 0.2.34,
/// `vendor/madsim`) only looks its maps up, and the project's crates hold
/// no std `HashMap` or `HashSet` at all (`clippy.toml` disallows them). A thread per seed, as runs once
/// had, cost a twentieth of a sweep: each started a fresh mimalloc heap
/// and faulted its pages in.
pub fn run_seed(scenario: &Scenario, seed: u64) -> RunResult {
    crate::keep_freed_memory();
    let mut runtime =
        madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(TIME_LIMIT);
    runtime.block_on(simulate(scenario.clone(), seed))
}

/// The body of a run; call inside a madsim runtime.
pub async fn simulate(scenario: Scenario, seed: u64) -> RunResult {
    let started = Instant::now();
    buggify::activate(if scenario.fault_points {
        draw_fault_points(&mut rng(seed, 4))
    } else {
        Vec::new()
    });
    let cluster = Arc::new(SimCluster::start(
        scenario.nodes,
        sim_config(&scenario),
        scenario.disk_faults(),
        // Past every client's stream (100 + client, at most 256 clients).
        |id| rng(seed, 1000 + u64::from(id)),
    ));
    // Drawn even when the scenario sets it, so that setting it changes
    // nothing else.
    let drawn = *ADVERSARIAL_SHARES.choose(&mut rng(seed, 3)).unwrap_or(&0.0);
    let share = scenario
        .mix
        .adversarial_permille
        .map_or(drawn, |permille| f64::from(permille) / 1000.0);
    let client_timeout = Duration::from_millis(scenario.tuning.client_timeout_ms);
    let keys: Vec<String> = (0..scenario.hot_keys + scenario.cold_keys)
        .map(|k| format!("k{k}"))
        .collect();
    // An invoke and a completion per operation and per final read (at
    // least one per key).
    let recorder = Recorder::new(started, 2 * (scenario.operations + keys.len()) + 16);
    // Let every node bind its listener before the first request.
    tokio::time::sleep(Duration::from_millis(10)).await;

    let mut clients = Vec::new();
    for c in 0..scenario.clients {
        let host = cluster.client_host(c);
        let client = SimClient {
            id: c as u32,
            client: Client::new(cluster.coordinators(), client_timeout),
            recorder: recorder.clone(),
            levels: scenario.levels_of(c),
            mix: scenario.mix,
            rng: rng(seed, 100 + c as u64),
            coordinators: cluster.n(),
            adversary: Adversary::new(share, BIG_VALUE_BYTES, cluster.n() as u32),
            overwrite: scenario.overwrite,
        };
        // Spread the operations: the first clients take the remainder.
        let share = scenario.operations / scenario.clients
            + usize::from(c < scenario.operations % scenario.clients);
        let keys = keys.clone();
        let hot = scenario.hot_keys;
        clients.push(host.spawn(async move { client.run(share, &keys, hot).await }));
    }

    let done = CancellationToken::new();
    let mut nemesis = Nemesis::new(
        cluster.clone(),
        scenario.fault_mix(),
        scenario.script.clone(),
        rng(seed, 1),
        started,
    );
    let workload = {
        let done = done.clone();
        async move {
            for client in clients {
                let _ = client.await;
            }
            done.cancel();
        }
    };
    let watch = watch_key_limits(&cluster, done.clone());
    // A task of its own: the timer of a calm the workload's end cut short
    // still fires, and must wake nothing that is still running (a script
    // replaying this run has no such timer).
    let nemesis = tokio::spawn(async move {
        nemesis.run(done).await;
        nemesis
    });
    let (_, over_limits) = tokio::join!(workload, watch);
    let mut nemesis = nemesis.await.expect("the nemesis never panics");
    nemesis.heal_all();
    // Heal means every fault ends, not only the nemesis's: the fault
    // points in the core and the disks' failing commits stop too. Left
    // on, they kept failing the liveness phase and the final reads, which
    // the checkers judge as a healthy cluster's (a read at ALL over seven
    // replicas, with requests dropped at a few percent each, failed ten
    // times running in 3 of 30,000 swarm seeds).
    buggify::deactivate();
    cluster.heal_disks();
    let convergence = await_agreement(&cluster).await;
    let config = sim_config(&scenario);
    tokio::time::sleep(QUIESCENCE.max(config.breaker.open_for + config.replica_timeout * 2)).await;

    // The quiescent final read of every key, at ALL, by a fresh client.
    let final_host = cluster.client_host(scenario.clients);
    let mut reader = SimClient {
        id: scenario.clients as u32,
        client: Client::new(cluster.coordinators(), client_timeout),
        recorder: recorder.clone(),
        levels: scenario.levels,
        mix: scenario.mix,
        rng: rng(seed, 2),
        coordinators: cluster.n(),
        adversary: Adversary::new(0.0, BIG_VALUE_BYTES, cluster.n() as u32),
        overwrite: false,
    };
    let final_keys = keys.clone();
    final_host
        .spawn(async move {
            for key in &final_keys {
                for _ in 0..FINAL_READ_ATTEMPTS {
                    if reader.read(key, Consistency::All, true).await.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        })
        .await
        .expect("the final reader is never killed");

    let recorded = recorder.take();
    let mut events = Vec::with_capacity(1 + recorded.len());
    events.push(Event::Header {
        format: HISTORY_FORMAT,
        scenario: Some(scenario.name()),
        seed: Some(seed),
        n: Some(scenario.nodes),
    });
    events.extend(recorded);
    let history = History { events };
    let faults = nemesis.into_log();
    let mut stats = stats(&history, &faults, started);
    stats.disk = cluster
        .nodes()
        .iter()
        .fold(DiskStats::default(), |sum, node| {
            sum.plus(node.disk_stats())
        });
    let mut ground_truth = ground_truth(&faults, scenario.nodes, &sim_config(&scenario));
    if !buggify::fired().is_empty() || stats.disk.failed + stats.disk.unknown > 0 {
        // A fault point lost or held back messages between replicas, or a
        // disk failed commits, at moments the log does not record: no
        // link is trusted all run.
        ground_truth.outages.push(Outage::Network {
            from_us: 0,
            to_us: u64::MAX,
        });
    }
    for (point, fired) in buggify::fired() {
        stats
            .faults
            .insert(format!("point:{point}"), fired as usize);
    }
    stats.adversarial_permille = (share * 1000.0).round() as u32;
    stats.keys_over_limits = over_limits
        .max(keys_over_limits(&cluster))
        .saturating_add(usize::try_from(stats.disk.grown_past_limit).unwrap_or(usize::MAX));
    // The final reads' background repairs land within a replica timeout
    // of a healed cluster: the stores are taken once the replicas agree or
    // two timeouts have passed, so that they show what read repair left (a
    // blocking repair is done when its read answers). Usually the first
    // look finds them agreeing, and the nodes' background work (hint
    // replays, anti-entropy rounds) has no time to run.
    if scenario.tuning.read_repair == ReadRepair::Background {
        let waited = Instant::now();
        loop {
            tokio::time::sleep(REPAIR_POLL).await;
            let agree = !any_disagreement(&unlike_contents(&cluster));
            if agree || waited.elapsed() >= config.replica_timeout * 2 {
                break;
            }
        }
    }
    let stores = store_contents(&cluster, SimNode::stored);
    cluster.shut_down().await;
    RunResult {
        scenario,
        seed,
        history,
        faults,
        stats,
        stores,
        convergence,
        ground_truth,
    }
}

/// What every replica's store holds right now, as `stored` reads it
/// (every key, or only some).
fn store_contents(
    cluster: &SimCluster,
    stored: impl Fn(&SimNode) -> BTreeMap<String, Arc<Siblings>>,
) -> Vec<StoreContents> {
    cluster
        .nodes()
        .iter()
        .map(|node| contents(node.id, stored(node)))
        .collect()
}

fn contents(node: NodeId, stored: BTreeMap<String, Arc<Siblings>>) -> StoreContents {
    let mut contents = StoreContents::new(node);
    for (key, siblings) in stored {
        contents.insert(key, siblings.versions().iter().map(observed).collect());
    }
    contents
}

/// What every replica holds of the keys whose rows are not the same bytes
/// on every disk: keys held alike agree, so these decide whether the
/// replicas agree, as every key would.
fn unlike_contents(cluster: &SimCluster) -> Vec<StoreContents> {
    let unlike = cluster.keys_not_alike();
    store_contents(cluster, |node| node.stored_among(&unlike))
}

/// The liveness phase: with every fault healed and no client running,
/// compare the stores (never through reads, which would repair) until
/// every replica holds the same versions of every key, or
/// [`LIVENESS_LIMIT`] passes.
async fn await_agreement(cluster: &SimCluster) -> ConvergenceReport {
    let healed = Instant::now();
    let limit_ms = LIVENESS_LIMIT.as_millis() as u64;
    loop {
        let stores = unlike_contents(cluster);
        let waited = Instant::now().duration_since(healed);
        // Each differing key is described (every value formatted) only for
        // the report of a run that did not converge.
        if !any_disagreement(&stores) {
            return ConvergenceReport::converged(waited.as_millis() as u64, limit_ms);
        }
        if waited >= LIVENESS_LIMIT {
            return ConvergenceReport::diverged(disagreements(&stores), limit_ms);
        }
        tokio::time::sleep(LIVENESS_POLL).await;
    }
}

/// (replica, key) pairs over the key limits right now (see
/// [`super::cluster::SimNode::keys_over`]): writes are refused past the
/// limits, and what replicas exchange to converge is accepted up to N times
/// them (two replicas apart may each fill a key).
fn keys_over_limits(cluster: &SimCluster) -> usize {
    let n = cluster.n();
    cluster
        .nodes()
        .iter()
        .map(|node| node.keys_over(SIM_KEY_LIMITS.max_siblings, SIM_KEY_LIMITS.max_bytes, n))
        .sum()
}

/// How often the stores are checked against the key limits while the
/// workload runs: a key may grow past a limit and shrink back before the
/// end of the run.
const LIMIT_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The most (replica, key) pairs seen over the key limits at once while
/// the workload ran.
async fn watch_key_limits(cluster: &SimCluster, done: CancellationToken) -> usize {
    let mut worst = 0;
    while !done.is_cancelled() {
        tokio::time::sleep(LIMIT_WATCH_INTERVAL).await;
        worst = worst.max(keys_over_limits(cluster));
    }
    worst
}

fn stats(history: &History, faults: &[FaultEvent], started: Instant) -> RunStats {
    let mut stats = RunStats {
        simulated_ms: Instant::now().duration_since(started).as_millis() as u64,
        ..RunStats::default()
    };
    for op in history.operation_refs().iter().filter(|op| !op.is_final) {
        stats.operations += 1;
        match op.kind {
            OpKind::Read => stats.reads += 1,
            _ => stats.writes += 1,
        }
        let outcome = op.outcome.map_or("pending", Outcome::name);
        *stats.outcomes.entry(outcome.to_string()).or_default() += 1;
    }
    for event in faults.iter().filter(|e| e.start) {
        *stats
            .faults
            .entry(event.fault.kind().to_string())
            .or_default() += 1;
    }
    stats
}
