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

/// Keep the memory freed by one seed's run for the next (call before a
/// run; idempotent).
///
/// By default mimalloc purges (decommits) freed pages 10 ms after they
/// are freed, so a run could find the memory the previous one freed
/// decommitted and fault it back in, each first touch zeroing a 2 MiB
/// transparent huge page: when every seed had a thread (and a heap) of its
/// own, a fifth of a sweep's CPU time was the kernel clearing pages. With
/// purging off, a run reuses the pages the previous one freed; the process
/// keeps its peak (one run's worth per worker), which it reaches anyway.
/// Addresses never reach simulated code, so this changes no run.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // `mi_option_purge_delay` in mimalloc's `mi_option_t` (v2 and v3
        // alike); -1: never purge.
        const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
        extern "C" {
            fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
        }
        // SAFETY: mimalloc's option setter takes any option index and
        // value, and may be called at any time from any thread.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    });
}
