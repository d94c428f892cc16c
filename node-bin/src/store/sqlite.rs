//! SQLite store: one file per node, WAL journal with `synchronous=FULL` so a
//! commit is on disk before `update` returns.
use super::{backend, decode, encode, OpenError};
use async_trait::async_trait;
use quorumlog_core::store::Update;
use quorumlog_core::{Siblings, Store, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
    /// This process is the file's only writer; serialising updates here
    /// makes each read-modify-write atomic without SQLITE_BUSY upgrades.
    writer: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, OpenError> {
        let name = format!("sqlite:{}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
                path: name.clone(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| OpenError::Connect {
                store: name.clone(),
                source,
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|source| OpenError::Migrate {
                store: name,
                source,
            })?;
        Ok(Self {
            pool,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
        let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM siblings WHERE key = ?1")
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
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM siblings WHERE key = ?1")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
        let mut siblings = match row {
            Some(data) => decode(key, &data)?,
            None => Siblings::new(),
        };
        if update(&mut siblings) {
            sqlx::query(
                "INSERT INTO siblings (key, data) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET data = excluded.data",
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
