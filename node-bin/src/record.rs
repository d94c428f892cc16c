//! Recording what HTTP clients of the gateway did, in the history format
//! (docs/history-format.md), so a real cluster's run goes through the same
//! checkers as a simulated one (`quorumd check FILE`).
//!
//! Every operation is an `invoke` when it is sent and a `complete` when
//! its answer is read, timed on one monotonic clock (microseconds since the
//! recorder was made). Events go to the file as they happen, in time
//! order: the clock is read under the same lock as the write.
//!
//! HTTP answers map to outcomes by the rules the simulator uses: 200 is
//! `ok` (a read's 404 too: the key has no value); 503 is `unavailable`
//! (nothing was sent); any answer that says `"indeterminate": true`, a
//! 504, a 5xx that does not say, and a lost connection are `timeout` (a
//! write may have applied); every other refusal (4xx) is `fail`.
use quorumlog_history::{Actor, Clock, Dot, Event, ObservedVersion, OpKind, Outcome};
use serde_json::Value;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RecordError {
    #[error("cannot write the history to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Sink {
    out: BufWriter<File>,
    /// The first write error; later events are dropped and `finish` reports it.
    failed: Option<std::io::Error>,
}

/// A history file being written by many clients at once.
pub struct Recorder {
    path: PathBuf,
    started: Instant,
    next_id: AtomicU64,
    sink: Mutex<Sink>,
}

/// What a recorded operation ended with, as the history says it.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub outcome: Option<Outcome>,
    pub values: Vec<ObservedVersion>,
    pub version: Option<ObservedVersion>,
    pub context: Option<Clock>,
    pub error: Option<String>,
    /// Refused as malformed (see [`refused_as_malformed`]).
    pub invalid: bool,
}

impl Recorder {
    /// Create (truncate) `path` and write the header.
    pub fn create(
        path: &Path,
        scenario: &str,
        seed: Option<u64>,
        n: Option<usize>,
    ) -> Result<Recorder, RecordError> {
        let io = |source| RecordError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(io)?;
        let recorder = Recorder {
            path: path.to_path_buf(),
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            sink: Mutex::new(Sink {
                out: BufWriter::new(file),
                failed: None,
            }),
        };
        recorder.emit(|_| Event::Header {
            format: quorumlog_history::HISTORY_FORMAT,
            scenario: Some(scenario.to_string()),
            seed,
            n,
        });
        Ok(recorder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Microseconds since the recorder was made.
    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Write one event, timed under the lock so the file is in time order.
    fn emit(&self, event: impl FnOnce(u64) -> Event) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if sink.failed.is_some() {
            return;
        }
        let event = event(self.now_us());
        let written = serde_json::to_writer(&mut sink.out, &event)
            .map_err(std::io::Error::from)
            .and_then(|()| sink.out.write_all(b"\n"));
        if let Err(e) = written {
            sink.failed = Some(e);
        }
    }

    /// Record the start of an operation; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn invoke(
        &self,
        client: u32,
        key: &str,
        op: OpKind,
        value: Option<&str>,
        context: Option<Clock>,
        context_from: Option<u64>,
        level: &str,
        is_final: bool,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.emit(|time_us| Event::Invoke {
            id,
            client,
            time_us,
            key: key.to_string(),
            op,
            value: value.map(str::to_string),
            context,
            level: Some(level.to_string()),
            r#final: is_final,
            overwrite: false,
            context_from,
        });
        id
    }

    /// Record how operation `id` of `client` ended.
    pub fn complete(&self, id: u64, client: u32, completion: Completion) {
        self.emit(|time_us| Event::Complete {
            id,
            client,
            time_us,
            outcome: completion.outcome.unwrap_or(Outcome::Timeout),
            values: completion.values,
            version: completion.version,
            context: completion.context,
            error: completion.error,
            invalid: completion.invalid,
        });
    }

    /// Flush the file; the first error any event met, if one did.
    pub fn finish(&self) -> Result<(), RecordError> {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let result = match sink.failed.take() {
            Some(e) => Err(e),
            None => sink.out.flush(),
        };
        result.map_err(|source| RecordError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// The outcome an HTTP answer (status, JSON body if any) stands for; see
/// the module comment. `None` for a lost connection.
pub fn outcome_of(status: Option<u16>, body: &Value, op: OpKind) -> Outcome {
    let Some(status) = status else {
        return Outcome::Timeout;
    };
    match status {
        200 => Outcome::Ok,
        404 if op == OpKind::Read && body["error"] == "not_found" => Outcome::Ok,
        503 => Outcome::Unavailable,
        _ => match body["indeterminate"].as_bool() {
            Some(true) => Outcome::Timeout,
            Some(false) => Outcome::Fail,
            None if status == 504 || status >= 500 => Outcome::Timeout,
            None => Outcome::Fail,
        },
    }
}

/// Whether the gateway refused the request as malformed (`400`,
/// `bad_request`): for a write whose key and value are valid, as the load
/// generators' are, its context.
pub fn refused_as_malformed(status: Option<u16>, body: &Value) -> bool {
    status == Some(400) && body["error"] == "bad_request"
}

/// A version vector as the gateway prints it (`{"3": 2, "1.1": 1}`), in
/// the history's own types. Malformed input yields `None`, never a guess.
pub fn clock_of(value: &Value) -> Option<Clock> {
    serde_json::from_value(value.clone()).ok()
}

/// The gateway's `version` object (`{"node", "incarnation", "counter"}`).
pub fn dot_of(value: &Value) -> Option<Dot> {
    let node = u32::try_from(value["node"].as_u64()?).ok()?;
    let incarnation = u32::try_from(value["incarnation"].as_u64().unwrap_or(0)).ok()?;
    let counter = value["counter"].as_u64()?;
    Some(Dot::new(Actor::new(node, incarnation), counter))
}

/// The version a 200 write answer reports it created: the value it says
/// it stored (the checkers compare it with `sent`, what the client wrote),
/// or `sent` where the answer carries none.
pub fn written_version(answer: &Value, sent: &str) -> ObservedVersion {
    ObservedVersion {
        value: answer["value"].as_str().unwrap_or(sent).to_string(),
        dot: dot_of(&answer["version"]),
        context: clock_of(&answer["covers"]),
    }
}

/// The siblings a 200 read answer returned.
pub fn read_values(answer: &Value) -> Vec<ObservedVersion> {
    answer["siblings"]
        .as_array()
        .map(|siblings| {
            siblings
                .iter()
                .filter_map(|s| {
                    Some(ObservedVersion {
                        value: s["value"].as_str()?.to_string(),
                        dot: dot_of(&s["version"]),
                        context: clock_of(&s["covers"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An error answer's one-line description for the history.
pub fn error_text(status: Option<u16>, body: &Value) -> String {
    match status {
        None => "connection lost".to_string(),
        Some(status) => match body["message"].as_str() {
            Some(message) => format!("{status}: {message}"),
            None => format!("HTTP {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_follow_the_simulators_rules() {
        let none = json!({});
        assert_eq!(outcome_of(Some(200), &none, OpKind::Write), Outcome::Ok);
        assert_eq!(
            outcome_of(Some(404), &json!({"error": "not_found"}), OpKind::Read),
            Outcome::Ok,
            "a read of a key with no value completed"
        );
        assert_eq!(outcome_of(Some(404), &none, OpKind::Read), Outcome::Fail);
        assert_eq!(
            outcome_of(Some(503), &none, OpKind::Write),
            Outcome::Unavailable
        );
        assert_eq!(
            outcome_of(Some(504), &none, OpKind::Write),
            Outcome::Timeout
        );
        assert_eq!(
            outcome_of(Some(500), &json!({"indeterminate": true}), OpKind::Write),
            Outcome::Timeout
        );
        assert_eq!(
            outcome_of(Some(409), &json!({"indeterminate": false}), OpKind::Write),
            Outcome::Fail
        );
        assert_eq!(
            outcome_of(Some(502), &none, OpKind::Write),
            Outcome::Timeout
        );
        assert_eq!(outcome_of(Some(400), &none, OpKind::Write), Outcome::Fail);
        assert_eq!(outcome_of(None, &none, OpKind::Write), Outcome::Timeout);
    }

    #[test]
    fn versions_parse_from_gateway_answers() {
        let answer = json!({
            "version": {"node": 3, "incarnation": 1, "counter": 7},
            "covers": {"2": 4, "3.1": 6},
        });
        let v = written_version(&answer, "c1-0");
        assert_eq!(v.value, "c1-0", "an answer without a value: the one sent");
        assert_eq!(v.dot, Some(Dot::new(Actor::new(3, 1), 7)));
        let stored = json!({"value": "c1-0-cut", "version": {"node": 3, "counter": 8}});
        assert_eq!(
            written_version(&stored, "c1-0").value,
            "c1-0-cut",
            "the value the answer says was stored, for the checkers to compare"
        );
        let covers = v.context.expect("covers");
        assert!(covers.covers(Dot::new(Actor::new(2, 0), 4)));
        assert!(!covers.covers(Dot::new(Actor::new(3, 0), 1)));
        assert_eq!(dot_of(&json!({"node": -1, "counter": 1})), None);
        assert_eq!(clock_of(&json!({"x": 1})), None);
    }

    #[test]
    fn a_recorded_file_reads_back_as_a_history() {
        let dir = std::env::temp_dir().join(format!("quorumd-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("h.jsonl");
        let recorder = Recorder::create(&path, "test", Some(3), Some(5)).expect("create");
        let id = recorder.invoke(
            1,
            "k",
            OpKind::Write,
            Some("c1-0"),
            None,
            None,
            "QUORUM",
            false,
        );
        recorder.complete(
            id,
            1,
            Completion {
                outcome: Some(Outcome::Ok),
                version: Some(ObservedVersion {
                    value: "c1-0".into(),
                    dot: Some(Dot::new(Actor::new(1, 0), 1)),
                    context: Some(Clock::new()),
                }),
                ..Completion::default()
            },
        );
        let pending = recorder.invoke(2, "k", OpKind::Read, None, None, None, "ONE", false);
        recorder.finish().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let history =
            quorumlog_history::History::read_jsonl(text.as_bytes()).expect("valid history");
        let ops = history.operations();
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().any(|op| op.id == id && op.is_ok()));
        assert!(ops
            .iter()
            .any(|op| op.id == pending && op.is_indeterminate()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
