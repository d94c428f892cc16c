//! Durable implementations of core's [`Store`] trait: SQLite (the embedded
//! default) and PostgreSQL (one database per node), plus the parsing of the
//! `--store` flag.
use quorumlog_core::{Incarnation, MemoryStore, Siblings, Store, StoreError};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;

mod group_commit;
mod postgres;
mod row_cache;
mod sqlite;

pub use group_commit::{
    GroupCommit, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend,
};
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
    #[error("could not record a new incarnation in {store}: {source}")]
    Incarnation { store: String, source: StoreError },
}

/// Open (and migrate) the store a spec names.
pub async fn open(spec: &StoreSpec) -> Result<Arc<dyn Store>, OpenError> {
    open_renewing(spec, None).await
}

/// Open (and migrate) the store a spec names; with `renew`, record that
/// incarnation first whatever the store records (`--new-incarnation`, after
/// restoring a backup). A memory store always starts empty, hence always in
/// a fresh incarnation: there is nothing to renew.
pub async fn open_renewing(
    spec: &StoreSpec,
    renew: Option<Incarnation>,
) -> Result<Arc<dyn Store>, OpenError> {
    Ok(match spec {
        StoreSpec::Memory => Arc::new(MemoryStore::new()),
        StoreSpec::Sqlite(path) => {
            let store = SqliteStore::open(path).await?;
            renew_incarnation(&store, spec, renew).await?;
            Arc::new(store)
        }
        StoreSpec::Postgres(url) => {
            let store = PostgresStore::open(url).await?;
            renew_incarnation(&store, spec, renew).await?;
            Arc::new(store)
        }
    })
}

async fn renew_incarnation<B: RowBackend>(
    store: &GroupCommit<B>,
    spec: &StoreSpec,
    renew: Option<Incarnation>,
) -> Result<(), OpenError> {
    let Some(fresh) = renew else {
        return Ok(());
    };
    let failed = |source| OpenError::Incarnation {
        store: spec.to_string(),
        source,
    };
    match store.renew_incarnation(fresh).await {
        Ok(before) => {
            let before = before.map_or_else(|| "none".to_string(), |i| i.to_string());
            tracing::warn!(
                store = %spec,
                previous = %before,
                incarnation = fresh,
                "--new-incarnation: recorded a new incarnation"
            );
            Ok(())
        }
        Err(source) => {
            // Leave the store as the caller would find it: closed.
            store.close().await;
            Err(failed(source))
        }
    }
}

/// Marks a row in the current format (sibling sets with incarnations),
/// followed by the bincode of [`Siblings`]. Rows written before it have no
/// marker: they start with their sibling count as a little-endian u64,
/// whose last byte is 0xFF only for a count above 2^56 — so a row whose
/// eighth byte is 0xFF is never a legacy row.
const ROW_FORMAT_2: [u8; 8] = *b"qlrow2\x00\xff";
/// Length of a format marker; the marker's last byte is always 0xFF.
const MARKER_LEN: usize = ROW_FORMAT_2.len();

/// Stored form of a sibling set: the format marker, then its bincode.
pub(crate) fn encode(siblings: &Siblings) -> Result<Vec<u8>, StoreError> {
    let size = bincode::serialized_size(siblings)
        .map_err(|e| StoreError::Backend(format!("cannot encode siblings: {e}")))?;
    let mut row = Vec::with_capacity(MARKER_LEN.saturating_add(size as usize));
    row.extend_from_slice(&ROW_FORMAT_2);
    bincode::serialize_into(&mut row, siblings)
        .map_err(|e| StoreError::Backend(format!("cannot encode siblings: {e}")))?;
    Ok(row)
}

/// Decode a stored row, in the current format or the legacy one (before
/// incarnations: every dot and context entry then is incarnation 0).
pub(crate) fn decode(key: &str, data: &[u8]) -> Result<Siblings, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    match data.get(..MARKER_LEN) {
        Some(marker) if marker == ROW_FORMAT_2 => {
            bounded_bincode(&data[MARKER_LEN..]).map_err(|e| corrupt(e.to_string()))
        }
        Some(marker) if marker[MARKER_LEN - 1] == 0xFF => Err(corrupt(format!(
            "unknown row format {:?} (written by a newer quorumd?)",
            String::from_utf8_lossy(marker)
        ))),
        _ => legacy::decode(data).map_err(corrupt),
    }
}

/// bincode as `bincode::serialize` writes it (fixint), bounded by the
/// row's own length so a corrupt length prefix cannot allocate more, and
/// refusing trailing bytes.
fn bounded_bincode<T: serde::de::DeserializeOwned>(data: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(data.len() as u64)
        .deserialize(data)
}

/// Rows as written before incarnations existed: a dot was `(node,
/// counter)` and a context a map from node id to counter. Mirrored here,
/// privately, so those rows stay readable whatever the core's types become.
mod legacy {
    use quorumlog_core::{Dot, Siblings, Version, VersionVector};
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    pub(super) struct Dot1 {
        pub node: u32,
        pub counter: u64,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Version1 {
        pub dot: Dot1,
        pub context: BTreeMap<u32, u64>,
        pub value: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Siblings1(pub Vec<Version1>);

    /// The legacy row as today's siblings, every actor in incarnation 0.
    pub(super) fn decode(data: &[u8]) -> Result<Siblings, String> {
        let Siblings1(versions) = super::bounded_bincode(data)
            .map_err(|e| format!("legacy row (no format marker): {e}"))?;
        let versions = versions.into_iter().map(|v| Version {
            dot: Dot::new(v.dot.node, v.dot.counter),
            context: VersionVector::from_entries(v.context),
            value: v.value,
        });
        // The legacy set was a valid sibling set; rebuilding it checks that
        // again (two versions under one dot are corruption, not a choice).
        Siblings::from_versions(versions).map_err(|e| format!("legacy row: {e}"))
    }
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
        // A current row whose sibling count is absurd allocates nothing.
        let mut huge = ROW_FORMAT_2.to_vec();
        huge.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            decode("k", &huge),
            Err(StoreError::Corrupt { .. })
        ));
    }

    use quorumlog_core::{Actor, Dot, Version, VersionVector};

    fn sample() -> Siblings {
        Siblings::from_versions([
            Version {
                dot: Dot::new(Actor::new(3, 7), 2),
                context: VersionVector::from_entries([(Actor::new(1, 0), 4)]),
                value: "a".into(),
            },
            Version {
                dot: Dot::new(Actor::new(2, 9), 1),
                context: VersionVector::new(),
                value: "b".into(),
            },
        ])
        .expect("a sibling set")
    }

    #[test]
    fn rows_carry_a_format_marker_and_round_trip() {
        let set = sample();
        let row = encode(&set).expect("encode");
        assert_eq!(&row[..MARKER_LEN], &ROW_FORMAT_2);
        assert_eq!(decode("k", &row), Ok(set));
        assert_eq!(
            decode("k", &encode(&Siblings::new()).expect("encode")),
            Ok(Siblings::new())
        );
        // Trailing bytes are not a row we wrote.
        let mut longer = encode(&sample()).expect("encode");
        longer.push(0);
        assert!(matches!(
            decode("k", &longer),
            Err(StoreError::Corrupt { .. })
        ));
    }

    /// No legacy row can look like a marked one: its first eight bytes are
    /// its sibling count, and no count decodes with a top byte of 0xFF.
    #[test]
    fn the_marker_is_never_a_legacy_prefix() {
        assert_eq!(ROW_FORMAT_2[MARKER_LEN - 1], 0xFF);
        let count = u64::from_le_bytes(ROW_FORMAT_2);
        assert!(count >= 0xFF << 56, "{count}");
        let legacy = bincode::serialize(&legacy::Siblings1(Vec::new())).expect("encode");
        assert_eq!(legacy, 0u64.to_le_bytes());
    }

    /// A row as the previous release wrote it, byte for byte: one version
    /// with dot n3:2, context {n1: 4}, value "v".
    const LEGACY_ROW: &[u8] = &[
        1, 0, 0, 0, 0, 0, 0, 0, // one version
        3, 0, 0, 0, // dot.node
        2, 0, 0, 0, 0, 0, 0, 0, // dot.counter
        1, 0, 0, 0, 0, 0, 0, 0, // one context entry
        1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, // n1 → 4
        1, 0, 0, 0, 0, 0, 0, 0, b'v', // value
    ];

    #[test]
    fn legacy_rows_decode_to_incarnation_zero() {
        let expected = Siblings::from_versions([Version {
            dot: Dot::new(Actor::new(3, 0), 2),
            context: VersionVector::from_entries([(Actor::new(1, 0), 4)]),
            value: "v".into(),
        }])
        .expect("a sibling set");
        assert_eq!(decode("k", LEGACY_ROW), Ok(expected.clone()));
        // The mirror encodes exactly that layout.
        let mirrored = bincode::serialize(&legacy::Siblings1(vec![legacy::Version1 {
            dot: legacy::Dot1 {
                node: 3,
                counter: 2,
            },
            context: [(1, 4)].into_iter().collect(),
            value: "v".into(),
        }]))
        .expect("encode");
        assert_eq!(mirrored, LEGACY_ROW);
        // Rewritten, it carries the marker and the same siblings.
        let rewritten = encode(&expected).expect("encode");
        assert_eq!(&rewritten[..MARKER_LEN], &ROW_FORMAT_2);
        assert_eq!(decode("k", &rewritten), Ok(expected));
    }

    #[test]
    fn bad_legacy_rows_and_unknown_formats_are_corrupt() {
        // Two versions under one dot with different values.
        let conflicting = bincode::serialize(&legacy::Siblings1(
            ["x", "y"]
                .into_iter()
                .map(|value| legacy::Version1 {
                    dot: legacy::Dot1 {
                        node: 1,
                        counter: 1,
                    },
                    context: Default::default(),
                    value: value.into(),
                })
                .collect(),
        ))
        .expect("encode");
        match decode("k", &conflicting) {
            Err(StoreError::Corrupt { key, reason }) => {
                assert_eq!(key, "k");
                assert!(reason.contains("legacy row"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let future = *b"qlrow3\x00\xff";
        match decode("k", &future) {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("unknown row format"), "{reason}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// The incarnation rules on a store that starts empty: the first ask
    /// records `fresh`, later asks return it, a renewal replaces it.
    async fn check_incarnation_rules<B: RowBackend>(store: &GroupCommit<B>) {
        assert_eq!(store.recorded_incarnation().await, Ok(None));
        assert_eq!(store.incarnation(7).await, Ok(7));
        assert_eq!(store.incarnation(9).await, Ok(7), "recorded once");
        assert_eq!(store.recorded_incarnation().await, Ok(Some(7)));
        assert_eq!(store.renew_incarnation(11).await, Ok(Some(7)));
        assert_eq!(store.incarnation(3).await, Ok(11));
    }

    /// On a store that already holds rows but records no incarnation (data
    /// from before incarnations), the incarnation is 0.
    async fn check_rows_without_a_record_are_incarnation_zero<B: RowBackend>(
        store: &GroupCommit<B>,
    ) {
        let version = Version {
            dot: Dot::new(1, 1),
            context: VersionVector::new(),
            value: "old".into(),
        };
        store
            .update("legacy", &mut |s| {
                s.sync_one(version.clone()).unwrap_or(false)
            })
            .await
            .expect("update");
        assert_eq!(store.incarnation(5).await, Ok(0));
        assert_eq!(store.incarnation(6).await, Ok(0));
    }

    fn temp_sqlite(test: &str) -> (PathBuf, impl Drop) {
        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let dir = std::env::temp_dir().join(format!("quorumd-unit-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (dir.join("node.db"), Dir(dir))
    }

    #[tokio::test]
    async fn sqlite_records_the_incarnation_once_and_keeps_it() {
        let (path, _dir) = temp_sqlite("incarnation");
        let store = SqliteStore::open(&path).await.expect("open");
        check_incarnation_rules(&store).await;
        store.close().await;
        drop(store);
        let reopened = SqliteStore::open(&path).await.expect("reopen");
        assert_eq!(reopened.incarnation(99).await, Ok(11), "survives a restart");
        reopened.close().await;
    }

    #[tokio::test]
    async fn sqlite_rows_without_a_record_are_incarnation_zero() {
        let (path, _dir) = temp_sqlite("legacy");
        let store = SqliteStore::open(&path).await.expect("open");
        check_rows_without_a_record_are_incarnation_zero(&store).await;
        store.close().await;
    }

    /// A file the previous release wrote: its rows have no format marker
    /// and it records no incarnation. It opens, its rows read as
    /// incarnation 0, the node stays in incarnation 0, and a changed row is
    /// written back in the current format.
    #[tokio::test]
    async fn sqlite_upgrades_a_legacy_file() {
        use sqlx::Connection;
        let (path, _dir) = temp_sqlite("upgrade");
        let store = SqliteStore::open(&path).await.expect("open");
        let url = format!("sqlite:{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query("INSERT INTO siblings (key, data, version) VALUES ('old', ?1, 0)")
            .bind(LEGACY_ROW)
            .execute(&mut conn)
            .await
            .expect("insert a legacy row");
        let old = store.get("old").await.expect("read a legacy row");
        assert_eq!(old.versions()[0].dot, Dot::new(Actor::new(3, 0), 2));
        assert_eq!(store.incarnation(77).await, Ok(0));
        let newer = old
            .mint(Actor::new(1, 0), &old.context(), "w".into())
            .expect("mint");
        store
            .update("old", &mut |s| s.sync_one(newer.clone()).unwrap_or(false))
            .await
            .expect("update");
        let data: Vec<u8> = sqlx::query_scalar("SELECT data FROM siblings WHERE key = 'old'")
            .fetch_one(&mut conn)
            .await
            .expect("read back");
        assert_eq!(&data[..MARKER_LEN], &ROW_FORMAT_2);
        assert_eq!(
            decode("old", &data).map(|s| s.versions().to_vec()),
            Ok(vec![newer])
        );
        let _ = conn.close().await;
        store.close().await;
    }

    #[tokio::test]
    async fn open_renewing_records_the_new_incarnation() {
        let (path, _dir) = temp_sqlite("renew");
        let spec = StoreSpec::Sqlite(path);
        let store = open(&spec).await.expect("open");
        assert_eq!(store.incarnation(4).await, Ok(4));
        drop(store);
        // Let the committer task drop the backend (and its file lock).
        let mut reopened = None;
        for _ in 0..100 {
            match open_renewing(&spec, Some(8)).await {
                Ok(store) => {
                    reopened = Some(store);
                    break;
                }
                Err(OpenError::FileInUse { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => panic!("reopen: {e}"),
            }
        }
        let store = reopened.expect("the first store never let go of its file");
        assert_eq!(store.incarnation(5).await, Ok(8));
    }

    /// A PostgreSQL database of its own for one check, dropped afterwards;
    /// None (the check skips) without a server, except under CI=true.
    async fn scratch_postgres(test: &str) -> Option<(String, String)> {
        use sqlx::Connection;
        let base = std::env::var("QUORUMLOG_PG_URL")
            .unwrap_or_else(|_| "postgres://quorumlog:quorumlog@127.0.0.1:5432".into());
        let base = base.trim_end_matches('/').to_string();
        let admin_url = format!("{base}/postgres");
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) => {
                assert!(
                    std::env::var("CI").map_or(true, |v| v != "true"),
                    "PostgreSQL is not reachable at {}: {e}",
                    redact(&base)
                );
                eprintln!(
                    "SKIPPED: PostgreSQL is not reachable at {}: {e}",
                    redact(&base)
                );
                return None;
            }
        };
        let name = format!("quorumd_unit_{test}_{}", std::process::id());
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop an old scratch database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a scratch database (the role needs CREATEDB)");
        let _ = admin.close().await;
        Some((format!("{base}/{name}"), name))
    }

    async fn drop_scratch_postgres(name: &str) {
        use sqlx::Connection;
        let base = std::env::var("QUORUMLOG_PG_URL")
            .unwrap_or_else(|_| "postgres://quorumlog:quorumlog@127.0.0.1:5432".into());
        let admin_url = format!("{}/postgres", base.trim_end_matches('/'));
        if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
    }

    #[tokio::test]
    async fn postgres_records_the_incarnation_once_and_keeps_it() {
        let Some((url, name)) = scratch_postgres("incarnation").await else {
            return;
        };
        let store = PostgresStore::open(&url).await.expect("open");
        check_incarnation_rules(&store).await;
        store.close().await;
        let reopened = PostgresStore::open(&url).await.expect("reopen");
        assert_eq!(reopened.incarnation(99).await, Ok(11), "survives a restart");
        reopened.close().await;
        drop_scratch_postgres(&name).await;
    }

    #[tokio::test]
    async fn postgres_rows_without_a_record_are_incarnation_zero() {
        let Some((url, name)) = scratch_postgres("legacy").await else {
            return;
        };
        let store = PostgresStore::open(&url).await.expect("open");
        check_rows_without_a_record_are_incarnation_zero(&store).await;
        store.close().await;
        drop_scratch_postgres(&name).await;
    }
}
