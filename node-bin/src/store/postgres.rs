//! PostgreSQL store: one database per node. Each update is one transaction
//! that locks the key (the row with `SELECT … FOR UPDATE`, or, when the row
//! does not exist yet, a transaction-scoped advisory lock on the key's
//! hash), merges in Rust and commits before returning.
use super::{backend, decode, encode, OpenError};
use async_trait::async_trait;
use quorumlog_core::store::Update;
use quorumlog_core::{Siblings, Store, StoreError};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
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

    async fn locked_row(
        tx: &mut Transaction<'_, Postgres>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT data FROM siblings WHERE key = $1 FOR UPDATE")
            .bind(key)
            .fetch_optional(&mut **tx)
            .await
            .map_err(backend)
    }
}

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

    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut row = Self::locked_row(&mut tx, key).await?;
        if row.is_none() {
            // No row to lock: serialise first writers of this key on an
            // advisory lock, then look again (a new statement sees rows
            // committed while we waited, READ COMMITTED).
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            row = Self::locked_row(&mut tx, key).await?;
        }
        let mut siblings = match row {
            Some(data) => decode(key, &data)?,
            None => Siblings::new(),
        };
        if update(&mut siblings) {
            sqlx::query(
                "INSERT INTO siblings (key, data) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data",
            )
            .bind(key)
            .bind(encode(&siblings)?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
        } else {
            tx.rollback().await.map_err(backend)?;
        }
        Ok(siblings)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT key FROM siblings ORDER BY key")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }
}
