//! PostgreSQL store: one database per node, written through group commit
//! (`group_commit.rs`): the committer writes a whole batch with one
//! autocommitted statement — a conditional `UPDATE … FROM UNNEST(…)` for
//! existing keys and an `INSERT … ON CONFLICT DO NOTHING` for new ones, in
//! one data-modifying CTE — so one round trip and one WAL flush carry many
//! acknowledged writes.
//!
//! Each node owns its database: no other process writes it — enforced by a
//! session advisory lock the store holds while it is open (a second node
//! configured with the same database fails to start). That is what makes
//! the row cache coherent (`row_cache.rs`), so reads and the read half of
//! updates mostly skip PostgreSQL.
use super::group_commit::{GroupCommit, RowBackend, RowWrite};
use super::{backend, OpenError, DEFAULT_CACHE_BYTES};
use async_trait::async_trait;
use quorumlog_core::StoreError;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Connections per node. Five nodes stay well under PostgreSQL's default
/// `max_connections = 100`.
const POOL_SIZE: u32 = 8;

/// Advisory lock key that marks a database as owned by one quorumd node.
const OWNER_LOCK: i64 = 0x7175_6f72_756d_6c67; // "quorumlg"

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
    /// The connection holding the owner lock, for as long as we are open.
    owner: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PostgresStore {
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        Self::open_with(url, PostgresOptions::default()).await
    }

    pub async fn open_with(url: &str, options: PostgresOptions) -> Result<Self, OpenError> {
        let name = super::redact(url);
        let owner = take_ownership(url, &name, options.owner_wait).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings a connection on every acquire by default: a
            // round trip per statement. A connection that broke fails its
            // statement instead, the update errors, and the pool replaces it.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(|source| OpenError::Connect {
                store: name.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|source| OpenError::Migrate {
                store: name,
                source,
            })?;
        let rows = PgRows {
            pool,
            owner: tokio::sync::Mutex::new(Some(owner)),
        };
        Ok(GroupCommit::new(Arc::new(rows), options.cache_bytes))
    }
}

/// Connect a session of our own and take the database's owner lock on it,
/// waiting up to `wait` for a previous owner's session to end.
async fn take_ownership(url: &str, name: &str, wait: Duration) -> Result<PgConnection, OpenError> {
    let connect_error = |source| OpenError::Connect {
        store: name.to_string(),
        source,
    };
    let mut conn = PgConnection::connect(url).await.map_err(connect_error)?;
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
        let written: Vec<String> = sqlx::query_scalar(
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
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(written.into_iter().collect())
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT key FROM siblings ORDER BY key")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn close(&self) {
        self.pool.close().await;
        if let Some(owner) = self.owner.lock().await.take() {
            // Closing the session releases its advisory lock.
            let _ = owner.close().await;
        }
    }
}
