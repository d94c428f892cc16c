//! PostgreSQL store: one database per node.
//!
//! An update reads the key's row, merges in Rust, and hands the new row to
//! this store's single *committer* task together with the row version it
//! read. The committer writes every queued row with one statement — a
//! conditional `UPDATE … FROM UNNEST(…)` for existing keys and an
//! `INSERT … ON CONFLICT DO NOTHING` for new ones, in one data-modifying
//! CTE — and so commits once for the whole batch (group commit: one round
//! trip and one WAL flush for many acknowledged writes). A row whose
//! version moved since it was read is not written; its update merges again
//! on top of the newer row. Nothing is acknowledged before the commit that
//! holds it returned.
//!
//! Each node owns its database: no other process writes it — enforced by a
//! session advisory lock the store holds while it is open (a second node
//! configured with the same database fails to start). That makes a
//! read cache coherent (see `row_cache.rs`): the committer, the only
//! writer, puts every row it commits into the cache before acknowledging
//! it, so reads and the read half of updates mostly skip PostgreSQL.
use super::row_cache::RowCache;
use super::{backend, decode, encode, OpenError};
use async_trait::async_trait;
use quorumlog_core::store::Update;
use quorumlog_core::{Siblings, Store, StoreError};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Connections per node. Five nodes stay well under PostgreSQL's default
/// `max_connections = 100`.
const POOL_SIZE: u32 = 8;
/// Rows written by one commit at most.
const MAX_BATCH: usize = 128;
/// Updates waiting for the committer before callers wait to enqueue.
const QUEUE: usize = 1024;
/// How often an update retries after losing a race for the same key.
/// Each retry means another writer committed, so this is only reached by a
/// pathologically hot key.
const MAX_UPDATE_ATTEMPTS: usize = 64;

/// Rows kept in the read cache by default.
pub const DEFAULT_CACHE_ROWS: usize = 65_536;

/// A row to write if its version is still `expected` (None: a new key).
struct RowWrite {
    key: String,
    siblings: Siblings,
    data: Vec<u8>,
    expected: Option<i64>,
    /// Whether the row was written (false: it changed meanwhile; retry).
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// Advisory lock key that marks a database as owned by one quorumd node.
const OWNER_LOCK: i64 = 0x7175_6f72_756d_6c67; // "quorumlg"

/// Tunables of a PostgreSQL store; `Default` is what `quorumd` uses.
#[derive(Debug, Clone, Copy)]
pub struct PostgresOptions {
    /// Rows kept in the read cache (0: no cache).
    pub cache_rows: usize,
    /// How long opening waits for the owner lock: a node that was just
    /// killed keeps it until PostgreSQL notices its connection closed.
    pub owner_wait: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            cache_rows: DEFAULT_CACHE_ROWS,
            owner_wait: Duration::from_secs(10),
        }
    }
}

pub struct PostgresStore {
    pool: PgPool,
    /// The connection holding the owner lock, for as long as we are open.
    owner: tokio::sync::Mutex<Option<PgConnection>>,
    committer: mpsc::Sender<RowWrite>,
    cache: Arc<RowCache>,
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
        let (committer, queue) = mpsc::channel(QUEUE);
        let cache = Arc::new(RowCache::new(options.cache_rows));
        tokio::spawn(commit_loop(pool.clone(), queue, cache.clone()));
        Ok(Self {
            pool,
            owner: tokio::sync::Mutex::new(Some(owner)),
            committer,
            cache,
        })
    }

    /// Close every connection and give up ownership of the database.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(owner) = self.owner.lock().await.take() {
            // Closing the session releases its advisory lock.
            let _ = owner.close().await;
        }
    }

    /// The key's committed siblings and row version (None: no row), from
    /// the cache or else PostgreSQL.
    async fn read_row(&self, key: &str) -> Result<Option<(Siblings, i64)>, StoreError> {
        if let Some(row) = self.cache.get(key) {
            return Ok(Some(row));
        }
        let ticket = self.cache.ticket();
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT data, version FROM siblings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        match row {
            Some((data, version)) => {
                let siblings = decode(key, &data)?;
                self.cache.fill(ticket, key, (siblings.clone(), version));
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
        let data = encode(&siblings)?;
        let (done, written) = oneshot::channel();
        let job = RowWrite {
            key: key.to_string(),
            siblings,
            data,
            expected,
            done,
        };
        self.committer
            .send(job)
            .await
            .map_err(|_| StoreError::Backend("the PostgreSQL committer has stopped".into()))?;
        written
            .await
            .map_err(|_| StoreError::Backend("the PostgreSQL committer dropped a write".into()))?
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

/// Take queued writes in batches (at most one per key, so a batch's
/// conditional update is unambiguous) and commit each batch once.
async fn commit_loop(pool: PgPool, mut queue: mpsc::Receiver<RowWrite>, cache: Arc<RowCache>) {
    let mut held: VecDeque<RowWrite> = VecDeque::new();
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
        let mut batch = Vec::new();
        let mut later = VecDeque::new();
        while let Some(job) = held.pop_front() {
            if batch.len() < MAX_BATCH && keys.insert(job.key.clone()) {
                batch.push(job);
            } else {
                later.push_back(job);
            }
        }
        held = later;
        match commit_batch(&pool, &batch).await {
            Ok(written) => {
                for job in batch {
                    let ok = written.contains(&job.key);
                    if ok {
                        let version = job.expected.map_or(0, |v| v + 1);
                        cache.committed(&job.key, (job.siblings, version));
                    } else {
                        cache.forget(&job.key);
                    }
                    let _ = job.done.send(Ok(ok));
                }
            }
            Err(e) => {
                // The transaction may or may not have committed: forget
                // what we think we know about these keys.
                for job in batch {
                    cache.forget(&job.key);
                    let _ = job.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Marks a row to insert (the key had no row when it was read).
const NEW_ROW: i64 = -1;

/// Write the batch with one autocommitted statement — one round trip and
/// one commit, however many rows — and return the keys actually written.
/// A row is written only if its version is still the one its update read
/// (or, for a new key, if nobody inserted it meanwhile).
async fn commit_batch(pool: &PgPool, batch: &[RowWrite]) -> Result<BTreeSet<String>, StoreError> {
    let keys: Vec<&str> = batch.iter().map(|job| job.key.as_str()).collect();
    let data: Vec<&[u8]> = batch.iter().map(|job| job.data.as_slice()).collect();
    let versions: Vec<i64> = batch
        .iter()
        .map(|job| job.expected.unwrap_or(NEW_ROW))
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
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    metrics::histogram!("store_commit_batch_rows").record(batch.len() as f64);
    Ok(written.into_iter().collect())
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
        Ok(self
            .read_row(key)
            .await?
            .map(|(siblings, _)| siblings)
            .unwrap_or_default())
    }

    /// Read, merge, and write back through the committer only if the row
    /// did not change meanwhile (optimistic concurrency); retry otherwise.
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
        sqlx::query_scalar("SELECT key FROM siblings ORDER BY key")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }
}
