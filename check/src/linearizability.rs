//! Linearizability: Wing & Gong's search with Lowe's memoisation (as in
//! Porcupine), partitioned per key.
//!
//! Per key, every kept operation becomes a call entry (at `invoke_us`) and a
//! return entry (at `complete_us`; at +∞ for operations that timed out or
//! never completed, so they may take effect anywhere after their invocation
//! or never: at the very end nothing observes them). Entries at the same
//! time put calls first, so operations that merely touch are concurrent.
//!
//! The search walks the entry list: at a call it tries to linearize that
//! operation next (the model allows it, and the pair (linearized set, model
//! states) is not in the cache), lifting its entries out of the list; at a
//! return it must backtrack, since that operation returned before being
//! linearized. Nondeterministic models are searched over *sets* of states
//! (the powerset construction), so the cache stays exact.
//!
//! Each key has a step budget and a bound on the memory its cache may
//! take; exhausting either makes the key (and the verdict, unless another
//! key is a definite violation) `Unknown`. The search may also stop at the
//! first key without a linearization (as Porcupine does), leaving the rest
//! unchecked.
use super::common::{group_by_key, splitmix64, FxBuild, FxHashSet, OpSummary, MAX_PRINTED};
use super::models::{Interner, Model};
use quorumlog_history::{History, OperationRef};
use serde::Serialize;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

/// How long, and in how much memory, the search may run before answering
/// `Unknown`; and whether it stops at the first violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Search steps per key (one step: one entry visited).
    pub steps_per_key: u64,
    /// Search steps over the whole history.
    pub total_steps: u64,
    /// Bytes one key's memo cache may hold (counted from the entries'
    /// linearized-set bits and model states).
    pub cache_bytes_per_key: usize,
    /// Stop at the first key without a linearization; the keys after it
    /// are not checked.
    pub stop_at_first_violation: bool,
}

/// The memory one key's search may take unless told otherwise.
pub const DEFAULT_CACHE_BYTES_PER_KEY: usize = 1 << 30;

impl Budget {
    pub const fn steps_per_key(steps: u64) -> Self {
        Budget {
            steps_per_key: steps,
            total_steps: u64::MAX,
            cache_bytes_per_key: DEFAULT_CACHE_BYTES_PER_KEY,
            stop_at_first_violation: false,
        }
    }

    pub const fn unlimited() -> Self {
        Budget {
            steps_per_key: u64::MAX,
            total_steps: u64::MAX,
            cache_bytes_per_key: usize::MAX,
            stop_at_first_violation: false,
        }
    }
}

impl Default for Budget {
    /// Two million steps per key, two hundred million in all (seconds, not
    /// minutes, on one core), a GiB of cache per key.
    fn default() -> Self {
        Budget {
            steps_per_key: 2_000_000,
            total_steps: 200_000_000,
            cache_bytes_per_key: DEFAULT_CACHE_BYTES_PER_KEY,
            stop_at_first_violation: false,
        }
    }
}

impl From<u64> for Budget {
    fn from(steps_per_key: u64) -> Self {
        Budget::steps_per_key(steps_per_key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinVerdict {
    Linearizable,
    NotLinearizable,
    /// The search budget ran out (or the model could not express some
    /// operation) before an answer.
    Unknown,
}

impl fmt::Display for LinVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinVerdict::Linearizable => "linearizable",
            LinVerdict::NotLinearizable => "not linearizable",
            LinVerdict::Unknown => "linearizability unknown",
        })
    }
}

/// An operation that could not come next after the longest prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckOp {
    pub op: OpSummary,
    /// Whether the model allows it right after the prefix (then it leads
    /// to a dead end later); otherwise the model rejects it there.
    pub allowed_by_model: bool,
}

/// One key's history that has no linearization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinViolation {
    pub key: String,
    /// Operations of this key the search considered.
    pub operations: usize,
    /// Length of the longest linearizable prefix found.
    pub prefix_len: usize,
    /// Its last operations, in linearization order (at most twenty).
    pub prefix_tail: Vec<OpSummary>,
    /// The model state after it.
    pub state: String,
    /// The operations that could come next in real time, in time order;
    /// none of them leads to a complete linearization.
    pub stuck: Vec<StuckOp>,
}

impl fmt::Display for LinViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  key {:?}: {} operations; longest linearizable prefix has {} operation(s)",
            self.key, self.operations, self.prefix_len
        )?;
        if self.prefix_len > self.prefix_tail.len() {
            writeln!(
                f,
                "    prefix (last {} of {}):",
                self.prefix_tail.len(),
                self.prefix_len
            )?;
        } else if self.prefix_len > 0 {
            writeln!(f, "    prefix:")?;
        }
        for op in &self.prefix_tail {
            writeln!(f, "      {op}")?;
        }
        writeln!(f, "    state after the prefix: {}", self.state)?;
        writeln!(f, "    none of these can come next:")?;
        for s in &self.stuck {
            let why = if s.allowed_by_model {
                "allowed here, but leads to a dead end"
            } else {
                "impossible in this state"
            };
            writeln!(f, "      {} ({why})", s.op)?;
        }
        Ok(())
    }
}

/// A key the search gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownKey {
    pub key: String,
    pub operations: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinReport {
    pub model: String,
    pub verdict: LinVerdict,
    pub keys: usize,
    /// Operations the search considered (failed ones and failed reads are
    /// dropped).
    pub operations: usize,
    pub steps: u64,
    /// Keys without a linearization, sorted by key.
    pub violations: Vec<LinViolation>,
    pub unknown: Vec<UnknownKey>,
    /// Keys left unchecked after the first violation (when the budget
    /// says to stop there).
    pub unchecked_keys: usize,
}

impl LinReport {
    pub fn is_ok(&self) -> bool {
        self.verdict == LinVerdict::Linearizable
    }
}

impl fmt::Display for LinReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "linearizability ({} model): {} operations over {} keys, {} search steps: {}",
            self.model, self.operations, self.keys, self.steps, self.verdict
        )?;
        for v in self.violations.iter().take(MAX_PRINTED) {
            write!(f, "{v}")?;
        }
        if self.violations.len() > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more keys without a linearization",
                self.violations.len() - MAX_PRINTED
            )?;
        }
        for u in self.unknown.iter().take(MAX_PRINTED) {
            writeln!(
                f,
                "  key {:?} ({} operations) undecided: {}",
                u.key, u.operations, u.reason
            )?;
        }
        if self.unknown.len() > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more undecided keys",
                self.unknown.len() - MAX_PRINTED
            )?;
        }
        if self.unchecked_keys > 0 {
            writeln!(
                f,
                "  stopped at the first key without a linearization: {} keys not checked",
                self.unchecked_keys
            )?;
        }
        Ok(())
    }
}

pub fn check_linearizability<M: Model>(history: &History, model: &M, budget: Budget) -> LinReport {
    check_linearizability_ops(&history.operation_refs(), model, budget)
}

/// [`check_linearizability`] over already paired operations.
pub fn check_linearizability_ops<M: Model>(
    ops: &[OperationRef<'_>],
    model: &M,
    budget: Budget,
) -> LinReport {
    let mut report = LinReport {
        model: model.name().to_string(),
        verdict: LinVerdict::Linearizable,
        keys: 0,
        operations: 0,
        steps: 0,
        violations: Vec::new(),
        unknown: Vec::new(),
        unchecked_keys: 0,
    };
    let groups = group_by_key(ops);
    let key_count = groups.len();
    for (key, group) in groups {
        if budget.stop_at_first_violation && !report.violations.is_empty() {
            report.unchecked_keys = key_count - report.keys;
            break;
        }
        report.keys += 1;
        let key_ops: Vec<OperationRef<'_>> = group.iter().map(|&i| ops[i]).collect();
        let mut names = Interner::new();
        let prepared = match model.prepare(&key_ops, &mut names) {
            Ok(p) => p,
            Err(reason) => {
                report.unknown.push(UnknownKey {
                    key: key.to_string(),
                    operations: key_ops.len(),
                    reason,
                });
                continue;
            }
        };
        let (kept, model_ops): (Vec<OperationRef<'_>>, Vec<M::Op>) = key_ops
            .iter()
            .zip(prepared)
            .filter_map(|(op, p)| p.map(|p| (*op, p)))
            .unzip();
        report.operations += kept.len();
        let remaining = budget.total_steps.saturating_sub(report.steps);
        if remaining == 0 {
            report.unknown.push(UnknownKey {
                key: key.to_string(),
                operations: kept.len(),
                reason: "the total search budget was exhausted before this key".to_string(),
            });
            continue;
        }
        let limit = budget.steps_per_key.min(remaining);
        let mut search = Search::new(model, &kept, &model_ops, false);
        let outcome = search.run(limit, budget.cache_bytes_per_key);
        report.steps += search.steps;
        match outcome {
            Outcome::Linearizable => {}
            Outcome::Exhausted => report.unknown.push(UnknownKey {
                key: key.to_string(),
                operations: kept.len(),
                reason: format!("search budget of {limit} steps exhausted"),
            }),
            Outcome::OutOfMemory => report.unknown.push(UnknownKey {
                key: key.to_string(),
                operations: kept.len(),
                reason: format!(
                    "search memory bound of {} bytes reached",
                    budget.cache_bytes_per_key
                ),
            }),
            Outcome::Violation => {
                // The search again, the same steps in the same order, this
                // time keeping its longest linearized prefix for the
                // explanation: keeping it on every search copied the whole
                // prefix each time it grew, for the few keys that fail.
                let mut explained = Search::new(model, &kept, &model_ops, true);
                let again = explained.run(limit, budget.cache_bytes_per_key);
                debug_assert!(matches!(again, Outcome::Violation));
                report.violations.push(explained.explain(key, &names));
            }
        }
    }
    report.verdict = if !report.violations.is_empty() {
        LinVerdict::NotLinearizable
    } else if !report.unknown.is_empty() {
        LinVerdict::Unknown
    } else {
        LinVerdict::Linearizable
    };
    report
}

enum Outcome {
    Linearizable,
    Violation,
    Exhausted,
    OutOfMemory,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// One memoised configuration: which operations are linearized and the
/// possible model states. `hash` is precomputed (Zobrist over the bits).
struct CacheEntry<S> {
    hash: u64,
    bits: Box<[u64]>,
    states: Vec<S>,
}

impl<S> Hash for CacheEntry<S> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<S: Eq> PartialEq for CacheEntry<S> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.bits == other.bits && self.states == other.states
    }
}

impl<S: Eq> Eq for CacheEntry<S> {}

struct Search<'m, 'o, 'h, M: Model> {
    model: &'m M,
    ops: &'o [OperationRef<'h>],
    model_ops: &'o [M::Op],
    /// Entry list: node 0 is the head; node `1 + 2i` is op i's call, `2 + 2i`
    /// its return. `next`/`prev` form the doubly linked list in time order.
    next: Vec<usize>,
    prev: Vec<usize>,
    zobrist: Vec<u64>,
    steps: u64,
    /// Whether to keep the longest linearized prefix (`best`) and its
    /// states, which only explaining a violation reads.
    track_best: bool,
    best: Vec<u32>,
    best_states: Vec<M::State>,
}

fn call_node(op: usize) -> usize {
    1 + 2 * op
}

fn return_node(op: usize) -> usize {
    2 + 2 * op
}

fn op_of(node: usize) -> (usize, bool) {
    ((node - 1) / 2, node % 2 == 1)
}

impl<'m, 'o, 'h, M: Model> Search<'m, 'o, 'h, M> {
    fn new(
        model: &'m M,
        ops: &'o [OperationRef<'h>],
        model_ops: &'o [M::Op],
        track_best: bool,
    ) -> Self {
        let n = ops.len();
        // (time, is_return, op): calls before returns at equal times.
        let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.invoke_us, false, i));
            let end = if op.is_indeterminate() {
                u64::MAX
            } else {
                op.complete_us.unwrap_or(u64::MAX)
            };
            entries.push((end.max(op.invoke_us), true, i));
        }
        entries.sort_unstable();
        let mut next = vec![NIL; 2 * n + 1];
        let mut prev = vec![NIL; 2 * n + 1];
        let mut last = HEAD;
        for &(_, is_return, i) in &entries {
            let node = if is_return {
                return_node(i)
            } else {
                call_node(i)
            };
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        let zobrist = (0..n as u64)
            .map(|i| splitmix64(i ^ 0x5eed_f11e_a700))
            .collect();
        Search {
            model,
            ops,
            model_ops,
            next,
            prev,
            zobrist,
            steps: 0,
            track_best,
            best: Vec::new(),
            best_states: vec![model.init()],
        }
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(call_node(op));
        self.unlink(return_node(op));
    }

    fn unlift(&mut self, op: usize) {
        self.relink(return_node(op));
        self.relink(call_node(op));
    }

    fn step_all(&self, states: &[M::State], op: usize) -> Vec<M::State> {
        let mut next = Vec::new();
        for s in states {
            self.model.step(s, &self.model_ops[op], &mut next);
        }
        if next.len() > 1 {
            next.sort_unstable();
            next.dedup();
        }
        next
    }

    fn run(&mut self, limit: u64, max_cache_bytes: usize) -> Outcome {
        let n = self.ops.len();
        let mut cache_bytes = 0usize;
        let mut bits = vec![0u64; n.div_ceil(64)];
        let mut bits_hash = 0u64;
        let mut states = vec![self.model.init()];
        let mut stack: Vec<(usize, Vec<M::State>)> = Vec::new();
        let mut cache: FxHashSet<CacheEntry<M::State>> = FxHashSet::default();
        let build = FxBuild::default();
        let mut entry = self.next[HEAD];
        while self.next[HEAD] != NIL {
            self.steps += 1;
            if self.steps > limit {
                return Outcome::Exhausted;
            }
            if entry == NIL {
                // Cannot happen: every remaining call precedes its return.
                return Outcome::Violation;
            }
            let (op, is_call) = op_of(entry);
            if is_call {
                let next_states = self.step_all(&states, op);
                if !next_states.is_empty() {
                    bits[op / 64] |= 1 << (op % 64);
                    let new_hash = bits_hash ^ self.zobrist[op];
                    let candidate = CacheEntry {
                        hash: new_hash ^ build.hash_one(&next_states).rotate_left(17),
                        bits: bits.clone().into_boxed_slice(),
                        states: next_states,
                    };
                    if !cache.contains(&candidate) {
                        let next_states = candidate.states.clone();
                        cache_bytes = cache_bytes.saturating_add(
                            std::mem::size_of::<CacheEntry<M::State>>()
                                + candidate.bits.len() * 8
                                + candidate.states.len() * std::mem::size_of::<M::State>(),
                        );
                        if cache_bytes > max_cache_bytes {
                            return Outcome::OutOfMemory;
                        }
                        cache.insert(candidate);
                        bits_hash = new_hash;
                        stack.push((op, std::mem::replace(&mut states, next_states)));
                        self.lift(op);
                        if self.track_best && stack.len() > self.best.len() {
                            self.best = stack.iter().map(|(o, _)| *o as u32).collect();
                            self.best_states = states.clone();
                        }
                        entry = self.next[HEAD];
                        continue;
                    }
                    bits[op / 64] &= !(1 << (op % 64));
                }
                entry = self.next[entry];
            } else {
                // The first pending return: its operation was not
                // linearized in time, backtrack.
                let Some((op, previous)) = stack.pop() else {
                    return Outcome::Violation;
                };
                states = previous;
                bits[op / 64] &= !(1 << (op % 64));
                bits_hash ^= self.zobrist[op];
                self.unlift(op);
                entry = self.next[call_node(op)];
            }
        }
        Outcome::Linearizable
    }

    fn explain(&self, key: &str, names: &Interner) -> LinViolation {
        let n = self.ops.len();
        let mut done = vec![false; n];
        for &op in &self.best {
            done[op as usize] = true;
        }
        let deadline = (0..n)
            .filter(|&i| !done[i])
            .map(|i| {
                let op = &self.ops[i];
                if op.is_indeterminate() {
                    u64::MAX
                } else {
                    op.complete_us.unwrap_or(u64::MAX)
                }
            })
            .min()
            .unwrap_or(u64::MAX);
        let mut stuck: Vec<usize> = (0..n)
            .filter(|&i| !done[i] && self.ops[i].invoke_us <= deadline)
            .collect();
        stuck.sort_by_key(|&i| (self.ops[i].invoke_us, self.ops[i].id));
        const TAIL: usize = 20;
        let tail_from = self.best.len().saturating_sub(TAIL);
        LinViolation {
            key: key.to_string(),
            operations: n,
            prefix_len: self.best.len(),
            prefix_tail: self.best[tail_from..]
                .iter()
                .map(|&i| OpSummary::of(&self.ops[i as usize]))
                .collect(),
            state: self
                .best_states
                .iter()
                .map(|s| self.model.describe_state(s, names))
                .collect::<Vec<_>>()
                .join(" or "),
            stuck: stuck
                .into_iter()
                .take(TAIL)
                .map(|i| StuckOp {
                    op: OpSummary::of(&self.ops[i]),
                    allowed_by_model: !self.step_all(&self.best_states, i).is_empty(),
                })
                .collect(),
        }
    }
}
