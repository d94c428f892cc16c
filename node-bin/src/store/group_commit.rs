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
use super::row_cache::RowCache;
use super::{decode, encode};
use async_trait::async_trait;
use quorumlog_core::store::Update;
use quorumlog_core::{Incarnation, Siblings, Store, StoreError};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Rows written by one commit at most.
const MAX_BATCH: usize = 128;
/// Updates waiting for the committer before callers wait to enqueue.
const QUEUE: usize = 1024;
/// How often an update retries after losing a race for the same key.
/// Each retry means another writer committed, so this is only reached by a
/// pathologically hot key.
const MAX_UPDATE_ATTEMPTS: usize = 64;

/// A row to write if the stored row's version is still `expected` (None:
/// the key had no row, so insert unless someone inserted it meanwhile).
/// A written row's version becomes `expected + 1` (0 for an insert).
pub struct RowWrite {
    pub key: String,
    pub data: Vec<u8>,
    pub expected: Option<i64>,
}

/// How to record a node's incarnation (see [`Store::incarnation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordIncarnation {
    /// Only if none is recorded: `fresh` when the database holds no rows,
    /// 0 when it does (rows written before incarnations, all under 0).
    IfAbsent { fresh: Incarnation },
    /// Whatever is recorded (a restored backup, whose recorded incarnation
    /// may have minted dots the backup does not hold).
    Replace(Incarnation),
}

/// Name of the incarnation's row in `node_meta`.
pub const INCARNATION: &str = "incarnation";

/// Where the rows live.
#[async_trait]
pub trait RowBackend: Send + Sync + 'static {
    /// For error messages: "PostgreSQL", "SQLite".
    fn name(&self) -> &'static str;
    /// The key's encoded sibling set and row version.
    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError>;
    /// Write `rows` (distinct keys) with one commit, each only if its
    /// version still matches; return the keys written.
    async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError>;
    /// Every key with a row, in order.
    async fn keys(&self) -> Result<Vec<String>, StoreError>;
    /// The incarnation recorded in `node_meta`, if any (as stored).
    async fn read_incarnation(&self) -> Result<Option<i64>, StoreError>;
    /// Record an incarnation as `record` says, in one transaction (for
    /// `IfAbsent`, whether the database holds rows is decided inside it),
    /// and return what is recorded afterwards (as stored).
    async fn record_incarnation(&self, record: RecordIncarnation) -> Result<i64, StoreError>;
    /// Close every connection and give up ownership of the database.
    async fn close(&self);
}

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

/// Take queued writes in batches (at most one per key, so each row's
/// condition is unambiguous) and commit each batch once.
async fn commit_loop<B: RowBackend>(
    backend: Arc<B>,
    mut queue: mpsc::Receiver<Job>,
    cache: Arc<RowCache>,
) {
    let mut held: VecDeque<Job> = VecDeque::new();
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
        let mut keys = BTreeSet::new();
        let (mut rows, mut waiters) = (Vec::new(), Vec::new());
        let mut later = VecDeque::new();
        while let Some(job) = held.pop_front() {
            if rows.len() < MAX_BATCH && keys.insert(job.row.key.clone()) {
                rows.push(job.row);
                waiters.push((job.siblings, job.done));
            } else {
                later.push_back(job);
            }
        }
        held = later;
        metrics::histogram!("store_commit_batch_rows").record(rows.len() as f64);
        match backend.write_rows(&rows).await {
            Ok(written) => {
                for (row, (siblings, done)) in rows.into_iter().zip(waiters) {
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
                for (row, (_, done)) in rows.into_iter().zip(waiters) {
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

    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError> {
        let stored = self
            .backend
            .record_incarnation(RecordIncarnation::IfAbsent { fresh })
            .await?;
        self.incarnation_from(stored)
    }
}
