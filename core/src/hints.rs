//! Hinted handoff: what a coordinator keeps, in its own store, for a
//! replica that did not acknowledge an `Apply` (down, timed out, breaker
//! open), so it can replay it when the replica answers again.
//!
//! A hint is one key's sibling set for one target replica. Hints are
//! deduplicated per `(target, key)`: a second miss of the same key merges
//! into the hint already held, with the same merge every write uses
//! ([`Siblings::sync`]), so a replica that missed a hundred writes of a
//! hot key gets one `Apply` back, not a hundred.
//!
//! Replay, as the coordinator is to drive it:
//!
//! 1. `store.hints_for(target, n, now_ms, limits.max_age)`: the target's
//!    oldest hints (expired ones are dropped on the way and counted);
//! 2. send each as an `Apply`; when it is acknowledged,
//!    `store.remove_hint(&hint)`, which removes it only if it is still the
//!    generation that was read: a write missed meanwhile merged into the
//!    hint and gave it a new generation, and that newer hint must stay for
//!    the next round.
//!
//! Every hint operation takes the time as `now_ms` from the caller: no
//! clock is read here, so the simulator decides what time it is.
//!
//! The rules (what a put does given what is held, sizes, expiry) live here
//! so the memory, SQLite and PostgreSQL stores apply exactly the same ones.
use crate::version::{NodeId, Siblings, VersionError};
use std::time::Duration;
use thiserror::Error;

/// Bounds on the hints one coordinator keeps for one target replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintLimits {
    /// Hints (distinct keys) held for one target.
    pub max_per_target: usize,
    /// Bytes held for one target, counted by [`hint_bytes`].
    pub max_bytes_per_target: usize,
    /// A hint older than this is dropped instead of replayed: from then on
    /// bringing the replica up to date is left to anti-entropy.
    pub max_age: Duration,
}

impl HintLimits {
    /// Replaying a returning replica costs one `Apply` per hint; at a few
    /// milliseconds each, 10,000 hints replay in well under a minute.
    /// Past that, a Merkle anti-entropy pass (which compares trees, not
    /// writes) is the cheaper way to catch up.
    pub const DEFAULT_MAX_PER_TARGET: usize = 10_000;
    /// With N = 5 a coordinator hints for at most four targets: 256 MiB of
    /// disk at worst, and still room for 16 keys at the largest size a key
    /// may have (`KeyLimits::DEFAULT_MAX_BYTES`, 4 MiB).
    pub const DEFAULT_MAX_BYTES_PER_TARGET: usize = 64 * 1024 * 1024;
    /// Cassandra's default hint window. A replica down longer than this
    /// has missed so much that anti-entropy is the better repair, and what
    /// an older hint carries has mostly been superseded by later writes.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3 * 60 * 60);
}

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            max_per_target: Self::DEFAULT_MAX_PER_TARGET,
            max_bytes_per_target: Self::DEFAULT_MAX_BYTES_PER_TARGET,
            max_age: Self::DEFAULT_MAX_AGE,
        }
    }
}

/// Bytes a hint is counted as besides its key and siblings (its target,
/// times and generation, and row overhead).
const HINT_OVERHEAD_BYTES: usize = 32;

/// Bytes a hint for `key` holding `siblings` counts for against
/// [`HintLimits::max_bytes_per_target`]. Computed, not measured on disk,
/// so every store counts the same figure.
pub fn hint_bytes(key: &str, siblings: &Siblings) -> usize {
    key.len()
        .saturating_add(siblings.footprint())
        .saturating_add(HINT_OVERHEAD_BYTES)
}

/// `max_age` in milliseconds (saturating: an absurd age never expires).
fn age_ms(max_age: Duration) -> u64 {
    u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX)
}

/// A hint stored before this time (ms) is older than `max_age` at
/// `now_ms`, hence expired. 0 while `now_ms` is below `max_age`: nothing
/// can be that old yet.
pub fn expired_before(now_ms: u64, max_age: Duration) -> u64 {
    now_ms.saturating_sub(age_ms(max_age))
}

/// A write a replica missed: the key's sibling set to `Apply` to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub target: NodeId,
    pub key: String,
    pub siblings: Siblings,
    /// When (caller's clock, ms) the oldest miss this hint holds was
    /// hinted; merges keep it. The hint's age is its oldest write's, so
    /// no write waits in hints longer than `max_age`, and a hot key that
    /// keeps merging cannot keep a hint for a dead replica alive forever.
    pub stored_at: u64,
    /// Changes every time the hint is stored or merged into, and is never
    /// handed out twice by one store (not even after the hint is removed
    /// and the key hinted again): what makes `remove_hint` safe.
    pub generation: u64,
}

impl Hint {
    /// Bytes this hint counts for (see [`hint_bytes`]).
    pub fn bytes(&self) -> usize {
        hint_bytes(&self.key, &self.siblings)
    }

    /// Whether this hint is older than `max_age` at `now_ms`. A `stored_at`
    /// ahead of `now_ms` (a clock that went back) is not expired.
    pub fn is_expired(&self, now_ms: u64, max_age: Duration) -> bool {
        self.stored_at < expired_before(now_ms, max_age)
    }
}

/// How many hints, and how many bytes of them, are held for (or were
/// dropped for) one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintBacklog {
    pub count: usize,
    pub bytes: usize,
}

impl HintBacklog {
    /// This backlog plus one hint of `bytes`; None on overflow.
    pub fn plus(self, bytes: usize) -> Option<HintBacklog> {
        Some(HintBacklog {
            count: self.count.checked_add(1)?,
            bytes: self.bytes.checked_add(bytes)?,
        })
    }

    /// This backlog without one hint of `bytes`; None if it does not hold
    /// that much (the figures are inconsistent).
    pub fn minus(self, bytes: usize) -> Option<HintBacklog> {
        Some(HintBacklog {
            count: self.count.checked_sub(1)?,
            bytes: self.bytes.checked_sub(bytes)?,
        })
    }

    /// Both backlogs together; None on overflow.
    pub fn join(self, other: HintBacklog) -> Option<HintBacklog> {
        Some(HintBacklog {
            count: self.count.checked_add(other.count)?,
            bytes: self.bytes.checked_add(other.bytes)?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Why a hint was not stored. The caller counts the write as dropped from
/// hinted handoff: anti-entropy (or read repair) is left to deliver it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HintDropReason {
    #[error("node {target} already has {held} hints waiting (limit {limit})")]
    TooManyHints {
        target: NodeId,
        held: usize,
        limit: usize,
    },
    #[error("hints for node {target} would take {bytes} bytes (limit {limit})")]
    TooManyBytes {
        target: NodeId,
        bytes: usize,
        limit: usize,
    },
    /// The hint held for the key has a dot with other contents than the
    /// one sent: two different writes under one dot, which is corruption
    /// somewhere, not a bound. The held hint is left as it was.
    #[error("the hint for key {key:?} to node {target} cannot take this write: {error}")]
    Conflict {
        target: NodeId,
        key: String,
        error: VersionError,
    },
}

impl HintDropReason {
    /// A short label (for a metric): `count`, `bytes` or `conflict`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HintDropReason::TooManyHints { .. } => "count",
            HintDropReason::TooManyBytes { .. } => "bytes",
            HintDropReason::Conflict { .. } => "conflict",
        }
    }

    /// A bound was reached (expected under a long outage), rather than a
    /// conflict (which deserves an error in the logs).
    pub fn is_limit(&self) -> bool {
        !matches!(self, HintDropReason::Conflict { .. })
    }
}

/// What became of a hint a coordinator asked to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintStored {
    /// No hint was held for `(target, key)`: this is a new one.
    Stored,
    /// Merged into the hint already held for `(target, key)` (which may
    /// have held everything it carried already).
    Merged,
    /// Nothing was stored, and whatever was held is unchanged.
    Dropped { reason: HintDropReason },
}

/// What `put_hint` did: the hint's fate, and the target's hints it found
/// expired and dropped on the way (they no longer count against the
/// bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintPut {
    pub outcome: HintStored,
    pub expired: HintBacklog,
}

/// What `hints_for` read: the target's oldest hints, and those it found
/// expired and dropped instead of returning.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HintBatch {
    pub hints: Vec<Hint>,
    pub expired: HintBacklog,
}

/// What a store is to do with a hint, decided by [`plan_put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintPlan {
    /// The held hint already holds everything sent: write nothing (the
    /// outcome is `Merged`, and the held generation stays, so a replay in
    /// flight that removes it loses nothing).
    Unchanged,
    /// Write `siblings` as the `(target, key)` hint under a new
    /// generation — replacing the held hint only if it still has the
    /// generation the plan was made from.
    Write {
        siblings: Siblings,
        stored_at: u64,
        bytes: usize,
        outcome: HintStored,
    },
    /// Store nothing.
    Drop(HintDropReason),
}

/// Decide what keeping `incoming` as a hint for `(target, key)` does.
///
/// `held`: the live (not expired) hint held for `(target, key)`, if any.
/// `others`: the target's other live hints. A merge that does not grow
/// the hint is always allowed, so a target over a bound (bounds lowered)
/// still takes merges that supersede.
pub fn plan_put(
    target: NodeId,
    key: &str,
    incoming: &Siblings,
    held: Option<&Hint>,
    others: HintBacklog,
    now_ms: u64,
    limits: &HintLimits,
) -> HintPlan {
    let too_many_bytes = |bytes: Option<usize>| HintDropReason::TooManyBytes {
        target,
        bytes: bytes.unwrap_or(usize::MAX),
        limit: limits.max_bytes_per_target,
    };
    match held {
        Some(held) => match held.siblings.synced(incoming) {
            Err(error) => HintPlan::Drop(HintDropReason::Conflict {
                target,
                key: key.to_string(),
                error,
            }),
            Ok(None) => HintPlan::Unchanged,
            Ok(Some(merged)) => {
                let bytes = hint_bytes(key, &merged);
                let total = others.bytes.checked_add(bytes);
                let over = total.is_none_or(|t| t > limits.max_bytes_per_target);
                if over && bytes > held.bytes() {
                    return HintPlan::Drop(too_many_bytes(total));
                }
                HintPlan::Write {
                    siblings: merged,
                    stored_at: held.stored_at,
                    bytes,
                    outcome: HintStored::Merged,
                }
            }
        },
        None => {
            if others.count >= limits.max_per_target {
                return HintPlan::Drop(HintDropReason::TooManyHints {
                    target,
                    held: others.count,
                    limit: limits.max_per_target,
                });
            }
            let bytes = hint_bytes(key, incoming);
            let total = others.bytes.checked_add(bytes);
            if total.is_none_or(|t| t > limits.max_bytes_per_target) {
                return HintPlan::Drop(too_many_bytes(total));
            }
            HintPlan::Write {
                siblings: incoming.clone(),
                stored_at: now_ms,
                bytes,
                outcome: HintStored::Stored,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Dot, Version, VersionVector};

    fn set(node: NodeId, value: &str) -> Siblings {
        Siblings::from_versions([Version {
            dot: Dot::new(node, 1),
            context: VersionVector::new(),
            value: value.into(),
            timestamp_ms: 0,
        }])
        .expect("one version")
    }

    fn hint(key: &str, siblings: Siblings, stored_at: u64) -> Hint {
        Hint {
            target: 2,
            key: key.into(),
            siblings,
            stored_at,
            generation: 1,
        }
    }

    #[test]
    fn expiry_is_strictly_older_than_max_age() {
        let age = Duration::from_millis(1_000);
        let h = hint("k", set(1, "a"), 500);
        assert!(!h.is_expired(1_500, age), "exactly max_age old");
        assert!(h.is_expired(1_501, age));
        assert!(!h.is_expired(100, age), "a clock that went back");
        assert_eq!(expired_before(10, age), 0, "nothing is that old yet");
        assert!(!hint("k", set(1, "a"), 0).is_expired(u64::MAX, Duration::MAX));
    }

    #[test]
    fn a_new_hint_is_bounded_by_count_and_bytes() {
        let limits = HintLimits {
            max_per_target: 2,
            max_bytes_per_target: 1_000,
            max_age: Duration::from_secs(1),
        };
        let incoming = set(1, "a");
        let bytes = hint_bytes("k", &incoming);
        let full = HintBacklog {
            count: 2,
            bytes: 10,
        };
        assert_eq!(
            plan_put(2, "k", &incoming, None, full, 7, &limits),
            HintPlan::Drop(HintDropReason::TooManyHints {
                target: 2,
                held: 2,
                limit: 2
            })
        );
        let heavy = HintBacklog {
            count: 1,
            bytes: 1_000 - bytes + 1,
        };
        assert_eq!(
            plan_put(2, "k", &incoming, None, heavy, 7, &limits),
            HintPlan::Drop(HintDropReason::TooManyBytes {
                target: 2,
                bytes: 1_001,
                limit: 1_000
            })
        );
        let fits = HintBacklog {
            count: 1,
            bytes: 1_000 - bytes,
        };
        assert_eq!(
            plan_put(2, "k", &incoming, None, fits, 7, &limits),
            HintPlan::Write {
                siblings: incoming.clone(),
                stored_at: 7,
                bytes,
                outcome: HintStored::Stored
            }
        );
        let overflow = HintBacklog {
            count: 0,
            bytes: usize::MAX,
        };
        assert!(matches!(
            plan_put(2, "k", &incoming, None, overflow, 7, &limits),
            HintPlan::Drop(HintDropReason::TooManyBytes {
                bytes: usize::MAX,
                ..
            })
        ));
    }

    #[test]
    fn a_merge_keeps_the_first_time_and_a_shrinking_merge_passes_any_bound() {
        let limits = HintLimits {
            max_per_target: 1,
            max_bytes_per_target: 1,
            max_age: Duration::from_secs(1),
        };
        let held = hint("k", set(1, &"long".repeat(100)), 3);
        // Supersedes the held version with a shorter one: the target is
        // over its bound of bytes, but this merge does not grow it.
        let mut newer = Siblings::new();
        newer
            .sync_one(Version {
                dot: Dot::new(2, 1),
                context: held.siblings.context(),
                value: "b".into(),
                timestamp_ms: 0,
            })
            .expect("sync");
        match plan_put(
            2,
            "k",
            &newer,
            Some(&held),
            HintBacklog::default(),
            9,
            &limits,
        ) {
            HintPlan::Write {
                siblings,
                stored_at,
                outcome,
                ..
            } => {
                assert_eq!(siblings.versions(), newer.versions());
                assert_eq!(stored_at, 3, "a merge keeps the first time");
                assert_eq!(outcome, HintStored::Merged);
            }
            other => panic!("expected a write, got {other:?}"),
        }
        // A sibling more grows it: refused.
        assert!(matches!(
            plan_put(
                2,
                "k",
                &set(3, "c"),
                Some(&held),
                HintBacklog::default(),
                9,
                &limits
            ),
            HintPlan::Drop(HintDropReason::TooManyBytes { .. })
        ));
        // What is held already: nothing to write.
        assert_eq!(
            plan_put(
                2,
                "k",
                &held.siblings,
                Some(&held),
                HintBacklog::default(),
                9,
                &limits
            ),
            HintPlan::Unchanged
        );
    }

    #[test]
    fn a_conflicting_dot_is_a_conflict_not_a_bound() {
        let held = hint("k", set(1, "a"), 3);
        let plan = plan_put(
            2,
            "k",
            &set(1, "other"),
            Some(&held),
            HintBacklog::default(),
            9,
            &HintLimits::default(),
        );
        match plan {
            HintPlan::Drop(reason) => {
                assert!(!reason.is_limit());
                assert_eq!(reason.as_str(), "conflict");
                assert!(reason
                    .to_string()
                    .contains("two different writes under one dot"));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn backlog_arithmetic_is_checked() {
        let one = HintBacklog { count: 1, bytes: 5 };
        assert_eq!(one.plus(3), Some(HintBacklog { count: 2, bytes: 8 }));
        assert_eq!(one.minus(5), Some(HintBacklog::default()));
        assert_eq!(one.minus(6), None);
        assert_eq!(HintBacklog::default().minus(0), None);
        let full = HintBacklog {
            count: usize::MAX,
            bytes: 0,
        };
        assert_eq!(full.plus(0), None);
        assert_eq!(full.join(one), None);
    }

    /// A merge that leaves the hint exactly as big as it was is taken
    /// even when the target is past its byte bound: it does not grow.
    #[test]
    fn a_merge_that_keeps_the_hints_size_passes_a_bound_it_is_over() {
        let limits = HintLimits {
            max_per_target: 1,
            max_bytes_per_target: 1,
            max_age: Duration::from_secs(1),
        };
        let held = hint("k", set(1, &"a".repeat(40)), 3);
        let superseding = |len: usize| {
            let mut newer = Siblings::new();
            newer
                .sync_one(Version {
                    dot: Dot::new(2, 1),
                    context: held.siblings.context(),
                    value: "b".repeat(len),
                    timestamp_ms: 0,
                })
                .expect("sync");
            newer
        };
        let merged_bytes = |newer: &Siblings| {
            let merged = held.siblings.synced(newer).expect("no conflict");
            hint_bytes("k", &merged.expect("the merge changes the hint"))
        };
        let same = (0..40)
            .map(superseding)
            .find(|newer| merged_bytes(newer) == held.bytes())
            .expect("a value that keeps the hint's size");
        let plan = plan_put(
            2,
            "k",
            &same,
            Some(&held),
            HintBacklog::default(),
            9,
            &limits,
        );
        assert!(
            matches!(
                plan,
                HintPlan::Write {
                    outcome: HintStored::Merged,
                    ..
                }
            ),
            "{plan:?}"
        );
    }

    /// A merge that grows the target's hints to exactly its byte bound is
    /// taken, as a new hint of that size is.
    #[test]
    fn a_merge_up_to_exactly_the_byte_bound_is_taken() {
        let held = hint("k", set(1, "a"), 3);
        let incoming = set(3, "c");
        let merged = held
            .siblings
            .synced(&incoming)
            .expect("no conflict")
            .expect("grows");
        let others = HintBacklog { count: 1, bytes: 7 };
        let limits = HintLimits {
            max_per_target: 2,
            max_bytes_per_target: 7 + hint_bytes("k", &merged),
            max_age: Duration::from_secs(1),
        };
        let plan = plan_put(2, "k", &incoming, Some(&held), others, 9, &limits);
        assert!(
            matches!(plan, HintPlan::Write { ref siblings, .. } if *siblings == merged),
            "{plan:?}"
        );
        let tighter = HintLimits {
            max_bytes_per_target: limits.max_bytes_per_target - 1,
            ..limits
        };
        assert!(matches!(
            plan_put(2, "k", &incoming, Some(&held), others, 9, &tighter),
            HintPlan::Drop(HintDropReason::TooManyBytes { .. })
        ));
    }

    #[test]
    fn both_bounds_are_limits_and_say_which() {
        let count = HintDropReason::TooManyHints {
            target: 2,
            held: 1,
            limit: 1,
        };
        let bytes = HintDropReason::TooManyBytes {
            target: 2,
            bytes: 2,
            limit: 1,
        };
        assert!(count.is_limit() && bytes.is_limit());
        assert_eq!((count.as_str(), bytes.as_str()), ("count", "bytes"));
    }
}
