use super::*;
use std::{fmt, pin::Pin, task::Poll};

/// Waits until `duration` has elapsed.
pub fn sleep(duration: Duration) -> Sleep {
    // quorumlog: the sleep takes the current handle rather than a second
    // clone of it.
    let handle = TimeHandle::current();
    let deadline = handle.now_instant() + duration;
    handle.into_sleep_until(deadline)
}

/// Waits until `deadline` is reached.
pub fn sleep_until(deadline: Instant) -> Sleep {
    TimeHandle::current().into_sleep_until(deadline)
}

/// Future returned by [`sleep`] and [`sleep_until`].
///
/// [`sleep`]: sleep()
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    pub(super) handle: TimeHandle,
    pub(super) deadline: Instant,
    /// quorumlog: the deadline and the waker (its data and vtable
    /// pointers, what `Waker::will_wake` compares) a timer is already set
    /// for. Upstream madsim set a new timer on every pending poll, and each
    /// of them woke the task again when it fired. The timer holds a clone
    /// of that waker until it fires, so no other waker can take its place
    /// at the same address meanwhile.
    pub(super) registered: Option<(Instant, WakerId)>,
}

/// What `Waker::will_wake` compares: the data and vtable pointers.
pub(super) type WakerId = (usize, usize);

fn waker_id(waker: &std::task::Waker) -> WakerId {
    (waker.data() as usize, waker.vtable() as *const _ as usize)
}

impl Sleep {
    /// Returns the instant at which the future will complete.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Returns `true` if `Sleep` has elapsed.
    ///
    /// A `Sleep` instance is elapsed when the requested duration has elapsed.
    pub fn is_elapsed(&self) -> bool {
        self.handle.now_instant() >= self.deadline
    }

    /// Resets the `Sleep` instance to a new deadline.
    pub fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        if self.is_elapsed() {
            return Poll::Ready(());
        }
        let registration = (self.deadline, waker_id(cx.waker()));
        if self.registered != Some(registration) {
            self.registered = Some(registration);
            self.handle.wake_at(self.deadline, cx.waker().clone());
        }
        Poll::Pending
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}
