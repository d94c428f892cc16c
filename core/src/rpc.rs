//! The one implementation of quorumlog's internal RPC, used by the real
//! cluster (tokio) and the simulated one (madsim-tokio): bincode messages in
//! length-delimited frames over `tokio::net::TcpStream`.
//!
//! A connection carries many requests at once, matched to responses by id,
//! so a coordinator keeps one connection per peer and reuses it. A broken
//! connection fails its pending calls and is replaced on the next call,
//! which is how a restarted peer is reached again.
use crate::protocol::{Request, Response};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
pub use tokio_util::sync::CancellationToken;

/// Largest frame either side accepts. A value is at most 1 MiB; a sibling
/// set of a hot key can hold several, so leave room.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Requests queued on one connection before callers wait.
const OUTBOUND_QUEUE: usize = 1024;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    body: T,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RpcError {
    #[error("could not connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connection to {addr} was lost before it answered")]
    ConnectionLost { addr: SocketAddr },
    #[error("malformed frame: {0}")]
    Codec(String),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

fn encode<T: Serialize>(id: u64, body: &T) -> Result<Bytes, RpcError> {
    bincode::serialize(&Envelope { id, body })
        .map(Bytes::from)
        .map_err(|e| RpcError::Codec(e.to_string()))
}

fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<Envelope<T>, RpcError> {
    use bincode::Options;
    // Bound allocations by the frame we actually received: a length prefix
    // inside the message can never make us allocate more than that.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(frame.len() as u64)
        .deserialize(frame)
        .map_err(|e| RpcError::Codec(e.to_string()))
}

/// What a server does with each request.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, request: Request) -> Response;
}

/// Accept connections until `shutdown` is cancelled, serving each request
/// on its own task so a slow request never holds up the others on the same
/// connection. On shutdown every open connection is closed too, as when
/// the process exits.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = serve_connection(stream, handler) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, "connection closed: {e}");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn serve_connection(stream: TcpStream, handler: Arc<dyn Handler>) -> Result<(), RpcError> {
    stream.set_nodelay(true).ok();
    let (mut sink, mut frames) = Framed::new(stream, codec()).split();
    let (replies_tx, mut replies_rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = replies_rx.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(|e| RpcError::Codec(e.to_string()))?;
        let envelope: Envelope<Request> = match decode(&frame) {
            Ok(envelope) => envelope,
            Err(e) => {
                // A frame we cannot parse poisons the stream: we cannot even
                // say which request it was. Close the connection.
                writer.abort();
                return Err(e);
            }
        };
        let handler = handler.clone();
        let replies = replies_tx.clone();
        tokio::spawn(async move {
            let response = handler.handle(envelope.body).await;
            if let Ok(frame) = encode(envelope.id, &response) {
                let _ = replies.send(frame).await;
            }
        });
    }
    drop(replies_tx);
    let _ = writer.await;
    Ok(())
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

struct Connection {
    outbound: mpsc::Sender<Bytes>,
    pending: Pending,
    broken: Arc<AtomicBool>,
}

impl Connection {
    async fn open(addr: SocketAddr, timeout: Duration) -> Result<Self, RpcError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(RpcError::Connect {
                    addr,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(RpcError::Connect {
                    addr,
                    reason: format!("no answer within {timeout:?}"),
                })
            }
        };
        stream.set_nodelay(true).ok();
        let (mut sink, mut frames) = Framed::new(stream, codec()).split();
        let pending: Pending = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let (outbound, mut outbound_rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);

        let writer_broken = broken.clone();
        tokio::spawn(async move {
            while let Some(frame) = outbound_rx.recv().await {
                if sink.send(frame).await.is_err() {
                    break;
                }
            }
            writer_broken.store(true, Ordering::SeqCst);
        });

        let reader_pending = pending.clone();
        let reader_broken = broken.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = frames.next().await {
                let Ok(envelope) = decode::<Response>(&frame) else {
                    break;
                };
                let waiter = reader_pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&envelope.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(envelope.body);
                }
            }
            reader_broken.store(true, Ordering::SeqCst);
            // Dropping the senders wakes every caller with ConnectionLost.
            reader_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        });
        Ok(Connection {
            outbound,
            pending,
            broken,
        })
    }
}

/// A client for one peer: lazily connects, reuses the connection, and
/// reconnects after it breaks.
pub struct RpcClient {
    addr: SocketAddr,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    next_id: AtomicU64,
}

impl RpcClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            connection: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>, RpcError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.broken.load(Ordering::SeqCst) {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let conn = Arc::new(Connection::open(self.addr, timeout).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Send one request and wait for its response, all within `timeout`.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.connection(timeout).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, request)?;
        let (tx, rx) = oneshot::channel();
        conn.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = tokio::time::timeout(remaining, async {
            conn.outbound
                .send(frame)
                .await
                .map_err(|_| RpcError::ConnectionLost { addr: self.addr })?;
            rx.await
                .map_err(|_| RpcError::ConnectionLost { addr: self.addr })
        })
        .await;
        match result {
            Ok(outcome) => outcome,
            Err(_) => {
                conn.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(RpcError::Timeout {
                    addr: self.addr,
                    timeout,
                })
            }
        }
    }
}
