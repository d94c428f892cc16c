//! The deterministic simulation harness (built only with `--cfg madsim`).
pub mod adversary;
pub mod cluster;
pub mod disk;
pub mod nemesis;
pub mod run;
pub mod workload;

pub use run::{run_seed, simulate, RunResult, RunStats, LIVENESS_LIMIT};
