//! `quorumd`: the deployable side of quorumlog — a node (replica +
//! coordinator) on a durable store, the REST gateway, a one-process local
//! cluster and a load generator. The protocol itself lives in
//! `quorumlog-core`; this crate only wires it to real sockets, databases and
//! HTTP.
pub mod bench;
pub mod cluster;
pub mod gateway;
pub mod gateway_client;
pub mod http_server;
pub mod loadgen;
pub mod nemesis;
pub mod node;
pub mod peers;
pub mod record;
pub mod store;
pub mod telemetry;
