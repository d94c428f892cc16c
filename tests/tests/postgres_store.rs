//! The PostgreSQL store on its own, against a real server: optimistic
//! read-merge-write, group commit and the row cache must never lose or
//! hide an acknowledged update, however many updates race on one key and
//! however hard the cache churns. Skips without PostgreSQL, except under
//! CI=true, where it fails.
use quorumd::store::PostgresStore;
use quorumlog_core::{Dot, Siblings, Store, Version, VersionVector};
use quorumlog_tests::postgres;
use quorumlog_tests::tokio;
use std::sync::Arc;

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

fn version(node: u32, counter: u64, context: VersionVector, value: String) -> Version {
    Version {
        dot: Dot { node, counter },
        context,
        value,
    }
}

async fn open(url: &str, cache_rows: usize) -> Arc<PostgresStore> {
    let url = format!("{url}/quorumlog_5");
    Arc::new(
        PostgresStore::open_with_cache(&url, cache_rows)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}")),
    )
}

#[test]
fn concurrent_blind_writes_all_survive_with_a_churning_cache() {
    let Some(url) = postgres() else { return };
    let prefix = prefix("blind");
    runtime().block_on(async {
        // A 3-row cache over 6 hot keys: every commit evicts something, so
        // fills constantly race evictions.
        let store = open(&url, 3).await;
        const KEYS: usize = 6;
        const WRITERS: u32 = 24;
        let mut tasks = Vec::new();
        for writer in 1..=WRITERS {
            for k in 0..KEYS {
                let store = store.clone();
                let key = format!("{prefix}-{k}");
                tasks.push(tokio::spawn(async move {
                    // Distinct nodes, empty contexts: all concurrent siblings.
                    let v = version(writer, 1, VersionVector::new(), format!("w{writer}"));
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
        // Through the (warm) cache and straight from PostgreSQL (cold).
        let cold = open(&url, 0).await;
        for k in 0..KEYS {
            let key = format!("{prefix}-{k}");
            for s in [&store, &cold] {
                let set = s.get(&key).await.expect("get");
                assert_eq!(set.len(), WRITERS as usize, "{key}: {set:?}");
            }
        }
    });
}

#[test]
fn racing_read_modify_writes_lose_no_update() {
    let Some(url) = postgres() else { return };
    let prefix = prefix("rmw");
    runtime().block_on(async {
        let store = open(&url, 1024).await;
        const KEYS: usize = 3;
        const UPDATES: u64 = 40;
        let mut tasks = Vec::new();
        for k in 0..KEYS {
            for _ in 0..UPDATES {
                let store = store.clone();
                let key = format!("{prefix}-{k}");
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
        let cold = open(&url, 0).await;
        for k in 0..KEYS {
            let key = format!("{prefix}-{k}");
            for s in [&store, &cold] {
                let set = s.get(&key).await.expect("get");
                assert_eq!(set.len(), 1, "{key}: {set:?}");
                assert_eq!(
                    set.versions()[0].dot,
                    Dot {
                        node: 1,
                        counter: UPDATES
                    }
                );
            }
        }
    });
}

#[test]
fn an_unchanged_update_writes_nothing_and_keys_are_listed() {
    let Some(url) = postgres() else { return };
    let prefix = prefix("noop");
    runtime().block_on(async {
        let store = open(&url, 16).await;
        let key = format!("{prefix}-k");
        let v = version(9, 1, VersionVector::new(), "x".into());
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
        assert!(store
            .get(&format!("{prefix}-absent"))
            .await
            .expect("get")
            .is_empty());
    });
}
