//! Local storage of sibling sets, one per key, behind a small trait so the
//! same replica logic runs on memory (tests), SQLite and
//! PostgreSQL (deployment; implemented in `quorumd`), and the hints a
//! coordinator keeps for replicas that missed a write (`hints.rs`).
use crate::hints::{
    expired_before, plan_put, Hint, HintBacklog, HintBatch, HintLimits, HintPlan, HintPut,
    HintStored,
};
use crate::version::{Incarnation, NodeId, Siblings};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("stored data for key {key:?} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A closure that changes a key's sibling set in place and says whether it
/// changed anything (nothing is written when it did not).
pub type Update<'a> = &'a mut (dyn FnMut(&mut Siblings) -> bool + Send);

/// Durable per-key sibling sets.
///
/// `update` is a read-modify-write that must be atomic per key and durable
/// before it returns: a replica acknowledges a write only after `update`
/// returned, so whatever it acked survives a crash.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError>;

    /// Apply `update` to the key's current siblings and persist the result.
    /// Returns the siblings as stored afterwards.
    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError>;

    /// Every key with data, in order.
    async fn keys(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` keys with their siblings, in key order, starting after
    /// `after` (from the first key when `None`): one page of a streaming
    /// pass over the store, as anti-entropy makes to build its index when
    /// a node starts. An empty page is the end.
    async fn scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Siblings)>, StoreError>;

    /// The incarnation of the node this store belongs to, recorded durably
    /// the first time it is asked. A store with no record takes `fresh`
    /// when it holds no data (a new or replaced disk: a new life of the
    /// node, whose dots must not collide with the old life's), or 0 when it
    /// already holds data (written before incarnations were recorded, all
    /// under incarnation 0).
    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError>;

    /// Keep `siblings` as a hint for `target`, which missed them: merged
    /// into the hint held for `(target, key)` if there is one (all or
    /// nothing: on a dot conflict the held hint is unchanged and the
    /// outcome says so), refused if it would pass `limits`. The target's
    /// hints older than `limits.max_age` are dropped first (and reported),
    /// so they never hold a bound against newer ones. Durable before it
    /// returns; atomic against every other hint operation.
    async fn put_hint(
        &self,
        target: NodeId,
        key: &str,
        siblings: &Siblings,
        now_ms: u64,
        limits: &HintLimits,
    ) -> Result<HintPut, StoreError>;

    /// Up to `limit` of `target`'s hints, oldest (`stored_at`) first, ties
    /// by key. Its hints older than `max_age` are dropped instead, and
    /// counted in the batch. The hints stay held until `remove_hint`.
    async fn hints_for(
        &self,
        target: NodeId,
        limit: usize,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<HintBatch, StoreError>;

    /// Remove `hint` (after the target acknowledged it) if the hint held
    /// for its `(target, key)` still has its generation; otherwise a write
    /// merged into it since it was read, and the newer hint stays. Returns
    /// whether it was removed.
    async fn remove_hint(&self, hint: &Hint) -> Result<bool, StoreError>;

    /// Drop every hint older than `max_age` at `now_ms`; what was dropped,
    /// per target, in target order.
    async fn expire_hints(
        &self,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<Vec<(NodeId, HintBacklog)>, StoreError>;

    /// The hints held, per target with any, in target order (expired ones
    /// included until something drops them).
    async fn hint_backlog(&self) -> Result<Vec<(NodeId, HintBacklog)>, StoreError>;
}

/// In-memory store (`quorumd --store memory`, tests): everything is gone
/// with the process. (The simulator runs the deployed group commit over a
/// disk of its own instead: `storage::GroupCommit`.) Ordered maps only:
/// nothing here depends on hash order.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<BTreeMap<String, Siblings>>,
    incarnation: Mutex<Option<Incarnation>>,
    hints: Mutex<MemoryHints>,
}

/// The hints a [`MemoryStore`] holds.
#[derive(Debug, Default)]
struct MemoryHints {
    held: BTreeMap<(NodeId, String), Hint>,
    /// The last generation handed out: generations are never reused, even
    /// for a key whose hint was removed and hinted again.
    last_generation: u64,
}

impl MemoryHints {
    fn of(&self, target: NodeId) -> impl Iterator<Item = &Hint> + '_ {
        self.held
            .range((target, String::new())..)
            .map(|(_, hint)| hint)
            .take_while(move |hint| hint.target == target)
    }

    fn backlog(&self, target: NodeId) -> Result<HintBacklog, StoreError> {
        self.of(target)
            .try_fold(HintBacklog::default(), |sum, hint| {
                sum.plus(hint.bytes()).ok_or_else(overflow)
            })
    }

    /// Drop the hints (of `target`, or of every target) stored before
    /// `before`; what was dropped, per target.
    fn expire(
        &mut self,
        target: Option<NodeId>,
        before: u64,
    ) -> Result<BTreeMap<NodeId, HintBacklog>, StoreError> {
        let candidates: Box<dyn Iterator<Item = &Hint>> = match target {
            Some(target) => Box::new(self.of(target)),
            None => Box::new(self.held.values()),
        };
        let doomed: Vec<(NodeId, String)> = candidates
            .filter(|hint| hint.stored_at < before)
            .map(|hint| (hint.target, hint.key.clone()))
            .collect();
        let mut expired: BTreeMap<NodeId, HintBacklog> = BTreeMap::new();
        for at in doomed {
            if let Some(hint) = self.held.remove(&at) {
                let sum = expired.entry(hint.target).or_default();
                *sum = sum.plus(hint.bytes()).ok_or_else(overflow)?;
            }
        }
        Ok(expired)
    }

    fn next_generation(&mut self) -> Result<u64, StoreError> {
        self.last_generation = self
            .last_generation
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("hint generations exhausted".into()))?;
        Ok(self.last_generation)
    }
}

fn overflow() -> StoreError {
    StoreError::Backend("hint backlog figures overflow".into())
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Siblings>> {
        // A panic while holding the lock cannot leave a half-applied sync:
        // `update` only swaps in a fully computed set.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Look at everything held, key by key, without copying it (for the
    /// simulator's checks during and after a run).
    pub fn inspect<R>(&self, look: impl FnOnce(&BTreeMap<String, Siblings>) -> R) -> R {
        look(&self.lock())
    }

    fn hints(&self) -> std::sync::MutexGuard<'_, MemoryHints> {
        // As for `data`: a hint is only ever swapped in whole.
        self.hints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
        Ok(self.lock().get(key).cloned().unwrap_or_default())
    }

    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
        let mut data = self.lock();
        let mut siblings = data.get(key).cloned().unwrap_or_default();
        if update(&mut siblings) {
            data.insert(key.to_string(), siblings.clone());
        }
        Ok(siblings)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Siblings)>, StoreError> {
        use std::ops::Bound;
        let data = self.lock();
        let start = match after {
            Some(key) => Bound::Excluded(key.to_string()),
            None => Bound::Unbounded,
        };
        Ok(data
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError> {
        let has_data = !self.lock().is_empty();
        let mut recorded = self
            .incarnation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(*recorded.get_or_insert(if has_data { 0 } else { fresh }))
    }

    async fn put_hint(
        &self,
        target: NodeId,
        key: &str,
        siblings: &Siblings,
        now_ms: u64,
        limits: &HintLimits,
    ) -> Result<HintPut, StoreError> {
        let mut hints = self.hints();
        let expired = hints
            .expire(Some(target), expired_before(now_ms, limits.max_age))?
            .remove(&target)
            .unwrap_or_default();
        let at = (target, key.to_string());
        let held = hints.held.get(&at);
        let others = match held {
            Some(held) => hints
                .backlog(target)?
                .minus(held.bytes())
                .ok_or_else(overflow)?,
            None => hints.backlog(target)?,
        };
        let outcome = match plan_put(target, key, siblings, held, others, now_ms, limits) {
            HintPlan::Unchanged => HintStored::Merged,
            HintPlan::Drop(reason) => HintStored::Dropped { reason },
            HintPlan::Write {
                siblings,
                stored_at,
                bytes: _,
                outcome,
            } => {
                let generation = hints.next_generation()?;
                let hint = Hint {
                    target,
                    key: key.to_string(),
                    siblings,
                    stored_at,
                    generation,
                };
                hints.held.insert(at, hint);
                outcome
            }
        };
        Ok(HintPut { outcome, expired })
    }

    async fn hints_for(
        &self,
        target: NodeId,
        limit: usize,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<HintBatch, StoreError> {
        let mut hints = self.hints();
        let expired = hints
            .expire(Some(target), expired_before(now_ms, max_age))?
            .remove(&target)
            .unwrap_or_default();
        let mut oldest: Vec<&Hint> = hints.of(target).collect();
        // Held in key order; a stable sort by time keeps ties in key order.
        oldest.sort_by_key(|hint| hint.stored_at);
        let hints = oldest.into_iter().take(limit).cloned().collect();
        Ok(HintBatch { hints, expired })
    }

    async fn remove_hint(&self, hint: &Hint) -> Result<bool, StoreError> {
        let mut hints = self.hints();
        let at = (hint.target, hint.key.clone());
        let current = hints.held.get(&at).map(|held| held.generation);
        if current != Some(hint.generation) {
            return Ok(false);
        }
        hints.held.remove(&at);
        Ok(true)
    }

    async fn expire_hints(
        &self,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
        let expired = self.hints().expire(None, expired_before(now_ms, max_age))?;
        Ok(expired.into_iter().collect())
    }

    async fn hint_backlog(&self) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
        let hints = self.hints();
        let mut backlog: BTreeMap<NodeId, HintBacklog> = BTreeMap::new();
        for hint in hints.held.values() {
            let sum = backlog.entry(hint.target).or_default();
            *sum = sum.plus(hint.bytes()).ok_or_else(overflow)?;
        }
        Ok(backlog.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints::HintDropReason;
    use crate::version::{Dot, Version, VersionError, VersionVector};

    const HOUR: Duration = Duration::from_secs(3600);

    fn version(node: NodeId, value: &str, context: &VersionVector) -> Version {
        Version {
            dot: Dot::new(node, 1),
            context: context.clone(),
            value: value.into(),
            timestamp_ms: 0,
        }
    }

    /// A key's set holding one blind write by `node`.
    fn blind(node: NodeId, value: &str) -> Siblings {
        Siblings::from_versions([version(node, value, &VersionVector::new())]).expect("a set")
    }

    fn limits(max_per_target: usize, max_bytes_per_target: usize) -> HintLimits {
        HintLimits {
            max_per_target,
            max_bytes_per_target,
            max_age: HOUR,
        }
    }

    async fn put(
        store: &MemoryStore,
        target: NodeId,
        key: &str,
        set: &Siblings,
        now: u64,
    ) -> HintStored {
        store
            .put_hint(target, key, set, now, &HintLimits::default())
            .await
            .expect("put_hint")
            .outcome
    }

    async fn all(store: &MemoryStore, target: NodeId, now: u64) -> Vec<Hint> {
        store
            .hints_for(target, usize::MAX, now, HOUR)
            .await
            .expect("hints_for")
            .hints
    }

    #[tokio::test]
    async fn a_second_miss_of_a_key_merges_into_its_hint() {
        let store = MemoryStore::new();
        assert_eq!(store.hint_backlog().await, Ok(vec![]));
        assert_eq!(
            put(&store, 2, "k", &blind(1, "a"), 10).await,
            HintStored::Stored
        );
        let [first] = &all(&store, 2, 10).await[..] else {
            panic!("one hint")
        };
        assert_eq!(
            put(&store, 2, "k", &blind(3, "b"), 20).await,
            HintStored::Merged
        );
        let [merged] = &all(&store, 2, 20).await[..] else {
            panic!("still one hint")
        };
        let mut expected = blind(1, "a");
        expected.sync(&blind(3, "b")).expect("merge");
        assert_eq!(merged.siblings, expected, "both writes, one hint");
        assert_eq!(merged.stored_at, 10, "the first miss's time");
        assert!(merged.generation > first.generation);
        // What the hint holds already changes nothing, not even its generation.
        assert_eq!(
            put(&store, 2, "k", &blind(3, "b"), 30).await,
            HintStored::Merged
        );
        assert_eq!(all(&store, 2, 30).await, vec![merged.clone()]);
        // Another target's hint for the same key is its own.
        assert_eq!(
            put(&store, 4, "k", &blind(1, "a"), 40).await,
            HintStored::Stored
        );
        assert_eq!(
            store.hint_backlog().await,
            Ok(vec![
                (
                    2,
                    HintBacklog {
                        count: 1,
                        bytes: merged.bytes()
                    }
                ),
                (
                    4,
                    HintBacklog {
                        count: 1,
                        bytes: crate::hints::hint_bytes("k", &blind(1, "a"))
                    }
                ),
            ])
        );
    }

    #[tokio::test]
    async fn a_conflicting_dot_is_reported_and_the_hint_is_left_as_it_was() {
        let store = MemoryStore::new();
        put(&store, 2, "k", &blind(1, "a"), 10).await;
        let before = all(&store, 2, 10).await;
        // Dot n1:1 again with another value, next to a fine new sibling:
        // the merge is all or nothing.
        let mut forged = blind(1, "forged");
        forged.sync(&blind(5, "c")).expect("merge");
        match put(&store, 2, "k", &forged, 20).await {
            HintStored::Dropped {
                reason: HintDropReason::Conflict { target, key, error },
            } => {
                assert_eq!((target, key.as_str()), (2, "k"));
                assert_eq!(
                    error,
                    VersionError::DotConflict {
                        dot: Dot::new(1, 1)
                    }
                );
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(all(&store, 2, 20).await, before, "unchanged");
    }

    #[tokio::test]
    async fn bounds_refuse_new_hints_per_target() {
        let store = MemoryStore::new();
        let small = limits(2, 1 << 20);
        for key in ["a", "b"] {
            let put = store.put_hint(2, key, &blind(1, "v"), 1, &small).await;
            assert_eq!(put.map(|p| p.outcome), Ok(HintStored::Stored));
        }
        let refused = store.put_hint(2, "c", &blind(1, "v"), 1, &small).await;
        assert_eq!(
            refused.map(|p| p.outcome),
            Ok(HintStored::Dropped {
                reason: HintDropReason::TooManyHints {
                    target: 2,
                    held: 2,
                    limit: 2
                }
            })
        );
        // At the bound, merges into held hints still go in, and other
        // targets have bounds of their own.
        let merged = store.put_hint(2, "a", &blind(3, "w"), 1, &small).await;
        assert_eq!(merged.map(|p| p.outcome), Ok(HintStored::Merged));
        let other = store.put_hint(3, "c", &blind(1, "v"), 1, &small).await;
        assert_eq!(other.map(|p| p.outcome), Ok(HintStored::Stored));

        let one = crate::hints::hint_bytes("x", &blind(1, "v"));
        let tight = limits(100, one * 2);
        let store = MemoryStore::new();
        for key in ["x", "y"] {
            let put = store.put_hint(2, key, &blind(1, "v"), 1, &tight).await;
            assert_eq!(put.map(|p| p.outcome), Ok(HintStored::Stored));
        }
        match store.put_hint(2, "z", &blind(1, "v"), 1, &tight).await {
            Ok(HintPut {
                outcome:
                    HintStored::Dropped {
                        reason: HintDropReason::TooManyBytes { bytes, limit, .. },
                    },
                ..
            }) => assert_eq!((bytes, limit), (one * 3, one * 2)),
            other => panic!("expected TooManyBytes, got {other:?}"),
        }
        // A merge that grows a hint past the bound is refused too.
        let grown = store.put_hint(2, "x", &blind(3, "w"), 1, &tight).await;
        assert!(
            matches!(
                grown.as_ref().map(|p| &p.outcome),
                Ok(HintStored::Dropped {
                    reason: HintDropReason::TooManyBytes { .. }
                })
            ),
            "{grown:?}"
        );
        assert_eq!(
            store.hint_backlog().await,
            Ok(vec![(
                2,
                HintBacklog {
                    count: 2,
                    bytes: one * 2
                }
            )])
        );
    }

    #[tokio::test]
    async fn expired_hints_are_dropped_on_read_on_put_and_when_asked() {
        let hour = u64::try_from(HOUR.as_millis()).expect("an hour in ms");
        let store = MemoryStore::new();
        put(&store, 2, "old", &blind(1, "a"), 0).await;
        put(&store, 2, "new", &blind(1, "b"), hour).await;
        put(&store, 3, "old", &blind(1, "c"), 0).await;
        let old = crate::hints::hint_bytes("old", &blind(1, "a"));
        // Exactly max_age old: still replayed.
        assert_eq!(all(&store, 2, hour).await.len(), 2);
        let batch = store
            .hints_for(2, 10, hour + 1, HOUR)
            .await
            .expect("hints_for");
        assert_eq!(
            batch
                .hints
                .iter()
                .map(|h| h.key.as_str())
                .collect::<Vec<_>>(),
            ["new"]
        );
        assert_eq!(
            batch.expired,
            HintBacklog {
                count: 1,
                bytes: old
            }
        );
        // Only that target's were dropped by its read.
        assert_eq!(
            store.hint_backlog().await.map(|b| b.len()),
            Ok(2),
            "target 3 still holds its hint"
        );
        // A put drops its target's expired hints first, and a key whose
        // hint expired starts a new one (at the new time).
        let put = store
            .put_hint(3, "old", &blind(4, "d"), hour + 1, &limits(1, 1 << 20))
            .await
            .expect("put_hint");
        assert_eq!(
            put.outcome,
            HintStored::Stored,
            "the expired one no longer counts"
        );
        assert_eq!(put.expired.count, 1);
        let [fresh] = &all(&store, 3, hour + 1).await[..] else {
            panic!("one hint")
        };
        assert_eq!(
            (fresh.stored_at, fresh.siblings.clone()),
            (hour + 1, blind(4, "d"))
        );
        // And when asked.
        assert_eq!(
            store.expire_hints(3 * hour, HOUR).await,
            Ok(vec![
                (
                    2,
                    HintBacklog {
                        count: 1,
                        bytes: crate::hints::hint_bytes("new", &blind(1, "b"))
                    }
                ),
                (
                    3,
                    HintBacklog {
                        count: 1,
                        bytes: fresh.bytes()
                    }
                ),
            ])
        );
        assert_eq!(store.hint_backlog().await, Ok(vec![]));
    }

    #[tokio::test]
    async fn removing_a_hint_read_before_a_merge_keeps_the_merge() {
        let store = MemoryStore::new();
        put(&store, 2, "k", &blind(1, "a"), 10).await;
        let [sent] = &all(&store, 2, 10).await[..] else {
            panic!("one hint")
        };
        // While `sent` is on its way, the target misses another write.
        put(&store, 2, "k", &blind(3, "b"), 20).await;
        assert_eq!(store.remove_hint(sent).await, Ok(false));
        let [newer] = &all(&store, 2, 20).await[..] else {
            panic!("the merged hint stays")
        };
        assert_eq!(newer.siblings.len(), 2);
        assert_eq!(store.remove_hint(newer).await, Ok(true));
        assert_eq!(store.remove_hint(newer).await, Ok(false), "gone already");
        // The key hinted again is a new generation: the stale `sent` (same
        // key, removed long ago) cannot remove it.
        put(&store, 2, "k", &blind(1, "a"), 30).await;
        assert_eq!(store.remove_hint(sent).await, Ok(false));
        assert_eq!(all(&store, 2, 30).await.len(), 1);
    }

    #[tokio::test]
    async fn hints_come_oldest_first_up_to_the_limit() {
        let store = MemoryStore::new();
        for (key, at) in [("a", 30), ("b", 10), ("c", 20), ("d", 10)] {
            put(&store, 2, key, &blind(1, key), at).await;
        }
        put(&store, 1, "z", &blind(1, "z"), 0).await;
        put(&store, 3, "y", &blind(1, "y"), 0).await;
        let batch = store.hints_for(2, 3, 40, HOUR).await.expect("hints_for");
        let order: Vec<(&str, u64)> = batch
            .hints
            .iter()
            .map(|h| (h.key.as_str(), h.stored_at))
            .collect();
        assert_eq!(order, [("b", 10), ("d", 10), ("c", 20)]);
        assert!(batch.hints.iter().all(|h| h.target == 2));
        assert_eq!(
            store.hints_for(2, 0, 40, HOUR).await.map(|b| b.hints),
            Ok(vec![])
        );
    }
}
