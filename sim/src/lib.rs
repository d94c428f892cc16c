//! quorumlog's deterministic simulation harness.
//!
//! The history format (`quorumlog-history`) and the checkers
//! (`quorumlog-check`) are crates of their own, re-exported here as
//! [`history`] and [`check`]; scenarios and seed files build everywhere;
//! the harness that drives the real core through seeded faults (and the
//! sweeps and verdict table built on it) needs `--cfg madsim`
//! (`cargo simtest`, `cargo sim`).
pub use quorumlog_check as check;
pub use quorumlog_history as history;
pub mod fault;
pub mod guarantee;
#[cfg(madsim)]
pub mod harness;
pub mod scenario;
pub mod seeds;
#[cfg(madsim)]
pub mod shrink;
#[cfg(madsim)]
pub mod sweep;
#[cfg(madsim)]
pub mod verdict;

// A simulated run allocates and frees millions of small buffers (frames,
// rows, sibling sets) on one thread; glibc's allocator spent a fifth of a
// sweep's time on them, mimalloc a fraction of that. Every binary of this
// crate (the CLI, the test and bench harnesses) uses it. Allocation
// addresses never reach simulated code, so determinism is unaffected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
