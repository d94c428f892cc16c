//! Logging and the process-wide Prometheus recorder. Core records through
//! the `metrics` facade; installing the recorder here exports what it
//! records, and `/metrics` renders it.
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

/// Histogram buckets (seconds): fine below 10 ms, where the cluster lives.
pub const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets (rows) for how many rows one store commit carried.
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Buckets (counts) for the size of a key as stored: its siblings (limit
/// 64 by default) and its version vector's entries (one per actor that
/// wrote it; a client context may carry 256). The seconds buckets would put
/// every key in the top three.
pub const KEY_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 5.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn init_tracing() {
    // The storage crates log a line per connection, flush or journal
    // rotation at info: only their warnings belong in a node's log.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,fjall=warn,lsm_tree=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Install the recorder once per process and return its handle.
pub fn metrics() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    // Two nodes started at once in one process (tests) must not both
    // install: the second install fails.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("store_commit_batch_rows".into()),
            BATCH_BUCKETS,
        )?
        .set_buckets_for_metric(Matcher::Full("key_siblings".into()), KEY_SIZE_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("version_vector_entries".into()),
            KEY_SIZE_BUCKETS,
        )?
        .install_recorder()?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Router answering `GET /metrics` in the Prometheus text format.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

/// Serve `/metrics` on its own listener (nodes).
pub async fn serve_metrics(
    listen: SocketAddr,
    handle: PrometheusHandle,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {listen}: {e}"))?;
    let app = metrics_router(handle);
    Ok(tokio::spawn(crate::http_server::serve(
        listener,
        app,
        crate::http_server::HttpLimits::default(),
        None,
    )))
}
