//! A node's dispatch of the internal protocol to its replica, the
//! incarnation and key limits it opens with, and the in-memory store's
//! contract: what it keeps, lists and records, and how its hints are
//! bounded and expired per target; and the protocol's names and messages
//! that operators read. No network: requests go straight to
//! [`Handler::handle`].
#![cfg(not(madsim))]

use async_trait::async_trait;
use quorumlog_core::hints::hint_bytes;
use quorumlog_core::protocol::{BreakerState, Request, Response};
use quorumlog_core::rpc::Handler;
use quorumlog_core::store::Update;
use quorumlog_core::{
    Actor, CoordinatorConfig, Dot, Hint, HintBacklog, HintBatch, HintLimits, HintPut, HintStored,
    Incarnation, MemoryStore, Node, NodeId, OpError, Siblings, Store, StoreError, Version,
    VersionVector,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// Two peers, never called by these tests: three replicas.
fn two_peers() -> Vec<(NodeId, SocketAddr)> {
    vec![
        (2, SocketAddr::from(([127, 0, 0, 1], 9))),
        (3, SocketAddr::from(([127, 0, 0, 1], 9))),
    ]
}

/// One blind write of `value` by `node`.
fn blind(node: NodeId, value: &str) -> Siblings {
    Siblings::from_versions([Version {
        dot: Dot::new(node, 1),
        context: VersionVector::new(),
        value: value.into(),
        timestamp_ms: 0,
    }])
    .expect("one version")
}

async fn store_with(key: &str, siblings: &Siblings) -> MemoryStore {
    let store = MemoryStore::new();
    store
        .update(key, &mut |held: &mut Siblings| {
            held.sync(siblings).expect("merge");
            true
        })
        .await
        .expect("update");
    store
}

#[tokio::test]
async fn a_node_opened_on_a_store_mints_in_the_incarnation_the_store_recorded() {
    let store = Arc::new(MemoryStore::new());
    assert_eq!(
        store.incarnation(7).await,
        Ok(7),
        "recorded when first asked"
    );
    let node = Node::open(
        1,
        store.clone(),
        two_peers(),
        CoordinatorConfig::default(),
        9,
    )
    .await
    .expect("open");
    assert_eq!(node.coordinator().replica().actor(), Actor::new(1, 7));
    assert_eq!(node.coordinator().health().incarnation, 7);
    // A new store takes the incarnation the caller drew.
    let node = Node::open(
        1,
        Arc::new(MemoryStore::new()),
        two_peers(),
        CoordinatorConfig::default(),
        9,
    )
    .await
    .expect("open");
    assert_eq!(node.coordinator().replica().actor(), Actor::new(1, 9));
}

/// A store whose reads fail; everything else is a [`MemoryStore`]'s.
struct UnreadableStore(MemoryStore);

#[async_trait]
impl Store for UnreadableStore {
    async fn get(&self, _key: &str) -> Result<Siblings, StoreError> {
        Err(StoreError::Backend("disk unreadable".into()))
    }
    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
        self.0.update(key, update).await
    }
    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.0.keys().await
    }
    async fn scan(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Siblings)>, StoreError> {
        self.0.scan(after, limit).await
    }
    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError> {
        self.0.incarnation(fresh).await
    }
    async fn put_hint(
        &self,
        target: NodeId,
        key: &str,
        siblings: &Siblings,
        now_ms: u64,
        limits: &HintLimits,
    ) -> Result<HintPut, StoreError> {
        self.0.put_hint(target, key, siblings, now_ms, limits).await
    }
    async fn hints_for(
        &self,
        target: NodeId,
        limit: usize,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<HintBatch, StoreError> {
        self.0.hints_for(target, limit, now_ms, max_age).await
    }
    async fn remove_hint(&self, hint: &Hint) -> Result<bool, StoreError> {
        self.0.remove_hint(hint).await
    }
    async fn expire_hints(
        &self,
        now_ms: u64,
        max_age: Duration,
    ) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
        self.0.expire_hints(now_ms, max_age).await
    }
    async fn hint_backlog(&self) -> Result<Vec<(NodeId, HintBacklog)>, StoreError> {
        self.0.hint_backlog().await
    }
}

#[tokio::test]
async fn a_fetch_the_store_cannot_read_is_answered_as_an_error_not_as_an_empty_key() {
    // An empty answer would tell the coordinator this replica holds
    // nothing of the key: a read would count it towards its quorum.
    let store = Arc::new(UnreadableStore(store_with("k", &blind(1, "a")).await));
    let node = Node::new(
        Actor::new(1, 0),
        store,
        two_peers(),
        CoordinatorConfig::default(),
    );
    let answer = node.handle(Request::Fetch { key: "k".into() }).await;
    assert!(matches!(answer, Response::Error(_)), "{answer:?}");
}

#[tokio::test]
async fn a_fetch_is_answered_with_what_the_replica_holds() {
    let store = Arc::new(store_with("k", &blind(4, "a")).await);
    let node = Node::new(
        Actor::new(1, 0),
        store,
        two_peers(),
        CoordinatorConfig::default(),
    );
    let answer = node.handle(Request::Fetch { key: "k".into() }).await;
    assert_eq!(answer, Response::Siblings(blind(4, "a")));
    let answer = node.handle(Request::Ping).await;
    assert_eq!(answer, Response::Pong { node: 1 });
}

#[tokio::test]
async fn an_update_that_changes_nothing_stores_no_key() {
    let store = MemoryStore::new();
    let held = store
        .update("k", &mut |_: &mut Siblings| false)
        .await
        .expect("update");
    assert!(held.is_empty());
    assert_eq!(store.keys().await, Ok(vec![]), "no key listed");
    assert_eq!(store.scan(None, 10).await, Ok(vec![]), "nothing scanned");
    // The store still holds no data: it is a new node's.
    assert_eq!(store.incarnation(5).await, Ok(5));
}

#[tokio::test]
async fn keys_and_scan_list_every_key_once_in_order() {
    let store = MemoryStore::new();
    for key in ["c", "a", "b", "d"] {
        store
            .update(key, &mut |held: &mut Siblings| {
                held.sync(&blind(1, key)).expect("merge");
                true
            })
            .await
            .expect("update");
    }
    assert_eq!(
        store.keys().await,
        Ok(vec!["a", "b", "c", "d"]
            .into_iter()
            .map(String::from)
            .collect())
    );
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan(after.as_deref(), 3).await.expect("scan");
        let Some((last, _)) = page.last() else { break };
        assert!(page.len() <= 3, "a page holds at most its limit");
        after = Some(last.clone());
        seen.extend(page.into_iter().map(|(key, _)| key));
        assert!(seen.len() <= 4, "no key twice: {seen:?}");
    }
    assert_eq!(seen, ["a", "b", "c", "d"]);
    assert_eq!(store.scan(Some("b"), 1).await.map(|p| p.len()), Ok(1));
    assert_eq!(store.scan(None, 0).await, Ok(vec![]), "an empty page");
}

#[tokio::test]
async fn a_store_keeps_the_incarnation_it_recorded_first() {
    let store = MemoryStore::new();
    assert_eq!(store.incarnation(5).await, Ok(5), "no data: the fresh one");
    store
        .update("k", &mut |held: &mut Siblings| {
            held.sync(&blind(1, "a")).expect("merge");
            true
        })
        .await
        .expect("update");
    // Asked again (a restart), with data now and another fresh draw: the
    // same life of the node.
    assert_eq!(store.incarnation(6).await, Ok(5));
    // A store that holds data before it was first asked: incarnation 0.
    let old = store_with("k", &blind(1, "a")).await;
    assert_eq!(old.incarnation(6).await, Ok(0));
    assert_eq!(old.incarnation(7).await, Ok(0));
}

#[tokio::test]
async fn a_put_expires_only_its_own_targets_hints() {
    let hour = u64::try_from(HOUR.as_millis()).expect("an hour in ms");
    let limits = HintLimits {
        max_age: HOUR,
        ..HintLimits::default()
    };
    let store = MemoryStore::new();
    let put = |target, key: &'static str, at| {
        let store = &store;
        let limits = &limits;
        async move {
            store
                .put_hint(target, key, &blind(1, key), at, limits)
                .await
                .expect("put_hint")
        }
    };
    put(2, "old", 0).await;
    put(3, "old", 0).await;
    let stored = put(3, "new", 2 * hour).await;
    assert_eq!(stored.expired.count, 1, "target 3's own expired hint");
    // Target 2's expired hint is held, and counted, until something drops
    // it, and then it is reported as expired.
    let old = hint_bytes("old", &blind(1, "old"));
    assert_eq!(
        store.hint_backlog().await,
        Ok(vec![
            (
                2,
                HintBacklog {
                    count: 1,
                    bytes: old
                }
            ),
            (
                3,
                HintBacklog {
                    count: 1,
                    bytes: hint_bytes("new", &blind(1, "new"))
                }
            ),
        ])
    );
    let batch = store
        .hints_for(2, 10, 2 * hour, HOUR)
        .await
        .expect("hints_for");
    assert_eq!(
        batch.expired,
        HintBacklog {
            count: 1,
            bytes: old
        }
    );
    assert!(batch.hints.is_empty());
}

#[tokio::test]
async fn a_merge_is_bounded_by_what_the_merged_hint_replaces() {
    // The merged hint replaces the held one: the byte bound counts the
    // target's other hints plus the merged hint, not the held one twice.
    let mut merged = blind(1, "a");
    merged.sync(&blind(3, "b")).expect("merge");
    let limits = HintLimits {
        max_per_target: 10,
        max_bytes_per_target: hint_bytes("k", &merged),
        max_age: HOUR,
    };
    let store = MemoryStore::new();
    for (set, expected) in [
        (blind(1, "a"), HintStored::Stored),
        (blind(3, "b"), HintStored::Merged),
    ] {
        let put = store.put_hint(2, "k", &set, 1, &limits).await;
        assert_eq!(put.map(|p| p.outcome), Ok(expected));
    }
    let held = store.hints_for(2, 10, 1, HOUR).await.expect("hints_for");
    assert_eq!(held.hints.len(), 1);
    assert_eq!(held.hints[0].siblings, merged);
}

#[test]
fn a_timeout_names_how_many_replicas_refused_the_connection() {
    let timeout = |unreachable| OpError::Timeout {
        needed: 2,
        answered: 1,
        n: 3,
        unreachable,
    };
    let shown = timeout(1).to_string();
    assert!(shown.contains("(1 refused the connection)"), "{shown}");
    let shown = timeout(0).to_string();
    assert!(!shown.contains("refused"), "{shown}");
}

#[test]
fn breaker_states_have_distinct_names() {
    let names = [
        BreakerState::Closed.as_str(),
        BreakerState::Open.as_str(),
        BreakerState::HalfOpen.as_str(),
    ];
    assert_eq!(names, ["closed", "open", "half_open"]);
}
