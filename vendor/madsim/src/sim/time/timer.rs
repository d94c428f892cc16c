//! quorumlog: the simulation's timers, fired in deadline order and, among
//! equal deadlines, in the order they were set.
//!
//! Upstream madsim uses `naive-timer`, whose binary heap fires timers of one
//! deadline in an order that depends on every other timer it holds. One
//! timer more or less anywhere (the leftover timer of a dropped sleep) could
//! then reorder two unrelated wake-ups, and the run after them.
use std::{
    cmp::Ordering,
    collections::BinaryHeap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::Waker,
    time::Duration,
};

type Callback = Box<dyn FnOnce(Duration) + Send + Sync + 'static>;

/// What a timer does when it fires. Most timers are sleeps, whose only work
/// is to wake their task: those keep the waker itself rather than a boxed
/// closure around it (one allocation less for every sleep).
enum Action {
    Wake(Waker),
    Call(Callback),
    // quorumlog: a timer that tells a shared object its time has come,
    // without boxing a closure around it (an `Arc` of the object is
    // unsized into the trait object in place): every message's arrival.
    Fire(Arc<dyn Fire>),
}

/// What a [`Timer::fire_at`] timer tells when it fires.
pub(crate) trait Fire: Send + Sync {
    fn fire(&self);
}

#[derive(Default)]
pub(crate) struct Timer {
    events: BinaryHeap<Event>,
    /// How many timers were ever set: the tie-break among equal deadlines.
    set: u64,
    /// The earliest deadline set, in nanoseconds (`u64::MAX`: none), kept
    /// outside the lock: the executor advances the clock after every poll
    /// of a task, and nearly always nothing is due yet, which this tells it
    /// without taking the timer's lock.
    earliest: Arc<Earliest>,
}

/// See [`Timer::earliest`].
pub(crate) struct Earliest(AtomicU64);

impl Default for Earliest {
    fn default() -> Self {
        Earliest(AtomicU64::new(u64::MAX))
    }
}

impl Earliest {
    /// Whether some timer may be due at `now` (no false negatives).
    pub fn due_by(&self, now: Duration) -> bool {
        nanos(now) >= self.0.load(Relaxed)
    }
}

/// quorumlog: a simulated time in whole nanoseconds (saturating: 584 years
/// is past any run), as the timer and the clock both keep it.
pub(crate) fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

struct Event {
    /// In nanoseconds: one integer to compare rather than a `Duration`.
    deadline: u64,
    order: u64,
    action: Action,
}

impl Event {
    fn key(&self) -> (u64, u64) {
        (self.deadline, self.order)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed: the heap's greatest is the earliest, first set.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl Timer {
    /// Call `callback` once the time reaches `deadline`.
    pub fn add(
        &mut self,
        deadline: Duration,
        callback: impl FnOnce(Duration) + Send + Sync + 'static,
    ) {
        self.push(deadline, Action::Call(Box::new(callback)));
    }

    /// Wake `waker` once the time reaches `deadline`.
    pub fn wake_at(&mut self, deadline: Duration, waker: Waker) {
        self.push(deadline, Action::Wake(waker));
    }

    pub fn fire_at(&mut self, deadline: Duration, target: Arc<dyn Fire>) {
        self.push(deadline, Action::Fire(target));
    }

    fn push(&mut self, deadline: Duration, action: Action) {
        self.set += 1;
        self.events.push(Event {
            deadline: nanos(deadline),
            order: self.set,
            action,
        });
        self.note_earliest();
    }

    /// The shared view of the earliest deadline (see [`Timer::earliest`]).
    pub fn earliest(&self) -> Arc<Earliest> {
        self.earliest.clone()
    }

    fn note_earliest(&self) {
        let earliest = self.events.peek().map_or(u64::MAX, |e| e.deadline);
        self.earliest.0.store(earliest, Relaxed);
    }

    /// Fire, and forget, every timer due at `now`.
    pub fn expire(&mut self, now: Duration) {
        let due = nanos(now);
        while self.events.peek().is_some_and(|event| event.deadline <= due) {
            if let Some(event) = self.events.pop() {
                match event.action {
                    Action::Wake(waker) => waker.wake(),
                    Action::Call(callback) => callback(now),
                    Action::Fire(target) => target.fire(),
                }
            }
        }
        self.note_earliest();
    }

    /// The earliest deadline still set.
    pub fn next(&self) -> Option<Duration> {
        self.events
            .peek()
            .map(|event| Duration::from_nanos(event.deadline))
    }
}
