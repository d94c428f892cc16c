//! `quorumd nemesis`: a real cluster under a seeded fault schedule, checked
//! with the simulator's checkers — Jepsen's method with quorumlog's own
//! checkers and replayable schedules.
//!
//! It starts N `quorumd node` processes, each in its own network namespace
//! on a bridge it creates ([`netns`]), on PostgreSQL (one database each,
//! reached through a relay per node, [`pg_proxy`]) or SQLite; the gateway
//! on loopback; and a recording workload of clients that read and write a
//! few shared keys through it. It plays the schedule ([`schedule`]),
//! heals, waits for the cluster to settle, reads every key at ALL, and
//! checks the history it recorded. The history is saved, so `quorumd check
//! FILE` gives the same verdict again. A schedule is a function of its
//! seed; timing is real, so a run replays in schedule, not byte for byte.
pub mod netns;
pub mod pg_proxy;
pub mod procs;
pub mod schedule;

use crate::bench::final_reads;
use crate::gateway_client::{GatewayClient, KeyContext};
use crate::record::Recorder;
use anyhow::{bail, Context};
use netns::{Network, Rule, HOST_ADDR, RPC_PORT};
use pg_proxy::PgProxy;
use procs::{GatewayProc, NodeProc, NodeSpec};
use quorumlog_check::{check_with_model_budget, Budget, CheckSummary, LinVerdict, ModelKind};
use quorumlog_core::Consistency;
use quorumlog_history::{History, Outcome};
use rand::{Rng, SeedableRng};
use schedule::{Families, Family, Fault, FaultKind};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the nodes keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NemesisStore {
    /// SQLite files in the run directory.
    Sqlite,
    /// A PostgreSQL server URL without a database
    /// (`postgres://user:password@host:port`); node i gets the database
    /// `quorumlog_nemesis_i`, dropped and created empty at the start.
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct NemesisConfig {
    /// The `quorumd` binary to run nodes and the gateway with.
    pub bin: PathBuf,
    pub store: NemesisStore,
    pub level: Consistency,
    pub seed: u64,
    pub faults: Families,
    pub nodes: u32,
    /// How long the workload runs under faults.
    pub duration: Duration,
    pub clients: u32,
    /// Keys every client reads and writes (shared: writes contend).
    pub keys: u32,
    /// Percentage of operations that are reads.
    pub read_percent: u8,
    /// Logs and (by default) the history go here.
    pub dir: PathBuf,
    pub history: PathBuf,
    /// Settling time after the heal, before the final reads.
    pub quiet: Duration,
}

/// What a run found.
#[derive(Debug)]
pub struct NemesisReport {
    pub summary: CheckSummary,
    pub row: VerdictRow,
    /// Whether W+R>N (with one replica to spare when disks are lost).
    pub promises_fresh_reads: bool,
    pub promises_durability: bool,
    /// Nodes that exited without being killed by the nemesis.
    pub unexpected_exits: Vec<String>,
    /// Keys no final read could read.
    pub unread_keys: usize,
    pub fault_log: Vec<String>,
    pub history: PathBuf,
}

impl NemesisReport {
    /// Whether a guarantee the level promises broke, or the cluster
    /// misbehaved (a node died by itself, a key stayed unreadable).
    pub fn failed(&self) -> bool {
        let s = &self.summary;
        (self.promises_fresh_reads && (s.stale_reads > 0 || s.superseded_returned > 0))
            || (self.promises_durability && (s.lost_updates > 0 || !s.durability.is_ok()))
            || !s.staleness.reads_are_well_formed()
            || !self.unexpected_exits.is_empty()
            || self.unread_keys > 0
    }
}

/// One row of the verdict table, with the columns of `cargo sim verdicts`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictRow {
    pub config: String,
    pub overlapping: bool,
    pub faults: String,
    pub operations: usize,
    pub availability: f64,
    pub stale_reads: usize,
    pub lost_updates: usize,
    pub linearizable: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl VerdictRow {
    /// The faults column is as wide as this row's list of families.
    fn faults_width(&self) -> usize {
        self.faults.len().max(11)
    }

    pub fn header(&self) -> String {
        format!(
            "{:<16} {:<5} {:<w$} {:>7} {:>7} {:>6} {:>5} {:>12} {:>8} {:>8}",
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
            w = self.faults_width()
        )
    }
}

impl std::fmt::Display for VerdictRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<16} {:<5} {:<w$} {:>7} {:>7.1} {:>6} {:>5} {:>12} {:>8.1} {:>8.1}",
            self.config,
            if self.overlapping { "yes" } else { "no" },
            self.faults,
            self.operations,
            self.availability,
            self.stale_reads,
            self.lost_updates,
            self.linearizable,
            self.p50_ms,
            self.p99_ms,
            w = self.faults_width()
        )
    }
}

/// Replicas a level needs, by the nemesis's own arithmetic (it judges
/// the core, so it does not ask the core).
fn replicas(level: Consistency, n: u32) -> u32 {
    match level {
        Consistency::One => 1,
        Consistency::Quorum => n / 2 + 1,
        Consistency::All => n,
        Consistency::Count(k) => u32::try_from(k).unwrap_or(u32::MAX).min(n),
    }
}

/// The PostgreSQL server's address in `base`, and the URL node `id`
/// uses: the same credentials, through its relay, to its own database.
fn postgres_urls(base: &str, id: u32, relay: SocketAddr) -> anyhow::Result<(SocketAddr, String)> {
    let url = reqwest::Url::parse(base).with_context(|| format!("--store {base:?}"))?;
    let host = url
        .host_str()
        .with_context(|| format!("--store {base:?} names no host"))?;
    let port = url.port().unwrap_or(5432);
    let server = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .with_context(|| format!("resolve {host}:{port}"))?
        .next()
        .with_context(|| format!("{host}:{port} resolves to nothing"))?;
    let mut node = url.clone();
    node.set_host(Some(&relay.ip().to_string()))
        .map_err(|e| anyhow::anyhow!("relay address: {e}"))?;
    node.set_port(Some(relay.port()))
        .map_err(|()| anyhow::anyhow!("--store {base:?} cannot take a port"))?;
    node.set_path(&format!("/{}", database(id)));
    Ok((server, node.to_string()))
}

fn database(id: u32) -> String {
    format!("quorumlog_nemesis_{id}")
}

/// Drop node `id`'s database (whatever sessions it has) and create it empty.
async fn recreate_database(base: &str, id: u32) -> anyhow::Result<()> {
    use sqlx::Connection;
    let admin_url = format!("{}/postgres", base.trim_end_matches('/'));
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .with_context(|| format!("connect to {admin_url}"))?;
    let name = database(id);
    for statement in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::query(&statement)
            .execute(&mut admin)
            .await
            .with_context(|| format!("{statement} (the role needs CREATEDB)"))?;
    }
    let _ = admin.close().await;
    Ok(())
}

fn delete_sqlite(path: &std::path::Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("delete {file:?}")),
        }
    }
    Ok(())
}

/// Everything the nemesis runs and changes; dropped, it stops it all
/// (processes first, then the relays, then the network).
struct Rig {
    nodes: Vec<NodeProc>,
    gateway: Option<GatewayProc>,
    proxies: Vec<PgProxy>,
    network: Network,
    spec: NodeSpec,
    config: NemesisConfig,
    started: Instant,
    log: Vec<String>,
    unexpected_exits: Vec<String>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.gateway = None;
        self.nodes.clear();
        self.proxies.clear();
    }
}

impl Rig {
    fn node(&mut self, id: u32) -> anyhow::Result<&mut NodeProc> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id}"))
    }

    fn note(&mut self, text: String) {
        let line = format!("{:>9.3}s {text}", self.started.elapsed().as_secs_f64());
        println!("{line}");
        self.log.push(line);
    }

    /// Restart any node that died by itself, remembering that it did.
    fn reap(&mut self) -> anyhow::Result<()> {
        let mut died = Vec::new();
        for node in &mut self.nodes {
            if let Some(status) = node.exited() {
                died.push((node.id, status));
            }
        }
        for (id, status) in died {
            let text = format!("node n{id} exited by itself ({status}); restarted");
            self.note(text.clone());
            self.unexpected_exits.push(text);
            let spec = &self.spec;
            let node = self.nodes.iter_mut().find(|n| n.id == id).context("node")?;
            node.start(spec)?;
        }
        Ok(())
    }

    async fn start_fault(&mut self, index: u64, fault: &Fault) -> anyhow::Result<()> {
        match &fault.kind {
            FaultKind::Split { side } => {
                let others: Vec<u32> = (1..=self.config.nodes)
                    .filter(|n| !side.contains(n))
                    .collect();
                for &a in side {
                    for &b in &others {
                        self.network.impose(a, index, Rule::DropFrom(b))?;
                        self.network.impose(b, index, Rule::DropFrom(a))?;
                    }
                }
            }
            FaultKind::OneWay { from, to } => {
                self.network.impose(*to, index, Rule::DropFrom(*from))?
            }
            FaultKind::Kill { node } => self.node(*node)?.kill(),
            FaultKind::Pause { node } => self.node(*node)?.pause(),
            FaultKind::PgRestart { node } => {
                if let Some(proxy) = self.proxies.get(*node as usize - 1) {
                    proxy.cut();
                }
            }
            FaultKind::DiskLoss { node } => {
                let id = *node;
                self.node(id)?.kill();
                match &self.config.store {
                    NemesisStore::Postgres(base) => recreate_database(base, id).await?,
                    NemesisStore::Sqlite => {
                        delete_sqlite(&self.config.dir.join(format!("node-{id}.db")))?
                    }
                }
            }
            FaultKind::Loss { node, percent } => {
                self.network
                    .impose(*node, index, Rule::LossFromPeers(*percent))?
            }
            FaultKind::Slow { node, delay_ms } => {
                let first_fallback = self.network.netem_available().is_none();
                let how = self.network.slow(*node, *delay_ms)?;
                if how == "tbf" && first_fallback {
                    self.note(
                        "  (no tc netem in this kernel: slow links are throttled to 256 kbit/s with a queue of the delay instead)"
                            .to_string(),
                    );
                }
            }
        }
        Ok(())
    }

    async fn end_fault(&mut self, index: u64, fault: &Fault) -> anyhow::Result<()> {
        match &fault.kind {
            FaultKind::Split { .. } | FaultKind::OneWay { .. } | FaultKind::Loss { .. } => {
                self.network.lift(index)?
            }
            FaultKind::Kill { node } | FaultKind::DiskLoss { node } => {
                let id = *node;
                let spec = &self.spec;
                let node = self.nodes.iter_mut().find(|n| n.id == id).context("node")?;
                if !node.is_running() {
                    node.start(spec)?;
                }
            }
            FaultKind::Pause { node } => self.node(*node)?.resume(),
            FaultKind::PgRestart { node } => {
                if let Some(proxy) = self.proxies.get(*node as usize - 1) {
                    proxy.restore();
                }
            }
            FaultKind::Slow { node, .. } => self.network.unslow(*node)?,
        }
        Ok(())
    }

    fn log_tails(&self) -> String {
        let mut names: Vec<String> = (1..=self.config.nodes)
            .map(|id| format!("node-{id}"))
            .collect();
        names.push("gateway".into());
        procs::log_tails(&self.config.dir, &names)
    }
}

/// Wait until the gateway's health reports every node up.
async fn wait_up(http: &reqwest::Client, url: &str, n: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(response) = http.get(format!("{url}/api/logs/health")).send().await {
            if let Ok(body) = response.json::<serde_json::Value>().await {
                if body["up"].as_u64() == Some(u64::from(n)) {
                    return true;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// One client of the workload: until `deadline`, pick a shared key; read
/// it, or write a value no one else writes with the context of this
/// client's last answer for that key (read-then-write; the first write of
/// a key is blind).
async fn client_loop(
    client: GatewayClient,
    level: Consistency,
    keys: u32,
    read_percent: u8,
    seed: u64,
    deadline: Instant,
) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ u64::from(client.id) << 32);
    let mut contexts = vec![KeyContext::default(); keys as usize];
    let mut written = 0u64;
    while Instant::now() < deadline {
        let k = rng.gen_range(0..keys) as usize;
        let key = format!("nemesis-{k}");
        if rng.gen_range(0..100u8) < read_percent {
            client.read(level, &key, false, &mut contexts[k]).await;
        } else {
            let value = format!("c{}-{written}", client.id);
            written += 1;
            client.write(level, &key, &value, &mut contexts[k]).await;
        }
    }
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn verdict_row(
    config: &NemesisConfig,
    history: &History,
    summary: &CheckSummary,
    overlapping: bool,
) -> VerdictRow {
    let workload: Vec<_> = history
        .operations()
        .into_iter()
        .filter(|op| !op.is_final)
        .collect();
    let ok = workload.iter().filter(|op| op.is_ok()).count();
    let mut latencies: Vec<u64> = workload
        .iter()
        .filter(|op| op.is_ok())
        .filter_map(|op| op.complete_us.map(|c| c.saturating_sub(op.invoke_us)))
        .collect();
    latencies.sort_unstable();
    VerdictRow {
        config: config.level.to_string(),
        overlapping,
        faults: config.faults.to_string(),
        operations: workload.len(),
        availability: if workload.is_empty() {
            0.0
        } else {
            (ok as f64 * 1000.0 / workload.len() as f64).round() / 10.0
        },
        stale_reads: summary.stale_reads,
        lost_updates: summary.lost_updates,
        linearizable: match summary.linearizable {
            LinVerdict::NotLinearizable => "NO",
            LinVerdict::Linearizable => "held",
            LinVerdict::Unknown => "unknown",
        },
        p50_ms: percentile_ms(&latencies, 50.0),
        p99_ms: percentile_ms(&latencies, 99.0),
    }
}

pub async fn run(mut config: NemesisConfig) -> anyhow::Result<NemesisReport> {
    let missing = netns::missing_prerequisites();
    if !missing.is_empty() {
        bail!(
            "the nemesis cannot run here; missing: {}",
            missing.join("; ")
        );
    }
    if config.nodes < 3 || config.nodes > 9 {
        bail!("--nodes must be 3..=9, not {}", config.nodes);
    }
    if config.clients == 0 || config.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    if config.read_percent > 100 {
        bail!("--reads is a percentage (0-100)");
    }
    if config.store == NemesisStore::Sqlite && config.faults.0.remove(&Family::PgRestarts) {
        println!("note       pg-restarts dropped: the nodes run on SQLite");
    }
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("create {}", config.dir.display()))?;
    let n = config.nodes;
    let ids: Vec<u32> = (1..=n).collect();
    let faults = schedule::schedule(config.seed, &config.faults, n, config.duration);
    // One level for reads and writes: R = W.
    let level_replicas = replicas(config.level, n);
    let may_lose_disks = config.faults.0.contains(&Family::DiskLoss);
    let overlapping = 2 * level_replicas > n;
    // A lost disk takes one replica's copy: fresh reads then need one
    // replica to spare, durability a write on two.
    let promises_fresh_reads = if may_lose_disks {
        2 * level_replicas > n + 1
    } else {
        overlapping
    };
    let promises_durability = !may_lose_disks || level_replicas >= 2;

    println!(
        "nemesis    seed {} level {} faults {} nodes {} clients {} keys {} for {} s on {}",
        config.seed,
        config.level,
        config.faults,
        n,
        config.clients,
        config.keys,
        config.duration.as_secs(),
        match &config.store {
            NemesisStore::Sqlite => "SQLite".to_string(),
            NemesisStore::Postgres(_) => "PostgreSQL".to_string(),
        }
    );
    println!("run dir    {}", config.dir.display());
    let network = Network::create(&ids)?;

    let mut proxies = Vec::new();
    let mut stores = Vec::new();
    for &id in &ids {
        match &config.store {
            NemesisStore::Sqlite => {
                let path = config.dir.join(format!("node-{id}.db"));
                delete_sqlite(&path)?;
                stores.push(format!("sqlite:{}", path.display()));
            }
            NemesisStore::Postgres(base) => {
                let relay = SocketAddr::from((HOST_ADDR, 15400 + id as u16));
                let (server, url) = postgres_urls(base, id, relay)?;
                recreate_database(base, id).await?;
                proxies.push(
                    PgProxy::start(relay, server)
                        .await
                        .with_context(|| format!("listen on {relay} (PostgreSQL relay)"))?,
                );
                stores.push(url);
            }
        }
    }
    let peers: Vec<String> = ids
        .iter()
        .map(|&id| {
            format!(
                "{id}={}",
                SocketAddr::from((netns::node_addr(id), RPC_PORT))
            )
        })
        .collect();
    let peers = peers.join(",");
    let secret: String = (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect();
    let spec = NodeSpec {
        bin: config.bin.clone(),
        dir: config.dir.clone(),
        peers: peers.clone(),
        context_secret: secret,
        cluster_secret: crate::node::random_cluster_secret().to_hex(),
        extra: vec![
            "--replica-timeout-ms".into(),
            "500".into(),
            "--breaker-open-ms".into(),
            "2000".into(),
        ],
    };
    let mut rig = Rig {
        nodes: ids
            .iter()
            .zip(stores)
            .map(|(&id, store)| NodeProc::new(id, store))
            .collect(),
        gateway: None,
        proxies,
        network,
        spec,
        config: config.clone(),
        started: Instant::now(),
        log: Vec::new(),
        unexpected_exits: Vec::new(),
    };
    for node in &mut rig.nodes {
        node.start(&rig.spec)
            .with_context(|| format!("start node {}", node.id))?;
    }
    let gateway_addr = free_loopback_port()?;
    rig.gateway = Some(GatewayProc::start(
        &config.bin,
        &config.dir,
        gateway_addr,
        &peers,
        &rig.spec.cluster_secret,
    )?);
    let url = format!("http://{gateway_addr}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(config.clients as usize * 2)
        .build()?;
    if !wait_up(&http, &url, n, Duration::from_secs(30)).await {
        bail!(
            "the cluster did not come up within 30 s\n{}",
            rig.log_tails()
        );
    }

    let recorder = Arc::new(Recorder::create(
        &config.history,
        &format!("nemesis {} {}", config.level, config.faults),
        Some(config.seed),
        Some(n as usize),
    )?);
    rig.started = Instant::now();
    let deadline = rig.started + config.duration;
    let clients: Vec<_> = (1..=config.clients)
        .map(|id| {
            let client = GatewayClient::new(http.clone(), &url, id, Some(recorder.clone()));
            tokio::spawn(client_loop(
                client,
                config.level,
                config.keys,
                config.read_percent,
                config.seed,
                deadline,
            ))
        })
        .collect();

    // The timeline: each fault's start and end, in time order (an end
    // before a start at the same instant).
    let mut timeline: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        timeline.push((fault.at, true, i));
        timeline.push((fault.at + fault.hold, false, i));
    }
    timeline.sort_by_key(|&(at, starts, i)| (at, starts, i));
    let mut active = vec![false; faults.len()];
    for (at, starts, i) in timeline {
        tokio::time::sleep_until((rig.started + at).into()).await;
        rig.reap()?;
        let fault = &faults[i];
        if starts {
            rig.note(format!("start {}", fault.kind));
            rig.start_fault(i as u64, fault).await?;
            active[i] = true;
        } else {
            rig.note(format!("heal  {}", fault.kind));
            rig.end_fault(i as u64, fault).await?;
            active[i] = false;
        }
    }
    tokio::time::sleep_until(deadline.into()).await;
    for (i, fault) in faults.iter().enumerate() {
        if active[i] {
            rig.end_fault(i as u64, fault).await?;
        }
    }
    rig.network.heal_all()?;
    for proxy in &rig.proxies {
        proxy.restore();
    }
    rig.reap()?;
    rig.note("heal  everything; the workload stops".into());
    for client in clients {
        client.await.context("a workload client panicked")?;
    }
    if !wait_up(&http, &url, n, Duration::from_secs(30)).await {
        rig.note("not every node was up 30 s after the heal".into());
    }
    tokio::time::sleep(config.quiet).await;
    rig.note(format!(
        "final reads at ALL of {} keys after {} s of quiet",
        config.keys,
        config.quiet.as_secs()
    ));
    let final_client = GatewayClient::new(http.clone(), &url, 0, Some(recorder.clone()));
    let keys: Vec<String> = (0..config.keys).map(|k| format!("nemesis-{k}")).collect();
    let unread_keys = final_reads(&final_client, &keys).await;
    rig.reap()?;
    recorder.finish()?;

    let file = std::fs::File::open(&config.history)
        .with_context(|| format!("read back {}", config.history.display()))?;
    let history = History::read_jsonl(std::io::BufReader::new(file))
        .with_context(|| format!("read back {}", config.history.display()))?;
    let summary =
        check_with_model_budget(&history, ModelKind::MultiValueRegister, Budget::default());
    let row = verdict_row(&config, &history, &summary, overlapping);
    let timeouts = history
        .operations()
        .iter()
        .filter(|op| op.outcome == Some(Outcome::Timeout))
        .count();
    if timeouts > 0 {
        rig.note(format!("{timeouts} operations timed out (indeterminate)"));
    }
    Ok(NemesisReport {
        summary,
        row,
        promises_fresh_reads,
        promises_durability,
        unexpected_exits: rig.unexpected_exits.clone(),
        unread_keys,
        fault_log: rig.log.clone(),
        history: config.history.clone(),
    })
}
