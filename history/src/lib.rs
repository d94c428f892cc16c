//! The history of a run: every client operation as an `invoke` event and a
//! `complete` event, written as JSON lines so that a history from the
//! simulator and one recorded against a real cluster go through the same
//! checkers.
//!
//! Format 2, one JSON object per line (see `docs/history-format.md`):
//!
//! ```text
//! {"type":"header","format":2,"scenario":"partitions","seed":7,"n":5}
//! {"type":"invoke","id":0,"client":1,"time_us":1200,"key":"k1","op":"write","value":"c1-0","context":{},"level":"W=3"}
//! {"type":"complete","id":0,"client":1,"time_us":4810,"outcome":"ok","version":{"value":"c1-0","dot":{"node":2,"incarnation":1,"counter":1},"context":{}}}
//! {"type":"invoke","id":1,"client":2,"time_us":5000,"key":"k1","op":"read","level":"R=3"}
//! {"type":"complete","id":1,"client":2,"time_us":9000,"outcome":"ok","values":[{"value":"c1-0","dot":{"node":2,"incarnation":1,"counter":1},"context":{}}],"context":{"2.1":1}}
//! ```
//!
//! Dots and clocks are this module's own types ([`Dot`], [`Clock`]), not
//! the core's: the checkers must not share the version algebra they judge.
//! Format 1 is format 2 with every incarnation 0, and is still read.
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufRead, Write};
use std::str::FromStr;
use thiserror::Error;

/// The history format this build writes.
pub const HISTORY_FORMAT: u32 = 2;

/// The formats this build reads: 1 is 2 without incarnations (all 0).
pub const READABLE_FORMATS: [u32; 2] = [1, 2];

/// Who minted a dot: a node, in one incarnation of its store. A node that
/// restarts with an empty store (lost disk) writes under a new incarnation,
/// so its new dots cannot collide with the ones its earlier life minted.
///
/// The checkers keep their own copy of this algebra (not the core's) so
/// that a bug in the system's version logic cannot blind its judge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Actor {
    pub node: u32,
    pub incarnation: u32,
}

impl Actor {
    pub fn new(node: u32, incarnation: u32) -> Self {
        Actor { node, incarnation }
    }

    /// Incarnation 0: every actor of a format 1 history.
    pub fn node(node: u32) -> Self {
        Actor {
            node,
            incarnation: 0,
        }
    }

    /// The clock-key form: `3`, or `3.7` for incarnation 7.
    pub fn key(&self) -> String {
        if self.incarnation == 0 {
            self.node.to_string()
        } else {
            format!("{}.{}", self.node, self.incarnation)
        }
    }
}

/// `n3`, or `n3.7` for incarnation 7.
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.incarnation == 0 {
            write!(f, "n{}", self.node)
        } else {
            write!(f, "n{}.{}", self.node, self.incarnation)
        }
    }
}

/// A clock key that is neither `NODE` nor `NODE.INCARNATION`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("clock key {0:?} is not a node id (\"3\") or node.incarnation (\"3.7\")")]
pub struct BadClockKey(pub String);

/// Parses the clock-key form, `3` or `3.7` (decimal, no sign or spaces).
impl FromStr for Actor {
    type Err = BadClockKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadClockKey(s.to_string());
        // u32::from_str accepts a leading '+': clock keys are plain digits.
        let number = |t: &str| -> Result<u32, BadClockKey> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        match s.split_once('.') {
            None => Ok(Actor::node(number(s)?)),
            Some((node, incarnation)) => Ok(Actor::new(number(node)?, number(incarnation)?)),
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One write's identity: the `counter`-th write `node` (in `incarnation`)
/// coordinated for a key. JSON: `{"node":3,"counter":1}`, with
/// `"incarnation":7` only when it is not 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub node: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub incarnation: u32,
    pub counter: u64,
}

impl Dot {
    pub fn new(actor: Actor, counter: u64) -> Self {
        Dot {
            node: actor.node,
            incarnation: actor.incarnation,
            counter,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::new(self.node, self.incarnation)
    }
}

/// `n3:1`, or `n3.7:1` for incarnation 7.
impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor(), self.counter)
    }
}

/// A version vector: for each actor, how many of its writes are included.
/// Its entries are kept sorted by actor, each actor once, so output is
/// deterministic and equal clocks are equal entry for entry; zero entries
/// are never stored (they include nothing). A sorted vector rather than a
/// map: a clock names a handful of actors, and the checkers build and walk
/// thousands of them a simulated run, each one allocation read in order
/// rather than a tree's nodes scattered over memory. JSON: an object from
/// clock key (`"3"`, or `"3.7"` for incarnation 7) to counter, e.g.
/// `{"2":1,"3.7":4}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Clock(Vec<(Actor, u64)>);

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock of these entries; an actor named twice keeps its highest
    /// counter. Sorted once, so a clock of many entries costs n log n.
    pub fn from_entries(entries: impl IntoIterator<Item = (Actor, u64)>) -> Self {
        let mut entries: Vec<(Actor, u64)> = entries
            .into_iter()
            .filter(|&(_, counter)| counter != 0)
            .collect();
        // By actor, then counter: of one actor's entries the last is kept.
        entries.sort_unstable();
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        Clock(entries)
    }

    fn position(&self, actor: Actor) -> Result<usize, usize> {
        self.0.binary_search_by_key(&actor, |&(a, _)| a)
    }

    /// The counter of `actor` (0 when absent).
    pub fn get(&self, actor: Actor) -> u64 {
        self.position(actor).map_or(0, |i| self.0[i].1)
    }

    /// Raise `actor`'s entry to at least `counter`.
    pub fn bump(&mut self, actor: Actor, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.position(actor) {
            Ok(i) => self.0[i].1 = self.0[i].1.max(counter),
            Err(i) => self.0.insert(i, (actor, counter)),
        }
    }

    /// Whether the clock includes `dot`: its actor's counter reaches it.
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.actor()) >= dot.counter
    }

    /// The entries, in actor order.
    pub fn entries(&self) -> impl Iterator<Item = (Actor, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pointwise maximum.
    pub fn join(&self, other: &Clock) -> Clock {
        let mut out = self.clone();
        out.join_in_place(other);
        out
    }

    pub fn join_in_place(&mut self, other: &Clock) {
        // Nearly always every actor of `other` is already here: raised in
        // place, nothing moves.
        let mut new_actors = false;
        for &(actor, counter) in &other.0 {
            match self.position(actor) {
                Ok(i) => self.0[i].1 = self.0[i].1.max(counter),
                Err(_) => new_actors = true,
            }
        }
        if new_actors {
            // One sort of both (the raises above change nothing a maximum
            // would not), rather than an insertion, a shift of the entries
            // after it, for each new actor of a long clock.
            *self = Clock::from_entries(self.0.iter().chain(&other.0).copied());
        }
    }

    /// Include `dot` (raise its actor's entry to its counter).
    pub fn add(&mut self, dot: Dot) {
        self.bump(dot.actor(), dot.counter);
    }

    /// `self` includes everything `other` does.
    pub fn descends_from(&self, other: &Clock) -> bool {
        other.entries().all(|(a, c)| self.get(a) >= c)
    }
}

impl FromIterator<(Actor, u64)> for Clock {
    fn from_iter<I: IntoIterator<Item = (Actor, u64)>>(iter: I) -> Self {
        Clock::from_entries(iter)
    }
}

/// `{n2:1, n3.7:4}`.
impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (actor, counter)) in self.entries().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{actor}:{counter}")?;
        }
        f.write_str("}")
    }
}

impl Serialize for Clock {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (actor, counter) in &self.0 {
            map.serialize_entry(&actor.key(), counter)?;
        }
        map.end()
    }
}

/// A clock key as it arrives: a string (JSON object keys) or, from other
/// encoders, a number.
struct ClockKey(Result<Actor, BadClockKey>);

impl<'de> Deserialize<'de> for ClockKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = ClockKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a clock key: \"node\" or \"node.incarnation\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ClockKey, E> {
                Ok(ClockKey(v.parse()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ClockKey, E> {
                Ok(ClockKey(
                    u32::try_from(v)
                        .map(Actor::node)
                        .map_err(|_| BadClockKey(v.to_string())),
                ))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Clock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = Clock;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a clock: an object from \"node\" or \"node.incarnation\" to counter")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Clock, A::Error> {
                let mut entries = Vec::new();
                let mut seen: BTreeSet<Actor> = BTreeSet::new();
                while let Some((key, counter)) = map.next_entry::<ClockKey, u64>()? {
                    let actor = key.0.map_err(serde::de::Error::custom)?;
                    // "3" and "3.0" name the same actor: which counter is
                    // meant is unclear, so refuse rather than pick one.
                    if !seen.insert(actor) {
                        return Err(serde::de::Error::custom(format!(
                            "clock names {actor} twice"
                        )));
                    }
                    entries.push((actor, counter));
                }
                Ok(Clock::from_entries(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Read,
    Write,
    /// Compare-and-set: `value` is the JSON array `["expected","new"]`
    /// (see [`cas_value`]). Not issued by quorumlog itself; for histories of
    /// other systems checked with the CAS-register model.
    Cas,
    /// Append `value` to the key's current value (key/value model).
    Append,
}

impl OpKind {
    /// Whether the operation changes state when it takes effect.
    pub fn is_mutation(self) -> bool {
        !matches!(self, OpKind::Read)
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Cas => "cas",
            OpKind::Append => "append",
        })
    }
}

/// The `value` of a `cas` invoke: the JSON array `["expected","new"]`.
pub fn cas_value(expected: &str, new: &str) -> String {
    serde_json::to_string(&[expected, new]).unwrap_or_default()
}

/// Split the `value` of a `cas` invoke into (expected, new).
pub fn parse_cas_value(value: &str) -> Option<(String, String)> {
    serde_json::from_str::<(String, String)>(value).ok()
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged by its quorum.
    Ok,
    /// Refused before anything was sent: it certainly did not happen.
    Unavailable,
    /// Sent, not acknowledged in time: a write may or may not have applied.
    Timeout,
    /// Rejected (bad request, storage error): it certainly did not happen.
    Fail,
    /// Completed without effect, having observed that its condition did
    /// not hold: a `cas` whose expected value was not the current one (the
    /// CAS-register model checks that observation; every other checker
    /// takes it as no effect, like `fail`). Only for `cas`.
    Mismatch,
}

impl Outcome {
    /// The outcome as the format writes it ("ok", "timeout", …).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unavailable => "unavailable",
            Outcome::Timeout => "timeout",
            Outcome::Fail => "fail",
            Outcome::Mismatch => "mismatch",
        }
    }
}

/// A version as a client saw it: the value plus, when the system exposes
/// them, its dot and causal context (what decides "covers").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObservedVersion {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot: Option<Dot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Clock>,
}

impl ObservedVersion {
    /// Whether this version is, or causally covers, the write `other`.
    /// Without dots, only the same value counts.
    pub fn covers(&self, other: &ObservedVersion) -> bool {
        match (other.dot, self.dot) {
            (Some(target), Some(own)) => {
                own == target || self.context.as_ref().is_some_and(|c| c.covers(target))
            }
            _ => self.value == other.value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Header {
        format: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scenario: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        /// Replication factor of the system under test.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        n: Option<usize>,
    },
    Invoke {
        id: u64,
        client: u32,
        time_us: u64,
        key: String,
        op: OpKind,
        /// The value a write writes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// The causal context a write carries (empty: blind write).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Clock>,
        /// "R=3", "W=1", "QUORUM", … free text for reports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<String>,
        /// Part of the quiescent read of every key after the faults healed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        r#final: bool,
        /// A write that supersedes every sibling its coordinator holds,
        /// whatever its context (`overwrite=true`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        overwrite: bool,
        /// The earlier operation of the same key whose answer handed out
        /// the context this write sends, unchanged (read-then-write).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context_from: Option<u64>,
    },
    Complete {
        id: u64,
        client: u32,
        time_us: u64,
        outcome: Outcome,
        /// What a successful read returned (several: siblings).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        values: Vec<ObservedVersion>,
        /// The version a successful write created.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<ObservedVersion>,
        /// The merged context a read returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Clock>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The system refused the request as malformed (an invalid
        /// context, key or value), as opposed to refusing it for a limit
        /// or failing to serve it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        invalid: bool,
    },
}

/// One operation: an invoke paired with its completion (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: u64,
    pub client: u32,
    pub key: String,
    pub kind: OpKind,
    pub value: Option<String>,
    pub context: Option<Clock>,
    pub level: Option<String>,
    pub is_final: bool,
    /// A write that supersedes every sibling its coordinator holds.
    pub overwrite: bool,
    /// The operation whose answer handed out the context a write sends.
    pub context_from: Option<u64>,
    pub invoke_us: u64,
    /// None: never completed (client crashed, run ended) — indeterminate.
    pub complete_us: Option<u64>,
    /// None when it never completed.
    pub outcome: Option<Outcome>,
    pub values: Vec<ObservedVersion>,
    pub version: Option<ObservedVersion>,
    pub read_context: Option<Clock>,
    pub error: Option<String>,
    /// Refused as malformed.
    pub invalid: bool,
}

impl Operation {
    pub fn is_ok(&self) -> bool {
        self.outcome == Some(Outcome::Ok)
    }

    /// A write that may have taken effect without being acknowledged.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, None | Some(Outcome::Timeout))
    }

    /// Certainly had no effect.
    pub fn is_failed(&self) -> bool {
        matches!(
            self.outcome,
            Some(Outcome::Unavailable | Outcome::Fail | Outcome::Mismatch)
        )
    }

    /// A `cas` that completed and observed its expected value absent.
    pub fn is_mismatch(&self) -> bool {
        self.outcome == Some(Outcome::Mismatch)
    }

    /// The version a write wrote, as far as the history knows it.
    pub fn written(&self) -> Option<ObservedVersion> {
        if !matches!(self.kind, OpKind::Write | OpKind::Append) {
            return None;
        }
        self.version.clone().or_else(|| {
            self.value.clone().map(|value| ObservedVersion {
                value,
                dot: None,
                context: None,
            })
        })
    }
}

/// An operation borrowed from a [`History`]'s events: what the checkers work
/// on (no copies of keys, values or contexts, so a million operations pair
/// up quickly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationRef<'a> {
    pub id: u64,
    pub client: u32,
    pub key: &'a str,
    pub kind: OpKind,
    pub value: Option<&'a str>,
    /// The context the write carried (None or empty: blind write).
    pub context: Option<&'a Clock>,
    pub level: Option<&'a str>,
    pub is_final: bool,
    /// A write that supersedes every sibling its coordinator holds.
    pub overwrite: bool,
    /// The operation whose answer handed out the context a write sends.
    pub context_from: Option<u64>,
    pub invoke_us: u64,
    pub complete_us: Option<u64>,
    pub outcome: Option<Outcome>,
    pub values: &'a [ObservedVersion],
    pub version: Option<&'a ObservedVersion>,
    pub read_context: Option<&'a Clock>,
    pub error: Option<&'a str>,
    /// Refused as malformed.
    pub invalid: bool,
}

impl<'a> OperationRef<'a> {
    pub fn is_ok(&self) -> bool {
        self.outcome == Some(Outcome::Ok)
    }

    /// Timed out or never completed: a mutation may or may not have applied.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, None | Some(Outcome::Timeout))
    }

    /// Certainly had no effect.
    pub fn is_failed(&self) -> bool {
        matches!(
            self.outcome,
            Some(Outcome::Unavailable | Outcome::Fail | Outcome::Mismatch)
        )
    }

    /// A `cas` that completed and observed its expected value absent.
    pub fn is_mismatch(&self) -> bool {
        self.outcome == Some(Outcome::Mismatch)
    }

    /// The dot of the version a write created, when the history has it.
    pub fn written_dot(&self) -> Option<Dot> {
        self.version.and_then(|v| v.dot)
    }

    /// An owned copy.
    pub fn to_operation(&self) -> Operation {
        Operation {
            id: self.id,
            client: self.client,
            key: self.key.to_string(),
            kind: self.kind,
            value: self.value.map(str::to_string),
            context: self.context.cloned(),
            level: self.level.map(str::to_string),
            is_final: self.is_final,
            overwrite: self.overwrite,
            context_from: self.context_from,
            invoke_us: self.invoke_us,
            complete_us: self.complete_us,
            outcome: self.outcome,
            values: self.values.to_vec(),
            version: self.version.cloned(),
            read_context: self.read_context.cloned(),
            error: self.error.map(str::to_string),
            invalid: self.invalid,
        }
    }
}

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("reading history: {0}")]
    Io(#[from] std::io::Error),
}

fn line_error(line: usize, problem: impl Into<String>) -> HistoryError {
    HistoryError::Line {
        line,
        problem: problem.into(),
    }
}

/// An ordered list of events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Event>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }

    /// Write as JSON lines.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        for event in &self.events {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    pub fn to_jsonl(&self) -> String {
        let mut buf = Vec::new();
        self.write_jsonl(&mut buf)
            .expect("writing to memory cannot fail");
        String::from_utf8(buf).expect("serde_json writes UTF-8")
    }

    /// Read JSON lines, checking every event; errors name the line.
    pub fn read_jsonl(input: impl BufRead) -> Result<Self, HistoryError> {
        let mut history = History::new();
        let mut open: BTreeMap<u64, (u32, OpKind)> = BTreeMap::new();
        // Every operation invoked so far, with its key.
        let mut seen: BTreeMap<u64, String> = BTreeMap::new();
        for (index, line) in input.lines().enumerate() {
            let number = index + 1;
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let event: Event =
                serde_json::from_str(&line).map_err(|e| line_error(number, e.to_string()))?;
            match &event {
                Event::Header { format, .. } => {
                    // A header anywhere else is two histories run together
                    // (or one appended to): which run would it describe?
                    if !history.events.is_empty() {
                        return Err(line_error(
                            number,
                            "a header may only be the first event of a history (is this two histories joined?)",
                        ));
                    }
                    if !READABLE_FORMATS.contains(format) {
                        return Err(line_error(
                            number,
                            format!("history format {format} is not supported (this build reads formats 1 and {HISTORY_FORMAT})"),
                        ));
                    }
                }
                Event::Invoke { id, client, key, op, value, context_from, .. } => {
                    if let Some(from) = context_from {
                        match seen.get(from) {
                            None => {
                                return Err(line_error(
                                    number,
                                    format!("{op} {id}: context_from {from} names no earlier operation"),
                                ))
                            }
                            Some(from_key) if from_key != key => {
                                return Err(line_error(
                                    number,
                                    format!("{op} {id} of key {key:?}: context_from {from} names an operation of key {from_key:?}"),
                                ))
                            }
                            Some(_) => {}
                        }
                    }
                    if seen.insert(*id, key.clone()).is_some() {
                        return Err(line_error(number, format!("operation id {id} is invoked twice")));
                    }
                    if op.is_mutation() && value.is_none() {
                        return Err(line_error(number, format!("{op} {id} has no value")));
                    }
                    if *op == OpKind::Cas && value.as_deref().and_then(parse_cas_value).is_none() {
                        return Err(line_error(
                            number,
                            format!("cas {id}: value must be the JSON array [\"expected\",\"new\"]"),
                        ));
                    }
                    open.insert(*id, (*client, *op));
                }
                Event::Complete { id, client, outcome, .. } => match open.remove(id) {
                    None if seen.contains_key(id) => {
                        return Err(line_error(number, format!("operation {id} completes twice")))
                    }
                    None => return Err(line_error(number, format!("operation {id} completes but was never invoked"))),
                    Some((invoker, _)) if invoker != *client => {
                        return Err(line_error(
                            number,
                            format!("operation {id} was invoked by client {invoker} but completed by client {client}"),
                        ))
                    }
                    Some((_, op)) if *outcome == Outcome::Mismatch && op != OpKind::Cas => {
                        return Err(line_error(
                            number,
                            format!("operation {id} is a {op}: only a cas can complete with outcome \"mismatch\""),
                        ))
                    }
                    Some(_) => {}
                },
            }
            history.push(event);
        }
        Ok(history)
    }

    /// Pair invokes with completions, in invoke order.
    pub fn operations(&self) -> Vec<Operation> {
        let mut ops: Vec<Operation> = Vec::new();
        let mut index: BTreeMap<u64, usize> = BTreeMap::new();
        for event in &self.events {
            match event {
                Event::Header { .. } => {}
                Event::Invoke {
                    id,
                    client,
                    time_us,
                    key,
                    op,
                    value,
                    context,
                    level,
                    r#final,
                    overwrite,
                    context_from,
                } => {
                    index.insert(*id, ops.len());
                    ops.push(Operation {
                        id: *id,
                        client: *client,
                        key: key.clone(),
                        kind: *op,
                        value: value.clone(),
                        context: context.clone(),
                        level: level.clone(),
                        is_final: *r#final,
                        overwrite: *overwrite,
                        context_from: *context_from,
                        invoke_us: *time_us,
                        complete_us: None,
                        outcome: None,
                        values: Vec::new(),
                        version: None,
                        read_context: None,
                        error: None,
                        invalid: false,
                    });
                }
                Event::Complete {
                    id,
                    time_us,
                    outcome,
                    values,
                    version,
                    context,
                    error,
                    invalid,
                    ..
                } => {
                    if let Some(op) = index.get(id).map(|&i| &mut ops[i]) {
                        op.complete_us = Some(*time_us);
                        op.outcome = Some(*outcome);
                        op.values = values.clone();
                        op.version = version.clone();
                        op.read_context = context.clone();
                        op.error = error.clone();
                        op.invalid = *invalid;
                    }
                }
            }
        }
        ops
    }

    /// Like [`History::operations`], borrowing instead of copying.
    pub fn operation_refs(&self) -> Vec<OperationRef<'_>> {
        let mut ops: Vec<OperationRef<'_>> = Vec::new();
        // Ids are usually dense (0, 1, 2, ...): index those in a vector.
        let dense_limit = self.events.len() as u64;
        let mut dense: Vec<usize> = vec![usize::MAX; self.events.len()];
        let mut sparse: rustc_hash::FxHashMap<u64, usize> = Default::default();
        ops.reserve(self.events.len() / 2);
        for event in &self.events {
            match event {
                Event::Header { .. } => {}
                Event::Invoke {
                    id,
                    client,
                    time_us,
                    key,
                    op,
                    value,
                    context,
                    level,
                    r#final,
                    overwrite,
                    context_from,
                } => {
                    if *id < dense_limit {
                        dense[*id as usize] = ops.len();
                    } else {
                        sparse.insert(*id, ops.len());
                    }
                    ops.push(OperationRef {
                        id: *id,
                        client: *client,
                        key,
                        kind: *op,
                        value: value.as_deref(),
                        context: context.as_ref(),
                        level: level.as_deref(),
                        is_final: *r#final,
                        overwrite: *overwrite,
                        context_from: *context_from,
                        invoke_us: *time_us,
                        complete_us: None,
                        outcome: None,
                        values: &[],
                        version: None,
                        read_context: None,
                        error: None,
                        invalid: false,
                    });
                }
                Event::Complete {
                    id,
                    time_us,
                    outcome,
                    values,
                    version,
                    context,
                    error,
                    invalid,
                    ..
                } => {
                    let at = if *id < dense_limit {
                        Some(dense[*id as usize])
                    } else {
                        sparse.get(id).copied()
                    };
                    if let Some(op) = at.and_then(|i| ops.get_mut(i)) {
                        op.complete_us = Some(*time_us);
                        op.outcome = Some(*outcome);
                        op.values = values;
                        op.version = version.as_ref();
                        op.read_context = context.as_ref();
                        op.error = error.as_deref();
                        op.invalid = *invalid;
                    }
                }
            }
        }
        ops
    }

    /// The header, if the history has one.
    pub fn header(&self) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| matches!(e, Event::Header { .. }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn outcome_names_are_the_format_names() {
        for outcome in [
            Outcome::Ok,
            Outcome::Unavailable,
            Outcome::Timeout,
            Outcome::Fail,
            Outcome::Mismatch,
        ] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.name());
        }
    }

    use super::*;

    #[test]
    fn round_trip_and_pairing() {
        let text = r#"{"type":"header","format":1,"scenario":"none","seed":7,"n":5}
{"type":"invoke","id":0,"client":1,"time_us":1,"key":"k","op":"write","value":"a","context":{}}
{"type":"complete","id":0,"client":1,"time_us":5,"outcome":"ok","version":{"value":"a","dot":{"node":2,"counter":1},"context":{}}}
{"type":"invoke","id":1,"client":2,"time_us":6,"key":"k","op":"read"}
{"type":"complete","id":1,"client":2,"time_us":9,"outcome":"ok","values":[{"value":"a","dot":{"node":2,"counter":1},"context":{}}],"context":{"2":1}}
"#;
        let history = History::read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(history.to_jsonl(), text);
        let ops = history.operations();
        assert_eq!(ops.len(), 2);
        assert!(ops[0].is_ok());
        assert_eq!(ops[1].values[0].value, "a");
        assert!(ops[1].values[0].covers(&ops[0].written().unwrap()));
    }

    #[test]
    fn malformed_lines_are_named() {
        let bad = "{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"read\"}\nnot json\n";
        let err = History::read_jsonl(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("line 2:"), "{err}");
        let orphan =
            "{\"type\":\"complete\",\"id\":3,\"client\":1,\"time_us\":1,\"outcome\":\"ok\"}\n";
        let err = History::read_jsonl(orphan.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("never invoked"),
            "{err}"
        );
        let forward = "{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"write\",\"value\":\"v\",\"context_from\":4}\n";
        let err = History::read_jsonl(forward.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("context_from 4 names no earlier operation"),
            "{err}"
        );
        let future = "{\"type\":\"header\",\"format\":9}\n";
        assert!(History::read_jsonl(future.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("format 9"));
    }

    #[test]
    fn dots_and_clocks_carry_incarnations() {
        let text = r#"{"type":"header","format":2}
{"type":"invoke","id":0,"client":1,"time_us":1,"key":"k","op":"write","value":"b","context":{"2":1,"3.7":4}}
{"type":"complete","id":0,"client":1,"time_us":5,"outcome":"ok","version":{"value":"b","dot":{"node":3,"incarnation":7,"counter":5},"context":{"2":1,"3.7":4}}}
"#;
        let history = History::read_jsonl(text.as_bytes()).unwrap();
        assert_eq!(history.to_jsonl(), text);
        let ops = history.operation_refs();
        let dot = ops[0].written_dot().unwrap();
        assert_eq!(dot.to_string(), "n3.7:5");
        assert_eq!(Dot::new(Actor::node(3), 1).to_string(), "n3:1");
        let context = ops[0].context.unwrap();
        assert_eq!(context.to_string(), "{n2:1, n3.7:4}");
        // Incarnations are separate actors: 3.7 covers nothing of 3.0.
        assert!(context.covers(Dot::new(Actor::new(3, 7), 4)));
        assert!(!context.covers(Dot::new(Actor::new(3, 7), 5)));
        assert!(!context.covers(Dot::new(Actor::node(3), 1)));
        assert!(context.covers(Dot::new(Actor::node(2), 1)));
        // Incarnation 0 is left out of a dot, and "3.0" reads as "3".
        let zero: Dot = serde_json::from_str(r#"{"node":3,"incarnation":0,"counter":1}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&zero).unwrap(),
            r#"{"node":3,"counter":1}"#
        );
        let clock: Clock = serde_json::from_str(r#"{"3.0":2,"4":0}"#).unwrap();
        assert_eq!(serde_json::to_string(&clock).unwrap(), r#"{"3":2}"#);
        let joined = clock.join(&Clock::from_entries([
            (Actor::node(3), 1),
            (Actor::new(3, 1), 1),
        ]));
        assert_eq!(joined.to_string(), "{n3:2, n3.1:1}");
    }

    #[test]
    fn bad_clock_keys_are_named() {
        for key in ["x", "3.", ".7", "3.7.1", "-3", "+3", "3 ", "99999999999"] {
            let line = format!(
                "{{\"type\":\"invoke\",\"id\":0,\"client\":1,\"time_us\":1,\"key\":\"k\",\"op\":\"write\",\"value\":\"a\",\"context\":{{\"{key}\":1}}}}\n"
            );
            let err = History::read_jsonl(line.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("line 1:") && err.contains(&format!("clock key {key:?}")),
                "{key}: {err}"
            );
        }
        let twice = r#"{"3":1,"3.0":2}"#;
        let err = serde_json::from_str::<Clock>(twice)
            .unwrap_err()
            .to_string();
        assert!(err.contains("names n3 twice"), "{err}");
    }

    #[test]
    fn format_one_and_two_are_read_others_refused() {
        for format in [1, 2] {
            let text = format!("{{\"type\":\"header\",\"format\":{format}}}\n");
            assert!(History::read_jsonl(text.as_bytes()).is_ok(), "{format}");
        }
        let err = History::read_jsonl("{\"type\":\"header\",\"format\":3}\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("format 3") && err.contains("formats 1 and 2"),
            "{err}"
        );
    }

    /// The clock against the plainest model of a version vector, a map
    /// from actor to its highest counter without zero entries: the same
    /// counters, the same entries in actor order, equal when the models
    /// are, whatever order the entries come in.
    mod clock_as_a_map {
        use super::*;
        use proptest::prelude::*;

        fn entries() -> impl Strategy<Value = Vec<(Actor, u64)>> {
            // Few actors and small counters, so that entries collide.
            proptest::collection::vec(((0u32..4, 0u32..3), 0u64..5), 0..12).prop_map(|v| {
                v.into_iter()
                    .map(|((node, incarnation), c)| (Actor::new(node, incarnation), c))
                    .collect()
            })
        }

        fn model(entries: &[(Actor, u64)]) -> BTreeMap<Actor, u64> {
            let mut map = BTreeMap::new();
            for &(actor, counter) in entries.iter().filter(|&&(_, c)| c != 0) {
                let entry = map.entry(actor).or_insert(0);
                *entry = counter.max(*entry);
            }
            map
        }

        fn as_model(clock: &Clock) -> Vec<(Actor, u64)> {
            clock.entries().collect()
        }

        proptest! {
            #[test]
            fn built_bumped_and_joined_as_the_map(a in entries(), b in entries()) {
                let (ma, mb) = (model(&a), model(&b));
                let ca = Clock::from_entries(a.iter().copied());
                prop_assert_eq!(as_model(&ca), ma.clone().into_iter().collect::<Vec<_>>());
                let mut bumped = Clock::new();
                for &(actor, counter) in a.iter().rev() {
                    bumped.bump(actor, counter);
                }
                prop_assert_eq!(&bumped, &ca);
                let cb = Clock::from_entries(b.iter().copied());
                let mut joined = ma.clone();
                for (&actor, &counter) in &mb {
                    let entry = joined.entry(actor).or_insert(0);
                    *entry = counter.max(*entry);
                }
                let joined: Vec<_> = joined.into_iter().collect();
                prop_assert_eq!(as_model(&ca.join(&cb)), joined.clone());
                let mut in_place = cb.clone();
                in_place.join_in_place(&ca);
                prop_assert_eq!(as_model(&in_place), joined);
                for node in 0..4 {
                    for incarnation in 0..3 {
                        let actor = Actor::new(node, incarnation);
                        prop_assert_eq!(ca.get(actor), ma.get(&actor).copied().unwrap_or(0));
                    }
                }
                prop_assert_eq!(ca == cb, ma == mb);
                prop_assert_eq!(
                    ca.descends_from(&cb),
                    mb.iter().all(|(a, &c)| ma.get(a).copied().unwrap_or(0) >= c)
                );
            }
        }
    }
}
