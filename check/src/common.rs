//! Pieces the checkers share: readable operation summaries, distributions,
//! per-key grouping, the "does this read cover that dot" test and the
//! "which write's client-sent context covers that dot" index.
use quorumlog_history::{Actor, Clock, Dot, ObservedVersion, OpKind, OperationRef, Outcome};
use serde::Serialize;
use std::fmt;

/// How many examples a report keeps of each kind of violation.
pub(crate) const MAX_EXAMPLES: usize = 100;
/// How many examples a report prints.
pub(crate) const MAX_PRINTED: usize = 10;

/// One operation as a person reads it in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpSummary {
    pub id: u64,
    pub client: u32,
    pub key: String,
    pub op: OpKind,
    /// What a write/append/cas wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// What a read returned, `value@dot` (empty for an empty read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<String>,
    /// The dot of the version a write created, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dot: Option<String>,
    pub invoke_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_us: Option<u64>,
    /// ok, unavailable, timeout, fail, or pending (never completed).
    pub outcome: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
}

fn show_version(v: &ObservedVersion) -> String {
    match v.dot {
        Some(dot) => format!("{}@{dot}", v.value),
        None => v.value.clone(),
    }
}

fn outcome_name(outcome: Option<Outcome>) -> &'static str {
    outcome.map_or("pending", Outcome::name)
}

impl OpSummary {
    pub fn of(op: &OperationRef<'_>) -> Self {
        OpSummary {
            id: op.id,
            client: op.client,
            key: op.key.to_string(),
            op: op.kind,
            value: op.value.map(str::to_string),
            returned: op.values.iter().map(show_version).collect(),
            dot: op.written_dot().map(|d| d.to_string()),
            invoke_us: op.invoke_us,
            complete_us: op.complete_us,
            outcome: outcome_name(op.outcome).to_string(),
            is_final: op.is_final,
        }
    }
}

impl fmt::Display for OpSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op {} client {} key {:?} {}",
            self.id, self.client, self.key, self.op
        )?;
        if self.is_final {
            write!(f, " (final)")?;
        }
        if let Some(value) = &self.value {
            write!(f, " {value:?}")?;
        }
        if let Some(dot) = &self.dot {
            write!(f, " as {dot}")?;
        }
        if self.op == OpKind::Read && self.outcome == "ok" {
            write!(f, " -> [{}]", self.returned.join(", "))?;
        }
        match self.complete_us {
            Some(end) => write!(f, ", {}..{} us, {}", self.invoke_us, end, self.outcome),
            None => write!(f, ", {}.. us, never completed", self.invoke_us),
        }
    }
}

/// One bucket of a histogram: values in `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub from: u64,
    pub to: u64,
    pub count: usize,
}

/// A summary of a distribution of non-negative integers (counts or
/// microseconds), with power-of-two buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub buckets: Vec<Bucket>,
}

impl Distribution {
    pub fn from_values(mut values: Vec<u64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        let mut buckets: Vec<Bucket> = Vec::new();
        for &v in &values {
            let (from, to) = if v == 0 {
                (0, 0)
            } else {
                let low = 1u64 << (63 - v.leading_zeros());
                (low, low.saturating_mul(2) - 1)
            };
            match buckets.last_mut() {
                Some(b) if b.from == from => b.count += 1,
                _ => buckets.push(Bucket { from, to, count: 1 }),
            }
        }
        Distribution {
            count: values.len(),
            min: values[0],
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: values[values.len() - 1],
            buckets,
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "none");
        }
        write!(
            f,
            "n={} min={} p50={} p90={} p99={} max={}; buckets",
            self.count, self.min, self.p50, self.p90, self.p99, self.max
        )?;
        for b in &self.buckets {
            if b.from == b.to {
                write!(f, " [{}]:{}", b.from, b.count)?;
            } else {
                write!(f, " [{}..{}]:{}", b.from, b.to, b.count)?;
            }
        }
        Ok(())
    }
}

/// Operation indices grouped by key, keys sorted, each group in history
/// (invoke) order.
pub(crate) fn group_by_key<'a>(ops: &[OperationRef<'a>]) -> Vec<(&'a str, Vec<usize>)> {
    let mut groups: FxHashMap<&'a str, Vec<usize>> = FxHashMap::default();
    for (i, op) in ops.iter().enumerate() {
        groups.entry(op.key).or_default().push(i);
    }
    let mut groups: Vec<(&'a str, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
    groups
}

/// The operations of every key, sorted by key, each key with what its
/// writers' contexts may vouch for ([`SentContexts`]), built on first use
/// and then shared: staleness, durability and the store check all judge
/// by it, and it costs as much as any of them.
pub(crate) struct KeyGroups<'a> {
    ops: &'a [OperationRef<'a>],
    groups: Vec<KeyGroup<'a>>,
}

/// One key of [`KeyGroups`].
pub(crate) struct KeyGroup<'a> {
    pub(crate) key: &'a str,
    /// Indices into the operations, in history order.
    pub(crate) ops: Vec<usize>,
    sent: std::sync::OnceLock<SentContexts<'a>>,
}

impl<'a> KeyGroups<'a> {
    pub(crate) fn new(ops: &'a [OperationRef<'a>]) -> Self {
        let groups = group_by_key(ops)
            .into_iter()
            .map(|(key, ops)| KeyGroup {
                key,
                ops,
                sent: std::sync::OnceLock::new(),
            })
            .collect();
        KeyGroups { ops, groups }
    }

    pub(crate) fn groups(&self) -> &[KeyGroup<'a>] {
        &self.groups
    }

    pub(crate) fn operations(&self) -> &'a [OperationRef<'a>] {
        self.ops
    }

    /// What the writers of `group`'s key may vouch with.
    pub(crate) fn sent<'g>(&self, group: &'g KeyGroup<'a>) -> &'g SentContexts<'a> {
        group
            .sent
            .get_or_init(|| SentContexts::new(self.ops, &group.ops))
    }
}

/// What a read's versions cover: the join of their contexts plus their
/// own dots. Some returned version covers dot `d` iff `d` is one of the
/// dots or the joined context covers it (coverage is per actor).
#[derive(Debug, Default, Clone)]
pub(crate) struct Coverage {
    context: Vec<(Actor, u64)>,
    dots: Vec<Dot>,
}

impl Coverage {
    /// Reuse this coverage's buffers for `values`.
    pub(crate) fn fill(&mut self, values: &[ObservedVersion]) {
        self.context.clear();
        self.dots.clear();
        for v in values {
            if let Some(dot) = v.dot {
                self.dots.push(dot);
            }
            if let Some(ctx) = &v.context {
                for (actor, counter) in ctx.entries() {
                    match self.context.iter_mut().find(|(a, _)| *a == actor) {
                        Some(entry) => entry.1 = entry.1.max(counter),
                        None => self.context.push((actor, counter)),
                    }
                }
            }
        }
    }

    /// The joined context's entry for `actor`.
    pub(crate) fn context_of(&self, actor: Actor) -> u64 {
        self.context
            .iter()
            .find(|(a, _)| *a == actor)
            .map_or(0, |e| e.1)
    }

    pub(crate) fn has_dot(&self, dot: Dot) -> bool {
        self.dots.contains(&dot)
    }
}

/// For one key, the writes whose *client-sent* contexts (the `context` of
/// their invoke) cover a dot. Contexts are version vectors, so a context
/// covers `(actor, n)` iff its entry for `actor` is at least `n`: per actor,
/// the two writes that sent the highest counters answer "does a write
/// other than `w` cover this dot" exactly, in O(actors).
#[derive(Debug, Default, Clone)]
pub(crate) struct ContextCover {
    /// Per actor (few: nodes times incarnations), the two highest
    /// (counter, write) from different writes, highest first.
    actors: Vec<(Actor, TopTwo)>,
}

/// The two highest (counter, write) of one actor, highest first.
type TopTwo = [Option<(u64, usize)>; 2];

impl ContextCover {
    /// Add write `op`, whose client sent `context`.
    pub(crate) fn add(&mut self, op: usize, context: &Clock) {
        for (actor, counter) in context.entries() {
            let at = match self.actors.iter().position(|(a, _)| *a == actor) {
                Some(at) => at,
                None => {
                    self.actors.push((actor, [None, None]));
                    self.actors.len() - 1
                }
            };
            let top = &mut self.actors[at].1;
            // A clock has one entry per actor, so `op` appears at most once
            // per actor and the two entries are always different writes.
            if top[0].is_none_or(|(c, _)| counter > c) {
                top[1] = top[0];
                top[0] = Some((counter, op));
            } else if top[1].is_none_or(|(c, _)| counter > c) {
                top[1] = Some((counter, op));
            }
        }
    }

    /// Up to two writes whose context covers `dot`, highest counter first.
    /// When both are given, more writes may cover it too.
    pub(crate) fn covering(&self, dot: Dot) -> [Option<usize>; 2] {
        let actor = dot.actor();
        let Some((_, top)) = self.actors.iter().find(|(a, _)| *a == actor) else {
            return [None, None];
        };
        let covers = |e: Option<(u64, usize)>| e.filter(|&(c, _)| c >= dot.counter).map(|e| e.1);
        [covers(top[0]), covers(top[1])]
    }

    /// Whether a write other than `except` covers `dot`.
    pub(crate) fn covered_by_other(&self, dot: Dot, except: usize) -> bool {
        self.covering(dot)
            .into_iter()
            .flatten()
            .any(|op| op != except)
    }
}

// rustc's hash (the `rustc-hash` crate): fast and deterministic, fine
// for the small keys the checkers hash.
pub(crate) type FxBuild = rustc_hash::FxBuildHasher;
pub(crate) use rustc_hash::{FxHashMap, FxHashSet};

/// splitmix64: per-operation random words for Zobrist hashing.
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The contexts the clients of one key's mutations sent, kept to what those
/// clients could have seen. A client learns a context only from the
/// answers it gets: a read's returned context and versions, or a write's
/// acknowledged version. So an entry of write `x`'s context may cover only
/// dots of this key that an operation of `x`'s own client had *returned*
/// (completed, ok) before `x` was invoked. A context that names more
/// (forged, taken from another key, naming a write its client never saw)
/// is cut back, per actor, to the highest counter of that actor returned
/// to that client before `x`: such a write cannot vouch for writes its
/// client had not seen, however the system treated it.
/// A client and an actor whose dots it was answered with.
type ClientActor = (u32, Actor);

pub(crate) struct SentContexts<'a> {
    /// Only the contexts that had to be cut; the rest are used as sent.
    cut: FxHashMap<usize, Clock>,
    ops: &'a [OperationRef<'a>],
}

impl<'a> SentContexts<'a> {
    pub(crate) fn new(ops: &'a [OperationRef<'a>], group: &[usize]) -> Self {
        let mut cut = FxHashMap::default();
        let sent: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&i| ops[i].kind.is_mutation() && ops[i].context.is_some_and(|c| !c.is_empty()))
            .collect();
        if sent.is_empty() {
            return SentContexts { cut, ops };
        }
        // Every (client, actor, counter) an answer of this key returned to
        // a client, with the time the answer arrived.
        let mut known: Vec<(ClientActor, u64, u64)> = Vec::new();
        // One answer's highest counter per actor: what it returned in all
        // its clocks and dots (a read of many siblings repeats each actor
        // in every sibling's context; only the highest matters).
        let mut answer: Vec<(Actor, u64)> = Vec::new();
        let note = |answer: &mut Vec<(Actor, u64)>, actor: Actor, counter: u64| match answer
            .iter_mut()
            .find(|(a, _)| *a == actor)
        {
            Some((_, highest)) => *highest = (*highest).max(counter),
            None => answer.push((actor, counter)),
        };
        for &i in group {
            let op = &ops[i];
            let (true, Some(at)) = (op.is_ok(), op.complete_us) else {
                continue;
            };
            answer.clear();
            if let Some(clock) = op.read_context {
                for (actor, counter) in clock.entries() {
                    note(&mut answer, actor, counter);
                }
            }
            for v in op.values.iter().chain(op.version) {
                if let Some(dot) = v.dot {
                    note(&mut answer, dot.actor(), dot.counter);
                }
                for (actor, counter) in v.context.iter().flat_map(|c| c.entries()) {
                    note(&mut answer, actor, counter);
                }
            }
            known.extend(
                answer
                    .iter()
                    .map(|&(actor, counter)| ((op.client, actor), at, counter)),
            );
        }
        // Per actor, by time returned: the highest counter returned so far.
        known.sort_unstable();
        let mut highest: Vec<(ClientActor, Vec<(u64, u64)>)> = Vec::new();
        for (actor, invoked, counter) in known {
            if highest.last().is_none_or(|(a, _)| *a != actor) {
                highest.push((actor, Vec::new()));
            }
            if let Some((_, list)) = highest.last_mut() {
                let top = list.last().map_or(counter, |&(_, c)| c.max(counter));
                list.push((invoked, top));
            }
        }
        for x in sent {
            let Some(context) = ops[x].context else {
                continue;
            };
            let invoked = ops[x].invoke_us;
            let client = ops[x].client;
            let cap = |actor: Actor| -> u64 {
                highest
                    .iter()
                    .find(|(a, _)| *a == (client, actor))
                    .and_then(|(_, list)| {
                        // Returned at or before the invocation: a client
                        // may invoke in the microsecond its read returned.
                        let before = list.partition_point(|&(at, _)| at <= invoked);
                        before.checked_sub(1).map(|i| list[i].1)
                    })
                    .unwrap_or(0)
            };
            if context.entries().any(|(a, c)| c > cap(a)) {
                let kept = context.entries().map(|(a, c)| (a, c.min(cap(a))));
                cut.insert(x, kept.collect());
            }
        }
        SentContexts { cut, ops }
    }

    /// The context mutation `op` may vouch with (None: it sent none).
    pub(crate) fn of(&self, op: usize) -> Option<&Clock> {
        self.cut.get(&op).or(self.ops[op].context)
    }
}
