//! Cluster-secret RPC on real tokio and loopback TCP: only peers that hold
//! the secret are served, nothing travels in the clear, and a recorded
//! session replayed to a node gets nothing done.
#![cfg(not(madsim))]

use async_trait::async_trait;
use quorumlog_core::protocol::{Request, Response};
use quorumlog_core::rpc::{self, CancellationToken, Handler, RpcClient, RpcError};
use quorumlog_core::secure_channel::ClusterSecret;
use quorumlog_core::{
    Client, Consistency, CoordinatorConfig, MemoryStore, Node, ReadRequest, Store, WriteRequest,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: ClusterSecret = ClusterSecret::from_bytes([0x5e; 32]);
const OTHER: ClusterSecret = ClusterSecret::from_bytes([0x07; 32]);
const PATIENT: Duration = Duration::from_secs(10);

/// Answers `Fetch` with the key it was sent (so a test can look for it on
/// the wire), `Ping` with a pong; counts every request it handled.
#[derive(Default)]
struct Echo {
    handled: AtomicUsize,
}

#[async_trait]
impl Handler for Echo {
    async fn handle(&self, request: Request) -> Response {
        self.handled.fetch_add(1, Ordering::SeqCst);
        match request {
            Request::Fetch { key } => Response::Error(format!("echo {key}")),
            _ => Response::Pong { node: 4 },
        }
    }
}

/// Why the call was refused (it must have been).
fn refusal(outcome: Result<Response, RpcError>) -> String {
    match outcome {
        Err(RpcError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

struct Server {
    addr: SocketAddr,
    handler: Arc<Echo>,
    shutdown: CancellationToken,
}

impl Server {
    async fn start(secret: Option<ClusterSecret>, limits: rpc::ServerLimits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(Echo::default());
        let shutdown = CancellationToken::new();
        tokio::spawn(rpc::serve_with(
            listener,
            handler.clone(),
            shutdown.clone(),
            limits,
            secret,
        ));
        Server {
            addr,
            handler,
            shutdown,
        }
    }

    fn handled(&self) -> usize {
        self.handler.handled.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A proxy in front of `target` that keeps a copy of every byte each way.
struct Tap {
    addr: SocketAddr,
    to_server: Arc<Mutex<Vec<u8>>>,
    to_client: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    async fn start(target: SocketAddr) -> Self {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = proxy.local_addr().unwrap();
        let to_server = Arc::new(Mutex::new(Vec::new()));
        let to_client = Arc::new(Mutex::new(Vec::new()));
        let (up, down) = (to_server.clone(), to_client.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = proxy.accept().await {
                let outbound = TcpStream::connect(target).await.unwrap();
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                let (up, down) = (up.clone(), down.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = in_read.read(&mut buf).await {
                        up.lock().unwrap().extend_from_slice(&buf[..n]);
                        if out_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = out_read.read(&mut buf).await {
                        down.lock().unwrap().extend_from_slice(&buf[..n]);
                        if in_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Tap {
            addr,
            to_server,
            to_client,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn peers_holding_the_secret_are_served_and_nothing_travels_in_the_clear() {
    let server = Server::start(Some(SECRET), rpc::ServerLimits::default()).await;
    let tap = Tap::start(server.addr).await;
    let rpc = RpcClient::secured(tap.addr, Some(SECRET));
    let marker = "plaintext-marker-7f3a";
    let answer = rpc
        .call(&Request::Fetch { key: marker.into() }, PATIENT)
        .await;
    assert_eq!(answer, Ok(Response::Error(format!("echo {marker}"))));
    // a frame of many Noise messages, both ways
    let big = "k".repeat(3 * 1024 * 1024 + 17);
    let answer = rpc
        .call(&Request::Fetch { key: big.clone() }, PATIENT)
        .await;
    let Ok(Response::Error(echoed)) = answer else {
        panic!("the large frame did not come back: {:.100?}", answer);
    };
    assert!(
        echoed == format!("echo {big}"),
        "the large frame came back altered"
    );
    assert_eq!(server.handled(), 2);
    let up = tap.to_server.lock().unwrap().clone();
    let down = tap.to_client.lock().unwrap().clone();
    assert!(
        !contains(&up, marker.as_bytes()),
        "the request went in the clear"
    );
    assert!(
        !contains(&down, marker.as_bytes()),
        "the answer went in the clear"
    );
    assert!(
        !contains(&up, &[b'k'; 64]),
        "the large request went in the clear"
    );

    // The same exchange without a secret is readable on the wire: the tap
    // would have seen it (so the check above can fail).
    let plain = Server::start(None, rpc::ServerLimits::default()).await;
    let plain_tap = Tap::start(plain.addr).await;
    let _ = RpcClient::new(plain_tap.addr)
        .call(&Request::Fetch { key: marker.into() }, PATIENT)
        .await
        .unwrap();
    assert!(contains(
        &plain_tap.to_server.lock().unwrap(),
        marker.as_bytes()
    ));
}

#[tokio::test]
async fn a_peer_with_another_secret_is_refused_and_told_why() {
    let server = Server::start(Some(SECRET), rpc::ServerLimits::default()).await;
    let reason = refusal(
        RpcClient::secured(server.addr, Some(OTHER))
            .call(&Request::Ping, PATIENT)
            .await,
    );
    assert!(reason.contains("another cluster secret"), "{reason}");
    assert_eq!(server.handled(), 0);
}

#[tokio::test]
async fn a_peer_without_the_secret_is_refused_before_any_request_is_read() {
    let server = Server::start(Some(SECRET), rpc::ServerLimits::default()).await;
    let reason = refusal(
        RpcClient::new(server.addr)
            .call(&Request::Fetch { key: "k".into() }, PATIENT)
            .await,
    );
    assert!(reason.contains("prove the cluster secret"), "{reason}");
    assert_eq!(server.handled(), 0);
}

#[tokio::test]
async fn a_dialer_with_a_secret_is_told_the_node_has_none() {
    let server = Server::start(None, rpc::ServerLimits::default()).await;
    let reason = refusal(
        RpcClient::secured(server.addr, Some(SECRET))
            .call(&Request::Ping, PATIENT)
            .await,
    );
    assert!(reason.contains("no cluster secret"), "{reason}");
    assert_eq!(server.handled(), 0);
}

#[tokio::test]
async fn a_peer_that_never_completes_the_handshake_is_closed() {
    let limits = rpc::ServerLimits {
        handshake_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let server = Server::start(Some(SECRET), limits).await;
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection stayed open: {closed:?}"
    );
    // A first frame too large for a handshake is not buffered either.
    let mut raw = TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(&(16u32 << 20).to_be_bytes()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "{closed:?}");
    assert_eq!(server.handled(), 0);
}

#[tokio::test]
async fn a_recorded_session_replayed_to_the_node_gets_nothing_done() {
    let server = Server::start(Some(SECRET), rpc::ServerLimits::default()).await;
    let tap = Tap::start(server.addr).await;
    let rpc = RpcClient::secured(tap.addr, Some(SECRET));
    for _ in 0..3 {
        rpc.call(&Request::Fetch { key: "k".into() }, PATIENT)
            .await
            .unwrap();
    }
    assert_eq!(server.handled(), 3);
    drop(rpc);
    let recorded = tap.to_server.lock().unwrap().clone();
    // The attacker plays the dialer's bytes, handshake and requests, to
    // the node again: the handshake is answered with fresh keys, and the
    // recorded requests do not open under them.
    let mut replay = TcpStream::connect(server.addr).await.unwrap();
    replay.write_all(&recorded).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENT, replay.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the replayed connection stayed open");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.handled(), 3, "a replayed request was handled");
}

fn write(key: &str, value: &str) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        value: value.into(),
        context: None,
        level: Consistency::All,
        overwrite: false,
    }
}

/// A real cluster of nodes holding one secret replicates as before; a
/// client holding another reads and writes nothing.
#[tokio::test]
async fn a_secured_cluster_replicates_and_refuses_another_secret() {
    let config = CoordinatorConfig {
        replica_timeout: Duration::from_millis(500),
        cluster_secret: Some(SECRET),
        ..Default::default()
    };
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for id in 1..=3u32 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push((id, listener.local_addr().unwrap()));
        listeners.push(listener);
    }
    let stores: Vec<Arc<MemoryStore>> = (0..3).map(|_| Arc::new(MemoryStore::new())).collect();
    let shutdown = CancellationToken::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let store: Arc<dyn Store> = stores[i].clone();
        let node = Node::open(addrs[i].0, store, addrs.clone(), config, 0)
            .await
            .unwrap();
        tokio::spawn(Arc::new(node).serve_until(listener, shutdown.clone()));
    }
    let client = Client::secured(addrs.clone(), Duration::from_secs(3), Some(SECRET));
    let ok = client.write(write("k", "v"), 0).await.unwrap();
    assert_eq!(ok.acked, 3, "every replica took the write at ALL");
    for store in &stores {
        assert_eq!(store.get("k").await.unwrap().len(), 1);
    }

    let outsider = Client::secured(addrs.clone(), Duration::from_secs(3), Some(OTHER));
    assert!(outsider.write(write("k", "forged"), 0).await.is_err());
    let read = ReadRequest {
        key: "k".into(),
        level: Consistency::One,
    };
    assert!(outsider.read(read.clone(), 0).await.is_err());
    let read_back = client.read(read, 0).await.unwrap();
    assert_eq!(read_back.siblings.len(), 1);
    assert_eq!(read_back.siblings[0].value, "v");
    shutdown.cancel();
}
