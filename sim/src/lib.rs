//! quorumlog's deterministic simulation harness and consistency checkers.
//!
//! The checkers, the history format, scenarios and seed files build
//! everywhere; the harness that drives the real core through seeded faults
//! (and the sweeps and verdict table built on it) needs `--cfg madsim`
//! (`cargo simtest`, `cargo sim`).
pub mod check;
pub mod guarantee;
#[cfg(madsim)]
pub mod harness;
pub mod history;
pub mod scenario;
pub mod seeds;
#[cfg(madsim)]
pub mod sweep;
#[cfg(madsim)]
pub mod verdict;
