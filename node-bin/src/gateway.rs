//! `quorumd gateway`: the public REST API (see DESIGN.md). It is a client of
//! the coordinators: each request goes to one coordinator, preferring those
//! the last health poll reached, and fails over to the next only when
//! nothing was sent (unreachable, or `Unavailable`). A request that was
//! sent and not answered is reported as 504 and never retried.
use crate::telemetry;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use quorumlog_core::context;
use quorumlog_core::protocol::BreakerState;
use quorumlog_core::replica::{MAX_KEY_LEN, MAX_VALUE_LEN};
use quorumlog_core::{
    Client, ClientError, Consistency, NodeId, OpError, ReadRequest, WriteRequest,
};
use serde::Deserialize;
use serde_json::{json, Value};
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
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, nodes: Vec<(NodeId, SocketAddr)>) -> Self {
        Self {
            listen,
            nodes,
            timeout: Duration::from_secs(2),
            health_interval: Duration::from_millis(500),
            default_level: Consistency::Quorum,
        }
    }
}

struct Coordinator {
    id: NodeId,
    addr: SocketAddr,
    client: Arc<Client>,
    /// For health polls: short, so a hung node does not stall the poll.
    probe: Client,
}

#[derive(Debug, Clone, Default)]
struct NodeView {
    reachable: bool,
    report: Option<quorumlog_core::protocol::HealthReport>,
    error: Option<String>,
}

struct Inner {
    coordinators: Vec<Coordinator>,
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

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
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

    fn from_client(error: ClientError, op: &str) -> Self {
        match error {
            ClientError::Op { coordinator, error } => match error {
                OpError::Unavailable { needed, alive, n } => Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{op} needs {needed} of {n} replicas but only {alive} are believed alive; nothing was sent"),
                )
                .with(json!({"needed": needed, "alive": alive, "n": n, "coordinator": coordinator})),
                OpError::Timeout { needed, answered, n } => {
                    let maybe = if op == "write" { "; the write may still be applied" } else { "" };
                    Self::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "timeout",
                        format!("{op} needed {needed} of {n} replicas but only {answered} answered in time{maybe}"),
                    )
                    .with(json!({
                        "needed": needed, "acked": answered, "answered": answered, "n": n,
                        "coordinator": coordinator, "indeterminate": op == "write",
                    }))
                }
                OpError::Invalid(reason) => Self::bad_request(reason),
                OpError::Storage(reason) => Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    format!("storage failed on coordinator n{coordinator}: {reason}"),
                ),
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
            ClientError::Protocol { coordinator, answer } => Self::new(
                StatusCode::BAD_GATEWAY,
                "protocol_error",
                format!("coordinator n{coordinator} sent an unexpected answer: {answer}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            json!({ "error": self.kind, "message": self.message, "status": self.status.as_u16() });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), self.extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        (self.status, Json(body)).into_response()
    }
}

#[derive(Debug, Deserialize)]
pub struct LevelQuery {
    consistency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    key: String,
    value: String,
    #[serde(default)]
    context: Option<String>,
}

impl Gateway {
    pub fn new(config: &GatewayConfig) -> Self {
        let coordinators = config
            .nodes
            .iter()
            .map(|&(id, addr)| Coordinator {
                id,
                addr,
                client: Arc::new(Client::new(vec![(id, addr)], config.timeout)),
                probe: Client::new(
                    vec![(id, addr)],
                    Duration::from_millis(500).min(config.timeout),
                ),
            })
            .collect::<Vec<_>>();
        let views = vec![
            NodeView {
                reachable: true,
                ..NodeView::default()
            };
            coordinators.len()
        ];
        Gateway(Arc::new(Inner {
            coordinators,
            next: AtomicUsize::new(0),
            views: RwLock::new(views),
            default_level: config.default_level,
            writes_ok: AtomicU64::new(0),
            writes_failed: AtomicU64::new(0),
        }))
    }

    pub fn router(&self) -> anyhow::Result<Router> {
        let handle = telemetry::metrics()?;
        Ok(Router::new()
            .route("/api/logs", post(write))
            .route("/api/logs/health", get(health))
            .route("/api/logs/:key", get(read))
            .with_state(self.clone())
            .merge(telemetry::metrics_router(handle))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
    }

    fn parse_level(
        &self,
        query: Result<Query<LevelQuery>, QueryRejection>,
    ) -> Result<Consistency, ApiError> {
        let Query(query) =
            query.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
        match query.consistency {
            None => Ok(self.0.default_level),
            Some(text) => {
                let level: Consistency =
                    text.parse()
                        .map_err(|e: quorumlog_core::quorum::QuorumError| {
                            ApiError::bad_request(e.to_string()).with(json!({"consistency": text}))
                        })?;
                let n = self.0.coordinators.len();
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

    /// Run `call` against coordinators until one takes the request. Only a
    /// request that was certainly not sent moves on to the next one.
    async fn failover<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let mut unavailable: Option<ClientError> = None;
        let mut last = String::from("no coordinators configured");
        let order = self.order();
        for &i in &order {
            let coordinator = &self.0.coordinators[i];
            match call(coordinator.client.clone()).await {
                Ok(ok) => return Ok(ok),
                Err(
                    e @ ClientError::Op {
                        error: OpError::Unavailable { .. },
                        ..
                    },
                ) => {
                    // Keep the answer from the coordinator that saw most alive.
                    let better = match (&unavailable, &e) {
                        (
                            Some(ClientError::Op {
                                error: OpError::Unavailable { alive: a, .. },
                                ..
                            }),
                            ClientError::Op {
                                error: OpError::Unavailable { alive: b, .. },
                                ..
                            },
                        ) => b > a,
                        _ => true,
                    };
                    if better {
                        unavailable = Some(e);
                    }
                }
                Err(ClientError::NoCoordinator { last: reason, .. }) => {
                    self.mark(i, false, Some(reason.clone()));
                    last = format!("n{} at {}: {reason}", coordinator.id, coordinator.addr);
                }
                Err(other) => return Err(other),
            }
        }
        Err(unavailable.unwrap_or(ClientError::NoCoordinator {
            tried: order.len(),
            last,
        }))
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
                        error: None,
                    }
                }
                Err(e) => NodeView {
                    reachable: false,
                    report: None,
                    error: Some(e.to_string()),
                },
            };
            metrics::gauge!("replica_up", "node" => node).set(if view.reachable {
                1.0
            } else {
                0.0
            });
            views.push(view);
        }
        let up = views.iter().filter(|v| v.reachable).count();
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
        "method" => method.to_string(),
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

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("key is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "key is {} bytes; the limit is {MAX_KEY_LEN}",
            key.len()
        ))
        .with(json!({"limit": MAX_KEY_LEN})));
    }
    Ok(())
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

async fn write(
    State(gw): State<Gateway>,
    query: Result<Query<LevelQuery>, QueryRejection>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let level = gw.parse_level(query);
    let label = level_label(&level);
    let result = async {
        let level = level?;
        let body = read_body(body).await?;
        let body: WriteBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "body must be JSON {{\"key\": string, \"value\": string, \"context\"?: string}}: {e}"
            ))
        })?;
        check_key(&body.key)?;
        if body.value.is_empty() {
            return Err(ApiError::bad_request("value is empty"));
        }
        if body.value.len() > MAX_VALUE_LEN {
            return Err(ApiError::bad_request(format!(
                "value is {} bytes; the limit is {MAX_VALUE_LEN}",
                body.value.len()
            ))
            .with(json!({"limit": MAX_VALUE_LEN})));
        }
        let context_vv = match body.context.as_deref() {
            None | Some("") => quorumlog_core::VersionVector::new(),
            Some(token) => context::decode(token).map_err(|e| ApiError::bad_request(e.to_string()))?,
        };
        let request = WriteRequest { key: body.key.clone(), value: body.value.clone(), context: context_vv, level };
        let outcome = gw
            .failover(|client| {
                let request = request.clone();
                async move { client.write(request, 0).await }
            })
            .await;
        gw.count_write(level, outcome.is_ok());
        let ok = outcome.map_err(|e| ApiError::from_client(e, "write"))?;
        Ok(json!({
            "key": body.key,
            "value": body.value,
            "version": {"node": ok.version.dot.node, "counter": ok.version.dot.counter},
            "context": context::encode(&ok.version.clock()),
            "consistency": level.to_string(),
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
    Path(key): Path<String>,
    query: Result<Query<LevelQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let level = gw.parse_level(query);
    let label = level_label(&level);
    let result = async {
        let level = level?;
        check_key(&key)?;
        let request = ReadRequest { key: key.clone(), level };
        let ok = gw
            .failover(|client| {
                let request = request.clone();
                async move { client.read(request, 0).await }
            })
            .await
            .map_err(|e| ApiError::from_client(e, "read"))?;
        if ok.siblings.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no value for key {key:?} on the {} replicas that answered", ok.replied),
            )
            .with(json!({"key": key, "needed": ok.needed, "replied": ok.replied, "n": ok.n})));
        }
        let conflict = ok.siblings.len() > 1;
        let siblings: Vec<Value> = ok
            .siblings
            .iter()
            .map(|v| json!({"value": v.value, "version": {"node": v.dot.node, "counter": v.dot.counter}}))
            .collect();
        let values: Vec<&str> = ok.siblings.iter().map(|v| v.value.as_str()).collect();
        Ok(json!({
            "key": key,
            "value": if conflict { Value::Null } else { json!(values[0]) },
            "values": values,
            "siblings": siblings,
            "conflict": conflict,
            "context": context::encode(&ok.context),
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
    let n = views.len();
    let reachable = views.iter().filter(|v| v.reachable).count();
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
            json!({"id": c.id, "addr": c.addr.to_string(), "up": v.reachable, "error": v.error, "peers": peers})
        })
        .collect();
    let levels: serde_json::Map<String, Value> =
        [Consistency::One, Consistency::Quorum, Consistency::All]
            .iter()
            .map(|l| (l.to_string(), json!(reachable >= l.replicas(n))))
            .collect();
    let status = if reachable == n {
        "UP"
    } else if reachable > 0 {
        "DEGRADED"
    } else {
        "DOWN"
    };
    let code = if reachable > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(
            json!({"status": status, "n": n, "up": reachable, "available": levels, "nodes": nodes}),
        ),
    )
        .into_response()
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
    let app = gateway.router()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("gateway: cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("gateway stopped: {e}");
        }
    });
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
