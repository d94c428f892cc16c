//! Messages of quorumlog's internal protocol: coordinator ↔ replica, and
//! client (gateway or simulated client) → coordinator.
use crate::quorum::Consistency;
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub key: String,
    pub value: String,
    /// What the client has seen (from its last read); empty for a blind write.
    pub context: VersionVector,
    pub level: Consistency,
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
    Write(Result<WriteOk, OpError>),
    Read(Result<ReadOk, OpError>),
    Health(HealthReport),
    Pong {
        node: NodeId,
    },
    /// The request could not be served at all (storage failure, bad message).
    Error(String),
}

/// A write reached W replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOk {
    pub version: Version,
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
    /// Join of the siblings' clocks: pass it back on the next write.
    pub context: VersionVector,
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
    #[error("timeout: needed {needed} replicas, {answered} of {n} answered in time; a write may still be applied")]
    Timeout {
        needed: usize,
        answered: usize,
        n: usize,
    },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage failed on the coordinator: {0}")]
    Storage(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub node: NodeId,
    pub n: usize,
    pub replicas: Vec<ReplicaHealth>,
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
