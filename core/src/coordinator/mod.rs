//! The coordinator, which runs on every node: any node can take a client's
//! read or write and drive it to its quorum.
//!
//! Write: mint one dot, store locally, send the resulting siblings to every
//! other replica believed alive in parallel, answer after W acks (the local
//! store is one). Read: ask R replicas (this one and R-1 peers, rotating),
//! bring in another for each that fails, and hedge to every live replica if
//! the R have not answered after `hedge_after`; answer after R replies with
//! the versions no other covers and their merged context.
mod anti_entropy;
mod handoff;

pub use anti_entropy::{AntiEntropyConfig, RoundReport};
pub use handoff::REPLAY_BATCH;

use crate::breaker::{Breaker, BreakerConfig};
use crate::context::{self, ContextSecret};
use crate::hints::HintLimits;
use crate::protocol::{
    HealthReport, OpError, ReadOk, ReadRequest, ReplicaHealth, Request, Response, WriteOk,
    WriteRequest,
};
use crate::quorum::Consistency;
use crate::replica::{KeyLimits, Refusal, Replica, ReplicaError};
use crate::rpc::{EncodedRequest, RpcClient, RpcError};
use crate::secure_channel::ClusterSecret;
use crate::stopwatch::Stopwatch;
use crate::version::{NodeId, Siblings, VersionVector};
use futures::channel::mpsc;
use futures::stream::{FuturesUnordered, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long a coordinator waits to reconnect to a peer whose connection
/// was lost before counting it alive anyway (a refusal comes at once; only
/// a silent peer takes this long, and then the request decides).
const RECONNECT_PROBE: Duration = Duration::from_millis(50);

/// What to do when a read finds replicas that answered with less than the
/// merged result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadRepair {
    Off,
    /// Push the merged siblings in the background; the read does not wait.
    Background,
    /// Push them and wait (up to the replica timeout) before answering.
    Blocking,
}

#[derive(Debug, Clone, Copy)]
pub struct CoordinatorConfig {
    /// How long the coordinator waits for replicas on each request.
    pub replica_timeout: Duration,
    pub breaker: BreakerConfig,
    pub read_repair: ReadRepair,
    /// A read asks R replicas; if they have not all answered after this
    /// long, it asks every other live replica too. `None`: never hedge
    /// (only a failed replica brings in another).
    pub hedge_after: Option<Duration>,
    /// Bounds on every key's sibling set.
    pub key_limits: KeyLimits,
    /// What context tokens are signed and checked with; every node of a
    /// cluster holds the same one. The default (all zero) is for tests;
    /// `quorumd` always sets one and the simulator draws one per seed.
    pub context_secret: ContextSecret,
    /// Hinted handoff: keep what a replica missed and replay it when it is
    /// back, within these bounds. `None`: off (only read repair and
    /// anti-entropy bring a replica up to date).
    pub hinted_handoff: Option<HintLimits>,
    /// How often held hints are offered to their replicas.
    pub hint_replay_interval: Duration,
    /// Background Merkle comparison with the peers. `None`: off.
    pub anti_entropy: Option<AntiEntropyConfig>,
    /// Background read repairs (one per replica behind) in flight at once;
    /// past it a repair is skipped and counted
    /// (`read_repairs_dropped_total`): hints and anti-entropy still bring
    /// that replica up to date, and no burst of reads can pile up tasks.
    pub max_background_repairs: usize,
    /// The secret every connection to and from the cluster's nodes must
    /// prove ([`crate::secure_channel`]). `None`: plain connections, for
    /// loopback clusters and the simulator; `quorumd` refuses to listen
    /// beyond loopback without one.
    pub cluster_secret: Option<ClusterSecret>,
}

impl CoordinatorConfig {
    pub const DEFAULT_MAX_BACKGROUND_REPAIRS: usize = 1024;
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            replica_timeout: Duration::from_millis(500),
            breaker: BreakerConfig::default(),
            read_repair: ReadRepair::Background,
            hedge_after: Some(Duration::from_millis(50)),
            key_limits: KeyLimits::default(),
            context_secret: ContextSecret::from_bytes([0; 32]),
            hinted_handoff: Some(HintLimits::default()),
            hint_replay_interval: Duration::from_secs(1),
            anti_entropy: Some(AntiEntropyConfig::default()),
            max_background_repairs: Self::DEFAULT_MAX_BACKGROUND_REPAIRS,
            cluster_secret: None,
        }
    }
}

struct Peer {
    id: NodeId,
    client: RpcClient,
    breaker: Mutex<Breaker>,
}

impl Peer {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allows(&self, now: Instant) -> bool {
        self.breaker().allows(now)
    }

    /// One call, with its outcome fed to the breaker. A peer that refuses
    /// the connection is down: its breaker opens at once, so the next
    /// request that needs it is refused before anything is sent.
    async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, CallFailure> {
        let outcome = self.client.call(request, timeout).await;
        self.judge(outcome)
    }

    /// [`Peer::call`] with a request encoded once for several peers.
    async fn call_encoded(
        &self,
        request: &EncodedRequest,
        timeout: Duration,
    ) -> Result<Response, CallFailure> {
        let outcome = self.client.call_encoded(request, timeout).await;
        self.judge(outcome)
    }

    /// A call's outcome, fed to the breaker.
    fn judge(&self, outcome: Result<Response, RpcError>) -> Result<Response, CallFailure> {
        match outcome {
            Ok(Response::Error(e)) => {
                tracing::debug!(peer = self.id, "replica error: {e}");
                self.breaker().record_failure(Instant::now());
                Err(CallFailure::Failed)
            }
            Ok(response) => {
                self.breaker().record_success();
                Ok(response)
            }
            Err(e @ RpcError::TooLarge { .. }) => {
                // Nothing was sent, and the replica is not to blame.
                tracing::warn!(peer = self.id, "{e}");
                Err(CallFailure::Failed)
            }
            // Refused: it turned the connection away before handling
            // anything (it holds another cluster secret, or none) — a
            // misconfiguration, down as far as this cluster is concerned.
            Err(e @ (RpcError::Connect { refused: true, .. } | RpcError::Refused { .. })) => {
                if matches!(e, RpcError::Refused { .. }) {
                    tracing::warn!(peer = self.id, "{e}");
                } else {
                    tracing::debug!(peer = self.id, "unreachable: {e}");
                }
                self.breaker().trip(Instant::now());
                Err(CallFailure::Unreachable)
            }
            Err(e) => {
                tracing::debug!(peer = self.id, "rpc failed: {e}");
                self.breaker().record_failure(Instant::now());
                Err(CallFailure::Failed)
            }
        }
    }
}

/// Why a call to a peer got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallFailure {
    /// The connection could not be made: nothing reached the peer.
    Unreachable,
    /// Sent (or sending failed midway), and no answer came back in time.
    Failed,
}

/// What [`Coordinator::gather`] heard.
#[derive(Default)]
struct Gathered {
    accepted: Vec<(Arc<Peer>, Response)>,
    /// Replicas that answered `Refused`.
    refused: Vec<Refusal>,
    /// Replicas that could not be reached at all.
    unreachable: usize,
    /// Replicas whose call failed (unreachable, timed out, an error).
    failed: Vec<NodeId>,
    /// Calls still in flight when `gather` returned, to follow up on
    /// (hinted handoff learns which replicas missed a write from them).
    pending: Option<Pending>,
}

/// A call to one peer, and what it answered.
type Call = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;
type Answer = (Arc<Peer>, Result<Response, CallFailure>);
type Calls = FuturesUnordered<Call>;

/// Calls [`Coordinator::gather`] left running: their answers keep arriving
/// on `answers`.
struct Pending {
    answers: mpsc::UnboundedReceiver<Answer>,
    in_flight: usize,
    /// Peers that were never asked (the call ended before their turn).
    never_asked: Vec<Arc<Peer>>,
}

impl Pending {
    /// Run the calls still in flight to their end on one task, whether or
    /// not anyone reads their answers: each outcome feeds its peer's
    /// breaker, and a write that timed out here may still land. None when
    /// nothing is left to follow up (no call in flight, every peer asked),
    /// as for most reads: no channel is made for them.
    fn keep_running(mut calls: Calls, never_asked: Vec<Arc<Peer>>) -> Option<Self> {
        let in_flight = calls.len();
        if in_flight == 0 && never_asked.is_empty() {
            return None;
        }
        // Unbounded, though it never holds more than `in_flight`: tokio's
        // channels allocate room for 32 answers (6 KiB) up front, and this
        // one is made for every write and for most reads.
        let (tx, answers) = mpsc::unbounded();
        if in_flight > 0 {
            tokio::spawn(async move {
                while let Some(answer) = calls.next().await {
                    // Gone when nobody follows up (reads): the calls still
                    // run to their end for the breakers' sake.
                    let _ = tx.unbounded_send(answer);
                }
            });
        }
        Some(Pending {
            answers,
            in_flight,
            never_asked,
        })
    }
}

pub struct Coordinator {
    replica: Replica,
    peers: Vec<Arc<Peer>>,
    config: CoordinatorConfig,
    /// Rotates the replicas reads start with.
    next_read: AtomicUsize,
    /// Rotates the peer each anti-entropy round compares with.
    next_anti_entropy: AtomicUsize,
    /// When each peer last fully agreed with this replica.
    last_agreement: Mutex<std::collections::BTreeMap<NodeId, Instant>>,
    /// Slots for background read repairs (`max_background_repairs`).
    background_repairs: Arc<tokio::sync::Semaphore>,
}

impl Coordinator {
    /// `peers` are the other replicas (not this node); the replica is
    /// built with `config.key_limits`.
    pub fn new(
        replica: Replica,
        peers: Vec<(NodeId, SocketAddr)>,
        config: CoordinatorConfig,
    ) -> Self {
        let mut peers: Vec<Arc<Peer>> = peers
            .into_iter()
            .filter(|(id, _)| *id != replica.id())
            .map(|(id, addr)| {
                Arc::new(Peer {
                    id,
                    client: RpcClient::secured(addr, config.cluster_secret),
                    breaker: Mutex::new(Breaker::new(config.breaker)),
                })
            })
            .collect();
        peers.sort_by_key(|p| p.id);
        let replica = replica.with_replicas(peers.len() + 1);
        Self {
            replica,
            peers,
            next_read: AtomicUsize::new(0),
            next_anti_entropy: AtomicUsize::new(0),
            last_agreement: Mutex::default(),
            background_repairs: Arc::new(tokio::sync::Semaphore::new(
                config.max_background_repairs.max(1),
            )),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.replica.id()
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Replication factor: this node plus its peers.
    pub fn n(&self) -> usize {
        self.peers.len() + 1
    }

    /// The peers believed alive. A peer whose connection was lost since
    /// it last answered (its process died, say) is reconnected to first:
    /// if it refuses, it is down at once (its breaker opens), so a level
    /// that needs it is refused before anything is sent rather than timing
    /// out. A peer that does not answer the reconnect in time is left to
    /// the request itself.
    async fn live_peers(&self) -> Vec<Arc<Peer>> {
        let allowed = |now: Instant| -> Vec<Arc<Peer>> {
            self.peers
                .iter()
                .filter(|p| p.allows(now))
                .cloned()
                .collect()
        };
        let peers = allowed(Instant::now());
        let lost: Vec<&Arc<Peer>> = peers
            .iter()
            .filter(|p| p.client.lost_connection())
            .collect();
        if lost.is_empty() {
            return peers;
        }
        let probe = self.config.replica_timeout.min(RECONNECT_PROBE);
        let probes = lost.iter().map(|peer| async move {
            if let Err(e @ (RpcError::Connect { refused: true, .. } | RpcError::Refused { .. })) =
                peer.client.connect(probe).await
            {
                tracing::debug!(peer = peer.id, "down: {e}");
                peer.breaker().trip(Instant::now());
            }
        });
        futures::future::join_all(probes).await;
        allowed(Instant::now())
    }

    fn needed(&self, level: Consistency, what: &'static str) -> Result<usize, OpError> {
        level
            .validate(self.n(), what)
            .map_err(|e| OpError::Invalid(e.to_string()))
    }

    fn check_key(key: &str) -> Result<(), OpError> {
        crate::input::check_key(key).map_err(|e| OpError::Invalid(e.to_string()))
    }

    pub async fn write(&self, request: WriteRequest) -> Result<WriteOk, OpError> {
        let started = Stopwatch::start();
        let level = request.level;
        let result = self.write_inner(request).await;
        record_outcome("write", level, &result, started);
        result
    }

    async fn write_inner(&self, request: WriteRequest) -> Result<WriteOk, OpError> {
        Self::check_key(&request.key)?;
        crate::input::check_value(&request.value).map_err(|e| OpError::Invalid(e.to_string()))?;
        let context = self.open_context(&request.key, request.context.as_deref())?;
        let n = self.n();
        let needed = self.needed(request.level, "W")?;
        let peers = self.live_peers().await;
        let alive = peers.len() + 1;
        if alive < needed {
            return Err(OpError::Unavailable { needed, alive, n });
        }
        let (version, siblings) = self
            .replica
            .write_local(&request.key, &context, request.value, request.overwrite)
            .await
            .map_err(|e| match e {
                ReplicaError::Refused(refusal) => OpError::Refused(refusal),
                ReplicaError::Store(e) => OpError::Storage(e.to_string()),
                ReplicaError::BadContext(reason) => OpError::Invalid(reason),
            })?;
        if siblings.len() > 1 {
            metrics::counter!("version_vector_conflicts").increment(1);
        }
        // The token covers the coordinator's whole sibling set, which holds
        // every earlier dot it minted for this key (or what superseded it):
        // a causally closed context, like a read's.
        let known = siblings.context();
        let token = context::encode(&self.config.context_secret, &request.key, &known);
        let after = siblings.versions().to_vec();
        let apply = Arc::new(EncodedRequest::new(Request::Apply {
            key: request.key,
            siblings,
        }));
        let mut gathered = self
            .gather(&peers, apply.clone(), needed - 1, peers.len(), |r| {
                matches!(r, Response::Applied)
            })
            .await;
        let acked = 1 + gathered.accepted.len();
        self.hint_misses(apply, &peers, &mut gathered);
        if acked >= needed {
            Ok(WriteOk {
                version,
                siblings: after,
                context: known,
                token,
                coordinator: self.id(),
                needed,
                acked,
                n,
            })
        } else if let Some(reason) = gathered.refused.first() {
            Err(OpError::RefusedByReplicas {
                needed,
                acked,
                refused: gathered.refused.len(),
                n,
                reason: reason.clone(),
            })
        } else {
            Err(OpError::Timeout {
                needed,
                answered: acked,
                n,
                unreachable: gathered.unreachable,
            })
        }
    }

    /// The context a write's token carries: only a token this cluster
    /// signed for this key (see [`crate::context`]) is taken, so a write
    /// can supersede only versions some read or write of this key returned,
    /// whoever sends it and over whichever path. What the token names is
    /// checked again against the local copy as the write is stored
    /// ([`crate::replica::check_context`]).
    fn open_context(&self, key: &str, token: Option<&str>) -> Result<VersionVector, OpError> {
        match token {
            None | Some("") => Ok(VersionVector::new()),
            Some(token) => context::decode(&self.config.context_secret, key, token).map_err(|e| {
                metrics::counter!("context_rejections_total").increment(1);
                OpError::Invalid(e.to_string())
            }),
        }
    }

    pub async fn read(&self, request: ReadRequest) -> Result<ReadOk, OpError> {
        let started = Stopwatch::start();
        let level = request.level;
        let result = self.read_inner(request).await;
        record_outcome("read", level, &result, started);
        result
    }

    async fn read_inner(&self, request: ReadRequest) -> Result<ReadOk, OpError> {
        Self::check_key(&request.key)?;
        let n = self.n();
        let needed = self.needed(request.level, "R")?;
        let peers = self.live_peers().await;
        let alive = peers.len() + 1;
        if alive < needed {
            return Err(OpError::Unavailable { needed, alive, n });
        }
        let local = self
            .replica
            .fetch(&request.key)
            .await
            .map_err(|e| OpError::Storage(e.to_string()))?;
        let fetch = Arc::new(EncodedRequest::new(Request::Fetch {
            key: request.key.clone(),
        }));
        // Ask R-1 peers besides ourselves; others only if one fails or the
        // hedge delay passes.
        let peers = self.read_order(peers);
        let remote = self
            .gather(&peers, fetch, needed - 1, needed - 1, |r| {
                matches!(r, Response::Siblings(_))
            })
            .await;
        let replied = 1 + remote.accepted.len();
        if replied < needed {
            return Err(OpError::Timeout {
                needed,
                answered: replied,
                n,
                unreachable: remote.unreachable,
            });
        }
        let mut merged = local.clone();
        let mut answers = vec![(None, local)];
        let mut conflicted = false;
        for (peer, response) in remote.accepted {
            if let Response::Siblings(set) = response {
                if let Err(e) = merged.sync(&set) {
                    // Two replicas hold one dot with different contents:
                    // answer with what merges, never spread either copy.
                    metrics::counter!("replica_refusals_total", "reason" => "version").increment(1);
                    tracing::error!(key = request.key, peer = peer.id, "replicas disagree: {e}");
                    conflicted = true;
                }
                answers.push((Some(peer), set));
            }
        }
        if merged.len() > 1 {
            metrics::counter!("version_vector_conflicts").increment(1);
        }
        if !conflicted {
            self.repair(&request.key, &merged, answers).await;
        }
        let context = merged.context();
        Ok(ReadOk {
            token: context::encode(&self.config.context_secret, &request.key, &context),
            context,
            siblings: merged.into_versions(),
            coordinator: self.id(),
            needed,
            replied,
            n,
        })
    }

    /// Push `merged` to every replica whose answer lacked part of it.
    async fn repair(
        &self,
        key: &str,
        merged: &Siblings,
        answers: Vec<(Option<Arc<Peer>>, Siblings)>,
    ) {
        if self.config.read_repair == ReadRepair::Off {
            return;
        }
        if self.config.read_repair == ReadRepair::Background
            && crate::buggify::fires(crate::buggify::FaultPoint::DropReadRepair)
        {
            // Best effort by definition: hints and anti-entropy must
            // cover for a repair that never went out.
            return;
        }
        let behind: Vec<Option<Arc<Peer>>> = answers
            .into_iter()
            .filter(|(_, set)| merged.versions().iter().any(|v| !set.covers(v.dot)))
            .map(|(peer, _)| peer)
            .collect();
        if behind.is_empty() {
            return;
        }
        metrics::counter!("read_repairs").increment(behind.len() as u64);
        let request = Arc::new(EncodedRequest::new(Request::Apply {
            key: key.to_string(),
            siblings: merged.clone(),
        }));
        let mut tasks = Vec::new();
        let background = self.config.read_repair == ReadRepair::Background;
        for peer in behind {
            // A blocking repair is bounded by the read that waits for it; a
            // background one holds a slot until it is done.
            let slot = if background {
                match self.background_repairs.clone().try_acquire_owned() {
                    Ok(slot) => Some(slot),
                    Err(_) => {
                        metrics::counter!("read_repairs_dropped_total").increment(1);
                        continue;
                    }
                }
            } else {
                None
            };
            let request = request.clone();
            let replica = self.replica.clone();
            let timeout = self.config.replica_timeout;
            // Boxed once, as in `gather`.
            tasks.push(tokio::spawn(Box::pin(async move {
                let _slot = slot;
                match (peer, request.request()) {
                    (Some(peer), _) => {
                        let _ = peer.call_encoded(&request, timeout).await;
                    }
                    (None, Request::Apply { key, siblings }) => {
                        let _ = replica.apply(key, siblings).await;
                    }
                    (None, _) => {}
                }
            })));
        }
        if self.config.read_repair == ReadRepair::Blocking {
            for task in tasks {
                let _ = task.await;
            }
        }
    }

    /// Send `request` to the first `initial` of `peers` (in preference
    /// order) and return the first `wanted` accepted answers, or fewer if
    /// the replica timeout passes first. Each failed call brings in the next
    /// peer at once, and when `hedge_after` passes without enough answers
    /// every remaining peer is asked too (a hedged request). Calls still in
    /// flight keep going in the background: a write that timed out here may
    /// still land on them.
    async fn gather(
        &self,
        peers: &[Arc<Peer>],
        request: Arc<EncodedRequest>,
        wanted: usize,
        initial: usize,
        accept: fn(&Response) -> bool,
    ) -> Gathered {
        let mut gathered = Gathered {
            // At most `wanted` (a gather stops there): room for them at once
            // rather than growing the vector answer by answer.
            accepted: Vec::with_capacity(wanted.min(peers.len())),
            ..Gathered::default()
        };
        let timeout = self.config.replica_timeout;
        // The calls run inside this future rather than on a task each: a
        // task per call, and a queue between it and here, cost more than
        // the rest of a call's bookkeeping.
        let mut calls: Calls = FuturesUnordered::new();
        let mut next = 0;
        let launch = |count: usize, next: &mut usize, calls: &mut Calls| {
            for _ in 0..count {
                let Some(peer) = peers.get(*next).cloned() else {
                    return;
                };
                *next += 1;
                let request = request.clone();
                calls.push(Box::pin(async move {
                    let response = peer.call_encoded(&request, timeout).await;
                    (peer, response)
                }));
            }
        };
        launch(initial, &mut next, &mut calls);
        if wanted > 0 {
            let started = Instant::now();
            let deadline = started + timeout;
            let mut hedge_at = self.config.hedge_after.map(|d| started + d);
            let wake_at = |hedge_at: Option<Instant>, next: usize| match hedge_at {
                Some(at) if next < peers.len() => at.min(deadline),
                _ => deadline,
            };
            // One timer for the whole gather, moved when the hedge is spent,
            // not one per answer.
            let wake = tokio::time::sleep_until(wake_at(hedge_at, next));
            tokio::pin!(wake);
            while !calls.is_empty() || next < peers.len() {
                let at = wake_at(hedge_at, next);
                if wake.deadline() != at {
                    wake.as_mut().reset(at);
                }
                let answer = tokio::select! {
                    // Answers first, as when the timer and an answer are
                    // both ready; a fixed order keeps random choice out of
                    // the simulation.
                    biased;
                    Some(answer) = calls.next(), if !calls.is_empty() => Some(answer),
                    () = &mut wake => None,
                };
                match answer {
                    Some((peer, Ok(response))) if accept(&response) => {
                        gathered.accepted.push((peer, response));
                        if gathered.accepted.len() >= wanted {
                            break;
                        }
                    }
                    Some((peer, outcome)) => {
                        match outcome {
                            Ok(Response::Refused(refusal)) => gathered.refused.push(refusal),
                            Err(CallFailure::Unreachable) => {
                                gathered.unreachable += 1;
                                gathered.failed.push(peer.id);
                            }
                            _ => gathered.failed.push(peer.id),
                        }
                        launch(1, &mut next, &mut calls);
                    }
                    None if Instant::now() >= deadline => break,
                    None => {
                        // hedge: ask everyone not asked yet
                        hedge_at = None;
                        metrics::counter!("hedged_requests").increment(1);
                        launch(peers.len(), &mut next, &mut calls);
                    }
                }
            }
        }
        gathered.pending = Pending::keep_running(calls, peers[next..].to_vec());
        gathered
    }

    /// Peers in the order a read should ask them: rotated per request so
    /// reads spread over the replicas.
    fn read_order(&self, mut peers: Vec<Arc<Peer>>) -> Vec<Arc<Peer>> {
        if !peers.is_empty() {
            let start = self.next_read.fetch_add(1, Ordering::Relaxed) % peers.len();
            peers.rotate_left(start);
        }
        peers
    }

    /// The node's background work, until the task is dropped: replaying
    /// hints to replicas that are back, and anti-entropy rounds.
    pub async fn maintain(&self) {
        use tokio::time::MissedTickBehavior;
        let mut hints = tokio::time::interval(self.config.hint_replay_interval);
        hints.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ae_interval = self
            .config
            .anti_entropy
            .map_or(Duration::from_secs(3600), |c| c.interval);
        let mut rounds = tokio::time::interval(ae_interval);
        rounds.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Polled in order, not at random: the simulator replays
                // only what it can decide from the seed.
                biased;
                _ = hints.tick() => self.replay_hints().await,
                _ = rounds.tick() => {
                    self.anti_entropy_round().await;
                    for (peer, age) in self.agreement_ages() {
                        // Never agreed since start: as old as this node's uptime is unknown; -1.
                        let seconds = age.map_or(-1.0, |a| a.as_secs_f64());
                        metrics::gauge!("anti_entropy_agreement_age_seconds", "peer" => peer.to_string())
                            .set(seconds);
                    }
                }
            }
        }
    }

    pub fn health(&self) -> HealthReport {
        let now = Instant::now();
        HealthReport {
            agreement_age_ms: self
                .agreement_ages()
                .into_iter()
                .map(|(peer, age)| {
                    (
                        peer,
                        age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                    )
                })
                .collect(),
            node: self.id(),
            incarnation: self.replica.actor().incarnation,
            n: self.n(),
            replicas: self
                .peers
                .iter()
                .map(|p| {
                    let breaker = p.breaker();
                    ReplicaHealth {
                        node: p.id,
                        breaker: breaker.state(now),
                        consecutive_failures: breaker.consecutive_failures(),
                    }
                })
                .collect(),
        }
    }
}

fn record_outcome<T>(
    op: &'static str,
    level: Consistency,
    result: &Result<T, OpError>,
    started: Stopwatch,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(OpError::Unavailable { .. }) => "unavailable",
        Err(OpError::Timeout { .. }) => "timeout",
        Err(OpError::Invalid(_)) => "invalid",
        Err(OpError::Storage(_)) => "storage_error",
        Err(OpError::Refused(_)) => "refused",
        Err(OpError::RefusedByReplicas { .. }) => "refused_by_replicas",
    };
    // A named level's label is its static name: nothing formatted or
    // allocated per request.
    let level: metrics::SharedString = match level.name() {
        Some(name) => name.into(),
        None => level.to_string().into(),
    };
    metrics::counter!("quorum_requests_total", "op" => op, "level" => level.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("quorum_request_seconds", "op" => op, "level" => level, "outcome" => outcome)
        .record(started.seconds());
}
