//! Utilities for tracking time.
//!
//!

use crate::rand::{GlobalRng, Rng};
use futures_util::{select_biased, FutureExt};
// quorumlog: the project's timer heap (see `timer.rs`).
use self::timer::{nanos, Timer};
pub(crate) use self::timer::Fire;
use spin::Mutex;
#[doc(no_inline)]
pub use std::time::{Duration, Instant};
use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering::{Acquire, Release}},
        Arc,
    },
    time::SystemTime,
};

pub mod error;
mod interval;
mod sleep;
mod system_time;
mod timer;

pub use self::interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use self::sleep::{sleep, sleep_until, Sleep};

pub(crate) struct TimeRuntime {
    handle: TimeHandle,
}

impl TimeRuntime {
    pub fn new(rand: &GlobalRng) -> Self {
        // around 2022
        let base_time = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                60 * 60 * 24 * 365 * (2022 - 1970)
                    + rand.with(|rng| rng.gen_range(0..60 * 60 * 24 * 365)),
            );
        let timer = Timer::default();
        let handle = TimeHandle {
            shared: Arc::new(TimeShared {
                earliest: timer.earliest(),
                timer: Mutex::new(timer),
                clock: Clock::new(base_time),
            }),
        };
        TimeRuntime { handle }
    }

    pub fn handle(&self) -> &TimeHandle {
        &self.handle
    }

    /// Advances time to the closest timer event. Returns true if succeed.
    pub fn advance_to_next_event(&self) -> bool {
        let mut timer = self.handle.shared.timer.lock();
        if let Some(mut time) = timer.next() {
            // WARN: in some platform such as M1 macOS,
            //       let t0: Instant;
            //       let t1: Instant;
            //       t0 + (t1 - t0) < t1 !!
            // we should add eps to make sure 'now >= deadline' and avoid deadlock
            time += Duration::from_nanos(50);
            timer.expire(time);
            self.handle.shared.clock.set_elapsed(time);
            true
        } else {
            false
        }
    }

    #[allow(dead_code)]
    /// Get the current time.
    pub fn now_instant(&self) -> Instant {
        self.handle.now_instant()
    }
}

/// Handle to a shared time source.
#[derive(Clone)]
pub struct TimeHandle {
    // quorumlog: one reference count for the timer and the clock together
    // (upstream kept two), since every sleep holds a handle.
    shared: Arc<TimeShared>,
}

struct TimeShared {
    timer: Mutex<Timer>,
    // quorumlog: the timer's earliest deadline, read without its lock.
    earliest: Arc<timer::Earliest>,
    clock: Clock,
}

impl TimeHandle {
    /// Returns a `TimeHandle` view over the currently running Runtime.
    pub fn current() -> Self {
        crate::context::current(|h| h.time.clone())
    }

    /// Returns a `TimeHandle` view over the currently running Runtime.
    pub fn try_current() -> Option<Self> {
        crate::context::try_current(|h| h.time.clone())
    }

    /// Return the current time.
    pub fn now_instant(&self) -> Instant {
        self.shared.clock.now_instant()
    }

    /// Return the current time.
    pub fn now_time(&self) -> SystemTime {
        self.shared.clock.now_time()
    }

    /// Returns the amount of time elapsed since this handle was created.
    pub fn elapsed(&self) -> Duration {
        self.shared.clock.elapsed()
    }

    /// Advances time.
    pub fn advance(&self, duration: Duration) {
        let time = self.shared.clock.advance(duration);
        // quorumlog: the executor advances after every poll, and nearly
        // always nothing is due: skip the timer's lock then.
        if self.shared.earliest.due_by(time) {
            self.shared.timer.lock().expire(time);
        }
    }

    /// Waits until `duration` has elapsed.
    ///
    /// It will sleep for at least 1ms to be consistent with the behavior of `tokio::time::sleep`.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.shared.clock.now_instant() + duration)
    }

    /// Waits until `deadline` is reached.
    ///
    /// It will sleep for at least 1ms to be consistent with the behavior of `tokio::time::sleep_until`.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.clone().into_sleep_until(deadline)
    }

    /// quorumlog: [`TimeHandle::sleep_until`] on a handle the sleep may
    /// keep, so that `sleep` clones the current one once, not twice.
    pub(crate) fn into_sleep_until(self, deadline: Instant) -> Sleep {
        let min_deadline = self.shared.clock.now_instant() + Duration::from_millis(1);
        Sleep {
            handle: self,
            deadline: deadline.max(min_deadline),
            registered: None, // quorumlog: see `Sleep::registered`
        }
    }

    /// Require a `Future` to complete before the specified duration has elapsed.
    // TODO: make it Send
    pub fn timeout<T: Future>(
        &self,
        duration: Duration,
        future: T,
    ) -> impl Future<Output = Result<T::Output, error::Elapsed>> {
        race(self.sleep(duration), future)
    }

    pub(crate) fn add_timer_at(
        &self,
        deadline: Instant,
        callback: impl FnOnce() + Send + Sync + 'static,
    ) {
        let mut timer = self.shared.timer.lock();
        timer.add(deadline - self.shared.clock.base_instant(), |_| callback());
    }

    /// quorumlog: wake `waker` at `deadline` (a sleep's timer), without
    /// boxing a closure around it.
    pub(crate) fn wake_at(&self, deadline: Instant, waker: std::task::Waker) {
        let mut timer = self.shared.timer.lock();
        timer.wake_at(deadline - self.shared.clock.base_instant(), waker);
    }

    /// quorumlog: tell `target` at `deadline`, without boxing a closure.
    pub(crate) fn fire_at(&self, deadline: Instant, target: Arc<dyn Fire>) {
        let mut timer = self.shared.timer.lock();
        timer.fire_at(deadline - self.shared.clock.base_instant(), target);
    }

    pub(crate) fn add_timer(&self, dur: Duration, callback: impl FnOnce() + Send + Sync + 'static) {
        self.add_timer_at(self.shared.clock.now_instant() + dur, callback);
    }
}

/// Require a `Future` to complete before the specified duration has elapsed.
pub fn timeout<T: Future>(
    duration: Duration,
    future: T,
) -> impl Future<Output = Result<T::Output, error::Elapsed>> {
    // quorumlog: the sleep takes the current handle (see `sleep`).
    race(sleep(duration), future)
}

fn race<T: Future>(
    timeout: Sleep,
    future: T,
) -> impl Future<Output = Result<T::Output, error::Elapsed>> {
    async move {
        select_biased! {
            res = future.fuse() => Ok(res),
            _ = timeout.fuse() => Err(error::Elapsed),
        }
    }
}

/// Advances time.
///
/// Increments the saved `Instant::now()` value by `duration`.
/// Subsequent calls to `Instant::now()` will return the result of the increment.
#[cfg_attr(docsrs, doc(cfg(madsim)))]
pub fn advance(duration: Duration) {
    let handle = TimeHandle::current();
    handle.advance(duration);
}

// quorumlog: the clock's bases never change after it is made, and the time
// elapsed is one atomic, so that reading the clock (every `Instant::now`,
// every sleep, every timeout) takes no lock: the executor advances it
// after every poll, and the project reads it many times a poll.
struct Clock {
    /// Time basis for which mock time is derived.
    base_time: std::time::SystemTime,
    base_instant: std::time::Instant,
    /// The amount of mock time which has elapsed, in nanoseconds.
    advance: AtomicU64,
}

impl Clock {
    fn new(base_time: SystemTime) -> Self {
        Clock {
            base_time,
            base_instant: unsafe { std::mem::zeroed() },
            advance: AtomicU64::new(0),
        }
    }

    fn set_elapsed(&self, time: Duration) {
        self.advance.store(nanos(time), Release);
    }

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.advance.load(Acquire))
    }

    fn advance(&self, duration: Duration) -> Duration {
        // A load and a store, not a read-modify-write: only the thread that
        // runs the simulation moves its clock (the executor after every
        // poll, `advance_to_next_event`, and `time::advance` from a task),
        // so no other write can come between them.
        let elapsed = self.advance.load(Acquire).saturating_add(nanos(duration));
        self.advance.store(elapsed, Release);
        Duration::from_nanos(elapsed)
    }

    fn base_instant(&self) -> Instant {
        self.base_instant
    }

    fn now_instant(&self) -> Instant {
        self.base_instant + self.elapsed()
    }

    fn now_time(&self) -> SystemTime {
        self.base_time + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    #[test]
    fn time() {
        let runtime = Runtime::new();
        runtime.block_on(async {
            // sleep for at least 1ms
            let t0 = Instant::now();
            sleep(Duration::default()).await;
            assert!(t0.elapsed() >= Duration::from_millis(1));

            let t0 = Instant::now();
            sleep_until(t0).await;
            assert!(t0.elapsed() >= Duration::from_millis(1));

            let t0 = Instant::now();

            sleep(Duration::from_secs(1)).await;
            assert!(t0.elapsed() >= Duration::from_secs(1));

            sleep_until(t0 + Duration::from_secs(2)).await;
            assert!(t0.elapsed() >= Duration::from_secs(2));

            assert!(
                timeout(Duration::from_secs(2), sleep(Duration::from_secs(1)))
                    .await
                    .is_ok()
            );
            assert!(
                timeout(Duration::from_secs(1), sleep(Duration::from_secs(2)))
                    .await
                    .is_err()
            );
        });
    }

    #[test]
    fn test_advance() {
        let runtime = Runtime::new();
        runtime.block_on(async {
            let t0 = Instant::now();
            advance(Duration::from_secs(1));
            assert!(t0.elapsed() >= Duration::from_secs(1));
        });
    }
}
