//! Simulated clients: each issues reads, blind writes and read-then-write
//! pairs (the write carries the context its read returned), which the
//! mix may chain into further writes, each carrying the context the
//! write before it was answered with, with unique values, mostly on a few
//! hot keys, recording every operation in the shared history.
use super::adversary::Adversary;
use crate::history::{self, Event, ObservedVersion, OpKind, Outcome};
use crate::scenario::{Levels, WorkloadMix};
use quorumlog_core::{
    Client, ClientError, Consistency, OpError, ReadRequest, Version, VersionVector, WriteRequest,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

// The history has its own dots and clocks (the checkers must not share the
// core's version algebra): core versions are converted here, at the edge,
// and nowhere else.

/// A core dot as the history records it.
fn history_dot(dot: quorumlog_core::Dot) -> history::Dot {
    history::Dot {
        node: dot.node,
        incarnation: dot.incarnation,
        counter: dot.counter,
    }
}

/// A core version vector (context) as the history records it.
fn history_clock(clock: &VersionVector) -> history::Clock {
    clock
        .entries()
        .map(|(actor, counter)| (history::Actor::new(actor.node, actor.incarnation), counter))
        .collect()
}

/// A context a client sends with a write: the token the cluster checks,
/// and the clock it claims (what the history records, so the checkers
/// judge the write by what its client meant to have seen). Default: a
/// blind write.
#[derive(Debug, Clone, Default)]
pub struct SentContext {
    pub clock: VersionVector,
    pub token: Option<String>,
    /// The operation whose answer handed this context out, while it is
    /// sent unchanged (a polite read-then-write).
    pub from: Option<u64>,
}

/// The history under construction, shared by every client of a run.
#[derive(Clone)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    next_id: Arc<AtomicU64>,
    started: Instant,
}

impl Recorder {
    /// A recorder with room for `events` events.
    pub fn new(started: Instant, events: usize) -> Self {
        Self {
            events: Arc::new(Mutex::new(Vec::with_capacity(events))),
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

/// A core version as the history records it.
pub(crate) fn observed(v: &Version) -> ObservedVersion {
    ObservedVersion {
        value: v.value.clone(),
        dot: Some(history_dot(v.dot)),
        context: Some(history_clock(&v.context)),
    }
}

/// [`observed`], taking the value instead of copying it (the adversary's
/// values reach a third of the key's byte limit, and a read returns up to
/// the sibling limit of them).
fn observed_owned(v: Version) -> ObservedVersion {
    ObservedVersion {
        dot: Some(history_dot(v.dot)),
        context: Some(history_clock(&v.context)),
        value: v.value,
    }
}

/// Whether the cluster refused the request as malformed.
fn refused_as_invalid(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Op {
            error: OpError::Invalid(_),
            ..
        }
    )
}

fn failure_outcome(error: &ClientError, write: bool) -> Outcome {
    match error {
        // A write the coordinator's store failed may have been committed
        // (an unknown outcome): indeterminate, not failed.
        ClientError::Op {
            error: OpError::Storage(_),
            ..
        } if write => Outcome::Timeout,
        // Refused before anything was written anywhere.
        ClientError::Op {
            error: OpError::Unavailable { .. },
            ..
        }
        | ClientError::NoCoordinator { .. } => Outcome::Unavailable,
        // Written somewhere, maybe: indeterminate. Replicas that refused a
        // write the coordinator had already stored leave it on the
        // coordinator.
        ClientError::Op {
            error: OpError::Timeout { .. } | OpError::RefusedByReplicas { .. },
            ..
        }
        | ClientError::Indeterminate { .. }
        | ClientError::Protocol { .. } => Outcome::Timeout,
        ClientError::Op {
            error: OpError::Invalid(_) | OpError::Storage(_) | OpError::Refused(_),
            ..
        }
        | ClientError::TooLarge(_) => Outcome::Fail,
    }
}

/// One simulated client process.
pub struct SimClient {
    pub id: u32,
    pub client: Client,
    pub recorder: Recorder,
    pub levels: Levels,
    /// Shares of reads, blind writes and read-then-write pairs, the hot
    /// keys' share, think time and value padding.
    pub mix: WorkloadMix,
    pub rng: ChaCha8Rng,
    pub coordinators: usize,
    /// What the client does on its seed-drawn share of misbehaving writes.
    pub adversary: Adversary,
    /// Blind writes overwrite (last-writer-wins).
    pub overwrite: bool,
}

impl SimClient {
    /// Read `key`; returns the context on success.
    pub async fn read(
        &mut self,
        key: &str,
        level: Consistency,
        is_final: bool,
    ) -> Option<SentContext> {
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
            overwrite: false,
            context_from: None,
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
            Ok(ok) => {
                let values = ok.siblings.into_iter().map(observed_owned).collect();
                let (event, context) =
                    self.answered(id, time_us, values, None, ok.context, ok.token);
                (event, Some(context))
            }
            Err(e) => (self.failed(id, time_us, &e, false), None),
        };
        self.recorder.push(event);
        if let Some(context) = &context {
            self.adversary.saw(key, context);
        }
        context
    }

    /// Write `value`; `coordinator` pins the first coordinator asked
    /// (`None`: a random one). Returns, on success, the context its answer
    /// handed out (the token that supersedes this write and the siblings
    /// listed with it).
    pub async fn write(
        &mut self,
        key: &str,
        value: String,
        context: SentContext,
        overwrite: bool,
        coordinator: Option<usize>,
    ) -> Option<SentContext> {
        let id = self.recorder.next_id.fetch_add(1, Ordering::SeqCst);
        let level = self.levels.write;
        self.recorder.push(Event::Invoke {
            id,
            client: self.id,
            time_us: self.recorder.now_us(),
            key: key.to_string(),
            op: OpKind::Write,
            value: Some(value.clone()),
            context: Some(history_clock(&context.clock)),
            level: Some(format!("W={level}")),
            r#final: false,
            overwrite,
            context_from: context.from,
        });
        let drawn = self.rng.gen_range(0..self.coordinators);
        let first = coordinator.unwrap_or(drawn);
        let request = WriteRequest {
            key: key.to_string(),
            value,
            context: context.token,
            level,
            overwrite,
        };
        let result = self.client.write(request, first).await;
        let time_us = self.recorder.now_us();
        let (event, handed_out) = match result {
            // The siblings the answer listed after the write and the
            // context that supersedes them, as a real client records them
            // (moved, not copied: they may hold big values).
            Ok(ok) => {
                let values = ok.siblings.into_iter().map(observed_owned).collect();
                let version = Some(observed(&ok.version));
                let (event, context) =
                    self.answered(id, time_us, values, version, ok.context, ok.token);
                (event, Some(context))
            }
            Err(e) => (self.failed(id, time_us, &e, true), None),
        };
        self.recorder.push(event);
        handed_out
    }

    /// The completion of operation `id`, answered with `values` (and, for
    /// a write, its `version`), and the context the answer handed out.
    fn answered(
        &self,
        id: u64,
        time_us: u64,
        values: Vec<ObservedVersion>,
        version: Option<ObservedVersion>,
        context: VersionVector,
        token: String,
    ) -> (Event, SentContext) {
        let event = Event::Complete {
            id,
            client: self.id,
            time_us,
            outcome: Outcome::Ok,
            values,
            version,
            context: Some(history_clock(&context)),
            error: None,
            invalid: false,
        };
        let handed_out = SentContext {
            clock: context,
            token: Some(token),
            from: Some(id),
        };
        (event, handed_out)
    }

    /// The completion of operation `id` (a write if `write`), which failed.
    fn failed(&self, id: u64, time_us: u64, error: &ClientError, write: bool) -> Event {
        Event::Complete {
            id,
            client: self.id,
            time_us,
            outcome: failure_outcome(error, write),
            values: Vec::new(),
            version: None,
            context: None,
            error: Some(error.to_string()),
            invalid: refused_as_invalid(error),
        }
    }

    /// The client's `written`-th value: unique, with up to the mix's
    /// padding (drawn only when the mix pads, so that the default mix
    /// draws nothing more).
    fn value(&mut self, written: u64) -> String {
        let mut value = format!("c{}-{written}", self.id);
        if self.mix.value_padding > 0 {
            let padding = self.rng.gen_range(0..=self.mix.value_padding);
            value.push('-');
            value.extend(std::iter::repeat_n('p', padding));
        }
        value
    }

    /// Run `operations` operations over `keys`, the first `hot` of which
    /// get most of the traffic.
    pub async fn run(mut self, operations: usize, keys: &[String], hot: usize) {
        let mut written = 0u64;
        let mut done = 0;
        while done < operations {
            let think = Duration::from_millis(self.rng.gen_range(0..self.mix.think_ms));
            tokio::time::sleep(think).await;
            let hot_share = f64::from(self.mix.hot_percent) / 100.0;
            let key = if hot > 0 && (hot == keys.len() || self.rng.gen_bool(hot_share)) {
                keys[self.rng.gen_range(0..hot)].clone()
            } else {
                keys[self.rng.gen_range(hot..keys.len())].clone()
            };
            let mischief = self.adversary.next(&mut self.rng, &key, &keys[..hot]);
            if !mischief.is_empty() {
                for bad in mischief {
                    if done >= operations {
                        break;
                    }
                    let mut value = format!("c{}-{written}", self.id);
                    if bad.padding > 0 {
                        value.push('-');
                        value.extend(std::iter::repeat_n('x', bad.padding));
                    }
                    written += 1;
                    self.write(&bad.key, value, bad.context, false, bad.coordinator)
                        .await;
                    done += 1;
                }
                continue;
            }
            let roll: f64 = self.rng.gen();
            let read_level = self.levels.read;
            let reads = f64::from(self.mix.read_percent) / 100.0;
            let blind =
                f64::from(u16::from(self.mix.read_percent) + u16::from(self.mix.blind_percent))
                    / 100.0;
            if roll < reads {
                self.read(&key, read_level, false).await;
                done += 1;
            } else if roll < blind {
                let value = self.value(written);
                written += 1;
                let overwrite = self.overwrite;
                self.write(&key, value, SentContext::default(), overwrite, None)
                    .await;
                done += 1;
            } else {
                let context = self.read(&key, read_level, false).await;
                done += 1;
                let mut context = context;
                while let Some(sent) = context.take() {
                    if done >= operations {
                        break;
                    }
                    let value = self.value(written);
                    written += 1;
                    let handed_out = self.write(&key, value, sent, false, None).await;
                    done += 1;
                    // Drawn only when the mix chains, so that the
                    // standard mix draws nothing more.
                    let chain = f64::from(self.mix.chain_percent) / 100.0;
                    if chain > 0.0 && self.rng.gen_bool(chain) {
                        context = handed_out;
                    }
                }
            }
        }
    }
}
