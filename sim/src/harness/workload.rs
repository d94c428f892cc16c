//! Simulated clients: each issues reads, blind writes and read-then-write
//! pairs (the write carries the context its read returned) with unique
//! values, mostly on a few hot keys, recording every operation in the
//! shared history.
use crate::history::{Event, ObservedVersion, OpKind, Outcome};
use crate::scenario::Levels;
use quorumlog_core::{
    Client, ClientError, Consistency, OpError, ReadRequest, Version, VersionVector, WriteRequest,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The history under construction, shared by every client of a run.
#[derive(Clone)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    next_id: Arc<AtomicU64>,
    started: Instant,
}

impl Recorder {
    pub fn new(started: Instant) -> Self {
        Self {
            events: Arc::default(),
            next_id: Arc::default(),
            started,
        }
    }

    fn now_us(&self) -> u64 {
        Instant::now().duration_since(self.started).as_micros() as u64
    }

    fn push(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn observed(v: &Version) -> ObservedVersion {
    ObservedVersion {
        value: v.value.clone(),
        dot: Some(v.dot),
        context: Some(v.context.clone()),
    }
}

fn failure_outcome(error: &ClientError) -> Outcome {
    match error {
        ClientError::Op {
            error: OpError::Unavailable { .. },
            ..
        }
        | ClientError::NoCoordinator { .. } => Outcome::Unavailable,
        ClientError::Op {
            error: OpError::Timeout { .. },
            ..
        }
        | ClientError::Indeterminate { .. }
        | ClientError::Protocol { .. } => Outcome::Timeout,
        ClientError::Op {
            error: OpError::Invalid(_) | OpError::Storage(_),
            ..
        } => Outcome::Fail,
    }
}

/// One simulated client process.
pub struct SimClient {
    pub id: u32,
    pub client: Client,
    pub recorder: Recorder,
    pub levels: Levels,
    pub rng: ChaCha8Rng,
    pub coordinators: usize,
}

impl SimClient {
    /// Read `key`; returns the context on success.
    pub async fn read(
        &mut self,
        key: &str,
        level: Consistency,
        is_final: bool,
    ) -> Option<VersionVector> {
        let id = self.recorder.next_id.fetch_add(1, Ordering::SeqCst);
        self.recorder.push(Event::Invoke {
            id,
            client: self.id,
            time_us: self.recorder.now_us(),
            key: key.to_string(),
            op: OpKind::Read,
            value: None,
            context: None,
            level: Some(format!("R={level}")),
            r#final: is_final,
        });
        let first = self.rng.gen_range(0..self.coordinators);
        let result = self
            .client
            .read(
                ReadRequest {
                    key: key.to_string(),
                    level,
                },
                first,
            )
            .await;
        let time_us = self.recorder.now_us();
        let (event, context) = match result {
            Ok(ok) => (
                Event::Complete {
                    id,
                    client: self.id,
                    time_us,
                    outcome: Outcome::Ok,
                    values: ok.siblings.iter().map(observed).collect(),
                    version: None,
                    context: Some(ok.context.clone()),
                    error: None,
                },
                Some(ok.context),
            ),
            Err(e) => (
                Event::Complete {
                    id,
                    client: self.id,
                    time_us,
                    outcome: failure_outcome(&e),
                    values: Vec::new(),
                    version: None,
                    context: None,
                    error: Some(e.to_string()),
                },
                None,
            ),
        };
        self.recorder.push(event);
        context
    }

    pub async fn write(&mut self, key: &str, value: String, context: VersionVector) {
        let id = self.recorder.next_id.fetch_add(1, Ordering::SeqCst);
        let level = self.levels.write;
        self.recorder.push(Event::Invoke {
            id,
            client: self.id,
            time_us: self.recorder.now_us(),
            key: key.to_string(),
            op: OpKind::Write,
            value: Some(value.clone()),
            context: Some(context.clone()),
            level: Some(format!("W={level}")),
            r#final: false,
        });
        let first = self.rng.gen_range(0..self.coordinators);
        let request = WriteRequest {
            key: key.to_string(),
            value,
            context,
            level,
        };
        let result = self.client.write(request, first).await;
        let time_us = self.recorder.now_us();
        let event = match result {
            Ok(ok) => Event::Complete {
                id,
                client: self.id,
                time_us,
                outcome: Outcome::Ok,
                values: Vec::new(),
                version: Some(observed(&ok.version)),
                context: None,
                error: None,
            },
            Err(e) => Event::Complete {
                id,
                client: self.id,
                time_us,
                outcome: failure_outcome(&e),
                values: Vec::new(),
                version: None,
                context: None,
                error: Some(e.to_string()),
            },
        };
        self.recorder.push(event);
    }

    /// Run `operations` operations over `keys`, the first `hot` of which
    /// get most of the traffic.
    pub async fn run(mut self, operations: usize, keys: &[String], hot: usize) {
        let mut written = 0u64;
        let mut done = 0;
        while done < operations {
            let think = Duration::from_millis(self.rng.gen_range(0..20));
            tokio::time::sleep(think).await;
            let key = if hot > 0 && (hot == keys.len() || self.rng.gen_bool(0.8)) {
                keys[self.rng.gen_range(0..hot)].clone()
            } else {
                keys[self.rng.gen_range(hot..keys.len())].clone()
            };
            let roll: f64 = self.rng.gen();
            let read_level = self.levels.read;
            if roll < 0.45 {
                self.read(&key, read_level, false).await;
                done += 1;
            } else if roll < 0.7 {
                let value = format!("c{}-{written}", self.id);
                written += 1;
                self.write(&key, value, VersionVector::new()).await;
                done += 1;
            } else {
                let context = self.read(&key, read_level, false).await;
                done += 1;
                if let Some(context) = context {
                    if done < operations {
                        let value = format!("c{}-{written}", self.id);
                        written += 1;
                        self.write(&key, value, context).await;
                        done += 1;
                    }
                }
            }
        }
    }
}
