//! quorumlog's replicated store: dotted versions, quorum maths, the replica
//! and coordinator logic, and the internal RPC. Everything async goes
//! through `tokio` = madsim-tokio, so this crate runs unchanged in the
//! deterministic simulator (`--cfg madsim`) and on real tokio.
pub mod anti_entropy;
pub mod breaker;
pub mod buggify;
pub mod client;
pub mod codec;
pub mod context;
pub mod coordinator;
pub mod error_report;
pub mod hints;
pub mod input;
pub mod node;
pub mod protocol;
pub mod quorum;
pub mod replica;
pub mod rpc;
pub mod secure_channel;
mod stopwatch;
pub mod storage;
pub mod store;
pub mod version;
pub mod wall_clock;

pub use client::{Client, ClientError};
pub use coordinator::{AntiEntropyConfig, Coordinator, CoordinatorConfig, ReadRepair};
pub use hints::{Hint, HintBacklog, HintBatch, HintDropReason, HintLimits, HintPut, HintStored};
pub use node::Node;
pub use protocol::{OpError, ReadOk, ReadRequest, Request, Response, WriteOk, WriteRequest};
pub use quorum::{Consistency, QuorumSpec};
pub use replica::{KeyLimits, Refusal};
pub use store::{MemoryStore, Store, StoreError};
pub use version::{
    Actor, Causality, Dot, Incarnation, NodeId, Siblings, Version, VersionError, VersionVector,
};
