//! Durable implementations of core's [`Store`] trait: SQLite (the embedded
//! default) and PostgreSQL (one database per node), plus the parsing of the
//! `--store` flag.
use quorumlog_core::{MemoryStore, Siblings, Store, StoreError};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;

mod group_commit;
mod postgres;
mod row_cache;
mod sqlite;

pub use postgres::{PostgresOptions, PostgresStore, OWNER_LOCK};
pub use sqlite::SqliteStore;

/// Bytes a store's row cache may hold by default (keys and encoded rows,
/// estimated): a bound on memory however large the values.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Where a node keeps its data: `memory`, `sqlite:PATH` or `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Memory,
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "unknown store {0:?}: use memory, sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
)]
pub struct StoreSpecError(String);

impl FromStr for StoreSpec {
    type Err = StoreSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "memory" {
            Ok(StoreSpec::Memory)
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(StoreSpec::Postgres(s.to_string()))
        } else if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreSpecError(s.to_string()));
            }
            Ok(StoreSpec::Sqlite(PathBuf::from(path)))
        } else {
            Err(StoreSpecError(s.to_string()))
        }
    }
}

impl fmt::Display for StoreSpec {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Memory => write!(f, "memory"),
            StoreSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            StoreSpec::Postgres(url) => write!(f, "{}", redact(url)),
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[derive(Debug, Error)]
pub enum OpenError {
    #[error("could not open {store}: {source}")]
    Connect { store: String, source: sqlx::Error },
    #[error("migrations failed on {store}: {source}")]
    Migrate {
        store: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("could not create the directory for {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{store} is in use by another quorumd node (it still holds the owner lock after {waited:?}): \
         every node needs a database of its own"
    )]
    InUse {
        store: String,
        waited: std::time::Duration,
    },
    #[error("{store} is in use by another process ({lock} is locked): every node needs a file of its own")]
    FileInUse { store: String, lock: String },
    #[error("could not lock {lock}: {source}")]
    Lock {
        lock: String,
        source: std::io::Error,
    },
}

/// Open (and migrate) the store a spec names.
pub async fn open(spec: &StoreSpec) -> Result<Arc<dyn Store>, OpenError> {
    Ok(match spec {
        StoreSpec::Memory => Arc::new(MemoryStore::new()),
        StoreSpec::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        StoreSpec::Postgres(url) => Arc::new(PostgresStore::open(url).await?),
    })
}

/// Stored form of a sibling set.
pub(crate) fn encode(siblings: &Siblings) -> Result<Vec<u8>, StoreError> {
    bincode::serialize(siblings)
        .map_err(|e| StoreError::Backend(format!("cannot encode siblings: {e}")))
}

pub(crate) fn decode(key: &str, data: &[u8]) -> Result<Siblings, StoreError> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(data.len() as u64)
        .deserialize(data)
        .map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_specs() {
        assert_eq!("memory".parse(), Ok(StoreSpec::Memory));
        assert_eq!(
            "sqlite:/tmp/n1.db".parse(),
            Ok(StoreSpec::Sqlite("/tmp/n1.db".into()))
        );
        assert_eq!(
            "sqlite://data/n1.db".parse(),
            Ok(StoreSpec::Sqlite("data/n1.db".into()))
        );
        assert_eq!(
            "postgres://u:p@127.0.0.1/db".parse(),
            Ok(StoreSpec::Postgres("postgres://u:p@127.0.0.1/db".into()))
        );
        assert!("sqlite:".parse::<StoreSpec>().is_err());
        assert!("mysql://x".parse::<StoreSpec>().is_err());
        assert_eq!(
            StoreSpec::Postgres("postgres://u:secret@h:5432/db".into()).to_string(),
            "postgres://u:***@h:5432/db"
        );
    }

    #[test]
    fn corrupt_rows_are_reported_not_panicked_on() {
        assert!(matches!(
            decode("k", &[0xff; 3]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut huge = Vec::new();
        huge.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode("k", &huge),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
