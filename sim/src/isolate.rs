//! Work items (a sweep's seeds, a shrink's candidates) run so that one
//! that panics is reported as a panic and the rest still run, in a build
//! that aborts on a panic as in one that unwinds.
//!
//! The simulator's own build (`cargo sim`, the `sim` profile) aborts on a
//! panic: without unwinding, the code keeps no landing pads and cleanup
//! paths, and a seed runs 6 % fewer instructions with 10 % fewer
//! instruction-cache misses. There a panic cannot be caught. Instead each
//! item runs on a worker thread, and the panic hook, on a worker, tells the
//! caller the item's panic message and parks that thread for good (the
//! item's memory stays with it); a fresh worker takes its place. In a
//! build that unwinds (the tests' `simtest` profile), the worker catches
//! the panic and goes on.
//!
//! A parked thread keeps what its item held, so a run of items stops
//! handing out new ones once `max_parked` of them (by default
//! [`MAX_PARKED`]) have panicked in a build that aborts; it then reports
//! every item up to the `max_parked`-th panic, whichever the number of
//! workers.
//!
//! Only `std`: the suite compiles this file alone with `-C panic=abort`
//! to test the parking path (`sim/tests/abort_isolation.rs`).
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Once, PoisonError};

/// In a build that aborts on a panic, a run of items stops handing out
/// new ones after this many have panicked (each keeps a parked thread):
/// the default of `run_isolated`'s `max_parked` (and of `cargo sim`'s
/// `--max-panics`).
pub const MAX_PARKED: usize = 16;

/// What a run of items gave, in item order.
pub struct Isolated<T> {
    /// One per item run: its result, or its panic message. Every item
    /// before the last one here ran.
    pub results: Vec<Result<T, String>>,
    /// Whether the run stopped at its `max_parked`-th panic (a build that
    /// aborts on a panic), leaving the items after it not run.
    pub stopped: bool,
}

type Report<T> = (usize, Result<T, String>);

/// Tells the caller that the item a worker is running panicked, with what.
type ReportPanic = Box<dyn FnOnce(String)>;

thread_local! {
    /// On a worker running an item: how a panic reports it (its position
    /// and message, to the caller's channel).
    static ON_PANIC: RefCell<Option<ReportPanic>> = const { RefCell::new(None) };
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

/// Where a panic cannot unwind: report a worker's panic and park the
/// worker, after the hook that was there (which prints the panic).
/// Installed once, before any thread parks: a parked thread holds the
/// hook's lock, so setting a hook afterwards would wait for ever.
fn install_parking_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            previous(info);
            let report = ON_PANIC.with(|slot| slot.borrow_mut().take());
            if let Some(report) = report {
                report(panic_message(info.payload()));
                loop {
                    std::thread::park();
                }
            }
        }));
    });
}

fn worker<I, T, W>(
    queue: Arc<Mutex<Receiver<(usize, I)>>>,
    results: Sender<Report<T>>,
    work: Arc<W>,
) where
    I: Send + 'static,
    T: Send + 'static,
    W: Fn(I) -> T + Send + Sync + 'static,
{
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((position, item)) = next else {
            return;
        };
        let report = results.clone();
        ON_PANIC.with(|slot| {
            *slot.borrow_mut() = Some(Box::new(move |message| {
                let _ = report.send((position, Err(message)));
            }))
        });
        let result = panic::catch_unwind(AssertUnwindSafe(|| work(item)))
            .map_err(|payload| panic_message(&*payload));
        ON_PANIC.with(|slot| slot.borrow_mut().take());
        if results.send((position, result)).is_err() {
            return;
        }
    }
}

/// Run `work` on every item of `items` on `workers` threads, handing the
/// items out in order (taken lazily, on the calling thread). `each` sees
/// every result as it arrives, on the calling thread (progress, or
/// dropping what is not kept). A panicking item gives its message; in a
/// build that aborts on a panic, the run stops at the `max_parked`-th
/// (at least 1).
pub fn run_isolated<I, T, W>(
    items: impl IntoIterator<Item = I>,
    workers: usize,
    max_parked: usize,
    work: W,
    mut each: impl FnMut(&mut Result<T, String>),
) -> Isolated<T>
where
    I: Send + 'static,
    T: Send + 'static,
    W: Fn(I) -> T + Send + Sync + 'static,
{
    let parks = cfg!(panic = "abort");
    if parks {
        install_parking_hook();
    }
    let work = Arc::new(work);
    let (queue_tx, queue_rx) = mpsc::channel::<(usize, I)>();
    let queue_rx = Arc::new(Mutex::new(queue_rx));
    let (results_tx, results_rx) = mpsc::channel::<Report<T>>();
    let spawn = || {
        let (queue, results, work) = (queue_rx.clone(), results_tx.clone(), work.clone());
        std::thread::spawn(move || worker(queue, results, work));
    };
    let workers = workers.max(1);
    for _ in 0..workers {
        spawn();
    }
    let mut items = items.into_iter().enumerate();
    let mut send_next = |queue: &Sender<(usize, I)>| match items.next() {
        Some(item) => queue.send(item).is_ok(),
        None => false,
    };
    // One item in flight per worker; the next goes out as one finishes.
    let mut sent = 0;
    while sent < workers && send_next(&queue_tx) {
        sent += 1;
    }
    let mut results: Vec<Option<Result<T, String>>> = Vec::new();
    let max_parked = max_parked.max(1);
    let (mut received, mut parked, mut stopped) = (0, 0, false);
    while received < sent {
        let Ok((position, mut result)) = results_rx.recv() else {
            break;
        };
        received += 1;
        each(&mut result);
        if parks && result.is_err() {
            parked += 1;
            if parked >= max_parked {
                stopped = true;
            } else {
                spawn();
            }
        }
        if results.len() <= position {
            results.resize_with(position + 1, || None);
        }
        results[position] = Some(result);
        if !stopped && send_next(&queue_tx) {
            sent += 1;
        }
    }
    drop(queue_tx);
    if stopped {
        // Up to the max_parked-th panic in item order: every item before
        // it ran, whatever the workers finished first.
        let mut panics = 0;
        let cut = results.iter().position(|r| {
            panics += usize::from(matches!(r, Some(Err(_))));
            panics == max_parked
        });
        if let Some(cut) = cut {
            results.truncate(cut + 1);
        }
    }
    Isolated {
        results: results.into_iter().flatten().collect(),
        stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Item `i` gives `10 i`, and every fifth one panics.
    fn work(i: usize) -> usize {
        if i % 5 == 4 {
            panic!("item {i} panics");
        }
        i * 10
    }

    #[test]
    fn every_item_is_reported_in_order_and_a_panic_by_its_message() {
        let mut results_of = Vec::new();
        for workers in [1, 2, 3] {
            let mut seen = 0;
            let run = run_isolated(0..40usize, workers, MAX_PARKED, work, |_| seen += 1);
            assert_eq!(seen, 40, "each result is seen once, with {workers} workers");
            assert!(!run.stopped);
            assert_eq!(run.results.len(), 40);
            for (i, result) in run.results.iter().enumerate() {
                match result {
                    Ok(value) => assert_eq!((i % 5, *value), (i % 5, i * 10)),
                    Err(message) => {
                        assert_eq!(i % 5, 4, "item {i} did not panic");
                        assert_eq!(message, &format!("item {i} panics"));
                    }
                }
            }
            results_of.push(run.results);
        }
        assert!(results_of.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_build_that_unwinds_runs_every_item_whatever_panics() {
        // The stop after MAX_PARKED panics is for a build that aborts
        // (sim/tests/abort_isolation.rs); here the panics are caught.
        let run = run_isolated(0..200usize, 2, MAX_PARKED, work, |_| {});
        assert_eq!(cfg!(panic = "abort"), run.stopped);
        assert_eq!(run.results.len(), 200);
        assert_eq!(run.results.iter().filter(|r| r.is_err()).count(), 40);
    }

    #[test]
    fn what_each_does_to_a_result_is_what_comes_back() {
        let run = run_isolated(
            0..6usize,
            2,
            MAX_PARKED,
            |i: usize| i,
            |result| {
                if let Ok(value) = result {
                    *value += 100;
                }
            },
        );
        let values: Vec<usize> = run.results.into_iter().flatten().collect();
        assert_eq!(values, vec![100, 101, 102, 103, 104, 105]);
    }
}
