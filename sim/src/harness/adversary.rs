//! Adversarial clients: on a seed-drawn share of its writes, a simulated
//! client misbehaves the way careless or hostile clients of a real cluster
//! do — contexts from other keys, stale and forged contexts, counters at
//! the overflow boundary, values near the key's byte limit, bursts of blind
//! writes to one hot key. Whatever the system does with them, the checkers
//! judge the history as usual: a refused write had no effect, an accepted
//! one must keep every promise.
//!
//! Contexts travel as the tokens the cluster signs, so a made-up context
//! is a token signed with a secret that is not the cluster's: what a
//! client without the secret can send.
use super::workload::SentContext;
use quorumlog_core::context::{self, ContextSecret};
use quorumlog_core::version::MAX_COUNTER;
use quorumlog_core::{Actor, VersionVector};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// How many contexts a client remembers per key (for stale contexts).
const REMEMBERED: usize = 4;

/// One kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mischief {
    /// A context this client read from another key.
    OtherKeyContext,
    /// An older context of this key (legitimate, makes siblings).
    StaleContext,
    /// Made-up actors and counters.
    ForgedContext,
    /// Entries at or past the largest counter a node mints.
    HugeCounter,
    /// A value of a sizeable share of the key's byte limit.
    BigValue,
    /// A run of blind writes to one hot key.
    BlindBurst,
}

const EVERY: [Mischief; 6] = [
    Mischief::OtherKeyContext,
    Mischief::StaleContext,
    Mischief::ForgedContext,
    Mischief::HugeCounter,
    Mischief::BigValue,
    Mischief::BlindBurst,
];

/// What a client remembers to misbehave with, and how often it does.
pub struct Adversary {
    /// Share of write decisions that misbehave (0: a polite client).
    pub share: f64,
    /// Bytes a big value takes.
    pub big_value: std::ops::Range<usize>,
    /// Nodes of the cluster (for forged actors).
    pub nodes: u32,
    contexts: BTreeMap<String, Vec<SentContext>>,
}

/// What forged tokens are signed with: not the cluster's secret.
const FORGER_SECRET: ContextSecret = ContextSecret::from_bytes([0xad; 32]);

/// A made-up context for `key`, as a client without the secret can send it.
fn forged(key: &str, clock: VersionVector) -> SentContext {
    SentContext {
        token: Some(context::encode(&FORGER_SECRET, key, &clock)),
        clock,
        from: None,
    }
}

/// One write the adversary wants made.
pub struct BadWrite {
    pub key: String,
    /// Appended to the unique value (padding for big values).
    pub padding: usize,
    pub context: SentContext,
    /// Send it to this coordinator (by position) rather than a random one:
    /// a burst hammers one node, as a misbehaving client pinned to it does.
    pub coordinator: Option<usize>,
}

impl Adversary {
    pub fn new(share: f64, big_value: std::ops::Range<usize>, nodes: u32) -> Self {
        Adversary {
            share,
            big_value,
            nodes,
            contexts: BTreeMap::new(),
        }
    }

    /// Remember a context a read of `key` returned. A client that never
    /// misbehaves never uses one, so it remembers none.
    pub fn saw(&mut self, key: &str, context: &SentContext) {
        if self.share <= 0.0 {
            return;
        }
        // The key is copied only the first time it is seen.
        let seen = match self.contexts.get_mut(key) {
            Some(seen) => seen,
            None => self.contexts.entry(key.to_string()).or_default(),
        };
        seen.push(context.clone());
        if seen.len() > REMEMBERED {
            seen.remove(0);
        }
    }

    /// Whether the next write misbehaves, and how: `None` for a polite one.
    /// Draws nothing from `rng` when the share is 0, so polite runs keep
    /// their random sequence.
    pub fn next(&mut self, rng: &mut ChaCha8Rng, key: &str, hot: &[String]) -> Vec<BadWrite> {
        if self.share <= 0.0 || !rng.gen_bool(self.share) {
            return Vec::new();
        }
        let mischief = *EVERY.choose(rng).unwrap_or(&Mischief::ForgedContext);
        // A context the adversary sends is never one it was handed for
        // this write: it names no operation it came from.
        let write = |key: &str, padding: usize, context: SentContext| BadWrite {
            key: key.to_string(),
            padding,
            context: SentContext {
                from: None,
                ..context
            },
            coordinator: None,
        };
        match mischief {
            Mischief::OtherKeyContext => {
                let others: Vec<&SentContext> = self
                    .contexts
                    .iter()
                    .filter(|(k, _)| k.as_str() != key)
                    .flat_map(|(_, v)| v.iter())
                    .collect();
                let context = others.choose(rng).map(|c| (*c).clone()).unwrap_or_default();
                vec![write(key, 0, context)]
            }
            Mischief::StaleContext => {
                let context = self
                    .contexts
                    .get(key)
                    .and_then(|seen| seen.first())
                    .cloned()
                    .unwrap_or_default();
                vec![write(key, 0, context)]
            }
            Mischief::ForgedContext => {
                let entries = rng.gen_range(1..=3);
                let clock = VersionVector::from_entries((0..entries).map(|_| {
                    let actor = Actor::new(rng.gen_range(1..=self.nodes), rng.gen_range(0..3));
                    (actor, rng.gen_range(1..1000u64))
                }));
                vec![write(key, 0, forged(key, clock))]
            }
            Mischief::HugeCounter => {
                let counter = *[u64::MAX, MAX_COUNTER, MAX_COUNTER - 1, u64::MAX / 2]
                    .choose(rng)
                    .unwrap_or(&u64::MAX);
                let actor = Actor::new(rng.gen_range(1..=self.nodes), 0);
                let mut clock = self
                    .contexts
                    .get(key)
                    .and_then(|seen| seen.last())
                    .map(|seen| seen.clock.clone())
                    .unwrap_or_default();
                clock.bump(actor, counter);
                vec![write(key, 0, forged(key, clock))]
            }
            Mischief::BigValue => {
                let padding = rng.gen_range(self.big_value.clone());
                vec![write(key, padding, SentContext::default())]
            }
            Mischief::BlindBurst => {
                let target = hot.choose(rng).map(String::as_str).unwrap_or(key);
                let count = rng.gen_range(5..25);
                let coordinator = rng.gen_range(0..self.nodes as usize);
                (0..count)
                    .map(|_| BadWrite {
                        coordinator: Some(coordinator),
                        ..write(target, 0, SentContext::default())
                    })
                    .collect()
            }
        }
    }
}
