//! Fault points in real code paths (FoundationDB's BUGGIFY): places where
//! the code that `quorumd` runs can be made to misbehave the way a network
//! or a machine may, so the simulator explores paths that faults between
//! nodes rarely reach.
//!
//! Only the simulator can turn one on. In the normal build [`fires`] is a
//! constant `false` that the compiler removes with the branch it guards;
//! under `--cfg madsim` the harness activates a seed-drawn set of points,
//! each with its own probability, for the run on its thread (a thread runs
//! one seed at a time, and each run activates its own set) until the run's
//! faults heal, when it deactivates them all, and each
//! firing draws from madsim's seeded RNG, so a run stays a function of its
//! seed. No point is active unless the harness says so, and an inactive
//! point draws nothing.
use serde::{Deserialize, Serialize};
use std::fmt;

/// A place in the code that can be made to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultPoint {
    /// A request between replicas (a write's copy, a fetch, an
    /// anti-entropy exchange) is lost before the replica handles it.
    DropRequest,
    /// Such a request is handled, and its reply is lost.
    DropReply,
    /// Such a request is handled twice, as a retransmission would be.
    DuplicateRequest,
    /// Such a reply is held back for a while, so replies to later requests
    /// on the connection overtake it.
    DelayReply,
    /// A background read repair is dropped before it sends anything.
    DropReadRepair,
    /// The group-commit committer loses its database session as it
    /// commits a batch: the batch fails with nothing applied, and every
    /// update in it gets the error (the next batch goes on a new session).
    CommitterLosesSession,
}

impl FaultPoint {
    pub const EVERY: [FaultPoint; 6] = [
        FaultPoint::DropRequest,
        FaultPoint::DropReply,
        FaultPoint::DuplicateRequest,
        FaultPoint::DelayReply,
        FaultPoint::DropReadRepair,
        FaultPoint::CommitterLosesSession,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::DropRequest => "drop-request",
            FaultPoint::DropReply => "drop-reply",
            FaultPoint::DuplicateRequest => "duplicate-request",
            FaultPoint::DelayReply => "delay-reply",
            FaultPoint::DropReadRepair => "drop-read-repair",
            FaultPoint::CommitterLosesSession => "committer-loses-session",
        }
    }
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `point` misbehaves this time. Always `false` outside the
/// simulator.
#[cfg(not(madsim))]
#[inline(always)]
pub fn fires(_point: FaultPoint) -> bool {
    false
}

/// A delay of up to `max` for a point that holds something back; zero
/// outside the simulator.
#[cfg(not(madsim))]
#[inline(always)]
pub fn delay_up_to(_max: std::time::Duration) -> std::time::Duration {
    std::time::Duration::ZERO
}

#[cfg(madsim)]
pub use simulated::{activate, deactivate, delay_up_to, fired, fires};

#[cfg(madsim)]
mod simulated {
    use super::FaultPoint;
    use madsim::rand::Rng;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Points {
        /// Active points and the probability each fires when reached.
        active: BTreeMap<FaultPoint, f64>,
        fired: BTreeMap<FaultPoint, u64>,
    }

    thread_local! {
        static POINTS: RefCell<Points> = RefCell::new(Points::default());
    }

    /// Make `points` (with the probability each fires when reached) the
    /// active set for the run on this thread, and zero the counts. Call at
    /// the start of a run, inside its runtime.
    pub fn activate(points: impl IntoIterator<Item = (FaultPoint, f64)>) {
        POINTS.with(|p| {
            let mut p = p.borrow_mut();
            p.active = points
                .into_iter()
                .filter(|(_, probability)| *probability > 0.0)
                .map(|(point, probability)| (point, probability.min(1.0)))
                .collect();
            p.fired.clear();
        });
    }

    /// Turn every point off for the rest of the run on this thread (the
    /// heal: from then on the code runs as `quorumd` runs it), keeping
    /// the counts of what fired.
    pub fn deactivate() {
        POINTS.with(|p| p.borrow_mut().active.clear());
    }

    /// How often each point fired in this thread's run.
    pub fn fired() -> BTreeMap<FaultPoint, u64> {
        POINTS.with(|p| p.borrow().fired.clone())
    }

    pub fn delay_up_to(max: std::time::Duration) -> std::time::Duration {
        let micros = u64::try_from(max.as_micros()).unwrap_or(u64::MAX).max(1);
        std::time::Duration::from_micros(madsim::rand::thread_rng().gen_range(1..=micros))
    }

    pub fn fires(point: FaultPoint) -> bool {
        let Some(probability) = POINTS.with(|p| p.borrow().active.get(&point).copied()) else {
            return false;
        };
        let hit = madsim::rand::thread_rng().gen_bool(probability);
        if hit {
            POINTS.with(|p| *p.borrow_mut().fired.entry(point).or_default() += 1);
        }
        hit
    }
}
