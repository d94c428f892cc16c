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
//! so a coordinator keeps one connection per peer and reuses it. A broken
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
use tokio::sync::{mpsc, oneshot};
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
/// Requests queued on one connection before callers wait.
const OUTBOUND_QUEUE: usize = 1024;
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

/// A task that is aborted when this handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve one connection until the peer closes it or it fails. When the
/// writer fails, the reader stops too and the stream is dropped (the socket
/// closes), so the peer's pending calls fail at once instead of a half-dead
/// connection swallowing them. When this future is dropped (shutdown), the
/// writer goes with it.
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

async fn serve_connection<S>(
    stream: S,
    handler: Arc<dyn Handler>,
    limits: ServerLimits,
    secret: Option<ClusterSecret>,
) -> Result<(), ConnectionEnd>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut framed = Framed::new(stream, codec());
    if let Some(secret) = secret {
        admit(&mut framed, &secret, limits.handshake_timeout).await?;
    }
    let mut first_frame = true;
    let (mut sink, mut frames) = framed.split();
    let (replies_tx, mut replies_rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        limits.max_in_flight_per_connection.max(1),
    ));
    // The byte budget in KiB units (a semaphore counts u32 permits).
    let budget_units = u32::try_from((limits.max_in_flight_bytes_per_connection / 1024).max(1))
        .unwrap_or(u32::MAX);
    let in_flight_bytes = Arc::new(tokio::sync::Semaphore::new(budget_units as usize));
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        while let Some(frame) = replies_rx.recv().await {
            sink.send(frame).await?;
        }
        Ok::<(), std::io::Error>(())
    }));
    let written = |outcome: Result<std::io::Result<()>, tokio::task::JoinError>| match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing a response failed: {e}")),
        Err(e) => Err(format!("the writer failed: {e}")),
    };
    let awaiting_since = Arc::new(Mutex::new(None));
    let mut idle = AbortOnDrop(tokio::spawn(idle_watch(
        awaiting_since.clone(),
        limits.idle_timeout,
    )));
    loop {
        set_awaiting(&awaiting_since, Some(tokio::time::Instant::now()));
        let frame = tokio::select! {
            // Fixed order, so no random choice reaches the simulation.
            biased;
            // We hold `replies_tx`, so the channel is open and the writer
            // can only have stopped on an error.
            outcome = &mut writer.0 => {
                written(outcome)?;
                return Err("the writer stopped".into());
            }
            _ = &mut idle.0 => {
                metrics::counter!("rpc_idle_closed_total").increment(1);
                return Err(format!(
                    "no complete frame for {:?} (--rpc-idle-timeout-ms)",
                    limits.idle_timeout
                )
                .into());
            }
            frame = frames.next() => frame,
        };
        set_awaiting(&awaiting_since, None);
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
            tell_and_close(replies_tx, &mut writer, message).await;
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
                tell_and_close(replies_tx, &mut writer, &message).await;
                return Err(ConnectionEnd::Incompatible(theirs));
            }
            Err(Unreadable::Malformed(reason)) => {
                return Err(format!("unreadable request: {reason}").into())
            }
        };
        // Past the in-flight limit, stop reading until a request finishes.
        let slot = match in_flight.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics::counter!("rpc_backpressure_total").increment(1);
                in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| format!("in-flight limit: {e}"))?
            }
        };
        let units = u32::try_from(frame.len().div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, budget_units);
        let bytes = match in_flight_bytes.clone().try_acquire_many_owned(units) {
            Ok(bytes) => bytes,
            Err(_) => {
                metrics::counter!("rpc_backpressure_total").increment(1);
                in_flight_bytes
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .map_err(|e| format!("in-flight bytes limit: {e}"))?
            }
        };
        let handler = handler.clone();
        let replies = replies_tx.clone();
        // Boxed once: the task layers below move a future by value on its
        // way into the task, and this one holds the whole request.
        tokio::spawn(Box::pin(async move {
            let _slot = slot;
            let _bytes = bytes;
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
                let _ = handler.handle(envelope.body.clone()).await;
            }
            let response = handler.handle(envelope.body).await;
            if misbehaves(FaultPoint::DropReply) {
                return;
            }
            if misbehaves(FaultPoint::DelayReply) {
                tokio::time::sleep(buggify::delay_up_to(REORDER_DELAY)).await;
            }
            if let Some(frame) = response_frame(envelope.id, &request, &response) {
                let _ = replies.send(frame).await;
            }
        }));
    }
    // The peer is done sending: answer what is still being handled.
    drop(replies_tx);
    written((&mut writer.0).await).map_err(ConnectionEnd::Failed)
}

/// Since when a connection has been waiting for its next frame (None:
/// it is handling one, or held back by its in-flight limits).
type AwaitingSince = Arc<Mutex<Option<tokio::time::Instant>>>;

fn set_awaiting(awaiting: &AwaitingSince, since: Option<tokio::time::Instant>) {
    *awaiting_guard(awaiting) = since;
}

fn awaiting_guard(
    awaiting: &AwaitingSince,
) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
    awaiting
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Returns once the connection has waited `idle` for a frame.
///
/// A task of its own, with one timer per idle period, rather than a
/// timeout around every read: a timer per frame, each outliving its frame
/// by the whole idle period, was a sixth of the simulator's timers and
/// kept its timer heap thousands deep (madsim cannot cancel a timer).
async fn idle_watch(awaiting: AwaitingSince, idle: Duration) {
    let now = tokio::time::Instant::now;
    let mut check_at = now().checked_add(idle);
    // No instant that far ahead: never idle.
    while let Some(at) = check_at {
        tokio::time::sleep_until(at).await;
        let since = *awaiting_guard(&awaiting);
        check_at = match since {
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
/// connection ends; then let the writer send what it holds and stop.
async fn tell_and_close(
    replies: mpsc::Sender<Bytes>,
    writer: &mut AbortOnDrop<std::io::Result<()>>,
    message: &str,
) {
    if let Ok(refusal) = encode(REFUSAL_ID, &Response::Error(message.to_string())) {
        let _ = replies.send(refusal).await;
    }
    drop(replies);
    let _ = (&mut writer.0).await;
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
    waiters: BTreeMap<u64, oneshot::Sender<Response>>,
    /// Set once, when the connection ends; no caller registers after that.
    closed: bool,
    /// Why it ended, when that is more than a lost connection (the peer
    /// speaks another protocol): what its callers are told.
    end_error: Option<RpcError>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
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
            std::mem::take(&mut pending.waiters)
        };
        drop(waiters);
    }

    /// What a caller of the ended connection is told.
    fn end_error(&self, addr: SocketAddr) -> RpcError {
        self.lock()
            .end_error
            .clone()
            .unwrap_or(RpcError::ConnectionLost { addr })
    }
}

/// Removes a caller's entry when its call ends, however it ends (answer,
/// timeout, or the caller dropping the call), so entries never pile up.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiters.remove(&self.id);
    }
}

struct Connection {
    addr: SocketAddr,
    outbound: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
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
        let mut framed = Framed::new(stream, codec());
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

    /// Run the connection over `stream`: a writer task sending the queued
    /// requests and a reader task handing each response to its caller.
    /// When either stops (the peer closed, a frame was malformed, a write
    /// failed, or this `Connection` was dropped), the other stops with it,
    /// the stream is dropped (the socket closes), and every waiting caller
    /// gets `ConnectionLost` at once.
    fn start<S>(addr: SocketAddr, framed: Framed<S, ChannelCodec>) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut sink, mut frames) = framed.split();
        let shared = Arc::new(Shared::default());
        let (outbound, mut outbound_rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
        // Each task stops the other when it ends: the reader's handle for
        // the writer, the writer's for the reader (an abort, not a signal
        // each of them would poll on every wake-up).
        let stop_reader = Arc::new(std::sync::OnceLock::<tokio::task::AbortHandle>::new());
        let stop_writer = Arc::new(std::sync::OnceLock::<tokio::task::AbortHandle>::new());

        let writer_shared = shared.clone();
        let writer_stops = stop_reader.clone();
        let writer = tokio::spawn(async move {
            let reason = async {
                while let Some(frame) = outbound_rx.recv().await {
                    if let Err(e) = sink.send(frame).await {
                        return format!("writing a request failed: {e}");
                    }
                }
                "the connection is no longer used".to_string()
            }
            .await;
            tracing::debug!(%addr, "connection ended: {reason}");
            writer_shared.close(None);
            if let Some(reader) = writer_stops.get() {
                reader.abort();
            }
        });

        let reader_shared = shared.clone();
        let reader_stops = stop_writer.clone();
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
                        let _ = waiter.send(envelope.body);
                    }
                }
            }
            .await;
            tracing::debug!(%addr, "connection ended: {reason}");
            reader_shared.close(error);
            if let Some(writer) = reader_stops.get() {
                writer.abort();
            }
        });
        let _ = stop_reader.set(reader.abort_handle());
        let _ = stop_writer.set(writer.abort_handle());
        // One may have ended before the other's handle was there to stop.
        if writer.is_finished() {
            reader.abort();
        }
        if reader.is_finished() {
            writer.abort();
        }
        Connection {
            addr,
            outbound,
            shared,
        }
    }

    fn is_broken(&self) -> bool {
        self.shared.is_closed()
    }

    /// Send one encoded request and wait for its response (no deadline:
    /// the caller bounds it).
    async fn request(&self, id: u64, frame: Bytes) -> Result<Response, RpcError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.lock();
            if pending.closed {
                drop(pending);
                return Err(self.shared.end_error(self.addr));
            }
            pending.waiters.insert(id, tx);
        }
        let _registration = Registration {
            shared: &self.shared,
            id,
        };
        if self.outbound.send(frame).await.is_err() {
            return Err(self.shared.end_error(self.addr));
        }
        rx.await.map_err(|_| self.shared.end_error(self.addr))
    }
}

/// A client for one peer: lazily connects, reuses the connection, and
/// reconnects after it breaks.
pub struct RpcClient {
    addr: SocketAddr,
    secret: Option<ClusterSecret>,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
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
            connection: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection to the peer was lost (closed, reset, failed)
    /// and no other has been made since: the peer may be down.
    pub fn lost_connection(&self) -> bool {
        match self.connection.try_lock() {
            Ok(slot) => slot.as_ref().is_some_and(|conn| conn.is_broken()),
            // Someone is connecting right now: that call will tell.
            Err(_) => false,
        }
    }

    /// Make a connection now unless one is open (nothing is sent).
    pub async fn connect(&self, timeout: Duration) -> Result<(), RpcError> {
        self.connection(timeout).await.map(|_| ())
    }

    async fn connection(&self, timeout: Duration) -> Result<Arc<Connection>, RpcError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.is_broken() {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let conn = Arc::new(Connection::open(self.addr, timeout, self.secret.as_ref()).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Send one request and wait for its response, all within `timeout`.
    ///
    /// A request that encodes to more than [`MAX_FRAME_BYTES`] fails with
    /// [`RpcError::TooLarge`] before anything is sent (or any connection
    /// opened).
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, request)?;
        if frame.len() > MAX_FRAME_BYTES {
            return Err(RpcError::TooLarge {
                bytes: frame.len(),
                limit: MAX_FRAME_BYTES,
            });
        }
        let conn = self.connection(timeout).await?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(remaining, conn.request(id, frame)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RpcError::Timeout {
                addr: self.addr,
                timeout,
            }),
        }
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

    /// A stream whose writes fail once `fail` is set; reads are untouched.
    struct FaultyWrites<S> {
        inner: S,
        fail: Arc<AtomicBool>,
    }

    impl<S> FaultyWrites<S> {
        fn failed(&self) -> io::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                Err(io::Error::other("injected write failure"))
            } else {
                Ok(())
            }
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
            this.failed()?;
            Pin::new(&mut this.inner).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.failed()?;
            Pin::new(&mut this.inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
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
                fail: server_fail,
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
                    fail: fail.clone(),
                },
                codec(),
            ),
        ));
        let mut waiting = Vec::new();
        for id in 1..=3 {
            let conn = conn.clone();
            let frame = encode(id, &Request::Ping).unwrap();
            waiting.push(tokio::spawn(async move {
                tokio::time::timeout(PATIENT, conn.request(id, frame)).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!conn.is_broken());
        fail.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let last =
            tokio::time::timeout(PATIENT, conn.request(4, encode(4, &Request::Ping).unwrap()))
                .await;
        assert_eq!(last, Ok(Err(RpcError::ConnectionLost { addr })));
        for caller in waiting {
            assert_eq!(
                caller.await.unwrap(),
                Ok(Err(RpcError::ConnectionLost { addr }))
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
            conn.request(5, encode(5, &Request::Ping).unwrap()).await,
            Err(RpcError::ConnectionLost { addr })
        );
    }
}
