//! "Durability and convergence" (DESIGN.md) against real processes: dots
//! are never reused (a lost disk starts a new incarnation), a replica never
//! acks a dot it holds with other contents, contexts are bound to their key
//! and cannot claim dots that were never minted or counters past 2^53, keys
//! are bounded and a full one never disturbs the others, and a replica that
//! refuses the connection is marked down at once, and a crash of every
//! node loses no acknowledged write.
//!
//! Each scenario runs on one fresh cluster (see [`crate::scenarios::run`])
//! and fails if the behaviour it checks were reverted.
use crate::scenarios::{context, values, Answer, Ctx};
use crate::Cluster;
use quorumlog_core::context::{self, ContextSecret};

/// A token as a forger makes it: the right format, the right key, any
/// context, signed with a secret that is not the cluster's.
fn encode(key: &str, context: &quorumlog_core::VersionVector) -> String {
    context::encode(&ContextSecret::from_bytes([0x42; 32]), key, context)
}
use quorumlog_core::protocol::{Request, Response};
use quorumlog_core::rpc::RpcClient;
use quorumlog_core::version::MAX_COUNTER;
use quorumlog_core::{
    Actor, ClientError, Consistency, Dot, OpError, Refusal, Siblings, Version, VersionVector,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn message(answer: &Answer) -> String {
    answer.body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no JSON error message in {answer:?}"))
        .to_string()
}

fn version_values(versions: &[Version]) -> BTreeSet<String> {
    versions.iter().map(|v| v.value.clone()).collect()
}

/// 1. A node whose disk is lost comes back in a new incarnation: its next
///    write gets a dot of a new actor, so it never collides with a dot of
///    its earlier life that the other replicas still hold (with the old
///    value). Both writes survive as siblings, and every replica ends up
///    with both.
pub async fn lost_disk(mut ctx: Ctx) -> Ctx {
    let key = ctx.key("lost-disk");
    let x = ctx
        .write_via(3, Consistency::All, &key, "X", None)
        .await
        .unwrap_or_else(|e| panic!("write X through node 3 at ALL: {e}\n{}", ctx.logs()));
    assert_eq!(x.version.dot.node, 3, "{x:?}");
    assert_eq!(x.acked, 5, "{x:?}");

    ctx.cluster.stop_node(3);
    ctx.cluster.wipe_store(3).await;
    ctx.cluster.start_node(3);
    ctx.cluster
        .wait_up(&ctx.http, 5, Duration::from_secs(30))
        .await;

    let y = ctx
        .write_via(3, Consistency::Quorum, &key, "Y", None)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "blind write Y through node 3 after it lost its disk: {e}\n{}",
                ctx.logs()
            )
        });
    assert_eq!(y.version.dot.node, 3, "{y:?}");
    assert_ne!(
        y.version.dot.actor(),
        x.version.dot.actor(),
        "node 3 minted {} after losing its disk, in the same incarnation as X's {}",
        y.version.dot,
        x.version.dot
    );

    // ALL: both writes, as concurrent siblings, each shown with the
    // (node, incarnation, counter) that minted it.
    let all = ctx.read_served("ALL", &key).await;
    assert_eq!(all.status, 200, "{all:?}\n{}", ctx.logs());
    assert_eq!(values(&all), set(&["X", "Y"]), "{all:?}");
    assert_eq!(all.body["conflict"], json!(true), "{all:?}");
    for (written, value) in [(&x, "X"), (&y, "Y")] {
        let shown = all.body["siblings"]
            .as_array()
            .and_then(|s| s.iter().find(|v| v["value"] == json!(value)))
            .unwrap_or_else(|| panic!("no sibling {value} in {all:?}"));
        let dot = written.version.dot;
        assert_eq!(
            shown["version"],
            json!({"node": dot.node, "incarnation": dot.incarnation, "counter": dot.counter}),
            "{all:?}"
        );
    }

    // Every replica converges on both (node 3 gets X back by read repair):
    // no ONE read, through any node, ends with less than both.
    let deadline = Instant::now() + Duration::from_secs(15);
    for id in 1..=Cluster::N {
        loop {
            let seen = match ctx.read_via(id, Consistency::One, &key).await {
                Ok(ok) => version_values(&ok.siblings),
                Err(e) => panic!("ONE read through node {id}: {e}"),
            };
            assert!(
                seen.is_subset(&set(&["X", "Y"])),
                "node {id} holds {seen:?}"
            );
            if seen == set(&["X", "Y"]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} still holds only {seen:?} (X and Y expected)\n{}",
                ctx.logs()
            );
            real_tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    ctx
}

/// Whether an error message says that `counter` is too large a counter
/// (not merely that the context claims dots the key never had; the key,
/// which the message may quote, does not count).
fn names_the_counter(message: &str, key: &str, counter: u64) -> bool {
    let message = message.replace(key, "");
    message.contains("counter") && message.contains(&counter.to_string())
}

/// 2. A context with a counter no node can have minted (past 2^53, up to
///    2^64-1) is refused with 400 naming the counter, by the gateway and by
///    every coordinator; so is one at 2^53 that the key never had. Nothing
///    is stored, and afterwards every node still writes the key with small
///    counters: the key is not frozen.
pub async fn huge_counters(ctx: Ctx) -> Ctx {
    let key = ctx.key("huge");
    let first = ctx.write("ALL", &key, "v1", None).await;
    assert_eq!(first.status, 200, "{first:?}");
    let incarnations = ctx.incarnations().await;
    // A write's answer names the actor that minted its version.
    let minted = &first.body["version"];
    let node = minted["node"].as_u64().expect("version.node") as u32;
    // (Incarnation 0, legacy, may be left out.)
    assert_eq!(
        Some(minted["incarnation"].as_u64().unwrap_or(0)),
        incarnations.get(&node).map(|&i| u64::from(i)),
        "{first:?}"
    );
    assert_eq!(minted["counter"], json!(1), "{first:?}");
    let actors: Vec<Actor> = incarnations
        .into_iter()
        .map(|(node, incarnation)| Actor::new(node, incarnation))
        .collect();
    let every_actor_at =
        |counter: u64| VersionVector::from_entries(actors.iter().map(|&a| (a, counter)));

    let huge = [u64::MAX, MAX_COUNTER + 1];
    for counter in huge {
        for (what, vv) in [
            (
                "legacy actor n1",
                VersionVector::from_entries([(Actor::new(1, 0), counter)]),
            ),
            ("every node's actor", every_actor_at(counter)),
        ] {
            let token = encode(&key, &vv);
            let answer = ctx.write("QUORUM", &key, "forged", Some(&token)).await;
            assert_eq!(answer.status, 400, "{what} at {counter}: {answer:?}");
            let message = message(&answer);
            assert!(
                names_the_counter(&message, &key, counter),
                "{what} at {counter}: {message:?} should name the counter"
            );
        }
        // Every coordinator checks (the gateway only passes tokens on), so
        // a client of the internal protocol gets the same answer.
        for id in 1..=Cluster::N {
            match ctx
                .write_via(
                    id,
                    Consistency::Quorum,
                    &key,
                    "forged",
                    Some(encode(&key, &every_actor_at(counter))),
                )
                .await
            {
                Err(ClientError::Op {
                    error: OpError::Invalid(message),
                    ..
                }) => assert!(
                    names_the_counter(&message, &key, counter),
                    "node {id}: {message:?} should name the counter"
                ),
                other => panic!("node {id} took a context at {counter}: {other:?}"),
            }
        }
    }
    // At the bound itself the token decodes, but it was not signed by this
    // cluster (and the key never had those dots): refused.
    let at_bound = ctx
        .write(
            "QUORUM",
            &key,
            "forged",
            Some(&encode(&key, &every_actor_at(MAX_COUNTER))),
        )
        .await;
    assert_eq!(at_bound.status, 400, "{at_bound:?}");
    assert!(message(&at_bound).contains("context"), "{at_bound:?}");

    let after = ctx.read("ALL", &key).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(values(&after), set(&["v1"]), "a forged write was stored");

    // Not frozen: every node reads the key and writes it with the context
    // it read, minting a small counter; each write is what ALL reads next.
    for id in 1..=Cluster::N {
        let read = ctx
            .read_via(id, Consistency::All, &key)
            .await
            .unwrap_or_else(|e| panic!("ALL read through node {id}: {e}"));
        let value = format!("after-{id}");
        let written = ctx
            .write_via(id, Consistency::All, &key, &value, Some(read.token))
            .await
            .unwrap_or_else(|e| panic!("write through node {id} after the forged contexts: {e}"));
        assert!(
            written.version.dot.counter < 100,
            "node {id} minted {} after forged contexts",
            written.version.dot
        );
        let all = ctx.read("ALL", &key).await;
        assert_eq!(values(&all), set(&[value.as_str()]), "{all:?}");
    }
    // And through the gateway, with the context a read returned.
    let read = ctx.read("ALL", &key).await;
    let last = ctx.write("ALL", &key, "final", Some(&context(&read))).await;
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(
        values(&ctx.read("ALL", &key).await),
        set(&["final"]),
        "the key did not take a write with its own context"
    );
    ctx
}

/// 3. A context is bound to the key it was read from, and a forged one is
///    refused by its signature, whatever it names and whichever replicas
///    are up (nothing written); once a replica that was down is back, its
///    own next write is stored and readable everywhere — no forged context
///    raised what the others believe it minted.
pub async fn contexts_are_bound(mut ctx: Ctx) -> Ctx {
    let (a, b) = (ctx.key("bound-a"), ctx.key("bound-b"));
    let fresh = ctx.key("bound-fresh");
    for (key, value) in [(&a, "a0"), (&b, "b0")] {
        let answer = ctx.write("ALL", key, value, None).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let token_a = context(&ctx.read("ALL", &a).await);
    // A forged token for the right key, naming b0's existing dot (a blind
    // write, with no causal past to betray it): only a signature tells it
    // from a genuine one. Refused; b0 stays.
    let b0 = ctx.read("ALL", &b).await;
    let version = &b0.body["siblings"][0]["version"];
    let dot_of_b0 = VersionVector::from_entries([(
        Actor::new(
            version["node"].as_u64().expect("node") as u32,
            version["incarnation"].as_u64().unwrap_or(0) as u32,
        ),
        version["counter"].as_u64().expect("counter"),
    )]);
    let forged = ctx
        .write(
            "QUORUM",
            &b,
            "forged-over-b0",
            Some(&encode(&b, &dot_of_b0)),
        )
        .await;
    assert_eq!(forged.status, 400, "{forged:?}");
    assert!(
        message(&forged).contains("not issued by this cluster"),
        "{forged:?}"
    );
    assert_eq!(values(&ctx.read("ALL", &b).await), set(&["b0"]));
    for target in [&b, &fresh] {
        let answer = ctx.write("QUORUM", target, "crossed", Some(&token_a)).await;
        assert_eq!(
            answer.status, 400,
            "a's context sent to {target}: {answer:?}"
        );
        let message = message(&answer);
        assert!(
            message.contains("context") && message.contains("another key"),
            "{message:?} should say the context belongs to another key"
        );
    }
    assert_eq!(values(&ctx.read("ALL", &b).await), set(&["b0"]));
    let untouched = ctx.read("ALL", &fresh).await;
    assert_eq!(untouched.status, 404, "{untouched:?}");

    // Forged contexts, with node 1 down.
    let key = ctx.key("forged");
    let genuine = ctx
        .write_via(1, Consistency::All, &key, "genuine", None)
        .await
        .unwrap_or_else(|e| panic!("write through node 1: {e}"));
    let n1 = genuine.version.dot.actor();
    ctx.cluster.stop_node(1);
    ctx.cluster
        .wait_up(&ctx.http, 4, Duration::from_secs(20))
        .await;
    for forged in [
        VersionVector::from_entries([(Actor::new(1, 0), 1000)]),
        VersionVector::from_entries([(n1, 1000)]),
    ] {
        let answer = ctx
            .write("QUORUM", &key, "forged", Some(&encode(&key, &forged)))
            .await;
        assert_eq!(answer.status, 400, "forged context {forged}: {answer:?}");
        assert!(
            message(&answer).contains("not issued by this cluster"),
            "{answer:?}"
        );
    }
    let during = ctx.read("QUORUM", &key).await;
    assert_eq!(values(&during), set(&["genuine"]), "{during:?}");

    ctx.cluster.start_node(1);
    ctx.cluster
        .wait_up(&ctx.http, 5, Duration::from_secs(30))
        .await;
    let after = ctx
        .write_via(1, Consistency::Quorum, &key, "after", None)
        .await
        .unwrap_or_else(|e| panic!("blind write through node 1 after its restart: {e}"));
    assert_eq!(after.version.dot.actor(), n1, "node 1 kept its store");
    assert!(
        after.version.dot.counter < 1000,
        "node 1 minted {} after a forged context claimed {n1}:1000",
        after.version.dot
    );
    let all = ctx.read_served("ALL", &key).await;
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(
        values(&all),
        set(&["genuine", "after"]),
        "node 1's acknowledged write is not readable at ALL"
    );
    ctx
}

/// 4. A replica refuses (never acks) a version whose dot it holds with
///    other contents, all or nothing, and keeps what it had.
pub async fn conflicting_dot(ctx: Ctx) -> Ctx {
    let key = ctx.key("dot-conflict");
    let rpc = RpcClient::new(ctx.cluster.node_addr(2));
    let timeout = Duration::from_secs(5);
    let actor = Actor::new(7, 3);
    let dot = Dot::new(actor, 1);
    let version = |value: &str, context: VersionVector| Version {
        dot,
        context,
        value: value.to_string(),
        timestamp_ms: 0,
    };
    let first = version("first", VersionVector::new());
    let apply = |versions: Vec<Version>| Request::Apply {
        key: key.clone(),
        siblings: Siblings::from_versions(versions).expect("a valid sibling set"),
    };
    for attempt in ["first", "again (idempotent)"] {
        match rpc.call(&apply(vec![first.clone()]), timeout).await {
            Ok(Response::Applied) => {}
            other => panic!("{attempt} Apply: {other:?}"),
        }
    }
    let newer = Version {
        dot: Dot::new(actor, 2),
        context: VersionVector::new(),
        value: "newer".into(),
        timestamp_ms: 0,
    };
    let conflicting = [
        (
            "another value",
            vec![version("second", VersionVector::new())],
        ),
        (
            "another context",
            vec![version(
                "first",
                VersionVector::from_entries([(Actor::new(8, 1), 1)]),
            )],
        ),
        (
            "a new version next to a conflicting one",
            vec![newer, version("second", VersionVector::new())],
        ),
    ];
    for (what, versions) in conflicting {
        match rpc.call(&apply(versions), timeout).await {
            Ok(Response::Refused(Refusal::Version {
                key: refused,
                reason,
            })) => {
                assert_eq!(refused, key, "{what}");
                assert!(reason.contains(&dot.to_string()), "{what}: {reason}");
            }
            other => panic!("{what}: expected Refused(Version), got {other:?}"),
        }
    }
    match rpc
        .call(&Request::Fetch { key: key.clone() }, timeout)
        .await
    {
        Ok(Response::Siblings(held)) => {
            assert_eq!(
                held.versions(),
                std::slice::from_ref(&first),
                "node 2 changed the key"
            )
        }
        other => panic!("Fetch: {other:?}"),
    }
    let read = ctx.read("ALL", &key).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(values(&read), set(&["first"]), "{read:?}");
    ctx
}

/// Node flags for [`bounded_keys`]: the smallest keys that still fit a
/// couple of large values, so the scenario moves few bytes.
pub const BOUNDED_KEY_ARGS: &[&str] = &["--key-max-bytes", "2097152", "--key-max-siblings", "8"];
const KEY_MAX_SIBLINGS: usize = 8;
/// Two of these fit in 2 MiB whatever the per-version overhead; a third
/// does not.
const BIG_VALUE: usize = 700_000;
const BIG_FITS: usize = 2;

/// Blind ALL writes of `value(i)` to `key` until one is refused with 409;
/// what was stored and the refusal. Between them, small ALL writes to
/// other keys must all succeed.
async fn fill(
    ctx: &Ctx,
    key: &str,
    fits: usize,
    value: impl Fn(usize) -> String,
) -> (Vec<String>, Answer) {
    let mut stored = Vec::new();
    for i in 0..=fits + 2 {
        let v = value(i);
        // Named after the value: unique across fills.
        let other = ctx.key(&format!("beside-{}", &v[..v.len().min(8)]));
        let answer = ctx.write("ALL", key, &v, None).await;
        match answer.status {
            200 => stored.push(v),
            409 => return (stored, answer),
            _ => panic!("write {i} to {key}: {answer:?}\n{}", ctx.logs()),
        }
        let beside = ctx.write("ALL", &other, "small", None).await;
        assert_eq!(beside.status, 200, "a write to another key: {beside:?}");
    }
    panic!(
        "{} writes to {key} (limit: {fits} fit) and none refused",
        stored.len()
    )
}

fn assert_key_limit(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, 409, "{answer:?}");
    assert_eq!(answer.body["error"], json!("key_limit"), "{answer:?}");
    assert_eq!(answer.body["reason"], json!(reason), "{answer:?}");
    let message = message(answer);
    assert!(
        message.contains("context") && message.contains("overwrite=true"),
        "{message:?} should say how to resolve the key (a context, or overwrite=true)"
    );
}

/// 5. A key is bounded in bytes and siblings: the write that would pass a
///    limit gets 409 key_limit (nothing stored), the full key never
///    disturbs other keys or the cluster's health, and a write with the
///    key's context, or with overwrite=true, makes it writable again.
///    Run with [`BOUNDED_KEY_ARGS`].
pub async fn bounded_keys(ctx: Ctx) -> Ctx {
    let key = ctx.key("big");
    let big = |i: usize| format!("{i:03}{}", "x".repeat(BIG_VALUE - 3));
    let (stored, refused) = fill(&ctx, &key, BIG_FITS, big).await;
    assert_eq!(
        stored.len(),
        BIG_FITS,
        "refused after {} writes of {BIG_VALUE} bytes into 2 MiB",
        stored.len()
    );
    assert_key_limit(&refused, "too_many_bytes");
    let full = ctx.read("ALL", &key).await;
    assert_eq!(full.status, 200, "{:?}", full.body["message"]);
    let expected: BTreeSet<String> = stored.iter().cloned().collect();
    assert!(values(&full) == expected, "the refused write was stored");

    // The full key disturbs nothing else.
    for i in 0..5 {
        let other = ctx.key(&format!("other-{i}"));
        let written = ctx.write("ALL", &other, "fine", None).await;
        assert_eq!(written.status, 200, "{written:?}");
        for level in ["ONE", "QUORUM", "ALL"] {
            let read = ctx.read_eventually(level, &other).await;
            assert_eq!(read.status, 200, "{level} read of {other}: {read:?}");
        }
    }
    let (status, health) = ctx.get("/api/logs/health").await;
    let health: Value = serde_json::from_str(&health).expect("health is JSON");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["up"], json!(5), "{health}");
    assert_eq!(health["available"]["ALL"], json!(true), "{health}");

    // Resolved with the context a read returned.
    let resolved = ctx
        .write("ALL", &key, "resolved", Some(&context(&full)))
        .await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    let read = ctx.read("ALL", &key).await;
    assert_eq!(
        values(&read),
        set(&["resolved"]),
        "{:?}",
        read.body["message"]
    );

    // Full again, then overwritten.
    let (stored, refused) = fill(&ctx, &key, BIG_FITS, |i| big(i + 100)).await;
    assert_eq!(stored.len(), BIG_FITS);
    assert_key_limit(&refused, "too_many_bytes");
    let overwritten = ctx.overwrite("ALL", &key, "overwritten").await;
    assert_eq!(overwritten.status, 200, "{overwritten:?}");
    assert_eq!(
        overwritten.body["overwrite"],
        json!(true),
        "{overwritten:?}"
    );
    let read = ctx.read("ALL", &key).await;
    assert_eq!(
        values(&read),
        set(&["overwritten"]),
        "{:?}",
        read.body["message"]
    );

    // Too many siblings: the same, by count.
    let many = ctx.key("many");
    let (stored, refused) = fill(&ctx, &many, KEY_MAX_SIBLINGS, |i| format!("s{i}")).await;
    assert_eq!(stored.len(), KEY_MAX_SIBLINGS);
    assert_key_limit(&refused, "too_many_siblings");
    let read = ctx.read("ALL", &many).await;
    assert_eq!(
        read.body["siblings"].as_array().map(Vec::len),
        Some(KEY_MAX_SIBLINGS)
    );
    let resolved = ctx.write("ALL", &many, "one", Some(&context(&read))).await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    assert_eq!(values(&ctx.read("ALL", &many).await), set(&["one"]));
    ctx
}

/// A failed ALL request with one node dead is honest: 503 (nothing sent),
/// or 504 that says the dead node refused the connection — never one that
/// counts it among those that answered.
fn assert_dead_node_answer(answer: &Answer, what: &str) {
    match answer.status {
        503 => {
            assert_eq!(
                answer.body["error"],
                json!("unavailable"),
                "{what}: {answer:?}"
            );
            assert_eq!(answer.body["needed"], json!(5), "{what}: {answer:?}");
            assert_eq!(answer.body["alive"], json!(4), "{what}: {answer:?}");
            assert_eq!(answer.body["n"], json!(5), "{what}: {answer:?}");
        }
        504 => {
            let message = message(answer);
            assert!(
                message.contains("refused the connection"),
                "{what}: a 504 that does not say the dead node refused the connection: {message:?}"
            );
            assert!(
                answer.body["unreachable"].as_u64() >= Some(1),
                "{what}: {answer:?}"
            );
            assert!(
                answer.body["answered"].as_u64() <= Some(4),
                "{what}: counts the dead node as answered: {answer:?}"
            );
        }
        _ => panic!("{what} with a node dead: {answer:?}"),
    }
}

/// 6. A node that refuses connections is marked down by each coordinator
///    the first time it is refused, and a coordinator whose connection to
///    it was lost reconnects before counting it alive: the first ALL
///    request after the node died answers 503 (needed 5, alive 4), not 504
///    after timeouts, and no 504 claims the dead node answered.
pub async fn dead_node_all(mut ctx: Ctx) -> Ctx {
    // Every coordinator holds a connection to node 5 when it dies.
    for i in 0..Cluster::N {
        let answer = ctx
            .write("ALL", &ctx.key(&format!("warm-{i}")), "x", None)
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    ctx.cluster.stop_node(5);
    ctx.cluster
        .wait_up(&ctx.http, 4, Duration::from_secs(20))
        .await;

    // Every coordinator saw its connection to node 5 close; the first ALL
    // request finds node 5 refusing the reconnect before anything is sent.
    let live = Cluster::N as usize - 1;
    let mut first_503 = None;
    for attempt in 1..=live + 1 {
        let answer = ctx
            .write("ALL", &ctx.key(&format!("dead-{attempt}")), "x", None)
            .await;
        assert_dead_node_answer(&answer, &format!("ALL write {attempt}"));
        if answer.status == 503 {
            first_503 = Some(attempt);
            break;
        }
    }
    let first_503 = first_503.unwrap_or_else(|| {
        panic!(
            "ALL writes with node 5 dead: no 503 in {} attempts\n{}",
            live + 1,
            ctx.logs()
        )
    });
    assert_eq!(
        first_503, 1,
        "the first ALL write with node 5 dead was not refused at once"
    );
    for attempt in 0..3 {
        let answer = ctx
            .write("ALL", &ctx.key(&format!("dead-more-{attempt}")), "x", None)
            .await;
        assert_dead_node_answer(&answer, "a later ALL write");
        let read = ctx.read("ALL", &ctx.key("warm-0")).await;
        assert_dead_node_answer(&read, "an ALL read");
    }
    let quorum = ctx
        .write("QUORUM", &ctx.key("dead-quorum"), "x", None)
        .await;
    assert_eq!(quorum.status, 200, "QUORUM with one node dead: {quorum:?}");
    ctx
}

/// 7. A crash of every node at once loses no acknowledged write: writers
///    keep writing new keys at ALL (an ack means all five replicas
///    committed) while every node is killed with SIGKILL; after a restart
///    every replica still holds every value that was acknowledged, read
///    from its own store.
pub async fn crash_loses_no_acknowledged_write(mut ctx: Ctx) -> Ctx {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const WRITERS: usize = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (http, url, prefix) = (
            ctx.http.clone(),
            ctx.cluster.url.clone(),
            ctx.prefix.clone(),
        );
        let (stop, acked) = (stop.clone(), acked.clone());
        writers.push(crate::tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (key, value) = (
                    format!("{prefix}crash-{writer}-{n}"),
                    format!("v{writer}-{n}"),
                );
                n += 1;
                let response = http
                    .post(format!("{url}/api/logs?consistency=ALL"))
                    .header("Content-Type", "application/json")
                    .body(json!({"key": key, "value": value}).to_string())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().as_u16() == 200 => {
                        acked.lock().expect("acked").push((key, value))
                    }
                    // Refused or timed out while the nodes are down.
                    _ => crate::tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    // Kill every node once writes are flowing, while they still flow.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("acked").len() < 200 {
        assert!(
            Instant::now() < deadline,
            "writes at ALL did not flow\n{}",
            ctx.logs()
        );
        crate::tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in 1..=Cluster::N {
        ctx.cluster.stop_node(id);
    }
    crate::tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    for id in 1..=Cluster::N {
        ctx.cluster.start_node(id);
    }
    ctx.cluster
        .wait_up(&ctx.http, u64::from(Cluster::N), Duration::from_secs(60))
        .await;
    let timeout = Duration::from_secs(5);
    for id in 1..=Cluster::N {
        let rpc = RpcClient::new(ctx.cluster.node_addr(id));
        let mut lost = Vec::new();
        for (key, value) in &acked {
            match rpc
                .call(&Request::Fetch { key: key.clone() }, timeout)
                .await
            {
                Ok(Response::Siblings(held)) => {
                    if !version_values(held.versions()).contains(value) {
                        lost.push(key.clone());
                    }
                }
                other => panic!("node {id}: Fetch {key}: {other:?}"),
            }
        }
        assert!(
            lost.is_empty(),
            "node {id} lost {} of {} writes acknowledged at ALL in the crash, e.g. {:?}\n{}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)],
            ctx.logs()
        );
    }
    ctx
}
