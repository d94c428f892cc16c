//! fjall store: one directory per node, an LSM tree (the `fjall` crate)
//! whose journal is fsynced (`fdatasync`) by every commit, written through
//! core's group commit (`core/src/storage`) like the SQL stores. The whole
//! batch of rows is one journal write and one sync, made on one blocking
//! thread with no statements to run: where the SQLite store sends every
//! row's statement to its driver's worker thread and back, this one hands
//! the batch over once. fjall locks the directory while it is open, so
//! this process is its only writer and the row cache is coherent.
//!
//! Layout (three keyspaces of one database, so a batch is atomic across
//! them):
//! - `rows`: key → row version (8 bytes, big-endian) + encoded siblings;
//! - `hints`: target (8 bytes, order-preserving) + key → generation,
//!   stored_at, bytes (8 bytes each) + encoded siblings;
//! - `meta`: name (`incarnation`, `hint_generation`) → value (8 bytes).
//!
//! Every conditional write (a row's version, a hint's generation, the
//! incarnation's "only if absent") reads and writes under one write lock,
//! so no check is ever raced by another write of this process, and fjall's
//! directory lock rules out any other.
use super::OpenError;
use ::fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use async_trait::async_trait;
use quorumlog_core::storage::{
    GroupCommit, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend, RowWrite,
    HINT_GENERATION, INCARNATION,
};
use quorumlog_core::StoreError;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

/// The fjall store: group commit over [`FjallRows`].
pub type FjallStore = GroupCommit<FjallRows>;

/// One node's fjall database, which it owns while open.
pub struct FjallRows {
    /// None once closed (the database and its lock are dropped).
    engine: RwLock<Option<Arc<Engine>>>,
    /// For error messages: `fjall:DIR`.
    name: String,
}

struct Engine {
    db: Database,
    rows: Keyspace,
    hints: Keyspace,
    meta: Keyspace,
    /// Held by every read-check-write (see the module's documentation).
    writer: Mutex<()>,
}

/// Background threads fjall runs per database for flushes and compaction:
/// one, because a node's writes are one journal and several nodes often
/// share a machine.
const WORKER_THREADS: usize = 1;

impl FjallRows {
    pub async fn open(path: &Path) -> Result<FjallStore, OpenError> {
        Self::open_with_cache(path, super::DEFAULT_CACHE_BYTES).await
    }

    /// Open with a row cache of at most `cache_bytes` bytes (0: none).
    pub async fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<FjallStore, OpenError> {
        let rows = Self::open_rows(path).await?;
        Ok(GroupCommit::new(Arc::new(rows), cache_bytes))
    }

    /// The rows alone, owned, without the group commit.
    async fn open_rows(path: &Path) -> Result<FjallRows, OpenError> {
        let name = format!("fjall:{}", path.display());
        let dir = path.to_path_buf();
        let shown = name.clone();
        let opened = tokio::task::spawn_blocking(move || Engine::open(&dir, &shown))
            .await
            .map_err(|e| OpenError::Fjall {
                store: name.clone(),
                source: fjall::Error::Io(std::io::Error::other(e.to_string())),
            })??;
        Ok(FjallRows {
            engine: RwLock::new(Some(Arc::new(opened))),
            name,
        })
    }

    /// Run `job` on the engine on a blocking thread (fjall's calls read
    /// and sync files).
    async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, fjall::Error> + Send + 'static,
    {
        let engine = self
            .engine
            .read()
            .map_err(|_| StoreError::Backend(format!("{}: a writer panicked", self.name)))?
            .clone()
            .ok_or_else(|| StoreError::Backend(format!("{} is closed", self.name)))?;
        tokio::task::spawn_blocking(move || job(&engine))
            .await
            .map_err(|e| StoreError::Backend(format!("fjall task: {e}")))?
            .map_err(|e| StoreError::Backend(e.to_string()))
    }
}

impl Engine {
    fn open(dir: &Path, name: &str) -> Result<Engine, OpenError> {
        let failed = |source| match source {
            fjall::Error::Locked => OpenError::FileInUse {
                store: name.to_string(),
                lock: dir.join("lock").display().to_string(),
            },
            source => OpenError::Fjall {
                store: name.to_string(),
                source,
            },
        };
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
            path: name.to_string(),
            source,
        })?;
        let db = Database::builder(dir)
            .worker_threads(WORKER_THREADS)
            .open()
            .map_err(failed)?;
        let rows = db
            .keyspace("rows", KeyspaceCreateOptions::default)
            .map_err(failed)?;
        let hints = db
            .keyspace("hints", KeyspaceCreateOptions::default)
            .map_err(failed)?;
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(failed)?;
        Ok(Engine {
            db,
            rows,
            hints,
            meta,
            writer: Mutex::new(()),
        })
    }

    /// The write lock; a poisoned one is still sound (every write is one
    /// atomic batch, so a panic leaves nothing half-written).
    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A batch that is durable (journal fsynced) when `commit` returns.
    fn durable_batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(Some(PersistMode::SyncData))
    }

    fn row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, fjall::Error> {
        self.rows
            .get(key)?
            .map(|stored| split_versioned(&stored))
            .transpose()
    }

    fn meta_value(&self, name: &str) -> Result<Option<i64>, fjall::Error> {
        self.meta
            .get(name)?
            .map(|stored| read_i64(&stored, 0))
            .transpose()
    }

    fn hint(&self, target: i64, key: &str) -> Result<Option<HintRow>, fjall::Error> {
        self.hints
            .get(hint_key(target, key))?
            .map(|stored| hint_row(target, key.to_string(), &stored))
            .transpose()
    }

    /// Every hint of `target` (all targets: None), in (target, key) order.
    fn scan_hints(&self, target: Option<i64>) -> Result<Vec<HintRow>, fjall::Error> {
        let iter = match target {
            Some(target) => self.hints.prefix(target_prefix(target)),
            None => self.hints.iter(),
        };
        iter.map(|entry| {
            let (stored_key, value) = entry.into_inner()?;
            let (target, key) = split_hint_key(&stored_key)?;
            hint_row(target, key, &value)
        })
        .collect()
    }
}

#[async_trait]
impl RowBackend for FjallRows {
    fn name(&self) -> &'static str {
        "fjall"
    }

    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        let key = key.to_string();
        self.run(move |engine| engine.row(&key)).await
    }

    /// One journal write and one sync for the whole batch.
    async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError> {
        let rows = rows.to_vec();
        self.run(move |engine| {
            let _writer = engine.lock();
            let mut batch = engine.durable_batch();
            let mut written = BTreeSet::new();
            for row in rows {
                let current = engine.rows.get(&row.key)?;
                let version = match (row.expected, current) {
                    (None, None) => 0,
                    (Some(expected), Some(stored)) if read_i64(&stored, 0)? == expected => {
                        expected.checked_add(1).ok_or_else(|| {
                            corrupt(format!("row {:?}: its version is at the maximum", row.key))
                        })?
                    }
                    _ => continue,
                };
                let mut value = Vec::with_capacity(8 + row.data.len());
                value.extend_from_slice(&version.to_be_bytes());
                value.extend_from_slice(&row.data);
                batch.insert(&engine.rows, row.key.as_bytes(), value);
                written.insert(row.key);
            }
            batch.commit()?;
            Ok(written)
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.run(|engine| {
            engine
                .rows
                .iter()
                .map(|entry| utf8_key(&entry.key()?))
                .collect()
        })
        .await
    }

    async fn read_rows(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let after = after.map(str::to_string);
        let limit = usize::try_from(limit).unwrap_or(0);
        self.run(move |engine| {
            let start: Bound<&[u8]> = match &after {
                Some(after) => Bound::Excluded(after.as_bytes()),
                None => Bound::Unbounded,
            };
            engine
                .rows
                .range::<&[u8], _>((start, Bound::Unbounded))
                .take(limit)
                .map(|entry| {
                    let (key, value) = entry.into_inner()?;
                    let (data, _) = split_versioned(&value)?;
                    Ok((utf8_key(&key)?, data))
                })
                .collect()
        })
        .await
    }

    async fn read_incarnation(&self) -> Result<Option<i64>, StoreError> {
        self.run(|engine| engine.meta_value(INCARNATION)).await
    }

    async fn record_incarnation(&self, record: RecordIncarnation) -> Result<i64, StoreError> {
        self.run(move |engine| {
            let _writer = engine.lock();
            let recorded = engine.meta_value(INCARNATION)?;
            let value = match (record, recorded) {
                (RecordIncarnation::IfAbsent { .. }, Some(recorded)) => return Ok(recorded),
                (RecordIncarnation::IfAbsent { fresh }, None) => {
                    if engine.rows.first_key_value().is_some() {
                        0
                    } else {
                        i64::from(fresh)
                    }
                }
                (RecordIncarnation::Replace(incarnation), _) => i64::from(incarnation),
            };
            let mut batch = engine.durable_batch();
            batch.insert(&engine.meta, INCARNATION, value.to_be_bytes().to_vec());
            batch.commit()?;
            Ok(value)
        })
        .await
    }

    async fn read_hint(&self, target: i64, key: &str) -> Result<Option<HintRow>, StoreError> {
        let key = key.to_string();
        self.run(move |engine| engine.hint(target, &key)).await
    }

    async fn hint_totals(&self, target: i64, cutoff: i64) -> Result<HintTotals, StoreError> {
        self.run(move |engine| {
            let mut totals = HintTotals::default();
            for hint in engine.scan_hints(Some(target))? {
                if hint.stored_at >= cutoff {
                    totals.live += 1;
                    totals.live_bytes = totals.live_bytes.saturating_add(hint.bytes);
                } else {
                    totals.expired += 1;
                }
            }
            Ok(totals)
        })
        .await
    }

    async fn read_hints(&self, target: i64, limit: i64) -> Result<Vec<HintRow>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(0);
        self.run(move |engine| {
            let mut hints = engine.scan_hints(Some(target))?;
            hints.sort_by(|a, b| (a.stored_at, &a.key).cmp(&(b.stored_at, &b.key)));
            hints.truncate(limit);
            Ok(hints)
        })
        .await
    }

    /// The counter and the hint in one durable batch.
    async fn write_hint(&self, hint: &HintWrite) -> Result<Option<i64>, StoreError> {
        let hint = hint.clone();
        self.run(move |engine| {
            let _writer = engine.lock();
            let stored = engine.hint(hint.target, &hint.key)?;
            match (hint.expected, &stored) {
                (None, None) => {}
                (Some(expected), Some(stored)) if stored.generation == expected => {}
                _ => return Ok(None),
            }
            let generation = engine
                .meta_value(HINT_GENERATION)?
                .unwrap_or(0)
                .checked_add(1)
                .ok_or_else(|| corrupt("the hint generation is at the maximum".into()))?;
            let mut value = Vec::with_capacity(24 + hint.data.len());
            value.extend_from_slice(&generation.to_be_bytes());
            value.extend_from_slice(&hint.stored_at.to_be_bytes());
            value.extend_from_slice(&hint.bytes.to_be_bytes());
            value.extend_from_slice(&hint.data);
            let mut batch = engine.durable_batch();
            batch.insert(
                &engine.meta,
                HINT_GENERATION,
                generation.to_be_bytes().to_vec(),
            );
            batch.insert(&engine.hints, hint_key(hint.target, &hint.key), value);
            batch.commit()?;
            Ok(Some(generation))
        })
        .await
    }

    async fn delete_hint(
        &self,
        target: i64,
        key: &str,
        generation: i64,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.run(move |engine| {
            let _writer = engine.lock();
            match engine.hint(target, &key)? {
                Some(stored) if stored.generation == generation => {
                    let mut batch = engine.durable_batch();
                    batch.remove(&engine.hints, hint_key(target, &key));
                    batch.commit()?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn delete_expired_hints(
        &self,
        target: Option<i64>,
        cutoff: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        self.run(move |engine| {
            let _writer = engine.lock();
            let expired: Vec<HintRow> = engine
                .scan_hints(target)?
                .into_iter()
                .filter(|hint| hint.stored_at < cutoff)
                .collect();
            let mut batch = engine.durable_batch();
            for hint in &expired {
                batch.remove(&engine.hints, hint_key(hint.target, &hint.key));
            }
            batch.commit()?;
            Ok(expired.iter().map(|h| (h.target, h.bytes)).collect())
        })
        .await
    }

    async fn hint_backlog(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        self.run(|engine| {
            let mut backlog: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for hint in engine.scan_hints(None)? {
                let entry = backlog.entry(hint.target).or_default();
                entry.0 += 1;
                entry.1 = entry.1.saturating_add(hint.bytes);
            }
            Ok(backlog
                .into_iter()
                .map(|(target, (count, bytes))| (target, count, bytes))
                .collect())
        })
        .await
    }

    /// Drop the database (its journal is synced on drop and its directory
    /// lock released once no call in flight still holds it).
    async fn close(&self) {
        let engine = match self.engine.write() {
            Ok(mut engine) => engine.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(engine) = engine {
            // Dropping syncs files: not on the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || drop(engine)).await;
        }
    }
}

fn corrupt(message: String) -> fjall::Error {
    fjall::Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        message,
    ))
}

fn read_i64(bytes: &[u8], at: usize) -> Result<i64, fjall::Error> {
    at.checked_add(8)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| {
            corrupt(format!(
                "a stored value of {} bytes is cut short",
                bytes.len()
            ))
        })
}

/// A `rows` value: (encoded siblings, row version).
fn split_versioned(stored: &[u8]) -> Result<(Vec<u8>, i64), fjall::Error> {
    let version = read_i64(stored, 0)?;
    Ok((stored[8..].to_vec(), version))
}

fn utf8_key(key: &[u8]) -> Result<String, fjall::Error> {
    String::from_utf8(key.to_vec()).map_err(|_| corrupt("a stored key is not UTF-8".into()))
}

/// A target as 8 bytes that sort as the numbers do (sign bit flipped).
fn target_prefix(target: i64) -> [u8; 8] {
    ((target as u64) ^ (1 << 63)).to_be_bytes()
}

fn hint_key(target: i64, key: &str) -> Vec<u8> {
    let mut stored = Vec::with_capacity(8 + key.len());
    stored.extend_from_slice(&target_prefix(target));
    stored.extend_from_slice(key.as_bytes());
    stored
}

fn split_hint_key(stored: &[u8]) -> Result<(i64, String), fjall::Error> {
    let target = (read_i64(stored, 0)? as u64 ^ (1 << 63)) as i64;
    Ok((target, utf8_key(&stored[8..])?))
}

fn hint_row(target: i64, key: String, stored: &[u8]) -> Result<HintRow, fjall::Error> {
    let generation = read_i64(stored, 0)?;
    let stored_at = read_i64(stored, 8)?;
    let bytes = read_i64(stored, 16)?;
    Ok(HintRow {
        target,
        key,
        data: stored[24..].to_vec(),
        generation,
        stored_at,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("quorumlog-fjall-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Every row of a batch is judged on its own condition, and what was
    /// written survives a reopen with its version; a closed store answers
    /// nothing.
    #[tokio::test]
    async fn each_row_of_a_batch_is_written_only_if_its_condition_holds() {
        let dir = temp_dir("rows");
        let rows = FjallRows::open_rows(&dir).await.unwrap();
        crate::store::backend_checks::each_row_of_a_batch_is_judged_on_its_own_condition(&rows)
            .await;
        rows.close().await;
        assert!(
            rows.read_row("a").await.is_err(),
            "a closed store still answered"
        );
        let reopened = FjallRows::open_rows(&dir).await.unwrap();
        assert_eq!(
            reopened.read_row("a").await.unwrap(),
            Some((b"a1".to_vec(), 1))
        );
        assert_eq!(reopened.keys().await.unwrap().len(), 4 + 1031);
        reopened.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A second open of an open directory is refused as in use, and
    /// allowed once the first closes.
    #[tokio::test]
    async fn a_directory_has_one_owner_at_a_time() {
        let dir = temp_dir("owner");
        let first = FjallRows::open_rows(&dir).await.unwrap();
        match FjallRows::open_rows(&dir).await {
            Err(OpenError::FileInUse { .. }) => {}
            Err(e) => panic!("a second owner failed with {e}, not as in use"),
            Ok(_) => panic!("a second owner opened the directory"),
        }
        first.close().await;
        let second = FjallRows::open_rows(&dir).await.unwrap();
        second.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Hint targets sort as numbers and split back exactly.
    #[test]
    fn hint_keys_round_trip_in_order() {
        let targets = [i64::MIN, -1, 0, 1, 5, i64::MAX];
        let keys: Vec<Vec<u8>> = targets.iter().map(|&t| hint_key(t, "k")).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys);
        for &target in &targets {
            assert_eq!(
                split_hint_key(&hint_key(target, "ké")).unwrap(),
                (target, "ké".to_string())
            );
        }
        assert!(split_hint_key(b"short").is_err());
    }
}
