//! Durable implementations of core's [`Store`] trait: SQLite and fjall
//! (embedded, a file or directory per node) and PostgreSQL (one database
//! per node), each a [`RowBackend`] under core's [`GroupCommit`], plus the
//! parsing of the `--store` flag.
use quorumlog_core::{Incarnation, MemoryStore, Store, StoreError};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;

mod fjall;
mod migrations;
mod postgres;
mod sqlite;

pub use fjall::{FjallRows, FjallStore};
pub use postgres::{PgRows, PostgresOptions, PostgresStore, OWNER_LOCK};
pub use quorumlog_core::storage::{
    GroupCommit, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend,
};
pub use sqlite::{SqliteRows, SqliteStore};

/// Bytes a store's row cache may hold by default (keys and encoded rows,
/// estimated): a bound on memory however large the values.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Where a node keeps its data: `memory`, `sqlite:PATH`, `fjall:DIR`,
/// `embedded:BASE` or `postgres://…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Memory,
    Sqlite(PathBuf),
    Fjall(PathBuf),
    /// The embedded default: fjall in `BASE.fjall`, unless `BASE.db`
    /// exists — a SQLite file from when SQLite was the default, whose
    /// acknowledged writes must stay where the node finds them.
    Embedded(PathBuf),
    Postgres(String),
}

impl StoreSpec {
    /// The store an `embedded:` spec stands for, decided by what is on
    /// disk now (any other spec is itself).
    pub fn resolve(&self) -> StoreSpec {
        match self {
            StoreSpec::Embedded(base) => {
                let sqlite = with_suffix(base, ".db");
                if sqlite.exists() {
                    StoreSpec::Sqlite(sqlite)
                } else {
                    StoreSpec::Fjall(with_suffix(base, ".fjall"))
                }
            }
            other => other.clone(),
        }
    }
}

/// `base` with `suffix` appended to its last component.
fn with_suffix(base: &std::path::Path, suffix: &str) -> PathBuf {
    let mut path = base.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "unknown store {0:?}: use memory, sqlite:PATH, fjall:DIR, embedded:BASE or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
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
        } else if let Some(dir) = s.strip_prefix("fjall:") {
            if dir.is_empty() {
                return Err(StoreSpecError(s.to_string()));
            }
            Ok(StoreSpec::Fjall(PathBuf::from(dir)))
        } else if let Some(base) = s.strip_prefix("embedded:") {
            if base.is_empty() {
                return Err(StoreSpecError(s.to_string()));
            }
            Ok(StoreSpec::Embedded(PathBuf::from(base)))
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
            StoreSpec::Fjall(dir) => write!(f, "fjall:{}", dir.display()),
            StoreSpec::Embedded(base) => write!(f, "embedded:{}", base.display()),
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
    #[error("could not open {store}: {source}")]
    Fjall {
        store: String,
        source: ::fjall::Error,
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
    let resolved = spec.resolve();
    if resolved != *spec {
        tracing::info!(store = %spec, opens = %resolved, "embedded store");
    }
    let spec = &resolved;
    Ok(match spec {
        StoreSpec::Embedded(_) => unreachable!("resolved above"),
        StoreSpec::Memory => Arc::new(MemoryStore::new()),
        StoreSpec::Sqlite(path) => {
            let store = SqliteRows::open(path).await?;
            renew_incarnation(&store, spec, renew).await?;
            Arc::new(store)
        }
        StoreSpec::Fjall(dir) => {
            let store = FjallRows::open(dir).await?;
            renew_incarnation(&store, spec, renew).await?;
            Arc::new(store)
        }
        StoreSpec::Postgres(url) => {
            let store = PgRows::open(url).await?;
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

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A hint row as both databases return it, in the order every query
/// selects its columns: target, key, data, generation, stored_at, bytes.
/// (A tuple, which sqlx decodes without its derive macros.)
pub(crate) type SqlHintRow = (i64, String, Vec<u8>, i64, i64, i64);

/// Core's [`HintRow`], which knows no database driver.
pub(crate) fn hint_row((target, key, data, generation, stored_at, bytes): SqlHintRow) -> HintRow {
    HintRow {
        target,
        key,
        data,
        generation,
        stored_at,
        bytes,
    }
}

/// [`HintTotals`] as both databases return them: live, live_bytes,
/// expired.
pub(crate) type SqlHintTotals = (i64, i64, i64);

pub(crate) fn hint_totals((live, live_bytes, expired): SqlHintTotals) -> HintTotals {
    HintTotals {
        live,
        live_bytes,
        expired,
    }
}

/// Checks every row backend must pass, run by each backend's own tests.
#[cfg(test)]
pub(crate) mod backend_checks {
    use super::RowBackend;
    use quorumlog_core::storage::RowWrite;
    use std::collections::BTreeSet;

    fn write(key: &str, data: &[u8], expected: Option<i64>) -> RowWrite {
        RowWrite {
            key: key.into(),
            data: data.to_vec(),
            expected,
        }
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|k| k.to_string()).collect()
    }

    /// Every row of a batch is judged on its own condition: a new row only
    /// where none exists, an update only at the version its writer read,
    /// whatever else the batch holds; keys list and page in order.
    pub(crate) async fn each_row_of_a_batch_is_judged_on_its_own_condition(rows: &impl RowBackend) {
        let first = rows
            .write_rows(&[write("a", b"a0", None), write("b", b"b0", None)])
            .await
            .unwrap();
        assert_eq!(first, keys(&["a", "b"]));
        let mixed = rows
            .write_rows(&[
                write("a", b"a1", Some(0)),  // the version it read: written
                write("b", b"b1", Some(5)),  // a version it never had: not
                write("a-new", b"n0", None), // new: written
                write("c", b"c0", None),     // new: written
                write("zz", b"z0", Some(0)), // an update of a missing row: not
            ])
            .await
            .unwrap();
        assert_eq!(mixed, keys(&["a", "a-new", "c"]));
        let again = rows
            .write_rows(&[write("a-new", b"n-again", None), write("a", b"a2", Some(0))])
            .await
            .unwrap();
        assert!(
            again.is_empty(),
            "{again:?}: an existing key taken as new, or a stale version"
        );
        assert_eq!(rows.read_row("a").await.unwrap(), Some((b"a1".to_vec(), 1)));
        assert_eq!(rows.read_row("b").await.unwrap(), Some((b"b0".to_vec(), 0)));
        assert_eq!(
            rows.read_row("a-new").await.unwrap(),
            Some((b"n0".to_vec(), 0))
        );
        assert_eq!(rows.read_row("zz").await.unwrap(), None);
        assert_eq!(rows.keys().await.unwrap(), ["a", "a-new", "b", "c"]);
        assert_eq!(
            rows.read_rows(Some("a"), 2).await.unwrap(),
            [
                ("a-new".to_string(), b"n0".to_vec()),
                ("b".to_string(), b"b0".to_vec())
            ]
        );
        // A large batch: every row is still judged.
        let many: Vec<RowWrite> = (0..1031)
            .map(|i| write(&format!("k{i}"), b"x", None))
            .collect();
        assert_eq!(rows.write_rows(&many).await.unwrap().len(), many.len());
        let updates: Vec<RowWrite> = (0..1031)
            .map(|i| write(&format!("k{i}"), b"y", Some(if i % 2 == 0 { 0 } else { 3 })))
            .collect();
        let written = rows.write_rows(&updates).await.unwrap();
        assert_eq!(written.len(), updates.len().div_ceil(2));
        assert!(written
            .iter()
            .all(|k| k[1..].parse::<usize>().unwrap() % 2 == 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_core::storage::{decode, MARKER_LEN, ROW_FORMAT_2, ROW_FORMAT_4};
    use quorumlog_core::{Actor, Dot, Version, VersionVector};

    /// A row as the release before incarnations wrote it (one version with
    /// dot n3:2, context {n1: 4}, value "v"): core's row-format tests
    /// check these bytes against the legacy layout.
    const LEGACY_ROW: &[u8] = &[
        1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, b'v',
    ];

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
        assert_eq!(
            "fjall:/tmp/n1".parse(),
            Ok(StoreSpec::Fjall("/tmp/n1".into()))
        );
        assert_eq!(StoreSpec::Fjall("d/n1".into()).to_string(), "fjall:d/n1");
        assert!("fjall:".parse::<StoreSpec>().is_err());
        assert!("embedded:".parse::<StoreSpec>().is_err());
        assert_eq!(
            StoreSpec::Embedded("d/node".into()).to_string(),
            "embedded:d/node"
        );
        assert!("sqlite:".parse::<StoreSpec>().is_err());
        assert!("mysql://x".parse::<StoreSpec>().is_err());
        assert_eq!(
            StoreSpec::Postgres("postgres://u:secret@h:5432/db".into()).to_string(),
            "postgres://u:***@h:5432/db"
        );
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
            timestamp_ms: 0,
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
        let store = SqliteRows::open(&path).await.expect("open");
        check_incarnation_rules(&store).await;
        store.close().await;
        drop(store);
        let reopened = SqliteRows::open(&path).await.expect("reopen");
        assert_eq!(reopened.incarnation(99).await, Ok(11), "survives a restart");
        reopened.close().await;
    }

    #[tokio::test]
    async fn sqlite_rows_without_a_record_are_incarnation_zero() {
        let (path, _dir) = temp_sqlite("legacy");
        let store = SqliteRows::open(&path).await.expect("open");
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
        let store = SqliteRows::open(&path).await.expect("open");
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
            .mint(Actor::new(1, 0), &old.context(), "w".into(), 0)
            .expect("mint");
        store
            .update("old", &mut |s| s.sync_one(newer.clone()).unwrap_or(false))
            .await
            .expect("update");
        let data: Vec<u8> = sqlx::query_scalar("SELECT data FROM siblings WHERE key = 'old'")
            .fetch_one(&mut conn)
            .await
            .expect("read back");
        assert_eq!(&data[..MARKER_LEN], &ROW_FORMAT_4);
        assert_eq!(
            decode("old", &data).map(|s| s.versions().to_vec()),
            Ok(vec![newer])
        );
        let _ = conn.close().await;
        store.close().await;
    }

    /// A node's SQLite database as the release before the project's codec
    /// wrote it (rows of format 2, bincode; `node-bin/tests/fixtures/`,
    /// made with `quorumd cluster --nodes 1`: key a one value, b two
    /// siblings, c a value that superseded another). It opens, keeps its
    /// incarnation, reads every row as it was, and a changed row is written
    /// back in format 4 and reads again.
    #[tokio::test]
    async fn a_database_of_format_2_rows_still_reads_and_upgrades() {
        use sqlx::Connection;
        let (path, _dir) = temp_sqlite("format-2");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/rows-format-2.db"
            ),
            &path,
        )
        .expect("copy the fixture");
        let store = SqliteRows::open(&path).await.expect("open");
        let incarnation = 349_444_580;
        assert_eq!(store.incarnation(1).await, Ok(incarnation));
        let actor = Actor::new(1, incarnation);
        let held = |set: &quorumlog_core::Siblings| -> Vec<(u64, String)> {
            set.versions()
                .iter()
                .map(|v| {
                    assert_eq!(v.dot.actor(), actor);
                    (v.dot.counter, v.value.clone())
                })
                .collect()
        };
        let a = store.get("fixture-a").await.expect("read a");
        assert_eq!(held(&a), vec![(1, "alpha".to_string())]);
        let b = store.get("fixture-b").await.expect("read b");
        assert_eq!(
            held(&b),
            vec![(1, "left".to_string()), (2, "right".to_string())]
        );
        let c = store.get("fixture-c").await.expect("read c");
        assert_eq!(held(&c), vec![(2, "second".to_string())]);
        assert!(
            c.seen().covers(Dot::new(actor, 1)),
            "c superseded its first value"
        );
        assert_eq!(
            c.versions()[0].context,
            VersionVector::from_entries([(actor, 1)])
        );

        let newer = b
            .mint(actor, &b.context(), "merged".into(), 0)
            .expect("mint");
        store
            .update("fixture-b", &mut |s| {
                s.sync_one(newer.clone()).unwrap_or(false)
            })
            .await
            .expect("update");
        let url = format!("sqlite:{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        let data: Vec<u8> = sqlx::query_scalar("SELECT data FROM siblings WHERE key = 'fixture-b'")
            .fetch_one(&mut conn)
            .await
            .expect("read back");
        assert_eq!(&data[..MARKER_LEN], &ROW_FORMAT_4);
        let untouched: Vec<u8> =
            sqlx::query_scalar("SELECT data FROM siblings WHERE key = 'fixture-a'")
                .fetch_one(&mut conn)
                .await
                .expect("read back");
        assert_eq!(
            &untouched[..MARKER_LEN],
            &ROW_FORMAT_2,
            "rows are rewritten only when they change"
        );
        assert_eq!(
            decode("fixture-b", &data).map(|s| s.versions().to_vec()),
            Ok(vec![newer])
        );
        let _ = conn.close().await;
        store.close().await;
    }

    /// Open `spec` once the store closed or dropped before lets go of its
    /// file (its committer task drops the backend, and the lock, soon after).
    async fn open_once_released(spec: &StoreSpec, renew: Option<Incarnation>) -> Arc<dyn Store> {
        for _ in 0..100 {
            match open_renewing(spec, renew).await {
                Ok(store) => return store,
                Err(OpenError::FileInUse { .. }) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => panic!("open {spec}: {e}"),
            }
        }
        panic!("{spec} stayed locked by the store before")
    }

    /// `embedded:` opens fjall, except where a SQLite file of the earlier
    /// default holds the node's data: that file keeps being used, and
    /// what was written to it is read back.
    #[tokio::test]
    async fn the_embedded_default_keeps_a_sqlite_file_it_finds() {
        let (path, _dir) = temp_sqlite("embedded");
        let base = path.with_extension("");
        let spec = StoreSpec::Embedded(base.clone());
        assert_eq!(
            spec.resolve(),
            StoreSpec::Fjall(base.with_extension("fjall"))
        );
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        let legacy = SqliteRows::open(&path).await.expect("open SQLite");
        let version = Version {
            dot: Dot::new(1, 1),
            context: VersionVector::new(),
            value: "kept".into(),
            timestamp_ms: 0,
        };
        legacy
            .update("k", &mut |s| s.sync_one(version.clone()).unwrap_or(false))
            .await
            .expect("update");
        legacy.close().await;
        drop(legacy);
        assert_eq!(spec.resolve(), StoreSpec::Sqlite(path.clone()));
        let store = open_once_released(&spec, None).await;
        let held = store.get("k").await.expect("read");
        assert_eq!(held.versions()[0].value, "kept");
        assert!(
            !base.with_extension("fjall").exists(),
            "a fjall store was made too"
        );
    }

    #[tokio::test]
    async fn open_renewing_records_the_new_incarnation() {
        let (path, _dir) = temp_sqlite("renew");
        let spec = StoreSpec::Sqlite(path);
        let store = open(&spec).await.expect("open");
        assert_eq!(store.incarnation(4).await, Ok(4));
        drop(store);
        let store = open_once_released(&spec, Some(8)).await;
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
        let store = PgRows::open(&url).await.expect("open");
        check_incarnation_rules(&store).await;
        store.close().await;
        let reopened = PgRows::open(&url).await.expect("reopen");
        assert_eq!(reopened.incarnation(99).await, Ok(11), "survives a restart");
        reopened.close().await;
        drop_scratch_postgres(&name).await;
    }

    #[tokio::test]
    async fn postgres_rows_without_a_record_are_incarnation_zero() {
        let Some((url, name)) = scratch_postgres("legacy").await else {
            return;
        };
        let store = PgRows::open(&url).await.expect("open");
        check_rows_without_a_record_are_incarnation_zero(&store).await;
        store.close().await;
        drop_scratch_postgres(&name).await;
    }
}
