//! A deterministic generator of histories that a correct (atomic) quorumlog
//! would produce, for tests and benchmarks: clients issue reads, blind
//! writes and read-then-writes against one in-memory sibling store, every
//! operation takes effect at one instant between its invocation and its
//! completion, and some writes time out (applied or not) or are refused.
//! Every generated history is therefore linearizable under the
//! multi-value-register model, has no stale reads and loses nothing.
//!
//! The same seed always gives the same history.
//!
//! The store is a few lines of dotted-version-vector logic written here on
//! the history's own types, not the core's: the checkers' test histories
//! must not inherit a bug of the system they judge.
use quorumlog_history::{
    Actor, Clock, Dot, Event, History, ObservedVersion, OpKind, Outcome, HISTORY_FORMAT,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::collections::BinaryHeap;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    pub seed: u64,
    /// Client operations (final reads come on top).
    pub ops: usize,
    pub keys: usize,
    pub clients: u32,
    /// Replicas minting dots (`n1..=nodes`).
    pub nodes: u32,
    /// Incarnations each replica mints under (`0..incarnations`): 1 gives
    /// the dots of a cluster that never lost a disk.
    pub incarnations: u32,
    /// Fraction of operations that are reads.
    pub read_ratio: f64,
    /// Fraction of writes that are blind (empty context); the others are
    /// read-then-writes (a read, then a write with the context it returned:
    /// two operations).
    pub blind_write_ratio: f64,
    /// Fraction of writes that time out (half of them apply anyway).
    pub timeout_ratio: f64,
    /// Fraction of operations refused as unavailable.
    pub unavailable_ratio: f64,
    /// End with a quiescent final read of every key.
    pub final_reads: bool,
    /// Latency of each half (invoke→effect, effect→complete), µs.
    pub max_half_latency_us: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 0,
            ops: 1_000,
            keys: 10,
            clients: 4,
            nodes: 5,
            incarnations: 1,
            read_ratio: 0.5,
            blind_write_ratio: 0.1,
            timeout_ratio: 0.01,
            unavailable_ratio: 0.01,
            final_reads: true,
            max_half_latency_us: 500,
        }
    }
}

impl GenConfig {
    /// `ops` operations over `keys` keys by `clients` clients.
    pub fn new(seed: u64, ops: usize, keys: usize, clients: u32) -> Self {
        GenConfig {
            seed,
            ops,
            keys,
            clients,
            ..GenConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The client is ready to invoke its next operation.
    Invoke { client: u32 },
    /// The pending operation of `client` takes effect.
    Apply { client: u32 },
    /// The pending operation of `client` completes.
    Complete { client: u32 },
}

/// A stored version: its value, dot and the context its writer sent.
#[derive(Debug, Clone)]
struct Version {
    value: String,
    dot: Dot,
    context: Clock,
}

/// One key's sibling set, as an atomic dotted-version-vector store keeps
/// it.
#[derive(Debug, Clone, Default)]
struct Siblings {
    versions: Vec<Version>,
    /// The highest counter ever minted per actor for this key, so no dot is
    /// ever minted twice.
    minted: BTreeMap<Actor, u64>,
}

impl Siblings {
    /// The merged context a read hands out: every version's context and
    /// dot.
    fn context(&self) -> Clock {
        let mut clock = Clock::new();
        for v in &self.versions {
            clock.join_in_place(&v.context);
            clock.add(v.dot);
        }
        clock
    }

    /// Write `value` with `context`: a fresh dot of `actor`; the versions
    /// the context covers are replaced, the others stay as siblings.
    fn write(&mut self, actor: Actor, context: &Clock, value: String) -> Version {
        let minted = self.minted.entry(actor).or_insert(0);
        let counter = (*minted).max(context.get(actor)) + 1;
        *minted = counter;
        let version = Version {
            value,
            dot: Dot::new(actor, counter),
            context: context.clone(),
        };
        self.versions.retain(|v| !context.covers(v.dot));
        let at = self.versions.partition_point(|v| v.dot < version.dot);
        self.versions.insert(at, version.clone());
        version
    }
}

struct Pending {
    id: u64,
    key: usize,
    kind: OpKind,
    value: Option<String>,
    context: Clock,
    outcome: Outcome,
    applies: bool,
    /// A read whose context the client's next operation writes with.
    then_write: bool,
    read: Option<(Vec<Version>, Clock)>,
    written: Option<Version>,
}

fn observed(v: &Version) -> ObservedVersion {
    ObservedVersion {
        value: v.value.clone(),
        dot: Some(v.dot),
        context: Some(v.context.clone()),
    }
}

/// Generate a history from `config`.
pub fn generate(config: &GenConfig) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let keys = config.keys.max(1);
    let clients = config.clients.max(1);
    let nodes = config.nodes.max(1);
    let key_names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
    let incarnations = config.incarnations.max(1);
    let mut store: Vec<Siblings> = vec![Siblings::default(); keys];
    let mut follow_ups: Vec<Option<(usize, Clock)>> = vec![None; clients as usize];
    let mut pending: Vec<Option<Pending>> = (0..clients).map(|_| None).collect();
    let mut written = vec![0u64; clients as usize];
    let mut history = History::new();
    history.push(Event::Header {
        format: HISTORY_FORMAT,
        scenario: Some("generated".to_string()),
        seed: Some(config.seed),
        n: Some(nodes as usize),
    });
    let mut queue: BinaryHeap<Reverse<(u64, u64, Step)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, Step)>>, time: u64, step: Step| {
        seq += 1;
        queue.push(Reverse((time, seq, step)));
    };
    for client in 0..clients {
        push(&mut queue, rng.gen_range(0..100), Step::Invoke { client });
    }
    let mut issued = 0usize;
    let mut next_id = 0u64;
    let mut now = 0u64;
    let half = config.max_half_latency_us.max(2);
    let mut finals: Vec<usize> = Vec::new();
    loop {
        let Some(Reverse((time, _, step))) = queue.pop() else {
            // Quiescent: the final reads, one key after another by client 0.
            if config.final_reads && finals.is_empty() && keys > 0 {
                finals = (0..keys).rev().collect();
            }
            let Some(key) = finals.pop() else { break };
            let id = next_id;
            next_id += 1;
            let t = now + 1_000;
            history.push(Event::Invoke {
                id,
                client: 0,
                time_us: t,
                key: key_names[key].clone(),
                op: OpKind::Read,
                value: None,
                context: None,
                level: Some("ALL".to_string()),
                r#final: true,
                overwrite: false,
                context_from: None,
            });
            let set = &store[key];
            history.push(Event::Complete {
                id,
                client: 0,
                time_us: t + 10,
                outcome: Outcome::Ok,
                values: set.versions.iter().map(observed).collect(),
                version: None,
                context: Some(set.context()),
                error: None,
                invalid: false,
            });
            now = t + 10;
            if finals.is_empty() {
                break;
            }
            continue;
        };
        now = time;
        match step {
            Step::Invoke { client } => {
                if issued >= config.ops {
                    continue;
                }
                issued += 1;
                let id = next_id;
                next_id += 1;
                // A read-then-write writes with the context its read returned;
                // otherwise: a plain read, a blind write, or the read of a
                // read-then-write.
                let follow_up = follow_ups[client as usize].take();
                let (key, kind, value, context, then_write) = match follow_up {
                    Some((key, context)) => {
                        let n = written[client as usize];
                        written[client as usize] += 1;
                        (
                            key,
                            OpKind::Write,
                            Some(format!("c{client}-{n}")),
                            context,
                            false,
                        )
                    }
                    None => {
                        let key = rng.gen_range(0..keys);
                        if rng.gen_bool(config.read_ratio.clamp(0.0, 1.0)) {
                            (key, OpKind::Read, None, Clock::new(), false)
                        } else if rng.gen_bool(config.blind_write_ratio.clamp(0.0, 1.0)) {
                            let n = written[client as usize];
                            written[client as usize] += 1;
                            (
                                key,
                                OpKind::Write,
                                Some(format!("c{client}-{n}")),
                                Clock::new(),
                                false,
                            )
                        } else {
                            (key, OpKind::Read, None, Clock::new(), true)
                        }
                    }
                };
                let is_read = kind == OpKind::Read;
                let unavailable = rng.gen_bool(config.unavailable_ratio.clamp(0.0, 1.0));
                history.push(Event::Invoke {
                    id,
                    client,
                    time_us: time,
                    key: key_names[key].clone(),
                    op: kind,
                    value: value.clone(),
                    context: if kind == OpKind::Write {
                        Some(context.clone())
                    } else {
                        None
                    },
                    level: Some(if is_read { "R=3" } else { "W=3" }.to_string()),
                    r#final: false,
                    overwrite: false,
                    context_from: None,
                });
                let timeout =
                    !is_read && !unavailable && rng.gen_bool(config.timeout_ratio.clamp(0.0, 1.0));
                let (outcome, applies) = if unavailable {
                    (Outcome::Unavailable, false)
                } else if timeout {
                    (Outcome::Timeout, rng.gen_bool(0.5))
                } else {
                    (Outcome::Ok, true)
                };
                pending[client as usize] = Some(Pending {
                    id,
                    key,
                    kind,
                    value,
                    context,
                    outcome,
                    applies,
                    then_write,
                    read: None,
                    written: None,
                });
                if unavailable {
                    push(&mut queue, time + 1, Step::Complete { client });
                } else {
                    push(
                        &mut queue,
                        time + rng.gen_range(1..half),
                        Step::Apply { client },
                    );
                }
            }
            Step::Apply { client } => {
                let Some(p) = pending[client as usize].as_mut() else {
                    continue;
                };
                let set = &mut store[p.key];
                if p.kind == OpKind::Read {
                    p.read = Some((set.versions.clone(), set.context()));
                } else if p.applies {
                    let node = rng.gen_range(1..=nodes);
                    let incarnation = if incarnations > 1 {
                        rng.gen_range(0..incarnations)
                    } else {
                        0
                    };
                    let actor = Actor::new(node, incarnation);
                    let value = p.value.clone().unwrap_or_default();
                    p.written = Some(set.write(actor, &p.context, value));
                }
                let delay = if p.outcome == Outcome::Timeout {
                    5 * half
                } else {
                    rng.gen_range(1..half)
                };
                push(&mut queue, time + delay, Step::Complete { client });
            }
            Step::Complete { client } => {
                let Some(p) = pending[client as usize].take() else {
                    continue;
                };
                let mut values = Vec::new();
                let mut context = None;
                let mut version = None;
                if p.outcome == Outcome::Ok {
                    if let Some((versions, ctx)) = &p.read {
                        values = versions.iter().map(observed).collect();
                        context = Some(ctx.clone());
                        if p.then_write {
                            follow_ups[client as usize] = Some((p.key, ctx.clone()));
                        }
                    }
                    version = p.written.as_ref().map(observed);
                }
                history.push(Event::Complete {
                    id: p.id,
                    client,
                    time_us: time,
                    outcome: p.outcome,
                    values,
                    version,
                    context,
                    error: match p.outcome {
                        Outcome::Ok => None,
                        Outcome::Timeout => Some("timed out".to_string()),
                        _ => Some("not enough replicas".to_string()),
                    },
                    invalid: false,
                });
                push(
                    &mut queue,
                    time + rng.gen_range(0..100),
                    Step::Invoke { client },
                );
            }
        }
    }
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check_history, LinVerdict};

    #[test]
    fn same_seed_same_history() {
        let config = GenConfig::new(3, 300, 5, 4);
        assert_eq!(generate(&config), generate(&config));
        assert_ne!(
            generate(&config),
            generate(&GenConfig {
                seed: 4,
                ..config.clone()
            })
        );
    }

    #[test]
    fn generated_histories_pass_every_checker() {
        for seed in 0..20 {
            let history = generate(&GenConfig {
                timeout_ratio: 0.05,
                ..GenConfig::new(seed, 400, 4, 5)
            });
            let text = history.to_jsonl();
            let parsed = History::read_jsonl(text.as_bytes()).expect("generated history parses");
            assert_eq!(parsed, history);
            let summary = check_history(&history);
            assert!(summary.is_ok(), "seed {seed}:\n{summary}");
            assert_eq!(
                summary.linearizable,
                LinVerdict::Linearizable,
                "seed {seed}:\n{summary}"
            );
            assert!(summary.durability.keys_checked > 0);
        }
    }
}
