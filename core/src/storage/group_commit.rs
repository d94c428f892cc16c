//! Group commit over a table of versioned rows, shared by the SQLite and
//! PostgreSQL stores.
//!
//! An update reads the key's row (sibling set + row version), merges in
//! Rust, and hands the new row to the store's single *committer* task with
//! the version it read. The committer takes everything queued (one row
//! per key per batch) and has the backend write it with **one commit**: a
//! row whose version is still the one read is written, any other is not,
//! and its update merges again on top of the newer row — optimistic
//! concurrency, so no update is ever lost and none waits on a lock while
//! another merges. Nothing is acknowledged before the commit that holds it
//! returned; many acknowledged writes share one durable flush.
//!
//! Optionally a write-through [`RowCache`] serves reads and the read half
//! of updates, for backends whose database has this process as its only
//! writer (the committer fills it, in commit order, before acknowledging).
//!
//! Hints (`crate::hints`) bypass the committer: they are written
//! only for a replica that missed a write, each in a commit of its own
//! that is durable before the call returns. Every hint operation holds
//! the store's hint lock, so a read-merge-write of a hint never interleaves
//! with another hint operation of this process — the database's only
//! writer — and each write is still conditional on the generation it read
//! (optimistic, as rows are), so even a foreign writer could not make a
//! merge lose a write.
use super::row_cache::RowCache;
use super::{
    decode, encode, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend, RowWrite,
};
use crate::hints::{expired_before, plan_put, HintPlan};
use crate::hints::{Hint, HintBacklog, HintBatch, HintLimits, HintPut, HintStored};
use crate::store::Update;
use crate::store::{Store, StoreError};
use crate::version::{Incarnation, NodeId, Siblings};
use async_trait::async_trait;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Rows written by one commit at most.
const MAX_BATCH: usize = 128;
/// Updates waiting for the committer before callers wait to enqueue.
const QUEUE: usize = 1024;
/// How often an update retries after losing a race for the same key.
/// Each retry means another writer committed, so this is only reached by a
/// pathologically hot key.
const MAX_UPDATE_ATTEMPTS: usize = 64;

/// How often `put_hint` re-reads a hint whose generation changed between
/// its read and its write. Under the hint lock nothing in this process can
/// change it, so this is only reached if another process writes the
/// database.
const MAX_HINT_ATTEMPTS: usize = 4;

/// A queued row with the siblings it encodes and who waits for it.
struct Job {
    row: RowWrite,
    siblings: Siblings,
    /// Whether the row was written (false: it changed meanwhile; retry).
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// A [`Store`] on a [`RowBackend`], with a committer task and a cache.
pub struct GroupCommit<B> {
    backend: Arc<B>,
    committer: mpsc::Sender<Job>,
    cache: Arc<RowCache>,
    /// Held by every hint operation (see the module's documentation).
    hints: tokio::sync::Mutex<()>,
}

impl<B: RowBackend> GroupCommit<B> {
    /// Start the committer. `cache_bytes` = 0 turns the cache off;
    /// anything else requires that nothing but this store writes the
    /// backend.
    pub fn new(backend: Arc<B>, cache_bytes: usize) -> Self {
        let (committer, queue) = mpsc::channel(QUEUE);
        let cache = Arc::new(RowCache::new(cache_bytes));
        tokio::spawn(commit_loop(backend.clone(), queue, cache.clone()));
        Self {
            backend,
            committer,
            cache,
            hints: tokio::sync::Mutex::new(()),
        }
    }

    /// Close every connection and give up ownership of the database.
    pub async fn close(&self) {
        self.backend.close().await;
    }

    /// The incarnation the database records, if any.
    pub async fn recorded_incarnation(&self) -> Result<Option<Incarnation>, StoreError> {
        match self.backend.read_incarnation().await? {
            Some(stored) => Ok(Some(self.incarnation_from(stored)?)),
            None => Ok(None),
        }
    }

    /// Record `fresh` as this node's incarnation whatever was recorded
    /// before: after restoring a backup, whose recorded incarnation may
    /// already have minted dots the backup does not hold. Returns the
    /// incarnation recorded before.
    pub async fn renew_incarnation(
        &self,
        fresh: Incarnation,
    ) -> Result<Option<Incarnation>, StoreError> {
        let before = self.recorded_incarnation().await?;
        let stored = self
            .backend
            .record_incarnation(RecordIncarnation::Replace(fresh))
            .await?;
        self.incarnation_from(stored)?;
        Ok(before)
    }

    /// An incarnation as stored (a BIGINT) back in range, or an error
    /// naming the database: a value out of range was not written by us.
    fn incarnation_from(&self, stored: i64) -> Result<Incarnation, StoreError> {
        Incarnation::try_from(stored).map_err(|_| {
            StoreError::Backend(format!(
                "{} records incarnation {stored}, which is not one quorumd writes (0..={}): \
                 the node_meta table was changed by hand",
                self.backend.name(),
                Incarnation::MAX
            ))
        })
    }

    /// The key's committed siblings and row version (None: no row), from
    /// the cache or else the backend.
    async fn read_row(&self, key: &str) -> Result<Option<(Siblings, i64)>, StoreError> {
        if let Some(row) = self.cache.get(key) {
            return Ok(Some(row));
        }
        let ticket = self.cache.ticket();
        match self.backend.read_row(key).await? {
            Some((data, version)) => {
                let siblings = decode(key, &data)?;
                self.cache
                    .fill(ticket, key, (siblings.clone(), version), data.len());
                Ok(Some((siblings, version)))
            }
            None => Ok(None),
        }
    }

    async fn write_row(
        &self,
        key: &str,
        siblings: Siblings,
        expected: Option<i64>,
    ) -> Result<bool, StoreError> {
        let row = RowWrite {
            key: key.to_string(),
            data: encode(&siblings)?,
            expected,
        };
        let (done, written) = oneshot::channel();
        let stopped =
            || StoreError::Backend(format!("the {} committer has stopped", self.backend.name()));
        self.committer
            .send(Job {
                row,
                siblings,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        written.await.map_err(|_| stopped())?
    }
}

/// Hint figures between the core's types and the database's BIGINTs.
impl<B: RowBackend> GroupCommit<B> {
    /// A value to store: every one quorumd stores fits a BIGINT; one that
    /// does not (a clock in the far future) is refused, not wrapped.
    fn to_store(value: impl TryInto<i64>, what: &str) -> Result<i64, StoreError> {
        value
            .try_into()
            .map_err(|_| StoreError::Backend(format!("{what} does not fit the database's BIGINT")))
    }

    /// A stored figure back in range, or an error naming the database: a
    /// value out of range was not written by us.
    fn stored_figure<T: TryFrom<i64>>(&self, stored: i64, what: &str) -> Result<T, StoreError> {
        T::try_from(stored).map_err(|_| {
            StoreError::Backend(format!(
                "{} holds {what} {stored} in its hints, which quorumd never writes: \
                 the hints table was changed by hand",
                self.backend.name()
            ))
        })
    }

    /// The cutoff of `max_age` at `now_ms`, as stored times compare to it.
    fn cutoff(now_ms: u64, max_age: Duration) -> Result<i64, StoreError> {
        Self::to_store(expired_before(now_ms, max_age), "the time")
    }

    /// A hint row decoded, with the bytes it is counted as in the table.
    fn hint_from_row(&self, row: HintRow) -> Result<(Hint, usize), StoreError> {
        let target: NodeId = self.stored_figure(row.target, "target")?;
        let siblings = decode(&row.key, &row.data).map_err(|e| match e {
            StoreError::Corrupt { key, reason } => StoreError::Corrupt {
                key,
                reason: format!("hint for node {target}: {reason}"),
            },
            other => other,
        })?;
        let hint = Hint {
            target,
            key: row.key,
            siblings,
            stored_at: self.stored_figure(row.stored_at, "stored_at")?,
            generation: self.stored_figure(row.generation, "generation")?,
        };
        Ok((hint, self.stored_figure(row.bytes, "bytes")?))
    }

    /// What `delete_expired_hints` deleted, summed per target.
    fn tally(&self, deleted: Vec<(i64, i64)>) -> Result<BTreeMap<NodeId, HintBacklog>, StoreError> {
        let mut sums: BTreeMap<NodeId, HintBacklog> = BTreeMap::new();
        for (target, bytes) in deleted {
            let sum = sums
                .entry(self.stored_figure(target, "target")?)
                .or_default();
            *sum = sum
                .plus(self.stored_figure(bytes, "bytes")?)
                .ok_or_else(|| StoreError::Backend("hint figures overflow".into()))?;
        }
        Ok(sums)
    }

    /// Delete `target`'s expired hints if `totals` says it has any; what
    /// was deleted.
    async fn expire_target(
        &self,
        target: NodeId,
        totals: &HintTotals,
        cutoff: i64,
    ) -> Result<HintBacklog, StoreError> {
        if totals.expired == 0 {
            return Ok(HintBacklog::default());
        }
        let deleted = self
            .backend
            .delete_expired_hints(Some(i64::from(target)), cutoff)
            .await?;
        Ok(self.tally(deleted)?.remove(&target).unwrap_or_default())
    }
}

/// Take queued writes in batches (at most one per key, so each row's
/// condition is unambiguous) and commit each batch once.
async fn commit_loop<B: RowBackend>(
    backend: Arc<B>,
    mut queue: mpsc::Receiver<Job>,
    cache: Arc<RowCache>,
) {
    let mut held: VecDeque<Job> = VecDeque::new();
    // A batch's rows and their waiters, kept from batch to batch: a
    // commit is at most a few rows, and a new pair of vectors for each
    // was a sizeable share of the simulator's allocations.
    let (mut rows, mut waiters) = (Vec::new(), Vec::new());
    loop {
        if held.is_empty() {
            match queue.recv().await {
                Some(job) => held.push_back(job),
                None => return,
            }
        }
        while held.len() < MAX_BATCH * 2 {
            match queue.try_recv() {
                Ok(job) => held.push_back(job),
                Err(_) => break,
            }
        }
        // Each held job once, in order: into the batch unless it is full
        // or already has the job's key (found by scanning the batch: at
        // most MAX_BATCH short keys, and no key copied), else back behind
        // the others for a later batch, in the order it came.
        for _ in 0..held.len() {
            let Some(job) = held.pop_front() else { break };
            let fits =
                rows.len() < MAX_BATCH && !rows.iter().any(|row: &RowWrite| row.key == job.row.key);
            if fits {
                rows.push(job.row);
                waiters.push((job.siblings, job.done));
            } else {
                held.push_back(job);
            }
        }
        metrics::histogram!("store_commit_batch_rows").record(rows.len() as f64);
        let committed = if crate::buggify::fires(crate::buggify::FaultPoint::CommitterLosesSession)
        {
            Err(StoreError::Backend(
                "the committer lost its database session (simulated fault point)".into(),
            ))
        } else {
            backend.write_rows(&rows).await
        };
        match committed {
            Ok(written) => {
                for (row, (siblings, done)) in rows.drain(..).zip(waiters.drain(..)) {
                    let ok = written.contains(&row.key);
                    if ok {
                        let version = row.expected.map_or(0, |v| v + 1);
                        cache.committed(&row.key, (siblings, version), row.data.len());
                    } else {
                        cache.forget(&row.key);
                    }
                    let _ = done.send(Ok(ok));
                }
            }
            Err(e) => {
                // The commit may or may not have happened: forget what we
                // think we know about these keys.
                for (row, (_, done)) in rows.drain(..).zip(waiters.drain(..)) {
                    cache.forget(&row.key);
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
}

#[async_trait]
impl<B: RowBackend> Store for GroupCommit<B> {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
        Ok(self
            .read_row(key)
            .await?
            .map(|(siblings, _)| siblings)
            .unwrap_or_default())
    }

    /// Read, merge, and write back through the committer only if the row
    /// did not change meanwhile; retry otherwise.
    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let (mut siblings, expected) = match self.read_row(key).await? {
                Some((siblings, version)) => (siblings, Some(version)),
                None => (Siblings::new(), None),
            };
            if !update(&mut siblings) {
                return Ok(siblings);
            }
            if self.write_row(key, siblings.clone(), expected).await? {
                return Ok(siblings);
            }
            // Lost the race: someone else wrote the key; merge again on top.
        }
        Err(StoreError::Backend(format!(
            "key {key:?} changed under {MAX_UPDATE_ATTEMPTS} consecutive updates; giving up"
        )))
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.backend.keys().await
    }

    /// Committed rows only: a write still in the committer's queue has not
    /// been acknowledged, and whoever scans learns of it when it lands.
    async fn scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Siblings)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.backend
            .read_rows(after, limit)
            .await?
            .into_iter()
            .map(|(key, data)| {
                let siblings = decode(&key, &data)?;
                Ok((key, siblings))
            })
            .collect()
    }

    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError> {
        let stored = self
            .backend
            .record_incarnation(RecordIncarnation::IfAbsent { fresh })
            .await?;
        self.incarnation_from(stored)
    }

    /// Under the hint lock: drop the target's expired hints, read the
    /// held one and the target's totals, decide with the core's rules, and
    /// write conditionally on the generation read.
    async fn put_hint(
        &self,
        target: NodeId,
        key: &str,
        siblings: &Siblings,
        now_ms: u64,
        limits: &HintLimits,
    ) -> Result<HintPut, StoreError> {
        let _turn = self.hints.lock().await;
        let cutoff = Self::cutoff(now_ms, limits.max_age)?;
        let db_target = i64::from(target);
        let mut expired = HintBacklog::default();
        for _ in 0..MAX_HINT_ATTEMPTS {
            let totals = self.backend.hint_totals(db_target, cutoff).await?;
            let dropped = self.expire_target(target, &totals, cutoff).await?;
            expired = expired
                .join(dropped)
                .ok_or_else(|| StoreError::Backend("hint figures overflow".into()))?;
            let held = match self.backend.read_hint(db_target, key).await? {
                Some(row) => Some(self.hint_from_row(row)?),
                None => None,
            };
            let live = HintBacklog {
                count: self.stored_figure(totals.live, "a count")?,
                bytes: self.stored_figure(totals.live_bytes, "a sum of bytes")?,
            };
            let others = match &held {
                Some((_, bytes)) => live.minus(*bytes).ok_or_else(|| {
                    StoreError::Backend(format!(
                        "{}: the hint totals of node {target} do not include its hint for {key:?}",
                        self.backend.name()
                    ))
                })?,
                None => live,
            };
            let held_hint = held.as_ref().map(|(hint, _)| hint);
            let outcome = match plan_put(target, key, siblings, held_hint, others, now_ms, limits) {
                HintPlan::Unchanged => HintStored::Merged,
                HintPlan::Drop(reason) => HintStored::Dropped { reason },
                HintPlan::Write {
                    siblings,
                    stored_at,
                    bytes,
                    outcome,
                } => {
                    let write = HintWrite {
                        target: db_target,
                        key: key.to_string(),
                        data: encode(&siblings)?,
                        stored_at: Self::to_store(stored_at, "the time")?,
                        bytes: Self::to_store(bytes, "a hint's size")?,
                        expected: match held_hint {
                            Some(hint) => Some(Self::to_store(hint.generation, "a generation")?),
                            None => None,
                        },
                    };
                    if self.backend.write_hint(&write).await?.is_none() {
                        // Changed since it was read: read and merge again.
                        continue;
                    }
                    outcome
                }
            };
            return Ok(HintPut { outcome, expired });
        }
        Err(StoreError::Backend(format!(
            "the hint for {key:?} to node {target} changed under {MAX_HINT_ATTEMPTS} consecutive \
             merges, though this process is its only writer: is another process writing the {} \
             database?",
            self.backend.name()
        )))
    }

    async fn hints_for(
        &self,
        target: NodeId,
        limit: usize,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<HintBatch, StoreError> {
        let _turn = self.hints.lock().await;
        let cutoff = Self::cutoff(now_ms, max_age)?;
        let db_target = i64::from(target);
        let totals = self.backend.hint_totals(db_target, cutoff).await?;
        let expired = self.expire_target(target, &totals, cutoff).await?;
        // No more than a target can hold is ever asked for.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let hints = self
            .backend
            .read_hints(db_target, limit)
            .await?
            .into_iter()
            .map(|row| self.hint_from_row(row).map(|(hint, _)| hint))
            .collect::<Result<_, _>>()?;
        Ok(HintBatch { hints, expired })
    }

    async fn remove_hint(&self, hint: &Hint) -> Result<bool, StoreError> {
        let Ok(generation) = i64::try_from(hint.generation) else {
            // No generation this store handed out: not the hint it holds.
            return Ok(false);
        };
        let _turn = self.hints.lock().await;
        self.backend
            .delete_hint(i64::from(hint.target), &hint.key, generation)
            .await
    }

    async fn expire_hints(
        &self,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
        let _turn = self.hints.lock().await;
        let cutoff = Self::cutoff(now_ms, max_age)?;
        let deleted = self.backend.delete_expired_hints(None, cutoff).await?;
        Ok(self.tally(deleted)?.into_iter().collect())
    }

    async fn hint_backlog(&self) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
        self.backend
            .hint_backlog()
            .await?
            .into_iter()
            .map(|(target, count, bytes)| {
                Ok((
                    self.stored_figure(target, "target")?,
                    HintBacklog {
                        count: self.stored_figure(count, "a count")?,
                        bytes: self.stored_figure(bytes, "a sum of bytes")?,
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Dot, Version, VersionVector};
    use std::collections::BTreeSet;
    use std::sync::{Mutex, MutexGuard};
    use tokio::sync::Semaphore;
    use tokio::task::JoinHandle;

    const FAILED: &str = "commit failed, nothing applied";
    const UNKNOWN: &str = "connection lost during the commit, which applied";

    /// How a commit of the backend below ends.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    enum Fate {
        #[default]
        Applied,
        /// An error, and nothing applied.
        Failed,
        /// Applied, and then an error: the committer cannot tell.
        Unknown,
        /// Another writer commits each of the batch's keys just before
        /// it (only legal with the cache off), so every row loses.
        Overtaken,
    }

    #[derive(Default)]
    struct Disk {
        /// Key → (encoded row, row version).
        rows: BTreeMap<String, (Vec<u8>, i64)>,
        /// The keys of every commit asked for, in order.
        commits: Vec<Vec<String>>,
        /// Row reads that reached the backend.
        reads: usize,
        /// How the next commits end, front first; then `otherwise`.
        fates: VecDeque<Fate>,
        otherwise: Fate,
        /// The next read answers the row as it was when it began, but
        /// only once this is sent to (or dropped).
        held_read: Option<oneshot::Receiver<()>>,
    }

    /// A backend in memory whose commits a test can hold, fail, or have
    /// overtaken by another writer, as a database may.
    struct FakeRows {
        disk: Mutex<Disk>,
        /// A commit waits for a permit: holding them lets updates queue
        /// behind a commit in flight, so what they batch into is known.
        commit_permits: Semaphore,
    }

    /// Permits for more commits than any test makes.
    const OPEN: usize = 1 << 20;

    impl FakeRows {
        fn new() -> Arc<Self> {
            Self::with_permits(OPEN)
        }

        /// Every commit waits until `open_commits`.
        fn holding_commits() -> Arc<Self> {
            Self::with_permits(0)
        }

        fn with_permits(permits: usize) -> Arc<Self> {
            Arc::new(Self {
                disk: Mutex::new(Disk::default()),
                commit_permits: Semaphore::new(permits),
            })
        }

        fn open_commits(&self) {
            self.commit_permits.add_permits(OPEN);
        }

        fn disk(&self) -> MutexGuard<'_, Disk> {
            self.disk.lock().expect("no test panics holding it")
        }

        fn commits(&self) -> Vec<Vec<String>> {
            self.disk().commits.clone()
        }

        /// The key's committed siblings and row version.
        fn stored(&self, key: &str) -> Option<(Siblings, i64)> {
            let disk = self.disk();
            let (data, version) = disk.rows.get(key)?;
            Some((decode(key, data).expect("rows decode"), *version))
        }

        /// Another writer commits `siblings` as the key's row.
        fn write_behind(&self, key: &str, siblings: &Siblings) {
            let data = encode(siblings).expect("encode");
            let mut disk = self.disk();
            let version = disk.rows.get(key).map_or(0, |(_, v)| v + 1);
            disk.rows.insert(key.to_string(), (data, version));
        }

        /// Hold the next read's answer until the sender is used.
        fn hold_next_read(&self) -> oneshot::Sender<()> {
            let (release, held) = oneshot::channel();
            self.disk().held_read = Some(held);
            release
        }
    }

    #[async_trait]
    impl RowBackend for FakeRows {
        fn name(&self) -> &'static str {
            "fake"
        }

        async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
            let (row, held) = {
                let mut disk = self.disk();
                disk.reads += 1;
                (disk.rows.get(key).cloned(), disk.held_read.take())
            };
            if let Some(held) = held {
                let _ = held.await;
            }
            Ok(row)
        }

        async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError> {
            let fate = {
                let mut disk = self.disk();
                disk.commits
                    .push(rows.iter().map(|r| r.key.clone()).collect());
                let otherwise = disk.otherwise;
                disk.fates.pop_front().unwrap_or(otherwise)
            };
            self.commit_permits
                .acquire()
                .await
                .expect("never closed")
                .forget();
            if fate == Fate::Failed {
                return Err(StoreError::Backend(FAILED.into()));
            }
            let mut disk = self.disk();
            let mut written = BTreeSet::new();
            for row in rows {
                if fate == Fate::Overtaken {
                    let version = disk.rows.get(&row.key).map_or(0, |(_, v)| v + 1);
                    let data = encode(&Siblings::new()).expect("encode");
                    disk.rows.insert(row.key.clone(), (data, version));
                }
                let current = disk.rows.get(&row.key).map(|(_, v)| *v);
                let next = match (row.expected, current) {
                    (None, None) => 0,
                    (Some(expected), Some(current)) if expected == current => current + 1,
                    _ => continue,
                };
                disk.rows.insert(row.key.clone(), (row.data.clone(), next));
                written.insert(row.key.clone());
            }
            if fate == Fate::Unknown {
                return Err(StoreError::Backend(UNKNOWN.into()));
            }
            Ok(written)
        }

        async fn keys(&self) -> Result<Vec<String>, StoreError> {
            Ok(self.disk().rows.keys().cloned().collect())
        }

        async fn read_rows(
            &self,
            after: Option<&str>,
            limit: i64,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            let disk = self.disk();
            Ok(disk
                .rows
                .iter()
                .filter(|(key, _)| after.is_none_or(|after| key.as_str() > after))
                .take(usize::try_from(limit).unwrap_or(0))
                .map(|(key, (data, _))| (key.clone(), data.clone()))
                .collect())
        }

        // These tests write rows only: no incarnation, no hint.
        async fn read_incarnation(&self) -> Result<Option<i64>, StoreError> {
            unreachable!("no incarnation here")
        }
        async fn record_incarnation(&self, _: RecordIncarnation) -> Result<i64, StoreError> {
            unreachable!("no incarnation here")
        }
        async fn read_hint(&self, _: i64, _: &str) -> Result<Option<HintRow>, StoreError> {
            unreachable!("no hint here")
        }
        async fn hint_totals(&self, _: i64, _: i64) -> Result<HintTotals, StoreError> {
            unreachable!("no hint here")
        }
        async fn read_hints(&self, _: i64, _: i64) -> Result<Vec<HintRow>, StoreError> {
            unreachable!("no hint here")
        }
        async fn write_hint(&self, _: &HintWrite) -> Result<Option<i64>, StoreError> {
            unreachable!("no hint here")
        }
        async fn delete_hint(&self, _: i64, _: &str, _: i64) -> Result<bool, StoreError> {
            unreachable!("no hint here")
        }
        async fn delete_expired_hints(
            &self,
            _: Option<i64>,
            _: i64,
        ) -> Result<Vec<(i64, i64)>, StoreError> {
            unreachable!("no hint here")
        }
        async fn hint_backlog(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
            unreachable!("no hint here")
        }
        async fn close(&self) {}
    }

    /// A blind write of node `node`: concurrent with every other node's.
    fn version(node: u32, value: &str) -> Version {
        Version {
            dot: Dot::new(node, 1),
            context: VersionVector::new(),
            value: value.into(),
            timestamp_ms: 0,
        }
    }

    fn set(node: u32, value: &str) -> Siblings {
        Siblings::from_versions([version(node, value)]).expect("one version")
    }

    /// Merge `version` into the key's row.
    async fn add(
        store: &GroupCommit<FakeRows>,
        key: &str,
        version: Version,
    ) -> Result<Siblings, StoreError> {
        store
            .update(key, &mut |s| {
                s.sync_one(version.clone()).expect("no dot conflict")
            })
            .await
    }

    fn spawn_add(
        store: &Arc<GroupCommit<FakeRows>>,
        key: &str,
        version: Version,
    ) -> JoinHandle<Result<Siblings, StoreError>> {
        let (store, key) = (store.clone(), key.to_string());
        tokio::spawn(async move { add(&store, &key, version).await })
    }

    /// Let every spawned task run until it waits on something (the test
    /// runtime has one thread, so this is deterministic).
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    /// Let the held commits go, and wait for every update to land.
    async fn land_all(disk: &FakeRows, updates: Vec<JoinHandle<Result<Siblings, StoreError>>>) {
        disk.open_commits();
        for update in updates {
            update.await.expect("runs").expect("lands");
        }
    }

    #[tokio::test]
    async fn updates_one_after_another_take_one_commit_each_and_read_back_the_last() {
        let disk = FakeRows::new();
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        for n in 1..=3 {
            let answer = add(&store, "k", version(n, "v")).await;
            let (on_disk, row_version) = disk.stored("k").expect("committed");
            assert_eq!(answer, Ok(on_disk.clone()), "update {n}");
            assert_eq!(disk.commits().len(), n as usize, "update {n} lost no race");
            assert_eq!(row_version, i64::from(n) - 1, "one row version an update");
            assert!((1..=n).all(|node| on_disk.covers(Dot::new(node, 1))));
            assert_eq!(store.get("k").await, Ok(on_disk), "read after update {n}");
        }
    }

    #[tokio::test]
    async fn a_committed_row_is_read_back_from_the_cache_not_the_database() {
        let disk = FakeRows::new();
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        add(&store, "k", version(1, "a")).await.expect("lands");
        add(&store, "k", version(2, "b")).await.expect("lands");
        store.get("k").await.expect("reads");
        assert_eq!(disk.disk().reads, 1, "only the first update missed");
    }

    #[tokio::test]
    async fn an_update_that_changes_nothing_commits_nothing() {
        let disk = FakeRows::new();
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        add(&store, "k", version(1, "a")).await.expect("lands");
        let again = add(&store, "k", version(1, "a")).await;
        assert_eq!(again, Ok(set(1, "a")));
        assert_eq!(disk.commits().len(), 1, "the second update wrote nothing");
    }

    /// The commit's error is the update's answer, after that one commit:
    /// the update neither retries it as a lost race nor takes it as
    /// applied, and nothing of it is read back.
    #[tokio::test]
    async fn a_failed_commit_is_the_updates_error_and_leaves_nothing() {
        let disk = FakeRows::new();
        disk.disk().fates.push_back(Fate::Failed);
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        let answer = add(&store, "k", version(1, "a")).await;
        assert_eq!(answer, Err(StoreError::Backend(FAILED.into())));
        assert_eq!(disk.commits().len(), 1, "not retried");
        assert_eq!(store.get("k").await, Ok(Siblings::new()));
        assert_eq!(add(&store, "k", version(1, "a")).await, Ok(set(1, "a")));
    }

    /// A commit that applied but answered an error: the update reports
    /// the error, yet the store reads back what the database holds and
    /// the next update merges on top of it in one commit.
    #[tokio::test]
    async fn after_an_unknown_outcome_reads_and_updates_follow_the_database() {
        let disk = FakeRows::new();
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        add(&store, "k", version(1, "a")).await.expect("lands");
        disk.disk().fates.push_back(Fate::Unknown);
        let answer = add(&store, "k", version(2, "b")).await;
        assert_eq!(answer, Err(StoreError::Backend(UNKNOWN.into())));
        let (on_disk, _) = disk.stored("k").expect("committed");
        assert!(on_disk.covers(Dot::new(2, 1)), "the commit applied");
        assert_eq!(store.get("k").await, Ok(on_disk));
        add(&store, "k", version(3, "c")).await.expect("lands");
        assert_eq!(disk.commits().len(), 3, "the third update lost no race");
    }

    /// A read that began before a commit whose outcome is unknown answers
    /// the row it read, but must not leave that row in the cache: the
    /// commit may have replaced it.
    #[tokio::test]
    async fn a_read_older_than_an_unknown_outcome_leaves_its_row_out_of_the_cache() {
        let disk = FakeRows::new();
        disk.write_behind("k", &set(1, "old"));
        let store = Arc::new(GroupCommit::new(disk.clone(), 1 << 20));
        let release = disk.hold_next_read();
        let early = {
            let store = store.clone();
            tokio::spawn(async move { store.get("k").await })
        };
        settle().await;
        disk.disk().fates.push_back(Fate::Unknown);
        let answer = add(&store, "k", version(2, "new")).await;
        assert_eq!(answer, Err(StoreError::Backend(UNKNOWN.into())));
        release.send(()).expect("the read waits");
        assert_eq!(early.await.expect("runs"), Ok(set(1, "old")));
        let (on_disk, _) = disk.stored("k").expect("committed");
        assert!(on_disk.covers(Dot::new(2, 1)), "the commit applied");
        assert_eq!(
            store.get("k").await,
            Ok(on_disk),
            "not the early read's row"
        );
    }

    /// Updates queued while a commit is in flight go into the next commit
    /// together, one row per key: a second update of a key waits for the
    /// commit after, and holds back no other key.
    #[tokio::test]
    async fn updates_queued_behind_a_commit_share_the_next_one_row_per_key() {
        let disk = FakeRows::holding_commits();
        let store = Arc::new(GroupCommit::new(disk.clone(), 1 << 20));
        let mut updates = vec![spawn_add(&store, "x", version(1, "x"))];
        settle().await;
        for (node, key) in [(2, "a"), (3, "a"), (4, "b"), (5, "c")] {
            updates.push(spawn_add(&store, key, version(node, key)));
            settle().await;
        }
        land_all(&disk, updates).await;
        let commits = disk.commits();
        assert_eq!(commits[..3], [vec!["x"], vec!["a", "b", "c"], vec!["a"]]);
        let (a, _) = disk.stored("a").expect("committed");
        assert!(a.covers(Dot::new(2, 1)) && a.covers(Dot::new(3, 1)));
    }

    #[tokio::test]
    async fn a_commit_holds_at_most_max_batch_rows() {
        let disk = FakeRows::holding_commits();
        let store = Arc::new(GroupCommit::new(disk.clone(), 1 << 20));
        let mut updates = vec![spawn_add(&store, "first", version(1, "x"))];
        settle().await;
        for i in 0..MAX_BATCH + 10 {
            updates.push(spawn_add(&store, &format!("k{i:03}"), version(2, "v")));
        }
        settle().await;
        land_all(&disk, updates).await;
        let sizes: Vec<usize> = disk.commits().iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, MAX_BATCH, 10]);
    }

    /// The committer looks past the updates a batch cannot take (a second
    /// update of a key already in it) for up to two batches' worth, so an
    /// update of another key queued behind a full round of second updates
    /// still makes the next commit rather than the one after.
    #[tokio::test]
    async fn second_updates_of_a_batchs_keys_do_not_keep_the_next_key_out_of_it() {
        let disk = FakeRows::holding_commits();
        let store = Arc::new(GroupCommit::new(disk.clone(), 1 << 20));
        let mut updates = vec![spawn_add(&store, "first", version(1, "x"))];
        settle().await;
        let half = MAX_BATCH as u32 / 2;
        for node in (1_000..1_000 + half).chain(2_000..2_000 + half) {
            let key = format!("a{:03}", node % 1_000);
            updates.push(spawn_add(&store, &key, version(node, "v")));
        }
        updates.push(spawn_add(&store, "b", version(3, "b")));
        settle().await;
        land_all(&disk, updates).await;
        let second = &disk.commits()[1];
        assert_eq!(second.len(), MAX_BATCH / 2 + 1);
        assert_eq!(second.last().map(String::as_str), Some("b"));
    }

    /// With the cache off another writer may commit a key between an
    /// update's read and its commit: that row alone loses, and its update
    /// merges again on top, although the other rows of its batch landed.
    #[tokio::test]
    async fn a_row_that_lost_its_race_is_merged_again_though_its_batch_landed() {
        let disk = FakeRows::holding_commits();
        let store = Arc::new(GroupCommit::new(disk.clone(), 0));
        let mut updates = vec![spawn_add(&store, "x", version(1, "x"))];
        settle().await;
        updates.push(spawn_add(&store, "k", version(2, "mine")));
        settle().await;
        updates.push(spawn_add(&store, "j", version(3, "j")));
        settle().await;
        disk.write_behind("k", &set(9, "theirs"));
        land_all(&disk, updates).await;
        let (k, _) = disk.stored("k").expect("committed");
        assert!(k.covers(Dot::new(2, 1)), "the update that lost is in");
        assert!(k.covers(Dot::new(9, 1)), "the other writer's too");
        assert_eq!(disk.commits()[1..], [vec!["k", "j"], vec!["k"]]);
    }

    #[tokio::test]
    async fn an_update_that_loses_every_race_gives_up_after_max_update_attempts_commits() {
        let disk = FakeRows::new();
        disk.disk().otherwise = Fate::Overtaken;
        let store = GroupCommit::new(disk.clone(), 0);
        let answer = add(&store, "k", version(1, "a")).await;
        assert!(
            matches!(&answer, Err(StoreError::Backend(why)) if why.contains("consecutive updates")),
            "{answer:?}"
        );
        assert_eq!(disk.commits().len(), MAX_UPDATE_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_scan_goes_on_after_the_key_given() {
        let disk = FakeRows::new();
        for key in ["a", "b", "c"] {
            disk.write_behind(key, &set(1, key));
        }
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        let keys = |page: Vec<(String, Siblings)>| -> Vec<String> {
            page.into_iter().map(|(key, _)| key).collect()
        };
        assert_eq!(keys(store.scan(None, 2).await.expect("scans")), ["a", "b"]);
        assert_eq!(keys(store.scan(Some("b"), 2).await.expect("scans")), ["c"]);
        assert_eq!(store.scan(Some("c"), 2).await, Ok(vec![]));
    }
}
