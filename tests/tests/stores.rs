//! The durable stores on their own — SQLite on a temporary file, fjall in
//! a temporary directory and PostgreSQL on a real server: optimistic read-merge-write, group commit
//! and the row cache must never lose or hide an acknowledged update,
//! however many updates race on one key and however hard the cache churns;
//! a PostgreSQL database has one owning node; a store records its node's
//! incarnation once, keeps it, and a wiped store takes a new one; hints
//! for replicas that missed a write merge per (target, key), respect their
//! bounds and expiry, are removed only in the generation that was sent,
//! and survive a restart of their coordinator. The PostgreSQL half skips
//! without a server, except under CI=true, where it fails.
use quorumd::store::{
    FjallRows, FjallStore, OpenError, PgRows, PostgresOptions, PostgresStore, SqliteRows,
    SqliteStore, OWNER_LOCK,
};
use quorumlog_core::{
    Dot, Hint, HintBacklog, HintDropReason, HintLimits, HintStored, NodeId, Siblings, Store,
    Version, VersionError, VersionVector,
};
use quorumlog_tests::tokio;
use quorumlog_tests::{drop_database, postgres, recreate_database, serial};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a check runs.
#[derive(Clone)]
enum Backend {
    Sqlite(PathBuf),
    /// A directory of its own per check.
    Fjall(PathBuf),
    /// One database (`quorumlog_5`), which has one owner at a time: the
    /// checks take turns with `serial()`.
    Postgres(String),
}

impl Backend {
    fn sqlite(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("quorumlog-stores-{}", std::process::id()));
        Backend::Sqlite(dir.join(format!("{test}.db")))
    }

    fn fjall(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("quorumlog-stores-{}", std::process::id()));
        Backend::Fjall(dir.join(format!("{test}.fjall")))
    }

    /// Remove a SQLite or fjall check's files (a database stays: keys are
    /// unique).
    fn clean_up(&self) {
        if let Backend::Fjall(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        if let Backend::Sqlite(path) = self {
            for suffix in ["", "-wal", "-shm", ".lock"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
            // The last check out removes the (then empty) directory.
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    fn postgres() -> Option<Self> {
        Self::postgres_with_url().map(|(backend, _)| backend)
    }

    /// The PostgreSQL backend and its database's URL, for checks that also
    /// connect on their own.
    fn postgres_with_url() -> Option<(Self, String)> {
        postgres().map(|url| {
            let url = format!("{url}/quorumlog_5");
            (Backend::Postgres(url.clone()), url)
        })
    }
}

/// An open store and how to close it.
enum Opened {
    Sqlite(Arc<SqliteStore>),
    Fjall(Arc<FjallStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(s) => s.clone(),
            Opened::Fjall(s) => s.clone(),
            Opened::Postgres(s) => s.clone(),
        }
    }

    async fn close(self) {
        match self {
            Opened::Sqlite(s) => s.close().await,
            Opened::Fjall(s) => s.close().await,
            Opened::Postgres(s) => s.close().await,
        }
    }
}

async fn open(backend: &Backend, cache_bytes: usize) -> Opened {
    match backend {
        Backend::Sqlite(path) => Opened::Sqlite(Arc::new(
            SqliteRows::open_with_cache(path, cache_bytes)
                .await
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display())),
        )),
        Backend::Fjall(dir) => Opened::Fjall(Arc::new(
            FjallRows::open_with_cache(dir, cache_bytes)
                .await
                .unwrap_or_else(|e| panic!("open {}: {e}", dir.display())),
        )),
        Backend::Postgres(url) => {
            let options = PostgresOptions {
                cache_bytes,
                ..PostgresOptions::default()
            };
            Opened::Postgres(Arc::new(
                PgRows::open_with(url, options)
                    .await
                    .unwrap_or_else(|e| panic!("open {url}: {e}")),
            ))
        }
    }
}

/// Keys unique to this run, so reruns and other tests never collide.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("store-test-{test}-{}-{nanos}", std::process::id())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn concurrent(writer: u32) -> Version {
    // Distinct nodes, empty contexts: every such version is a sibling.
    Version {
        dot: Dot::new(writer, 1),
        context: VersionVector::new(),
        value: format!("w{writer}"),
        timestamp_ms: 0,
    }
}

/// Merge one version into a key's set (as a replica's apply does); these
/// checks never send a dot twice with other contents.
fn sync(set: &mut Siblings, version: &Version) -> bool {
    set.sync_one(version.clone())
        .unwrap_or_else(|e| panic!("merging {}: {e}", version.dot))
}

/// Every key's sibling count.
async fn counts(store: &dyn Store, keys: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for key in keys {
        out.push(store.get(key).await.expect("get").len());
    }
    out
}

async fn concurrent_blind_writes_all_survive(backend: Backend) {
    let keys: Vec<String> = (0..6).map(|k| format!("{}-{k}", prefix("blind"))).collect();
    const WRITERS: u32 = 24;
    // A cache of ~3 rows (24 siblings of ~40 bytes each, plus overhead)
    // over 6 hot keys: every commit evicts something, so fills constantly
    // race evictions.
    let opened = open(&backend, 3 * 1024).await;
    let store = opened.store();
    let mut tasks = Vec::new();
    for writer in 1..=WRITERS {
        for key in &keys {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let v = concurrent(writer);
                let dot = v.dot;
                store
                    .update(&key, &mut |s| sync(s, &v))
                    .await
                    .expect("update");
                // Acknowledged: every later read must show it.
                let seen = store.get(&key).await.expect("get");
                assert!(seen.covers(dot), "{key}: acked {dot} missing from a read");
            }));
        }
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    // Through the open store (and its cache), then reopened (cold).
    let expected = vec![WRITERS as usize; keys.len()];
    assert_eq!(counts(&*store, &keys).await, expected);
    drop(store);
    opened.close().await;
    let cold = open(&backend, 0).await;
    assert_eq!(counts(&*cold.store(), &keys).await, expected);
    cold.close().await;
    backend.clean_up();
}

async fn racing_read_modify_writes_lose_no_update(backend: Backend) {
    let keys: Vec<String> = (0..3).map(|k| format!("{}-{k}", prefix("rmw"))).collect();
    const UPDATES: u64 = 40;
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    let mut tasks = Vec::new();
    for key in &keys {
        for _ in 0..UPDATES {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                // Each update supersedes whatever it found: a counter. An
                // update merged onto a stale row would mint a dot another
                // already used, and the count would fall short.
                store
                    .update(&key, &mut |s: &mut Siblings| {
                        let next = s.mint(1, &s.context(), String::new(), 0).expect("mint");
                        sync(s, &next)
                    })
                    .await
                    .expect("update");
            }));
        }
    }
    for task in tasks {
        task.await.expect("update task");
    }
    drop(store);
    opened.close().await;
    let cold = open(&backend, 0).await;
    let last = Dot::new(1, UPDATES);
    for key in &keys {
        let set = cold.store().get(key).await.expect("get");
        assert_eq!(set.len(), 1, "{key}: {set:?}");
        assert_eq!(set.versions()[0].dot, last, "{key}: an update was lost");
    }
    cold.close().await;
    backend.clean_up();
}

async fn an_unchanged_update_writes_nothing(backend: Backend) {
    let prefix = prefix("noop");
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    let key = format!("{prefix}-k");
    let v = concurrent(9);
    let first = store
        .update(&key, &mut |s| sync(s, &v))
        .await
        .expect("update");
    // Applying the same version again changes nothing.
    let again = store
        .update(&key, &mut |s| sync(s, &v))
        .await
        .expect("update");
    assert_eq!(first, again);
    let keys = store.keys().await.expect("keys");
    assert!(keys.contains(&key));
    let absent = store.get(&format!("{prefix}-absent")).await.expect("get");
    assert!(absent.is_empty());
    // A paged scan (how anti-entropy builds its index at start) sees every
    // key once, in key order, with what `get` sees.
    for i in 0..5 {
        let v = concurrent(10 + i);
        store
            .update(&format!("{prefix}-p{i}"), &mut |s| sync(s, &v))
            .await
            .expect("update");
    }
    let mut scanned = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan(after.as_deref(), 2).await.expect("scan");
        assert!(page.len() <= 2, "a page of {} rows", page.len());
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, siblings) in page {
            assert_eq!(siblings, store.get(&key).await.expect("get"), "{key}");
            scanned.push(key);
        }
    }
    let mut every = store.keys().await.expect("keys");
    every.sort();
    assert_eq!(scanned, every, "a scan must list every key once, in order");
    drop(store);
    opened.close().await;
    backend.clean_up();
}

#[test]
fn sqlite_concurrent_blind_writes_all_survive() {
    block_on(concurrent_blind_writes_all_survive(Backend::sqlite(
        "blind",
    )));
}

#[test]
fn sqlite_racing_read_modify_writes_lose_no_update() {
    block_on(racing_read_modify_writes_lose_no_update(Backend::sqlite(
        "rmw",
    )));
}

#[test]
fn sqlite_an_unchanged_update_writes_nothing() {
    block_on(an_unchanged_update_writes_nothing(Backend::sqlite("noop")));
}

#[test]
fn postgres_concurrent_blind_writes_all_survive_with_a_churning_cache() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let _turn = serial();
    block_on(concurrent_blind_writes_all_survive(backend));
}

#[test]
fn postgres_racing_read_modify_writes_lose_no_update() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let _turn = serial();
    block_on(racing_read_modify_writes_lose_no_update(backend));
}

#[test]
fn postgres_an_unchanged_update_writes_nothing() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let _turn = serial();
    block_on(an_unchanged_update_writes_nothing(backend));
}

#[test]
fn postgres_a_second_node_on_the_same_database_is_refused_until_the_first_closes() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let _turn = serial();
    block_on(async {
        let first = PgRows::open(&url).await.expect("open");
        match PgRows::open_with(&url, impatient()).await {
            Err(e @ OpenError::InUse { .. }) => {
                let message = e.to_string();
                assert!(message.contains("quorumlog_5"), "{message}");
                assert!(message.contains("database of its own"), "{message}");
                assert!(
                    !message.contains(":quorumlog@"),
                    "password shown: {message}"
                );
            }
            Err(e) => panic!("expected InUse, got {e}"),
            Ok(_) => panic!("two stores opened the same database"),
        }
        first.close().await;
        // Released: the next owner gets in.
        let next = PgRows::open(&url).await.expect("open after close");
        next.close().await;
    });
}

#[test]
fn sqlite_a_second_node_on_the_same_file_is_refused_until_the_first_closes() {
    let backend = Backend::sqlite("owner");
    let Backend::Sqlite(path) = &backend else {
        unreachable!()
    };
    block_on(async {
        let first = SqliteRows::open(path).await.expect("open");
        match SqliteRows::open(path).await {
            Err(e @ OpenError::FileInUse { .. }) => {
                let message = e.to_string();
                assert!(message.contains("owner.db"), "{message}");
                assert!(message.contains("file of its own"), "{message}");
            }
            Err(e) => panic!("expected FileInUse, got {e}"),
            Ok(_) => panic!("two stores opened the same file"),
        }
        first.close().await;
        let next = SqliteRows::open(path).await.expect("open after close");
        next.close().await;
    });
    backend.clean_up();
}

/// Options that give up on a held owner lock quickly.
fn impatient() -> PostgresOptions {
    PostgresOptions {
        owner_wait: Duration::from_millis(300),
        ..PostgresOptions::default()
    }
}

/// Terminate every other client session of our role on `conn`'s database
/// (a store's), as an administrator or a PostgreSQL restart would; the
/// number signalled. Only client sessions of our own role: an autovacuum
/// worker on the same database is a superuser process that a plain role
/// may not signal, and it holds nothing of the store's.
async fn kill_other_sessions(conn: &mut sqlx::PgConnection) -> usize {
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND backend_type = 'client backend' AND usename = current_user",
    )
    .fetch_all(conn)
    .await
    .expect("terminate the store's sessions");
    killed.len()
}

/// PostgreSQL restarted, or an administrator killed our sessions: the
/// committer's connection is gone. The batch on it fails (its writers get
/// the error, nothing is acknowledged falsely), and the next batch
/// reconnects — the store does not stay broken, and every acknowledged
/// write is still there.
#[test]
fn postgres_the_committer_reconnects_after_its_session_is_killed() {
    use sqlx::Connection;
    let Some((backend, url)) = Backend::postgres_with_url() else {
        return;
    };
    let url = &url;
    let _turn = serial();
    block_on(async {
        let prefix = prefix("reconnect");
        let opened = open(&backend, 1 << 20).await;
        let store = opened.store();
        let before = format!("{prefix}-before");
        store
            .update(&before, &mut |s| sync(s, &concurrent(1)))
            .await
            .expect("update before the kill");

        let mut admin = sqlx::PgConnection::connect(url)
            .await
            .expect("admin connection");
        let killed = kill_other_sessions(&mut admin).await;
        assert!(killed > 0, "the store had no session to kill");
        admin.close().await.expect("close admin");

        // The first batch may meet the dead session; within a few tries
        // the committer is on a new one.
        let after = format!("{prefix}-after");
        let mut outcome = Err(String::new());
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            outcome = store
                .update(&after, &mut |s| sync(s, &concurrent(2)))
                .await
                .map_err(|e| e.to_string());
            if outcome.is_ok() {
                break;
            }
        }
        let written = outcome.expect("the store never recovered");
        assert_eq!(written.len(), 1);
        // The new session owns the database again.
        assert!(
            matches!(
                PgRows::open_with(url, impatient()).await,
                Err(OpenError::InUse { .. })
            ),
            "a second store opened the database after the reconnect"
        );
        drop(store);
        opened.close().await;

        // A fresh store (no cache) reads both writes from the database.
        let cold = open(&backend, 0).await;
        for (key, writer) in [(&before, 1), (&after, 2)] {
            let set = cold.store().get(key).await.expect("get");
            assert_eq!(set.len(), 1, "{key}: {set:?}");
            assert_eq!(set.versions()[0].dot.node, writer, "{key}");
        }
        cold.close().await;
    });
}

/// The sessions died and, before the committer reconnected, another
/// process took the owner lock: the store refuses to write (an error that
/// says why) rather than share the database.
#[test]
fn postgres_a_committer_that_lost_ownership_refuses_to_write() {
    use sqlx::Connection;
    let Some((backend, url)) = Backend::postgres_with_url() else {
        return;
    };
    let url = &url;
    let _turn = serial();
    block_on(async {
        let prefix = prefix("usurped");
        let opened = open(&backend, 1 << 20).await;
        let store = opened.store();
        let mut intruder = sqlx::PgConnection::connect(url).await.expect("connect");
        kill_other_sessions(&mut intruder).await;
        // pg_terminate_backend only signals: the lock goes when the
        // session has actually ended.
        let mut taken = false;
        for _ in 0..100 {
            taken = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(OWNER_LOCK)
                .fetch_one(&mut intruder)
                .await
                .expect("take the owner lock");
            if taken {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(taken, "the owner lock outlived its session by 5 s");

        let key = format!("{prefix}-k");
        let mut last = String::new();
        for _ in 0..5 {
            match store.update(&key, &mut |s| sync(s, &concurrent(3))).await {
                Ok(_) => panic!("wrote to a database another process owns"),
                Err(e) => last = e.to_string(),
            }
            if last.contains("owner lock") {
                break;
            }
        }
        assert!(last.contains("owner lock"), "{last}");
        assert!(!last.contains(":quorumlog@"), "password shown: {last}");
        intruder.close().await.expect("close intruder");
        drop(store);
        opened.close().await;
        let cold = open(&backend, 0).await;
        assert!(cold.store().get(&key).await.expect("get").is_empty());
        cold.close().await;
    });
}

/// A new store takes the incarnation it is offered, records it, and keeps
/// it however often it is asked, whatever is written, across a reopen.
async fn a_new_store_takes_the_offered_incarnation_and_keeps_it(backend: Backend) {
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    assert_eq!(store.incarnation(7).await, Ok(7), "a new store");
    assert_eq!(store.incarnation(9).await, Ok(7), "asked again");
    let key = format!("{}-k", prefix("incarnation"));
    store
        .update(&key, &mut |s| sync(s, &concurrent(1)))
        .await
        .expect("update");
    assert_eq!(store.incarnation(10).await, Ok(7), "after a write");
    drop(store);
    opened.close().await;
    let reopened = open(&backend, 0).await;
    assert_eq!(
        reopened.store().incarnation(99).await,
        Ok(7),
        "after a reopen"
    );
    reopened.close().await;
    backend.clean_up();
}

/// A store that holds rows but records no incarnation was written before
/// incarnations existed, under incarnation 0: it answers 0, for good.
async fn rows_without_a_record_are_incarnation_zero(backend: Backend) {
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    let key = format!("{}-k", prefix("legacy"));
    store
        .update(&key, &mut |s| sync(s, &concurrent(1)))
        .await
        .expect("update");
    assert_eq!(store.incarnation(5).await, Ok(0));
    assert_eq!(store.incarnation(6).await, Ok(0), "asked again");
    drop(store);
    opened.close().await;
    let reopened = open(&backend, 0).await;
    assert_eq!(
        reopened.store().incarnation(8).await,
        Ok(0),
        "after a reopen"
    );
    reopened.close().await;
    backend.clean_up();
}

/// A store whose data is gone (a lost disk: the SQLite files deleted, the
/// PostgreSQL tables emptied) is a new life of its node: it takes the new
/// incarnation offered, not the one it had.
async fn a_wiped_store_takes_a_new_incarnation(backend: Backend) {
    let key = format!("{}-k", prefix("wiped"));
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    assert_eq!(store.incarnation(7).await, Ok(7));
    store
        .update(&key, &mut |s| sync(s, &concurrent(1)))
        .await
        .expect("update");
    drop(store);
    opened.close().await;

    wipe(&backend).await;

    let reopened = open(&backend, 1 << 20).await;
    let store = reopened.store();
    assert!(store.get(&key).await.expect("get").is_empty(), "not wiped");
    assert_eq!(store.incarnation(8).await, Ok(8), "a wiped store");
    assert_eq!(store.incarnation(9).await, Ok(8), "asked again");
    drop(store);
    reopened.close().await;
    backend.clean_up();
}

/// Lose a closed store's data: delete the SQLite files, or empty every
/// table of the PostgreSQL database.
async fn wipe(backend: &Backend) {
    match backend {
        Backend::Sqlite(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.clone().into_os_string();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
            assert!(!path.exists(), "{} survived the wipe", path.display());
        }
        Backend::Fjall(dir) => {
            std::fs::remove_dir_all(dir).expect("delete the fjall directory");
        }
        Backend::Postgres(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query("TRUNCATE siblings, node_meta, hints")
                .execute(&mut conn)
                .await
                .expect("empty the store's tables");
            conn.close().await.expect("close");
        }
    }
}

/// Run `check` on a PostgreSQL database of its own, created for it and
/// dropped afterwards (the shared ones record an incarnation already).
fn on_scratch_postgres<F, Fut>(test: &str, check: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(base) = postgres() else {
        return;
    };
    let _turn = serial();
    let name = format!("quorumlog_stores_{test}_{}", std::process::id());
    block_on(async {
        recreate_database(&base, &name).await;
        check(Backend::Postgres(format!("{base}/{name}"))).await;
        drop_database(&base, &name).await;
    });
}

#[test]
fn sqlite_a_new_store_takes_the_offered_incarnation_and_keeps_it() {
    let backend = Backend::sqlite("incarnation-new");
    block_on(a_new_store_takes_the_offered_incarnation_and_keeps_it(
        backend,
    ));
}

#[test]
fn sqlite_rows_without_a_record_are_incarnation_zero() {
    let backend = Backend::sqlite("incarnation-legacy");
    block_on(rows_without_a_record_are_incarnation_zero(backend));
}

#[test]
fn sqlite_a_wiped_store_takes_a_new_incarnation() {
    let backend = Backend::sqlite("incarnation-wiped");
    block_on(a_wiped_store_takes_a_new_incarnation(backend));
}

#[test]
fn postgres_a_new_store_takes_the_offered_incarnation_and_keeps_it() {
    on_scratch_postgres(
        "new",
        a_new_store_takes_the_offered_incarnation_and_keeps_it,
    );
}

#[test]
fn postgres_rows_without_a_record_are_incarnation_zero() {
    on_scratch_postgres("legacy", rows_without_a_record_are_incarnation_zero);
}

#[test]
fn postgres_a_wiped_store_takes_a_new_incarnation() {
    on_scratch_postgres("wiped", a_wiped_store_takes_a_new_incarnation);
}

const HOUR: Duration = Duration::from_secs(3600);
const HOUR_MS: u64 = 3_600_000;

/// A key's set holding one blind write by `writer`.
fn blind(writer: NodeId, value: &str) -> Siblings {
    Siblings::from_versions([Version {
        dot: Dot::new(writer, 1),
        context: VersionVector::new(),
        value: value.into(),
        timestamp_ms: 0,
    }])
    .expect("a sibling set")
}

fn merged(sets: &[Siblings]) -> Siblings {
    let mut out = Siblings::new();
    for set in sets {
        out.sync(set).expect("merge");
    }
    out
}

fn hint_limits(max_per_target: usize, max_bytes_per_target: usize) -> HintLimits {
    HintLimits {
        max_per_target,
        max_bytes_per_target,
        max_age: HOUR,
    }
}

async fn put_hint(
    store: &dyn Store,
    target: NodeId,
    key: &str,
    set: &Siblings,
    now_ms: u64,
    limits: &HintLimits,
) -> HintStored {
    store
        .put_hint(target, key, set, now_ms, limits)
        .await
        .unwrap_or_else(|e| panic!("put_hint {target} {key}: {e}"))
        .outcome
}

/// All of `target`'s hints at `now_ms` (none expires at the times used).
async fn hints(store: &dyn Store, target: NodeId, now_ms: u64) -> Vec<Hint> {
    store
        .hints_for(target, usize::MAX, now_ms, HOUR)
        .await
        .expect("hints_for")
        .hints
}

fn backlog(hints: &[&Hint]) -> HintBacklog {
    HintBacklog {
        count: hints.len(),
        bytes: hints.iter().map(|h| h.bytes()).sum(),
    }
}

/// Hints merge per (target, key) and are read oldest first; a conflicting
/// dot leaves the held hint as it was; after a close and a reopen (a
/// restarted coordinator) every hint, time and generation is there, the
/// backlog figures add up, a hint read before a merge cannot remove the
/// merge, and generations never repeat.
async fn hints_survive_a_reopen_with_their_bookkeeping(backend: Backend) {
    let limits = HintLimits::default();
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    assert_eq!(store.hint_backlog().await, Ok(vec![]), "a new store");
    let store = &*store;
    assert_eq!(
        put_hint(store, 2, "a", &blind(1, "a"), 10, &limits).await,
        HintStored::Stored
    );
    assert_eq!(
        put_hint(store, 2, "b", &blind(1, "b"), 5, &limits).await,
        HintStored::Stored
    );
    assert_eq!(
        put_hint(store, 3, "a", &blind(1, "a"), 7, &limits).await,
        HintStored::Stored
    );
    assert_eq!(
        put_hint(store, 2, "a", &blind(3, "x"), 20, &limits).await,
        HintStored::Merged
    );
    // What the hint holds already: nothing to write.
    assert_eq!(
        put_hint(store, 2, "a", &blind(3, "x"), 21, &limits).await,
        HintStored::Merged
    );

    let before = hints(store, 2, 30).await;
    let keys: Vec<(&str, u64)> = before
        .iter()
        .map(|h| (h.key.as_str(), h.stored_at))
        .collect();
    assert_eq!(
        keys,
        [("b", 5), ("a", 10)],
        "oldest first; a merge keeps the first time"
    );
    assert_eq!(before[1].siblings, merged(&[blind(1, "a"), blind(3, "x")]));

    // The same dot with another value: refused, and the hint unchanged.
    let forged = merged(&[blind(1, "forged"), blind(5, "fine")]);
    match put_hint(store, 2, "a", &forged, 25, &limits).await {
        HintStored::Dropped {
            reason: HintDropReason::Conflict { error, .. },
        } => assert_eq!(
            error,
            VersionError::DotConflict {
                dot: Dot::new(1, 1)
            }
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        hints(store, 2, 30).await,
        before,
        "a refused merge changes nothing"
    );

    let other = hints(store, 3, 30).await;
    let expected_backlog = vec![
        (2, backlog(&before.iter().collect::<Vec<_>>())),
        (3, backlog(&other.iter().collect::<Vec<_>>())),
    ];
    assert_eq!(store.hint_backlog().await, Ok(expected_backlog.clone()));
    opened.close().await;

    let reopened = open(&backend, 0).await;
    let store = reopened.store();
    let store = &*store;
    assert_eq!(
        hints(store, 2, 30).await,
        before,
        "the hints survive a restart"
    );
    assert_eq!(hints(store, 3, 30).await, other);
    assert_eq!(store.hint_backlog().await, Ok(expected_backlog));

    // `sent` is on its way to node 2 when node 2 misses another write.
    let sent = before[1].clone();
    assert_eq!(
        put_hint(store, 2, "a", &blind(4, "y"), 40, &limits).await,
        HintStored::Merged
    );
    assert_eq!(
        store.remove_hint(&sent).await,
        Ok(false),
        "a newer merge survives"
    );
    let newer = hints(store, 2, 40).await;
    assert_eq!(newer[1].siblings.len(), 3);
    assert!(newer[1].generation > sent.generation);
    assert_eq!(store.remove_hint(&newer[1]).await, Ok(true));
    assert_eq!(
        store.remove_hint(&newer[1]).await,
        Ok(false),
        "removed already"
    );
    assert_eq!(store.remove_hint(&newer[0]).await, Ok(true));
    assert_eq!(hints(store, 2, 40).await, vec![]);
    // Hinted again, the key gets a generation never handed out before
    // (the counter survived the restart too): no stale hint removes it.
    assert_eq!(
        put_hint(store, 2, "a", &blind(1, "a"), 50, &limits).await,
        HintStored::Stored
    );
    let again = hints(store, 2, 50).await;
    let highest = before.iter().chain(&newer).map(|h| h.generation).max();
    assert!(Some(again[0].generation) > highest, "{again:?}");
    for stale in before.iter().chain(&newer) {
        assert_eq!(store.remove_hint(stale).await, Ok(false));
    }
    assert_eq!(
        store
            .hint_backlog()
            .await
            .map(|b| b.into_iter().map(|(t, b)| (t, b.count)).collect()),
        Ok(vec![(2, 1), (3, 1)])
    );
    reopened.close().await;
    backend.clean_up();
}

/// Per-target bounds of count and bytes refuse new hints (and growing
/// merges) with the reason, leaving what is held as it was; hints older
/// than max_age are dropped on read, on a put for their target, and when
/// asked, and stop counting against the bounds.
async fn hint_bounds_and_expiry_are_enforced(backend: Backend) {
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    let store = &*store;

    let two = hint_limits(2, 1 << 20);
    for key in ["a", "b"] {
        assert_eq!(
            put_hint(store, 2, key, &blind(1, key), 1, &two).await,
            HintStored::Stored
        );
    }
    assert_eq!(
        put_hint(store, 2, "c", &blind(1, "c"), 1, &two).await,
        HintStored::Dropped {
            reason: HintDropReason::TooManyHints {
                target: 2,
                held: 2,
                limit: 2
            }
        }
    );
    assert_eq!(
        put_hint(store, 2, "a", &blind(3, "m"), 2, &two).await,
        HintStored::Merged
    );
    assert_eq!(
        put_hint(store, 3, "c", &blind(1, "c"), 1, &two).await,
        HintStored::Stored
    );

    let one = quorumlog_core::hints::hint_bytes("x", &blind(1, "v"));
    let tight = hint_limits(100, 2 * one);
    for key in ["x", "y"] {
        assert_eq!(
            put_hint(store, 5, key, &blind(1, "v"), 1, &tight).await,
            HintStored::Stored
        );
    }
    assert_eq!(
        put_hint(store, 5, "z", &blind(1, "v"), 1, &tight).await,
        HintStored::Dropped {
            reason: HintDropReason::TooManyBytes {
                target: 5,
                bytes: 3 * one,
                limit: 2 * one
            }
        }
    );
    assert!(matches!(
        put_hint(store, 5, "x", &blind(3, "w"), 1, &tight).await,
        HintStored::Dropped {
            reason: HintDropReason::TooManyBytes { .. }
        }
    ));
    let held = backlog(&hints(store, 2, 2).await.iter().collect::<Vec<_>>());
    assert_eq!(held.count, 2);
    let expected = vec![
        (2, held),
        (
            3,
            HintBacklog {
                count: 1,
                bytes: quorumlog_core::hints::hint_bytes("c", &blind(1, "c")),
            },
        ),
        (
            5,
            HintBacklog {
                count: 2,
                bytes: 2 * one,
            },
        ),
    ];
    assert_eq!(store.hint_backlog().await, Ok(expected.clone()));
    opened.close().await;

    // The bounds hold across a restart: they are counted from the table.
    let reopened = open(&backend, 0).await;
    let store = reopened.store();
    let store = &*store;
    assert_eq!(store.hint_backlog().await, Ok(expected));
    assert!(matches!(
        put_hint(store, 2, "c", &blind(1, "c"), 3, &two).await,
        HintStored::Dropped {
            reason: HintDropReason::TooManyHints { .. }
        }
    ));

    // Expiry. Node 7 gets one hint at 0 and one an hour later.
    let limits = HintLimits::default();
    put_hint(store, 7, "old", &blind(1, "o"), 0, &limits).await;
    put_hint(store, 7, "new", &blind(1, "n"), HOUR_MS, &limits).await;
    let old = quorumlog_core::hints::hint_bytes("old", &blind(1, "o"));
    // Exactly max_age old: still replayed.
    assert_eq!(hints(store, 7, HOUR_MS).await.len(), 2);
    let batch = store
        .hints_for(7, 10, HOUR_MS + 1, HOUR)
        .await
        .expect("hints_for");
    assert_eq!(
        batch.expired,
        HintBacklog {
            count: 1,
            bytes: old
        }
    );
    assert_eq!(
        batch
            .hints
            .iter()
            .map(|h| h.key.as_str())
            .collect::<Vec<_>>(),
        ["new"]
    );
    assert_eq!(
        store
            .hints_for(7, 10, HOUR_MS + 1, HOUR)
            .await
            .map(|b| b.expired),
        Ok(HintBacklog::default())
    );

    // Node 2's hints (stored at 1 and 2) expire for a put: the bound of
    // two no longer holds the new one back, and the put says what it
    // dropped.
    let put = store
        .put_hint(2, "c", &blind(1, "c"), HOUR_MS + 3, &two)
        .await
        .expect("put_hint");
    assert_eq!(put.outcome, HintStored::Stored);
    assert_eq!(put.expired, held);

    // And when asked: node 3 and node 5's hints (stored at 1), node 7's at
    // one hour; node 2's new one stays.
    let dropped = store
        .expire_hints(2 * HOUR_MS + 1, HOUR)
        .await
        .expect("expire_hints");
    assert_eq!(
        dropped
            .iter()
            .map(|(t, b)| (*t, b.count))
            .collect::<Vec<_>>(),
        [(3, 1), (5, 2), (7, 1)]
    );
    assert_eq!(dropped[1].1.bytes, 2 * one);
    assert_eq!(
        store
            .hint_backlog()
            .await
            .map(|b| b.into_iter().map(|(t, b)| (t, b.count)).collect()),
        Ok(vec![(2, 1)])
    );
    assert_eq!(store.expire_hints(2 * HOUR_MS + 1, HOUR).await, Ok(vec![]));
    reopened.close().await;
    backend.clean_up();
}

/// Many coordinator tasks hint the same key at once, while ordinary
/// writes go through group commit: every write ends up in the one hint.
async fn concurrent_hints_of_one_key_all_merge(backend: Backend) {
    const WRITERS: u32 = 16;
    let opened = open(&backend, 1 << 20).await;
    let store = opened.store();
    let data_key = format!("{}-k", prefix("hints-concurrent"));
    let mut tasks = Vec::new();
    for writer in 1..=WRITERS {
        let (store, data_key) = (store.clone(), data_key.clone());
        tasks.push(tokio::spawn(async move {
            let set = blind(writer, &format!("w{writer}"));
            store
                .update(&data_key, &mut |s| sync(s, &concurrent(writer)))
                .await
                .expect("update");
            let outcome = store
                .put_hint(2, "hot", &set, u64::from(writer), &HintLimits::default())
                .await
                .expect("put_hint")
                .outcome;
            assert!(
                matches!(outcome, HintStored::Stored | HintStored::Merged),
                "{outcome:?}"
            );
        }));
    }
    for task in tasks {
        task.await.expect("hinting task");
    }
    let [hint] = &hints(&*store, 2, 100).await[..] else {
        panic!("one hint for one key")
    };
    assert_eq!(hint.siblings.len(), WRITERS as usize, "a merge was lost");
    assert_eq!(
        store.get(&data_key).await.expect("get").len(),
        WRITERS as usize
    );
    drop(store);
    opened.close().await;
    backend.clean_up();
}

#[test]
fn sqlite_hints_survive_a_reopen_with_their_bookkeeping() {
    block_on(hints_survive_a_reopen_with_their_bookkeeping(
        Backend::sqlite("hints-reopen"),
    ));
}

#[test]
fn sqlite_hint_bounds_and_expiry_are_enforced() {
    block_on(hint_bounds_and_expiry_are_enforced(Backend::sqlite(
        "hints-bounds",
    )));
}

#[test]
fn sqlite_concurrent_hints_of_one_key_all_merge() {
    block_on(concurrent_hints_of_one_key_all_merge(Backend::sqlite(
        "hints-concurrent",
    )));
}

#[test]
fn postgres_hints_survive_a_reopen_with_their_bookkeeping() {
    on_scratch_postgres(
        "hints_reopen",
        hints_survive_a_reopen_with_their_bookkeeping,
    );
}

#[test]
fn postgres_hint_bounds_and_expiry_are_enforced() {
    on_scratch_postgres("hints_bounds", hint_bounds_and_expiry_are_enforced);
}

#[test]
fn postgres_concurrent_hints_of_one_key_all_merge() {
    on_scratch_postgres("hints_concurrent", concurrent_hints_of_one_key_all_merge);
}

#[test]
fn fjall_concurrent_blind_writes_all_survive() {
    block_on(concurrent_blind_writes_all_survive(Backend::fjall("blind")));
}

#[test]
fn fjall_racing_read_modify_writes_lose_no_update() {
    block_on(racing_read_modify_writes_lose_no_update(Backend::fjall(
        "rmw",
    )));
}

#[test]
fn fjall_an_unchanged_update_writes_nothing() {
    block_on(an_unchanged_update_writes_nothing(Backend::fjall("noop")));
}

#[test]
fn fjall_a_new_store_takes_the_offered_incarnation_and_keeps_it() {
    let backend = Backend::fjall("incarnation-new");
    block_on(a_new_store_takes_the_offered_incarnation_and_keeps_it(
        backend,
    ));
}

#[test]
fn fjall_rows_without_a_record_are_incarnation_zero() {
    let backend = Backend::fjall("incarnation-legacy");
    block_on(rows_without_a_record_are_incarnation_zero(backend));
}

#[test]
fn fjall_a_wiped_store_takes_a_new_incarnation() {
    let backend = Backend::fjall("incarnation-wiped");
    block_on(a_wiped_store_takes_a_new_incarnation(backend));
}

#[test]
fn fjall_hints_survive_a_reopen_with_their_bookkeeping() {
    block_on(hints_survive_a_reopen_with_their_bookkeeping(
        Backend::fjall("hints-reopen"),
    ));
}

#[test]
fn fjall_hint_bounds_and_expiry_are_enforced() {
    block_on(hint_bounds_and_expiry_are_enforced(Backend::fjall(
        "hints-bounds",
    )));
}

#[test]
fn fjall_concurrent_hints_of_one_key_all_merge() {
    block_on(concurrent_hints_of_one_key_all_merge(Backend::fjall(
        "hints-concurrent",
    )));
}
