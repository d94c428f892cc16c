//! The node, coordinator and RPC code on real tokio and real loopback TCP
//! (the same code the simulator drives under madsim).
#![cfg(not(madsim))]

use async_trait::async_trait;
use quorumlog_core::context::{self, ContextSecret};
use quorumlog_core::protocol::{Request, Response};
use quorumlog_core::rpc::{self, CancellationToken, Handler, RpcClient, RpcError, MAX_FRAME_BYTES};
use quorumlog_core::{
    Actor, AntiEntropyConfig, Client, ClientError, Consistency, CoordinatorConfig, Dot,
    MemoryStore, Node, OpError, ReadRepair, ReadRequest, Siblings, Store, Version, VersionVector,
    WriteRequest,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

struct TestCluster {
    config: CoordinatorConfig,
    addrs: Vec<(u32, SocketAddr)>,
    tasks: Vec<Option<(JoinHandle<()>, CancellationToken)>>,
    stores: Vec<Arc<MemoryStore>>,
    listeners: Vec<Option<TcpListener>>,
}

impl TestCluster {
    async fn start(n: usize) -> Self {
        Self::start_with(
            n,
            CoordinatorConfig {
                replica_timeout: Duration::from_millis(300),
                ..Default::default()
            },
        )
        .await
    }

    async fn start_with(n: usize, config: CoordinatorConfig) -> Self {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push((i as u32 + 1, listener.local_addr().unwrap()));
            listeners.push(Some(listener));
        }
        let mut cluster = TestCluster {
            config,
            addrs,
            tasks: (0..n).map(|_| None).collect(),
            stores: (0..n).map(|_| Arc::new(MemoryStore::new())).collect(),
            listeners,
        };
        for i in 0..n {
            cluster.start_node(i).await;
        }
        cluster
    }

    async fn start_node(&mut self, i: usize) {
        let listener = match self.listeners[i].take() {
            Some(l) => l,
            // The stopped server's socket may take a moment to close.
            None => {
                let mut attempt = 0;
                loop {
                    match TcpListener::bind(self.addrs[i].1).await {
                        Ok(listener) => break listener,
                        Err(e) if attempt < 40 => {
                            attempt += 1;
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot bind {}: {e}", self.addrs[i].1),
                    }
                }
            }
        };
        let store: Arc<dyn Store> = self.stores[i].clone();
        let node = Node::open(self.addrs[i].0, store, self.addrs.clone(), self.config, 0)
            .await
            .unwrap();
        let node = Arc::new(node);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            let _ = node.serve_until(listener, token).await;
        });
        self.tasks[i] = Some((task, shutdown));
    }

    fn stop_node(&mut self, i: usize) {
        if let Some((task, shutdown)) = self.tasks[i].take() {
            shutdown.cancel();
            task.abort();
        }
    }

    fn client(&self) -> Client {
        Client::new(self.addrs.clone(), Duration::from_secs(2))
    }
}

fn write(key: &str, value: &str, level: Consistency) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        value: value.into(),
        context: None,
        level,
        overwrite: false,
    }
}

#[tokio::test]
async fn quorum_write_then_read_and_siblings_resolve() {
    let cluster = TestCluster::start(5).await;
    let client = cluster.client();
    let a = client
        .write(write("k", "a", Consistency::Quorum), 0)
        .await
        .unwrap();
    assert_eq!(a.needed, 3);
    assert!(a.acked >= 3);
    // a blind write through another coordinator becomes a sibling
    client
        .write(write("k", "b", Consistency::Quorum), 2)
        .await
        .unwrap();
    let read = client
        .read(
            ReadRequest {
                key: "k".into(),
                level: Consistency::All,
            },
            1,
        )
        .await
        .unwrap();
    let mut values: Vec<_> = read.siblings.iter().map(|v| v.value.clone()).collect();
    values.sort();
    assert_eq!(values, ["a", "b"]);
    // writing back with the merged context resolves the conflict
    let resolve = WriteRequest {
        context: Some(read.token),
        ..write("k", "ab", Consistency::All)
    };
    client.write(resolve, 3).await.unwrap();
    let read = client
        .read(
            ReadRequest {
                key: "k".into(),
                level: Consistency::Quorum,
            },
            4,
        )
        .await
        .unwrap();
    assert_eq!(read.siblings.len(), 1);
    assert_eq!(read.siblings[0].value, "ab");
}

/// What store `i` holds for `key`, by value.
fn held(cluster: &TestCluster, i: usize, key: &str) -> Vec<String> {
    cluster.stores[i].inspect(|data| {
        let mut values: Vec<String> = data
            .get(key)
            .map(|s| s.versions().iter().map(|v| v.value.clone()).collect())
            .unwrap_or_default();
        values.sort();
        values
    })
}

#[tokio::test]
async fn replicas_that_missed_writes_get_them_from_hints_without_reads() {
    let mut cluster = TestCluster::start(5).await;
    let client = cluster.client();
    cluster.stop_node(3);
    cluster.stop_node(4);
    let keys: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        client
            .write(write(key, "v", Consistency::Quorum), i)
            .await
            .unwrap();
    }
    // A coordinator restart in between: the hints are in its store.
    cluster.stop_node(0);
    cluster.start_node(0).await;
    cluster.start_node(3).await;
    cluster.start_node(4).await;
    // No reads: only hint replay (every second, once each coordinator's
    // breaker lets requests through again) brings them up to date.
    let mut caught_up = false;
    for _ in 0..100 {
        caught_up = keys
            .iter()
            .all(|k| held(&cluster, 3, k) == ["v"] && held(&cluster, 4, k) == ["v"]);
        if caught_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !caught_up {
        for (i, store) in cluster.stores.iter().enumerate() {
            eprintln!("store {i}: hints {:?}", store.hint_backlog().await);
        }
        eprintln!(
            "n4 holds {:?}",
            keys.iter()
                .map(|k| held(&cluster, 3, k))
                .collect::<Vec<_>>()
        );
    }
    assert!(
        caught_up,
        "nodes 4 and 5 did not receive every missed write"
    );
    // Replayed hints are removed.
    for _ in 0..50 {
        let mut left = 0;
        for store in &cluster.stores {
            left += hints_held(store).await;
        }
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("replayed hints were not removed");
}

/// Hints `store` holds, for every target.
async fn hints_held(store: &MemoryStore) -> usize {
    let backlog = store.hint_backlog().await.unwrap();
    backlog.iter().map(|(_, b)| b.count).sum()
}

/// A replay that its replica does not acknowledge (it holds the
/// connection and answers nothing, as across a partition) keeps the hint;
/// once the replica answers, the next replay delivers it and removes it.
#[tokio::test]
async fn a_hint_is_removed_only_once_its_replica_acknowledged_it() {
    let config = CoordinatorConfig {
        replica_timeout: Duration::from_millis(200),
        anti_entropy: None,
        ..Default::default()
    };
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = silent.local_addr().unwrap();
    let addrs = vec![(1, "127.0.0.1:9".parse().unwrap()), (2, target_addr)];
    let coordinator_store = Arc::new(MemoryStore::new());
    let node = Node::new(
        Actor::new(1, 0),
        coordinator_store.clone(),
        addrs.clone(),
        config,
    );
    let siblings = Siblings::from_versions([Version {
        dot: Dot::new(1, 1),
        context: VersionVector::new(),
        value: "missed".into(),
        timestamp_ms: 0,
    }])
    .unwrap();
    let limits = config.hinted_handoff.unwrap();
    coordinator_store
        .put_hint(
            2,
            "k",
            &siblings,
            quorumlog_core::wall_clock::now_ms(),
            &limits,
        )
        .await
        .unwrap();
    // The replica takes the connection and answers nothing.
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = silent.accept().await.unwrap();
            open.push(socket);
        }
    });
    node.coordinator().replay_hints().await;
    assert_eq!(
        hints_held(&coordinator_store).await,
        1,
        "a replay its replica never acknowledged removed the hint"
    );
    hold.abort();
    let _ = hold.await;
    // The replica answers again on the same address.
    let target_store = Arc::new(MemoryStore::new());
    let listener = loop {
        match TcpListener::bind(target_addr).await {
            Ok(listener) => break listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let target = Arc::new(Node::new(
        Actor::new(2, 0),
        target_store.clone(),
        addrs,
        config,
    ));
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = target.serve_until(listener, shutdown).await;
        }
    });
    // The held connection was reset; the breaker is still closed (one
    // failure of three), so the next round replays.
    let mut delivered = false;
    for _ in 0..50 {
        node.coordinator().replay_hints().await;
        if hints_held(&coordinator_store).await == 0 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(delivered, "the hint was never replayed to its replica");
    assert_eq!(
        target_store.inspect(|data| data.get("k").cloned()),
        Some(siblings),
        "the hint was removed but its replica does not hold it"
    );
    shutdown.cancel();
    let _ = serving.await;
}

#[tokio::test]
async fn anti_entropy_alone_refills_replicas_that_missed_writes_or_lost_their_disk() {
    // No hints, no read repair, no reads: only anti-entropy.
    let config = CoordinatorConfig {
        replica_timeout: Duration::from_millis(300),
        read_repair: ReadRepair::Off,
        hinted_handoff: None,
        anti_entropy: Some(AntiEntropyConfig {
            interval: Duration::from_millis(50),
            ..AntiEntropyConfig::default()
        }),
        ..Default::default()
    };
    let mut cluster = TestCluster::start_with(5, config).await;
    let client = cluster.client();
    cluster.stop_node(3);
    let keys: Vec<String> = (0..50).map(|i| format!("ae{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        client
            .write(write(key, "v", Consistency::Quorum), i % 3)
            .await
            .unwrap();
    }
    // Node 5 loses its disk while node 4 is down.
    cluster.stop_node(4);
    cluster.stores[4] = Arc::new(MemoryStore::new());
    cluster.start_node(3).await;
    cluster.start_node(4).await;
    let mut agreed = false;
    for _ in 0..200 {
        agreed = (0..5).all(|i| keys.iter().all(|k| held(&cluster, i, k) == ["v"]));
        if agreed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<(usize, &String)> = (0..5)
        .flat_map(|i| keys.iter().map(move |k| (i, k)))
        .filter(|(i, k)| held(&cluster, *i, k) != ["v"])
        .collect();
    assert!(
        agreed,
        "replicas still lack {} keys: {missing:?}",
        missing.len()
    );
}

#[tokio::test]
async fn two_nodes_down_quorum_serves_all_is_refused_then_recovers() {
    let mut cluster = TestCluster::start(5).await;
    let client = cluster.client();
    client
        .write(write("p", "1", Consistency::All), 0)
        .await
        .unwrap();
    cluster.stop_node(3);
    cluster.stop_node(4);
    // QUORUM still serves
    client
        .write(write("p", "2", Consistency::Quorum), 0)
        .await
        .unwrap();
    // ALL fails: first by timeout (the breaker has not tripped yet), then,
    // once the breakers are open, as Unavailable with the counts.
    // Every coordinator keeps its own breakers, and the client fails over
    // on Unavailable, so it takes a few rounds until all of them agree.
    let mut saw_unavailable = false;
    for _ in 0..20 {
        match client.write(write("p", "x", Consistency::All), 0).await {
            Err(ClientError::Op {
                error: OpError::Unavailable { needed, alive, n },
                ..
            }) => {
                assert_eq!((needed, alive, n), (5, 3, 5));
                saw_unavailable = true;
                break;
            }
            Err(ClientError::Op {
                error: OpError::Timeout {
                    needed, answered, ..
                },
                ..
            }) => {
                assert_eq!(needed, 5);
                assert!(answered < 5);
            }
            other => panic!("ALL with two nodes down must fail, got {other:?}"),
        }
    }
    assert!(
        saw_unavailable,
        "the breaker never marked the dead replicas down"
    );
    cluster.start_node(3).await;
    cluster.start_node(4).await;
    // after the breaker's cool-down the replicas are probed back
    let mut ok = false;
    for _ in 0..40 {
        if client
            .write(write("p", "3", Consistency::All), 0)
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "ALL never recovered after the nodes came back");
    let read = client
        .read(
            ReadRequest {
                key: "p".into(),
                level: Consistency::All,
            },
            0,
        )
        .await
        .unwrap();
    let values: Vec<_> = read.siblings.iter().map(|v| v.value.as_str()).collect();
    // every acknowledged write is still there (blind writes: siblings)
    for v in ["1", "2", "3"] {
        assert!(values.contains(&v), "acknowledged {v} lost: {values:?}");
    }
}

#[tokio::test]
async fn a_node_that_died_is_refused_before_anything_is_sent() {
    // Every coordinator holds a connection to node 3 when it stops (its
    // connections close, its port refuses). The very first ALL write is
    // refused as Unavailable: each coordinator reconnects to a peer whose
    // connection was lost before counting it alive.
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    for first in 0..3 {
        client
            .write(
                write(&format!("warm-{first}"), "1", Consistency::All),
                first,
            )
            .await
            .unwrap();
    }
    cluster.stop_node(2);
    // Let the coordinators' readers see the connections close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match client.write(write("dead", "x", Consistency::All), 0).await {
        Err(ClientError::Op {
            error: OpError::Unavailable { needed, alive, n },
            ..
        }) => assert_eq!((needed, alive, n), (3, 2, 3)),
        other => panic!("the first ALL write after a node died must be refused, got {other:?}"),
    }
    // and nothing was written anywhere
    let read = client
        .read(
            ReadRequest {
                key: "dead".into(),
                level: Consistency::Quorum,
            },
            0,
        )
        .await
        .unwrap();
    assert!(read.siblings.is_empty(), "{:?}", read.siblings);
}

#[tokio::test]
async fn a_context_that_names_a_version_without_its_past_is_refused() {
    // b superseded a (its client read a); a context naming b's dot but not
    // a's was not returned by any read of this key: refused, nothing stored.
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let a = client
        .write(write("k", "a", Consistency::All), 0)
        .await
        .unwrap();
    let mut after_a = write("k", "b", Consistency::All);
    after_a.context = Some(a.token);
    let b = client.write(after_a, 1).await.unwrap();
    // Signed with the cluster's secret (as if it had leaked): the
    // signature passes, the replica's own check does not.
    let mut forged = write("k", "c", Consistency::All);
    forged.context = Some(context::encode(
        &CoordinatorConfig::default().context_secret,
        "k",
        &VersionVector::from_entries([(b.version.dot.actor(), b.version.dot.counter)]),
    ));
    match client.write(forged, 2).await {
        Err(ClientError::Op {
            error: OpError::Invalid(reason),
            ..
        }) => assert!(
            reason.contains("not what that version had seen"),
            "{reason}"
        ),
        other => panic!("a context without b's past must be refused, got {other:?}"),
    }
    // b's own clock is a context a read could have returned: accepted.
    let mut honest = write("k", "d", Consistency::All);
    honest.context = Some(b.token);
    client.write(honest, 2).await.unwrap();
    let read = client
        .read(
            ReadRequest {
                key: "k".into(),
                level: Consistency::All,
            },
            0,
        )
        .await
        .unwrap();
    let values: Vec<&str> = read.siblings.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(values, ["d"]);
}

#[tokio::test]
async fn over_the_rpc_only_contexts_the_cluster_signed_for_the_key_are_taken() {
    // Naming a dot that exists (and one that does not yet) in a token the
    // cluster did not sign must not supersede anything, whichever
    // coordinator takes it; nor may a genuine token of another key.
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let a = client
        .write(write("k", "a", Consistency::All), 0)
        .await
        .unwrap();
    let claim = VersionVector::from_entries([
        (a.version.dot.actor(), a.version.dot.counter),
        (a.version.dot.actor(), a.version.dot.counter + 1),
    ]);
    let other_cluster = ContextSecret::from_bytes([9; 32]);
    let other_key = client
        .write(write("elsewhere", "z", Consistency::All), 0)
        .await
        .unwrap();
    for coordinator in 0..3 {
        for (token, why) in [
            (
                context::encode(&other_cluster, "k", &claim),
                "not issued by this cluster",
            ),
            (other_key.token.clone(), "another key"),
        ] {
            let mut forged = write("k", "forged", Consistency::One);
            forged.context = Some(token);
            match client.write(forged, coordinator).await {
                Err(ClientError::Op {
                    error: OpError::Invalid(reason),
                    ..
                }) => assert!(reason.contains(why), "{reason}"),
                other => panic!("coordinator {coordinator} took a bad token ({why}): {other:?}"),
            }
        }
    }
    let read = client
        .read(
            ReadRequest {
                key: "k".into(),
                level: Consistency::All,
            },
            0,
        )
        .await
        .unwrap();
    let values: Vec<&str> = read.siblings.iter().map(|v| v.value.as_str()).collect();
    assert_eq!(values, ["a"]);
    // The token a read returns is taken by any coordinator.
    let mut next = write("k", "b", Consistency::All);
    next.context = Some(read.token);
    client.write(next, 2).await.unwrap();
}

#[tokio::test]
async fn bad_requests_are_refused_with_reasons() {
    let cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let err = client
        .write(write("", "v", Consistency::One), 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("key is empty"), "{err}");
    let err = client
        .write(write("k", "v", Consistency::Count(4)), 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("W = 4 is out of range"), "{err}");
    let big = "x".repeat(quorumlog_core::replica::MAX_VALUE_LEN + 1);
    let err = client
        .write(write("k", &big, Consistency::One), 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    let read = client
        .read(
            ReadRequest {
                key: "k".into(),
                level: Consistency::All,
            },
            0,
        )
        .await
        .unwrap();
    assert!(read.siblings.is_empty(), "a refused write changed the data");
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_the_connection_not_the_server() {
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addrs[0].1;
    // a frame header announcing more than the limit
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&[0; 16]).await.unwrap();
    // a well-sized frame of garbage
    let mut raw2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw2.write_all(&8u32.to_be_bytes()).await.unwrap();
    raw2.write_all(&[0xff; 8]).await.unwrap();
    // the server still answers proper clients
    let rpc = RpcClient::new(addr);
    let pong = rpc
        .call(&Request::Ping, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(pong, Response::Pong { node: 1 });
}

/// A peer of another protocol version (here: a protocol 1 frame, bincode
/// with no header, and a frame of a future version 9) is refused: the
/// server answers, in its own protocol, why, and closes the connection;
/// proper clients are still served.
#[tokio::test]
async fn a_peer_of_another_protocol_version_is_refused_with_a_reason() {
    use quorumlog_core::codec::{self, FrameHeader, PROTOCOL_VERSION};
    use tokio::io::AsyncReadExt;
    let cluster = TestCluster::start(1).await;
    let addr = cluster.addrs[0].1;
    // A protocol-1 Ping: bincode of (id = 1u64, variant index of Ping).
    let mut v1 = vec![1, 0, 0, 0, 0, 0, 0, 0];
    v1.extend(5u32.to_le_bytes());
    let mut future = codec::FRAME_MAGIC.to_vec();
    future.push(9);
    future.extend([1, 5]);
    for (frame, names) in [(v1, "carry no protocol version"), (future, "version 9")] {
        let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
        raw.write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        raw.write_all(&frame).await.unwrap();
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(3), raw.read_exact(&mut len))
            .await
            .expect("an answer")
            .expect("a frame length");
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        raw.read_exact(&mut answer).await.unwrap();
        assert_eq!(codec::read_frame_header(&answer), FrameHeader::Current);
        let (id, response): (u64, Response) =
            codec::decode(&answer[codec::FRAME_HEADER_LEN..]).expect("our protocol");
        assert_eq!(id, 0);
        let Response::Error(message) = response else {
            panic!("expected an error, got {response:?}")
        };
        assert!(
            message.contains(&format!("protocol version {PROTOCOL_VERSION}"))
                && message.contains(names),
            "{message}"
        );
        // and the connection is closed
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), raw.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    }
    let pong = RpcClient::new(addr)
        .call(&Request::Ping, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(pong, Response::Pong { node: 1 });
}

/// A client whose peer answers in another protocol version gets an error
/// naming both versions, not a lost connection.
#[tokio::test]
async fn a_client_told_of_another_protocol_version_says_so() {
    use quorumlog_core::codec::{self, PROTOCOL_VERSION};
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.unwrap();
        let mut request = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut request).await.unwrap();
        let mut answer = codec::FRAME_MAGIC.to_vec();
        answer.push(PROTOCOL_VERSION + 1);
        answer.extend([1, 0]);
        stream
            .write_all(&(answer.len() as u32).to_be_bytes())
            .await
            .unwrap();
        stream.write_all(&answer).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    });
    let error = RpcClient::new(addr)
        .call(&Request::Ping, Duration::from_secs(3))
        .await
        .expect_err("another protocol");
    assert_eq!(
        error,
        RpcError::Incompatible {
            addr,
            theirs: Some(PROTOCOL_VERSION + 1),
            ours: PROTOCOL_VERSION
        }
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{text}"
    );
    server.abort();
}

#[tokio::test]
async fn client_reconnects_after_the_peer_restarts() {
    let mut cluster = TestCluster::start(1).await;
    let rpc = RpcClient::new(cluster.addrs[0].1);
    rpc.call(&Request::Ping, Duration::from_secs(1))
        .await
        .unwrap();
    cluster.stop_node(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let down = rpc.call(&Request::Ping, Duration::from_millis(500)).await;
    assert!(
        matches!(
            down,
            Err(RpcError::ConnectionLost { .. }
                | RpcError::Connect { .. }
                | RpcError::Timeout { .. })
        ),
        "{down:?}"
    );
    cluster.start_node(0).await;
    let mut answered = false;
    for _ in 0..10 {
        if rpc
            .call(&Request::Ping, Duration::from_millis(500))
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "never reconnected to the restarted peer");
}

/// Answers `Fetch` with the length of the key it was sent, `Fetch "big:N"`
/// with a response whose text is N bytes, and `Ping` with a pong; counts
/// the `Fetch` requests that arrived.
#[derive(Default)]
struct SizedAnswers {
    fetches: AtomicUsize,
}

#[async_trait]
impl Handler for SizedAnswers {
    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Fetch { key } => {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                match key.strip_prefix("big:") {
                    Some(len) => Response::Error("x".repeat(len.parse().unwrap())),
                    None => Response::Error(format!("key of {} bytes", key.len())),
                }
            }
            Request::Ping => Response::Pong { node: 9 },
            other => Response::Error(format!("unexpected {other:?}")),
        }
    }
}

/// An RPC server on loopback, reached through a proxy that counts the
/// connections clients open, so a test can tell a connection that lived on
/// from one that was replaced.
struct RpcServer {
    addr: SocketAddr,
    handler: Arc<SizedAnswers>,
    connections: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

impl RpcServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server_addr = listener.local_addr().unwrap();
        let handler = Arc::new(SizedAnswers::default());
        let shutdown = CancellationToken::new();
        tokio::spawn(rpc::serve(listener, handler.clone(), shutdown.clone()));

        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = proxy.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = proxy.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(server_addr).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        RpcServer {
            addr,
            handler,
            connections,
            shutdown,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn fetches(&self) -> usize {
        self.handler.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Long enough for a frame near the limit in a debug build; a call that
/// waits this long has been swallowed.
const PATIENT: Duration = Duration::from_secs(10);

async fn ping(rpc: &RpcClient) {
    assert_eq!(
        rpc.call(&Request::Ping, Duration::from_secs(2)).await,
        Ok(Response::Pong { node: 9 })
    );
}

#[tokio::test]
async fn an_oversized_response_fails_that_call_only_and_the_connection_lives_on() {
    let server = RpcServer::start().await;
    let rpc = RpcClient::new(server.addr);
    ping(&rpc).await;
    let big = Request::Fetch {
        key: format!("big:{}", MAX_FRAME_BYTES + 1),
    };
    let answer = rpc.call(&big, PATIENT).await;
    let Ok(Response::Error(message)) = answer else {
        panic!("expected an error naming the limit, got {answer:.200?}");
    };
    assert!(message.len() < 1000, "{message:.200}");
    assert!(
        message.contains(&format!("the RPC frame limit is {MAX_FRAME_BYTES}")),
        "{message}"
    );
    assert!(message.contains("Fetch \"big:"), "{message}");
    // the same connection keeps answering, at once
    ping(&rpc).await;
    let small = rpc.call(&Request::Fetch { key: "k".into() }, PATIENT).await;
    assert_eq!(small, Ok(Response::Error("key of 1 bytes".into())));
    assert_eq!(server.connections(), 1, "the connection was replaced");
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_sending_and_the_next_call_succeeds() {
    let server = RpcServer::start().await;
    let rpc = RpcClient::new(server.addr);
    ping(&rpc).await;
    let big = Request::Fetch {
        key: "x".repeat(MAX_FRAME_BYTES + 1),
    };
    let err = rpc.call(&big, PATIENT).await.unwrap_err();
    let RpcError::TooLarge { bytes, limit } = err else {
        panic!("expected TooLarge, got {err:?}");
    };
    assert!(bytes > MAX_FRAME_BYTES + 1, "{bytes}");
    assert_eq!(limit, MAX_FRAME_BYTES);
    assert!(err.to_string().contains("nothing was sent"), "{err}");
    ping(&rpc).await;
    assert_eq!(
        server.fetches(),
        0,
        "the oversized request reached the server"
    );
    assert_eq!(server.connections(), 1, "the connection was replaced");

    // refused before connecting: a peer that is down is never tried
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody = closed.local_addr().unwrap();
    drop(closed);
    let err = RpcClient::new(nobody).call(&big, PATIENT).await;
    assert!(matches!(err, Err(RpcError::TooLarge { .. })), "{err:?}");
}

/// The largest answer the design expects: a read merging the sibling sets
/// of N = 7 replicas, each at the default per-key limit of 4 MiB.
const READ_OF_SEVEN_FULL_KEYS: usize = 7 * 4 * 1024 * 1024;

#[tokio::test]
async fn frames_up_to_the_limit_pass_both_ways() {
    let server = RpcServer::start().await;
    let rpc = RpcClient::new(server.addr);
    // the second leaves room for the envelope and the text's length prefix
    for len in [READ_OF_SEVEN_FULL_KEYS, MAX_FRAME_BYTES - 1024] {
        let request = Request::Fetch {
            key: "x".repeat(len),
        };
        assert_eq!(
            rpc.call(&request, PATIENT).await,
            Ok(Response::Error(format!("key of {len} bytes"))),
            "a request of {len} bytes"
        );
        let big = Request::Fetch {
            key: format!("big:{len}"),
        };
        let answer = rpc.call(&big, PATIENT).await;
        let Ok(Response::Error(text)) = answer else {
            panic!("a response of {len} bytes did not arrive: {answer:.200?}");
        };
        assert_eq!(text.len(), len);
    }
    ping(&rpc).await;
    assert_eq!(server.connections(), 1);
}

/// Counts the requests it is handling at once (and the most ever), each
/// taking a while.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

#[async_trait]
impl Handler for Concurrency {
    async fn handle(&self, _request: Request) -> Response {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        Response::Pong { node: 3 }
    }
}

async fn limited_server(
    handler: Arc<dyn Handler>,
    limits: rpc::ServerLimits,
) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move { rpc::serve_with(listener, handler, stop, limits, None).await });
    (addr, shutdown)
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_the_slot_comes_back() {
    let limits = rpc::ServerLimits {
        max_connections: 2,
        ..Default::default()
    };
    let (addr, shutdown) = limited_server(Arc::new(Concurrency::default()), limits).await;
    let first = RpcClient::new(addr);
    let second = RpcClient::new(addr);
    for client in [&first, &second] {
        client
            .call(&Request::Ping, Duration::from_secs(2))
            .await
            .expect("within the limit");
    }
    let third = RpcClient::new(addr);
    let refused = third.call(&Request::Ping, Duration::from_secs(2)).await;
    assert!(
        matches!(refused, Err(RpcError::ConnectionLost { .. })),
        "{refused:?}"
    );
    drop(first);
    let mut served = false;
    for _ in 0..40 {
        if third
            .call(&Request::Ping, Duration::from_secs(1))
            .await
            .is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "a closed connection's slot was never given back");
    shutdown.cancel();
}

#[tokio::test]
async fn a_connection_that_completes_no_frame_is_closed_after_the_idle_timeout() {
    let limits = rpc::ServerLimits {
        idle_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (addr, shutdown) = limited_server(Arc::new(Concurrency::default()), limits).await;
    // Half a frame, and then nothing: the buffer it pins is given back.
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(&1000u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[0; 10]).await.unwrap();
    assert_closed_soon(&mut raw, "the trickling connection").await;
    shutdown.cancel();
}

/// The server closes `raw` within a few seconds (it reads to the end, or
/// fails), sending nothing more.
async fn assert_closed_soon(raw: &mut tokio::net::TcpStream, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "{what} stayed open: {closed:?}"
    );
}

/// The idle timeout counts from the last frame, not from the connection's
/// start: a peer that sends a frame more often than that is served for as
/// long as it keeps sending, and closed once it stops.
#[tokio::test]
async fn a_connection_is_idle_only_after_a_timeout_with_no_frame() {
    use tokio::io::AsyncReadExt;
    let idle = Duration::from_millis(300);
    let limits = rpc::ServerLimits {
        idle_timeout: idle,
        ..Default::default()
    };
    let (addr, shutdown) = limited_server(Arc::new(Concurrency::default()), limits).await;
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut id = 0u64;
    // Four idle periods' worth of pings, one every third of a period.
    while started.elapsed() < idle * 4 {
        id += 1;
        let header = quorumlog_core::codec::frame_header(16);
        let frame = quorumlog_core::codec::encode_into(&(id, Request::Ping), header).unwrap();
        raw.write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        raw.write_all(&frame).await.unwrap();
        let mut len = [0u8; 4];
        raw.read_exact(&mut len)
            .await
            .unwrap_or_else(|e| panic!("closed after {:?} of pings: {e}", started.elapsed()));
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        raw.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            rpc::decode_response_frame(&reply).unwrap(),
            (id, Response::Pong { node: 3 })
        );
        tokio::time::sleep(idle / 3).await;
    }
    assert_closed_soon(&mut raw, "the connection whose pings stopped").await;
    shutdown.cancel();
}

#[tokio::test]
async fn one_connection_has_at_most_its_limit_of_requests_in_flight() {
    let handler = Arc::new(Concurrency::default());
    let limits = rpc::ServerLimits {
        max_in_flight_per_connection: 2,
        ..Default::default()
    };
    let (addr, shutdown) = limited_server(handler.clone(), limits).await;
    let client = Arc::new(RpcClient::new(addr));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call(&Request::Ping, Duration::from_secs(5)).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Ok(Response::Pong { node: 3 }));
    }
    assert_eq!(handler.most.load(Ordering::SeqCst), 2);
    shutdown.cancel();
}

/// Background read repairs past the limit are skipped (hints and
/// anti-entropy cover for them), never piled up: with one slot, a read
/// that finds two replicas behind repairs one of them.
#[tokio::test]
async fn background_repairs_past_the_limit_are_skipped() {
    use quorumlog_core::{Actor, Siblings};
    let config = CoordinatorConfig {
        replica_timeout: Duration::from_millis(300),
        read_repair: ReadRepair::Background,
        hedge_after: None,
        hinted_handoff: None,
        anti_entropy: None,
        max_background_repairs: 1,
        ..Default::default()
    };
    let cluster = TestCluster::start_with(3, config).await;
    let version = Siblings::new()
        .mint(Actor::new(9, 0), &VersionVector::new(), "v".into(), 0)
        .expect("mint");
    cluster.stores[0]
        .update("k", &mut |s| s.sync_one(version.clone()).unwrap_or(false))
        .await
        .expect("store on node 1 only");
    let read = Client::new(vec![cluster.addrs[0]], Duration::from_secs(2))
        .read(
            ReadRequest {
                key: "k".into(),
                level: Consistency::All,
            },
            0,
        )
        .await
        .expect("read at ALL");
    assert_eq!(read.siblings.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let repaired = (1..3).filter(|&i| held(&cluster, i, "k") == ["v"]).count();
    assert_eq!(
        repaired, 1,
        "one slot: one replica repaired, the other skipped"
    );
}

/// The bytes of requests one connection has in flight are bounded too:
/// with room for one 1.5 KiB request and not two, they are handled one at
/// a time.
#[tokio::test]
async fn one_connection_has_at_most_its_budget_of_request_bytes_in_flight() {
    let handler = Arc::new(Concurrency::default());
    let limits = rpc::ServerLimits {
        max_in_flight_bytes_per_connection: 2560,
        ..Default::default()
    };
    let (addr, shutdown) = limited_server(handler.clone(), limits).await;
    let client = Arc::new(RpcClient::new(addr));
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let fetch = Request::Fetch {
                    key: "k".repeat(1500),
                };
                client.call(&fetch, Duration::from_secs(5)).await
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Ok(Response::Pong { node: 3 }));
    }
    assert_eq!(handler.most.load(Ordering::SeqCst), 1);
    shutdown.cancel();
}
