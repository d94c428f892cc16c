//! The coordinator and the client over fake replicas on loopback TCP:
//! which replicas a request asks, how many calls it makes, what it
//! answers, and which hints it keeps. Each fake answers at once (or never,
//! or with an error or a refusal) and logs what it was sent; the tests
//! assert those logs and the answers, never how long anything took. The
//! simulator's guarantees cannot see most of this: an extra call, a hint
//! not kept, a replica never repaired cost time or calls, and the others
//! cover for them.
#![cfg(not(madsim))]

use async_trait::async_trait;
use quorumlog_core::protocol::{BreakerState, Request, Response};
use quorumlog_core::replica::{Refusal, Replica};
use quorumlog_core::rpc::{self, CancellationToken, Handler};
use quorumlog_core::{
    Actor, Client, ClientError, Consistency, Coordinator, CoordinatorConfig, HintLimits,
    MemoryStore, NodeId, OpError, ReadRepair, ReadRequest, Siblings, Store, VersionVector,
    WriteRequest,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How a fake replica answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// `Fetch` with what it holds, `Apply` by merging and `Applied`.
    Answers,
    /// Takes every request and answers none.
    Silent,
    /// Answers every request with an error.
    Fails,
    /// Answers `Apply` with a refusal (a key limit), `Fetch` as `Answers`.
    Refuses,
}

/// What a fake replica was sent, and what it holds.
struct FakeReplica {
    behaviour: Behaviour,
    held: Mutex<Siblings>,
    log: Mutex<Vec<&'static str>>,
}

#[async_trait]
impl Handler for FakeReplica {
    async fn handle(&self, request: Request) -> Response {
        let kind = match &request {
            Request::Apply { .. } => "apply",
            Request::Fetch { .. } => "fetch",
            _ => "other",
        };
        self.log.lock().unwrap().push(kind);
        match (self.behaviour, request) {
            (Behaviour::Silent, _) => std::future::pending().await,
            (Behaviour::Fails, _) => Response::Error("disk on fire".into()),
            (Behaviour::Refuses, Request::Apply { key, .. }) => {
                Response::Refused(Refusal::TooManySiblings {
                    key,
                    siblings: 2,
                    limit: 1,
                })
            }
            (_, Request::Apply { siblings, .. }) => {
                self.held.lock().unwrap().sync(&siblings).unwrap();
                Response::Applied
            }
            (_, Request::Fetch { .. }) => Response::Siblings(self.held.lock().unwrap().clone()),
            (_, other) => Response::Error(format!("unexpected {other:?}")),
        }
    }
}

/// A fake replica serving on loopback until dropped.
struct Fake {
    addr: SocketAddr,
    replica: Arc<FakeReplica>,
    shutdown: CancellationToken,
}

impl Fake {
    async fn start(behaviour: Behaviour) -> Self {
        Self::holding(behaviour, Siblings::new()).await
    }

    async fn holding(behaviour: Behaviour, held: Siblings) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let replica = Arc::new(FakeReplica {
            behaviour,
            held: Mutex::new(held),
            log: Mutex::default(),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(rpc::serve(listener, replica.clone(), shutdown.clone()));
        Fake {
            addr,
            replica,
            shutdown,
        }
    }

    /// How many requests of `kind` ("apply", "fetch") it was sent.
    fn sent(&self, kind: &str) -> usize {
        self.replica
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == kind)
            .count()
    }

    fn held(&self) -> Siblings {
        self.replica.held.lock().unwrap().clone()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An address nothing listens on: a connection to it is refused.
async fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// No hedging, read repair, hints or anti-entropy unless a test turns one
/// on; a replica timeout long enough that only a silent fake reaches it.
fn quiet() -> CoordinatorConfig {
    CoordinatorConfig {
        replica_timeout: Duration::from_secs(2),
        hedge_after: None,
        read_repair: ReadRepair::Off,
        hinted_handoff: None,
        anti_entropy: None,
        ..CoordinatorConfig::default()
    }
}

/// Node 1, coordinating over `peers` (nodes 2, 3, … in that order).
fn coordinator(
    store: Arc<MemoryStore>,
    peers: &[SocketAddr],
    config: CoordinatorConfig,
) -> Coordinator {
    let replica = Replica::new(Actor::new(1, 0), store, config.key_limits);
    let peers = peers
        .iter()
        .enumerate()
        .map(|(i, addr)| (i as NodeId + 2, *addr))
        .collect();
    Coordinator::new(replica, peers, config)
}

fn addrs<'a>(fakes: impl IntoIterator<Item = &'a Fake>) -> Vec<SocketAddr> {
    fakes.into_iter().map(|f| f.addr).collect()
}

/// `n` fakes that answer every request.
async fn answering(n: usize) -> Vec<Fake> {
    let mut fakes = Vec::with_capacity(n);
    for _ in 0..n {
        fakes.push(Fake::start(Behaviour::Answers).await);
    }
    fakes
}

fn write(level: Consistency) -> WriteRequest {
    WriteRequest {
        key: "k".into(),
        value: "v".into(),
        context: None,
        level,
        overwrite: false,
    }
}

fn read(level: Consistency) -> ReadRequest {
    ReadRequest {
        key: "k".into(),
        level,
    }
}

/// One version of key "k", minted by node 9.
fn version(value: &str) -> Siblings {
    let mut set = Siblings::new();
    let v = set
        .mint(Actor::new(9, 0), &VersionVector::new(), value.into(), 0)
        .unwrap();
    set.sync_one(v).unwrap();
    set
}

/// Waits (a bounded while) until `done` holds; whether it did.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    done()
}

/// Lets calls left running in the background reach their replicas.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Hints `store` holds for `target`.
async fn hints_for(store: &MemoryStore, target: NodeId) -> usize {
    store
        .hint_backlog()
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| *t == target)
        .map_or(0, |(_, b)| b.count)
}

async fn hint_eventually(store: &MemoryStore, target: NodeId) -> bool {
    for _ in 0..100 {
        if hints_for(store, target).await > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    false
}

fn breaker_of(coordinator: &Coordinator, node: NodeId) -> (BreakerState, u32) {
    let now = coordinator.health();
    let peer = now.replicas.iter().find(|r| r.node == node).unwrap();
    (peer.breaker, peer.consecutive_failures)
}

#[tokio::test]
async fn a_write_is_sent_to_every_live_replica_whatever_its_level() {
    let fakes = answering(3).await;
    let c = coordinator(Arc::new(MemoryStore::new()), &addrs(&fakes), quiet());
    let ok = c
        .write(write(Consistency::One))
        .await
        .expect("write at ONE");
    assert_eq!(ok.acked, 1);
    // No hints: only the write's own calls can bring the others the version.
    assert!(
        eventually(|| fakes.iter().all(|f| f.held().len() == 1)).await,
        "replicas never sent the write: {:?}",
        fakes.iter().map(|f| f.sent("apply")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_write_answers_as_soon_as_its_level_is_met() {
    let fakes = answering(4).await;
    let c = coordinator(Arc::new(MemoryStore::new()), &addrs(&fakes), quiet());
    for (level, acked) in [
        (Consistency::One, 1),
        (Consistency::Quorum, 3),
        (Consistency::Count(2), 2),
        (Consistency::All, 5),
    ] {
        let ok = c.write(write(level)).await.expect("every replica answers");
        assert_eq!(
            (ok.needed, ok.acked),
            (acked, acked),
            "a write at {level} waited for more acknowledgements than it needs"
        );
    }
}

#[tokio::test]
async fn a_read_asks_only_as_many_replicas_as_its_level_needs() {
    let fakes = answering(4).await;
    let c = coordinator(Arc::new(MemoryStore::new()), &addrs(&fakes), quiet());
    let ok = c.read(read(Consistency::Quorum)).await.expect("read");
    assert_eq!((ok.needed, ok.replied), (3, 3));
    settle().await;
    let fetched: usize = fakes.iter().map(|f| f.sent("fetch")).sum();
    assert_eq!(fetched, 2, "a read at QUORUM of five asks two peers");
    c.read(read(Consistency::One)).await.expect("read");
    settle().await;
    let fetched: usize = fakes.iter().map(|f| f.sent("fetch")).sum();
    assert_eq!(fetched, 2, "a read at ONE asks no peer");
}

#[tokio::test]
async fn reads_spread_over_the_replicas() {
    let fakes = answering(2).await;
    let c = coordinator(Arc::new(MemoryStore::new()), &addrs(&fakes), quiet());
    for _ in 0..4 {
        c.read(read(Consistency::Quorum)).await.expect("read");
    }
    settle().await;
    assert_eq!(
        fakes.iter().map(|f| f.sent("fetch")).collect::<Vec<_>>(),
        [2, 2],
        "four reads at QUORUM of three ask each peer twice"
    );
}

#[tokio::test]
async fn a_read_repairs_the_coordinators_own_replica_when_it_is_behind() {
    let fakes = [
        Fake::holding(Behaviour::Answers, version("v")).await,
        Fake::holding(Behaviour::Answers, version("v")).await,
    ];
    let store = Arc::new(MemoryStore::new());
    let c = coordinator(
        store.clone(),
        &addrs(&fakes),
        CoordinatorConfig {
            read_repair: ReadRepair::Blocking,
            ..quiet()
        },
    );
    let ok = c.read(read(Consistency::All)).await.expect("read");
    assert_eq!(ok.siblings.len(), 1);
    assert_eq!(
        store.get("k").await.unwrap(),
        version("v"),
        "the coordinator's replica, behind, was not repaired"
    );
    assert_eq!(fakes[0].sent("apply") + fakes[1].sent("apply"), 0);
}

#[tokio::test]
async fn a_blocking_read_repair_is_done_before_the_read_answers() {
    let behind = Fake::start(Behaviour::Answers).await;
    let store = Arc::new(MemoryStore::new());
    store
        .update("k", &mut |s| {
            *s = version("v");
            true
        })
        .await
        .unwrap();
    let c = coordinator(
        store,
        &[behind.addr],
        CoordinatorConfig {
            read_repair: ReadRepair::Blocking,
            ..quiet()
        },
    );
    c.read(read(Consistency::All)).await.expect("read");
    // Checked before the test awaits anything else: a repair left to
    // the background has not run yet.
    assert_eq!(
        behind.held(),
        version("v"),
        "a blocking read answered before its repair was done"
    );
}

#[tokio::test]
async fn background_repairs_take_as_many_slots_as_configured() {
    let behind = [
        Fake::start(Behaviour::Answers).await,
        Fake::start(Behaviour::Answers).await,
    ];
    let store = Arc::new(MemoryStore::new());
    store
        .update("k", &mut |s| {
            *s = version("v");
            true
        })
        .await
        .unwrap();
    let c = coordinator(
        store,
        &addrs(&behind),
        CoordinatorConfig {
            read_repair: ReadRepair::Background,
            max_background_repairs: 2,
            ..quiet()
        },
    );
    c.read(read(Consistency::All)).await.expect("read");
    assert!(
        eventually(|| behind.iter().all(|f| f.held() == version("v"))).await,
        "two slots, two replicas behind: both are repaired; applies sent {:?}",
        behind.iter().map(|f| f.sent("apply")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_replica_that_answers_errors_is_left_alone_after_the_threshold() {
    let failing = Fake::start(Behaviour::Fails).await;
    let c = coordinator(Arc::new(MemoryStore::new()), &[failing.addr], quiet());
    for _ in 0..3 {
        let out = c.read(read(Consistency::All)).await;
        assert!(matches!(out, Err(OpError::Timeout { answered: 1, .. })));
    }
    assert_eq!(breaker_of(&c, 2), (BreakerState::Open, 3));
    let out = c.read(read(Consistency::All)).await;
    assert!(
        matches!(out, Err(OpError::Unavailable { alive: 1, .. })),
        "three errors in a row open the breaker: {out:?}"
    );
    assert_eq!(failing.sent("fetch"), 3);
}

#[tokio::test]
async fn a_replica_that_refuses_the_connection_is_down_at_once() {
    let c = coordinator(
        Arc::new(MemoryStore::new()),
        &[refusing_addr().await],
        quiet(),
    );
    let out = c.read(read(Consistency::All)).await;
    assert!(
        matches!(
            out,
            Err(OpError::Timeout {
                answered: 1,
                unreachable: 1,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(breaker_of(&c, 2).0, BreakerState::Open);
    let out = c.read(read(Consistency::All)).await;
    assert!(
        matches!(out, Err(OpError::Unavailable { .. })),
        "a refused connection opens the breaker at once: {out:?}"
    );
}

#[tokio::test]
async fn a_replica_that_refuses_the_connection_gets_a_hint() {
    let store = Arc::new(MemoryStore::new());
    let c = coordinator(
        store.clone(),
        &[refusing_addr().await],
        CoordinatorConfig {
            hinted_handoff: Some(HintLimits::default()),
            ..quiet()
        },
    );
    let out = c.write(write(Consistency::All)).await;
    assert!(
        matches!(out, Err(OpError::Timeout { unreachable: 1, .. })),
        "{out:?}"
    );
    assert!(
        hint_eventually(&store, 2).await,
        "no hint for a replica the write could not reach"
    );
}

#[tokio::test]
async fn a_write_replicas_refuse_is_answered_refused() {
    let refusing = Fake::start(Behaviour::Refuses).await;
    let c = coordinator(Arc::new(MemoryStore::new()), &[refusing.addr], quiet());
    let out = c.write(write(Consistency::All)).await;
    assert!(
        matches!(
            out,
            Err(OpError::RefusedByReplicas {
                acked: 1,
                refused: 1,
                ..
            })
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_replica_believed_down_gets_a_hint_for_a_write_never_sent_to_it() {
    let failing = Fake::start(Behaviour::Fails).await;
    let store = Arc::new(MemoryStore::new());
    let c = coordinator(
        store.clone(),
        &[failing.addr],
        CoordinatorConfig {
            hinted_handoff: Some(HintLimits::default()),
            ..quiet()
        },
    );
    for _ in 0..3 {
        let _ = c.read(read(Consistency::All)).await;
    }
    assert_eq!(breaker_of(&c, 2).0, BreakerState::Open);
    c.write(write(Consistency::One))
        .await
        .expect("write at ONE");
    assert!(
        hint_eventually(&store, 2).await,
        "no hint for a replica whose breaker is open"
    );
    assert_eq!(failing.sent("apply"), 0);
}

#[tokio::test]
async fn a_replica_that_misses_a_write_after_it_answered_gets_a_hint() {
    let answers = Fake::start(Behaviour::Answers).await;
    let silent = Fake::start(Behaviour::Silent).await;
    let store = Arc::new(MemoryStore::new());
    let c = coordinator(
        store.clone(),
        &[answers.addr, silent.addr],
        CoordinatorConfig {
            replica_timeout: Duration::from_millis(300),
            hinted_handoff: Some(HintLimits::default()),
            ..quiet()
        },
    );
    // At ONE the write answers with both calls in flight.
    c.write(write(Consistency::One))
        .await
        .expect("write at ONE");
    assert!(
        hint_eventually(&store, 3).await,
        "no hint for the replica whose call timed out after the write answered"
    );
    assert_eq!(
        hints_for(&store, 2).await,
        0,
        "a hint for a replica that acknowledged"
    );
}

#[tokio::test]
async fn a_replica_that_refused_a_write_gets_no_hint() {
    let refusing = Fake::start(Behaviour::Refuses).await;
    let failing = Fake::start(Behaviour::Fails).await;
    let store = Arc::new(MemoryStore::new());
    let c = coordinator(
        store.clone(),
        &[refusing.addr, failing.addr],
        CoordinatorConfig {
            hinted_handoff: Some(HintLimits::default()),
            ..quiet()
        },
    );
    c.write(write(Consistency::One))
        .await
        .expect("write at ONE");
    assert!(
        hint_eventually(&store, 3).await,
        "no hint for the replica that failed"
    );
    settle().await;
    assert_eq!(
        hints_for(&store, 2).await,
        0,
        "a hint for a replica that refused the write (it would refuse the hint)"
    );
}

/// Holds hints of `keys` keys for node 2 in `store`.
async fn hold_hints(store: &MemoryStore, keys: usize) {
    for i in 0..keys {
        store
            .put_hint(
                2,
                &format!("k{i}"),
                &version("v"),
                quorumlog_core::wall_clock::now_ms(),
                &HintLimits::default(),
            )
            .await
            .unwrap();
    }
}

fn with_hints() -> CoordinatorConfig {
    CoordinatorConfig {
        hinted_handoff: Some(HintLimits::default()),
        ..quiet()
    }
}

#[tokio::test]
async fn a_replay_stops_at_the_first_hint_its_replica_fails() {
    let failing = Fake::start(Behaviour::Fails).await;
    let store = Arc::new(MemoryStore::new());
    hold_hints(&store, 3).await;
    let c = coordinator(store.clone(), &[failing.addr], with_hints());
    c.replay_hints().await;
    assert_eq!(failing.sent("apply"), 1, "the replica is not back yet");
    assert_eq!(hints_for(&store, 2).await, 3);
}

#[tokio::test]
async fn a_hint_its_replica_refuses_is_dropped() {
    let refusing = Fake::start(Behaviour::Refuses).await;
    let store = Arc::new(MemoryStore::new());
    hold_hints(&store, 2).await;
    let c = coordinator(store.clone(), &[refusing.addr], with_hints());
    c.replay_hints().await;
    assert_eq!(refusing.sent("apply"), 2);
    assert_eq!(
        hints_for(&store, 2).await,
        0,
        "refused hints are kept, to be refused again"
    );
}

#[tokio::test]
async fn hints_are_not_replayed_to_a_replica_whose_breaker_is_open() {
    let failing = Fake::start(Behaviour::Fails).await;
    let store = Arc::new(MemoryStore::new());
    hold_hints(&store, 1).await;
    let c = coordinator(store.clone(), &[failing.addr], with_hints());
    for _ in 0..3 {
        let _ = c.read(read(Consistency::All)).await;
    }
    assert_eq!(breaker_of(&c, 2).0, BreakerState::Open);
    c.replay_hints().await;
    assert_eq!(
        failing.sent("apply"),
        0,
        "a replay sent past an open breaker"
    );
}

/// A fake coordinator: answers every read with `answer`.
struct FakeCoordinator {
    answer: Response,
}

#[async_trait]
impl Handler for FakeCoordinator {
    async fn handle(&self, _request: Request) -> Response {
        self.answer.clone()
    }
}

async fn fake_coordinator(answer: Response) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let handler = Arc::new(FakeCoordinator { answer });
    tokio::spawn(rpc::serve(listener, handler, shutdown.clone()));
    (addr, shutdown)
}

fn unavailable(alive: usize) -> OpError {
    OpError::Unavailable {
        needed: 3,
        alive,
        n: 3,
    }
}

#[tokio::test]
async fn a_client_tries_every_coordinator_before_giving_up() {
    let (third, _serving) =
        fake_coordinator(Response::read(Err(OpError::Invalid("x".into())))).await;
    let client = Client::new(
        vec![
            (1, refusing_addr().await),
            (2, refusing_addr().await),
            (3, third),
        ],
        Duration::from_secs(2),
    );
    let out = client.read(read(Consistency::One), 0).await;
    assert_eq!(
        out.map(|_| ()),
        Err(ClientError::Op {
            coordinator: 3,
            error: OpError::Invalid("x".into())
        }),
        "the last coordinator was never asked"
    );
}

#[tokio::test]
async fn a_client_that_finds_every_coordinator_unavailable_reports_the_most_alive() {
    let (first, _a) = fake_coordinator(Response::read(Err(unavailable(2)))).await;
    let (second, _b) = fake_coordinator(Response::read(Err(unavailable(1)))).await;
    let client = Client::new(vec![(1, first), (2, second)], Duration::from_secs(2));
    let out = client.read(read(Consistency::All), 0).await;
    assert_eq!(
        out.map(|_| ()),
        Err(ClientError::Op {
            coordinator: 1,
            error: unavailable(2)
        })
    );
}

#[tokio::test]
async fn a_client_starts_at_the_coordinator_it_is_given() {
    let (first, _a) = fake_coordinator(Response::read(Err(OpError::Invalid("a".into())))).await;
    let (second, _b) = fake_coordinator(Response::read(Err(OpError::Invalid("b".into())))).await;
    let client = Client::new(vec![(1, first), (2, second)], Duration::from_secs(2));
    for (start, answered) in [(0, 1), (1, 2), (2, 1), (3, 2)] {
        match client.read(read(Consistency::One), start).await {
            Err(ClientError::Op { coordinator, .. }) => assert_eq!(
                coordinator, answered,
                "a read started at coordinator {start} was answered by another"
            ),
            other => panic!("{other:?}"),
        }
    }
}
