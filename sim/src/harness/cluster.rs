//! The simulated cluster: N node hosts running the real `quorumlog_core::Node`
//! (same coordinator, replica and RPC code as `quorumd`), each with its own
//! address, on the store `quorumd` deploys — core's group commit and row
//! cache — over a simulated disk the harness owns ([`SimDisk`]), so a
//! crashed node restarts with everything its disk committed (what was only
//! queued or on its way dies with the node) — or, after a lost disk, with
//! no rows, which makes it start a new incarnation.
use super::disk::{DiskStats, SimDisk};
use crate::scenario::DiskFaults;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use quorumlog_core::storage::GroupCommit;
use quorumlog_core::{CoordinatorConfig, Incarnation, Node, NodeId, Siblings, Store, StoreError};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Port every simulated node listens on.
const NODE_PORT: u16 = 7000;
/// Bytes each node's row cache may hold: small, so that evictions, rows
/// too big to cache, and fills racing them happen in every run (quorumd
/// holds 64 MiB).
const SIM_CACHE_BYTES: usize = 128 * 1024;

pub struct SimNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub host: NodeHandle,
    /// The node's disk: what the node finds when it (re)starts.
    disk: Arc<Mutex<Disk>>,
}

/// A node's disk as the harness owns it: the committed rows, and the
/// incarnation a store found empty takes. The harness knows every earlier
/// incarnation of the node, so it hands out 0, 1, 2, … (quorumd draws at
/// random).
struct Disk {
    rows: Arc<SimDisk>,
    fresh: Incarnation,
}

impl SimNode {
    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything the node's disk has committed, key by key (not what its
    /// row cache holds: the disk is what a restart finds).
    pub fn stored(&self) -> BTreeMap<String, Arc<Siblings>> {
        let rows = self.disk().rows.clone();
        self.readable(rows.rows())
    }

    /// [`SimNode::stored`], for the committed keys among `keys` only.
    pub fn stored_among(&self, keys: &BTreeSet<String>) -> BTreeMap<String, Arc<Siblings>> {
        let rows = self.disk().rows.clone();
        self.readable(rows.rows_among(keys))
    }

    /// What the node's disk did so far.
    pub fn disk_stats(&self) -> DiskStats {
        self.disk().rows.disk_stats()
    }

    /// Keys over the limits in this node's store: a set with more than
    /// `n` times the limits (what replicas may exchange to converge).
    /// Counted from what the store holds (sibling count, value bytes), not
    /// with the core's own accounting. What the node's own writes may do
    /// is judged on each commit ([`DiskStats::grown_past_limit`]).
    pub fn keys_over(&self, max_siblings: usize, max_value_bytes: usize, n: usize) -> usize {
        let rows = self.disk().rows.clone();
        self.readable(rows.rows_over(
            max_siblings.saturating_mul(n),
            max_value_bytes.saturating_mul(n),
        ))
    }

    /// What reading the disk's rows gave. Only the store under test writes
    /// them, so a row that does not read is its bug: the run panics, and
    /// the sweep reports the seed.
    fn readable<T>(&self, read: Result<T, StoreError>) -> T {
        match read {
            Ok(read) => read,
            Err(e) => panic!("node n{} committed a row it cannot read: {e}", self.id),
        }
    }
}

pub struct SimCluster {
    handle: Handle,
    nodes: Vec<SimNode>,
}

fn node_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1))
}

fn client_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, index as u8 + 1))
}

impl SimCluster {
    /// Start `n` nodes with ids 1..=n, each disk failing commits at
    /// `faults`' rates and drawing from `disk_rng(node id)`. Must run inside
    /// a madsim runtime.
    pub fn start(
        n: usize,
        config: CoordinatorConfig,
        faults: DiskFaults,
        disk_rng: impl Fn(NodeId) -> ChaCha8Rng,
    ) -> Self {
        let handle = Handle::current();
        let members: Vec<(NodeId, SocketAddr)> = (0..n)
            .map(|i| (i as NodeId + 1, SocketAddr::new(node_ip(i), NODE_PORT)))
            .collect();
        let nodes = members
            .iter()
            .map(|&(id, addr)| {
                let disk = Arc::new(Mutex::new(Disk {
                    rows: Arc::new(
                        SimDisk::new(faults, disk_rng(id))
                            .owned_by(id, config.key_limits.max_siblings),
                    ),
                    fresh: 0,
                }));
                let peers = members.clone();
                let node_disk = disk.clone();
                let host = handle
                    .create_node()
                    .name(format!("n{id}"))
                    .ip(addr.ip())
                    .init(move || {
                        let (rows, fresh) = {
                            let disk = node_disk.lock().unwrap_or_else(|p| p.into_inner());
                            (disk.rows.clone(), disk.fresh)
                        };
                        let peers = peers.clone();
                        async move {
                            // Started on the node, so its committer task (and
                            // the batches queued for it) die with the node.
                            let store: Arc<dyn Store> =
                                Arc::new(GroupCommit::new(rows, SIM_CACHE_BYTES));
                            let node = match Node::open(id, store, peers, config, fresh).await {
                                Ok(node) => Arc::new(node),
                                Err(e) => panic!("node n{id} cannot open its store: {e}"),
                            };
                            let listener = match tokio::net::TcpListener::bind(addr).await {
                                Ok(listener) => listener,
                                Err(e) => panic!("node n{id} cannot bind {addr}: {e}"),
                            };
                            if let Err(e) = node.serve(listener).await {
                                tracing::warn!("node n{id} stopped serving: {e}");
                            }
                        }
                    })
                    .build();
                SimNode {
                    id,
                    addr,
                    host,
                    disk,
                }
            })
            .collect();
        SimCluster { handle, nodes }
    }

    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The keys the nodes' disks do not hold alike
    /// ([`SimDisk::keys_not_alike`]).
    pub fn keys_not_alike(&self) -> BTreeSet<String> {
        let disks: Vec<Arc<SimDisk>> = self
            .nodes
            .iter()
            .map(|node| node.disk().rows.clone())
            .collect();
        SimDisk::keys_not_alike(disks.iter().map(|disk| &**disk))
    }

    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    /// (id, address) of every coordinator, for clients.
    pub fn coordinators(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.addr)).collect()
    }

    /// A host for a client process, outside the cluster's nodes.
    pub fn client_host(&self, index: usize) -> NodeHandle {
        self.handle
            .create_node()
            .name(format!("client-{index}"))
            .ip(client_ip(index))
            .build()
    }

    fn host(&self, index: usize) -> madsim::task::NodeId {
        self.nodes[index].host.id()
    }

    /// Crash: every task of the node dies and its connections reset; what
    /// its disk committed survives (so everything it acknowledged), what
    /// was not yet committed is lost.
    pub fn kill(&self, index: usize) {
        self.handle.kill(self.host(index));
    }

    /// After the run: kill every node and let the executor drop their
    /// tasks. madsim drops no task when its runtime is dropped, and the
    /// tasks still waiting then (servers, committers, timers, connections)
    /// hold one another in cycles (a task's future owns the channel that
    /// holds the task's waker): without this, each run leaked megabytes,
    /// and every next run faulted in fresh pages.
    pub async fn shut_down(&self) {
        for node in &self.nodes {
            self.handle.kill(node.host.id());
        }
        // Killing wakes every task of the node; the executor drops the
        // futures of a killed node's tasks when it next runs them.
        tokio::task::yield_now().await;
    }

    pub fn restart(&self, index: usize) {
        self.handle.restart(self.host(index));
    }

    /// Every disk fails no commit from now on (the run's faults heal).
    pub fn heal_disks(&self) {
        for node in &self.nodes {
            node.disk().rows.heal();
        }
    }

    /// Replace the node's disk with an empty one (call while it is down):
    /// its next start finds no rows and takes the next incarnation.
    pub fn wipe_disk(&self, index: usize) {
        let mut disk = self.nodes[index].disk();
        disk.rows.wipe();
        disk.fresh += 1;
    }

    /// Stop scheduling the node's tasks: a replica that is alive but silent.
    pub fn pause(&self, index: usize) {
        self.handle.pause(self.host(index));
    }

    pub fn resume(&self, index: usize) {
        self.handle.resume(self.host(index));
    }

    /// Drop traffic from node `from` to node `to` (one way).
    pub fn clog_link(&self, from: usize, to: usize) {
        NetSim::current().clog_link(self.host(from), self.host(to));
    }

    pub fn unclog_link(&self, from: usize, to: usize) {
        NetSim::current().unclog_link(self.host(from), self.host(to));
    }

    /// Cut every link between different sides, both ways.
    pub fn partition(&self, sides: &[Vec<usize>]) {
        for (i, a) in sides.iter().enumerate() {
            for b in sides.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        self.clog_link(x, y);
                        self.clog_link(y, x);
                    }
                }
            }
        }
    }

    /// Restore every link between nodes.
    pub fn heal_network(&self) {
        for a in 0..self.n() {
            for b in 0..self.n() {
                if a != b {
                    self.unclog_link(a, b);
                }
            }
        }
    }

    /// Change the one-way message latency of the whole network.
    pub fn set_latency(&self, latency: std::ops::Range<Duration>) {
        NetSim::current().update_config(|config| config.send_latency = latency);
    }
}

/// madsim's default per-message latency.
pub fn default_latency() -> std::ops::Range<Duration> {
    Duration::from_millis(1)..Duration::from_millis(10)
}
