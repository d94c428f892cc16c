//! The one implementation of quorumlog's internal RPC, used by the real
//! cluster (tokio) and the simulated one (madsim-tokio): messages in the
//! project's codec ([`crate::codec`]), each frame headed by the protocol
//! version, in length-delimited frames over `tokio::net::TcpStream`. A
//! peer whose first frame is of another protocol version is refused: the
//! connection closes, the refusal is logged with the peer's address and
//! counted (`rpc_refused_total{reason="protocol_version"}`), and the caller
//! on the other side gets [`RpcError::Incompatible`].
//!
//! With a cluster secret ([`ClusterSecret`]), every connection first
//! proves on both sides that its peer holds the secret and is then
//! encrypted and integrity-checked ([`crate::secure_channel`]). A peer that
//! does not complete that handshake is refused before any request it sent
//! is read (`rpc_refused_total{reason=…}`, logged with its address), and a
//! dialer is told why ([`RpcError::Refused`]).
//!
//! A connection carries many requests at once, matched to responses by id,
//! so a coordinator keeps one connection per peer and reuses it. Callers
//! write their own frames, and each call's deadline is kept by the
//! connection's one timer task rather than a timer per call. A broken
//! connection fails its pending calls and is replaced on the next call,
//! which is how a restarted peer is reached again. A message larger than
//! [`MAX_FRAME_BYTES`] fails only its own request, never the connection.
use crate::buggify::{self, FaultPoint};
use crate::codec::{self, FrameHeader, PROTOCOL_VERSION};
use crate::protocol::{Request, Response};
use crate::secure_channel::{self, ChannelCodec, ClusterSecret, HandshakeError, IntegrityError};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Framed;
pub use tokio_util::sync::CancellationToken;

/// Largest frame (one encoded request or response, without its 4-byte
/// length prefix) either side sends or accepts; the codec on both sides is
/// built from this constant and nothing else.
///
/// It bounds what one key can need: per-key data is limited to 4 MiB by
/// default (the bound on a key's merged sibling set), and a read merges the
/// sets of at most N ≤ 7 replicas, so the largest answer a read can build,
/// 7 × 4 MiB = 28 MiB plus encoding overhead, fits. Should a message exceed
/// it anyway, only that one request fails ([`RpcError::TooLarge`] for a
/// request, a [`Response::Error`] naming the limit for a response); the
/// connection stays up for the others.
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
/// How much of a key an error message about its request quotes.
const KEY_IN_MESSAGES: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    id: u64,
    body: T,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RpcError {
    #[error("could not connect to {addr}: {reason}")]
    Connect {
        addr: SocketAddr,
        reason: String,
        /// The peer refused (or the network rejected) the connection, as
        /// opposed to not answering in time: it is down.
        refused: bool,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connection to {addr} was lost before it answered")]
    ConnectionLost { addr: SocketAddr },
    #[error("malformed frame: {0}")]
    Codec(String),
    /// The peer speaks another RPC protocol version (or is not quorumd).
    #[error("{addr} does not speak RPC protocol version {ours}: {}", incompatible_note(*.theirs))]
    Incompatible {
        addr: SocketAddr,
        /// The version its frames carry; `None` when they carry none.
        theirs: Option<u8>,
        ours: u8,
    },
    /// The peer closed the connection with this reason before any request
    /// was answered: it holds another cluster secret, needs one we do not
    /// have, or has none while we do.
    #[error("{addr} refused the connection: {reason}")]
    Refused { addr: SocketAddr, reason: String },
    /// The request encodes to more than the frame limit; nothing was sent.
    #[error("request is {bytes} bytes; the RPC frame limit is {limit}; nothing was sent")]
    TooLarge { bytes: usize, limit: usize },
}

fn incompatible_note(theirs: Option<u8>) -> String {
    match theirs {
        Some(v) => format!(
            "it speaks version {v}; run the same quorumd release on every node of the cluster"
        ),
        None => "its frames carry no protocol version (an older quorumd, or not quorumd)".into(),
    }
}

fn codec() -> ChannelCodec {
    ChannelCodec::new(MAX_FRAME_BYTES)
}

/// Bytes a connection's read buffer starts with (it grows for a larger
/// frame). A decoded frame is split off the buffer, which starts again
/// from its beginning only once it is full. On a real socket every read is
/// a system call, so tokio-util's default of 8 KiB lets one read take many
/// frames. Under the simulator a read is a copy from memory, and most
/// frames are a few hundred bytes: a small buffer comes back to memory
/// still in the cache sooner (6 % fewer last-level cache misses a seed).
#[cfg(not(madsim))]
const READ_BUFFER_BYTES: usize = 8 * 1024;
#[cfg(madsim)]
const READ_BUFFER_BYTES: usize = 1024;

fn framed<S: AsyncRead + AsyncWrite>(stream: S) -> Framed<S, ChannelCodec> {
    Framed::with_capacity(stream, codec(), READ_BUFFER_BYTES)
}

/// The request id of a frame that answers no request: the server's reason
/// for closing the connection (clients number their requests from 1).
const REFUSAL_ID: u64 = 0;

fn encode<T: Serialize>(id: u64, body: &T) -> Result<Bytes, RpcError> {
    let envelope = Envelope { id, body };
    let frame = codec::frame_header(codec::encoded_size(&envelope));
    codec::encode_into(&envelope, frame)
        .map(Bytes::from)
        .map_err(|e| RpcError::Codec(e.to_string()))
}

/// A request encoded once for every peer it goes to: a coordinated write
/// sends the same `Apply` (the key's whole sibling set) to every other
/// replica, and a read repair to every replica behind. Each call's frame
/// is then the header, its id and these bytes — the very bytes encoding
/// the call's envelope would give (postcard writes a struct's fields one
/// after the other, the id first) — rather than one pass over the sibling
/// set per peer.
pub struct EncodedRequest {
    request: Request,
    /// The request's encoding, or why it has none (every call reports it).
    body: Result<Bytes, RpcError>,
}

impl EncodedRequest {
    pub fn new(request: Request) -> Self {
        let body = codec::encode(&request)
            .map(Bytes::from)
            .map_err(|e| RpcError::Codec(e.to_string()));
        Self { request, body }
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The frame of call `id`: what `encode(id, self.request())` gives.
    fn frame(&self, id: u64) -> Result<Bytes, RpcError> {
        let body = self.body.as_ref().map_err(Clone::clone)?;
        let frame = codec::frame_header(codec::encoded_size(&id).saturating_add(body.len()));
        let mut frame =
            codec::encode_into(&id, frame).map_err(|e| RpcError::Codec(e.to_string()))?;
        frame.extend_from_slice(body);
        Ok(Bytes::from(frame))
    }
}

/// Why a frame could not be read: another protocol, or a broken frame.
#[derive(Debug)]
enum Unreadable {
    Incompatible(Option<u8>),
    Malformed(String),
}

impl Unreadable {
    fn into_error(self, addr: SocketAddr) -> RpcError {
        match self {
            Unreadable::Incompatible(theirs) => RpcError::Incompatible {
                addr,
                theirs,
                ours: PROTOCOL_VERSION,
            },
            Unreadable::Malformed(reason) => RpcError::Codec(reason),
        }
    }
}

fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<Envelope<T>, Unreadable> {
    match codec::read_frame_header(frame) {
        // Bounded by the frame we received: a length prefix inside the
        // message can never make us allocate more than that.
        FrameHeader::Current => codec::decode(&frame[codec::FRAME_HEADER_LEN..])
            .map_err(|e| Unreadable::Malformed(e.to_string())),
        FrameHeader::Other(version) => Err(Unreadable::Incompatible(Some(version))),
        FrameHeader::Unknown => Err(Unreadable::Incompatible(None)),
    }
}

/// Decode one frame as a server reads it (header, then a request), with
/// the error a peer would get: for fuzzing and tools; the server itself
/// uses the same [`decode`].
pub fn decode_request_frame(frame: &[u8]) -> Result<(u64, Request), RpcError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], 0));
    decode::<Request>(frame)
        .map(|envelope| (envelope.id, envelope.body))
        .map_err(|e| e.into_error(addr))
}

/// Decode one frame as a client reads it (header, then a response).
pub fn decode_response_frame(frame: &[u8]) -> Result<(u64, Response), RpcError> {
    let addr = SocketAddr::from(([0, 0, 0, 0], 0));
    decode::<Response>(frame)
        .map(|envelope| (envelope.id, envelope.body))
        .map_err(|e| e.into_error(addr))
}

/// A short description of a request for error messages and logs: its kind
/// and the start of its key, never its data. Taken for every request and
/// formatted only when a message needs it (rarely: a response too large
/// to send).
struct RequestLabel {
    kind: &'static str,
    /// The key's first [`KEY_IN_MESSAGES`] characters, and whether there
    /// were more.
    key: Option<(String, bool)>,
}

fn describe(request: &Request) -> RequestLabel {
    let (kind, key) = match request {
        Request::Apply { key, .. } => ("Apply", key),
        Request::Fetch { key } => ("Fetch", key),
        Request::Write(write) => ("Write", &write.key),
        Request::Read(read) => ("Read", &read.key),
        Request::Health => return RequestLabel::keyless("Health"),
        Request::Ping => return RequestLabel::keyless("Ping"),
        Request::AntiEntropy(_) => return RequestLabel::keyless("AntiEntropy"),
    };
    let end = key
        .char_indices()
        .nth(KEY_IN_MESSAGES)
        .map_or(key.len(), |(at, _)| at);
    RequestLabel {
        kind,
        key: Some((key[..end].to_string(), end < key.len())),
    }
}

impl RequestLabel {
    fn keyless(kind: &'static str) -> Self {
        RequestLabel { kind, key: None }
    }
}

impl fmt::Display for RequestLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            None => f.write_str(self.kind),
            Some((start, false)) => write!(f, "{} {start:?}", self.kind),
            Some((start, true)) => write!(f, "{} {:?}", self.kind, format!("{start}…")),
        }
    }
}

/// The frame that answers request `id`: the response itself, or, when it
/// cannot be sent (larger than the frame limit, or not encodable), a small
/// `Response::Error` saying why, so the caller hears about it at once and
/// the connection stays usable.
fn response_frame(id: u64, request: &dyn fmt::Display, response: &Response) -> Option<Bytes> {
    let message = match encode(id, response) {
        Ok(frame) if frame.len() <= MAX_FRAME_BYTES => return Some(frame),
        Ok(frame) => {
            let message = format!(
                "response to request {id} ({request}) is {} bytes; the RPC frame limit is {MAX_FRAME_BYTES}",
                frame.len()
            );
            tracing::warn!("{message}");
            message
        }
        Err(e) => {
            let message = format!("response to request {id} ({request}) could not be encoded: {e}");
            tracing::warn!("{message}");
            message
        }
    };
    // A short string always encodes, far below the limit.
    encode(id, &Response::Error(message)).ok()
}

/// Bounds on what one RPC server takes from its peers, so no peer (or
/// crowd of them) can pin unbounded memory or tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once; one more is closed at accept
    /// (`rpc_refused_total{reason="connections"}`).
    pub max_connections: usize,
    /// Requests of one connection handled at once; past it the server
    /// stops reading that connection until one finishes (backpressure,
    /// `rpc_backpressure_total`).
    pub max_in_flight_per_connection: usize,
    /// Bytes of request frames of one connection held at once (while
    /// they are handled); past it, as past the request limit, the server
    /// stops reading that connection. A frame larger than this runs alone.
    pub max_in_flight_bytes_per_connection: usize,
    /// A connection that completes no frame for this long is closed
    /// (`rpc_idle_closed_total`): an idle peer, or one trickling a frame
    /// that pins its buffer. Peers reconnect on their next call.
    pub idle_timeout: Duration,
    /// A peer that has not completed the cluster handshake this long
    /// after connecting is closed
    /// (`rpc_refused_total{reason="handshake_timeout"}`); only with a
    /// cluster secret.
    pub handshake_timeout: Duration,
}

impl ServerLimits {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
    pub const DEFAULT_MAX_IN_FLIGHT_BYTES: usize = 64 * 1024 * 1024;
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_in_flight_per_connection: Self::DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_bytes_per_connection: Self::DEFAULT_MAX_IN_FLIGHT_BYTES,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The longest an accept error (out of file descriptors, say) holds the
/// listener back before it tries again.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What a server does with each request.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, request: Request) -> Response;
}

/// Accept connections until `shutdown` is cancelled, serving each request
/// on its own task so a slow request never holds up the others on the same
/// connection, within the default [`ServerLimits`]. On shutdown every open
/// connection is closed too, as when the process exits.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, handler, shutdown, ServerLimits::default(), None).await
}

/// [`serve`] within `limits`, admitting only peers that hold `secret`
/// when one is given. An accept error does not end the server: it is
/// logged and counted (`rpc_accept_errors_total`), and the listener tries
/// again after a backoff of up to a second.
pub async fn serve_with(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    shutdown: CancellationToken,
    limits: ServerLimits,
    secret: Option<ClusterSecret>,
) -> std::io::Result<()> {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    // Closed when this returns (shutdown) or is dropped.
    let mut open = OpenConnections::default();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(e) => {
                metrics::counter!("rpc_accept_errors_total").increment(1);
                tracing::warn!("accepting an RPC connection failed: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("rpc_refused_total", "reason" => "connections").increment(1);
            tracing::warn!(
                %peer,
                "refused an RPC connection: {} are open, the limit (--rpc-max-connections)",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        stream.set_nodelay(true).ok();
        let handler = handler.clone();
        open.0.retain(|task| !task.is_finished());
        let task = tokio::spawn(async move {
            let _permit = permit;
            match serve_connection(stream, handler, limits, secret).await {
                Ok(()) => {}
                Err(ConnectionEnd::Refused { reason, message }) => {
                    metrics::counter!("rpc_refused_total", "reason" => reason).increment(1);
                    tracing::warn!(%peer, reason, "refused an RPC peer: {message}");
                }
                Err(ConnectionEnd::Incompatible(theirs)) => {
                    metrics::counter!("rpc_refused_total", "reason" => "protocol_version")
                        .increment(1);
                    tracing::warn!(
                        %peer,
                        "refused an RPC peer: it does not speak protocol version {PROTOCOL_VERSION}: {}",
                        incompatible_note(theirs)
                    );
                }
                Err(ConnectionEnd::Failed(e)) => {
                    tracing::debug!(%peer, "connection closed: {e}");
                }
            }
        });
        open.0.push(task.abort_handle());
    }
}

/// The connections a server has open, aborted when it stops: a served
/// connection watches no shutdown signal of its own (polling one on each
/// of its wake-ups cost more than anything else it does per frame).
#[derive(Default)]
struct OpenConnections(Vec<tokio::task::AbortHandle>);

impl Drop for OpenConnections {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Where a connection's frames go.
type FrameSink = std::pin::Pin<Box<dyn futures::Sink<Bytes, Error = std::io::Error> + Send>>;

/// The write half of a connection, written directly by whoever has a frame
/// to send (callers on the dialing side, request tasks on the serving
/// side), one at a time in the order they came (the mutex is fair). No
/// writer task and queue stand between them and the socket: that hop, on
/// both sides of every message, was a twentieth of a simulated seed.
struct FrameWriter {
    /// `None` once the connection has ended: the write half is dropped, so
    /// the socket closes as soon as the reading side lets go too.
    sink: tokio::sync::Mutex<Option<FrameSink>>,
    ended: std::sync::atomic::AtomicBool,
    /// A writer gave up before its frame was flushed (see
    /// [`FrameWriter::finish_flush`]).
    abandoned: tokio::sync::Notify,
}

/// Why a frame was not written.
enum WriteEnd {
    /// The connection had ended before.
    Ended,
    /// This write failed; the connection has ended with it.
    Failed(std::io::Error),
}

impl FrameWriter {
    fn new(sink: impl futures::Sink<Bytes, Error = std::io::Error> + Send + 'static) -> Self {
        Self {
            sink: tokio::sync::Mutex::new(Some(Box::pin(sink))),
            ended: std::sync::atomic::AtomicBool::new(false),
            abandoned: tokio::sync::Notify::new(),
        }
    }

    /// Write one frame. A writer dropped half-way through (its caller's
    /// deadline passed while the socket was full, or its call was dropped)
    /// may leave part of its frame in the codec's buffer: it tells
    /// `abandoned`, whose listener has the rest flushed
    /// ([`FrameWriter::finish_flush`]), so the peer never waits on half a
    /// frame and the connection carries on.
    async fn send(&self, frame: Bytes) -> Result<(), WriteEnd> {
        let outcome = {
            // Nearly always free: a frame's write holds it across an await
            // only while the socket is full. `try_lock` takes it without
            // building and dropping a waiting future, and is as fair as
            // `lock`: it fails while anyone is queued.
            let mut half = match self.sink.try_lock() {
                Ok(half) => half,
                Err(_) => self.sink.lock().await,
            };
            let Some(sink) = half.as_mut() else {
                return Err(WriteEnd::Ended);
            };
            let mut writing = Writing {
                abandoned: &self.abandoned,
                finished: false,
            };
            let outcome = sink.send(frame).await;
            writing.finished = true;
            if outcome.is_err() {
                *half = None;
                self.ended.store(true, Ordering::SeqCst);
            }
            outcome
        };
        // A `close` while we held the half could not drop it: do it now.
        if self.ended.load(Ordering::SeqCst) {
            self.close();
        }
        outcome.map_err(WriteEnd::Failed)
    }

    /// Flush what a writer that gave up left in the codec's buffer (the
    /// rest of its frame), so that the peer does not wait on half a frame
    /// until the next write. A failed flush ends the writing (false).
    async fn finish_flush(&self) -> bool {
        let mut half = self.sink.lock().await;
        let Some(sink) = half.as_mut() else {
            return false;
        };
        if sink.flush().await.is_err() {
            *half = None;
            self.ended.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// End the connection's writing: drop the write half now, or, if a
    /// frame is being written, as soon as that write returns.
    fn close(&self) {
        self.ended.store(true, Ordering::SeqCst);
        if let Ok(mut half) = self.sink.try_lock() {
            *half = None;
        }
    }
}

/// A frame being written; see [`FrameWriter::send`].
struct Writing<'a> {
    abandoned: &'a tokio::sync::Notify,
    finished: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.abandoned.notify_one();
        }
    }
}

/// A task that is aborted when this handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The longest a reply held back by [`FaultPoint::DelayReply`] waits:
/// less than a replica timeout, so it is usually still awaited.
const REORDER_DELAY: Duration = Duration::from_millis(300);

/// How a served connection ended, when not cleanly.
#[derive(Debug)]
enum ConnectionEnd {
    /// The peer's frames are of another protocol version.
    Incompatible(Option<u8>),
    /// The peer did not prove it holds the cluster secret (or sent a
    /// handshake to a node without one); `reason` is the metric label.
    Refused {
        reason: &'static str,
        message: String,
    },
    Failed(String),
}

impl From<String> for ConnectionEnd {
    fn from(reason: String) -> Self {
        ConnectionEnd::Failed(reason)
    }
}

impl From<&str> for ConnectionEnd {
    fn from(reason: &str) -> Self {
        ConnectionEnd::Failed(reason.to_string())
    }
}

/// Serve one connection until the peer closes it or it fails. Each request
/// is handled on a task of its own, which writes its answer itself. When a
/// write fails, the reader stops too and the stream is dropped (the socket
/// closes), so the peer's pending calls fail at once instead of a half-dead
/// connection swallowing them. When this future ends or is dropped
/// (shutdown), the write half goes with it: requests still being handled
/// find the connection closed.
async fn serve_connection<S>(
    stream: S,
    handler: Arc<dyn Handler>,
    limits: ServerLimits,
    secret: Option<ClusterSecret>,
) -> Result<(), ConnectionEnd>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut framed = framed(stream);
    if let Some(secret) = secret {
        admit(&mut framed, &secret, limits.handshake_timeout).await?;
    }
    let mut first_frame = true;
    let (sink, mut frames) = framed.split();
    // The first failed write, told by the request task that saw it.
    let (write_failed_tx, mut write_failed) = oneshot::channel::<String>();
    let served = Arc::new(Served {
        // A clone: the caller's reference goes last, when this returns.
        handler: handler.clone(),
        replies: FrameWriter::new(sink),
        write_failed: Mutex::new(Some(write_failed_tx)),
        in_flight: InFlight::new(&limits),
    });
    let replies = &served.replies;
    // Closes the socket however this returns, even with requests still
    // being handled (they find the connection ended).
    let _closing = CloseOnDrop(served.clone());
    let awaiting = Arc::new(Awaiting::new());
    // The watchdog says so on a channel rather than by ending: polling its
    // task's handle on every wake-up of this one would register this
    // task's waker with it each time (two reference counts, and more).
    let (idle_tx, mut idle) = oneshot::channel::<()>();
    let watchdog = idle_watch(awaiting.clone(), limits.idle_timeout);
    let _watchdog = AbortOnDrop(tokio::spawn(async move {
        watchdog.await;
        let _ = idle_tx.send(());
    }));
    loop {
        awaiting.set(Some(tokio::time::Instant::now()));
        let frame = tokio::select! {
            // Fixed order, so no random choice reaches the simulation.
            biased;
            failed = &mut write_failed => {
                return Err(failed
                    .unwrap_or_else(|_| "a request task stopped without an answer".into())
                    .into());
            }
            // Idle, or the watchdog is gone (its node stopped).
            _ = &mut idle => {
                metrics::counter!("rpc_idle_closed_total").increment(1);
                return Err(format!(
                    "no complete frame for {:?} (--rpc-idle-timeout-ms)",
                    limits.idle_timeout
                )
                .into());
            }
            frame = frames.next() => frame,
        };
        awaiting.set(None);
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            if IntegrityError::is(&e) {
                ConnectionEnd::Refused {
                    reason: "integrity",
                    message: e.to_string(),
                }
            } else {
                ConnectionEnd::Failed(format!("reading a request failed: {e}"))
            }
        })?;
        // Only a connection's first frame can be a handshake (its magic
        // would otherwise read as frames of protocol version 78).
        let first = std::mem::take(&mut first_frame);
        if first && secret.is_none() && secure_channel::handshake_message(&frame).is_some() {
            let message = "this node has no cluster secret and takes only plain connections; \
                           give every node and gateway of the cluster the same --cluster-secret";
            tell(replies, message).await;
            return Err(ConnectionEnd::Refused {
                reason: "unexpected_handshake",
                message: format!("the peer sent a cluster handshake; {message}"),
            });
        }
        // A frame we cannot parse poisons the stream: we cannot even say
        // which request it was. Close the connection; a peer of another
        // protocol version is told so first, in our protocol (a peer of a
        // later release can read it).
        let envelope: Envelope<Request> = match decode(&frame) {
            Ok(envelope) => envelope,
            Err(Unreadable::Incompatible(theirs)) => {
                let message = format!(
                    "this node speaks RPC protocol version {PROTOCOL_VERSION}; {}",
                    incompatible_note(theirs)
                );
                tell(replies, &message).await;
                return Err(ConnectionEnd::Incompatible(theirs));
            }
            Err(Unreadable::Malformed(reason)) => {
                return Err(format!("unreadable request: {reason}").into())
            }
        };
        // Past an in-flight limit, stop reading until a request finishes.
        // The request's task holds its share, and through it the
        // connection: one reference count per request.
        let share = Share::take(&served, frame.len()).await;
        // Boxed once: the task layers below move a future by value on its
        // way into the task, and this one holds the whole request.
        tokio::spawn(Box::pin(async move {
            // Dropped last, as the request ends: its limits are released.
            let share = share;
            let between_replicas = matches!(
                envelope.body,
                Request::Apply { .. } | Request::Fetch { .. } | Request::AntiEntropy(_)
            );
            let misbehaves = |point| between_replicas && buggify::fires(point);
            if misbehaves(FaultPoint::DropRequest) {
                return;
            }
            let request = describe(&envelope.body);
            if misbehaves(FaultPoint::DuplicateRequest) {
                let _ = share.served.handler.handle(envelope.body.clone()).await;
            }
            let response = share.served.handler.handle(envelope.body).await;
            if misbehaves(FaultPoint::DropReply) {
                return;
            }
            if misbehaves(FaultPoint::DelayReply) {
                tokio::time::sleep(buggify::delay_up_to(REORDER_DELAY)).await;
            }
            if let Some(frame) = response_frame(envelope.id, &request, &response) {
                if let Err(WriteEnd::Failed(e)) = share.served.replies.send(frame).await {
                    let told = (share.served.write_failed)
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take();
                    if let Some(told) = told {
                        let _ = told.send(format!("writing a response failed: {e}"));
                    }
                }
            }
        }));
    }
    // The peer is done sending: answer what is still being handled (each
    // request task holds its share until it has written its answer).
    served.in_flight.drained().await;
    match write_failed.try_recv() {
        Ok(failed) => Err(ConnectionEnd::Failed(failed)),
        Err(_) => Ok(()),
    }
}

/// What a served connection's request tasks share with its reader: one
/// reference count per request, where each piece had its own.
struct Served {
    handler: Arc<dyn Handler>,
    replies: FrameWriter,
    /// Tells the reader of the first failed write.
    write_failed: Mutex<Option<oneshot::Sender<String>>>,
    in_flight: InFlight,
}

/// What the requests a served connection is handling hold, against its
/// limits (`--rpc-max-in-flight`, `--rpc-max-in-flight-bytes`), in bytes.
/// One mutex for both counts, and a wake-up only when the connection's
/// reader is waiting (a semaphore takes its waiters' lock on every
/// release).
struct InFlight {
    max_requests: usize,
    max_bytes: usize,
    held: Mutex<Held>,
    /// Wakes the connection's reader, the only one that ever waits.
    released: tokio::sync::Notify,
}

#[derive(Default)]
struct Held {
    requests: usize,
    bytes: usize,
    /// The reader waits for a share to be released.
    waiting: bool,
}

/// One request's share of its connection's in-flight limits, given back
/// when the request's task ends.
struct Share {
    served: Arc<Served>,
    bytes: usize,
}

impl Share {
    /// The share of a request of `frame_bytes`, once it fits (see
    /// [`InFlight::take`]).
    async fn take(served: &Arc<Served>, frame_bytes: usize) -> Share {
        let bytes = served.in_flight.take(frame_bytes).await;
        Share {
            served: served.clone(),
            bytes,
        }
    }
}

impl InFlight {
    fn new(limits: &ServerLimits) -> Self {
        Self {
            max_requests: limits.max_in_flight_per_connection.max(1),
            max_bytes: limits.max_in_flight_bytes_per_connection.max(1),
            held: Mutex::new(Held::default()),
            released: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the share of a request of `frame_bytes`, once it fits (counted
    /// in `rpc_backpressure_total` when it has to wait), and say how many
    /// bytes it holds. A frame larger than the byte limit counts as the
    /// whole limit: it runs alone.
    async fn take(&self, frame_bytes: usize) -> usize {
        let bytes = frame_bytes.clamp(1, self.max_bytes);
        let mut counted = false;
        loop {
            {
                let mut held = self.lock();
                let fits = held.requests < self.max_requests
                    && held.bytes.saturating_add(bytes) <= self.max_bytes;
                if fits {
                    held.requests += 1;
                    held.bytes += bytes;
                    return bytes;
                }
                held.waiting = true;
            }
            if !std::mem::replace(&mut counted, true) {
                metrics::counter!("rpc_backpressure_total").increment(1);
            }
            // A release after the lock above left a permit: no lost wake-up.
            self.released.notified().await;
        }
    }

    /// Give back a request's share of `bytes`.
    fn release(&self, bytes: usize) {
        let mut held = self.lock();
        held.requests -= 1;
        held.bytes -= bytes;
        if std::mem::take(&mut held.waiting) {
            self.released.notify_one();
        }
    }

    /// Returns once no request holds a share.
    async fn drained(&self) {
        loop {
            {
                let mut held = self.lock();
                if held.requests == 0 {
                    return;
                }
                held.waiting = true;
            }
            self.released.notified().await;
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.served.in_flight.release(self.bytes);
    }
}

/// Closes a connection's write half when dropped.
struct CloseOnDrop(Arc<Served>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.replies.close();
    }
}

/// Since when a connection has been waiting for its next frame (none: it
/// is handling one, or held back by its in-flight limits). An atomic count
/// of nanoseconds from an instant of its own, which the reader sets twice
/// a frame without taking a lock.
struct Awaiting {
    from: tokio::time::Instant,
    /// Nanoseconds since `from`; `NOT_AWAITING` when not waiting.
    since: std::sync::atomic::AtomicU64,
}

const NOT_AWAITING: u64 = u64::MAX;

impl Awaiting {
    fn new() -> Self {
        Self {
            from: tokio::time::Instant::now(),
            since: std::sync::atomic::AtomicU64::new(NOT_AWAITING),
        }
    }

    fn set(&self, since: Option<tokio::time::Instant>) {
        let nanos = since.map_or(NOT_AWAITING, |since| {
            // Saturating: 584 years after the connection opened.
            let nanos = since.saturating_duration_since(self.from).as_nanos();
            u64::try_from(nanos).map_or(NOT_AWAITING - 1, |n| n.min(NOT_AWAITING - 1))
        });
        self.since.store(nanos, Ordering::Relaxed);
    }

    fn get(&self) -> Option<tokio::time::Instant> {
        match self.since.load(Ordering::Relaxed) {
            NOT_AWAITING => None,
            nanos => self.from.checked_add(Duration::from_nanos(nanos)),
        }
    }
}

/// Returns once the connection has waited `idle` for a frame.
///
/// A task of its own, with one timer per idle period, rather than a
/// timeout around every read: a timer per frame, each outliving its frame
/// by the whole idle period, was a sixth of the simulator's timers and
/// kept its timer heap thousands deep (madsim cannot cancel a timer).
async fn idle_watch(awaiting: Arc<Awaiting>, idle: Duration) {
    let now = tokio::time::Instant::now;
    let mut check_at = now().checked_add(idle);
    // No instant that far ahead: never idle.
    while let Some(at) = check_at {
        tokio::time::sleep_until(at).await;
        check_at = match awaiting.get() {
            Some(since) => match since.checked_add(idle) {
                Some(idle_at) if now() >= idle_at => return,
                later => later,
            },
            // Handling a frame or held back: not idle, look again later.
            None => now().checked_add(idle),
        };
    }
    std::future::pending().await
}

/// Tell the peer, in one frame that answers no request, why the
/// connection ends.
async fn tell(replies: &FrameWriter, message: &str) {
    if let Ok(refusal) = encode(REFUSAL_ID, &Response::Error(message.to_string())) {
        let _ = replies.send(refusal).await;
    }
}

/// The listener's side of the cluster handshake: read the dialer's first
/// frame (small, and within `timeout`), check that it proves the secret,
/// answer, and seal the connection. A peer that fails is told why in one
/// plain frame and refused; nothing it sent is read as a request.
async fn admit<S>(
    framed: &mut Framed<S, ChannelCodec>,
    secret: &ClusterSecret,
    timeout: Duration,
) -> Result<(), ConnectionEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    framed
        .codec_mut()
        .limit_frames(Some(secure_channel::HANDSHAKE_MAX_FRAME));
    let first = match tokio::time::timeout(timeout, framed.next()).await {
        Err(_) => {
            return Err(ConnectionEnd::Refused {
                reason: "handshake_timeout",
                message: format!(
                    "no cluster handshake within {timeout:?} (--rpc-handshake-timeout-ms)"
                ),
            })
        }
        Ok(None) => return Err("closed before the cluster handshake".into()),
        Ok(Some(Err(e))) => {
            return Err(ConnectionEnd::Refused {
                reason: "unauthenticated",
                message: format!("its first frame is not a cluster handshake: {e}"),
            })
        }
        Ok(Some(Ok(frame))) => frame,
    };
    let refuse = |reason: &'static str, told: &str, logged: String| {
        let refusal = encode(REFUSAL_ID, &Response::Error(told.to_string())).ok();
        (
            refusal,
            ConnectionEnd::Refused {
                reason,
                message: logged,
            },
        )
    };
    let (refusal, end) = match secure_channel::handshake_message(&first) {
        None => refuse(
            "unauthenticated",
            "this node takes only connections that prove the cluster secret; \
             give every node and gateway of the cluster the same --cluster-secret",
            "it sent no cluster handshake (it has no cluster secret, or is not quorumd)".into(),
        ),
        Some(message) => match secure_channel::respond(secret, message) {
            Ok((sealer, answer)) => {
                framed
                    .send(answer)
                    .await
                    .map_err(|e| format!("answering the cluster handshake failed: {e}"))?;
                framed.codec_mut().seal_with(sealer);
                return Ok(());
            }
            Err(HandshakeError::WrongSecret) => refuse(
                "wrong_secret",
                "this node holds another cluster secret; give every node and gateway \
                 of the cluster the same --cluster-secret",
                HandshakeError::WrongSecret.to_string(),
            ),
            Err(e @ HandshakeError::Malformed(_)) => refuse(
                "unauthenticated",
                "malformed cluster handshake",
                e.to_string(),
            ),
        },
    };
    if let Some(refusal) = refusal {
        let _ = framed.send(refusal).await;
    }
    Err(end)
}

/// Callers waiting on one connection, and whether it has ended.
#[derive(Default)]
struct Pending {
    // Ordered, so that a lost connection wakes its callers in one order
    // on every run (a HashMap's order can differ between runs in one
    // process, which breaks seed replay).
    waiters: BTreeMap<u64, oneshot::Sender<Answer>>,
    /// Each waiting caller's deadline, earliest first.
    deadlines: std::collections::BTreeSet<(tokio::time::Instant, u64)>,
    /// The deadline the connection's timer is set for, if any.
    timer_at: Option<tokio::time::Instant>,
    /// Set once, when the connection ends; no caller registers after that.
    closed: bool,
    /// Why it ended, when that is more than a lost connection (the peer
    /// speaks another protocol): what its callers are told.
    end_error: Option<RpcError>,
}

/// What a waiting caller is told.
enum Answer {
    Response(Response),
    /// Its deadline passed first.
    TimedOut,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the connection's timer task when a caller's deadline comes
    /// before the one the timer is set for.
    timer_moved: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Mark the connection ended and wake every waiting caller (dropping
    /// its sender makes it see `ConnectionLost`, or `error` when given).
    fn close(&self, error: Option<RpcError>) {
        let waiters = {
            let mut pending = self.lock();
            pending.closed = true;
            if pending.end_error.is_none() {
                pending.end_error = error;
            }
            pending.deadlines.clear();
            std::mem::take(&mut pending.waiters)
        };
        drop(waiters);
    }

    /// Register a caller waiting for the answer to request `id` until
    /// `deadline`; `None` if the connection has ended.
    fn register(
        &self,
        id: u64,
        deadline: tokio::time::Instant,
    ) -> Option<oneshot::Receiver<Answer>> {
        let (tx, rx) = oneshot::channel();
        let mut pending = self.lock();
        if pending.closed {
            return None;
        }
        pending.waiters.insert(id, tx);
        pending.deadlines.insert((deadline, id));
        if pending.timer_at.is_none_or(|at| deadline < at) {
            pending.timer_at = Some(deadline);
            self.timer_moved.notify_one();
        }
        Some(rx)
    }

    /// The connection's own task, until it is dropped: tell every caller
    /// whose deadline has passed, and finish the flush of a frame whose
    /// writer gave up. One timer per connection, set for the earliest
    /// deadline, instead of one per call: a call's own timeout outlived
    /// almost every call by the whole replica timeout, and madsim cannot
    /// cancel a timer.
    async fn tend(self: Arc<Self>, writer: Arc<FrameWriter>) {
        loop {
            let next = self.lock().deadlines.first().map(|&(at, _)| at);
            tokio::select! {
                biased;
                () = writer.abandoned.notified() => {
                    // On a task of its own: the flush may wait on a full
                    // socket, and deadlines must pass meanwhile.
                    let (shared, writer) = (self.clone(), writer.clone());
                    tokio::spawn(async move {
                        if !writer.finish_flush().await {
                            shared.close(None);
                        }
                    });
                    continue;
                }
                () = self.timer_moved.notified() => {}
                () = sleep_until_if(next) => {}
            }
            let now = tokio::time::Instant::now();
            let expired: Vec<oneshot::Sender<Answer>> = {
                let mut pending = self.lock();
                let mut expired = Vec::new();
                while let Some(&(at, id)) = pending.deadlines.first() {
                    if at > now {
                        break;
                    }
                    pending.deadlines.pop_first();
                    expired.extend(pending.waiters.remove(&id));
                }
                pending.timer_at = pending.deadlines.first().map(|&(at, _)| at);
                expired
            };
            for caller in expired {
                let _ = caller.send(Answer::TimedOut);
            }
        }
    }

    /// What a caller of the ended connection is told.
    fn end_error(&self, addr: SocketAddr) -> RpcError {
        self.lock()
            .end_error
            .clone()
            .unwrap_or(RpcError::ConnectionLost { addr })
    }
}

/// Until `at`, or for ever.
async fn sleep_until_if(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Removes a caller's entry when its call ends, however it ends (answer,
/// timeout, or the caller dropping the call), so entries never pile up.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
    deadline: tokio::time::Instant,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut pending = self.shared.lock();
        pending.waiters.remove(&self.id);
        pending.deadlines.remove(&(self.deadline, self.id));
    }
}

struct Connection {
    addr: SocketAddr,
    writer: Arc<FrameWriter>,
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
    timer: tokio::task::AbortHandle,
}

impl Connection {
    /// Connect (and, with a secret, complete the cluster handshake), all
    /// within `timeout`.
    async fn open(
        addr: SocketAddr,
        timeout: Duration,
        secret: Option<&ClusterSecret>,
    ) -> Result<Self, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(RpcError::Connect {
                    addr,
                    reason: e.to_string(),
                    refused: true,
                })
            }
            Err(_) => {
                return Err(RpcError::Connect {
                    addr,
                    reason: format!("no answer within {timeout:?}"),
                    refused: false,
                })
            }
        };
        stream.set_nodelay(true).ok();
        let mut framed = framed(stream);
        if let Some(secret) = secret {
            let handshake = tokio::time::timeout(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
                Self::prove(addr, &mut framed, secret),
            );
            match handshake.await {
                Ok(outcome) => outcome?,
                Err(_) => {
                    return Err(RpcError::Connect {
                        addr,
                        reason: format!("no answer to the cluster handshake within {timeout:?}"),
                        refused: false,
                    })
                }
            }
        }
        Ok(Self::start(addr, framed))
    }

    /// The dialer's side of the cluster handshake.
    async fn prove<S>(
        addr: SocketAddr,
        framed: &mut Framed<S, ChannelCodec>,
        secret: &ClusterSecret,
    ) -> Result<(), RpcError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let lost = |e: std::io::Error| RpcError::Connect {
            addr,
            reason: format!("the cluster handshake failed: {e}"),
            refused: true,
        };
        let (initiator, hello) = secure_channel::initiate(secret);
        framed.send(hello).await.map_err(lost)?;
        let answer = match framed.next().await {
            None => {
                return Err(RpcError::Connect {
                    addr,
                    reason: "the peer closed the connection during the cluster handshake".into(),
                    refused: true,
                })
            }
            Some(answer) => answer.map_err(lost)?,
        };
        let Some(message) = secure_channel::handshake_message(&answer) else {
            // A plain frame: the peer's reason for refusing us.
            return Err(match decode::<Response>(&answer) {
                Ok(Envelope {
                    body: Response::Error(reason),
                    ..
                }) => RpcError::Refused { addr, reason },
                Ok(_) => RpcError::Codec(
                    "the peer answered the cluster handshake with a response".into(),
                ),
                Err(unreadable) => unreadable.into_error(addr),
            });
        };
        let sealer = initiator.finish(message).map_err(|e| RpcError::Refused {
            addr,
            reason: match e {
                HandshakeError::WrongSecret => {
                    "it does not hold this cluster's secret (its handshake answer failed the check)"
                        .to_string()
                }
                other => other.to_string(),
            },
        })?;
        framed.codec_mut().seal_with(sealer);
        Ok(())
    }

    /// Run the connection over `stream`: callers write their requests
    /// themselves ([`Connection::request`]), and a reader task hands each
    /// response to its caller. When the reader stops (the peer closed, a
    /// frame was malformed) or a write fails, the stream is dropped (the
    /// socket closes) and every waiting caller gets `ConnectionLost` at
    /// once; dropping this `Connection` stops the reader too.
    fn start<S>(addr: SocketAddr, framed: Framed<S, ChannelCodec>) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (sink, mut frames) = framed.split();
        let shared = Arc::new(Shared::default());
        let writer = Arc::new(FrameWriter::new(sink));

        let reader_shared = shared.clone();
        let reader_writes = writer.clone();
        let reader = tokio::spawn(async move {
            let (reason, error) = async {
                loop {
                    let frame = match frames.next().await {
                        None => return ("the peer closed the connection".to_string(), None),
                        Some(Err(e)) => return (format!("reading a response failed: {e}"), None),
                        Some(Ok(frame)) => frame,
                    };
                    let envelope = match decode::<Response>(&frame) {
                        Ok(envelope) => envelope,
                        Err(unreadable) => {
                            let error = unreadable.into_error(addr);
                            return (error.to_string(), Some(error));
                        }
                    };
                    if let (REFUSAL_ID, Response::Error(reason)) = (envelope.id, &envelope.body) {
                        let error = RpcError::Refused {
                            addr,
                            reason: reason.clone(),
                        };
                        return (error.to_string(), Some(error));
                    }
                    let waiter = reader_shared.lock().waiters.remove(&envelope.id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Answer::Response(envelope.body));
                    }
                }
            }
            .await;
            tracing::debug!(%addr, "connection ended: {reason}");
            reader_shared.close(error);
            reader_writes.close();
        });
        let timer = tokio::spawn(shared.clone().tend(writer.clone()));
        Connection {
            addr,
            writer,
            shared,
            reader: reader.abort_handle(),
            timer: timer.abort_handle(),
        }
    }

    fn is_broken(&self) -> bool {
        self.shared.is_closed()
    }

    /// Send one encoded request and wait for its response until
    /// `deadline` (then [`RpcError::Timeout`] naming `timeout`).
    async fn request(
        &self,
        id: u64,
        frame: Bytes,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let Some(mut answer) = self.shared.register(id, deadline) else {
            return Err(self.shared.end_error(self.addr));
        };
        let _registration = Registration {
            shared: &self.shared,
            id,
            deadline,
        };
        // The deadline holds while the frame is still being written (a
        // full socket), not only once it is sent.
        let write = self.write(frame);
        tokio::pin!(write);
        let mut written = false;
        let answer = loop {
            tokio::select! {
                biased;
                answer = &mut answer => break answer,
                outcome = &mut write, if !written => {
                    outcome?;
                    written = true;
                }
            }
        };
        match answer {
            Ok(Answer::Response(response)) => Ok(response),
            Ok(Answer::TimedOut) => Err(RpcError::Timeout {
                addr: self.addr,
                timeout,
            }),
            Err(_) => Err(self.shared.end_error(self.addr)),
        }
    }

    /// Write one frame; a write given up half-way is finished by the
    /// connection's own task ([`Shared::tend`]).
    async fn write(&self, frame: Bytes) -> Result<(), RpcError> {
        match self.writer.send(frame).await {
            Ok(()) => Ok(()),
            Err(WriteEnd::Ended) => {
                self.end();
                Err(self.shared.end_error(self.addr))
            }
            Err(WriteEnd::Failed(e)) => {
                tracing::debug!(addr = %self.addr, "connection ended: writing a request failed: {e}");
                self.end();
                Err(self.shared.end_error(self.addr))
            }
        }
    }

    /// End the connection: close the socket, stop the reader, wake every
    /// caller.
    fn end(&self) {
        self.writer.close();
        self.shared.close(None);
        self.reader.abort();
        self.timer.abort();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.timer.abort();
    }
}

/// A client for one peer: lazily connects, reuses the connection, and
/// reconnects after it breaks.
pub struct RpcClient {
    addr: SocketAddr,
    secret: Option<ClusterSecret>,
    /// The connection calls use, if one has been made. Looked up on every
    /// call under a plain mutex; only making a connection takes `connecting`.
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while a connection is being made, so that callers arriving
    /// meanwhile wait for it rather than each dialling their own.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

impl RpcClient {
    /// A client of plain connections (a cluster without a secret).
    pub fn new(addr: SocketAddr) -> Self {
        Self::secured(addr, None)
    }

    /// A client whose connections prove `secret` when one is given.
    pub fn secured(addr: SocketAddr, secret: Option<ClusterSecret>) -> Self {
        Self {
            addr,
            secret,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection to the peer was lost (closed, reset, failed)
    /// and no other has been made since: the peer may be down.
    pub fn lost_connection(&self) -> bool {
        if self.connecting.try_lock().is_err() {
            // Someone is connecting right now: that call will tell.
            return false;
        }
        self.current().is_some_and(|conn| conn.is_broken())
    }

    fn current(&self) -> Option<Arc<Connection>> {
        self.connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The connection in use, unless there is none or it broke.
    fn open_connection(&self) -> Option<Arc<Connection>> {
        self.current().filter(|conn| !conn.is_broken())
    }

    /// Make a connection now unless one is open (nothing is sent).
    pub async fn connect(&self, timeout: Duration) -> Result<(), RpcError> {
        self.connection(timeout).await.map(|_| ())
    }

    async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>, RpcError> {
        if let Some(conn) = self.open_connection() {
            return Ok(conn);
        }
        // Boxed: dialling holds far more state (the connect, the handshake)
        // than a call on an open connection, and every call's future would
        // otherwise carry room for it: a gather moves one per replica.
        Box::pin(self.dial(timeout)).await
    }

    /// Open a connection, unless a caller we waited for just did.
    async fn dial(&self, timeout: Duration) -> Result<Arc<Connection>, RpcError> {
        let _connecting = self.connecting.lock().await;
        // Made by the caller we waited for?
        if let Some(conn) = self.open_connection() {
            return Ok(conn);
        }
        // A broken connection is dropped now, not when the next one is made
        // (which may take the whole timeout, or fail).
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let conn = Arc::new(Connection::open(self.addr, timeout, self.secret.as_ref()).await?);
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Send one request and wait for its response, all within `timeout`.
    ///
    /// A request that encodes to more than [`MAX_FRAME_BYTES`] fails with
    /// [`RpcError::TooLarge`] before anything is sent (or any connection
    /// opened).
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(id, encode(id, request)?, timeout).await
    }

    /// [`RpcClient::call`] with a request encoded once for several peers.
    pub async fn call_encoded(
        &self,
        request: &EncodedRequest,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(id, request.frame(id)?, timeout).await
    }

    /// Send call `id`'s frame and wait for its answer.
    async fn send(&self, id: u64, frame: Bytes, timeout: Duration) -> Result<Response, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        if frame.len() > MAX_FRAME_BYTES {
            return Err(RpcError::TooLarge {
                bytes: frame.len(),
                limit: MAX_FRAME_BYTES,
            });
        }
        let conn = self.connection(timeout).await?;
        conn.request(id, frame, deadline, timeout).await
    }
}

/// Failures a loopback socket cannot produce on demand (a writer that fails
/// while the reader still works), injected under a real stream.
#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::io;
    use std::pin::Pin;
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncReadExt, ReadBuf};
    use tokio_util::codec::Encoder;

    /// A real stream whose writes fail once `fail` is set, and wait (a
    /// full socket) while `stalled` is; reads are untouched.
    #[derive(Default)]
    struct Writes {
        fail: Arc<AtomicBool>,
        stalled: Arc<AtomicBool>,
        waiting: Arc<Mutex<Option<std::task::Waker>>>,
    }

    struct FaultyWrites<S> {
        inner: S,
        writes: Writes,
    }

    impl<S> FaultyWrites<S> {
        /// Fails, or stalls (and then wakes `cx` when unstalled), or lets
        /// the write through (`None`).
        fn interferes(&self, cx: &mut Context<'_>) -> Option<Poll<io::Error>> {
            if self.writes.fail.load(Ordering::SeqCst) {
                return Some(Poll::Ready(io::Error::other("injected write failure")));
            }
            if self.writes.stalled.load(Ordering::SeqCst) {
                *self.writes.waiting.lock().unwrap() = Some(cx.waker().clone());
                return Some(Poll::Pending);
            }
            None
        }
    }

    impl<S: AsyncRead + Unpin> AsyncRead for FaultyWrites<S> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for FaultyWrites<S> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            match this.interferes(cx) {
                Some(interference) => interference.map(Err),
                None => Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            match this.interferes(cx) {
                Some(interference) => interference.map(Err),
                None => Pin::new(&mut this.inner).poll_flush(cx),
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    /// Counts the requests it is sent; answers each at once.
    #[derive(Default)]
    struct Counting(AtomicU64);

    #[async_trait]
    impl Handler for Counting {
        async fn handle(&self, _request: Request) -> Response {
            self.0.fetch_add(1, Ordering::SeqCst);
            Response::Pong { node: 2 }
        }
    }

    /// A caller whose deadline passes while its frame is still being
    /// written leaves the rest of the frame to the connection, which
    /// flushes it once the socket takes bytes again, with no other write
    /// to push it out; the connection carries on.
    #[tokio::test]
    async fn a_frame_whose_caller_gave_up_mid_write_is_still_sent_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counting = Arc::new(Counting::default());
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, counting.clone(), shutdown.clone()));
        let stalled = Arc::new(AtomicBool::new(true));
        let waiting = Arc::new(Mutex::new(None::<std::task::Waker>));
        let stream = FaultyWrites {
            inner: TcpStream::connect(addr).await.unwrap(),
            writes: Writes {
                stalled: stalled.clone(),
                waiting: waiting.clone(),
                ..Writes::default()
            },
        };
        let conn = Connection::start(addr, Framed::new(stream, codec()));
        let short = Duration::from_millis(100);
        let deadline = tokio::time::Instant::now() + short;
        let frame = encode(1, &Request::Ping).unwrap();
        assert_eq!(
            conn.request(1, frame, deadline, short).await,
            Err(RpcError::Timeout {
                addr,
                timeout: short
            })
        );
        assert_eq!(counting.0.load(Ordering::SeqCst), 0, "nothing got through");
        // while the rest of that frame waits on the full socket, other
        // calls still time out at their deadlines
        let deadline = tokio::time::Instant::now() + short;
        let frame = encode(3, &Request::Ping).unwrap();
        let waiting_call = tokio::time::timeout(PROMPTLY, conn.request(3, frame, deadline, short));
        assert_eq!(
            waiting_call.await,
            Ok(Err(RpcError::Timeout {
                addr,
                timeout: short
            })),
            "a deadline passed unnoticed while a flush waited"
        );
        // the socket takes bytes again; nobody writes
        stalled.store(false, Ordering::SeqCst);
        if let Some(waker) = waiting.lock().unwrap().take() {
            waker.wake();
        }
        let started = tokio::time::Instant::now();
        while counting.0.load(Ordering::SeqCst) == 0 {
            assert!(
                started.elapsed() < PROMPTLY,
                "the abandoned frame was never flushed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!conn.is_broken());
        // Whole frames only reached the server (half of one would have
        // garbled the next, and the server would have closed): the ping is
        // answered. The second timed-out call's frame got through too if
        // it had begun to be written before its deadline.
        assert_eq!(
            patiently(&conn, 2, encode(2, &Request::Ping).unwrap()).await,
            Ok(Response::Pong { node: 2 })
        );
        let received = counting.0.load(Ordering::SeqCst);
        assert!((2..=3).contains(&received), "{received} requests");
        shutdown.cancel();
    }

    /// Answers every request after a short wait, so requests are still
    /// being handled when their peer stops sending.
    struct Unhurried;

    #[async_trait]
    impl Handler for Unhurried {
        async fn handle(&self, _request: Request) -> Response {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Response::Pong { node: 3 }
        }
    }

    /// A peer that shuts its sending half down after its requests (as
    /// `nc -N` does) still gets an answer to every one of them before the
    /// connection ends.
    #[tokio::test]
    async fn a_peer_that_stops_sending_still_gets_every_answer() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::new(Unhurried), shutdown.clone()));
        let mut framed = Framed::new(TcpStream::connect(addr).await.unwrap(), codec());
        for id in 1..=3 {
            framed
                .send(encode(id, &Request::Ping).unwrap())
                .await
                .unwrap();
        }
        framed.get_mut().shutdown().await.unwrap();
        let mut answered = Vec::new();
        while let Some(frame) = tokio::time::timeout(PATIENT, framed.next())
            .await
            .expect("the connection ends once every answer is sent")
        {
            let (id, response) = decode_response_frame(&frame.unwrap()).unwrap();
            assert_eq!(response, Response::Pong { node: 3 });
            answered.push(id);
        }
        answered.sort_unstable();
        assert_eq!(answered, [1, 2, 3], "requests left unanswered");
        shutdown.cancel();
    }

    /// Answers `Fetch "slow"` never, everything else at once.
    struct SlowAndPing;

    #[async_trait]
    impl Handler for SlowAndPing {
        async fn handle(&self, request: Request) -> Response {
            match request {
                Request::Fetch { key } if key == "slow" => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                _ => Response::Pong { node: 1 },
            }
        }
    }

    const PATIENT: Duration = Duration::from_secs(10);
    const PROMPTLY: Duration = Duration::from_secs(3);

    fn limits(requests: usize, bytes: usize) -> ServerLimits {
        ServerLimits {
            max_in_flight_per_connection: requests,
            max_in_flight_bytes_per_connection: bytes,
            ..ServerLimits::default()
        }
    }

    /// Whether `take` is still waiting after the other tasks had their turn.
    async fn waits<F: std::future::Future>(take: &mut std::pin::Pin<Box<F>>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), take.as_mut())
            .await
            .is_err()
    }

    /// A share of `in_flight`, given back when dropped (as a request's
    /// `Share` does).
    struct Hold<'a>(&'a InFlight, usize);

    impl Drop for Hold<'_> {
        fn drop(&mut self) {
            self.0.release(self.1);
        }
    }

    async fn hold(in_flight: &InFlight, frame_bytes: usize) -> Hold<'_> {
        Hold(in_flight, in_flight.take(frame_bytes).await)
    }

    #[tokio::test]
    async fn a_connection_at_its_request_limit_takes_the_next_only_when_one_ends() {
        let in_flight = InFlight::new(&limits(2, 1 << 20));
        let first = hold(&in_flight, 10).await;
        let second = hold(&in_flight, 10).await;
        let mut third = Box::pin(hold(&in_flight, 10));
        assert!(waits(&mut third).await, "a third request past a limit of 2");
        drop(first);
        let third = tokio::time::timeout(PATIENT, third)
            .await
            .expect("a released share lets the waiting request in");
        let mut drained = Box::pin(in_flight.drained());
        assert!(waits(&mut drained).await, "drained with two requests held");
        drop(third);
        drop(second);
        tokio::time::timeout(PATIENT, drained)
            .await
            .expect("drained once every share is back");
    }

    #[tokio::test]
    async fn a_connection_at_its_byte_limit_waits_and_a_larger_frame_runs_alone() {
        let in_flight = InFlight::new(&limits(100, 1000));
        let big = hold(&in_flight, 700).await;
        let mut more = Box::pin(hold(&in_flight, 400));
        assert!(
            waits(&mut more).await,
            "700 + 400 bytes past a limit of 1000"
        );
        let small = tokio::time::timeout(PATIENT, hold(&in_flight, 300))
            .await
            .expect("700 + 300 bytes fit a limit of 1000");
        drop(small);
        drop(big);
        let more = tokio::time::timeout(PATIENT, more).await.expect("fits now");
        // over the limit on its own: counted as the whole limit, so it waits
        // for everything else and then runs alone
        let mut huge = Box::pin(hold(&in_flight, 5000));
        assert!(waits(&mut huge).await, "a frame over the limit runs alone");
        drop(more);
        let huge = tokio::time::timeout(PATIENT, huge)
            .await
            .expect("alone now");
        let mut next = Box::pin(hold(&in_flight, 1));
        assert!(waits(&mut next).await, "nothing runs beside the huge frame");
        drop(huge);
        tokio::time::timeout(PATIENT, next).await.expect("after it");
    }

    /// A request with a deadline of [`PATIENT`] from now.
    async fn patiently(conn: &Connection, id: u64, frame: Bytes) -> Result<Response, RpcError> {
        let deadline = tokio::time::Instant::now() + PATIENT;
        conn.request(id, frame, deadline, PATIENT).await
    }

    /// Calls on one connection time out each at its own deadline, whatever
    /// the others do: the connection's one timer moves to an earlier
    /// deadline when a call brings one, and a call answered in time is not
    /// touched by a later one's timeout.
    #[tokio::test]
    async fn each_call_times_out_at_its_own_deadline_on_a_shared_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::new(SlowAndPing), shutdown.clone()));
        let rpc = Arc::new(RpcClient::new(addr));
        let slow = Request::Fetch { key: "slow".into() };
        // a long deadline first, then a shorter one on the same connection
        let long_rpc = rpc.clone();
        let long_slow = slow.clone();
        let long = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let outcome = long_rpc.call(&long_slow, Duration::from_millis(900)).await;
            (outcome, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = tokio::time::Instant::now();
        let short = rpc.call(&slow, Duration::from_millis(200)).await;
        let waited = started.elapsed();
        assert_eq!(
            short,
            Err(RpcError::Timeout {
                addr,
                timeout: Duration::from_millis(200)
            })
        );
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_millis(850), "{waited:?}");
        // the connection still serves, and the long call is still waiting
        assert_eq!(
            rpc.call(&Request::Ping, PATIENT).await,
            Ok(Response::Pong { node: 1 })
        );
        assert!(!long.is_finished());
        let (outcome, waited) = long.await.unwrap();
        assert_eq!(
            outcome,
            Err(RpcError::Timeout {
                addr,
                timeout: Duration::from_millis(900)
            })
        );
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert!(
            !rpc.lost_connection(),
            "a timeout must not end the connection"
        );
        shutdown.cancel();
    }

    #[test]
    fn a_request_encoded_once_frames_each_call_as_encoding_it_would() {
        use crate::version::{Actor, Dot, Siblings, Version, VersionVector};
        let version = |node: u32, counter: u64, value: &str| Version {
            dot: Dot::new(Actor::new(node, 1), counter),
            context: VersionVector::from_entries([(Actor::new(3, 0), 300)]),
            value: value.to_string(),
            timestamp_ms: 1_700_000_000_000,
        };
        let siblings =
            Siblings::from_versions([version(1, 2, "a"), version(2, 9, &"v".repeat(300))])
                .expect("distinct dots make a sibling set");
        let requests = [
            Request::Apply {
                key: "k".repeat(200),
                siblings,
            },
            Request::Fetch { key: "key".into() },
            Request::Ping,
        ];
        // Ids whose varints take 1, 2, 3, 5 and 10 bytes.
        let ids = [1, 127, 128, 16_384, u64::from(u32::MAX), u64::MAX];
        for request in requests {
            let encoded = EncodedRequest::new(request.clone());
            assert_eq!(encoded.request(), &request);
            for id in ids {
                let frame = encoded.frame(id).expect("encodable");
                assert_eq!(
                    frame,
                    encode(id, &request).expect("encodable"),
                    "{request:?}, id {id}"
                );
                let (read_id, read) = decode_request_frame(&frame).expect("a valid frame");
                assert_eq!((read_id, &read), (id, &request));
            }
        }
    }

    #[test]
    fn a_response_up_to_the_frame_limit_passes_and_one_byte_more_is_replaced() {
        // The message whose frame is exactly the limit (its length prefix is
        // a varint, so the overhead depends on the length).
        let mut len = MAX_FRAME_BYTES;
        let fits = loop {
            let message = Response::Error("x".repeat(len));
            let size = encode(7, &message).unwrap().len();
            if size == MAX_FRAME_BYTES {
                break message;
            }
            len -= size - MAX_FRAME_BYTES;
        };
        let frame = response_frame(7, &"Fetch \"k\"", &fits).unwrap();
        assert_eq!(frame.len(), MAX_FRAME_BYTES);
        // the codec on the wire agrees: a frame of exactly the limit is sent
        let mut wire = bytes::BytesMut::new();
        codec().encode(frame, &mut wire).unwrap();

        let too_big = Response::Error("x".repeat(len + 1));
        let raw = encode(7, &too_big).unwrap();
        assert!(
            codec().encode(raw, &mut bytes::BytesMut::new()).is_err(),
            "the codec must refuse what the check lets through, or the check is wrong"
        );
        let frame = response_frame(7, &"Fetch \"k\"", &too_big).unwrap();
        let envelope: Envelope<Response> = decode(&frame).unwrap();
        assert_eq!(envelope.id, 7);
        assert_eq!(
            envelope.body,
            Response::Error(format!(
                "response to request 7 (Fetch \"k\") is {} bytes; the RPC frame limit is {MAX_FRAME_BYTES}",
                MAX_FRAME_BYTES + 1
            ))
        );
    }

    #[test]
    fn requests_are_described_by_kind_and_the_start_of_the_key() {
        assert_eq!(describe(&Request::Ping).to_string(), "Ping");
        assert_eq!(
            describe(&Request::Fetch { key: "k".into() }).to_string(),
            "Fetch \"k\""
        );
        let long = describe(&Request::Fetch {
            key: "é".repeat(10_000),
        })
        .to_string();
        assert_eq!(
            long,
            format!("Fetch \"{}…\"", "é".repeat(KEY_IN_MESSAGES)),
            "{long}"
        );
        let exact = describe(&Request::Fetch {
            key: "y".repeat(KEY_IN_MESSAGES),
        })
        .to_string();
        assert_eq!(exact, format!("Fetch \"{}\"", "y".repeat(KEY_IN_MESSAGES)));
    }

    #[tokio::test]
    async fn a_server_whose_writer_fails_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fail = Arc::new(AtomicBool::new(false));
        let server_fail = fail.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let stream = FaultyWrites {
                inner: stream,
                writes: Writes {
                    fail: server_fail,
                    ..Writes::default()
                },
            };
            serve_connection(stream, Arc::new(SlowAndPing), ServerLimits::default(), None).await
        });
        let rpc = Arc::new(RpcClient::new(addr));
        assert_eq!(
            rpc.call(&Request::Ping, PATIENT).await,
            Ok(Response::Pong { node: 1 })
        );
        // a call left waiting on the server when its writer fails
        let slow_rpc = rpc.clone();
        let slow = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let outcome = slow_rpc
                .call(&Request::Fetch { key: "slow".into() }, PATIENT)
                .await;
            (outcome, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        fail.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let ping = rpc.call(&Request::Ping, PATIENT).await;
        assert_eq!(ping, Err(RpcError::ConnectionLost { addr }));
        assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
        let (slow, waited) = slow.await.unwrap();
        assert_eq!(slow, Err(RpcError::ConnectionLost { addr }));
        assert!(waited < PROMPTLY, "{waited:?}");
        let ended = tokio::time::timeout(PROMPTLY, server).await;
        let error = ended
            .expect("the connection lingered")
            .unwrap()
            .unwrap_err();
        let ConnectionEnd::Failed(error) = error else {
            panic!("expected a failed connection, got {error:?}");
        };
        assert!(error.contains("injected write failure"), "{error}");
    }

    #[tokio::test]
    async fn a_client_whose_writer_fails_wakes_every_caller_and_closes_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // a peer that reads everything and never answers
        let peer = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut sink = Vec::new();
            stream.read_to_end(&mut sink).await.map(|_| sink.len())
        });
        let fail = Arc::new(AtomicBool::new(false));
        let stream = TcpStream::connect(addr).await.unwrap();
        let conn = Arc::new(Connection::start(
            addr,
            Framed::new(
                FaultyWrites {
                    inner: stream,
                    writes: Writes {
                        fail: fail.clone(),
                        ..Writes::default()
                    },
                },
                codec(),
            ),
        ));
        let mut waiting = Vec::new();
        for id in 1..=3 {
            let conn = conn.clone();
            let frame = encode(id, &Request::Ping).unwrap();
            waiting.push(tokio::spawn(
                async move { patiently(&conn, id, frame).await },
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.is_broken());
        fail.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let last = patiently(&conn, 4, encode(4, &Request::Ping).unwrap()).await;
        assert_eq!(last, Err(RpcError::ConnectionLost { addr }));
        for caller in waiting {
            assert_eq!(
                caller.await.unwrap(),
                Err(RpcError::ConnectionLost { addr })
            );
        }
        assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
        assert!(conn.is_broken());
        assert!(conn.shared.lock().waiters.is_empty());
        // the socket is closed, not left half open: the peer sees its end
        let read = tokio::time::timeout(PROMPTLY, peer).await;
        assert!(
            read.expect("the socket stayed open").unwrap().is_ok(),
            "the peer's read failed instead of ending"
        );
        // a closed connection refuses new callers at once
        assert_eq!(
            patiently(&conn, 5, encode(5, &Request::Ping).unwrap()).await,
            Err(RpcError::ConnectionLost { addr })
        );
    }
}
