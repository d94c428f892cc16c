//! PostgreSQL store: one database per node, written through core's group
//! commit (`core/src/storage`): the committer writes a whole batch with one
//! autocommitted statement — a conditional `UPDATE … FROM UNNEST(…)` for
//! existing keys and an `INSERT … ON CONFLICT DO NOTHING` for new ones, in
//! one data-modifying CTE — so one round trip and one WAL flush carry many
//! acknowledged writes.
//!
//! Each node owns its database: no other process writes it — enforced by a
//! session advisory lock held by the committer's own connection, the only
//! one that writes (a second node configured with the same database fails
//! to start; after PostgreSQL restarts, the committer reconnects and takes
//! the lock again, or refuses to write if someone else has). That is what makes
//! the row cache coherent (`core/src/storage/row_cache.rs`), so reads and the read half of
//! updates mostly skip PostgreSQL.
//!
//! Hints are written by that same session, each write one autocommitted
//! statement (the generation counter and the row together); they are read
//! from the pool.
use super::{
    backend, hint_row, hint_totals, OpenError, SqlHintRow, SqlHintTotals, DEFAULT_CACHE_BYTES,
};
use async_trait::async_trait;
use quorumlog_core::storage::{
    GroupCommit, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend, RowWrite,
    HINT_GENERATION, INCARNATION,
};
use quorumlog_core::StoreError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Pooled connections per node, for reads the row cache misses and key
/// listings; the committer has one more of its own.
/// Five nodes stay well under PostgreSQL's default `max_connections = 100`.
const POOL_SIZE: u32 = 4;

/// How long a reconnecting committer waits for the owner lock: a session
/// PostgreSQL was told to end may hold it a moment longer. Writers queued
/// behind the committer wait too, so keep it short.
const RECONNECT_OWNER_WAIT: Duration = Duration::from_secs(2);

/// Advisory lock key that marks a database as owned by one quorumd node.
pub const OWNER_LOCK: i64 = 0x7175_6f72_756d_6c67; // "quorumlg"

/// Tunables of a PostgreSQL store; `Default` is what `quorumd` uses.
#[derive(Debug, Clone, Copy)]
pub struct PostgresOptions {
    /// Bytes the row cache may hold (0: no cache).
    pub cache_bytes: usize,
    /// How long opening waits for the owner lock: a node that was just
    /// killed keeps it until PostgreSQL notices its connection closed.
    pub owner_wait: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            owner_wait: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store: group commit over [`PgRows`].
pub type PostgresStore = GroupCommit<PgRows>;

/// The `siblings` table of one node's database, which it owns.
pub struct PgRows {
    pool: PgPool,
    /// Where to reconnect the committer's connection.
    connect: PgConnectOptions,
    /// For error messages (the URL without its password).
    name: String,
    /// The committer's own connection, which holds the owner lock: every
    /// write is made by the session that owns the database. Outside the
    /// pool because sqlx pings a pooled connection each time it goes back
    /// — a second round trip per commit. None after an error: the next
    /// batch reconnects and takes the lock again.
    writer: tokio::sync::Mutex<Option<PgConnection>>,
}

/// Opening builds the rows and starts [`GroupCommit`] over them (the store
/// type is core's, so its constructors live on the backend).
impl PgRows {
    pub async fn open(url: &str) -> Result<PostgresStore, OpenError> {
        Self::open_with(url, PostgresOptions::default()).await
    }

    pub async fn open_with(
        url: &str,
        options: PostgresOptions,
    ) -> Result<PostgresStore, OpenError> {
        let name = super::redact(url);
        let connect = PgConnectOptions::from_str(url).map_err(|source| OpenError::Connect {
            store: name.clone(),
            source,
        })?;
        let owner = take_ownership(&connect, &name, options.owner_wait).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings a connection on every acquire by default: a
            // round trip per statement. A connection that broke fails its
            // statement instead, the update errors, and the pool replaces it.
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await
            .map_err(|source| OpenError::Connect {
                store: name.clone(),
                source,
            })?;
        // sqlx's migrator with its defaults: the database locked while it
        // runs, each migration in a transaction.
        let migrated = async {
            Migrator::new(super::migrations::POSTGRES)
                .await?
                .run(&pool)
                .await
        };
        migrated.await.map_err(|source| OpenError::Migrate {
            store: name.clone(),
            source,
        })?;
        let rows = PgRows {
            pool,
            connect,
            name,
            writer: tokio::sync::Mutex::new(Some(owner)),
        };
        Ok(GroupCommit::new(Arc::new(rows), options.cache_bytes))
    }
}

/// Connect a session of our own and take the database's owner lock on it,
/// waiting up to `wait` for a previous owner's session to end.
async fn take_ownership(
    connect: &PgConnectOptions,
    name: &str,
    wait: Duration,
) -> Result<PgConnection, OpenError> {
    let connect_error = |source| OpenError::Connect {
        store: name.to_string(),
        source,
    };
    let mut conn = PgConnection::connect_with(connect)
        .await
        .map_err(connect_error)?;
    let started = tokio::time::Instant::now();
    let mut warned = false;
    loop {
        let owned: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(OWNER_LOCK)
            .fetch_one(&mut conn)
            .await
            .map_err(connect_error)?;
        if owned {
            return Ok(conn);
        }
        if !warned {
            warned = true;
            tracing::warn!(
                store = name,
                "another quorumd node holds this database's owner lock; waiting up to {wait:?}"
            );
        }
        if started.elapsed() >= wait {
            let _ = conn.close().await;
            return Err(OpenError::InUse {
                store: name.to_string(),
                waited: wait,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl PgRows {
    /// A new session for the committer after the last one failed (say
    /// PostgreSQL restarted), holding the owner lock again — or an error if
    /// another process took the database meanwhile. (Rows it wrote may be
    /// in our cache; writes stay safe because every row write checks the
    /// row version, but this is a misconfiguration to fix, so refuse.)
    async fn reconnect(&self) -> Result<PgConnection, StoreError> {
        take_ownership(&self.connect, &self.name, RECONNECT_OWNER_WAIT)
            .await
            .map_err(|e| match e {
                OpenError::InUse { .. } => StoreError::Backend(format!(
                    "{}: another process took this database's owner lock while our session \
                     was down; each node needs a database of its own",
                    self.name
                )),
                other => StoreError::Backend(other.to_string()),
            })
    }

    /// The committer's session (the one that owns the database), for a
    /// write other than a batch: reconnected (taking the owner lock again)
    /// if the last one failed. Holding it also keeps batches out meanwhile.
    async fn writer(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<PgConnection>>, StoreError> {
        let mut writer = self.writer.lock().await;
        if writer.is_none() {
            *writer = Some(self.reconnect().await?);
        }
        Ok(writer)
    }
}

/// A statement's outcome on the writer session; on an error, as after a
/// failed batch, the next write starts on a fresh session.
fn on_writer<T>(
    writer: &mut Option<PgConnection>,
    outcome: Result<T, sqlx::Error>,
) -> Result<T, StoreError> {
    outcome.map_err(|e| {
        *writer = None;
        backend(e)
    })
}

fn no_writer() -> StoreError {
    StoreError::Backend("the PostgreSQL writer session is missing".into())
}

/// Marks a row to insert (the key had no row when it was read).
const NEW_ROW: i64 = -1;

#[async_trait]
impl RowBackend for PgRows {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        sqlx::query_as("SELECT data, version FROM siblings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    /// One autocommitted statement — one round trip and one commit,
    /// however many rows.
    async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError> {
        let keys: Vec<&str> = rows.iter().map(|row| row.key.as_str()).collect();
        let data: Vec<&[u8]> = rows.iter().map(|row| row.data.as_slice()).collect();
        let versions: Vec<i64> = rows
            .iter()
            .map(|row| row.expected.unwrap_or(NEW_ROW))
            .collect();
        let mut writer = self.writer.lock().await;
        let conn = match &mut *writer {
            Some(conn) => conn,
            empty => empty.insert(self.reconnect().await?),
        };
        let written: Result<Vec<String>, _> = sqlx::query_scalar(
            "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bigint[]) AS v(key, data, version)), \
             up AS (UPDATE siblings AS s SET data = v.data, version = s.version + 1 \
                    FROM v WHERE v.version >= 0 AND s.key = v.key AND s.version = v.version \
                    RETURNING s.key), \
             ins AS (INSERT INTO siblings (key, data, version) \
                     SELECT key, data, 0 FROM v WHERE v.version < 0 \
                     ON CONFLICT (key) DO NOTHING RETURNING key) \
             SELECT key FROM up UNION ALL SELECT key FROM ins",
        )
        .bind(&keys)
        .bind(&data)
        .bind(&versions)
        .fetch_all(&mut *conn)
        .await;
        match written {
            Ok(keys) => Ok(keys.into_iter().collect()),
            Err(e) => {
                // Whatever state the session is in, start the next batch
                // on a fresh one. Dropped, not closed: a graceful close
                // could wait on a dead socket, and the server ends the
                // session (and its lock) when the socket goes.
                *writer = None;
                Err(backend(e))
            }
        }
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
        sqlx::query_as("SELECT key, data FROM siblings WHERE key > $1 ORDER BY key LIMIT $2")
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn read_incarnation(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT value FROM node_meta WHERE name = $1")
            .bind(INCARNATION)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    /// One transaction on the committer's session (the one that owns the
    /// database: every write is made by it); the conditional insert reads
    /// `siblings` and writes `node_meta` in one statement, so "holds rows"
    /// and the record agree.
    async fn record_incarnation(&self, record: RecordIncarnation) -> Result<i64, StoreError> {
        let mut writer = self.writer.lock().await;
        let conn = match &mut *writer {
            Some(conn) => conn,
            empty => empty.insert(self.reconnect().await?),
        };
        let recorded: Result<i64, sqlx::Error> = async {
            let mut tx = conn.begin().await?;
            match record {
                RecordIncarnation::IfAbsent { fresh } => sqlx::query(
                    "INSERT INTO node_meta (name, value) \
                     SELECT $1, CASE WHEN EXISTS (SELECT 1 FROM siblings) THEN 0 ELSE $2::bigint END \
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(INCARNATION)
                .bind(i64::from(fresh)),
                RecordIncarnation::Replace(incarnation) => sqlx::query(
                    "INSERT INTO node_meta (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                )
                .bind(INCARNATION)
                .bind(i64::from(incarnation)),
            }
            .execute(&mut *tx)
            .await?;
            let recorded = sqlx::query_scalar("SELECT value FROM node_meta WHERE name = $1")
                .bind(INCARNATION)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(recorded)
        }
        .await;
        recorded.map_err(|e| {
            // As after a failed batch: the next write starts on a fresh session.
            *writer = None;
            backend(e)
        })
    }

    async fn read_hint(&self, target: i64, key: &str) -> Result<Option<HintRow>, StoreError> {
        sqlx::query_as::<_, SqlHintRow>(
            "SELECT target, key, data, generation, stored_at, bytes FROM hints \
             WHERE target = $1 AND key = $2",
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
            "SELECT count(*) FILTER (WHERE stored_at >= $2) AS live, \
                    COALESCE(SUM(bytes) FILTER (WHERE stored_at >= $2), 0)::BIGINT AS live_bytes, \
                    count(*) FILTER (WHERE stored_at < $2) AS expired \
             FROM hints WHERE target = $1",
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
             WHERE target = $1 ORDER BY stored_at, key LIMIT $2",
        )
        .bind(target)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
        .map(|rows| rows.into_iter().map(hint_row).collect())
    }

    /// One autocommitted statement on the owner's session: the counter's
    /// bump and the row's write commit together (one round trip, one WAL
    /// flush), durable when it returns. A row not as expected is not
    /// written (the counter moves on anyway: a gap is harmless).
    async fn write_hint(&self, hint: &HintWrite) -> Result<Option<i64>, StoreError> {
        // The counter's bump, shared by both statements ($1: its name).
        macro_rules! with_next_generation {
            ($statement:literal) => {
                concat!(
                    "WITH next AS (INSERT INTO node_meta (name, value) VALUES ($1, 1) \
                     ON CONFLICT (name) DO UPDATE SET value = node_meta.value + 1 \
                     RETURNING value) ",
                    $statement
                )
            };
        }
        let statement = match hint.expected {
            None => sqlx::query_scalar(with_next_generation!(
                "INSERT INTO hints (target, key, data, generation, stored_at, bytes) \
                 SELECT $2, $3, $4, next.value, $5, $6 FROM next \
                 ON CONFLICT (target, key) DO NOTHING RETURNING generation"
            )),
            Some(_) => sqlx::query_scalar(with_next_generation!(
                "UPDATE hints SET data = $4, generation = next.value, stored_at = $5, bytes = $6 \
                 FROM next WHERE hints.target = $2 AND hints.key = $3 AND hints.generation = $7 \
                 RETURNING hints.generation"
            )),
        }
        .bind(HINT_GENERATION)
        .bind(hint.target)
        .bind(hint.key.as_str())
        .bind(hint.data.as_slice())
        .bind(hint.stored_at)
        .bind(hint.bytes);
        // Parameters bind in order: the expected generation is $7.
        let statement = match hint.expected {
            None => statement,
            Some(expected) => statement.bind(expected),
        };
        let mut writer = self.writer().await?;
        let conn = writer.as_mut().ok_or_else(no_writer)?;
        let written: Result<Option<i64>, _> = statement.fetch_optional(&mut *conn).await;
        on_writer(&mut writer, written)
    }

    async fn delete_hint(
        &self,
        target: i64,
        key: &str,
        generation: i64,
    ) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let conn = writer.as_mut().ok_or_else(no_writer)?;
        let deleted =
            sqlx::query("DELETE FROM hints WHERE target = $1 AND key = $2 AND generation = $3")
                .bind(target)
                .bind(key)
                .bind(generation)
                .execute(&mut *conn)
                .await;
        Ok(on_writer(&mut writer, deleted)?.rows_affected() == 1)
    }

    async fn delete_expired_hints(
        &self,
        target: Option<i64>,
        cutoff: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let statement = match target {
            Some(target) => sqlx::query_as(
                "DELETE FROM hints WHERE target = $1 AND stored_at < $2 RETURNING target, bytes",
            )
            .bind(target)
            .bind(cutoff),
            None => {
                sqlx::query_as("DELETE FROM hints WHERE stored_at < $1 RETURNING target, bytes")
                    .bind(cutoff)
            }
        };
        let mut writer = self.writer().await?;
        let conn = writer.as_mut().ok_or_else(no_writer)?;
        let deleted = statement.fetch_all(&mut *conn).await;
        on_writer(&mut writer, deleted)
    }

    async fn hint_backlog(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT target, count(*), COALESCE(SUM(bytes), 0)::BIGINT FROM hints \
             GROUP BY target ORDER BY target",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)
    }

    async fn close(&self) {
        self.pool.close().await;
        if let Some(writer) = self.writer.lock().await.take() {
            // Closing the session releases its advisory lock.
            let _ = writer.close().await;
        }
    }
}
