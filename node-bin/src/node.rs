//! `quorumd node`: one replica + coordinator serving the internal protocol.
use crate::store::{self, StoreSpec};
use crate::telemetry;
use quorumlog_core::breaker::BreakerConfig;
use quorumlog_core::context::ContextSecret;
use quorumlog_core::replica::MAX_VALUE_LEN;
use quorumlog_core::rpc::MAX_FRAME_BYTES;
use quorumlog_core::secure_channel::ClusterSecret;
use quorumlog_core::{
    AntiEntropyConfig, CoordinatorConfig, HintLimits, Incarnation, KeyLimits, Node, NodeId,
    ReadRepair,
};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Largest `--key-max-bytes`: a read merges the copies of up to 7 other
/// replicas (plus its own) and a whole sibling set travels in one RPC
/// frame, so eight keys at the limit must fit one frame.
pub const MAX_KEY_BYTES: usize = MAX_FRAME_BYTES / 8;

/// A per-key limit that cannot work.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyLimitError {
    #[error("--key-max-siblings must be at least 1: a key with a value holds one version")]
    NoSiblings,
    #[error(
        "--key-max-bytes {0} is below the value limit of {MAX_VALUE_LEN} bytes: \
         a key must be able to hold one value of the largest accepted size"
    )]
    BelowValueLimit(usize),
    #[error(
        "--key-max-bytes {0} is above {MAX_KEY_BYTES}: the RPC frame limit ({MAX_FRAME_BYTES} bytes) \
         divided by 8, so a read merging its own copy of a key with up to 7 replicas' still fits one frame"
    )]
    AboveFrameLimit(usize),
}

/// `--key-max-siblings`, checked.
pub fn check_key_max_siblings(siblings: usize) -> Result<usize, KeyLimitError> {
    if siblings == 0 {
        return Err(KeyLimitError::NoSiblings);
    }
    Ok(siblings)
}

/// `--key-max-bytes`, checked: between the value limit and what fits a frame.
pub fn check_key_max_bytes(bytes: usize) -> Result<usize, KeyLimitError> {
    if bytes < MAX_VALUE_LEN {
        return Err(KeyLimitError::BelowValueLimit(bytes));
    }
    if bytes > MAX_KEY_BYTES {
        return Err(KeyLimitError::AboveFrameLimit(bytes));
    }
    Ok(bytes)
}

/// Both per-key limits, checked.
pub fn key_limits(max_siblings: usize, max_bytes: usize) -> Result<KeyLimits, KeyLimitError> {
    Ok(KeyLimits {
        max_siblings: check_key_max_siblings(max_siblings)?,
        max_bytes: check_key_max_bytes(max_bytes)?,
    })
}

/// A context secret from the operating system's random source.
pub fn random_context_secret() -> ContextSecret {
    ContextSecret::from_bytes(rand::random())
}

/// A new cluster secret from the operating system's RNG, for a cluster
/// this process starts itself (`quorumd cluster`, `quorumd nemesis`).
pub fn random_cluster_secret() -> ClusterSecret {
    ClusterSecret::from_bytes(rand::random())
}

/// Why a node may not listen on `listen` without a cluster secret: any
/// address beyond loopback lets whoever reaches it read and overwrite
/// every key.
pub fn refuse_open_listener(
    what: &str,
    listen: SocketAddr,
    secret: Option<&ClusterSecret>,
) -> anyhow::Result<()> {
    if secret.is_none() && !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve {what} on {listen} without a cluster secret: whoever reaches that \
             address could read and overwrite every key. Give every node and gateway the same \
             secret (--cluster-secret HEX, QUORUMD_CLUSTER_SECRET, or --cluster-secret-file; \
             make one with `openssl rand -hex 32`), or listen on a loopback address"
        );
    }
    Ok(())
}

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
    /// Bounds on every key's sibling set (see [`key_limits`]).
    pub key_limits: KeyLimits,
    /// Start a new incarnation even though the store records one: after
    /// restoring a backup, whose recorded incarnation may already have
    /// minted dots the backup does not hold.
    pub new_incarnation: bool,
    /// What context tokens are signed and checked with: the same on every
    /// node of the cluster. [`NodeConfig::new`] draws a random one, which
    /// suits only a node alone or one whose caller sets every node's.
    pub context_secret: ContextSecret,
    /// Hinted handoff bounds (`None`: off).
    pub hinted_handoff: Option<HintLimits>,
    /// Anti-entropy settings (`None`: off).
    pub anti_entropy: Option<AntiEntropyConfig>,
    /// Bounds on what RPC peers may take of this node.
    pub rpc_limits: quorumlog_core::rpc::ServerLimits,
    /// Background read repairs in flight at once.
    pub max_background_repairs: usize,
    /// What every RPC connection to and from this node must prove
    /// (`None`: plain connections, allowed on loopback only).
    pub cluster_secret: Option<ClusterSecret>,
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
            key_limits: defaults.key_limits,
            new_incarnation: false,
            context_secret: random_context_secret(),
            hinted_handoff: defaults.hinted_handoff,
            anti_entropy: defaults.anti_entropy,
            rpc_limits: quorumlog_core::rpc::ServerLimits::default(),
            max_background_repairs: CoordinatorConfig::DEFAULT_MAX_BACKGROUND_REPAIRS,
            cluster_secret: None,
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
            key_limits: self.key_limits,
            context_secret: self.context_secret,
            hinted_handoff: self.hinted_handoff,
            anti_entropy: self.anti_entropy,
            max_background_repairs: self.max_background_repairs,
            cluster_secret: self.cluster_secret,
            ..CoordinatorConfig::default()
        }
    }
}

/// A running node; dropping it (or `stop`) ends its tasks.
pub struct RunningNode {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// The incarnation this node mints dots in.
    pub incarnation: Incarnation,
    serve: JoinHandle<String>,
    metrics: Option<JoinHandle<()>>,
}

impl RunningNode {
    /// Wait until the internal RPC server stops by itself (it should not:
    /// accept errors are retried), with why. A node whose server is gone
    /// must not live on holding its store's lock: its caller exits.
    pub async fn serving_ended(&mut self) -> String {
        match (&mut self.serve).await {
            Ok(reason) => reason,
            Err(e) => format!("the server task ended: {e}"),
        }
    }

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

/// An incarnation for a store that starts a new life: random, so that it
/// differs from every earlier one of this node without anything having to
/// remember them (a lost disk took the record with it); never 0, which
/// stands for data from before incarnations.
fn fresh_incarnation() -> Incarnation {
    rand::thread_rng().gen_range(1..=Incarnation::MAX)
}

/// Open the store (running migrations), resolve the node's incarnation,
/// bind, and serve in the background.
pub async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    refuse_open_listener(
        &format!("node {}'s internal RPC", config.id),
        config.listen,
        config.cluster_secret.as_ref(),
    )?;
    let handle = telemetry::metrics()?;
    let fresh = fresh_incarnation();
    let store =
        store::open_renewing(&config.store, config.new_incarnation.then_some(fresh)).await?;
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
    let id = config.id;
    let node = Node::open(id, store, peers, config.coordinator(), fresh)
        .await
        .map_err(|e| anyhow::anyhow!("node {id}: cannot read or record its incarnation: {e}"))?;
    let incarnation = node.coordinator().replica().actor().incarnation;
    // f64 holds every u32 exactly.
    metrics::gauge!("node_incarnation", "node" => id.to_string()).set(f64::from(incarnation));
    let node = Arc::new(node);
    let limits = config.rpc_limits;
    let serve = tokio::spawn(async move {
        let reason = match node
            .serve_with(
                listener,
                quorumlog_core::rpc::CancellationToken::new(),
                limits,
            )
            .await
        {
            Ok(()) => "it returned".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(node = id, "internal RPC server stopped: {reason}");
        reason
    });
    let metrics = match config.metrics_listen {
        Some(listen) => Some(telemetry::serve_metrics(listen, handle).await?),
        None => None,
    };
    if incarnation == 0 {
        tracing::info!(
            node = id,
            "the store holds data from before incarnations were recorded: minting dots in incarnation 0, as that data was"
        );
    }
    tracing::info!(
        node = id,
        %addr,
        n,
        incarnation,
        fresh = incarnation == fresh,
        store = %config.store,
        "node serving"
    );
    Ok(RunningNode {
        id,
        addr,
        incarnation,
        serve,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits_must_fit_a_value_and_a_frame() {
        assert_eq!(
            key_limits(64, 4 * 1024 * 1024),
            Ok(KeyLimits::default()),
            "the defaults are valid"
        );
        assert_eq!(
            KeyLimits::default().max_bytes,
            MAX_KEY_BYTES,
            "the default key size is the largest a frame allows"
        );
        assert_eq!(key_limits(0, MAX_VALUE_LEN), Err(KeyLimitError::NoSiblings));
        assert_eq!(check_key_max_bytes(MAX_VALUE_LEN), Ok(MAX_VALUE_LEN));
        assert_eq!(
            check_key_max_bytes(MAX_VALUE_LEN - 1),
            Err(KeyLimitError::BelowValueLimit(MAX_VALUE_LEN - 1))
        );
        assert_eq!(
            check_key_max_bytes(MAX_KEY_BYTES + 1),
            Err(KeyLimitError::AboveFrameLimit(MAX_KEY_BYTES + 1))
        );
        let message = KeyLimitError::AboveFrameLimit(MAX_KEY_BYTES + 1).to_string();
        assert!(message.contains("--key-max-bytes"), "{message}");
        assert!(message.contains(&MAX_KEY_BYTES.to_string()), "{message}");
    }

    #[test]
    fn fresh_incarnations_are_never_zero() {
        for _ in 0..1000 {
            assert_ne!(fresh_incarnation(), 0);
        }
    }

    #[tokio::test]
    async fn a_node_reports_its_incarnation_and_limits() {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = NodeConfig::new(1, listen, Vec::new(), StoreSpec::Memory);
        config.key_limits = key_limits(3, MAX_VALUE_LEN).expect("valid limits");
        assert_eq!(config.coordinator().key_limits, config.key_limits);
        let running = start(config).await.expect("start a node");
        assert_ne!(running.incarnation, 0, "a memory store is always new");
        running.stop();
    }
}
