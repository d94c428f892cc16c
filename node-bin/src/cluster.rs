//! `quorumd cluster`: five nodes and the gateway in one process on
//! loopback — the README's "run it" command.
use crate::gateway::{self, GatewayConfig};
use crate::node::{self, NodeConfig, RunningNode};
use crate::store::StoreSpec;
use quorumlog_core::{AntiEntropyConfig, HintLimits, KeyLimits, NodeId};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub nodes: u32,
    /// Node i listens on base_port + i - 1.
    pub base_port: u16,
    pub gateway: SocketAddr,
    /// `embedded` (fjall directories in `data_dir`, or the SQLite files an
    /// earlier default left there), `sqlite`, `fjall`, `memory`, or a
    /// `postgres://` URL
    /// template in which `{id}` becomes the node id.
    pub store: String,
    pub data_dir: PathBuf,
    /// Per-key limits of every node.
    pub key_limits: KeyLimits,
    /// Hinted handoff bounds of every node (`None`: off).
    pub hinted_handoff: Option<HintLimits>,
    /// Anti-entropy of every node (`None`: off).
    pub anti_entropy: Option<AntiEntropyConfig>,
}

impl ClusterConfig {
    pub fn store_for(&self, id: NodeId) -> anyhow::Result<StoreSpec> {
        Ok(match self.store.as_str() {
            "embedded" => StoreSpec::Embedded(self.data_dir.join(format!("node-{id}"))),
            "sqlite" => StoreSpec::Sqlite(self.data_dir.join(format!("node-{id}.db"))),
            "fjall" => StoreSpec::Fjall(self.data_dir.join(format!("node-{id}.fjall"))),
            "memory" => StoreSpec::Memory,
            template if template.starts_with("postgres") => {
                if !template.contains("{id}") {
                    anyhow::bail!(
                        "a postgres store template must contain {{id}} (one database per node)"
                    );
                }
                StoreSpec::Postgres(template.replace("{id}", &id.to_string()))
            }
            other => anyhow::bail!(
                "unknown cluster store {other:?}: use embedded, sqlite, fjall, memory or postgres://…/db_{{id}}"
            ),
        })
    }
}

pub async fn run(
    config: ClusterConfig,
    replica_timeout: std::time::Duration,
) -> anyhow::Result<()> {
    if config.nodes == 0 {
        anyhow::bail!("a cluster needs at least one node");
    }
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let peers: Vec<(NodeId, SocketAddr)> = (1..=config.nodes)
        .map(|id| {
            let port = u32::from(config.base_port) + id - 1;
            u16::try_from(port)
                .map(|port| (id, SocketAddr::new(loopback, port)))
                .map_err(|_| anyhow::anyhow!("port {port} is out of range"))
        })
        .collect::<Result<_, _>>()?;
    let mut nodes: Vec<RunningNode> = Vec::new();
    // One secret for the cluster's life: tokens read before a restart of
    // `quorumd cluster` are refused after it (clients read again).
    let context_secret = node::random_context_secret();
    // Loopback needs no secret, but a cluster that runs as it would be
    // deployed tests what is deployed: its connections are sealed too.
    let cluster_secret = node::random_cluster_secret();
    for &(id, addr) in &peers {
        let mut node_config = NodeConfig::new(id, addr, peers.clone(), config.store_for(id)?);
        node_config.replica_timeout = replica_timeout;
        node_config.key_limits = config.key_limits;
        node_config.hinted_handoff = config.hinted_handoff;
        node_config.anti_entropy = config.anti_entropy;
        node_config.context_secret = context_secret;
        node_config.cluster_secret = Some(cluster_secret);
        nodes.push(node::start(node_config).await?);
    }
    let mut gateway_config = GatewayConfig::new(config.gateway, peers.clone());
    gateway_config.cluster_secret = Some(cluster_secret);
    let gw = gateway::start(gateway_config).await?;
    let base = format!("http://{}", gw.addr);
    let mut out = std::io::stdout();
    writeln!(out)?;
    writeln!(
        out,
        "quorumlog cluster: {} nodes ({}), gateway {base}",
        nodes.len(),
        describe(&config)
    )?;
    for (id, addr) in &peers {
        writeln!(out, "  node {id}: internal RPC on {addr}")?;
    }
    writeln!(
        out,
        "  internal RPC is sealed with a cluster secret made for this run"
    )?;
    writeln!(out)?;
    writeln!(out, "Try it:")?;
    writeln!(out, "  curl -X POST \"{base}/api/logs?consistency=QUORUM\" -H \"Content-Type: application/json\" -d '{{\"key\":\"user-456\",\"value\":\"profile-update\"}}'")?;
    writeln!(
        out,
        "  curl \"{base}/api/logs/user-456?consistency=QUORUM\""
    )?;
    writeln!(out, "  curl -X POST \"{base}/api/logs?consistency=ALL\" -H \"Content-Type: application/json\" -d '{{\"key\":\"payment-789\",\"value\":\"transaction-data\"}}'")?;
    writeln!(
        out,
        "  curl \"{base}/api/logs/payment-789?consistency=ONE\""
    )?;
    writeln!(out, "  curl {base}/api/logs/health")?;
    writeln!(out, "  curl {base}/metrics")?;
    writeln!(out)?;
    writeln!(out, "Press Ctrl-C to stop.")?;
    tokio::signal::ctrl_c().await?;
    writeln!(out, "stopping…")?;
    gw.stop();
    for node in &nodes {
        node.stop();
    }
    drop(nodes);
    Ok(())
}

fn describe(config: &ClusterConfig) -> String {
    match config.store.as_str() {
        "embedded" => format!(
            "embedded stores in {} (fjall, or SQLite files found there)",
            config.data_dir.display()
        ),
        "sqlite" => format!("SQLite files in {}", config.data_dir.display()),
        "fjall" => format!("fjall directories in {}", config.data_dir.display()),
        "memory" => "in-memory stores".into(),
        other => format!("PostgreSQL {}", crate::store::redact(other)),
    }
}
