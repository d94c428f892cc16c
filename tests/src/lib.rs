//! Helpers for quorumlog's integration tests: build and locate the
//! `quorumd` binary, run a 5-node cluster plus gateway as real processes on
//! loopback (SQLite or PostgreSQL), stop and restart nodes, and the
//! scenarios every backend must pass.
//!
//! Every child process is killed when its owner is dropped, every wait is
//! bounded in time, and only 127.0.0.1 is used.
pub mod convergence;
pub mod durability;
pub mod scenarios;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use real_tokio as tokio;

use quorumlog_core::Client;

/// Default PostgreSQL server (databases `quorumlog_1..5` from
/// `scripts/setup-postgres.sh`); override with `QUORUMLOG_PG_URL`.
pub const DEFAULT_PG_URL: &str = "postgres://quorumlog:quorumlog@127.0.0.1:5432";

/// Clusters in one test binary run one at a time: they share the
/// PostgreSQL databases and the machine has two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The variables `cargo test` sets for one test binary, about its own
/// package, as opposed to the ones that configure cargo itself.
fn cargo_sets_for_the_test_process(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "OUT_DIR"
        )
}

/// Path of an up-to-date `quorumd`: `QUORUMD_BIN` if set, otherwise
/// built into the target directory these tests were built in, with the
/// same profile. It is built with every test target selected
/// (`cargo build --workspace --bins --tests`), so its dependencies are
/// resolved with the same features `cargo test --workspace` resolved and
/// are already compiled: only `quorumd`'s `main.rs` is left to build.
/// (`cargo build -p quorumd` alone resolves fewer features of tokio and
/// others, and compiled a second copy of most dependencies: two minutes.)
pub fn quorumd() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("QUORUMD_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>, target
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps layout");
        let target_dir = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace)
            .args(["build", "--workspace", "--bins", "--tests"])
            .env("CARGO_TARGET_DIR", target_dir);
        // What cargo sets for this test process alone (its package's
        // manifest dir, name, version): ring's build script reruns when
        // CARGO_MANIFEST_DIR changes, and everything above ring would be
        // compiled again.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if cargo_sets_for_the_test_process(&name) {
                build.env_remove(&*name);
            }
        }
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build for quorumd");
        assert!(status.success(), "cargo build of quorumd failed");
        let bin = profile_dir.join(format!("quorumd{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}

/// A free TCP port on 127.0.0.1, below Linux's ephemeral range
/// (32768–60999) so that no outgoing connection (to PostgreSQL, between
/// nodes) can take it between this check and the child's bind.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = (std::process::id() * 97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (LOW + (offset + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// The PostgreSQL base URL when the server answers; `None` (with a notice)
/// when it does not, unless CI=true, where a missing PostgreSQL fails.
pub fn postgres() -> Option<String> {
    let url = std::env::var("QUORUMLOG_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
    let url = url.trim_end_matches('/').to_string();
    let host_port = url
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_string();
    let reachable = host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(url);
    }
    let message = format!(
        "PostgreSQL is not reachable at {host_port}: run scripts/setup-postgres.sh (or set QUORUMLOG_PG_URL)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in the cluster's temporary directory.
    Sqlite,
    /// fjall directories in the cluster's temporary directory.
    Fjall,
    /// Base URL; node i uses database `quorumlog_i`.
    Postgres(String),
}

struct NodeProc {
    id: u32,
    addr: SocketAddr,
    metrics: SocketAddr,
    store: String,
    child: Option<Child>,
}

/// Five `quorumd node` processes and one `quorumd gateway`.
pub struct Cluster {
    pub url: String,
    pub gateway_metrics: String,
    dir: PathBuf,
    nodes: Vec<NodeProc>,
    gateway: Option<Child>,
    bin: PathBuf,
    backend: Backend,
    /// Extra flags for every `quorumd node` (e.g. key limits).
    node_args: Vec<String>,
    /// The cluster's context secret, as `--context-secret` takes it.
    context_secret: String,
    /// The cluster secret every node and the gateway hold (hex), if any.
    cluster_secret: Option<String>,
}

fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("quorumlog-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

impl Cluster {
    pub const N: u32 = 5;

    pub fn start(backend: Backend, tag: &str) -> Cluster {
        Self::start_with(backend, tag, &[])
    }

    /// Like [`Cluster::start`], passing `node_args` to every node.
    pub fn start_with(backend: Backend, tag: &str, node_args: &[&str]) -> Cluster {
        Self::start_holding(backend, tag, node_args, None)
    }

    /// Like [`Cluster::start_with`], every node and the gateway holding
    /// `cluster_secret` (hex; passed in the environment).
    pub fn start_holding(
        backend: Backend,
        tag: &str,
        node_args: &[&str],
        cluster_secret: Option<&str>,
    ) -> Cluster {
        let bin = quorumd();
        let dir = temp_dir(tag);
        let nodes: Vec<NodeProc> = (1..=Self::N)
            .map(|id| NodeProc {
                id,
                addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                metrics: SocketAddr::from(([127, 0, 0, 1], free_port())),
                store: match &backend {
                    Backend::Sqlite => {
                        format!("sqlite:{}", dir.join(format!("node-{id}.db")).display())
                    }
                    Backend::Fjall => {
                        format!("fjall:{}", dir.join(format!("node-{id}.fjall")).display())
                    }
                    Backend::Postgres(base) => format!("{base}/quorumlog_{id}"),
                },
                child: None,
            })
            .collect();
        let gateway_port = free_port();
        let mut cluster = Cluster {
            url: format!("http://127.0.0.1:{gateway_port}"),
            gateway_metrics: format!("http://127.0.0.1:{gateway_port}/metrics"),
            dir,
            nodes,
            gateway: None,
            bin,
            backend,
            node_args: node_args.iter().map(|a| a.to_string()).collect(),
            // Any 64 hex digits do; one per cluster, as a deployment has.
            context_secret: format!(
                "{:064x}",
                (u128::from(std::process::id()) << 16) | u128::from(gateway_port)
            ),
            cluster_secret: cluster_secret.map(str::to_string),
        };
        for id in 1..=Self::N {
            cluster.start_node(id);
        }
        let child =
            cluster.spawn_gateway("gateway", gateway_port, cluster.cluster_secret.as_deref());
        cluster.gateway = Some(child);
        cluster
    }

    /// Start a `quorumd gateway` on `port` in front of every node, holding
    /// `cluster_secret`, logging to `<name>.log`; the caller owns it.
    pub fn spawn_gateway(&self, name: &str, port: u16, cluster_secret: Option<&str>) -> Child {
        let log = self.log_file(name);
        let mut command = Command::new(&self.bin);
        command
            .args([
                "gateway",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--nodes",
                &self.peer_list(),
            ])
            .args(["--timeout-ms", "2000", "--health-interval-ms", "200"])
            .env_remove("QUORUMD_CLUSTER_SECRET");
        if let Some(secret) = cluster_secret {
            command.env("QUORUMD_CLUSTER_SECRET", secret);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn quorumd gateway")
    }

    fn peer_list(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .expect("open log file")
    }

    /// Start (or restart) node `id` on its port and store.
    pub fn start_node(&mut self, id: u32) {
        let secret = self.cluster_secret.clone();
        self.start_node_holding(id, secret.as_deref());
    }

    /// [`Cluster::start_node`] with `cluster_secret` instead of the
    /// cluster's (a misconfigured or impostor node).
    pub fn start_node_holding(&mut self, id: u32, cluster_secret: Option<&str>) {
        let peers = self.peer_list();
        let log = self.log_file(&format!("node-{id}"));
        let bin = self.bin.clone();
        let node = self.nodes.iter_mut().find(|n| n.id == id).expect("node id");
        assert!(node.child.is_none(), "node {id} is already running");
        let mut command = Command::new(bin);
        command.env_remove("QUORUMD_CLUSTER_SECRET");
        if let Some(secret) = cluster_secret {
            command.env("QUORUMD_CLUSTER_SECRET", secret);
        }
        let child = command
            .args([
                "node",
                "--id",
                &id.to_string(),
                "--listen",
                &node.addr.to_string(),
            ])
            .args(["--peers", &peers, "--store", &node.store])
            .args(["--metrics-listen", &node.metrics.to_string()])
            .args(["--replica-timeout-ms", "500", "--breaker-open-ms", "3000"])
            .args(["--context-secret", &self.context_secret])
            .args(&self.node_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn quorumd node");
        node.child = Some(child);
    }

    /// Kill node `id` (SIGKILL: a crash, not a clean shutdown).
    pub fn stop_node(&mut self, id: u32) {
        let node = self.nodes.iter_mut().find(|n| n.id == id).expect("node id");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The internal RPC address of node `id`.
    pub fn node_addr(&self, id: u32) -> SocketAddr {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .expect("node id")
            .addr
    }

    /// A coordinator client that talks to node `id` only (no failover):
    /// how a test makes one particular node coordinate a request.
    pub fn client(&self, id: u32) -> Client {
        let secret = self.cluster_secret.as_deref().map(|hex| {
            quorumlog_core::secure_channel::ClusterSecret::from_hex(hex).expect("a hex secret")
        });
        Client::secured(
            vec![(id, self.node_addr(id))],
            Duration::from_secs(5),
            secret,
        )
    }

    /// Destroy node `id`'s data, as a lost disk would: the SQLite file and
    /// its companions, or the fjall directory, are deleted; the PostgreSQL database is dropped and
    /// created again, empty. The node must be stopped.
    pub async fn wipe_store(&mut self, id: u32) {
        let node = self.nodes.iter().find(|n| n.id == id).expect("node id");
        assert!(
            node.child.is_none(),
            "stop node {id} before wiping its store"
        );
        match &self.backend {
            Backend::Sqlite => {
                let path = self.dir.join(format!("node-{id}.db"));
                for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => panic!("delete {}: {e}", Path::new(&file).display()),
                    }
                }
                assert!(!path.exists(), "{} survived the wipe", path.display());
            }
            Backend::Fjall => {
                let path = self.dir.join(format!("node-{id}.fjall"));
                std::fs::remove_dir_all(&path)
                    .unwrap_or_else(|e| panic!("delete {}: {e}", path.display()));
            }
            Backend::Postgres(base) => {
                recreate_database(base, &format!("quorumlog_{id}")).await;
            }
        }
    }

    pub fn node_metrics_url(&self, id: u32) -> String {
        let node = self.nodes.iter().find(|n| n.id == id).expect("node id");
        format!("http://{}/metrics", node.metrics)
    }

    /// Wait until the gateway reports `up` nodes reachable.
    pub async fn wait_up(&mut self, http: &reqwest::Client, up: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.check_alive();
            if let Ok(response) = http
                .get(format!("{}/api/logs/health", self.url))
                .send()
                .await
            {
                if let Ok(body) = response.json::<serde_json::Value>().await {
                    if body["up"].as_u64() == Some(up) {
                        return;
                    }
                    last = body.to_string();
                }
            }
            real_tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "cluster did not reach {up} nodes up within {timeout:?}; last health: {last}\n{}",
            self.logs()
        );
    }

    /// Fail fast when a process we expect to run has exited.
    fn check_alive(&mut self) {
        let mut dead = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    dead.push(format!("node {} exited with {status}", node.id));
                }
            }
        }
        if let Some(child) = self.gateway.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                dead.push(format!("gateway exited with {status}"));
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join("; "), self.logs());
        }
    }

    /// The tail of every process log in the cluster's directory (nodes,
    /// gateways, whatever a test started there), for failure messages.
    pub fn logs(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        let mut out = String::new();
        for path in logs {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or("?");
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- {name}.log (last {} lines)\n{}\n",
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

/// Drop PostgreSQL database `name` (whatever sessions it still has) and
/// create it again, empty, owned by the connecting role: a lost disk.
/// `base` is the server URL without a database (as [`postgres`] returns).
pub async fn recreate_database(base: &str, name: &str) {
    admin(
        base,
        &[
            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{name}\""),
        ],
    )
    .await;
}

/// Drop PostgreSQL database `name` if it exists.
pub async fn drop_database(base: &str, name: &str) {
    admin(
        base,
        &[format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")],
    )
    .await;
}

/// Run `statements` on the server's `postgres` database.
async fn admin(base: &str, statements: &[String]) {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect to the postgres database: {e}"));
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e} (the role needs CREATEDB)"));
    }
    let _ = admin.close().await;
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.gateway.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "test failed; process logs kept in {}\n{}",
                self.dir.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
