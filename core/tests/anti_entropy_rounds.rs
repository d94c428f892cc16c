//! A coordinator's anti-entropy rounds against peers served over real
//! loopback TCP: which peer a round compares with, how many keys it
//! repairs, and that a key it cannot merge does not hold back the others.
//! The node under test is not served, so no round runs but the ones a
//! test starts; its peers run no anti-entropy of their own.
#![cfg(not(madsim))]

use quorumlog_core::breaker::BreakerConfig;
use quorumlog_core::coordinator::RoundReport;
use quorumlog_core::rpc::CancellationToken;
use quorumlog_core::{
    Actor, AntiEntropyConfig, CoordinatorConfig, Dot, MemoryStore, Node, ReadRepair, Siblings,
    Store, Version, VersionVector,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Node 1, the one whose rounds a test drives, and its peers: node `i + 2`
/// is served when `served[i]`, else its address refuses connections.
struct Cluster {
    tester: Node,
    peers: Vec<Option<Arc<Node>>>,
    _shutdown: Vec<CancellationToken>,
}

fn config(anti_entropy: Option<AntiEntropyConfig>) -> CoordinatorConfig {
    CoordinatorConfig {
        // Served peers answer at once and the others refuse the
        // connection: no call waits for this, however loaded the machine.
        replica_timeout: Duration::from_secs(5),
        // one refused connection opens a breaker, for longer than a test
        breaker: BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(600),
        },
        read_repair: ReadRepair::Off,
        hinted_handoff: None,
        anti_entropy,
        ..Default::default()
    }
}

impl Cluster {
    async fn start(served: &[bool], max_keys_per_round: usize) -> Self {
        let mut listeners = Vec::new();
        let mut addrs: Vec<(u32, SocketAddr)> = Vec::new();
        for i in 0..=served.len() {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push((i as u32 + 1, listener.local_addr().unwrap()));
            listeners.push(listener);
        }
        let mut listeners = listeners.into_iter();
        // node 1's own address is never served: nothing calls it
        drop(listeners.next());
        let mut peers = Vec::new();
        let mut shutdown = Vec::new();
        for (i, listener) in listeners.enumerate() {
            if !served[i] {
                drop(listener);
                peers.push(None);
                continue;
            }
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let node = Arc::new(Node::new(
                Actor::new(i as u32 + 2, 0),
                store,
                addrs.clone(),
                config(None),
            ));
            let token = CancellationToken::new();
            tokio::spawn(node.clone().serve_until(listener, token.clone()));
            peers.push(Some(node));
            shutdown.push(token);
        }
        let tester = Node::new(
            Actor::new(1, 0),
            Arc::new(MemoryStore::new()),
            addrs,
            config(Some(AntiEntropyConfig {
                interval: Duration::from_secs(3600),
                max_keys_per_round,
                ..AntiEntropyConfig::default()
            })),
        );
        Cluster {
            tester,
            peers,
            _shutdown: shutdown,
        }
    }

    fn peer(&self, id: u32) -> &Node {
        self.peers[id as usize - 2]
            .as_deref()
            .expect("a served peer")
    }

    async fn round(&self) -> Option<RoundReport> {
        self.tester.coordinator().anti_entropy_round().await
    }
}

/// A set of one version, minted by `actor` as its `counter`th write.
fn set(actor: u32, counter: u64, value: &str) -> Siblings {
    Siblings::from_versions([Version {
        dot: Dot::new(Actor::new(actor, 0), counter),
        context: VersionVector::new(),
        value: value.into(),
        timestamp_ms: 0,
    }])
    .unwrap()
}

async fn put(node: &Node, key: &str, siblings: &Siblings) {
    node.coordinator()
        .replica()
        .apply(key, siblings)
        .await
        .unwrap();
}

async fn holds(node: &Node, key: &str) -> bool {
    let held = node.coordinator().replica().fetch(key).await.unwrap();
    !held.is_empty()
}

#[tokio::test]
async fn a_round_repairs_at_most_its_configured_keys() {
    let cluster = Cluster::start(&[true], 2).await;
    let peer = cluster.peer(2);
    let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        put(peer, key, &set(2, i as u64 + 1, "v")).await;
    }
    let mut repaired = Vec::new();
    for _ in 0..4 {
        let report = cluster.round().await.expect("a peer to compare with");
        repaired.push(report.keys_repaired);
        if report.agreed {
            break;
        }
    }
    assert_eq!(
        repaired,
        [2, 2, 1, 0],
        "keys repaired in each round, at most two a round, until agreement"
    );
    for key in &keys {
        assert!(holds(&cluster.tester, key).await, "{key} was not pulled");
    }
}

#[tokio::test]
async fn a_key_that_cannot_be_merged_does_not_hold_back_the_keys_after_it() {
    let cluster = Cluster::start(&[true], 16).await;
    let peer = cluster.peer(2);
    // one dot with two contents: neither replica can take the other's copy
    put(&cluster.tester, "a", &set(9, 1, "x")).await;
    put(peer, "a", &set(9, 1, "y")).await;
    put(peer, "b", &set(2, 1, "v")).await;
    put(&cluster.tester, "c", &set(1, 1, "w")).await;
    let report = cluster.round().await.expect("a peer to compare with");
    assert!(!report.agreed);
    assert!(
        holds(&cluster.tester, "b").await,
        "the key after the refused one was not pulled"
    );
    assert!(
        holds(peer, "c").await,
        "the key after the refused one was not pushed"
    );
}

#[tokio::test]
async fn a_round_passes_over_a_peer_whose_breaker_is_open() {
    // peers 2 (down) and 3 (up), taken in turn
    let cluster = Cluster::start(&[false, true], 16).await;
    put(cluster.peer(3), "k", &set(3, 1, "v")).await;
    let first = cluster.round().await.expect("every breaker closed");
    assert_eq!(first.peer, Some(2));
    assert!(!first.agreed, "a peer that is down agreed");
    // peer 2 refused the connection, so its breaker is open: every round
    // from now on compares with peer 3, whoever's turn it is
    for round in 0..4 {
        let report = cluster.round().await;
        assert_eq!(
            report.as_ref().and_then(|r| r.peer),
            Some(3),
            "round {round} after the refusal: {report:?}"
        );
    }
    assert!(holds(&cluster.tester, "k").await);
}
