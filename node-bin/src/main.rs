use anyhow::Context;
use clap::{Parser, Subcommand};
use quorumd::cluster::ClusterConfig;
use quorumd::gateway::{ApiToken, GatewayConfig};
use quorumd::http_server::HttpLimits;
use quorumd::node::NodeConfig;
use quorumd::store::StoreSpec;
use quorumd::{bench, cluster, gateway, node, peers, telemetry};
use quorumlog_core::context::ContextSecret;
use quorumlog_core::rpc::ServerLimits;
use quorumlog_core::secure_channel::ClusterSecret;
use quorumlog_core::{
    AntiEntropyConfig, Consistency, CoordinatorConfig, HintLimits, KeyLimits, NodeId, ReadRepair,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

// Every write allocates and frees frames, rows and sibling sets on the
// runtime's threads; glibc's allocator took a tenth of a node's CPU on
// the write path, mimalloc less (measured with
// scripts/compare-write-path.py, see docs/deployment.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "quorumd",
    version,
    about = "quorumlog: a quorum-replicated key/value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads of the async runtime (default: one per core). Nodes that
    /// share a machine run best with fewer: each thread that wakes
    /// another costs a context switch (5 nodes on 2 cores: 1 each).
    #[arg(long, global = true, value_name = "N", env = "QUORUMD_WORKER_THREADS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    worker_threads: Option<usize>,
}

/// The runtime every subcommand but `check` runs on.
fn runtime(worker_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}

#[derive(Subcommand)]
enum Command {
    /// Run one storage node (replica + coordinator).
    Node(NodeArgs),
    /// Run the REST gateway in front of the nodes.
    Gateway(GatewayArgs),
    /// Run the nodes (5 unless --nodes says otherwise) and the gateway in
    /// this process, on loopback.
    Cluster(ClusterArgs),
    /// Load-test a gateway and print latency percentiles per level.
    Bench(BenchArgs),
    /// Drive quorumlog, etcd or PostgreSQL with one closed-loop durable
    /// write load and print one JSON line (what
    /// scripts/compare-write-path.py runs against each system).
    Loadgen(LoadgenArgs),
    /// Check a history file (JSON lines, docs/history-format.md) with the
    /// simulator's checkers. Exits 0 when every check passes, 1 on a
    /// violation, 3 when nothing was violated but some key's
    /// linearizability is undecided, 2 on bad input.
    Check(CheckArgs),
    /// Run a real cluster (one network namespace per node) under a seeded
    /// fault schedule with a recording workload, then check the history.
    /// Needs root, `ip`, `nft` and `tc`. Exits 0 when every guarantee the
    /// level promises held, 1 when one broke, 2 when it cannot run.
    Nemesis(NemesisArgs),
}

#[derive(clap::Args)]
struct NemesisArgs {
    /// Consistency of every read and write.
    #[arg(long, default_value = "QUORUM")]
    level: Consistency,
    /// The schedule's seed (the same seed, the same faults at the same offsets).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fault families: all, none, or a list of partitions, kills, pauses,
    /// pg-restarts, disk-loss, loss, slow.
    #[arg(long, default_value = "all")]
    faults: quorumd::nemesis::schedule::Families,
    /// sqlite, or a PostgreSQL server URL without a database
    /// (postgres://USER:PASSWORD@HOST:PORT); node i gets the database
    /// quorumlog_nemesis_i, dropped and created again.
    #[arg(long, default_value = "sqlite")]
    store: String,
    /// Nodes of the cluster under test (3 to 9).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(3..=9))]
    nodes: u32,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Concurrent workload clients.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    clients: u32,
    /// Keys the clients share.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    keys: u32,
    /// Percentage of operations that are reads.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    reads: u8,
    /// Seconds of quiet after the heal, before the final reads.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    quiet: u64,
    /// Logs go here [default: quorumlog-nemesis-SEED in the temp dir].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The history file [default: DIR/history.jsonl].
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    file: std::path::PathBuf,
    /// Sequential model for linearizability: register, cas-register, kv, mv-register.
    #[arg(long, default_value = "mv-register")]
    model: quorumlog_check::ModelKind,
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
}

/// `quorumd nemesis`: 0 held, 1 broke, 2 could not run.
fn nemesis(args: NemesisArgs, worker_threads: Option<usize>) -> std::process::ExitCode {
    use quorumd::nemesis::{self, NemesisConfig, NemesisStore};
    let outcome = (|| -> anyhow::Result<nemesis::NemesisReport> {
        let store = match args.store.as_str() {
            "sqlite" => NemesisStore::Sqlite,
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                NemesisStore::Postgres(url.trim_end_matches('/').to_string())
            }
            other => anyhow::bail!(
                "--store {other:?}: use sqlite or a postgres://USER:PASSWORD@HOST:PORT URL"
            ),
        };
        let dir = args.dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("quorumlog-nemesis-{}", args.seed))
        });
        let history = args
            .history
            .clone()
            .unwrap_or_else(|| dir.join("history.jsonl"));
        let config = NemesisConfig {
            bin: std::env::current_exe()?,
            store,
            level: args.level,
            seed: args.seed,
            faults: args.faults.clone(),
            nodes: args.nodes,
            duration: Duration::from_secs(args.duration),
            clients: args.clients,
            keys: args.keys,
            read_percent: args.reads,
            dir,
            history,
            quiet: Duration::from_secs(args.quiet),
        };
        telemetry::init_tracing();
        runtime(worker_threads)?.block_on(nemesis::run(config))
    })();
    match outcome {
        Ok(report) => {
            println!("\n{}\n{}", report.row.header(), report.row);
            println!("\n{}", report.summary);
            println!(
                "promised   fresh reads: {}, durability: {} (by the level's quorum arithmetic)",
                if report.promises_fresh_reads {
                    "yes"
                } else {
                    "no"
                },
                if report.promises_durability {
                    "yes"
                } else {
                    "no"
                }
            );
            for exit in &report.unexpected_exits {
                println!("bug        {exit}");
            }
            if report.unread_keys > 0 {
                println!(
                    "bug        {} keys could not be read at ALL after the heal",
                    report.unread_keys
                );
            }
            println!(
                "history    {}; check it again with: quorumd check {}",
                report.history.display(),
                report.history.display()
            );
            if report.failed() {
                println!("verdict    BROKEN: a guarantee the level promises did not hold");
                std::process::ExitCode::from(1)
            } else {
                println!("verdict    every promised guarantee held");
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!(
                "error: {}",
                quorumlog_core::error_report::one_line(e.as_ref())
            );
            std::process::ExitCode::from(2)
        }
    }
}

/// `quorumd check`: no runtime, no cluster; the verdict is the exit code.
fn check(args: CheckArgs) -> std::process::ExitCode {
    use quorumlog_check::file::{budget_from_flags, check_file, undecided_note, Verdict};
    let budget = budget_from_flags(args.budget, args.memory_mib, args.first_violation);
    match check_file(&args.file, args.model, budget) {
        Ok(summary) => {
            use std::io::Write;
            // A reader that stops early (`| head`) is not an error: the
            // verdict is still the exit code.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{summary}");
            let verdict = Verdict::of(&summary);
            if verdict == Verdict::Undecided {
                let _ = writeln!(out, "{}", undecided_note(&summary));
            }
            std::process::ExitCode::from(verdict.exit_code())
        }
        Err(e) => {
            eprintln!("error: {}", quorumlog_core::error_report::one_line(&e));
            std::process::ExitCode::from(2)
        }
    }
}

#[derive(clap::Args)]
struct NodeArgs {
    /// This node's id (a positive number, unique in the cluster).
    #[arg(long, value_parser = clap::value_parser!(NodeId).range(1..))]
    id: NodeId,
    /// Address of the internal RPC listener.
    #[arg(long, default_value = "0.0.0.0:7000")]
    listen: SocketAddr,
    /// A replica of the cluster as ID=HOST:PORT (repeatable; may include this node).
    #[arg(long = "peer", value_name = "ID=ADDR")]
    peer: Vec<String>,
    /// Comma-separated ID=HOST:PORT list.
    #[arg(long, value_name = "LIST", env = "QUORUMD_PEERS")]
    peers: Vec<String>,
    /// embedded:BASE (fjall in BASE.fjall, or the SQLite file BASE.db if
    /// it exists), fjall:DIR, sqlite:PATH, memory or
    /// postgres://USER:PASSWORD@HOST:PORT/DB
    #[arg(
        long,
        default_value = "embedded:quorumlog-data/node",
        env = "QUORUMD_STORE"
    )]
    store: StoreSpec,
    /// Serve Prometheus /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// How long the coordinator waits for replicas, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    replica_timeout_ms: u64,
    /// Consecutive failures after which a replica is marked down.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    breaker_threshold: u32,
    /// How long a replica stays marked down before it is probed, in ms
    /// (0: probed on the next request).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    breaker_open_ms: u64,
    /// Read repair: off, background or blocking.
    #[arg(long, default_value = "background", value_parser = parse_repair)]
    read_repair: ReadRepair,
    /// Background read repairs in flight at once; past it a repair is
    /// skipped (hints and anti-entropy still bring the replica up to date).
    #[arg(long, value_name = "N", default_value_t = CoordinatorConfig::DEFAULT_MAX_BACKGROUND_REPAIRS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    read_repair_max_pending: usize,
    #[command(flatten)]
    key_limits: KeyLimitArgs,
    #[command(flatten)]
    repair: RepairArgs,
    /// Start a new incarnation even though the store has one recorded:
    /// required after restoring a backup, whose recorded incarnation may
    /// already have minted dots the backup does not hold. (A new or wiped
    /// store starts a new incarnation by itself.)
    #[arg(long)]
    new_incarnation: bool,
    /// Secret the coordinators sign and check context tokens with (64 hex
    /// digits, e.g. from `openssl rand -hex 32`). Required, and the same on
    /// every node of a cluster: a token read through one node is taken by
    /// every other.
    #[arg(long, value_name = "HEX", env = "QUORUMD_CONTEXT_SECRET", hide_env_values = true, value_parser = parse_context_secret)]
    context_secret: Option<ContextSecret>,
    /// RPC connections served at once; one more is closed at once.
    #[arg(long, value_name = "N", default_value_t = ServerLimits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    rpc_max_connections: usize,
    /// Requests of one RPC connection handled at once; past it the node
    /// stops reading that connection until one finishes.
    #[arg(long, value_name = "N", default_value_t = ServerLimits::DEFAULT_MAX_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    rpc_max_in_flight: usize,
    /// Bytes of request frames of one RPC connection held at once; past
    /// it the node stops reading that connection until one finishes.
    #[arg(long, value_name = "BYTES", default_value_t = ServerLimits::DEFAULT_MAX_IN_FLIGHT_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=1 << 40))]
    rpc_max_in_flight_bytes: usize,
    /// An RPC connection that completes no frame for this long is closed
    /// (an idle peer, or one trickling a frame); peers reconnect.
    #[arg(long, value_name = "MS", default_value_t = ServerLimits::DEFAULT_IDLE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..=86_400_000))]
    rpc_idle_timeout_ms: u64,
    /// A peer that has not proved the cluster secret this long after
    /// connecting is closed (with a cluster secret only).
    #[arg(long, value_name = "MS", default_value_t = ServerLimits::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    rpc_handshake_timeout_ms: u64,
    #[command(flatten)]
    cluster_secret: ClusterSecretArgs,
}

/// The cluster secret, shared by `node` and `gateway`.
#[derive(clap::Args)]
struct ClusterSecretArgs {
    /// The secret every node and gateway of the cluster holds (64 hex
    /// digits, e.g. from `openssl rand -hex 32`): internal RPC connections
    /// prove it and are encrypted with it. Required to listen beyond
    /// loopback.
    #[arg(long, value_name = "HEX", env = "QUORUMD_CLUSTER_SECRET", hide_env_values = true, value_parser = parse_cluster_secret)]
    cluster_secret: Option<ClusterSecret>,
    /// Read the cluster secret from this file instead (e.g. a Docker or
    /// Kubernetes secret).
    #[arg(long, value_name = "PATH", conflicts_with = "cluster_secret")]
    cluster_secret_file: Option<PathBuf>,
}

impl ClusterSecretArgs {
    fn secret(&self) -> anyhow::Result<Option<ClusterSecret>> {
        match (&self.cluster_secret, &self.cluster_secret_file) {
            (Some(secret), _) => Ok(Some(*secret)),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("reading the cluster secret file {}", path.display())
                })?;
                ClusterSecret::from_hex(&text)
                    .map(Some)
                    .with_context(|| format!("the cluster secret file {}", path.display()))
            }
            (None, None) => Ok(None),
        }
    }
}

fn parse_cluster_secret(text: &str) -> Result<ClusterSecret, String> {
    ClusterSecret::from_hex(text).map_err(|e| e.to_string())
}

fn parse_api_token(text: &str) -> Result<ApiToken, String> {
    text.parse()
}

/// Per-key limits, shared by `node` and `cluster`.
#[derive(clap::Args)]
struct KeyLimitArgs {
    /// Siblings one key may hold; a write that would add more is refused
    /// with 409 (resolve them with a context, or write with overwrite=true).
    #[arg(long, value_name = "N", default_value_t = KeyLimits::DEFAULT_MAX_SIBLINGS, value_parser = parse_key_max_siblings)]
    key_max_siblings: usize,
    /// Bytes one key may hold (all its siblings): at least the value limit
    /// (1 MiB), at most the RPC frame limit / 8.
    #[arg(long, value_name = "BYTES", default_value_t = KeyLimits::DEFAULT_MAX_BYTES, value_parser = parse_key_max_bytes)]
    key_max_bytes: usize,
}

impl KeyLimitArgs {
    fn limits(&self) -> KeyLimits {
        KeyLimits {
            max_siblings: self.key_max_siblings,
            max_bytes: self.key_max_bytes,
        }
    }
}

/// Hinted handoff and anti-entropy: how replicas converge without reads.
#[derive(clap::Args)]
struct RepairArgs {
    /// Hints kept per replica that missed writes (0: hinted handoff off).
    #[arg(long, value_name = "N", default_value_t = HintLimits::DEFAULT_MAX_PER_TARGET)]
    hints_max_per_replica: usize,
    /// Bytes of hints kept per replica.
    #[arg(long, value_name = "BYTES", default_value_t = HintLimits::DEFAULT_MAX_BYTES_PER_TARGET)]
    hints_max_bytes: usize,
    /// Age in seconds after which a hint is dropped (anti-entropy repairs
    /// what it carried).
    #[arg(long, value_name = "SECONDS", default_value_t = HintLimits::DEFAULT_MAX_AGE.as_secs())]
    hints_max_age_s: u64,
    /// Pause between anti-entropy rounds, in milliseconds; each round
    /// compares with one peer (0: anti-entropy off).
    #[arg(long, value_name = "MS", default_value_t = AntiEntropyConfig::DEFAULT_INTERVAL.as_millis() as u64)]
    anti_entropy_interval_ms: u64,
    /// Differing keys one anti-entropy round repairs at most.
    #[arg(long, value_name = "N", default_value_t = AntiEntropyConfig::DEFAULT_MAX_KEYS_PER_ROUND, value_parser = clap::value_parser!(usize))]
    anti_entropy_max_keys: usize,
    /// Bytes per second anti-entropy may move, on average.
    #[arg(long, value_name = "BYTES", default_value_t = AntiEntropyConfig::DEFAULT_MAX_BYTES_PER_SECOND)]
    anti_entropy_max_bytes_per_s: u64,
}

impl RepairArgs {
    fn hints(&self) -> Option<HintLimits> {
        (self.hints_max_per_replica > 0).then(|| HintLimits {
            max_per_target: self.hints_max_per_replica,
            max_bytes_per_target: self.hints_max_bytes,
            max_age: Duration::from_secs(self.hints_max_age_s),
        })
    }

    fn anti_entropy(&self) -> anyhow::Result<Option<AntiEntropyConfig>> {
        if self.anti_entropy_interval_ms == 0 {
            return Ok(None);
        }
        if self.anti_entropy_max_keys == 0 {
            anyhow::bail!("--anti-entropy-max-keys must be at least 1 (turn anti-entropy off with --anti-entropy-interval-ms 0)");
        }
        Ok(Some(AntiEntropyConfig {
            interval: Duration::from_millis(self.anti_entropy_interval_ms),
            max_keys_per_round: self.anti_entropy_max_keys,
            max_bytes_per_second: self.anti_entropy_max_bytes_per_s,
        }))
    }
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// HTTP listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// A node (coordinator) as ID=HOST:PORT (repeatable).
    #[arg(long = "node", value_name = "ID=ADDR")]
    node: Vec<String>,
    /// Comma-separated ID=HOST:PORT list.
    #[arg(long, value_name = "LIST", env = "QUORUMD_NODES")]
    nodes: Vec<String>,
    /// Bound on one coordinator call, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    timeout_ms: u64,
    /// How often to poll the coordinators' health, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
    health_interval_ms: u64,
    /// Level used when a request names none.
    #[arg(long, default_value = "QUORUM")]
    default_consistency: Consistency,
    /// HTTP connections served at once; one more is closed at once.
    #[arg(long, value_name = "N", default_value_t = HttpLimits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    http_max_connections: usize,
    /// How long a client has to send a request's headers (also how long a
    /// keep-alive connection may sit idle), in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = HttpLimits::DEFAULT_HEADER_TIMEOUT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    http_header_timeout_ms: u64,
    #[command(flatten)]
    cluster_secret: ClusterSecretArgs,
    /// Require `Authorization: Bearer TOKEN` on every request but
    /// `GET /api/openapi.json` (16 to 4096 visible ASCII characters).
    #[arg(long, value_name = "TOKEN", env = "QUORUMD_API_TOKEN", hide_env_values = true, value_parser = parse_api_token)]
    api_token: Option<ApiToken>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_context_secret(text: &str) -> Result<ContextSecret, String> {
    ContextSecret::from_hex(text).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: u32,
    /// Node i listens on 127.0.0.1:(base-port + i - 1).
    #[arg(long, default_value_t = 7001)]
    base_port: u16,
    /// Gateway HTTP address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    gateway: SocketAddr,
    /// embedded (fjall; SQLite where a node's file from an earlier default
    /// exists), sqlite, fjall, memory, or a postgres:// URL template with
    /// {id} for the node id.
    #[arg(long, default_value = "embedded")]
    store: String,
    /// Where the embedded stores go (node-ID.fjall directories, node-ID.db
    /// SQLite files).
    #[arg(long, default_value = "quorumlog-data")]
    data_dir: PathBuf,
    /// How long coordinators wait for replicas, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    replica_timeout_ms: u64,
    #[command(flatten)]
    key_limits: KeyLimitArgs,
    #[command(flatten)]
    repair: RepairArgs,
}

#[derive(clap::Args)]
struct LoadgenArgs {
    /// The system to load: quorumlog (a gateway), etcd (a member's JSON
    /// gateway) or postgres (a server).
    #[arg(long, value_enum)]
    system: quorumd::loadgen::System,
    /// http://HOST:PORT for quorumlog and etcd, postgres://… for postgres.
    #[arg(long)]
    url: String,
    /// Workers, each with one request outstanding.
    #[arg(long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    clients: usize,
    /// Keys overwritten, shared out between the clients (0: a new key per write).
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=100_000_000))]
    keys: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_048_576))]
    value_size: usize,
    /// Seconds of load.
    #[arg(long, short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// quorumlog's write level.
    #[arg(long, default_value = "QUORUM")]
    level: Consistency,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients.
    #[arg(long, short, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    concurrency: usize,
    /// Seconds per level.
    #[arg(long, short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Percentage of operations that are writes (the rest are reads).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    mix: u8,
    /// Levels to run, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "ONE,QUORUM,ALL")]
    levels: Vec<Consistency>,
    /// Keys per client.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    keys: usize,
    /// Value size in bytes (at most the gateway's value limit, 1 MiB).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=quorumlog_core::input::MAX_VALUE_LEN as u64))]
    value_size: usize,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Record every operation (and a final read of every key at ALL) in
    /// this history file, for `quorumd check FILE`.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
}

/// How long `node` and `gateway` wait for peer host names to resolve.
const RESOLVE_WAIT: Duration = Duration::from_secs(60);

fn parse_key_max_siblings(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a count: {e}"))?;
    node::check_key_max_siblings(n).map_err(|e| e.to_string())
}

fn parse_key_max_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a byte count: {e}"))?;
    node::check_key_max_bytes(n).map_err(|e| e.to_string())
}

fn parse_repair(s: &str) -> Result<ReadRepair, String> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(ReadRepair::Off),
        "background" => Ok(ReadRepair::Background),
        "blocking" => Ok(ReadRepair::Blocking),
        other => Err(format!(
            "unknown read repair {other:?}: use off, background or blocking"
        )),
    }
}

/// Errors end the process with their cause chain on one line, each cause
/// said once (`error_report::one_line`), and exit code 1 — never a
/// backtrace, whatever RUST_BACKTRACE says: they are about the input or
/// the environment, not a bug.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Check(args) => return check(args),
        Command::Nemesis(args) => return nemesis(args, cli.worker_threads),
        other => other,
    };
    telemetry::init_tracing();
    let outcome = runtime(cli.worker_threads)
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(command)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `quorumd bench | head`: the reader left; stop quietly, as
        // Unix tools do, instead of reporting our own output as an error.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                quorumlog_core::error_report::one_line(e.as_ref())
            );
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(args) => {
            let peers = peers::collect_resolving(&args.peer, &args.peers, RESOLVE_WAIT).await?;
            let mut config = NodeConfig::new(args.id, args.listen, peers, args.store);
            config.metrics_listen = args.metrics_listen;
            config.replica_timeout = Duration::from_millis(args.replica_timeout_ms);
            config.breaker_threshold = args.breaker_threshold;
            config.breaker_open_for = Duration::from_millis(args.breaker_open_ms);
            config.read_repair = args.read_repair;
            config.max_background_repairs = args.read_repair_max_pending;
            config.key_limits = args.key_limits.limits();
            config.new_incarnation = args.new_incarnation;
            config.hinted_handoff = args.repair.hints();
            config.anti_entropy = args.repair.anti_entropy()?;
            config.context_secret = args.context_secret.ok_or_else(|| {
                anyhow::anyhow!(
                    "no context secret: pass --context-secret HEX or set QUORUMD_CONTEXT_SECRET \
                     (64 hex digits, e.g. from `openssl rand -hex 32`), the same on every node of the cluster"
                )
            })?;
            config.rpc_limits = ServerLimits {
                max_connections: args.rpc_max_connections,
                max_in_flight_per_connection: args.rpc_max_in_flight,
                max_in_flight_bytes_per_connection: args.rpc_max_in_flight_bytes,
                idle_timeout: Duration::from_millis(args.rpc_idle_timeout_ms),
                handshake_timeout: Duration::from_millis(args.rpc_handshake_timeout_ms),
            };
            config.cluster_secret = args.cluster_secret.secret()?;
            let id = config.id;
            let mut running = node::start(config)
                .await
                .with_context(|| format!("starting node {id}"))?;
            tokio::select! {
                _ = shutdown_signal() => {
                    tracing::info!(node = id, "shutting down");
                    running.stop();
                    Ok(())
                }
                // A node without its RPC server must not live on holding
                // its store: exit, so a supervisor restarts it.
                reason = running.serving_ended() => Err(anyhow::anyhow!(
                    "node {id}: the internal RPC server stopped ({reason}); exiting so that a supervisor restarts the node"
                )),
            }
        }
        Command::Gateway(args) => {
            let nodes = peers::collect_resolving(&args.node, &args.nodes, RESOLVE_WAIT).await?;
            let mut config = GatewayConfig::new(args.listen, nodes);
            config.timeout = Duration::from_millis(args.timeout_ms);
            config.health_interval = Duration::from_millis(args.health_interval_ms);
            config.default_level = args.default_consistency;
            config.http_limits = HttpLimits {
                max_connections: args.http_max_connections,
                header_timeout: Duration::from_millis(args.http_header_timeout_ms),
            };
            config.cluster_secret = args.cluster_secret.secret()?;
            config.api_token = args.api_token;
            if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
                config.tls = Some(gateway::Tls(quorumd::http_server::tls_acceptor(cert, key)?));
            }
            let running = gateway::start(config)
                .await
                .context("starting the gateway")?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            running.stop();
            Ok(())
        }
        Command::Cluster(args) => {
            let config = ClusterConfig {
                nodes: args.nodes,
                base_port: args.base_port,
                gateway: args.gateway,
                store: args.store,
                data_dir: args.data_dir,
                key_limits: args.key_limits.limits(),
                hinted_handoff: args.repair.hints(),
                anti_entropy: args.repair.anti_entropy()?,
            };
            cluster::run(config, Duration::from_millis(args.replica_timeout_ms)).await
        }
        Command::Check(_) => unreachable!("`quorumd check` runs before the runtime starts"),
        Command::Nemesis(_) => unreachable!("`quorumd nemesis` has its own exit codes"),
        Command::Loadgen(args) => {
            let config = quorumd::loadgen::LoadConfig {
                system: args.system,
                url: args.url,
                clients: args.clients,
                keys: args.keys,
                value_size: args.value_size,
                duration: Duration::from_secs(args.duration),
                level: args.level,
            };
            let report = quorumd::loadgen::run(config.clone()).await?;
            println!("{}", report.to_json(&config));
            Ok(())
        }
        Command::Bench(args) => {
            let config = bench::BenchConfig {
                url: args.url,
                concurrency: args.concurrency,
                duration: Duration::from_secs(args.duration),
                write_percent: args.mix,
                levels: args.levels,
                keys_per_worker: args.keys,
                value_size: args.value_size,
                progress: !args.no_progress,
                history: args.history,
            };
            bench::run(config).await.map(|_| ())
        }
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
