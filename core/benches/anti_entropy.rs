//! The anti-entropy index at 1,000,000 keys: building it, one upsert, and
//! finding one differing key against a peer's index (in process, messages
//! through the codec). Prints once, before the timings, the memory the index
//! holds (counted by this binary's allocator) and the round trips and
//! bytes of the comparison.
//!
//! `cargo bench -p quorumlog-core --bench anti_entropy`
use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures::executor::block_on;
use quorumlog_core::anti_entropy::{
    differences, AePeer, AeRequest, AeResponse, Budget, Index, KeyDigest,
};
use quorumlog_core::codec;
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts the bytes live on the heap, to report what the index holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const N: u64 = 1_000_000;

fn key(i: u64) -> String {
    format!("user/{i:010}")
}

fn digest(i: u64) -> KeyDigest {
    let mut bytes = [0x5a; 16];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    KeyDigest::from_bytes(bytes)
}

fn entries() -> impl Iterator<Item = (String, KeyDigest)> {
    (0..N).map(|i| (key(i), digest(i)))
}

/// The peer, answering through the codec as the RPC would carry it.
struct Peer<'a>(&'a Index);

#[async_trait]
impl AePeer for Peer<'_> {
    type Error = Infallible;
    async fn call(&self, request: AeRequest) -> Result<AeResponse, Infallible> {
        let request: AeRequest =
            codec::decode(&codec::encode(&request).expect("encodes")).expect("decodes");
        let response = self.0.answer(&request);
        Ok(codec::decode(&codec::encode(&response).expect("encodes")).expect("decodes"))
    }
}

fn report() {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let local = Index::from_entries(entries());
    let built = started.elapsed();
    let held = LIVE.load(Ordering::Relaxed) - before;
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let keys_alone: usize = (0..N).map(|i| key(i).len()).sum();
    println!(
        "index of {N} keys ({}-byte keys): built in {built:.2?}; holds {:.1} MB = {:.1} bytes/key \
         ({:.1} of them the key text itself), {} stored trie nodes; build peak {:.1} bytes/key",
        key(0).len(),
        held as f64 / 1e6,
        held as f64 / N as f64,
        keys_alone as f64 / N as f64,
        local.stored_nodes(),
        peak as f64 / N as f64,
    );
    let mut peer = local.clone();
    peer.upsert(&key(123_456), digest(7));
    let started = Instant::now();
    let found = block_on(differences(&local, &Peer(&peer), Budget::default())).expect("in process");
    let took = started.elapsed();
    let stats = found.stats;
    println!(
        "1 differing key among {N}: found {:?} in {took:.2?}: {} round trips, {} bytes sent, \
         {} bytes received, {} nodes and {} keys compared",
        found
            .keys
            .iter()
            .map(|k| k.key.as_str())
            .collect::<Vec<_>>(),
        stats.round_trips,
        stats.bytes_sent,
        stats.bytes_received,
        stats.nodes_compared,
        stats.keys_compared,
    );
    let same = block_on(differences(&local, &Peer(&local), Budget::default())).expect("in process");
    println!(
        "identical indexes: {} round trip, {} bytes",
        same.stats.round_trips,
        same.stats.bytes_sent + same.stats.bytes_received
    );
}

fn bench(c: &mut Criterion) {
    report();
    let mut group = c.benchmark_group("anti_entropy");
    group.sample_size(10);
    group.bench_function("build 1M keys", |b| {
        b.iter_batched(
            || entries().collect::<Vec<_>>(),
            |entries| black_box(Index::from_entries(entries)),
            BatchSize::PerIteration,
        )
    });

    let local = Index::from_entries(entries());
    let mut updated = local.clone();
    let mut round = 0u64;
    group.sample_size(100);
    group.bench_function("upsert into 1M keys", |b| {
        b.iter(|| {
            round += 1;
            updated.upsert(&key(round % N), digest(round + N));
        })
    });
    let mut fresh = 0u64;
    group.bench_function("upsert a new key into 1M keys", |b| {
        b.iter(|| {
            fresh += 1;
            updated.upsert(&format!("new/{fresh}"), digest(fresh));
        })
    });

    let mut peer = local.clone();
    peer.upsert(&key(123_456), digest(7));
    group.bench_function("find 1 difference among 1M keys", |b| {
        b.iter(|| {
            let found =
                block_on(differences(&local, &Peer(&peer), Budget::default())).expect("in process");
            assert_eq!(found.keys.len(), 1);
            found
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
