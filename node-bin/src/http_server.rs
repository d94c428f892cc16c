//! The HTTP server under the gateway (and the nodes' `/metrics`): hyper
//! with bounds, instead of `axum::serve`, which has none. Connections are
//! limited in number, a client must finish a request's headers in time
//! (which also ends keep-alive connections that sit idle between
//! requests), and an accept error backs off and retries.
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Bounds on what HTTP clients may take of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; one more is closed at accept
    /// (`http_refused_total{reason="connections"}`).
    pub max_connections: usize,
    /// How long a client has to send a request's headers, from the moment
    /// the connection (or its previous request) is done; past it the
    /// connection is closed (`http_header_timeouts_total`).
    pub header_timeout: Duration,
}

impl HttpLimits {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// The longest an accept error holds the listener back.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serve `app` on `listener` within `limits`, for as long as the task runs.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                metrics::counter!("http_accept_errors_total").increment(1);
                tracing::warn!("accepting an HTTP connection failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("http_refused_total", "reason" => "connections").increment(1);
            tracing::warn!(
                %peer,
                "refused an HTTP connection: {} are open, the limit",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        stream.set_nodelay(true).ok();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(limits.header_timeout))
                .keep_alive_timeout(limits.header_timeout);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                let timed_out = e
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout);
                if timed_out {
                    metrics::counter!("http_header_timeouts_total").increment(1);
                }
                tracing::debug!(%peer, "HTTP connection ended: {e}");
            }
        });
    }
}
