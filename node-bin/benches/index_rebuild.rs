//! What a node restart costs the anti-entropy index on the real stores:
//! the index is rebuilt from the store in one streaming pass
//! (`Replica::load`, pages of 1,024 rows in key order), not persisted and
//! not read one row at a time. This measures that pass at a million keys on
//! SQLite and PostgreSQL, and, for scale, what reading the same rows one
//! at a time would cost (timed on a sample, extrapolated).
//! `INDEX_REBUILD_STORE=fjall:DIR` measures the fjall store.
//!
//! ```text
//! cargo bench -p quorumd --bench index_rebuild                 # SQLite, 1,000,000 keys
//! INDEX_REBUILD_STORE=postgres://quorumlog:quorumlog@127.0.0.1:5432/quorumlog_bench \
//!     cargo bench -p quorumd --bench index_rebuild             # PostgreSQL: an empty database of its own
//! INDEX_REBUILD_KEYS=100000 cargo bench -p quorumd --bench index_rebuild
//! ```
//!
//! The store is filled once through the replica's own write path (a
//! 100-byte value per key, as `quorumd bench` writes) and kept between
//! runs: a SQLite file under `target/`, or the PostgreSQL database named
//! (create it first, e.g. `CREATE DATABASE quorumlog_bench OWNER quorumlog`).
use anyhow::{bail, Context, Result};
use quorumd::store::{FjallRows, GroupCommit, PgRows, RowBackend, SqliteRows, StoreSpec};
use quorumlog_core::anti_entropy::Index;
use quorumlog_core::replica::Replica;
use quorumlog_core::{Actor, KeyLimits, Store, VersionVector};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Writes in flight while filling (group commit batches them).
const FILL_CONCURRENCY: usize = 256;
/// Rows read one at a time to estimate that alternative.
const POINT_READ_SAMPLE: usize = 20_000;

fn key(i: usize) -> String {
    format!("user/{i:010}")
}

fn keys_wanted() -> Result<usize> {
    match std::env::var("INDEX_REBUILD_KEYS") {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("INDEX_REBUILD_KEYS={text:?} is not a number of keys")),
        Err(_) => Ok(1_000_000),
    }
}

fn store_spec() -> Result<StoreSpec> {
    match std::env::var("INDEX_REBUILD_STORE") {
        Ok(text) => text.parse().map_err(anyhow::Error::from),
        Err(_) => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/index-rebuild");
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            Ok(StoreSpec::Sqlite(dir.join("node.db")))
        }
    }
}

async fn fill(store: Arc<dyn Store>, from: usize, to: usize) -> Result<()> {
    let replica = Arc::new(Replica::new(Actor::new(1, 1), store, KeyLimits::default()));
    let value = "x".repeat(100);
    let started = Instant::now();
    let mut next = from;
    let mut last_report = Instant::now();
    while next < to {
        let end = (next + FILL_CONCURRENCY * 16).min(to);
        let mut tasks = tokio::task::JoinSet::new();
        for chunk_start in (next..end).step_by(16) {
            let replica = replica.clone();
            let value = value.clone();
            let chunk_end = (chunk_start + 16).min(end);
            tasks.spawn(async move {
                for i in chunk_start..chunk_end {
                    replica
                        .write_local(&key(i), &VersionVector::new(), value.clone(), false)
                        .await
                        .map_err(|e| anyhow::anyhow!("write {}: {e}", key(i)))?;
                }
                Ok::<(), anyhow::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("a fill task panicked")??;
        }
        next = end;
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  filled {next} of {to} keys ({:.0} keys/s)",
                (next - from) as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    Ok(())
}

/// Open the store `spec` names (and migrate it), as quorumd does.
async fn open_sqlite(path: PathBuf) -> Result<GroupCommit<impl RowBackend>> {
    SqliteRows::open(&path)
        .await
        .with_context(|| format!("open sqlite:{}", path.display()))
}

async fn open_fjall(dir: PathBuf) -> Result<GroupCommit<impl RowBackend>> {
    FjallRows::open(&dir)
        .await
        .with_context(|| format!("open fjall:{}", dir.display()))
}

async fn open_postgres(url: String) -> Result<GroupCommit<impl RowBackend>> {
    PgRows::open(&url)
        .await
        .with_context(|| format!("open {}", quorumd::store::redact(&url)))
}

async fn run() -> Result<()> {
    let wanted = keys_wanted()?;
    let spec = store_spec()?;
    eprintln!("store {spec}, {wanted} keys");
    match spec.resolve() {
        StoreSpec::Fjall(dir) => measure("fjall", wanted, || open_fjall(dir.clone())).await,
        StoreSpec::Embedded(_) => unreachable!("resolved"),
        StoreSpec::Sqlite(path) => measure("SQLite", wanted, || open_sqlite(path.clone())).await,
        StoreSpec::Postgres(url) => {
            measure("PostgreSQL", wanted, || open_postgres(url.clone())).await
        }
        StoreSpec::Memory => bail!("a memory store starts empty at every open: nothing to rebuild"),
    }
}

async fn measure<B, F, Fut>(name: &str, wanted: usize, open: F) -> Result<()>
where
    B: RowBackend,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<GroupCommit<B>>>,
{
    let store = Arc::new(open().await?);
    let held = store.keys().await?.len();
    if held > wanted {
        bail!("the store holds {held} keys, more than the {wanted} asked for: use an empty store");
    }
    if held < wanted {
        eprintln!("filling {} keys ...", wanted - held);
        fill(store.clone(), held, wanted).await?;
    }
    store.close().await;
    drop(store);

    // A restart: open the store again, then build the index from it.
    let opened = Instant::now();
    let store = Arc::new(open().await?);
    let open_time = opened.elapsed();
    let built = Instant::now();
    let replica = Replica::load(Actor::new(1, 1), store.clone(), KeyLimits::default()).await?;
    let build_time = built.elapsed();
    let indexed = replica.index().read(Index::len);
    if indexed != wanted {
        bail!("the index holds {indexed} keys, the store {wanted}");
    }

    // The alternative the streaming pass avoids: one read per row.
    let sample = POINT_READ_SAMPLE.min(wanted).max(1);
    let point = Instant::now();
    for i in (0..wanted).step_by((wanted / sample).max(1)).take(sample) {
        store.get(&key(i)).await?;
    }
    let per_row = point.elapsed().as_secs_f64() / sample as f64;
    store.close().await;

    println!("| store | keys | reopen | index rebuild (one streaming pass) | rows/s | one row at a time (estimated) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!(
        "| {name} | {wanted} | {:.2} s | {:.2} s | {:.0} | {:.1} s ({:.0} µs a row) |",
        open_time.as_secs_f64(),
        build_time.as_secs_f64(),
        wanted as f64 / build_time.as_secs_f64(),
        per_row * wanted as f64,
        per_row * 1e6,
    );
    Ok(())
}

fn main() -> Result<()> {
    // `cargo bench` passes --bench; this binary takes no arguments.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
