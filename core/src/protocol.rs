//! Messages of quorumlog's internal protocol: coordinator ↔ replica, and
//! client (gateway or simulated client) → coordinator.
use crate::anti_entropy::{AeRequest, AeResponse};
use crate::quorum::Consistency;
use crate::replica::Refusal;
use crate::version::{NodeId, Siblings, Version, VersionVector};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Replica: merge these siblings into your copy of `key`.
    Apply { key: String, siblings: Siblings },
    /// Replica: send your siblings for `key`.
    Fetch { key: String },
    /// Coordinator: write a value.
    Write(WriteRequest),
    /// Coordinator: read a key.
    Read(ReadRequest),
    /// Coordinator: how do you see the other replicas?
    Health,
    /// Liveness probe.
    Ping,
    /// Anti-entropy: compare these parts of your key space with mine.
    AntiEntropy(AeRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub key: String,
    pub value: String,
    /// The context token a read (or write) of this key returned: what the
    /// client has seen. `None` (or empty) for a blind write.
    pub context: Option<String>,
    pub level: Consistency,
    /// Supersede every sibling the coordinator holds, whatever the context
    /// (last-writer-wins: a concurrent write the coordinator has not seen
    /// yet survives as a sibling, one it has seen is dropped).
    #[serde(default)]
    pub overwrite: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub key: String,
    pub level: Consistency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Applied,
    Siblings(Siblings),
    // Boxed, the three of them (built by `Response::write`, `read`,
    // `health`): a coordinated write's answer inline made every answer 176
    // bytes, each copied again at every layer it passes on its way from the
    // socket to its caller (three in five of a simulated seed's copies of
    // 128 bytes or more). The encoding is the same.
    Write(Box<Result<WriteOk, OpError>>),
    Read(Box<Result<ReadOk, OpError>>),
    Health(Box<HealthReport>),
    Pong {
        node: NodeId,
    },
    /// The replica would not store what it was sent (a key limit, or a dot
    /// it holds with other contents); it stored nothing. Not a sign of an
    /// unhealthy replica.
    Refused(Refusal),
    /// The request could not be served at all (storage failure, bad message).
    Error(String),
    AntiEntropy(AeResponse),
}

impl Response {
    /// A coordinated write's answer.
    pub fn write(answer: Result<WriteOk, OpError>) -> Self {
        Response::Write(Box::new(answer))
    }

    /// A coordinated read's answer.
    pub fn read(answer: Result<ReadOk, OpError>) -> Self {
        Response::Read(Box::new(answer))
    }

    /// A coordinator's view of the replicas.
    pub fn health(report: HealthReport) -> Self {
        Response::Health(Box::new(report))
    }
}

/// A write reached W replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOk {
    pub version: Version,
    /// The coordinator's siblings of the key after the write, the new
    /// version among them: what `token` covers.
    pub siblings: Vec<Version>,
    /// What `token` carries: everything the coordinator's set knows (its
    /// siblings' dots and every dot it superseded), for display.
    pub context: VersionVector,
    /// Signed context token of `siblings` (the join of their clocks):
    /// sending it with the next write of this key supersedes this write
    /// and every sibling listed with it, as a read's token does. (The
    /// written version's clock alone would not do: a version vector that
    /// covers this write's dot `(n, k)` covers every earlier dot of `n`,
    /// including a concurrent sibling's that the writer never saw.)
    pub token: String,
    pub coordinator: NodeId,
    pub needed: usize,
    pub acked: usize,
    pub n: usize,
}

/// A read heard from R replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadOk {
    /// Versions no other returned version covers; several means a conflict.
    pub siblings: Vec<Version>,
    /// Join of the siblings' clocks (what `token` carries, for display).
    pub context: VersionVector,
    /// The signed context token to send back with the next write of this
    /// key (see [`crate::context`]).
    pub token: String,
    pub coordinator: NodeId,
    pub needed: usize,
    pub replied: usize,
    pub n: usize,
}

/// Why a request did not succeed. `Unavailable` means nothing was sent;
/// `Timeout` means the request was sent and may still take effect.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum OpError {
    #[error("unavailable: needed {needed} replicas but only {alive} of {n} are believed alive; nothing was sent")]
    Unavailable {
        needed: usize,
        alive: usize,
        n: usize,
    },
    #[error("timeout: needed {needed} replicas, {answered} of {n} answered in time{}; a write may still be applied", unreachable_note(*.unreachable))]
    Timeout {
        needed: usize,
        answered: usize,
        n: usize,
        /// Of those that did not answer, how many refused the connection
        /// (down: nothing reached them).
        #[serde(default)]
        unreachable: usize,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The coordinator's store failed. For a write this is indeterminate,
    /// as a timeout is: a commit whose connection was lost may have
    /// committed, and the store cannot tell.
    #[error("storage failed on the coordinator: {0}")]
    Storage(String),
    /// The coordinator would not store the write (a key limit); nothing
    /// was stored anywhere.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// Replicas refused the write after the coordinator stored it, so
    /// fewer than needed hold it: it may be on some replicas.
    #[error("needed {needed} replicas but only {acked} of {n} stored the write: {refused} refused it ({reason}); the write may be on some replicas")]
    RefusedByReplicas {
        needed: usize,
        acked: usize,
        refused: usize,
        n: usize,
        reason: Refusal,
    },
}

fn unreachable_note(unreachable: usize) -> String {
    if unreachable == 0 {
        String::new()
    } else {
        format!(" ({unreachable} refused the connection)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub node: NodeId,
    /// The incarnation this node mints dots in.
    #[serde(default)]
    pub incarnation: crate::version::Incarnation,
    pub n: usize,
    pub replicas: Vec<ReplicaHealth>,
    /// Anti-entropy: per peer, milliseconds since this node's last round
    /// with it found nothing to repair (`None`: not since it started).
    /// A replaced node is refilled when every age is small.
    #[serde(default)]
    pub agreement_age_ms: Vec<(NodeId, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaHealth {
    pub node: NodeId,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
}

/// Circuit-breaker state of one replica as its coordinator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BreakerState {
    /// Healthy: requests flow.
    Closed,
    /// Marked down after repeated failures: nothing is sent until the
    /// cool-down passes.
    Open,
    /// Cool-down over: the next requests probe it back.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}
