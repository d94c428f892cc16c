//! `quorumd node`: one replica + coordinator serving the internal protocol.
use crate::store::{self, StoreSpec};
use crate::telemetry;
use quorumlog_core::breaker::BreakerConfig;
use quorumlog_core::{CoordinatorConfig, Node, NodeId, ReadRepair};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub listen: SocketAddr,
    /// Every replica of the cluster; this node's own entry is ignored.
    pub peers: Vec<(NodeId, SocketAddr)>,
    pub store: StoreSpec,
    pub metrics_listen: Option<SocketAddr>,
    pub replica_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_open_for: Duration,
    pub read_repair: ReadRepair,
}

impl NodeConfig {
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peers: Vec<(NodeId, SocketAddr)>,
        store: StoreSpec,
    ) -> Self {
        let defaults = CoordinatorConfig::default();
        Self {
            id,
            listen,
            peers,
            store,
            metrics_listen: None,
            replica_timeout: defaults.replica_timeout,
            breaker_threshold: defaults.breaker.failure_threshold,
            breaker_open_for: defaults.breaker.open_for,
            read_repair: defaults.read_repair,
        }
    }

    fn coordinator(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            replica_timeout: self.replica_timeout,
            breaker: BreakerConfig {
                failure_threshold: self.breaker_threshold,
                open_for: self.breaker_open_for,
            },
            read_repair: self.read_repair,
            ..CoordinatorConfig::default()
        }
    }
}

/// A running node; dropping it (or `stop`) ends its tasks.
pub struct RunningNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    serve: JoinHandle<()>,
    metrics: Option<JoinHandle<()>>,
}

impl RunningNode {
    pub fn stop(&self) {
        self.serve.abort();
        if let Some(m) = &self.metrics {
            m.abort();
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Open the store (running migrations), bind, and serve in the background.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let handle = telemetry::metrics()?;
    let store = store::open(&config.store).await?;
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        anyhow::anyhow!(
            "node {}: cannot listen on {}: {e}",
            config.id,
            config.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let peers: Vec<_> = config
        .peers
        .iter()
        .copied()
        .filter(|(id, _)| *id != config.id)
        .collect();
    let n = peers.len() + 1;
    let node = Arc::new(Node::new(config.id, store, peers, config.coordinator()));
    let id = config.id;
    let serve = tokio::spawn(async move {
        if let Err(e) = node.serve(listener).await {
            tracing::error!(node = id, "internal RPC server stopped: {e}");
        }
    });
    let metrics = match config.metrics_listen {
        Some(listen) => Some(telemetry::serve_metrics(listen, handle).await?),
        None => None,
    };
    tracing::info!(node = id, %addr, n, store = %config.store, "node serving");
    Ok(RunningNode {
        id,
        addr,
        serve,
        metrics,
    })
}
