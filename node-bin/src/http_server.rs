//! The HTTP server under the gateway (and the nodes' `/metrics`): hyper
//! with bounds, instead of `axum::serve`, which has none. Connections are
//! limited in number, a client must finish a request's headers in time
//! (which also ends keep-alive connections that sit idle between
//! requests), and an accept error backs off and retries. With a
//! certificate it serves HTTPS (rustls) instead: the TLS handshake must
//! finish within the header timeout too.
use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

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

/// HTTPS from a PEM certificate chain and its PEM private key (PKCS#8,
/// PKCS#1 or SEC1), TLS 1.2 and 1.3, offering HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and private key do not make a server identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The longest an accept error holds the listener back.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serve `app` on `listener` within `limits`, for as long as the task
/// runs; over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
) {
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
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(stream, app, limits, peer).await,
                Some(tls) => {
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => serve_connection(stream, app, limits, peer).await,
                        Ok(Err(e)) => {
                            metrics::counter!("http_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            metrics::counter!("http_tls_handshake_failures_total").increment(1);
                            metrics::counter!("http_header_timeouts_total").increment(1);
                            tracing::debug!(%peer, "no TLS handshake within the header timeout");
                        }
                    }
                }
            }
        });
    }
}

/// One HTTP/1.1 or HTTP/2 connection, plain or TLS.
async fn serve_connection<S>(stream: S, app: Router, limits: HttpLimits, peer: std::net::SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = TowerToHyperService::new(app);
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
}
