//! One client of the REST gateway, as the load generator and the
//! real-process nemesis drive it: a write carries the context token of
//! the client's last answer for that key, and, when a [`Recorder`] is
//! given, every request is recorded as a history operation.
use crate::record::{self, Completion, Recorder};
use quorumlog_core::Consistency;
use quorumlog_history::{Clock, OpKind, Outcome};
use serde_json::{json, Value};
use std::sync::Arc;

/// What the client last learned of a key: the token to send back and the
/// version vector it carries (recorded as the write's context).
#[derive(Debug, Clone, Default)]
pub struct KeyContext {
    pub token: Option<String>,
    pub clock: Option<Clock>,
    /// The recorded operation whose answer handed out `token` (recorded
    /// as the next write's `context_from`, so the checkers can tell a
    /// handed-out context refused as malformed).
    pub from: Option<u64>,
}

#[derive(Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: String,
    /// The client id in the history.
    pub id: u32,
    recorder: Option<Arc<Recorder>>,
}

/// What one request ended with: the HTTP status (599 for a lost
/// connection, as load generators print it) and the outcome it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub outcome: Outcome,
}

impl GatewayClient {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        id: u32,
        recorder: Option<Arc<Recorder>>,
    ) -> Self {
        GatewayClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            id,
            recorder,
        }
    }

    /// Send the HTTP request, returning the status and the JSON body
    /// (`Null` when there is none or it is not JSON).
    async fn send(&self, request: reqwest::RequestBuilder) -> (Option<u16>, Value) {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) => (
                        Some(status),
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    ),
                    // The answer was cut off: as good as a lost connection.
                    Err(_) => (None, Value::Null),
                }
            }
            Err(_) => (None, Value::Null),
        }
    }

    /// Write `value` to `key` with the context the client holds for it; on
    /// success the context becomes the one the write returned.
    pub async fn write(
        &self,
        level: Consistency,
        key: &str,
        value: &str,
        context: &mut KeyContext,
    ) -> Answer {
        let id = self.recorder.as_ref().map(|r| {
            r.invoke(
                self.id,
                key,
                OpKind::Write,
                Some(value),
                Some(context.clock.clone().unwrap_or_default()),
                context.token.as_ref().and(context.from),
                &level.to_string(),
                false,
            )
        });
        let mut body = json!({"key": key, "value": value});
        if let Some(token) = &context.token {
            body["context"] = json!(token);
        }
        let url = format!("{}/api/logs?consistency={level}", self.base);
        let (status, answer) = self.send(self.http.post(url).json(&body)).await;
        let outcome = record::outcome_of(status, &answer, OpKind::Write);
        let mut completion = Completion {
            outcome: Some(outcome),
            ..Completion::default()
        };
        if outcome == Outcome::Ok {
            context.token = answer["context"].as_str().map(str::to_string);
            context.clock = record::clock_of(&answer["clock"]);
            context.from = id;
            completion.version = Some(record::written_version(&answer, value));
            // The answer lists the coordinator's siblings after the write,
            // which the token covers: the client has seen them.
            completion.values = record::read_values(&answer);
            completion.context = context.clock.clone();
        } else {
            completion.error = Some(record::error_text(status, &answer));
            completion.invalid = record::refused_as_malformed(status, &answer);
        }
        if let (Some(recorder), Some(id)) = (&self.recorder, id) {
            recorder.complete(id, self.id, completion);
        }
        Answer {
            status: status.unwrap_or(599),
            outcome,
        }
    }

    /// Read `key`; `is_final` marks the quiescent read after a run. On
    /// success `context` becomes the read's merged context (pass a scratch
    /// one to keep a write-then-write chain).
    pub async fn read(
        &self,
        level: Consistency,
        key: &str,
        is_final: bool,
        context: &mut KeyContext,
    ) -> Answer {
        let id = self.recorder.as_ref().map(|r| {
            r.invoke(
                self.id,
                key,
                OpKind::Read,
                None,
                None,
                None,
                &level.to_string(),
                is_final,
            )
        });
        let url = format!("{}/api/logs/{key}?consistency={level}", self.base);
        let (status, answer) = self.send(self.http.get(url)).await;
        let outcome = record::outcome_of(status, &answer, OpKind::Read);
        let mut completion = Completion {
            outcome: Some(outcome),
            ..Completion::default()
        };
        if status == Some(200) {
            completion.values = record::read_values(&answer);
            completion.context = record::clock_of(&answer["clock"]);
            context.token = answer["context"].as_str().map(str::to_string);
            context.clock = completion.context.clone();
            context.from = id;
        } else if outcome == Outcome::Ok {
            // 404: no value; a write after it is blind.
            *context = KeyContext::default();
        } else {
            completion.error = Some(record::error_text(status, &answer));
        }
        if let (Some(recorder), Some(id)) = (&self.recorder, id) {
            recorder.complete(id, self.id, completion);
        }
        Answer {
            status: status.unwrap_or(599),
            outcome,
        }
    }
}
