//! `quorumd gateway`: the public REST API (see DESIGN.md). It is a client of
//! the coordinators: each request goes to one coordinator, preferring those
//! the last health poll reached, and fails over to the next only when
//! nothing was sent (unreachable, or `Unavailable`). A request that was
//! sent and not answered is reported as 504 and never retried.
//!
//! `/api/logs/health` counts a node as up only when it answered the health
//! probe *and* no coordinator has its breaker open: a coordinator refuses
//! (503) any level that needs a replica it believes down, so a level is
//! shown available only when every coordinator could serve it.
//!
//! With an API token every request but `GET /api/openapi.json` must carry
//! `Authorization: Bearer <token>` (401 otherwise); with a certificate the
//! API is served over HTTPS only.
use crate::telemetry;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use quorumlog_core::context::MAX_TOKEN_LEN;
use quorumlog_core::input::{self, InputError, MAX_VALUE_LEN};
use quorumlog_core::protocol::{BreakerState, HealthReport};
use quorumlog_core::rpc::RpcError;
use quorumlog_core::secure_channel::ClusterSecret;
use quorumlog_core::{
    Client, ClientError, Consistency, Dot, NodeId, OpError, ReadOk, ReadRequest, Refusal, Version,
    WriteOk, WriteRequest,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest request body: a maximal value, JSON-escaped, plus a context.
pub const MAX_BODY_BYTES: usize = 4 * MAX_VALUE_LEN;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// Per-attempt bound on a coordinator call; above the coordinators'
    /// replica timeout so their own `Timeout` answer arrives first.
    pub timeout: Duration,
    pub health_interval: Duration,
    /// Level used when a request names none.
    pub default_level: Consistency,
    /// Bounds on HTTP connections.
    pub http_limits: crate::http_server::HttpLimits,
    /// What the gateway's connections to the coordinators prove.
    pub cluster_secret: Option<ClusterSecret>,
    /// The bearer token every request must carry (`None`: open API).
    pub api_token: Option<ApiToken>,
    /// Serve HTTPS with this identity (`None`: plain HTTP).
    pub tls: Option<Tls>,
}

/// The gateway's HTTPS identity (its `Debug` form says only that it has one).
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(…)")
    }
}

/// A bearer token for the HTTP API. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(Arc<str>);

impl ApiToken {
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 4096;

    /// Whether `candidate` is this token, in time that does not depend on
    /// where they differ.
    fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_bytes().ct_eq(candidate))
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

impl std::str::FromStr for ApiToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let len = text.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(format!(
                "the API token is {len} characters; it must be {} to {} (e.g. `openssl rand -hex 32`)",
                Self::MIN_LEN,
                Self::MAX_LEN
            ));
        }
        if let Some(bad) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "the API token holds {bad:?}; it may hold only visible ASCII characters, no spaces"
            ));
        }
        Ok(ApiToken(text.into()))
    }
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, nodes: Vec<(NodeId, SocketAddr)>) -> Self {
        Self {
            listen,
            nodes,
            timeout: Duration::from_secs(2),
            health_interval: Duration::from_millis(500),
            default_level: Consistency::Quorum,
            http_limits: crate::http_server::HttpLimits::default(),
            cluster_secret: None,
            api_token: None,
            tls: None,
        }
    }
}

struct Coordinator {
    id: NodeId,
    addr: SocketAddr,
    /// For health polls: short, so a hung node does not stall the poll.
    probe: Client,
}

#[derive(Debug, Clone, Default)]
struct NodeView {
    /// It answered the last health probe (or, before the first poll, is
    /// presumed to): what coordinator failover prefers.
    reachable: bool,
    report: Option<HealthReport>,
    error: Option<String>,
    /// It can serve: reachable, and no coordinator's breaker for it is
    /// open (see [`judge`]).
    up: bool,
    /// Coordinators that reported its breaker open.
    open_at: Vec<NodeId>,
}

struct Inner {
    coordinators: Vec<Coordinator>,
    /// Every coordinator, in the order of `coordinators`: requests go
    /// through its failover.
    client: Client,
    next: AtomicUsize,
    views: RwLock<Vec<NodeView>>,
    default_level: Consistency,
    writes_ok: AtomicU64,
    writes_failed: AtomicU64,
}

#[derive(Clone)]
pub struct Gateway(Arc<Inner>);

/// A failed request, rendered as `{"error": kind, "message": …, counts…}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    extra: Value,
}

/// Every (status, `error`) pair the gateway answers with: the error
/// table in docs/deployment.md lists exactly these (a test checks it),
/// and debug builds refuse to make any other.
pub const ERRORS: &[(u16, &str)] = &[
    (400, "bad_request"),
    (401, "unauthorized"),
    (404, "no_route"),
    (404, "not_found"),
    (405, "method_not_allowed"),
    (409, "key_limit"),
    (413, "bad_request"),
    (414, "uri_too_long"),
    (500, "replica_refused"),
    (500, "storage_error"),
    (502, "protocol_error"),
    (503, "unavailable"),
    (504, "timeout"),
];

/// The OpenAPI document of this API (docs/openapi.json), served at
/// `GET /api/openapi.json`; tests keep it in step with the routes, the
/// answers and [`ERRORS`].
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Every path the gateway serves, as the OpenAPI document names them.
pub const ROUTES: &[&str] = &[
    "/api/logs",
    "/api/logs/{key}",
    "/api/logs/health",
    "/api/openapi.json",
    "/metrics",
];

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// Longest request target (path and query) the gateway reads, in bytes:
/// room for a key of the longest size percent-encoded, and a query.
pub const MAX_URI_BYTES: usize = 16 * 1024;

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            ERRORS.contains(&(status.as_u16(), kind)),
            "({status}, {kind}) is not in gateway::ERRORS and the documented error table"
        );
        Self {
            status,
            kind,
            message: message.into(),
            extra: json!({}),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn with(mut self, extra: Value) -> Self {
        self.extra = extra;
        self
    }

    /// Label for metrics.
    fn outcome(&self) -> &'static str {
        self.kind
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body this error is answered with.
    pub fn body(&self) -> Value {
        let mut body =
            json!({ "error": self.kind, "message": self.message, "status": self.status.as_u16() });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), self.extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        body
    }

    /// How a failed coordinator call is answered.
    pub fn from_client(error: ClientError, op: &str) -> Self {
        match error {
            ClientError::Op { coordinator, error } => match error {
                OpError::Unavailable { needed, alive, n } => Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{op} needs {needed} of {n} replicas but only {alive} are believed alive; nothing was sent"),
                )
                .with(json!({"needed": needed, "alive": alive, "n": n, "coordinator": coordinator})),
                OpError::Timeout { needed, answered, n, unreachable } => {
                    let maybe = if op == "write" { "; the write may still be applied" } else { "" };
                    let refused = if unreachable > 0 {
                        format!(" ({unreachable} refused the connection)")
                    } else {
                        String::new()
                    };
                    Self::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        format!("{op} needed {needed} of {n} replicas but only {answered} answered in time{refused}{maybe}"),
                    )
                    .with(json!({
                        "needed": needed, "acked": answered, "answered": answered, "n": n,
                        "unreachable": unreachable,
                        "coordinator": coordinator, "indeterminate": op == "write",
                    }))
                }
                OpError::Invalid(reason) => Self::bad_request(reason),
                // A commit that lost its connection may have committed: a
                // write that failed in the store may be stored.
                OpError::Storage(reason) => {
                    let maybe = if op == "write" { "; the write may still be applied" } else { "" };
                    Self::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "storage_error",
                        format!("storage failed on coordinator n{coordinator}: {reason}{maybe}"),
                    )
                    .with(json!({"coordinator": coordinator, "indeterminate": op == "write"}))
                }
                // The coordinator refused before storing anything.
                OpError::Refused(refusal) => {
                    let extra = refusal_details(&refusal, coordinator, false);
                    if refusal.is_key_limit() {
                        Self::new(StatusCode::CONFLICT, "key_limit", refusal.to_string())
                            .with(extra)
                    } else {
                        Self::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "replica_refused",
                            format!("coordinator n{coordinator} refused the {op}: {refusal}; nothing was stored"),
                        )
                        .with(extra)
                    }
                }
                // Stored by the coordinator (and maybe others), refused by
                // enough replicas that the level was not met.
                OpError::RefusedByReplicas { needed, acked, refused, n, reason } => {
                    let mut extra = refusal_details(&reason, coordinator, true);
                    if let Some(fields) = extra.as_object_mut() {
                        for (k, v) in [("needed", needed), ("acked", acked), ("refused", refused), ("n", n)] {
                            fields.insert(k.into(), json!(v));
                        }
                    }
                    let counts = format!(
                        "{acked} of {n} replicas stored the {op} ({needed} needed) and {refused} refused it; it may be on some replicas"
                    );
                    if reason.is_key_limit() {
                        Self::new(StatusCode::CONFLICT, "key_limit", format!("{reason} ({counts})"))
                            .with(extra)
                    } else {
                        // A replica holds one of these dots with other
                        // contents: corruption, not something the client can fix.
                        Self::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "replica_refused",
                            format!("replicas refused the {op}: {reason} ({counts})"),
                        )
                        .with(extra)
                    }
                }
            },
            ClientError::Indeterminate { coordinator, error } => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("no answer from coordinator n{coordinator} ({error}); the {op} may still be applied"),
            )
            .with(json!({"coordinator": coordinator, "indeterminate": true})),
            ClientError::NoCoordinator { tried, last } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("no coordinator reachable ({tried} tried; last error: {last}); nothing was sent"),
            )
            .with(json!({"alive": 0, "tried": tried})),
            // Cannot happen for a body within MAX_BODY_BYTES (a frame is far
            // larger), but answered as what it is: too large, nothing sent.
            ClientError::TooLarge(error) => {
                let limit = match &error {
                    RpcError::TooLarge { limit, .. } => json!(limit),
                    _ => Value::Null,
                };
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "bad_request",
                    format!("the {op} is too large to send to a coordinator: {error}"),
                )
                .with(json!({"limit": limit}))
            }
            ClientError::Protocol { coordinator, answer } => Self::new(
                StatusCode::BAD_GATEWAY,
                "protocol_error",
                format!("coordinator n{coordinator} sent an unexpected answer: {answer}"),
            )
            .with(json!({"coordinator": coordinator, "indeterminate": op == "write"})),
        }
    }
}

/// The machine-readable part of a refusal: which limit, and whether the
/// write may be stored somewhere (`indeterminate`).
fn refusal_details(refusal: &Refusal, coordinator: NodeId, stored: bool) -> Value {
    let mut details = match refusal {
        Refusal::TooManySiblings {
            key,
            siblings,
            limit,
        } => {
            json!({"reason": "too_many_siblings", "key": key, "siblings": siblings, "limit": limit})
        }
        Refusal::TooManyBytes { key, bytes, limit } => {
            json!({"reason": "too_many_bytes", "key": key, "bytes": bytes, "limit": limit})
        }
        Refusal::Version { key, .. } => json!({"reason": "version", "key": key}),
    };
    if let Some(fields) = details.as_object_mut() {
        fields.insert("coordinator".into(), json!(coordinator));
        fields.insert("indeterminate".into(), json!(stored));
    }
    details
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Query parameters are refused when unknown, as body fields are: a
/// misspelt `consistency` would otherwise read or write at the default
/// level, and a client would believe it had the guarantee it asked for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelQuery {
    consistency: Option<String>,
    /// `lww`: answer the newest sibling (by its timestamp) as `value`.
    resolve: Option<String>,
}

/// How a read with siblings picks its `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolve {
    /// `value` is null when there are siblings: the client resolves.
    None,
    /// Last writer wins: the sibling with the newest timestamp (ties by
    /// dot), all siblings and the context still returned.
    Lww,
}

fn parse_resolve(text: Option<&str>) -> Result<Resolve, ApiError> {
    match text {
        None => Ok(Resolve::None),
        Some(t) if t.eq_ignore_ascii_case("lww") => Ok(Resolve::Lww),
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown resolve {other:?}: use resolve=lww, or leave it out to get every sibling"
        ))
        .with(json!({"resolve": other}))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteQuery {
    consistency: Option<String>,
    /// Taken as text so that anything but `true`/`false` gets a 400 that
    /// names it, not a generic query error.
    overwrite: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    key: String,
    value: String,
    #[serde(default)]
    context: Option<String>,
    /// Taken as any JSON so that a non-boolean gets a 400 that names it.
    #[serde(default)]
    overwrite: Option<Value>,
}

/// Whether a write overwrites (supersedes every sibling the coordinator
/// holds), from `?overwrite=` and the body's `"overwrite"`: each may be
/// absent, `true` or `false`; both given must agree.
fn overwrite_of(query: Option<&str>, body: Option<&Value>) -> Result<bool, ApiError> {
    let from_query = match query {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "overwrite={other:?} is not a boolean: use overwrite=true or overwrite=false"
            ))
            .with(json!({"overwrite": other})))
        }
    };
    let from_body = match body {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "\"overwrite\": {other} is not a boolean: use true or false"
            ))
            .with(json!({"overwrite": other})))
        }
    };
    match (from_query, from_body) {
        (Some(q), Some(b)) if q != b => Err(ApiError::bad_request(format!(
            "overwrite={q} in the query string but \"overwrite\": {b} in the body: give one"
        ))),
        (q, b) => Ok(q.or(b).unwrap_or(false)),
    }
}

/// A version as the API shows it: the dot minted for the write.
fn version_json(dot: &Dot) -> Value {
    json!({"node": dot.node, "incarnation": dot.incarnation, "counter": dot.counter})
}

/// A sibling as the API shows it: value, dot, and the version vector of
/// what it superseded.
fn sibling_json(v: &Version) -> Value {
    json!({
        "value": v.value,
        "version": version_json(&v.dot),
        "covers": v.context,
        "timestamp_ms": v.timestamp_ms,
    })
}

impl Gateway {
    pub fn new(config: &GatewayConfig) -> Self {
        let coordinators = config
            .nodes
            .iter()
            .map(|&(id, addr)| Coordinator {
                id,
                addr,
                probe: Client::secured(
                    vec![(id, addr)],
                    Duration::from_millis(500).min(config.timeout),
                    config.cluster_secret,
                ),
            })
            .collect::<Vec<_>>();
        let views = vec![
            NodeView {
                reachable: true,
                up: true,
                ..NodeView::default()
            };
            coordinators.len()
        ];
        Gateway(Arc::new(Inner {
            client: Client::secured(config.nodes.clone(), config.timeout, config.cluster_secret),
            coordinators,
            next: AtomicUsize::new(0),
            views: RwLock::new(views),
            default_level: config.default_level,
            writes_ok: AtomicU64::new(0),
            writes_failed: AtomicU64::new(0),
        }))
    }

    /// The API; with `token`, every route but the OpenAPI document needs it.
    pub fn router(&self, token: Option<ApiToken>) -> anyhow::Result<Router> {
        let handle = telemetry::metrics()?;
        Ok(Router::new()
            .route("/api/logs", post(write))
            .route("/api/logs/health", get(health))
            .route("/api/logs/:key", get(read))
            .route("/api/openapi.json", get(openapi))
            .with_state(self.clone())
            .merge(telemetry::metrics_router(handle))
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn_with_state(token, require_token))
            .layer(axum::middleware::from_fn(limit_uri)))
    }

    /// The cluster's replication factor, as its coordinators report it
    /// (the largest any reported): a gateway may know only some of the
    /// nodes. Before the first health report, the number it knows.
    fn n(&self) -> usize {
        let views = self.0.views.read().unwrap_or_else(|p| p.into_inner());
        views
            .iter()
            .filter_map(|v| v.report.as_ref().map(|r| r.n))
            .max()
            .unwrap_or(self.0.coordinators.len())
    }

    fn parse_level(&self, consistency: Option<String>) -> Result<Consistency, ApiError> {
        match consistency {
            None => Ok(self.0.default_level),
            Some(text) => {
                let level: Consistency =
                    text.parse()
                        .map_err(|e: quorumlog_core::quorum::QuorumError| {
                            ApiError::bad_request(e.to_string()).with(json!({"consistency": text}))
                        })?;
                let n = self.n();
                level.validate(n, "consistency").map_err(|e| {
                    ApiError::bad_request(e.to_string()).with(json!({"consistency": text, "n": n}))
                })?;
                Ok(level)
            }
        }
    }

    /// Coordinators to try, starting round-robin, reachable ones first.
    fn order(&self) -> Vec<usize> {
        let count = self.0.coordinators.len();
        let start = self.0.next.fetch_add(1, Ordering::Relaxed);
        let views = self.0.views.read().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<usize> = (0..count).map(|i| (start + i) % count).collect();
        order.sort_by_key(|&i| !views.get(i).map(|v| v.reachable).unwrap_or(true));
        order
    }

    /// Write through the core client's failover (only a request that was
    /// certainly not sent moves on), in this gateway's order; coordinators
    /// it could not reach are marked so the next requests try them last.
    async fn write(&self, request: WriteRequest) -> Result<WriteOk, ClientError> {
        let mut unreachable = Vec::new();
        let result = self
            .0
            .client
            .write_in_order(request, &self.order(), &mut unreachable)
            .await;
        self.mark_unreachable(unreachable);
        result
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadOk, ClientError> {
        let mut unreachable = Vec::new();
        let result = self
            .0
            .client
            .read_in_order(request, &self.order(), &mut unreachable)
            .await;
        self.mark_unreachable(unreachable);
        result
    }

    fn mark_unreachable(&self, unreachable: Vec<(usize, String)>) {
        for (index, reason) in unreachable {
            self.mark(index, false, Some(reason));
        }
    }

    fn mark(&self, index: usize, reachable: bool, error: Option<String>) {
        let mut views = self.0.views.write().unwrap_or_else(|p| p.into_inner());
        if let Some(view) = views.get_mut(index) {
            view.reachable = reachable;
            view.error = error;
        }
    }

    /// Ask every coordinator for its health, update the views and gauges.
    async fn poll_health(&self) -> Vec<NodeView> {
        let polls = self.0.coordinators.iter().map(|c| c.probe.health(0));
        let results = futures::future::join_all(polls).await;
        let mut views = Vec::with_capacity(results.len());
        for (coordinator, result) in self.0.coordinators.iter().zip(results) {
            let node = coordinator.id.to_string();
            let view = match result {
                Ok(report) => {
                    for replica in &report.replicas {
                        let state = match replica.breaker {
                            BreakerState::Closed => 0.0,
                            BreakerState::HalfOpen => 1.0,
                            BreakerState::Open => 2.0,
                        };
                        let labels = [
                            ("observer", node.clone()),
                            ("node", replica.node.to_string()),
                        ];
                        metrics::gauge!("replica_breaker_state", &labels).set(state);
                        metrics::gauge!("replica_consecutive_failures", &labels)
                            .set(f64::from(replica.consecutive_failures));
                    }
                    NodeView {
                        reachable: true,
                        report: Some(report),
                        ..NodeView::default()
                    }
                }
                Err(e) => NodeView {
                    reachable: false,
                    error: Some(e.to_string()),
                    ..NodeView::default()
                },
            };
            views.push(view);
        }
        let ids: Vec<NodeId> = self.0.coordinators.iter().map(|c| c.id).collect();
        judge(&ids, &mut views);
        for (id, view) in ids.iter().zip(&views) {
            metrics::gauge!("replica_up", "node" => id.to_string()).set(if view.up {
                1.0
            } else {
                0.0
            });
        }
        let up = views.iter().filter(|v| v.up).count();
        metrics::gauge!("replicas_healthy").set(up as f64);
        metrics::gauge!("replicas_total").set(views.len() as f64);
        *self.0.views.write().unwrap_or_else(|p| p.into_inner()) = views.clone();
        views
    }

    fn count_write(&self, level: Consistency, ok: bool) {
        let level = level.to_string();
        if ok {
            self.0.writes_ok.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("quorum_write_success_total", "level" => level).increment(1);
        } else {
            self.0.writes_failed.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("quorum_write_failure_total", "level" => level).increment(1);
        }
        let ok = self.0.writes_ok.load(Ordering::Relaxed) as f64;
        let failed = self.0.writes_failed.load(Ordering::Relaxed) as f64;
        metrics::gauge!("quorum_write_success_rate").set(ok / (ok + failed).max(1.0));
    }
}

/// A method as a metric label: the standard ones by name, anything else
/// `other`, so no client can mint label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn observe(
    method: &Method,
    uri: &'static str,
    level: &str,
    outcome: &str,
    status: StatusCode,
    started: Instant,
) {
    metrics::histogram!(
        "http_server_requests_seconds",
        "method" => method_label(method),
        "uri" => uri,
        "level" => level.to_string(),
        "outcome" => outcome.to_string(),
        "status" => status.as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
}

fn level_label(level: &Result<Consistency, ApiError>) -> String {
    match level {
        Ok(level) => level.to_string(),
        Err(_) => "invalid".into(),
    }
}

/// The core's key and value rules (`quorumlog_core::input`), as a 400.
fn bad_input(e: InputError) -> ApiError {
    let error = ApiError::bad_request(e.to_string());
    match e.limit() {
        Some(limit) => error.with(json!({"limit": limit})),
        None => error,
    }
}

fn check_key(key: &str) -> Result<(), ApiError> {
    input::check_key(key).map_err(bad_input)
}

fn finish(
    result: Result<Value, ApiError>,
    method: Method,
    uri: &'static str,
    level: String,
    started: Instant,
) -> Response {
    match result {
        Ok(body) => {
            observe(&method, uri, &level, "ok", StatusCode::OK, started);
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => {
            observe(&method, uri, &level, e.outcome(), e.status, started);
            e.into_response()
        }
    }
}

/// The answer to a request refused before any route took it (no route,
/// wrong method, no token, too long a target), counted like every other.
fn refused_early(method: &Method, error: ApiError) -> Response {
    observe(
        method,
        "unknown",
        "none",
        error.outcome(),
        error.status,
        Instant::now(),
    );
    error.into_response()
}

/// 404 for a path no route serves, as JSON like every other error.
async fn no_route(method: Method, uri: axum::http::Uri) -> Response {
    let error = ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no route {method} {}: the API is POST /api/logs, GET /api/logs/{{key}}, GET /api/logs/health, GET /metrics",
            uri.path()
        ),
    );
    refused_early(&method, error)
}

/// 405 for a known path with another method.
async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    let allowed = match uri.path() {
        "/api/logs" => "POST",
        _ => "GET",
    };
    let error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; use {allowed}", uri.path()),
    )
    .with(json!({"allowed": allowed}));
    let mut response = refused_early(&method, error);
    response.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static(allowed),
    );
    response
}

/// How much of an unauthorized request's body the gateway reads before it
/// answers 401; past it the connection may be reset instead.
const UNAUTHORIZED_BODY_DRAIN: usize = 64 * 1024;

/// 401 for a request without the API token (when the gateway has one),
/// before any route reads it; the OpenAPI document stays public.
async fn require_token(
    State(token): State<Option<ApiToken>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/api/openapi.json" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    let problem = match presented {
        None => "this gateway needs `Authorization: Bearer <token>` on every request",
        Some(value) => match value.strip_prefix(b"Bearer ") {
            Some(candidate) if token.matches(candidate) => return next.run(request).await,
            Some(_) => "the bearer token is not this gateway's",
            None => "the Authorization header is not `Bearer <token>`",
        },
    };
    metrics::counter!("http_unauthorized_total").increment(1);
    let method = request.method().clone();
    // Read (and drop) a small body first: closing a connection with
    // unread bytes resets it, and the client may lose the 401 with it.
    let _ = axum::body::to_bytes(request.into_body(), UNAUTHORIZED_BODY_DRAIN).await;
    let error = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", problem);
    let mut response = refused_early(&method, error);
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"quorumlog\""),
    );
    response
}

/// 414 for a request target past [`MAX_URI_BYTES`], before any route
/// reads it. (A target past 64 KiB is refused by the HTTP parser itself,
/// with an empty 414, before the gateway sees a request.)
async fn limit_uri(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let len = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if len > MAX_URI_BYTES {
        let method = request.method().clone();
        let error = ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("request target is {len} bytes; the limit is {MAX_URI_BYTES}"),
        )
        .with(json!({"limit": MAX_URI_BYTES}));
        return refused_early(&method, error);
    }
    next.run(request).await
}

/// A key in the path that is not valid percent-encoded UTF-8.
fn bad_path(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad key in the path: {}", e.body_text()))
}

fn bad_query(e: QueryRejection) -> ApiError {
    // The rejection's text names the field and the problem (`unknown
    // field `consistncy`, expected `consistency` or `overwrite``); its
    // Display says only that deserializing failed.
    ApiError::bad_request(format!("bad query string: {}", e.body_text()))
}

async fn write(
    State(gw): State<Gateway>,
    query: Result<Query<WriteQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (level, overwrite) = match query {
        Ok(Query(query)) => (gw.parse_level(query.consistency), query.overwrite),
        Err(e) => (Err(bad_query(e)), None),
    };
    let label = level_label(&level);
    let result = async {
        let level = level?;
        let body = read_body(body).await?;
        let body: WriteBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "body must be JSON {{\"key\": string, \"value\": string, \"context\"?: string, \"overwrite\"?: boolean}}: {e}"
            ))
        })?;
        let overwrite = overwrite_of(overwrite.as_deref(), body.overwrite.as_ref())?;
        check_key(&body.key)?;
        input::check_value(&body.value).map_err(bad_input)?;
        if let Some(token) = body.context.as_deref() {
            if token.len() > MAX_TOKEN_LEN {
                return Err(ApiError::bad_request(format!(
                    "causal context is {} characters long; the limit is {MAX_TOKEN_LEN}",
                    token.len()
                ))
                .with(json!({"key": body.key, "limit": MAX_TOKEN_LEN})));
            }
        }
        let request = WriteRequest {
            key: body.key.clone(),
            value: body.value.clone(),
            // The coordinator checks the token (signature, key, bounds).
            context: body.context.clone().filter(|token| !token.is_empty()),
            level,
            overwrite,
        };
        let outcome = gw.write(request).await;
        gw.count_write(level, outcome.is_ok());
        let ok = outcome.map_err(|e| ApiError::from_client(e, "write"))?;
        Ok(json!({
            "key": body.key,
            // What the coordinator stored, not an echo of the request: a
            // client (and a recorded history's checker) can see that they
            // are the same.
            "value": ok.version.value,
            "version": version_json(&ok.version.dot),
            "covers": ok.version.context,
            "siblings": ok.siblings.iter().map(sibling_json).collect::<Vec<_>>(),
            "conflict": ok.siblings.len() > 1,
            "context": ok.token,
            "clock": ok.context,
            "consistency": level.to_string(),
            "overwrite": overwrite,
            "needed": ok.needed,
            "acked": ok.acked,
            "n": ok.n,
            "coordinator": ok.coordinator,
            "status": "ok",
        }))
    }
    .await;
    finish(result, Method::POST, "/api/logs", label, started)
}

/// Read the body up to [`MAX_BODY_BYTES`]. An oversized body is drained
/// (within bounds) before the 413 goes out, so the client reads the answer
/// instead of a reset connection.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut total = 0usize;
    let drain_until = std::time::Instant::now() + Duration::from_secs(5);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        total = total.saturating_add(chunk.len());
        if total <= MAX_BODY_BYTES {
            buffer.extend_from_slice(&chunk);
        } else if total > 8 * MAX_BODY_BYTES || std::time::Instant::now() > drain_until {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!("request body is over the limit of {MAX_BODY_BYTES} bytes"),
        )
        .with(json!({"limit": MAX_BODY_BYTES})));
    }
    Ok(Bytes::from(buffer))
}

async fn read(
    State(gw): State<Gateway>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<LevelQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let (level, resolve) = match query {
        Ok(Query(query)) => (
            gw.parse_level(query.consistency),
            parse_resolve(query.resolve.as_deref()),
        ),
        Err(e) => (Err(bad_query(e)), Ok(Resolve::None)),
    };
    let label = level_label(&level);
    let result = async {
        let Path(key) = path.map_err(bad_path)?;
        let level = level?;
        let resolve = resolve?;
        check_key(&key)?;
        let request = ReadRequest {
            key: key.clone(),
            level,
        };
        let ok = gw
            .read(request)
            .await
            .map_err(|e| ApiError::from_client(e, "read"))?;
        if ok.siblings.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no value for key {key:?} on the {} replicas that answered",
                    ok.replied
                ),
            )
            .with(json!({"key": key, "needed": ok.needed, "replied": ok.replied, "n": ok.n})));
        }
        let conflict = ok.siblings.len() > 1;
        let siblings: Vec<Value> = ok.siblings.iter().map(sibling_json).collect();
        let values: Vec<&str> = ok.siblings.iter().map(|v| v.value.as_str()).collect();
        let value = match (conflict, resolve) {
            (false, _) => json!(values[0]),
            (true, Resolve::None) => Value::Null,
            (true, Resolve::Lww) => ok
                .siblings
                .iter()
                .max_by_key(|v| (v.timestamp_ms, v.dot))
                .map_or(Value::Null, |v| json!(v.value)),
        };
        Ok(json!({
            "key": key,
            "value": value,
            "resolved": match resolve {
                Resolve::None => Value::Null,
                Resolve::Lww => json!("lww"),
            },
            "values": values,
            "siblings": siblings,
            "conflict": conflict,
            "context": ok.token,
            "clock": ok.context,
            "consistency": level.to_string(),
            "needed": ok.needed,
            "replied": ok.replied,
            "n": ok.n,
            "coordinator": ok.coordinator,
        }))
    }
    .await;
    finish(result, Method::GET, "/api/logs/{key}", label, started)
}

async fn health(State(gw): State<Gateway>) -> Response {
    let views = gw.poll_health().await;
    let n = gw.n();
    let up = views.iter().filter(|v| v.up).count();
    let nodes: Vec<Value> = gw
        .0
        .coordinators
        .iter()
        .zip(&views)
        .map(|(c, v)| {
            let peers: Vec<Value> = v
                .report
                .as_ref()
                .map(|r| {
                    r.replicas
                        .iter()
                        .map(|p| json!({"node": p.node, "breaker": p.breaker.as_str(), "consecutive_failures": p.consecutive_failures}))
                        .collect()
                })
                .unwrap_or_default();
            let error = v.error.clone().or_else(|| {
                (!v.open_at.is_empty()).then(|| {
                    let observers: Vec<String> = v.open_at.iter().map(|o| format!("n{o}")).collect();
                    format!(
                        "marked down by {} (breaker open): requests needing it are refused there",
                        observers.join(", ")
                    )
                })
            });
            json!({
                "id": c.id,
                "addr": c.addr.to_string(),
                "up": v.up,
                "answered": v.reachable,
                "breaker_open_at": v.open_at,
                "incarnation": v.report.as_ref().map(|r| r.incarnation),
                // Per peer: ms since anti-entropy last found nothing to
                // repair with it (null: not since the node started).
                "agreement_age_ms": v.report.as_ref().map(|r| {
                    r.agreement_age_ms
                        .iter()
                        .map(|(peer, age)| (peer.to_string(), json!(age)))
                        .collect::<serde_json::Map<String, Value>>()
                }),
                "error": error,
                "peers": peers,
            })
        })
        .collect();
    let levels: serde_json::Map<String, Value> =
        [Consistency::One, Consistency::Quorum, Consistency::All]
            .iter()
            .map(|l| (l.to_string(), json!(up >= l.replicas(n))))
            .collect();
    let status = if up == n {
        "UP"
    } else if up > 0 {
        "DEGRADED"
    } else {
        "DOWN"
    };
    let code = if up > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({"status": status, "n": n, "up": up, "available": levels, "nodes": nodes});
    if code != StatusCode::OK {
        // Every non-2xx answer carries the error fields.
        let error = ApiError::new(code, "unavailable", "no node is up");
        if let (Some(body), Some(fields)) = (body.as_object_mut(), error.body().as_object()) {
            for (k, v) in fields {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    (code, Json(body)).into_response()
}

/// Decide which nodes can serve. A node is up when it answered the health
/// probe *and* no coordinator that answered has its breaker open: that
/// coordinator refuses (503) any level needing it, so counting it as up
/// would show ALL available while ALL requests fail.
fn judge(ids: &[NodeId], views: &mut [NodeView]) {
    let mut open_at: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
    for (observer, view) in ids.iter().zip(views.iter()) {
        let Some(report) = &view.report else { continue };
        for replica in &report.replicas {
            if replica.breaker == BreakerState::Open {
                open_at.entry(replica.node).or_default().push(*observer);
            }
        }
    }
    for (id, view) in ids.iter().zip(views.iter_mut()) {
        view.open_at = open_at.remove(id).unwrap_or_default();
        view.up = view.reachable && view.open_at.is_empty();
    }
}

/// A running gateway; dropping it stops it.
pub struct RunningGateway {
    pub addr: SocketAddr,
    serve: tokio::task::JoinHandle<()>,
    poll: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    pub fn stop(&self) {
        self.serve.abort();
        self.poll.abort();
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

pub async fn start(config: GatewayConfig) -> anyhow::Result<RunningGateway> {
    if config.nodes.is_empty() {
        anyhow::bail!("the gateway needs at least one node (--node ID=ADDR)");
    }
    let gateway = Gateway::new(&config);
    let app = gateway.router(config.api_token.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("gateway: cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let limits = config.http_limits;
    let serve = tokio::spawn(crate::http_server::serve(
        listener,
        app,
        limits,
        config.tls.clone().map(|tls| tls.0),
    ));
    let poller = gateway.clone();
    let interval = config.health_interval;
    let poll = tokio::spawn(async move {
        loop {
            poller.poll_health().await;
            tokio::time::sleep(interval).await;
        }
    });
    tracing::info!(%addr, nodes = config.nodes.len(), "gateway serving");
    Ok(RunningGateway { addr, serve, poll })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_core::protocol::ReplicaHealth;

    fn op(error: OpError) -> ApiError {
        ApiError::from_client(
            ClientError::Op {
                coordinator: 2,
                error,
            },
            "write",
        )
    }

    fn too_many_siblings() -> Refusal {
        Refusal::TooManySiblings {
            key: "k".into(),
            siblings: 65,
            limit: 64,
        }
    }

    fn dot_conflict() -> Refusal {
        Refusal::Version {
            key: "k".into(),
            reason: "dot n1:1 is already held with another value or context".into(),
        }
    }

    #[test]
    fn a_key_limit_is_a_409_that_says_how_to_resolve_it() {
        let e = op(OpError::Refused(too_many_siblings()));
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.kind(), "key_limit");
        assert!(e.message().contains("overwrite=true"), "{}", e.message());
        assert!(e.message().contains("context"), "{}", e.message());
        let body = e.body();
        assert_eq!(body["reason"], json!("too_many_siblings"));
        assert_eq!(body["limit"], json!(64));
        assert_eq!(body["indeterminate"], json!(false), "nothing was stored");

        let e = op(OpError::RefusedByReplicas {
            needed: 3,
            acked: 1,
            refused: 4,
            n: 5,
            reason: Refusal::TooManyBytes {
                key: "k".into(),
                bytes: 5_000_000,
                limit: 4_194_304,
            },
        });
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(e.kind(), "key_limit");
        assert!(e.message().contains("overwrite=true"), "{}", e.message());
        let body = e.body();
        assert_eq!(body["reason"], json!("too_many_bytes"));
        assert_eq!(
            (
                &body["needed"],
                &body["acked"],
                &body["refused"],
                &body["n"]
            ),
            (&json!(3), &json!(1), &json!(4), &json!(5))
        );
        assert_eq!(
            body["indeterminate"],
            json!(true),
            "the coordinator stored it"
        );
    }

    #[test]
    fn a_refused_version_is_a_500() {
        for error in [
            OpError::Refused(dot_conflict()),
            OpError::RefusedByReplicas {
                needed: 3,
                acked: 1,
                refused: 2,
                n: 5,
                reason: dot_conflict(),
            },
        ] {
            let e = op(error);
            assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(e.kind(), "replica_refused");
            assert!(e.message().contains("dot n1:1"), "{}", e.message());
        }
    }

    #[test]
    fn a_timeout_says_how_many_refused_the_connection() {
        let e = op(OpError::Timeout {
            needed: 5,
            answered: 3,
            n: 5,
            unreachable: 1,
        });
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = e.body();
        assert_eq!(body["unreachable"], json!(1));
        assert_eq!(body["answered"], json!(3));
        assert_eq!(body["indeterminate"], json!(true));
        assert!(
            e.message().contains("1 refused the connection"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn overwrite_is_a_boolean_from_the_query_or_the_body() {
        assert!(!overwrite_of(None, None).unwrap_or(true));
        assert!(overwrite_of(Some("true"), None).unwrap_or(false));
        assert!(!overwrite_of(Some("false"), None).unwrap_or(true));
        assert!(overwrite_of(None, Some(&json!(true))).unwrap_or(false));
        assert!(!overwrite_of(None, Some(&Value::Null)).unwrap_or(true));
        assert!(overwrite_of(Some("true"), Some(&json!(true))).unwrap_or(false));
        for (query, body) in [
            (Some("yes"), None),
            (Some("1"), None),
            (Some("TRUE"), None),
            (None, Some(json!("true"))),
            (None, Some(json!(1))),
            (Some("true"), Some(json!(false))),
        ] {
            match overwrite_of(query, body.as_ref()) {
                Err(e) => {
                    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                    assert!(e.message().contains("overwrite"), "{}", e.message());
                }
                Ok(v) => panic!("{query:?} / {body:?} accepted as {v}"),
            }
        }
    }

    #[test]
    fn versions_show_their_incarnation() {
        let dot = Dot::new(quorumlog_core::Actor::new(3, 7), 1);
        assert_eq!(
            version_json(&dot),
            json!({"node": 3, "incarnation": 7, "counter": 1})
        );
    }

    fn answered(observer: NodeId, open: &[NodeId]) -> NodeView {
        NodeView {
            reachable: true,
            report: Some(HealthReport {
                node: observer,
                incarnation: 0,
                agreement_age_ms: Vec::new(),
                n: 3,
                replicas: [1, 2, 3]
                    .into_iter()
                    .filter(|&p| p != observer)
                    .map(|p| ReplicaHealth {
                        node: p,
                        breaker: if open.contains(&p) {
                            BreakerState::Open
                        } else {
                            BreakerState::Closed
                        },
                        consecutive_failures: 0,
                    })
                    .collect(),
            }),
            ..NodeView::default()
        }
    }

    #[test]
    fn a_node_is_up_only_if_it_answered_and_no_breaker_is_open_for_it() {
        let ids = [1, 2, 3];
        let mut views = vec![answered(1, &[]), answered(2, &[]), answered(3, &[])];
        judge(&ids, &mut views);
        assert!(views.iter().all(|v| v.up));

        // Node 3 answers the probe, but node 1 has its breaker open.
        let mut views = vec![answered(1, &[3]), answered(2, &[]), answered(3, &[])];
        judge(&ids, &mut views);
        assert_eq!(
            views.iter().map(|v| v.up).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(views[2].open_at, vec![1]);

        // Node 2 did not answer, though nobody's breaker is open yet.
        let mut views = vec![
            answered(1, &[]),
            NodeView {
                reachable: false,
                error: Some("connection refused".into()),
                ..NodeView::default()
            },
            answered(3, &[]),
        ];
        judge(&ids, &mut views);
        assert_eq!(
            views.iter().map(|v| v.up).collect::<Vec<_>>(),
            [true, false, true]
        );
    }
}

/// The gateway over one in-process node: the HTTP surface end to end.
#[cfg(test)]
mod http_tests {
    use super::*;
    use crate::node::{self, NodeConfig};
    use crate::store::StoreSpec;

    struct One {
        base: String,
        http: reqwest::Client,
        incarnation: quorumlog_core::Incarnation,
        _node: node::RunningNode,
        _gateway: RunningGateway,
    }

    impl One {
        async fn start(max_siblings: usize) -> One {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            // Node 7: the metrics recorder is per process, and other tests
            // start a node 1.
            let mut config = NodeConfig::new(7, loopback, Vec::new(), StoreSpec::Memory);
            config.key_limits.max_siblings = max_siblings;
            let node = node::start(config).await.expect("start the node");
            let gateway = start(GatewayConfig::new(loopback, vec![(7, node.addr)]))
                .await
                .expect("start the gateway");
            One {
                base: format!("http://{}", gateway.addr),
                http: reqwest::Client::new(),
                incarnation: node.incarnation,
                _node: node,
                _gateway: gateway,
            }
        }

        async fn post(&self, query: &str, body: Value) -> (u16, Value) {
            let answer = self
                .http
                .post(format!("{}/api/logs?consistency=ONE{query}", self.base))
                .json(&body)
                .send()
                .await
                .expect("POST");
            let status = answer.status().as_u16();
            (status, answer.json().await.expect("JSON answer"))
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            let answer = self
                .http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("GET");
            let status = answer.status().as_u16();
            (status, answer.json().await.expect("JSON answer"))
        }
    }

    #[tokio::test]
    async fn every_error_is_documented_json() {
        let one = One::start(4).await;
        let long_key = "k".repeat(MAX_URI_BYTES + 1);
        let get = reqwest::Method::GET;
        // (method, path, JSON body, status, `error`, part of the message)
        type Case = (
            reqwest::Method,
            String,
            Option<Value>,
            u16,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                get.clone(),
                "/nope".into(),
                None,
                404,
                "no_route",
                "no route GET /nope",
            ),
            (
                get.clone(),
                "/api/logs/".into(),
                None,
                404,
                "no_route",
                "no route",
            ),
            (
                reqwest::Method::PUT,
                "/api/logs".into(),
                None,
                405,
                "method_not_allowed",
                "use POST",
            ),
            (
                reqwest::Method::DELETE,
                "/api/logs/k".into(),
                None,
                405,
                "method_not_allowed",
                "use GET",
            ),
            (
                get.clone(),
                "/api/logs/%FF%FE".into(),
                None,
                400,
                "bad_request",
                "bad key in the path",
            ),
            (
                get.clone(),
                "/api/logs/a%00b".into(),
                None,
                400,
                "bad_request",
                "U+0000",
            ),
            (
                get.clone(),
                format!("/api/logs/{long_key}"),
                None,
                414,
                "uri_too_long",
                "the limit is",
            ),
            (
                get.clone(),
                "/api/logs/k?consistency=9".into(),
                None,
                400,
                "bad_request",
                "consistency",
            ),
            (
                reqwest::Method::POST,
                "/api/logs".into(),
                Some(json!({"key": "a\u{0}b", "value": "v"})),
                400,
                "bad_request",
                "U+0000",
            ),
            (
                reqwest::Method::POST,
                "/api/logs".into(),
                Some(json!({"key": "a", "value": ""})),
                400,
                "bad_request",
                "value is empty",
            ),
            (
                get,
                "/api/logs/absent".into(),
                None,
                404,
                "not_found",
                "no value",
            ),
        ];
        for (method, path, body, status, kind, says) in cases {
            let mut request = one
                .http
                .request(method.clone(), format!("{}{path}", one.base));
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = request.send().await.expect("request");
            let got = answer.status().as_u16();
            let text = answer.text().await.expect("body");
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
            assert_eq!(got, status, "{method} {path}: {json}");
            assert_eq!(json["error"], json!(kind), "{method} {path}: {json}");
            assert_eq!(json["status"], json!(status), "{method} {path}: {json}");
            assert!(
                json["message"].as_str().is_some_and(|m| m.contains(says)),
                "{method} {path}: {json}"
            );
        }
    }

    #[test]
    fn the_openapi_document_names_every_route_and_error() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        let mut paths: Vec<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        let mut routes = ROUTES.to_vec();
        routes.sort_unstable();
        assert_eq!(paths, routes);
        let mut kinds: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["enum"]
            .as_array()
            .expect("error enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        kinds.sort_unstable();
        let mut errors: Vec<&str> = ERRORS.iter().map(|&(_, k)| k).collect();
        errors.sort_unstable();
        errors.dedup();
        assert_eq!(kinds, errors);
        // Every status an API route can answer is declared on it (a read
        // is never refused for key limits, nor has a body to be too large).
        for (path, method, never) in [
            ("/api/logs", "post", &[][..]),
            ("/api/logs/{key}", "get", &[409, 413][..]),
        ] {
            let declared = doc["paths"][path][method]["responses"]
                .as_object()
                .expect("responses");
            for (status, kind) in ERRORS.iter().filter(|(s, _)| !never.contains(s)) {
                assert!(
                    declared.contains_key(&status.to_string()),
                    "{method} {path} does not declare {status} ({kind})"
                );
            }
        }
    }

    /// The required fields of the OpenAPI answers are in real answers.
    fn assert_has_required(doc: &Value, schema: &str, answer: &Value) {
        for field in doc["components"]["schemas"][schema]["required"]
            .as_array()
            .expect("required")
        {
            let field = field.as_str().expect("a field name");
            assert!(
                answer.get(field).is_some(),
                "{schema}: no {field} in {answer}"
            );
        }
    }

    #[tokio::test]
    async fn answers_have_the_fields_the_openapi_document_requires() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        let one = One::start(4).await;
        let (status, w) = one.post("", json!({"key": "o", "value": "v"})).await;
        assert_eq!(status, 200, "{w}");
        assert_has_required(&doc, "WriteAnswer", &w);
        let (status, r) = one.get("/api/logs/o?consistency=ONE").await;
        assert_eq!(status, 200, "{r}");
        assert_has_required(&doc, "ReadAnswer", &r);
        let (status, h) = one.get("/api/logs/health").await;
        assert_eq!(status, 200, "{h}");
        assert_has_required(&doc, "Health", &h);
        let (status, served) = one.get("/api/openapi.json").await;
        assert_eq!(status, 200);
        assert_eq!(served, doc);
        let (_, e) = one.get("/api/logs/o?consistency=7").await;
        assert_has_required(&doc, "Error", &e);
    }

    #[tokio::test]
    async fn resolve_lww_answers_the_newest_sibling_and_keeps_them_all() {
        let one = One::start(8).await;
        let (status, first) = one.post("", json!({"key": "l", "value": "older"})).await;
        assert_eq!(status, 200, "{first}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (status, second) = one.post("", json!({"key": "l", "value": "newer"})).await;
        assert_eq!(status, 200, "{second}");
        let (status, plain) = one.get("/api/logs/l?consistency=ONE").await;
        assert_eq!(status, 200, "{plain}");
        assert_eq!(plain["value"], Value::Null, "{plain}");
        assert_eq!(plain["conflict"], json!(true));
        let stamps: Vec<u64> = plain["siblings"]
            .as_array()
            .expect("siblings")
            .iter()
            .map(|s| s["timestamp_ms"].as_u64().expect("a timestamp"))
            .collect();
        assert!(stamps.iter().all(|&t| t > 1_600_000_000_000), "{stamps:?}");
        let (status, lww) = one.get("/api/logs/l?consistency=ONE&resolve=lww").await;
        assert_eq!(status, 200, "{lww}");
        assert_eq!(lww["value"], json!("newer"), "{lww}");
        assert_eq!(lww["resolved"], json!("lww"));
        assert_eq!(
            lww["siblings"], plain["siblings"],
            "every sibling is still returned"
        );
        assert!(lww["context"].as_str().is_some(), "{lww}");
        let (status, e) = one.get("/api/logs/l?resolve=newest").await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("resolve=lww")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_misspelt_query_parameter_is_refused_and_writes_nothing() {
        let one = One::start(8).await;
        // `consistency=ONE` comes first; a misspelt ALL must not be
        // dropped silently, leaving the write at ONE.
        let (status, e) = one
            .post("&consistncy=ALL", json!({"key": "q", "value": "v"}))
            .await;
        assert_eq!(status, 400, "{e}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(message.contains("consistncy"), "{e}");
        let (status, e) = one.get("/api/logs/q?consistancy=ALL").await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("consistancy")),
            "{e}"
        );
        let (status, read) = one.get("/api/logs/q?consistency=ONE").await;
        assert_eq!(status, 404, "the refused write was stored: {read}");
    }

    /// A raw connection that sends `bytes` and then nothing: whether the
    /// server closed it within `within`.
    async fn closed_within(
        addr: SocketAddr,
        bytes: &[u8],
        within: Duration,
    ) -> (bool, tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut raw = tokio::net::TcpStream::connect(addr).await.expect("connect");
        raw.write_all(bytes).await.expect("write");
        let mut buf = [0u8; 512];
        let closed = matches!(
            tokio::time::timeout(within, raw.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        (closed, raw)
    }

    #[tokio::test]
    async fn http_connections_are_bounded_and_must_send_their_headers_in_time() {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let node = node::start(NodeConfig::new(7, loopback, Vec::new(), StoreSpec::Memory))
            .await
            .expect("start the node");
        let mut config = GatewayConfig::new(loopback, vec![(7, node.addr)]);
        config.http_limits = crate::http_server::HttpLimits {
            max_connections: 3,
            header_timeout: Duration::from_millis(1500),
        };
        let gateway = start(config).await.expect("start the gateway");
        // Headers begun and never finished: closed after the timeout.
        let (closed, _) = closed_within(
            gateway.addr,
            b"GET /api/logs/health HTTP/1.1\r\nHost: x\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(
            closed,
            "a connection that never finished its headers stayed open"
        );
        // Three connections hold every slot: a fourth is closed at once,
        // while they are still open.
        let mut held = Vec::new();
        for _ in 0..3 {
            let (closed, raw) = closed_within(gateway.addr, b"", Duration::from_millis(50)).await;
            assert!(!closed);
            held.push(raw);
        }
        let (refused, _) = closed_within(gateway.addr, b"", Duration::from_millis(300)).await;
        assert!(
            refused,
            "a fourth connection was served past the limit of 3"
        );
        drop(held);
        // Once they are gone, requests are served again.
        let http = reqwest::Client::new();
        let mut served = false;
        for _ in 0..40 {
            if let Ok(answer) = http
                .get(format!("http://{}/api/logs/health", gateway.addr))
                .send()
                .await
            {
                served = answer.status().is_success();
                if served {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(served);
    }

    #[test]
    fn the_documented_error_table_is_the_list_of_errors() {
        let docs = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/deployment.md"
        ))
        .expect("docs/deployment.md");
        let mut documented: Vec<(u16, String)> = docs
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let status = cells.get(1)?.parse::<u16>().ok()?;
                let kind = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
                (status >= 400).then(|| (status, kind.to_string()))
            })
            .collect();
        documented.sort();
        let mut errors: Vec<(u16, String)> =
            ERRORS.iter().map(|&(s, k)| (s, k.to_string())).collect();
        errors.sort();
        assert_eq!(documented, errors);
    }

    #[tokio::test]
    async fn tokens_overwrite_limits_and_health() {
        let one = One::start(2).await;

        let (status, a) = one.post("", json!({"key": "a", "value": "x"})).await;
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["value"], json!("x"), "the value stored: {a}");
        assert_eq!(a["version"]["incarnation"], json!(one.incarnation), "{a}");
        assert_eq!(a["version"]["node"], json!(7), "{a}");
        assert_eq!(a["version"]["counter"], json!(1), "{a}");

        // A token read from key a does not go with a write to key b.
        let (status, e) = one
            .post(
                "",
                json!({"key": "b", "value": "y", "context": a["context"]}),
            )
            .await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("another key")),
            "{e}"
        );

        let (status, e) = one
            .post("&overwrite=maybe", json!({"key": "b", "value": "y"}))
            .await;
        assert_eq!(status, 400, "{e}");
        let (status, e) = one
            .post("", json!({"key": "b", "value": "y", "overwrite": "yes"}))
            .await;
        assert_eq!(status, 400, "{e}");

        // Two blind writes are siblings; a third would pass the limit of 2.
        for value in ["c1", "c2"] {
            let (status, w) = one.post("", json!({"key": "c", "value": value})).await;
            assert_eq!(status, 200, "{w}");
        }
        let (status, e) = one.post("", json!({"key": "c", "value": "c3"})).await;
        assert_eq!(status, 409, "{e}");
        assert_eq!(e["error"], json!("key_limit"), "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("overwrite=true")),
            "{e}"
        );
        // overwrite=true supersedes both.
        let (status, w) = one
            .post("&overwrite=true", json!({"key": "c", "value": "c3"}))
            .await;
        assert_eq!(status, 200, "{w}");
        assert_eq!(w["overwrite"], json!(true), "{w}");
        let (status, r) = one.get("/api/logs/c?consistency=ONE").await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["values"], json!(["c3"]), "{r}");
        assert_eq!(
            r["siblings"][0]["version"]["incarnation"],
            json!(one.incarnation)
        );
        // The read's token goes with a write to the same key.
        let (status, w) = one
            .post(
                "",
                json!({"key": "c", "value": "c4", "context": r["context"]}),
            )
            .await;
        assert_eq!(status, 200, "{w}");

        let (status, health) = one.get("/api/logs/health").await;
        assert_eq!(status, 200, "{health}");
        assert_eq!(health["status"], json!("UP"), "{health}");
        assert_eq!(health["available"]["ALL"], json!(true), "{health}");
        assert_eq!(
            health["nodes"][0]["incarnation"],
            json!(one.incarnation),
            "{health}"
        );
        assert_eq!(health["nodes"][0]["up"], json!(true), "{health}");

        let metrics = one
            .http
            .get(format!("{}/metrics", one.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        let gauge = format!("node_incarnation{{node=\"7\"}} {}", one.incarnation);
        assert!(metrics.contains(&gauge), "no {gauge} in\n{metrics}");
        assert!(
            metrics.contains("key_siblings_bucket{le=\"64\"}"),
            "{metrics}"
        );
        assert!(
            metrics.contains("replica_refusals_total{reason=\"key_limit\"}"),
            "{metrics}"
        );
    }
}
