//! "Replicas converge without reads" against real processes: with two
//! replicas down, writes go to the other three; a coordinator restarts
//! (its hints are on its disk) and one of the down replicas loses its
//! database. Once both are back, with default settings and no client read
//! in between, every key reads back at ONE through each of them: hinted
//! handoff and anti-entropy refill them.
use crate::scenarios::Ctx;
use quorumlog_core::Consistency;
use std::time::{Duration, Instant};

/// How long the replicas get to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

pub async fn missed_writes_arrive_without_reads(mut ctx: Ctx) -> Ctx {
    let keys: Vec<String> = (0..20).map(|i| ctx.key(&format!("missed-{i}"))).collect();
    ctx.cluster.stop_node(4);
    ctx.cluster.stop_node(5);
    for (i, key) in keys.iter().enumerate() {
        let via = 1 + (i as u32 % 3);
        ctx.write_via(via, Consistency::Quorum, key, "v", None)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "QUORUM write of {key} through node {via}: {e}\n{}",
                    ctx.logs()
                )
            });
    }
    // A coordinator restart: the hints it holds are on its disk.
    ctx.cluster.stop_node(1);
    ctx.cluster.start_node(1);
    // Node 5 comes back on an empty store (a replaced disk).
    ctx.cluster.wipe_store(5).await;
    ctx.cluster.start_node(4);
    ctx.cluster.start_node(5);

    let started = Instant::now();
    let mut missing: Vec<(u32, String)> = Vec::new();
    while started.elapsed() < CATCH_UP {
        missing.clear();
        for id in [4, 5] {
            for key in &keys {
                // ONE through the node itself answers from its own store.
                let held = ctx
                    .read_via(id, Consistency::One, key)
                    .await
                    .map(|ok| ok.siblings.iter().any(|v| v.value == "v"))
                    .unwrap_or(false);
                if !held {
                    missing.push((id, key.clone()));
                }
            }
        }
        if missing.is_empty() {
            eprintln!(
                "nodes 4 and 5 held every key {:.1} s after they restarted",
                started.elapsed().as_secs_f64()
            );
            return ctx;
        }
        real_tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "{} (node, key) pairs still missing {} s after the restart: {:?}\n{}",
        missing.len(),
        CATCH_UP.as_secs(),
        missing.iter().take(5).collect::<Vec<_>>(),
        ctx.logs()
    );
}
