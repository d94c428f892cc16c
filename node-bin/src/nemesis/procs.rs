//! The nemesis's processes: `quorumd node` in each node's namespace and
//! `quorumd gateway` on loopback, with their logs in the run directory.
//! Every child is killed when its owner is dropped.
use super::netns::{namespace, node_addr, RPC_PORT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How a node is started: everything but its store is the same for all.
pub struct NodeSpec {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub peers: String,
    pub context_secret: String,
    /// The cluster secret (hex) every node and the gateway hold: the
    /// nodes listen beyond loopback, on the nemesis's bridge.
    pub cluster_secret: String,
    /// Flags added to every node's command line.
    pub extra: Vec<String>,
}

pub struct NodeProc {
    pub id: u32,
    pub store: String,
    child: Option<Child>,
}

fn log_file(dir: &Path, name: &str) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
}

impl NodeProc {
    pub fn new(id: u32, store: String) -> Self {
        NodeProc {
            id,
            store,
            child: None,
        }
    }

    /// Start the node in its namespace (`ip netns exec` execs it, so the
    /// child is the node itself and signals reach it).
    pub fn start(&mut self, spec: &NodeSpec) -> std::io::Result<()> {
        let log = log_file(&spec.dir, &format!("node-{}", self.id))?;
        let listen = SocketAddr::from((node_addr(self.id), RPC_PORT));
        let child = Command::new("ip")
            .args(["netns", "exec", &namespace(self.id)])
            .arg(&spec.bin)
            .args(["node", "--id", &self.id.to_string()])
            .args(["--listen", &listen.to_string()])
            .args(["--peers", &spec.peers, "--store", &self.store])
            // In the environment, not on the command line `ps` shows.
            .env("QUORUMD_CONTEXT_SECRET", &spec.context_secret)
            .env("QUORUMD_CLUSTER_SECRET", &spec.cluster_secret)
            .args(&spec.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL and reap: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGCONT first: a stopped process dies only once it runs.
            self.signal_child(&child, Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal_child(&self, child: &Child, signal: Signal) {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    pub fn pause(&self) {
        if let Some(child) = &self.child {
            self.signal_child(child, Signal::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(child) = &self.child {
            self.signal_child(child, Signal::SIGCONT);
        }
    }

    /// The exit status if the node died on its own.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct GatewayProc {
    child: Child,
}

impl GatewayProc {
    pub fn start(
        bin: &Path,
        dir: &Path,
        listen: SocketAddr,
        nodes: &str,
        cluster_secret: &str,
    ) -> std::io::Result<GatewayProc> {
        let log = log_file(dir, "gateway")?;
        let child = Command::new(bin)
            .args(["gateway", "--listen", &listen.to_string(), "--nodes", nodes])
            .args(["--timeout-ms", "2000", "--health-interval-ms", "200"])
            .env("QUORUMD_CLUSTER_SECRET", cluster_secret)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(GatewayProc { child })
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of each log in `dir`, for error messages.
pub fn log_tails(dir: &Path, names: &[String]) -> String {
    let mut out = String::new();
    for name in names {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(10)..];
        out.push_str(&format!("--- {name}.log\n{}\n", tail.join("\n")));
    }
    out
}
