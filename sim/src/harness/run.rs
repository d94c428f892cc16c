//! One simulated run: build the cluster, start the clients and the nemesis,
//! heal, read every key once more in quiet, and hand back the history.
use super::cluster::SimCluster;
use super::nemesis::{FaultEvent, Nemesis};
use super::workload::{Recorder, SimClient};
use crate::history::{Event, History, OpKind, Outcome, HISTORY_FORMAT};
use crate::scenario::Scenario;
use quorumlog_core::{Client, Consistency, CoordinatorConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a client waits for a coordinator (longer than the coordinator's
/// own replica timeout, so its `Timeout` answer normally arrives first).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Quiet time after the heal before the final reads: lets breakers close
/// and stalled messages drain.
const QUIESCENCE: Duration = Duration::from_secs(5);
/// Attempts of the final read of each key.
const FINAL_READ_ATTEMPTS: usize = 10;
/// Simulated time after which a run is declared hung.
const TIME_LIMIT: Duration = Duration::from_secs(3600);

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
}

pub struct RunResult {
    pub scenario: Scenario,
    pub seed: u64,
    pub history: History,
    pub faults: Vec<FaultEvent>,
    pub stats: RunStats,
}

impl RunResult {
    /// The fault log, one line per event.
    pub fn fault_log(&self) -> String {
        self.faults.iter().map(|f| format!("{f}\n")).collect()
    }
}

/// Independent RNG streams derived from the seed, so that adding a client
/// does not change what the nemesis does.
fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Run one seed of `scenario` in a fresh madsim runtime.
pub fn run_seed(scenario: &Scenario, seed: u64) -> RunResult {
    let mut runtime =
        madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(TIME_LIMIT);
    runtime.block_on(simulate(scenario.clone(), seed))
}

/// The body of a run; call inside a madsim runtime.
pub async fn simulate(scenario: Scenario, seed: u64) -> RunResult {
    let started = Instant::now();
    let cluster = SimCluster::start(scenario.nodes, CoordinatorConfig::default());
    let recorder = Recorder::new(started);
    let keys: Vec<String> = (0..scenario.hot_keys + scenario.cold_keys)
        .map(|k| format!("k{k}"))
        .collect();
    // Let every node bind its listener before the first request.
    tokio::time::sleep(Duration::from_millis(10)).await;

    let mut clients = Vec::new();
    for c in 0..scenario.clients {
        let host = cluster.client_host(c);
        let client = SimClient {
            id: c as u32,
            client: Client::new(cluster.coordinators(), CLIENT_TIMEOUT),
            recorder: recorder.clone(),
            levels: scenario.levels_of(c),
            rng: rng(seed, 100 + c as u64),
            coordinators: cluster.n(),
        };
        // Spread the operations: the first clients take the remainder.
        let share = scenario.operations / scenario.clients
            + usize::from(c < scenario.operations % scenario.clients);
        let keys = keys.clone();
        let hot = scenario.hot_keys;
        clients.push(host.spawn(async move { client.run(share, &keys, hot).await }));
    }

    let done = Arc::new(AtomicBool::new(false));
    let mut nemesis = Nemesis::new(&cluster, scenario.faults, rng(seed, 1), started);
    let workload = {
        let done = done.clone();
        async move {
            for client in clients {
                let _ = client.await;
            }
            done.store(true, Ordering::SeqCst);
        }
    };
    tokio::join!(workload, nemesis.run(done));
    nemesis.heal_all();
    tokio::time::sleep(QUIESCENCE).await;

    // The quiescent final read of every key, at ALL, by a fresh client.
    let final_host = cluster.client_host(scenario.clients);
    let mut reader = SimClient {
        id: scenario.clients as u32,
        client: Client::new(cluster.coordinators(), CLIENT_TIMEOUT),
        recorder: recorder.clone(),
        levels: scenario.levels,
        rng: rng(seed, 2),
        coordinators: cluster.n(),
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

    let mut history = History::new();
    history.push(Event::Header {
        format: HISTORY_FORMAT,
        scenario: Some(scenario.name()),
        seed: Some(seed),
        n: Some(scenario.nodes),
    });
    for event in recorder.take() {
        history.push(event);
    }
    let faults = nemesis.into_log();
    let stats = stats(&history, &faults, started);
    RunResult {
        scenario,
        seed,
        history,
        faults,
        stats,
    }
}

fn stats(history: &History, faults: &[FaultEvent], started: Instant) -> RunStats {
    let mut stats = RunStats {
        simulated_ms: Instant::now().duration_since(started).as_millis() as u64,
        ..RunStats::default()
    };
    for op in history.operations().iter().filter(|op| !op.is_final) {
        stats.operations += 1;
        match op.kind {
            OpKind::Read => stats.reads += 1,
            _ => stats.writes += 1,
        }
        let outcome = match op.outcome {
            Some(Outcome::Ok) => "ok",
            Some(Outcome::Unavailable) => "unavailable",
            Some(Outcome::Timeout) => "timeout",
            Some(Outcome::Fail) => "fail",
            None => "pending",
        };
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
