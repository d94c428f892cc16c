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
pub mod isolate;
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
static ALLOCATOR: SimAllocator = SimAllocator;

/// mimalloc, asked for plain `malloc` whenever that alignment suffices.
///
/// `mimalloc::MiMalloc` passes every request to `mi_malloc_aligned`, whose
/// check for a block already aligned costs more than the allocation
/// itself; nearly every request of the simulator asks for at most 16
/// bytes' alignment, which `mi_malloc` gives any block of at least that
/// size (the C rule for `max_align_t`, the one std's own `System`
/// allocator relies on).
pub struct SimAllocator;

/// What `mi_malloc` guarantees: `max_align_t`'s alignment on x86-64 and
/// aarch64 for any block of at least that size.
const MALLOC_ALIGN: usize = 16;

fn malloc_suffices(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: every method hands the request to mimalloc, asking for the
// layout's alignment explicitly unless plain `malloc` already gives it
// (`malloc_suffices`); every block, however allocated, is freed by
// `mi_free`, which takes any block mimalloc handed out.
unsafe impl std::alloc::GlobalAlloc for SimAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if malloc_suffices(layout.align(), layout.size()) {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if malloc_suffices(layout.align(), layout.size()) {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if malloc_suffices(layout.align(), new_size) {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

/// Keep the memory freed by one seed's run for the next (call before a
/// run; idempotent).
///
/// By default mimalloc purges (decommits) freed pages a while after they
/// are freed (1 s in v3, which this builds; 10 ms in v2), so a run could
/// find the memory the previous one freed decommitted and fault it back
/// in, each first touch zeroing a 2 MiB transparent huge page: when every
/// seed had a thread (and a heap) of its own, a fifth of a sweep's CPU
/// time was the kernel clearing pages. With
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

#[cfg(test)]
mod tests {
    use super::SimAllocator;
    use std::alloc::{GlobalAlloc, Layout};

    /// Every layout gets its alignment, whether plain `malloc` or the
    /// aligned call serves it; a zeroed block is zeroed; a block grown or
    /// shrunk keeps its bytes and its alignment.
    #[test]
    fn every_layout_gets_its_alignment_and_a_realloc_keeps_the_bytes() {
        let sizes = [
            1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 32, 48, 64, 100, 1000, 1025, 4096, 70_000,
        ];
        let aligns = [1, 2, 4, 8, 16, 32, 64, 128, 4096];
        for align in aligns {
            for size in sizes {
                let layout = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: every layout is of non-zero size; every block is
                // written and read only within its size, and freed once
                // with the layout it has then.
                unsafe {
                    let zeroed = SimAllocator.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(zeroed as usize % align, 0, "zeroed {size} at {align}");
                    let bytes = std::slice::from_raw_parts(zeroed, size);
                    assert!(bytes.iter().all(|&b| b == 0), "zeroed {size} at {align}");
                    SimAllocator.dealloc(zeroed, layout);

                    for new_size in [size * 3, size.div_ceil(2)] {
                        let block = SimAllocator.alloc(layout);
                        assert!(!block.is_null());
                        assert_eq!(block as usize % align, 0, "{size} at {align}");
                        for i in 0..size {
                            block.add(i).write(i as u8);
                        }
                        let moved = SimAllocator.realloc(block, layout, new_size);
                        assert!(!moved.is_null());
                        assert_eq!(moved as usize % align, 0, "{size} → {new_size} at {align}");
                        for i in 0..size.min(new_size) {
                            assert_eq!(
                                moved.add(i).read(),
                                i as u8,
                                "byte {i}, {size} → {new_size}"
                            );
                        }
                        let resized = Layout::from_size_align(new_size, align).expect("layout");
                        SimAllocator.dealloc(moved, resized);
                    }
                }
            }
        }
    }
}
