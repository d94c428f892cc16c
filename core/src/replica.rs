//! One replica's storage logic: apply versions sent by coordinators, serve
//! its siblings for a key, and mint the version for a write it coordinates,
//! keeping every key within its limits.
use crate::anti_entropy::{entry_digest, DeferredIndex, Index};
use crate::stopwatch::Stopwatch;
use crate::store::{Store, StoreError};
use crate::version::{Actor, Dot, Siblings, Version, VersionError, VersionVector};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;

pub use crate::input::{MAX_KEY_LEN, MAX_VALUE_LEN};

/// Bounds on one key's sibling set, checked on the merged set before
/// anything is stored (by the coordinator for a write, by every replica for
/// what it is sent), so no key grows past them through writes, replication
/// or repair, and every key fits an RPC frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Siblings (concurrent versions) one key may hold.
    pub max_siblings: usize,
    /// Bytes one key may hold, counted by [`Siblings::footprint`].
    pub max_bytes: usize,
}

impl KeyLimits {
    pub const DEFAULT_MAX_SIBLINGS: usize = 64;
    pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;
}

impl Default for KeyLimits {
    fn default() -> Self {
        KeyLimits {
            max_siblings: Self::DEFAULT_MAX_SIBLINGS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// Why a replica would not store something. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error("key {key:?} would hold {siblings} siblings (limit {limit}): read it and write with the context the read returned to resolve them, or write with overwrite=true")]
    TooManySiblings {
        key: String,
        siblings: usize,
        limit: usize,
    },
    #[error("key {key:?} would hold {bytes} bytes (limit {limit}): read it and write with the context the read returned to resolve its siblings, or write with overwrite=true")]
    TooManyBytes {
        key: String,
        bytes: usize,
        limit: usize,
    },
    #[error("key {key:?}: {reason}")]
    Version { key: String, reason: String },
}

impl Refusal {
    /// A refusal because of a key limit (the client can resolve it), not
    /// corruption.
    pub fn is_key_limit(&self) -> bool {
        matches!(
            self,
            Refusal::TooManySiblings { .. } | Refusal::TooManyBytes { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The write's context cannot have been returned by a read of this key
    /// (see [`check_context`]); nothing was stored.
    #[error("{0}")]
    BadContext(String),
}

#[derive(Clone)]
pub struct Replica {
    actor: Actor,
    store: Arc<dyn Store>,
    /// Bounds a write minted here must keep.
    limits: KeyLimits,
    /// Bounds on what replicas exchange to converge (replication, read
    /// repair, hints, anti-entropy): `limits` times the replication
    /// factor. Two replicas can each accept writes up to `limits` while
    /// apart; refusing their union would keep them apart forever, and each
    /// actor's unresolved versions are bounded by `limits` at its own
    /// coordinator, so the union stays within N times them.
    apply_limits: KeyLimits,
    /// What anti-entropy compares: every key's digest, kept in step with
    /// the store by every update that goes through this replica (digested
    /// when the index is next read).
    index: Arc<DeferredIndex>,
}

/// The most [`Replica::with_replicas`] scales the limits by: the largest
/// key (`--key-max-bytes` is at most a frame / 8) still fits a frame.
pub const MAX_APPLY_FACTOR: usize = 8;

/// Keys read per page when the index is built from the store.
const INDEX_SCAN_PAGE: usize = 1024;

impl Replica {
    /// A replica with an empty index (a new store, or tests); see
    /// [`Replica::load`] for a store that holds data.
    pub fn new(actor: Actor, store: Arc<dyn Store>, limits: KeyLimits) -> Self {
        Self {
            actor,
            store,
            limits,
            apply_limits: limits,
            index: Arc::default(),
        }
    }

    /// The same replica in a cluster of `n` replicas: what it accepts from
    /// the others is bounded by `n` times its limits (at most 8 times, what
    /// an RPC frame is sized for; see [`Replica::apply`]).
    pub fn with_replicas(mut self, n: usize) -> Self {
        let factor = n.clamp(1, MAX_APPLY_FACTOR);
        self.apply_limits = KeyLimits {
            max_siblings: self.limits.max_siblings.saturating_mul(factor),
            max_bytes: self.limits.max_bytes.saturating_mul(factor),
        };
        self
    }

    /// A replica whose anti-entropy index is built from what `store`
    /// holds, in one streaming pass of [`INDEX_SCAN_PAGE`] keys a page.
    pub async fn load(
        actor: Actor,
        store: Arc<dyn Store>,
        limits: KeyLimits,
    ) -> Result<Self, StoreError> {
        let started = Stopwatch::start();
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.scan(after.as_deref(), INDEX_SCAN_PAGE).await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            entries.extend(page.iter().filter_map(|(key, siblings)| {
                entry_digest(siblings).map(|digest| (key.clone(), digest))
            }));
        }
        let keys = entries.len();
        let index = Index::from_entries(entries);
        metrics::histogram!("anti_entropy_index_build_seconds").record(started.seconds());
        if keys > 0 {
            tracing::info!(
                keys,
                seconds = started.seconds(),
                "anti-entropy index built from the store"
            );
        }
        Ok(Self {
            actor,
            store,
            limits,
            apply_limits: limits,
            index: Arc::new(DeferredIndex::new(index)),
        })
    }

    /// The anti-entropy index (read it briefly; never across an await).
    pub fn index(&self) -> &DeferredIndex {
        &self.index
    }

    /// Keep the index in step with what the store now holds for `key`.
    /// Two concurrent updates of one key may record out of order; the
    /// stale digest then shows as a difference that the next comparison
    /// repairs (a no-op merge records the stored state again).
    fn record(&self, key: &str, stored: &Siblings) {
        self.index.record(key, stored);
    }

    /// After a failed update of `key`: the update may have been applied
    /// all the same (a commit whose connection was lost may have
    /// committed), so the index takes what the store holds now instead of
    /// keeping a digest that may be stale — a stale digest that matches the
    /// peers' would hide the difference from anti-entropy for good. If the
    /// store cannot be read either, the key leaves the index: peers that
    /// hold it then see a difference and send it, and the merge records
    /// the stored state again.
    async fn store_failed(&self, key: &str, error: StoreError) -> ReplicaError {
        match self.store.get(key).await {
            Ok(stored) => self.record(key, &stored),
            Err(again) => {
                tracing::warn!(key, "cannot read a key back after a failed update: {again}");
                self.index.forget(key);
            }
        }
        ReplicaError::Store(error)
    }

    pub fn id(&self) -> crate::version::NodeId {
        self.actor.node
    }

    /// The actor this replica mints dots as (its node in this incarnation).
    pub fn actor(&self) -> Actor {
        self.actor
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Siblings this replica holds for `key`.
    pub async fn fetch(&self, key: &str) -> Result<Siblings, StoreError> {
        let started = Stopwatch::start();
        let out = self.store.get(key).await;
        metrics::histogram!("store_seconds", "op" => "get").record(started.seconds());
        out
    }

    /// Whether `after` (the merge of `before` with something new) may be
    /// stored. A change that does not grow the dimension over its limit is
    /// always allowed, so a key over a limit (limits lowered) can still be
    /// resolved.
    fn check_limits(
        limits: &KeyLimits,
        key: &str,
        before: &Siblings,
        after: &Siblings,
    ) -> Result<(), Refusal> {
        if after.len() > limits.max_siblings && after.len() > before.len() {
            return Err(Refusal::TooManySiblings {
                key: key.to_string(),
                siblings: after.len(),
                limit: limits.max_siblings,
            });
        }
        let bytes = after.footprint();
        if bytes > limits.max_bytes && bytes > before.footprint() {
            return Err(Refusal::TooManyBytes {
                key: key.to_string(),
                bytes,
                limit: limits.max_bytes,
            });
        }
        Ok(())
    }

    /// Metrics of a key as stored: size of its sibling set and of its
    /// context, and whether it is within a quarter of a limit.
    fn observe(&self, stored: &Siblings) {
        metrics::histogram!("key_siblings").record(stored.len() as f64);
        metrics::histogram!("version_vector_entries").record(stored.context_len() as f64);
        let near = |used: usize, limit: usize| used.saturating_mul(4) >= limit.saturating_mul(3);
        if near(stored.len(), self.limits.max_siblings)
            || near(stored.footprint(), self.limits.max_bytes)
        {
            metrics::counter!("key_near_limit_total").increment(1);
        }
    }

    fn refused(&self, refusal: Refusal) -> ReplicaError {
        match &refusal {
            Refusal::Version { key, reason } => {
                metrics::counter!("replica_refusals_total", "reason" => "version").increment(1);
                tracing::error!(key, "refused a version: {reason}");
            }
            _ => {
                metrics::counter!("replica_refusals_total", "reason" => "key_limit").increment(1);
                tracing::debug!("{refusal}");
            }
        }
        ReplicaError::Refused(refusal)
    }

    /// Merge versions sent by a coordinator (or by read repair, a hint,
    /// anti-entropy): all of them or, on a dot conflict or past the
    /// replication bounds (see `apply_limits`), none.
    pub async fn apply(&self, key: &str, incoming: &Siblings) -> Result<Siblings, ReplicaError> {
        let started = Stopwatch::start();
        let mut refusal = None;
        let out = self
            .store
            .update(key, &mut |local| {
                // The store may run this more than once (optimistic retry).
                refusal = None;
                match local.synced(incoming) {
                    Ok(None) => false,
                    Ok(Some(merged)) => {
                        match Self::check_limits(&self.apply_limits, key, local, &merged) {
                            Ok(()) => {
                                *local = merged;
                                true
                            }
                            Err(r) => {
                                refusal = Some(r);
                                false
                            }
                        }
                    }
                    Err(e) => {
                        refusal = Some(version_refusal(key, e));
                        false
                    }
                }
            })
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => return Err(self.store_failed(key, e).await),
        };
        metrics::histogram!("store_seconds", "op" => "apply").record(started.seconds());
        if let Some(refusal) = refusal {
            return Err(self.refused(refusal));
        }
        self.observe(&out);
        self.record(key, &out);
        Ok(out)
    }

    /// Mint a new version for a write this node coordinates and store it.
    /// `overwrite`: the write supersedes every sibling this replica holds
    /// (its context is joined with theirs), last-writer-wins style.
    /// Returns the version and the sibling set after it, which is what the
    /// coordinator ships to the other replicas: shipping the whole set (not
    /// just the new version) means a replica that learns dot `(me, k)` also
    /// learns every earlier dot of mine for this key, so a context built from
    /// any replica's answer never covers a write its reader did not see.
    pub async fn write_local(
        &self,
        key: &str,
        context: &VersionVector,
        value: String,
        overwrite: bool,
    ) -> Result<(Version, Siblings), ReplicaError> {
        let started = Stopwatch::start();
        let mut minted = None;
        let mut refusal = None;
        let mut bad_context = None;
        let actor = self.actor;
        let now = crate::wall_clock::now_ms();
        let after = self
            .store
            .update(key, &mut |local| {
                // The store may run this more than once (optimistic retry).
                refusal = None;
                minted = None;
                bad_context = None;
                if let Err(reason) = check_context(key, actor, context, local) {
                    bad_context = Some(reason);
                    return false;
                }
                let context = if overwrite {
                    context.join(&local.context())
                } else {
                    context.clone()
                };
                let version = match local.mint(actor, &context, value.clone(), now) {
                    Ok(version) => version,
                    Err(e) => {
                        refusal = Some(version_refusal(key, e));
                        return false;
                    }
                };
                let mut merged = local.clone();
                match merged.sync_one(version.clone()) {
                    Ok(_) => {}
                    Err(e) => {
                        refusal = Some(version_refusal(key, e));
                        return false;
                    }
                }
                if let Err(r) = Self::check_limits(&self.limits, key, local, &merged) {
                    refusal = Some(r);
                    return false;
                }
                *local = merged;
                minted = Some(version);
                true
            })
            .await;
        let after = match after {
            Ok(after) => after,
            Err(e) => return Err(self.store_failed(key, e).await),
        };
        metrics::histogram!("store_seconds", "op" => "write").record(started.seconds());
        if let Some(reason) = bad_context {
            metrics::counter!("context_rejections_total").increment(1);
            return Err(ReplicaError::BadContext(reason));
        }
        if let Some(refusal) = refusal {
            return Err(self.refused(refusal));
        }
        let version = minted.ok_or_else(|| {
            ReplicaError::Store(StoreError::Backend("store did not run the update".into()))
        })?;
        self.observe(&after);
        self.record(key, &after);
        Ok((version, after))
    }
}

/// Whether `context`, sent with a write of `key` to the replica minting as
/// `own`, can have been returned by a read of this key, judged against what
/// the replica holds (`local`). Contexts are signed by the cluster, so
/// these checks are a second line behind the signature (a leaked secret, a
/// bug): they cost nothing, as they run on the copy the write reads anyway.
///
/// - It may not cover a dot of this replica's own actor that the replica
///   never had: every dot it mints is stored here before anyone sees it.
/// - It is causally closed: covering a version's dot, it covers what that
///   version had seen (a read hands out the join of the clocks it merged).
///   One that covers a version without its past would supersede a version
///   its writer never saw.
pub fn check_context(
    key: &str,
    own: Actor,
    context: &VersionVector,
    local: &Siblings,
) -> Result<(), String> {
    if context.is_empty() {
        return Ok(());
    }
    let own_claims: Vec<Dot> = context
        .beyond(&local.context())
        .into_iter()
        .filter(|d| d.actor() == own)
        .collect();
    if !own_claims.is_empty() {
        return Err(format!(
            "context covers {}, which key {key:?} never had: send the context that a read of this key returned",
            show_dots(&own_claims)
        ));
    }
    for v in local.versions() {
        if context.covers(v.dot) && !context.descends_from(&v.context) {
            let missing = v.context.beyond(context);
            return Err(format!(
                "context covers {} of key {key:?} but not what that version had seen ({}): it was not returned by a read of this key",
                v.dot,
                show_dots(&missing)
            ));
        }
    }
    Ok(())
}

/// `n2:7, n3.4:1` (at most a few).
fn show_dots(dots: &[Dot]) -> String {
    const SHOWN: usize = 4;
    let mut text = dots
        .iter()
        .take(SHOWN)
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if dots.len() > SHOWN {
        text += &format!(" and {} more", dots.len() - SHOWN);
    }
    text
}

fn version_refusal(key: &str, e: VersionError) -> Refusal {
    Refusal::Version {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hints::{Hint, HintBacklog, HintBatch, HintLimits, HintPut};
    use crate::store::{MemoryStore, Update};
    use crate::version::{Incarnation, NodeId};
    use std::sync::Mutex;
    use std::time::Duration;

    /// This replica mints as node 1; the siblings it is sent come from
    /// nodes 10 and up.
    const OWN: NodeId = 1;

    /// Concurrent versions, one from each of `nodes`, each holding `value`.
    fn concurrent(nodes: std::ops::Range<NodeId>, value: &str) -> Siblings {
        Siblings::from_versions(nodes.map(|node| Version {
            dot: Dot::new(node, 1),
            context: VersionVector::new(),
            value: value.into(),
            timestamp_ms: 0,
        }))
        .expect("distinct dots")
    }

    /// The context of a read that saw the first versions of `nodes`.
    fn seen(nodes: std::ops::Range<NodeId>) -> VersionVector {
        VersionVector::from_entries(nodes.map(|node| (node, 1)))
    }

    fn replica(store: Arc<dyn Store>, limits: KeyLimits) -> Replica {
        // Three replicas: what the others send may reach three times the limits.
        Replica::new(Actor::new(OWN, 0), store, limits).with_replicas(3)
    }

    fn refused_siblings(out: Result<(Version, Siblings), ReplicaError>) -> bool {
        matches!(
            out,
            Err(ReplicaError::Refused(Refusal::TooManySiblings { .. }))
        )
    }

    fn refused_bytes(out: Result<(Version, Siblings), ReplicaError>) -> bool {
        matches!(
            out,
            Err(ReplicaError::Refused(Refusal::TooManyBytes { .. }))
        )
    }

    #[tokio::test]
    async fn a_write_that_shrinks_a_key_past_its_sibling_limit_is_taken_and_one_that_grows_it_is_not(
    ) {
        let limits = KeyLimits {
            max_siblings: 4,
            max_bytes: KeyLimits::DEFAULT_MAX_BYTES,
        };
        let replica = replica(Arc::new(MemoryStore::new()), limits);
        // Eight siblings, twice the limit: the union of what replicas took
        // while apart.
        replica
            .apply("k", &concurrent(10..18, "v"))
            .await
            .expect("within three times the limits");
        // Resolving three of them leaves six, still past the limit but fewer.
        let (_, after) = replica
            .write_local("k", &seen(10..13), "resolved".into(), false)
            .await
            .expect("a write that leaves fewer siblings is taken");
        assert_eq!(after.len(), 6);
        assert_eq!(replica.fetch("k").await.expect("read").len(), 6);
        // Resolving none adds a seventh.
        assert!(refused_siblings(
            replica
                .write_local("k", &VersionVector::new(), "more".into(), false)
                .await
        ));
        assert_eq!(replica.fetch("k").await.expect("read").len(), 6);
        // What other replicas send is bounded by three times the limits.
        assert!(matches!(
            replica.apply("k", &concurrent(20..27, "v")).await,
            Err(ReplicaError::Refused(Refusal::TooManySiblings {
                siblings: 13,
                limit: 12,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn a_write_that_shrinks_a_key_past_its_byte_limit_is_taken_and_one_that_grows_it_is_not()
    {
        let limits = KeyLimits {
            max_siblings: KeyLimits::DEFAULT_MAX_SIBLINGS,
            max_bytes: 1_000,
        };
        let replica = replica(Arc::new(MemoryStore::new()), limits);
        let big = "x".repeat(400);
        let held = replica
            .apply("k", &concurrent(10..15, &big))
            .await
            .expect("within three times the limits");
        assert!(held.footprint() > 2_000 && held.footprint() <= 3_000);
        // Two big versions resolved by a small one: fewer bytes, still past
        // the limit.
        let (_, after) = replica
            .write_local("k", &seen(10..12), "small".into(), false)
            .await
            .expect("a write that leaves fewer bytes is taken");
        assert!(after.footprint() > 1_000 && after.footprint() < held.footprint());
        assert!(refused_bytes(
            replica
                .write_local("k", &VersionVector::new(), "small".into(), false)
                .await
        ));
        assert_eq!(replica.fetch("k").await.expect("read"), after);
    }

    /// A store whose first attempt at the next update runs against a stale
    /// copy of the key and is thrown away, as an optimistic store's
    /// attempt that lost a race to another writer is: the update then runs
    /// again against what is stored.
    /// It also counts the updates it wrote.
    #[derive(Default)]
    struct LosesTheFirstRace {
        inner: MemoryStore,
        stale: Mutex<Option<Siblings>>,
        writes: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Store for LosesTheFirstRace {
        async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
            self.inner.get(key).await
        }
        async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
            let stale = self.stale.lock().expect("not poisoned").take();
            if let Some(mut stale) = stale {
                update(&mut stale);
            }
            self.inner
                .update(key, &mut |local| {
                    let wrote = update(local);
                    if wrote {
                        self.writes
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    wrote
                })
                .await
        }
        async fn keys(&self) -> Result<Vec<String>, StoreError> {
            self.inner.keys().await
        }
        async fn scan(
            &self,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Vec<(String, Siblings)>, StoreError> {
            self.inner.scan(after, limit).await
        }
        async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError> {
            self.inner.incarnation(fresh).await
        }
        async fn put_hint(
            &self,
            target: NodeId,
            key: &str,
            siblings: &Siblings,
            now_ms: u64,
            limits: &HintLimits,
        ) -> Result<HintPut, StoreError> {
            self.inner
                .put_hint(target, key, siblings, now_ms, limits)
                .await
        }
        async fn hints_for(
            &self,
            target: NodeId,
            limit: usize,
            now_ms: u64,
            max_age: Duration,
        ) -> Result<HintBatch, StoreError> {
            self.inner.hints_for(target, limit, now_ms, max_age).await
        }
        async fn remove_hint(&self, hint: &Hint) -> Result<bool, StoreError> {
            self.inner.remove_hint(hint).await
        }
        async fn expire_hints(
            &self,
            now_ms: u64,
            max_age: Duration,
        ) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
            self.inner.expire_hints(now_ms, max_age).await
        }
        async fn hint_backlog(&self) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
            self.inner.hint_backlog().await
        }
    }

    #[tokio::test]
    async fn only_the_attempt_a_store_keeps_decides_an_apply() {
        let limits = KeyLimits {
            max_siblings: 2,
            max_bytes: KeyLimits::DEFAULT_MAX_BYTES,
        };
        let store = Arc::new(LosesTheFirstRace::default());
        let replica = replica(store.clone(), limits);
        // The lost attempt sees six siblings, to which a seventh is past
        // three times the limit; what is stored holds none.
        *store.stale.lock().expect("not poisoned") = Some(concurrent(10..16, "v"));
        let out = replica.apply("k", &concurrent(20..21, "v")).await;
        assert!(
            out.is_ok(),
            "the kept attempt was within the limits: {out:?}"
        );
        assert_eq!(replica.fetch("k").await.expect("read").len(), 1);
    }

    #[tokio::test]
    async fn only_the_attempt_a_store_keeps_decides_a_write() {
        let store = Arc::new(LosesTheFirstRace::default());
        let replica = replica(store.clone(), KeyLimits::default());
        let (first, _) = replica
            .write_local("k", &VersionVector::new(), "a".into(), false)
            .await
            .expect("first write");
        // A context naming this replica's own dot, which the stale copy
        // has not got (so that attempt finds the context impossible), nor
        // room for (a seventh sibling past three times the limit).
        *store.stale.lock().expect("not poisoned") = Some(Siblings::new());
        let context = first.clock();
        let (second, after) = replica
            .write_local("k", &context, "b".into(), false)
            .await
            .expect("the kept attempt holds the dot the context names");
        assert_eq!(after.versions(), &[second.clone()][..]);
        assert!(second.context.covers(first.dot));
        *store.stale.lock().expect("not poisoned") = Some(concurrent(10..16, "v"));
        let limits_then = KeyLimits {
            max_siblings: 2,
            max_bytes: KeyLimits::DEFAULT_MAX_BYTES,
        };
        let tight = Replica::new(Actor::new(OWN, 0), store.clone(), limits_then);
        let out = tight
            .write_local("k", &VersionVector::new(), "c".into(), false)
            .await;
        assert!(out.is_ok(), "the kept attempt makes two siblings: {out:?}");
    }

    #[tokio::test]
    async fn an_apply_of_what_the_replica_already_holds_writes_nothing() {
        let store = Arc::new(LosesTheFirstRace::default());
        let replica = replica(store.clone(), KeyLimits::default());
        let writes = || store.writes.load(std::sync::atomic::Ordering::SeqCst);
        replica
            .apply("k", &concurrent(10..13, "v"))
            .await
            .expect("apply");
        assert_eq!(writes(), 1);
        for again in [
            concurrent(10..13, "v"),
            concurrent(11..12, "v"),
            Siblings::new(),
        ] {
            let out = replica.apply("k", &again).await.expect("apply");
            assert_eq!(out.len(), 3);
        }
        assert_eq!(writes(), 1, "an apply that changed nothing was written");
        assert!(replica.apply("other", &Siblings::new()).await.is_ok());
        assert_eq!(writes(), 1, "an empty apply wrote a key");
    }

    #[tokio::test]
    async fn a_write_that_brings_a_key_to_exactly_its_limits_is_taken() {
        // The footprint of one write of this value, measured with room to
        // spare; then the same write against exactly that many bytes.
        let roomy = replica(Arc::new(MemoryStore::new()), KeyLimits::default());
        let value = "x".repeat(100);
        let (_, one) = roomy
            .write_local("k", &VersionVector::new(), value.clone(), false)
            .await
            .expect("write");
        let exact = KeyLimits {
            max_siblings: 2,
            max_bytes: one.footprint(),
        };
        let tight = replica(Arc::new(MemoryStore::new()), exact);
        let out = tight
            .write_local("k", &VersionVector::new(), value, false)
            .await;
        assert!(
            out.is_ok(),
            "exactly max_bytes is within the limit: {out:?}"
        );
        // Two siblings is exactly the sibling limit (the second write is
        // small: its bytes past the limit are not the point here).
        let tight = replica(
            Arc::new(MemoryStore::new()),
            KeyLimits {
                max_siblings: 2,
                max_bytes: KeyLimits::DEFAULT_MAX_BYTES,
            },
        );
        for value in ["a", "b"] {
            let out = tight
                .write_local("k", &VersionVector::new(), value.into(), false)
                .await;
            assert!(
                out.is_ok(),
                "two siblings is within a limit of two: {out:?}"
            );
        }
        assert!(refused_siblings(
            tight
                .write_local("k", &VersionVector::new(), "c".into(), false)
                .await
        ));
    }

    fn version_of(node: NodeId, counter: u64, context: VersionVector) -> Version {
        Version {
            dot: Dot::new(node, counter),
            context,
            value: "v".into(),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn a_context_may_not_claim_a_dot_of_the_replicas_own_it_never_had() {
        let own = Actor::new(OWN, 0);
        let claim = VersionVector::from_entries([(OWN, 1)]);
        assert!(
            check_context("k", own, &claim, &Siblings::new()).is_err(),
            "a context naming this replica's dot on a key it holds nothing of"
        );
        let held = Siblings::from_versions([version_of(OWN, 1, VersionVector::new())])
            .expect("one version");
        assert!(check_context("k", own, &claim, &held).is_ok());
        assert!(check_context("k", own, &VersionVector::from_entries([(OWN, 2)]), &held).is_err());
    }

    #[test]
    fn a_context_need_not_have_seen_the_past_of_versions_it_does_not_cover() {
        let own = Actor::new(OWN, 0);
        // Node 10's version had seen node 11's first; a context covering
        // neither (only node 12's) is one a read may hand out, as is one
        // covering both; covering 10's without 11's is not.
        let held =
            Siblings::from_versions([version_of(10, 1, VersionVector::from_entries([(11, 1)]))])
                .expect("one version");
        for (context, ok) in [
            (VersionVector::from_entries([(12, 1)]), true),
            (VersionVector::from_entries([(10, 1), (11, 1)]), true),
            (VersionVector::from_entries([(10, 1)]), false),
        ] {
            assert_eq!(
                check_context("k", own, &context, &held).is_ok(),
                ok,
                "{context:?}"
            );
        }
    }
}
