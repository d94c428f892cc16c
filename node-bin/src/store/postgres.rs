//! PostgreSQL store: one database per node. Each update is one transaction
//! that locks the key (the row with `SELECT … FOR UPDATE`, or, when the row
//! does not exist yet, a transaction-scoped advisory lock on the key's
//! hash), merges in Rust and commits before returning.
use super::{backend, decode, encode, OpenError};
use async_trait::async_trait;
use quorumlog_core::store::Update;
use quorumlog_core::{Siblings, Store, StoreError};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// Connections per node. Five nodes stay well under PostgreSQL's default
/// `max_connections = 100`.
const POOL_SIZE: u32 = 12;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let name = super::redact(url);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(2)
            .acquire_timeout(Duration::from_secs(5))
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
        Ok(Self { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The row's data and version, read outside any transaction.
    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        sqlx::query_as("SELECT data, version FROM siblings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }
}

/// How often an update retries after losing a race for the same key.
/// Each retry means another writer committed, so this is only reached by a
/// pathologically hot key.
const MAX_UPDATE_ATTEMPTS: usize = 64;

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
        let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM siblings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        match row {
            Some(data) => decode(key, &data),
            None => Ok(Siblings::new()),
        }
    }

    /// Optimistic read-merge-write: read the row, merge in Rust, then write
    /// it back with one autocommitted statement that only applies if the
    /// row's version is still the one read (or, for a new key, if nobody
    /// inserted it meanwhile). Two round trips and one commit instead of a
    /// locking transaction's five; the commit is durable before we return.
    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let row = self.read_row(key).await?;
            let mut siblings = match &row {
                Some((data, _)) => decode(key, data)?,
                None => Siblings::new(),
            };
            if !update(&mut siblings) {
                return Ok(siblings);
            }
            let data = encode(&siblings)?;
            let written = match row {
                Some((_, version)) => sqlx::query(
                    "UPDATE siblings SET data = $2, version = version + 1 WHERE key = $1 AND version = $3",
                )
                .bind(key)
                .bind(data)
                .bind(version)
                .execute(&self.pool)
                .await
                .map_err(backend)?,
                None => sqlx::query(
                    "INSERT INTO siblings (key, data, version) VALUES ($1, $2, 0) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(data)
                .execute(&self.pool)
                .await
                .map_err(backend)?,
            };
            if written.rows_affected() == 1 {
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
