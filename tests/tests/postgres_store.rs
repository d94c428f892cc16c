//! The PostgreSQL store on its own, against a real server: optimistic
//! read-merge-write, group commit and the row cache must never lose or
//! hide an acknowledged update, however many updates race on one key and
//! however hard the cache churns; and a database has one owning node.
//! Skips without PostgreSQL, except under CI=true, where it fails.
use quorumd::store::{OpenError, PostgresOptions, PostgresStore};
use quorumlog_core::{Dot, Siblings, Store, Version, VersionVector};
use quorumlog_tests::tokio;
use quorumlog_tests::{postgres, serial};
use std::sync::Arc;
use std::time::Duration;

/// Keys unique to this run, so reruns and other tests never collide.
fn prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("store-test-{test}-{}-{nanos}", std::process::id())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The tests share one database, which has one owner at a time: each test
/// holds `serial()` while it has a store open.
fn database(url: &str) -> String {
    format!("{url}/quorumlog_5")
}

async fn open(url: &str, cache_rows: usize) -> Arc<PostgresStore> {
    let options = PostgresOptions {
        cache_rows,
        ..PostgresOptions::default()
    };
    Arc::new(
        PostgresStore::open_with(&database(url), options)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", database(url))),
    )
}

fn concurrent(writer: u32) -> Version {
    // Distinct nodes, empty contexts: every such version is a sibling.
    Version {
        dot: Dot {
            node: writer,
            counter: 1,
        },
        context: VersionVector::new(),
        value: format!("w{writer}"),
    }
}

/// Every key's sibling count, read through `store`.
async fn counts(store: &PostgresStore, keys: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for key in keys {
        out.push(store.get(key).await.expect("get").len());
    }
    out
}

#[test]
fn concurrent_blind_writes_all_survive_with_a_churning_cache() {
    let Some(url) = postgres() else { return };
    let _turn = serial();
    let keys: Vec<String> = (0..6).map(|k| format!("{}-{k}", prefix("blind"))).collect();
    const WRITERS: u32 = 24;
    runtime().block_on(async {
        // A 3-row cache over 6 hot keys: every commit evicts something, so
        // fills constantly race evictions.
        let store = open(&url, 3).await;
        let mut tasks = Vec::new();
        for writer in 1..=WRITERS {
            for key in &keys {
                let (store, key) = (store.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    let v = concurrent(writer);
                    let dot = v.dot;
                    store
                        .update(&key, &mut |s| s.sync_one(v.clone()))
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
        // Through the (warm) cache, then straight from PostgreSQL (cold).
        let expected = vec![WRITERS as usize; keys.len()];
        assert_eq!(counts(&store, &keys).await, expected);
        store.close().await;
        let cold = open(&url, 0).await;
        assert_eq!(counts(&cold, &keys).await, expected);
        cold.close().await;
    });
}

#[test]
fn racing_read_modify_writes_lose_no_update() {
    let Some(url) = postgres() else { return };
    let _turn = serial();
    let keys: Vec<String> = (0..3).map(|k| format!("{}-{k}", prefix("rmw"))).collect();
    const UPDATES: u64 = 40;
    runtime().block_on(async {
        let store = open(&url, 1024).await;
        let mut tasks = Vec::new();
        for key in &keys {
            for _ in 0..UPDATES {
                let (store, key) = (store.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    // Each update supersedes whatever it found: a counter.
                    // An update merged onto a stale row would mint a dot
                    // that another already used, and the count would fall
                    // short.
                    store
                        .update(&key, &mut |s: &mut Siblings| {
                            let next = s.mint(1, &s.context(), String::new());
                            s.sync_one(next)
                        })
                        .await
                        .expect("update");
                }));
            }
        }
        for task in tasks {
            task.await.expect("update task");
        }
        store.close().await;
        let cold = open(&url, 0).await;
        let last = Dot {
            node: 1,
            counter: UPDATES,
        };
        for key in &keys {
            let set = cold.get(key).await.expect("get");
            assert_eq!(set.len(), 1, "{key}: {set:?}");
            assert_eq!(set.versions()[0].dot, last, "{key}: an update was lost");
        }
        cold.close().await;
    });
}

#[test]
fn an_unchanged_update_writes_nothing_and_keys_are_listed() {
    let Some(url) = postgres() else { return };
    let _turn = serial();
    let prefix = prefix("noop");
    runtime().block_on(async {
        let store = open(&url, 16).await;
        let key = format!("{prefix}-k");
        let v = concurrent(9);
        let first = store
            .update(&key, &mut |s| s.sync_one(v.clone()))
            .await
            .expect("update");
        // Applying the same version again changes nothing.
        let again = store
            .update(&key, &mut |s| s.sync_one(v.clone()))
            .await
            .expect("update");
        assert_eq!(first, again);
        let keys = store.keys().await.expect("keys");
        assert!(keys.contains(&key));
        let absent = store.get(&format!("{prefix}-absent")).await.expect("get");
        assert!(absent.is_empty());
        store.close().await;
    });
}

#[test]
fn a_second_node_on_the_same_database_is_refused_until_the_first_closes() {
    let Some(url) = postgres() else { return };
    let _turn = serial();
    runtime().block_on(async {
        let first = open(&url, 16).await;
        let impatient = PostgresOptions {
            owner_wait: Duration::from_millis(300),
            ..PostgresOptions::default()
        };
        match PostgresStore::open_with(&database(&url), impatient).await {
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
        let next = PostgresStore::open_with(&database(&url), PostgresOptions::default())
            .await
            .expect("open after the first owner closed");
        next.close().await;
    });
}
