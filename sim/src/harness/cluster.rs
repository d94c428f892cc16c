//! The simulated cluster: N node hosts running the real `quorumlog_core::Node`
//! (same coordinator, replica and RPC code as `quorumd`), each with its own
//! address and a store owned by the harness, so a crashed node restarts with
//! everything it durably stored — or, after a lost disk, with an empty
//! store, which makes it start a new incarnation.
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use quorumlog_core::{CoordinatorConfig, Incarnation, MemoryStore, Node, NodeId, Siblings, Store};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Port every simulated node listens on.
const NODE_PORT: u16 = 7000;

pub struct SimNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub host: NodeHandle,
    /// The node's disk: what the node finds when it (re)starts.
    disk: Arc<Mutex<Disk>>,
}

/// A node's disk as the harness owns it: the store, and the incarnation a
/// store found empty takes. The harness knows every earlier incarnation of
/// the node, so it hands out 0, 1, 2, … (quorumd draws at random).
struct Disk {
    store: Arc<MemoryStore>,
    fresh: Incarnation,
}

impl SimNode {
    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything the node's store holds, key by key.
    pub fn stored(&self) -> BTreeMap<String, Siblings> {
        self.disk().store.inspect(|data| data.clone())
    }

    /// Keys over the limits in this node's store: a set with more than
    /// `n` times the limits (what replicas may exchange to converge), or
    /// more than the limits themselves among the versions this node minted
    /// in one incarnation (each was minted only if its coordinator's copy
    /// stayed within the limits, so those never pass them). Counted from
    /// what the store holds (sibling count, value bytes), not with the
    /// core's own accounting.
    pub fn keys_over(&self, max_siblings: usize, max_value_bytes: usize, n: usize) -> usize {
        let store = self.disk().store.clone();
        let me = self.id;
        store.inspect(|data| {
            data.values()
                .filter(|set| {
                    let over = |versions: &[&quorumlog_core::Version], factor: usize| {
                        let bytes: usize = versions.iter().map(|v| v.value.len()).sum();
                        versions.len() > max_siblings.saturating_mul(factor)
                            || bytes > max_value_bytes.saturating_mul(factor)
                    };
                    let all: Vec<&quorumlog_core::Version> = set.versions().iter().collect();
                    let mut own: BTreeMap<u32, Vec<&quorumlog_core::Version>> = BTreeMap::new();
                    for v in set.versions().iter().filter(|v| v.dot.node == me) {
                        own.entry(v.dot.incarnation).or_default().push(v);
                    }
                    over(&all, n) || own.values().any(|mine| over(mine, 1))
                })
                .count()
        })
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
    /// Start `n` nodes with ids 1..=n. Must run inside a madsim runtime.
    pub fn start(n: usize, config: CoordinatorConfig) -> Self {
        let handle = Handle::current();
        let members: Vec<(NodeId, SocketAddr)> = (0..n)
            .map(|i| (i as NodeId + 1, SocketAddr::new(node_ip(i), NODE_PORT)))
            .collect();
        let nodes = members
            .iter()
            .map(|&(id, addr)| {
                let disk = Arc::new(Mutex::new(Disk {
                    store: Arc::new(MemoryStore::new()),
                    fresh: 0,
                }));
                let peers = members.clone();
                let node_disk = disk.clone();
                let host = handle
                    .create_node()
                    .name(format!("n{id}"))
                    .ip(addr.ip())
                    .init(move || {
                        let (store, fresh) = {
                            let disk = node_disk.lock().unwrap_or_else(|p| p.into_inner());
                            let store: Arc<dyn Store> = disk.store.clone();
                            (store, disk.fresh)
                        };
                        let peers = peers.clone();
                        async move {
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

    /// Crash: every task of the node dies and its connections reset; its
    /// store (what it acknowledged) survives.
    pub fn kill(&self, index: usize) {
        self.handle.kill(self.host(index));
    }

    pub fn restart(&self, index: usize) {
        self.handle.restart(self.host(index));
    }

    /// Replace the node's disk with an empty one (call while it is down):
    /// its next start finds no data and takes the next incarnation.
    pub fn wipe_disk(&self, index: usize) {
        let mut disk = self.nodes[index].disk();
        disk.store = Arc::new(MemoryStore::new());
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
