//! SQLite store: one file per node, WAL journal with `synchronous=FULL`,
//! written through core's group commit (`core/src/storage`): the committer writes
//! a whole batch of rows in one transaction, so one fsync carries many
//! acknowledged writes. The store holds an exclusive lock on `PATH.lock`
//! while it is open, so this process is the file's only writer (a second
//! node given the same file fails to start) and the row cache is coherent.
//! Hints are written beside the batches, each in a transaction of its own
//! (SQLite serialises it with the committer's).
use super::{backend, hint_row, hint_totals, OpenError, SqlHintRow, SqlHintTotals};
use async_trait::async_trait;
use quorumlog_core::storage::{
    GroupCommit, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend, RowWrite,
    HINT_GENERATION, INCARNATION,
};
use quorumlog_core::StoreError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The SQLite store: group commit over [`SqliteRows`].
pub type SqliteStore = GroupCommit<SqliteRows>;

/// The `siblings` table of one node's file, which it owns.
pub struct SqliteRows {
    pool: SqlitePool,
    /// `PATH.lock`, locked exclusively for as long as we are open.
    owner: std::fs::File,
}

/// Connections per node: the committer's and readers' (reads mostly hit
/// the row cache).
const POOL_SIZE: u32 = 4;

/// Opening builds the rows and starts [`GroupCommit`] over them (the store
/// type is core's, so its constructors live on the backend).
impl SqliteRows {
    pub async fn open(path: &Path) -> Result<SqliteStore, OpenError> {
        Self::open_with_cache(path, super::DEFAULT_CACHE_BYTES).await
    }

    /// Open with a row cache of at most `cache_bytes` bytes (0: none).
    pub async fn open_with_cache(
        path: &Path,
        cache_bytes: usize,
    ) -> Result<SqliteStore, OpenError> {
        let rows = Self::open_rows(path).await?;
        Ok(GroupCommit::new(Arc::new(rows), cache_bytes))
    }

    /// The rows alone, migrated and owned, without the group commit.
    async fn open_rows(path: &Path) -> Result<SqliteRows, OpenError> {
        let name = format!("sqlite:{}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
                path: name.clone(),
                source,
            })?;
        }
        let owner = take_ownership(path, &name)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await
            .map_err(|source| OpenError::Connect {
                store: name.clone(),
                source,
            })?;
        // sqlx's migrator with its defaults: the database locked while it
        // runs, each migration in a transaction.
        let migrated = async {
            Migrator::new(super::migrations::SQLITE)
                .await?
                .run(&pool)
                .await
        };
        migrated.await.map_err(|source| OpenError::Migrate {
            store: name,
            source,
        })?;
        Ok(SqliteRows { pool, owner })
    }
}

/// Lock `PATH.lock` exclusively (without waiting: the OS releases a dead
/// process's lock at once).
fn take_ownership(path: &Path, name: &str) -> Result<std::fs::File, OpenError> {
    let lock = super::with_suffix(path, ".lock");
    let shown = lock.display().to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| OpenError::Lock {
            lock: shown.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::FileInUse {
            store: name.to_string(),
            lock: shown,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::Lock {
            lock: shown,
            source,
        }),
    }
}

#[async_trait]
impl RowBackend for SqliteRows {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        sqlx::query_as("SELECT data, version FROM siblings WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    /// One transaction for the batch: one fsync however many rows.
    async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut written = BTreeSet::new();
        for row in rows {
            let outcome = match row.expected {
                Some(version) => sqlx::query(
                    "UPDATE siblings SET data = ?1, version = version + 1 \
                     WHERE key = ?2 AND version = ?3",
                )
                .bind(&row.data)
                .bind(&row.key)
                .bind(version),
                None => sqlx::query(
                    "INSERT INTO siblings (key, data, version) VALUES (?2, ?1, 0) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(&row.data)
                .bind(&row.key),
            }
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if outcome.rows_affected() == 1 {
                written.insert(row.key.clone());
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(written)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT key FROM siblings ORDER BY key")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn read_rows(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // Keys are never empty, so "" starts before the first one.
        sqlx::query_as("SELECT key, data FROM siblings WHERE key > ?1 ORDER BY key LIMIT ?2")
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn read_incarnation(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT value FROM node_meta WHERE name = ?1")
            .bind(INCARNATION)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    /// One transaction; the conditional insert reads `siblings` and writes
    /// `node_meta` in one statement, so "holds rows" and the record agree.
    async fn record_incarnation(&self, record: RecordIncarnation) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        match record {
            // `WHERE true`: SQLite needs it to parse an upsert on a SELECT.
            RecordIncarnation::IfAbsent { fresh } => sqlx::query(
                "INSERT INTO node_meta (name, value) \
                 SELECT ?1, CASE WHEN EXISTS (SELECT 1 FROM siblings) THEN 0 ELSE ?2 END WHERE true \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(INCARNATION)
            .bind(i64::from(fresh)),
            RecordIncarnation::Replace(incarnation) => sqlx::query(
                "INSERT INTO node_meta (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(INCARNATION)
            .bind(i64::from(incarnation)),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let recorded = sqlx::query_scalar("SELECT value FROM node_meta WHERE name = ?1")
            .bind(INCARNATION)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(recorded)
    }

    async fn read_hint(&self, target: i64, key: &str) -> Result<Option<HintRow>, StoreError> {
        sqlx::query_as::<_, SqlHintRow>(
            "SELECT target, key, data, generation, stored_at, bytes FROM hints \
             WHERE target = ?1 AND key = ?2",
        )
        .bind(target)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)
        .map(|row| row.map(hint_row))
    }

    async fn hint_totals(&self, target: i64, cutoff: i64) -> Result<HintTotals, StoreError> {
        sqlx::query_as::<_, SqlHintTotals>(
            "SELECT count(*) FILTER (WHERE stored_at >= ?2) AS live, \
                    COALESCE(SUM(bytes) FILTER (WHERE stored_at >= ?2), 0) AS live_bytes, \
                    count(*) FILTER (WHERE stored_at < ?2) AS expired \
             FROM hints WHERE target = ?1",
        )
        .bind(target)
        .bind(cutoff)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
        .map(hint_totals)
    }

    async fn read_hints(&self, target: i64, limit: i64) -> Result<Vec<HintRow>, StoreError> {
        sqlx::query_as::<_, SqlHintRow>(
            "SELECT target, key, data, generation, stored_at, bytes FROM hints \
             WHERE target = ?1 ORDER BY stored_at, key LIMIT ?2",
        )
        .bind(target)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
        .map(|rows| rows.into_iter().map(hint_row).collect())
    }

    /// One transaction that starts by writing (the counter), so it takes
    /// SQLite's write lock at once (waiting out the committer's batch)
    /// rather than failing to upgrade a read; durable at commit
    /// (`synchronous=FULL`).
    async fn write_hint(&self, hint: &HintWrite) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let generation: i64 = sqlx::query_scalar(
            "INSERT INTO node_meta (name, value) VALUES (?1, 1) \
             ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
        )
        .bind(HINT_GENERATION)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        let statement = match hint.expected {
            None => bind_hint(
                sqlx::query(
                    "INSERT INTO hints (target, key, data, generation, stored_at, bytes) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (target, key) DO NOTHING",
                ),
                hint,
                generation,
            ),
            Some(expected) => bind_hint(
                sqlx::query(
                    "UPDATE hints SET data = ?3, generation = ?4, stored_at = ?5, bytes = ?6 \
                     WHERE target = ?1 AND key = ?2 AND generation = ?7",
                ),
                hint,
                generation,
            )
            .bind(expected),
        };
        let written = statement
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected()
            == 1;
        if !written {
            tx.rollback().await.map_err(backend)?;
            return Ok(None);
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(generation))
    }

    async fn delete_hint(
        &self,
        target: i64,
        key: &str,
        generation: i64,
    ) -> Result<bool, StoreError> {
        let outcome =
            sqlx::query("DELETE FROM hints WHERE target = ?1 AND key = ?2 AND generation = ?3")
                .bind(target)
                .bind(key)
                .bind(generation)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        Ok(outcome.rows_affected() == 1)
    }

    async fn delete_expired_hints(
        &self,
        target: Option<i64>,
        cutoff: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        match target {
            Some(target) => sqlx::query_as(
                "DELETE FROM hints WHERE target = ?1 AND stored_at < ?2 RETURNING target, bytes",
            )
            .bind(target)
            .bind(cutoff),
            None => {
                sqlx::query_as("DELETE FROM hints WHERE stored_at < ?1 RETURNING target, bytes")
                    .bind(cutoff)
            }
        }
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn hint_backlog(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT target, count(*), COALESCE(SUM(bytes), 0) FROM hints \
             GROUP BY target ORDER BY target",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn close(&self) {
        self.pool.close().await;
        let _ = self.owner.unlock();
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Bind a hint's columns as `?1` … `?6` of [`RowBackend::write_hint`]'s
/// statements (parameters bind in order: anything else binds after).
fn bind_hint<'q>(query: SqliteQuery<'q>, hint: &'q HintWrite, generation: i64) -> SqliteQuery<'q> {
    query
        .bind(hint.target)
        .bind(hint.key.as_str())
        .bind(hint.data.as_slice())
        .bind(generation)
        .bind(hint.stored_at)
        .bind(hint.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_row_of_a_batch_is_written_only_if_its_condition_holds() {
        let dir =
            std::env::temp_dir().join(format!("quorumlog-sqlite-rows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rows = SqliteRows::open_rows(&dir.join("rows.db")).await.unwrap();
        crate::store::backend_checks::each_row_of_a_batch_is_judged_on_its_own_condition(&rows)
            .await;
        drop(rows);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
