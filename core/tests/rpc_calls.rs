//! Calls of the RPC client and server over real tokio and loopback TCP:
//! deadlines after earlier ones passed, a request of exactly the frame
//! limit, what counts as a lost connection, requests held back by a
//! connection's limits, a handshake past the first frame, and a client's
//! socket after its peer's frames became unreadable. Times here are only upper bounds for what
//! should happen at once, or lengths a loaded machine cannot stretch
//! past what a test needs.
#![cfg(not(madsim))]

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use quorumlog_core::codec;
use quorumlog_core::protocol::{Request, Response};
use quorumlog_core::rpc::{self, CancellationToken, Handler, RpcClient, RpcError, MAX_FRAME_BYTES};
use quorumlog_core::secure_channel::{self, ChannelCodec, ClusterSecret};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// An upper bound for what should happen at once, even on a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(5);

/// Answers `Fetch "slow"` never, `Fetch "late"` after [`LATE`], any other
/// `Fetch` with an error naming its key, and `Ping` with a pong.
struct Answers;

const LATE: Duration = Duration::from_secs(4);

/// How many `Fetch "late"` requests the handler has begun.
static LATE_BEGUN: AtomicUsize = AtomicUsize::new(0);

#[async_trait]
impl Handler for Answers {
    async fn handle(&self, request: Request) -> Response {
        match request {
            Request::Fetch { key } if key == "slow" => std::future::pending().await,
            Request::Fetch { key } if key == "late" => {
                LATE_BEGUN.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(LATE).await;
                Response::Pong { node: 7 }
            }
            Request::Fetch { key } => Response::Error(format!("key of {} bytes", key.len())),
            _ => Response::Pong { node: 7 },
        }
    }
}

async fn server(limits: rpc::ServerLimits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(
        async move { rpc::serve_with(listener, Arc::new(Answers), stop, limits, None).await },
    );
    (addr, shutdown)
}

fn fetch(key: &str) -> Request {
    Request::Fetch { key: key.into() }
}

/// The connection's one timer serves every deadline, also those that come
/// after every earlier one has passed and nothing else is waiting.
#[tokio::test]
async fn a_call_after_an_earlier_one_timed_out_still_times_out() {
    let (addr, shutdown) = server(rpc::ServerLimits::default()).await;
    let rpc = RpcClient::new(addr);
    let short = Duration::from_millis(100);
    for round in 0..3 {
        let outcome = tokio::time::timeout(PROMPTLY, rpc.call(&fetch("slow"), short)).await;
        assert_eq!(
            outcome,
            Ok(Err(RpcError::Timeout {
                addr,
                timeout: short
            })),
            "call {round} was never timed out"
        );
    }
    assert!(
        !rpc.lost_connection(),
        "a timeout must not end the connection"
    );
    shutdown.cancel();
}

/// A request whose frame is exactly the frame limit is sent and answered;
/// only a larger one is refused before sending.
#[tokio::test]
async fn a_request_of_exactly_the_frame_limit_is_sent() {
    let (addr, shutdown) = server(rpc::ServerLimits::default()).await;
    let rpc = RpcClient::new(addr);
    // The client numbers its calls from 1; the key's length prefix is a
    // varint, so the overhead depends on the length.
    let frame_of = |len: usize| {
        let request = fetch(&"x".repeat(len));
        codec::encode_into(&(1u64, &request), codec::frame_header(len + 16))
            .unwrap()
            .len()
    };
    let mut len = MAX_FRAME_BYTES;
    while frame_of(len) > MAX_FRAME_BYTES {
        len -= frame_of(len) - MAX_FRAME_BYTES;
    }
    assert_eq!(frame_of(len), MAX_FRAME_BYTES);
    assert_eq!(
        rpc.call(&fetch(&"x".repeat(len)), Duration::from_secs(30))
            .await,
        Ok(Response::Error(format!("key of {len} bytes")))
    );
    shutdown.cancel();
}

/// A client that has never connected has lost no connection: the
/// coordinator reconnects first (before each request) only to peers whose
/// connection was lost.
#[tokio::test]
async fn a_client_that_never_connected_has_lost_no_connection() {
    let (addr, shutdown) = server(rpc::ServerLimits::default()).await;
    let rpc = RpcClient::new(addr);
    assert!(!rpc.lost_connection());
    assert_eq!(
        rpc.call(&Request::Ping, PROMPTLY).await,
        Ok(Response::Pong { node: 7 })
    );
    assert!(!rpc.lost_connection());
    shutdown.cancel();
}

/// A request held back by its connection's in-flight limit is not idle
/// time: the connection is not closed while it waits for its turn, even
/// past the idle timeout, and both requests are answered.
#[tokio::test]
async fn a_connection_held_back_at_its_limit_is_not_idle() {
    let idle = Duration::from_secs(1);
    let (addr, shutdown) = server(rpc::ServerLimits {
        max_in_flight_per_connection: 1,
        idle_timeout: idle,
        ..Default::default()
    })
    .await;
    // The ping waits behind the late fetch for four idle periods, and is
    // answered at once when its turn comes.
    assert!(LATE >= idle * 4);
    let rpc = Arc::new(RpcClient::new(addr));
    let late_rpc = rpc.clone();
    let late = tokio::spawn(async move { late_rpc.call(&fetch("late"), LATE * 4).await });
    // the late fetch is being handled before the ping is sent
    let started = tokio::time::Instant::now();
    while LATE_BEGUN.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < PROMPTLY, "the late fetch never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ping = rpc.call(&Request::Ping, LATE * 4).await;
    assert_eq!(ping, Ok(Response::Pong { node: 7 }));
    assert_eq!(late.await.unwrap(), Ok(Response::Pong { node: 7 }));
    shutdown.cancel();
}

/// Only a connection's first frame can be a cluster handshake: a later
/// one reads as a frame of another protocol version, and the peer is
/// told so, not that the node has no cluster secret.
#[tokio::test]
async fn a_handshake_after_the_first_frame_is_refused_as_another_protocol() {
    let (addr, shutdown) = server(rpc::ServerLimits::default()).await;
    let mut framed = Framed::new(
        TcpStream::connect(addr).await.unwrap(),
        ChannelCodec::new(MAX_FRAME_BYTES),
    );
    let ping = codec::encode_into(&(1u64, Request::Ping), codec::frame_header(16)).unwrap();
    framed.send(ping.into()).await.unwrap();
    let answer = tokio::time::timeout(PROMPTLY, framed.next())
        .await
        .expect("an answer")
        .expect("a frame")
        .unwrap();
    assert_eq!(
        rpc::decode_response_frame(&answer).unwrap(),
        (1, Response::Pong { node: 7 })
    );
    let (_, hello) = secure_channel::initiate(&ClusterSecret::from_bytes([0x5e; 32]));
    framed.send(hello).await.unwrap();
    let refusal = tokio::time::timeout(PROMPTLY, framed.next())
        .await
        .expect("a refusal")
        .expect("a frame")
        .unwrap();
    let (id, Response::Error(reason)) = rpc::decode_response_frame(&refusal).unwrap() else {
        panic!("expected a refusal");
    };
    assert_eq!(id, 0);
    assert!(reason.contains("protocol version"), "{reason}");
    assert!(!reason.contains("cluster secret"), "{reason}");
    shutdown.cancel();
}

/// A client whose peer sent a frame it cannot read closes its socket (the
/// peer sees its end), though the client itself lives on.
#[tokio::test]
async fn a_client_closes_its_socket_when_its_peer_sends_an_unreadable_frame() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A peer that answers anything with a frame of garbage, then reads
    // what is left until the client closes.
    let peer = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, ChannelCodec::new(MAX_FRAME_BYTES));
        let _ = framed.next().await;
        framed
            .send(bytes::Bytes::from_static(&[0xff; 8]))
            .await
            .unwrap();
        let mut rest = Vec::new();
        framed.into_inner().read_to_end(&mut rest).await.map(|_| ())
    });
    let rpc = RpcClient::new(addr);
    let outcome = rpc.call(&Request::Ping, PROMPTLY).await;
    assert!(outcome.is_err(), "{outcome:?}");
    let ended = tokio::time::timeout(PROMPTLY, peer).await;
    assert!(
        ended
            .expect("the client left its socket open")
            .unwrap()
            .is_ok(),
        "the peer's read failed instead of ending"
    );
    drop(rpc);
}
