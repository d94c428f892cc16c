//! `ID=ADDR` lists, as given to `--peer`, `--peers`, `--node` and `--nodes`.
use quorumlog_core::NodeId;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("{0:?} is not ID=HOST:PORT (for example 2=127.0.0.1:7002)")]
    Syntax(String),
    #[error("{0:?}: the node id must be a positive number")]
    Id(String),
    #[error(
        "{0:?}: the address needs a port from 1 to 65535, as in 2=127.0.0.1:7002 or 2=node2:7000"
    )]
    Port(String),
    #[error("{entry:?}: cannot resolve the address: {reason}")]
    Address { entry: String, reason: String },
    #[error("node id {0} is given twice with different addresses")]
    Duplicate(NodeId),
}

/// Parse one `ID=HOST:PORT`, resolving host names (compose service names).
pub fn parse_peer(entry: &str) -> Result<(NodeId, SocketAddr), PeerError> {
    let (id, addr) = entry
        .trim()
        .split_once('=')
        .ok_or_else(|| PeerError::Syntax(entry.to_string()))?;
    let id: NodeId = id
        .trim()
        .parse()
        .map_err(|_| PeerError::Id(entry.to_string()))?;
    if id == 0 {
        return Err(PeerError::Id(entry.to_string()));
    }
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(PeerError::Syntax(entry.to_string()));
    }
    // A missing or malformed port is a typo, not a name that has yet to
    // resolve: refuse it now rather than wait for it to resolve.
    let port = addr.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
    if !matches!(port, Some(Ok(port)) if port > 0) {
        return Err(PeerError::Port(entry.to_string()));
    }
    let resolved = addr
        .to_socket_addrs()
        .map_err(|e| PeerError::Address {
            entry: entry.to_string(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| PeerError::Address {
            entry: entry.to_string(),
            reason: "no address".into(),
        })?;
    Ok((id, resolved))
}

/// Merge repeated single entries and comma-separated lists into one list
/// ordered by id.
pub fn collect(
    single: &[String],
    lists: &[String],
) -> Result<Vec<(NodeId, SocketAddr)>, PeerError> {
    let mut out: BTreeMap<NodeId, SocketAddr> = BTreeMap::new();
    let entries = single
        .iter()
        .map(String::as_str)
        .chain(lists.iter().flat_map(|l| l.split(',')))
        .filter(|e| !e.trim().is_empty());
    for entry in entries {
        let (id, addr) = parse_peer(entry)?;
        if let Some(previous) = out.insert(id, addr) {
            if previous != addr {
                return Err(PeerError::Duplicate(id));
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// [`collect`], retrying while host names do not resolve yet (in compose,
/// a peer's name exists only once its container is up), for at most `wait`.
pub async fn collect_resolving(
    single: &[String],
    lists: &[String],
    wait: std::time::Duration,
) -> Result<Vec<(NodeId, SocketAddr)>, PeerError> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match collect(single, lists) {
            Err(PeerError::Address { entry, reason }) if std::time::Instant::now() < deadline => {
                tracing::info!("waiting for {entry} to resolve: {reason}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        let peers = collect(
            &["2=127.0.0.1:7002".into()],
            &["1=127.0.0.1:7001, 3=127.0.0.1:7003".into()],
        )
        .unwrap();
        assert_eq!(peers.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(matches!(parse_peer("x=127.0.0.1:1"), Err(PeerError::Id(_))));
        assert!(matches!(parse_peer("0=127.0.0.1:1"), Err(PeerError::Id(_))));
        assert!(matches!(
            parse_peer("127.0.0.1:1"),
            Err(PeerError::Syntax(_))
        ));
        assert!(matches!(
            collect(&["1=127.0.0.1:1".into(), "1=127.0.0.1:2".into()], &[]),
            Err(PeerError::Duplicate(1))
        ));
        for no_port in [
            "1=nohost",
            "1=127.0.0.1",
            "1=node1:",
            "1=node1:http",
            "1=node1:0",
            "1=node1:70000",
        ] {
            assert_eq!(
                parse_peer(no_port),
                Err(PeerError::Port(no_port.to_string())),
                "{no_port}"
            );
        }
        assert_eq!(
            parse_peer("3=[::1]:7003"),
            Ok((3, "[::1]:7003".parse().expect("an address")))
        );
    }

    /// A typo in a port is refused at once; only a name that does not
    /// resolve yet (a compose service still starting) is waited for.
    #[tokio::test]
    async fn a_missing_port_is_not_waited_for() {
        let wait = std::time::Duration::from_secs(3600);
        let answer = collect_resolving(&["1=nohost".into()], &[], wait).await;
        assert_eq!(answer, Err(PeerError::Port("1=nohost".into())));
    }
}
