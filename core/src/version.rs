//! Dotted version vectors (Preguiça et al., "Dotted Version Vectors: Logical
//! Clocks for Optimistic Replication").
//!
//! Every stored value is a [`Version`]: the [`Dot`] minted for the write that
//! produced it, plus the causal context the writer had seen (a
//! [`VersionVector`]). A version `a` is *covered* by `b` when `b`'s context
//! (or `b`'s own dot) includes `a`'s dot: `b` was written by someone who had
//! seen `a`. Versions that do not cover each other are concurrent siblings.
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;
use thiserror::Error;

/// Identifier of a replica. In a deployment `--id 3` is node 3.
pub type NodeId = u32;

/// Which life of a node's store minted a dot. A node whose store starts
/// empty (first start, lost disk, new machine) takes a fresh incarnation,
/// so it can never mint a dot its earlier life already used: the other
/// replicas may still hold those dots with other values.
pub type Incarnation = u32;

/// Largest counter a dot may carry. Far above anything a key reaches (one
/// per write it coordinated), far below `u64::MAX`, so that no context a
/// client sends can bring a counter near overflow.
pub const MAX_COUNTER: u64 = 1 << 53;

/// Who minted a dot: a node in one incarnation of its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub node: NodeId,
    pub incarnation: Incarnation,
}

impl Actor {
    pub fn new(node: NodeId, incarnation: Incarnation) -> Self {
        Actor { node, incarnation }
    }
}

/// A bare node id is incarnation 0: what every dot was before
/// incarnations existed, and a short form for tests.
impl From<NodeId> for Actor {
    fn from(node: NodeId) -> Self {
        Actor {
            node,
            incarnation: 0,
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

impl Actor {
    /// The form used as a JSON object key: `3`, or `3.7`.
    fn key_text(&self) -> String {
        if self.incarnation == 0 {
            self.node.to_string()
        } else {
            format!("{}.{}", self.node, self.incarnation)
        }
    }

    fn parse_key_text(text: &str) -> Option<Actor> {
        match text.split_once('.') {
            None => text.parse::<NodeId>().ok().map(Actor::from),
            Some((node, incarnation)) => Some(Actor {
                node: node.parse().ok()?,
                incarnation: incarnation.parse().ok()?,
            }),
        }
    }
}

/// One event: the `counter`-th write that an actor coordinated for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub node: NodeId,
    pub incarnation: Incarnation,
    pub counter: u64,
}

impl Dot {
    pub fn new(actor: impl Into<Actor>, counter: u64) -> Self {
        let actor = actor.into();
        Dot {
            node: actor.node,
            incarnation: actor.incarnation,
            counter,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            node: self.node,
            incarnation: self.incarnation,
        }
    }
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.actor(), self.counter)
    }
}

/// What can go wrong in the version algebra.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    /// The same dot arrived with other contents than the one held: two
    /// different writes under one dot. Storing either would silently drop
    /// the other, so the merge refuses.
    #[error("dot {dot} is already held with another value or context: two different writes under one dot")]
    DotConflict { dot: Dot },
    #[error("counter of {actor} would pass {MAX_COUNTER}")]
    CounterOverflow { actor: Actor },
}

/// A version vector: for each actor, how many of its events are included.
/// Kept sorted by actor (one entry per actor), so iteration (and therefore
/// encoding) is ordered. A sorted `Vec` rather than a `BTreeMap`: vectors
/// hold a handful of entries, and a version carries one, so they are
/// cloned, merged, encoded and dropped all the time; the encoding is the
/// map's, entry by entry, as it was with a `BTreeMap`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct VersionVector(Vec<(Actor, u64)>);

/// As a map (what it printed as when it was a `BTreeMap`).
impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(a, c)| (a, c)))
            .finish()
    }
}

/// Compact formats (the codec) carry the map of actors as it is;
/// human-readable ones (JSON) key it by `"3"` or `"3.7"` strings.
impl Serialize for VersionVector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if !serializer.is_human_readable() {
            return serializer.collect_map(self.0.iter().map(|(a, c)| (a, c)));
        }
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (actor, counter) in &self.0 {
            map.serialize_entry(&actor.key_text(), counter)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !deserializer.is_human_readable() {
            return deserializer.deserialize_map(CompactEntries);
        }
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = VersionVector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a map from actor (\"3\" or \"3.7\") to counter")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<VersionVector, A::Error> {
                let mut vv = VersionVector::new();
                while let Some((key, counter)) = map.next_entry::<String, u64>()? {
                    let actor = Actor::parse_key_text(&key).ok_or_else(|| {
                        serde::de::Error::custom(format!(
                            "actor {key:?} is neither NODE nor NODE.INCARNATION"
                        ))
                    })?;
                    vv.bump(actor, counter);
                }
                Ok(vv)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// The compact form: the entries as a map, taken as a `BTreeMap` took
/// them (in any order; of an actor given twice, the last; zero counters
/// kept), so every encoding decodes to what it did before.
struct CompactEntries;

impl<'de> serde::de::Visitor<'de> for CompactEntries {
    type Value = VersionVector;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a map from actor to counter")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<VersionVector, A::Error> {
        // The size hint is bounded by the input (postcard: by the bytes
        // left), but never trust it beyond a small start.
        let mut entries: Vec<(Actor, u64)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        let mut sorted = true;
        while let Some((actor, counter)) = map.next_entry::<Actor, u64>()? {
            if let Some(&(last, _)) = entries.last() {
                sorted &= last < actor;
            }
            entries.push((actor, counter));
        }
        if !sorted {
            // A stable sort keeps an actor's entries in input order; of
            // each run of one actor, the last one stays.
            entries.sort_by_key(|&(actor, _)| actor);
            let mut deduped: Vec<(Actor, u64)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match deduped.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            entries = deduped;
        }
        Ok(VersionVector(entries))
    }
}

/// How two clocks relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Causality {
    Equal,
    Before,
    After,
    Concurrent,
}

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_entries<A: Into<Actor>>(entries: impl IntoIterator<Item = (A, u64)>) -> Self {
        let mut vv = Self::new();
        for (actor, counter) in entries {
            vv.bump(actor, counter);
        }
        vv
    }

    /// The counter of `actor` (0 when absent).
    pub fn get(&self, actor: impl Into<Actor>) -> u64 {
        let actor = actor.into();
        match self.0.binary_search_by_key(&actor, |&(a, _)| a) {
            Ok(at) => self.0[at].1,
            Err(_) => 0,
        }
    }

    /// Raise `actor`'s entry to at least `counter`.
    pub fn bump(&mut self, actor: impl Into<Actor>, counter: u64) {
        if counter == 0 {
            return;
        }
        let actor = actor.into();
        match self.0.binary_search_by_key(&actor, |&(a, _)| a) {
            Ok(at) => {
                let entry = &mut self.0[at].1;
                *entry = (*entry).max(counter);
            }
            Err(at) => self.0.insert(at, (actor, counter)),
        }
    }

    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.actor()) >= dot.counter
    }

    pub fn entries(&self) -> impl Iterator<Item = (Actor, u64)> + '_ {
        self.0.iter().copied()
    }

    /// The largest counter of any entry (0 for an empty vector).
    pub fn max_entry(&self) -> u64 {
        self.0.iter().map(|&(_, c)| c).max().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `actor` has an entry (of any counter).
    fn has_entry(&self, actor: Actor) -> bool {
        self.0.binary_search_by_key(&actor, |&(a, _)| a).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pointwise maximum.
    pub fn join(&self, other: &VersionVector) -> VersionVector {
        let mut out = self.clone();
        out.join_in_place(other);
        out
    }

    pub fn join_in_place(&mut self, other: &VersionVector) {
        for (actor, counter) in other.entries() {
            self.bump(actor, counter);
        }
    }

    /// `self <= other` pointwise.
    pub fn descends_from(&self, other: &VersionVector) -> bool {
        other.entries().all(|(a, c)| self.get(a) >= c)
    }

    /// The entries of `self` that `bound` does not include (with their
    /// counters): what a context claims beyond what is known.
    pub fn beyond(&self, bound: &VersionVector) -> Vec<Dot> {
        self.entries()
            .filter(|&(actor, counter)| bound.get(actor) < counter)
            .map(|(actor, counter)| Dot::new(actor, counter))
            .collect()
    }

    pub fn compare(&self, other: &VersionVector) -> Causality {
        match (self.descends_from(other), other.descends_from(self)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        }
    }
}

impl PartialOrd for VersionVector {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.compare(other) {
            Causality::Equal => Some(Ordering::Equal),
            Causality::Before => Some(Ordering::Less),
            Causality::After => Some(Ordering::Greater),
            Causality::Concurrent => None,
        }
    }
}

impl fmt::Display for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, (a, c)) in self.entries().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{a}:{c}")?;
        }
        write!(f, "}}")
    }
}

/// A stored value with its dotted version: the dot minted for the write,
/// the causal context (what the writer had seen, excluding the dot itself)
/// and when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    pub dot: Dot,
    pub context: VersionVector,
    pub value: String,
    /// The coordinator's wall clock when it minted the dot, in ms since the
    /// Unix epoch (0: unknown, for versions stored before timestamps).
    /// Informational — what `resolve=lww` picks the newest sibling by —
    /// and never used for causality: clocks of different nodes disagree.
    pub timestamp_ms: u64,
}

/// Bytes a version is counted as when a key's size is bounded: its value,
/// its dot and length prefixes, and each context entry (about what it
/// takes encoded).
const VERSION_OVERHEAD_BYTES: usize = 40;
const CONTEXT_ENTRY_BYTES: usize = 16;

impl Version {
    /// Whether this version's causal past includes `dot` (or is that write).
    pub fn covers(&self, dot: Dot) -> bool {
        self.dot == dot || self.context.covers(dot)
    }

    /// The full clock: context plus own dot.
    pub fn clock(&self) -> VersionVector {
        let mut clock = self.context.clone();
        clock.bump(self.dot.actor(), self.dot.counter);
        clock
    }

    /// Bytes this version counts for against a key's size limit.
    pub fn footprint(&self) -> usize {
        self.value
            .len()
            .saturating_add(VERSION_OVERHEAD_BYTES)
            .saturating_add(self.context.len().saturating_mul(CONTEXT_ENTRY_BYTES))
    }

    /// Causal order of two versions (by their dots, which are unique).
    pub fn compare(&self, other: &Version) -> Causality {
        if self.dot == other.dot {
            Causality::Equal
        } else if other.covers(self.dot) {
            Causality::Before
        } else if self.covers(other.dot) {
            Causality::After
        } else {
            Causality::Concurrent
        }
    }
}

/// A key's sibling set: versions none of which covers another, ordered by
/// dot so that equal sets compare and encode equally, and `seen`: the join
/// of the contexts of every version this set has merged.
///
/// `seen` is what makes knowledge of a key monotone. A version's context is
/// whatever its client sent; a context that covers a dot without covering
/// what that dot's version had seen (taken from another key, or made up)
/// would, once it supersedes that version, make a set that keeps only its
/// siblings forget dots — and a coordinator that forgets its own dots
/// mints them again. With `seen`, a dot once superseded here stays
/// superseded (an incoming version `seen` covers is dropped) and counters
/// are minted above everything ever known, whatever clients send (as
/// Riak's DVVSet keeps one clock per key). No held sibling's dot is ever
/// covered by `seen`.
///
/// A set is shared, not copied, when it is cloned: the row cache, the
/// store's commit queue, the anti-entropy index and a replica's answer all
/// hold the same set, and the first change made through one clone copies
/// it for that clone alone (`Arc::make_mut`). A key's set carries its
/// values (up to the key's byte limit), and an update used to copy it
/// four times.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Siblings {
    data: Arc<SiblingsData>,
}

/// What a [`Siblings`] holds; encoded as the set itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "Siblings")]
struct SiblingsData {
    versions: Vec<Version>,
    seen: VersionVector,
}

impl Serialize for Siblings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Siblings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        SiblingsData::deserialize(deserializer).map(|data| Siblings {
            data: Arc::new(data),
        })
    }
}

impl fmt::Debug for Siblings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Siblings")
            .field("versions", &self.data.versions)
            .field("seen", &self.data.seen)
            .finish()
    }
}

impl Siblings {
    pub fn new() -> Self {
        Self::default()
    }

    /// This set's contents to change: copied first if another clone shares
    /// them.
    fn data_mut(&mut self) -> &mut SiblingsData {
        Arc::make_mut(&mut self.data)
    }

    /// Build from any versions, keeping only those not covered by another.
    pub fn from_versions(
        versions: impl IntoIterator<Item = Version>,
    ) -> Result<Self, VersionError> {
        let mut set = Self::new();
        for v in versions {
            set.sync_one(v)?;
        }
        Ok(set)
    }

    /// Rebuild a stored set from its versions and what it had seen,
    /// checking it again on the way (a version `seen` covers is dropped, as
    /// merging it would; two versions under one dot are refused).
    pub fn from_parts(
        versions: impl IntoIterator<Item = Version>,
        seen: VersionVector,
    ) -> Result<Self, VersionError> {
        let mut set = Siblings {
            data: Arc::new(SiblingsData {
                versions: Vec::new(),
                seen,
            }),
        };
        for v in versions {
            set.sync_one(v)?;
        }
        Ok(set)
    }

    pub fn versions(&self) -> &[Version] {
        &self.data.versions
    }

    pub fn into_versions(self) -> Vec<Version> {
        Arc::try_unwrap(self.data)
            .map_or_else(|shared| shared.versions.clone(), |data| data.versions)
    }

    /// The join of the contexts of every version merged here: every dot
    /// superseded here.
    pub fn seen(&self) -> &VersionVector {
        &self.data.seen
    }

    pub fn len(&self) -> usize {
        self.data.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.versions.is_empty()
    }

    /// Bytes the set counts for against a key's size limit.
    pub fn footprint(&self) -> usize {
        self.data
            .versions
            .iter()
            .fold(0usize, |sum, v| sum.saturating_add(v.footprint()))
            .saturating_add(self.data.seen.len().saturating_mul(CONTEXT_ENTRY_BYTES))
    }

    /// Whether `dot` is known here: held, or superseded here.
    pub fn covers(&self, dot: Dot) -> bool {
        self.data.seen.covers(dot) || self.data.versions.iter().any(|v| v.dot == dot)
    }

    /// Merge one incoming version: it replaces the siblings its context
    /// covers, and is dropped if it was superseded here already. A sibling
    /// the incoming context does not cover is never dropped. A version
    /// whose dot is held with other contents is refused (`DotConflict`)
    /// and nothing changes: a dot names exactly one write.
    /// Returns whether the set changed.
    pub fn sync_one(&mut self, incoming: Version) -> Result<bool, VersionError> {
        if !self.admits(&incoming)? {
            return Ok(false);
        }
        self.insert_admitted(incoming);
        Ok(true)
    }

    /// Whether [`Siblings::sync_one`] would add `incoming`: not held (a
    /// held dot with other contents is a conflict) and not superseded.
    fn admits(&self, incoming: &Version) -> Result<bool, VersionError> {
        if let Some(held) = self.data.versions.iter().find(|s| s.dot == incoming.dot) {
            if held != incoming {
                return Err(VersionError::DotConflict { dot: incoming.dot });
            }
            return Ok(false);
        }
        Ok(!self.data.seen.covers(incoming.dot))
    }

    /// Add a version [`Siblings::admits`]: what it has seen is superseded.
    fn insert_admitted(&mut self, incoming: Version) {
        let data = self.data_mut();
        data.seen.join_in_place(&incoming.context);
        let seen = &data.seen;
        data.versions.retain(|s| !seen.covers(s.dot));
        let at = data.versions.partition_point(|s| s.dot < incoming.dot);
        data.versions.insert(at, incoming);
    }

    /// Merge another sibling set into this one, all or nothing: on a dot
    /// conflict this set is left as it was. What the other set superseded
    /// is superseded here too. Returns whether it changed.
    pub fn sync(&mut self, incoming: &Siblings) -> Result<bool, VersionError> {
        match self.synced(incoming)? {
            Some(merged) => {
                *self = merged;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// What [`Siblings::sync`] would make of this set: the merge with
    /// `incoming` if it differs from this set, None if it changes nothing
    /// (this set is left as it is either way). One copy of the set, and
    /// incoming versions are copied only when they are added.
    pub fn synced(&self, incoming: &Siblings) -> Result<Option<Siblings>, VersionError> {
        if self.seen().descends_from(incoming.seen()) {
            // What the merge below does when it changes nothing, without
            // copying the set: `seen` stays as it is, so no sibling is
            // superseded, and every incoming version is held or superseded
            // here (a held dot with other contents is the same conflict).
            let mut changes = false;
            for v in incoming.versions() {
                if self.admits(v)? {
                    changes = true;
                    break;
                }
            }
            if !changes {
                return Ok(None);
            }
        }
        // Built anew rather than cloned and pruned: only the siblings that
        // survive are copied (a write usually supersedes what it read, and
        // a superseded sibling's value was copied only to be dropped).
        let seen = self.seen().join(incoming.seen());
        let versions = self
            .versions()
            .iter()
            .filter(|v| !seen.covers(v.dot))
            .cloned()
            .collect();
        let mut merged = Siblings {
            data: Arc::new(SiblingsData { versions, seen }),
        };
        let mut added = false;
        for v in incoming.versions() {
            if merged.admits(v)? {
                merged.insert_admitted(v.clone());
                added = true;
            }
        }
        // An added dot was not in this set (it would have been held, or
        // superseded and then not admitted); without one, the versions
        // differ only if some were superseded, which shortens them (the
        // rest keep their order). So this is `merged != *self`, without
        // comparing every value.
        let changed = added || merged.len() != self.len() || merged.seen() != self.seen();
        Ok(changed.then_some(merged))
    }

    /// Everything this set knows: its siblings' clocks and every dot it
    /// superseded. The causal context handed to a client, so that its next
    /// write supersedes exactly what it has seen.
    pub fn context(&self) -> VersionVector {
        let mut vv = self.data.seen.clone();
        for v in &self.data.versions {
            vv.bump(v.dot.actor(), v.dot.counter);
        }
        vv
    }

    /// How many entries [`Self::context`] has, counted without building
    /// it (a replica's metrics count them for every key it stores).
    pub fn context_len(&self) -> usize {
        let (seen, versions) = (&self.data.seen, &self.data.versions);
        // Like `bump`: a dot adds an entry only with a counter, and only
        // for an actor that has none yet (in `seen` or an earlier dot).
        let adds = |v: &Version| v.dot.counter > 0 && !seen.has_entry(v.dot.actor());
        let added = versions
            .iter()
            .enumerate()
            .filter(|(at, v)| {
                adds(v)
                    && !versions[..*at]
                        .iter()
                        .any(|earlier| adds(earlier) && earlier.dot.actor() == v.dot.actor())
            })
            .count();
        seen.len() + added
    }

    /// Highest counter of `actor` known for this key (held dots and every
    /// context merged here).
    pub fn max_counter(&self, actor: impl Into<Actor>) -> u64 {
        let actor = actor.into();
        self.data
            .versions
            .iter()
            .filter(|v| v.dot.actor() == actor)
            .map(|v| v.dot.counter)
            .fold(self.data.seen.get(actor), u64::max)
    }

    /// Mint a new version at `actor` for a write that has seen `context`:
    /// the dot's counter is above everything this replica knows of the
    /// actor for the key, so dots never repeat as long as the local store
    /// keeps what it acked (a store that lost it starts a new incarnation,
    /// hence a new actor). Refuses to pass [`MAX_COUNTER`].
    pub fn mint(
        &self,
        actor: impl Into<Actor>,
        context: &VersionVector,
        value: String,
        timestamp_ms: u64,
    ) -> Result<Version, VersionError> {
        let actor = actor.into();
        let counter = self
            .max_counter(actor)
            .max(context.get(actor))
            .checked_add(1)
            .filter(|&c| c <= MAX_COUNTER)
            .ok_or(VersionError::CounterOverflow { actor })?;
        Ok(Version {
            dot: Dot::new(actor, counter),
            context: context.clone(),
            value,
            timestamp_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(node: NodeId, counter: u64) -> Dot {
        Dot::new(node, counter)
    }

    /// A blind write of `value` minted at `node`, added to `set`.
    fn blind_write(set: &mut Siblings, node: NodeId, value: &str) -> Version {
        let v = set
            .mint(node, &VersionVector::new(), value.into(), 0)
            .unwrap();
        set.sync_one(v.clone()).unwrap();
        v
    }

    #[test]
    fn blind_writes_become_siblings_and_a_covering_write_resolves_them() {
        let mut set = Siblings::new();
        blind_write(&mut set, 1, "a");
        let b = blind_write(&mut set, 1, "b");
        assert_eq!(b.dot, dot(1, 2));
        assert_eq!(
            set.len(),
            2,
            "a blind write must not discard an acked sibling"
        );
        let ctx = set.context();
        let c = set.mint(2, &ctx, "c".into(), 0).unwrap();
        set.sync_one(c.clone()).unwrap();
        assert_eq!(set.versions(), &[c]);
    }

    #[test]
    fn clones_share_a_set_until_one_changes_and_a_change_reaches_no_other_clone() {
        let mut set = Siblings::new();
        let a = blind_write(&mut set, 1, "a");
        let b = blind_write(&mut set, 2, "b");
        let before = set.clone();
        let mut changed = set.clone();
        assert!(
            Arc::ptr_eq(&set.data, &changed.data),
            "a clone is not a copy"
        );
        let c = changed.mint(3, &set.context(), "c".into(), 0).unwrap();
        assert!(changed.sync_one(c.clone()).unwrap());
        assert_eq!(changed.versions(), std::slice::from_ref(&c));
        assert_eq!(set.versions(), &[a.clone(), b.clone()]);
        assert_eq!(set, before);
        // Merging into the original leaves the clone that changed alone.
        let d = set.mint(1, &VersionVector::new(), "d".into(), 0).unwrap();
        assert!(set.sync_one(d.clone()).unwrap());
        assert_eq!(set.versions(), &[a, d, b]);
        assert_eq!(changed.versions(), &[c]);
    }

    #[test]
    fn a_set_encodes_as_its_versions_then_what_it_has_seen() {
        let mut set = Siblings::new();
        let a = set.mint(1, &VersionVector::new(), "a".into(), 5).unwrap();
        set.sync_one(a).unwrap();
        let b = set.mint(2, &set.context(), "b".into(), 6).unwrap();
        set.sync_one(b).unwrap();
        // What stored rows and frames of every earlier build hold.
        let as_fields = (set.versions().to_vec(), set.seen().clone());
        assert_eq!(
            crate::codec::encode(&set).unwrap(),
            crate::codec::encode(&as_fields).unwrap()
        );
        let read: Siblings =
            crate::codec::decode(&crate::codec::encode(&as_fields).unwrap()).unwrap();
        assert_eq!(read, set);
        assert_eq!(
            serde_json::to_value(&set).unwrap(),
            serde_json::json!({ "versions": serde_json::to_value(set.versions()).unwrap(), "seen": serde_json::to_value(set.seen()).unwrap() })
        );
    }

    /// `sync` as it was written before `synced`: the reference the
    /// cheaper merge must agree with.
    fn reference_sync(set: &mut Siblings, incoming: &Siblings) -> Result<bool, VersionError> {
        let mut merged = set.clone();
        let data = merged.data_mut();
        data.seen.join_in_place(incoming.seen());
        let seen = &data.seen;
        data.versions.retain(|v| !seen.covers(v.dot));
        for v in incoming.versions() {
            merged.sync_one(v.clone())?;
        }
        let changed = merged != *set;
        if changed {
            *set = merged;
        }
        Ok(changed)
    }

    #[test]
    fn synced_agrees_with_the_reference_merge() {
        // Replicas that mint, read and exchange at random (a fixed
        // generator), one of them forging a conflicting copy of a dot now
        // and then; every pair is merged both ways at every step.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut sets = vec![Siblings::new(); 4];
        let mut checked = 0;
        for step in 0..2000 {
            let at = next(4) as usize;
            let from = next(4) as usize;
            match next(4) {
                0 => {
                    let context = if next(2) == 0 {
                        VersionVector::new()
                    } else {
                        sets[from].context()
                    };
                    let node = at as NodeId + 1;
                    let v = sets[at]
                        .mint(node, &context, format!("v{step}"), 0)
                        .unwrap();
                    sets[at].sync_one(v).unwrap();
                }
                1 if !sets[from].is_empty() => {
                    // A forged copy of a held dot: a conflict for both.
                    let mut forged = sets[from].clone();
                    forged.data_mut().versions[0].value.push('!');
                    let (mut a, mut b) = (sets[at].clone(), sets[at].clone());
                    assert_eq!(a.sync(&forged), reference_sync(&mut b, &forged));
                    assert_eq!(a, b);
                }
                _ => {
                    let incoming = sets[from].clone();
                    let expected = {
                        let mut b = sets[at].clone();
                        (reference_sync(&mut b, &incoming), b)
                    };
                    let synced = sets[at].synced(&incoming);
                    let mut a = sets[at].clone();
                    assert_eq!(a.sync(&incoming), expected.0);
                    assert_eq!(a, expected.1);
                    match synced {
                        Ok(Some(merged)) => assert_eq!(merged, expected.1),
                        Ok(None) => assert_eq!(expected.0, Ok(false)),
                        Err(e) => assert_eq!(Err(e), expected.0),
                    }
                    sets[at] = a;
                    checked += 1;
                }
            }
            for set in &sets {
                assert_eq!(set.context_len(), set.context().len());
            }
        }
        assert!(checked > 500);
    }

    #[test]
    fn the_compact_encoding_is_the_maps_and_decodes_as_the_map_did() {
        use std::collections::BTreeMap;
        let actor = |node, incarnation| Actor { node, incarnation };
        let vv =
            VersionVector::from_entries([(actor(3, 0), 4), (actor(1, 2), 7), (actor(1, 0), 1)]);
        let map: BTreeMap<Actor, u64> = vv.entries().collect();
        assert_eq!(crate::codec::encode(&vv), crate::codec::encode(&map));
        assert_eq!(format!("{vv:?}"), format!("{map:?}"));
        // A map on the wire is its length and its entries, as a sequence of
        // pairs is: out of order, an actor twice, a zero counter.
        let wire: Vec<(Actor, u64)> = vec![
            (actor(5, 0), 2),
            (actor(2, 1), 9),
            (actor(5, 0), 1),
            (actor(1, 0), 0),
            (actor(2, 1), 3),
        ];
        let bytes = crate::codec::encode(&wire).unwrap();
        let decoded: VersionVector = crate::codec::decode(&bytes).unwrap();
        let as_map: BTreeMap<Actor, u64> = crate::codec::decode(&bytes).unwrap();
        assert_eq!(
            decoded.entries().collect::<Vec<_>>(),
            as_map.into_iter().collect::<Vec<_>>()
        );
        let sorted: VersionVector =
            crate::codec::decode(&crate::codec::encode(&vv).unwrap()).unwrap();
        assert_eq!(sorted, vv);
    }

    #[test]
    fn stale_version_is_ignored() {
        let mut set = Siblings::new();
        let a = set.mint(1, &VersionVector::new(), "a".into(), 0).unwrap();
        set.sync_one(a.clone()).unwrap();
        let b = set.mint(2, &set.context(), "b".into(), 0).unwrap();
        set.sync_one(b.clone()).unwrap();
        assert!(!set.sync_one(a).unwrap());
        assert_eq!(set.versions(), &[b]);
    }

    #[test]
    fn compare_versions() {
        let a = Version {
            dot: dot(1, 1),
            context: VersionVector::new(),
            value: "a".into(),
            timestamp_ms: 0,
        };
        let b = Version {
            dot: dot(2, 1),
            context: VersionVector::from_entries([(1, 1)]),
            value: "b".into(),
            timestamp_ms: 0,
        };
        let c = Version {
            dot: dot(3, 1),
            context: VersionVector::new(),
            value: "c".into(),
            timestamp_ms: 0,
        };
        assert_eq!(a.compare(&b), Causality::Before);
        assert_eq!(b.compare(&a), Causality::After);
        assert_eq!(a.compare(&c), Causality::Concurrent);
        assert_eq!(a.compare(&a), Causality::Equal);
    }

    #[test]
    fn a_dot_held_with_other_contents_is_refused_and_nothing_changes() {
        let mut set = Siblings::new();
        let x = set.mint(3, &VersionVector::new(), "X".into(), 0).unwrap();
        set.sync_one(x.clone()).unwrap();
        let mut y = x.clone();
        y.value = "Y".into();
        assert_eq!(
            set.sync_one(y.clone()),
            Err(VersionError::DotConflict { dot: x.dot })
        );
        let other = set.mint(4, &VersionVector::new(), "Z".into(), 0).unwrap();
        let incoming = Siblings::from_versions([other, y]).unwrap();
        assert!(set.sync(&incoming).is_err());
        assert_eq!(
            set.versions(),
            std::slice::from_ref(&x),
            "a refused merge changes nothing"
        );
        // the very same version again is simply already held
        assert_eq!(set.sync_one(x), Ok(false));
    }

    #[test]
    fn a_new_incarnation_is_a_new_actor() {
        let mut set = Siblings::new();
        let old = set.mint(3, &VersionVector::new(), "X".into(), 0).unwrap();
        set.sync_one(old.clone()).unwrap();
        // node 3 lost its store: its new incarnation knows nothing of n3:1
        let fresh = Siblings::new()
            .mint(Actor::new(3, 7), &VersionVector::new(), "Y".into(), 0)
            .unwrap();
        assert_eq!(fresh.dot.to_string(), "n3.7:1");
        assert_ne!(fresh.dot, old.dot);
        assert_eq!(set.sync_one(fresh), Ok(true));
        assert_eq!(set.len(), 2, "both writes are kept");
    }

    #[test]
    fn counters_never_overflow() {
        let huge = VersionVector::from_entries([(1, u64::MAX)]);
        assert_eq!(
            Siblings::new().mint(1, &huge, "v".into(), 0),
            Err(VersionError::CounterOverflow { actor: 1.into() })
        );
        let edge = VersionVector::from_entries([(1, MAX_COUNTER)]);
        assert!(Siblings::new().mint(1, &edge, "v".into(), 0).is_err());
        let below = VersionVector::from_entries([(1, MAX_COUNTER - 1)]);
        assert_eq!(
            Siblings::new()
                .mint(1, &below, "v".into(), 0)
                .unwrap()
                .dot
                .counter,
            MAX_COUNTER
        );
    }

    #[test]
    fn json_keys_name_the_incarnation() {
        let vv = VersionVector::from_entries([(Actor::new(2, 0), 1), (Actor::new(3, 7), 4)]);
        let json = serde_json::to_string(&vv).unwrap();
        assert_eq!(json, r#"{"2":1,"3.7":4}"#);
        assert_eq!(serde_json::from_str::<VersionVector>(&json).unwrap(), vv);
        let err = serde_json::from_str::<VersionVector>(r#"{"x.1":1}"#).unwrap_err();
        assert!(err.to_string().contains("\"x.1\""), "{err}");
    }

    /// n5:1 ("a"); n2:1 ("b"), whose client had seen a; and n3:1 ("c"),
    /// whose client sent a context covering b but not a (taken from
    /// another key, say). A set of all three keeps c alone, and must still
    /// know a, or a would come back and node 5 could mint n5:1 again.
    fn superseded_beyond_a_context() -> (Version, Version, Version) {
        let a = Siblings::new()
            .mint(5, &VersionVector::new(), "a".into(), 0)
            .unwrap();
        let b = Version {
            dot: dot(2, 1),
            context: VersionVector::from_entries([(5, 1)]),
            value: "b".into(),
            timestamp_ms: 0,
        };
        let c = Version {
            dot: dot(3, 1),
            context: VersionVector::from_entries([(2, 1)]),
            value: "c".into(),
            timestamp_ms: 0,
        };
        (a, b, c)
    }

    #[test]
    fn a_context_from_elsewhere_cannot_make_a_set_forget_its_dots() {
        let (a, b, c) = superseded_beyond_a_context();
        let set = Siblings::from_versions([a.clone(), b, c.clone()]).unwrap();
        assert_eq!(set.versions(), std::slice::from_ref(&c));
        assert_eq!(set.max_counter(5), 1);
        let next = set.mint(5, &VersionVector::new(), "d".into(), 0).unwrap();
        assert_eq!(next.dot, dot(5, 2), "a dot is never minted twice");
        // and the superseded version does not come back
        let mut again = set.clone();
        assert_eq!(again.sync_one(a), Ok(false));
        assert_eq!(again, set);
    }

    #[test]
    fn json_keys_round_trip_every_incarnation_but_zero_as_a_dotted_key() {
        for incarnation in [1, 2, 7] {
            let vv = VersionVector::from_entries([(Actor::new(3, incarnation), 4)]);
            let json = serde_json::to_string(&vv).unwrap();
            assert_eq!(json, format!(r#"{{"3.{incarnation}":4}}"#));
            assert_eq!(serde_json::from_str::<VersionVector>(&json).unwrap(), vv);
        }
    }

    #[test]
    fn a_compact_map_naming_an_actor_twice_in_a_row_keeps_the_last() {
        use std::collections::BTreeMap;
        let actor = |node| Actor::new(node, 0);
        // In order, but for the repeat: a map takes the later counter.
        let wire: Vec<(Actor, u64)> = vec![(actor(1), 4), (actor(1), 1), (actor(2), 2)];
        let bytes = crate::codec::encode(&wire).unwrap();
        let decoded: VersionVector = crate::codec::decode(&bytes).unwrap();
        let as_map: BTreeMap<Actor, u64> = crate::codec::decode(&bytes).unwrap();
        assert_eq!(
            decoded.entries().collect::<Vec<_>>(),
            as_map.into_iter().collect::<Vec<_>>()
        );
        assert_eq!(decoded, VersionVector::from_entries([(1, 1), (2, 2)]));
    }

    #[test]
    fn clocks_compare_by_what_each_has_seen() {
        let newer = VersionVector::from_entries([(1, 2), (2, 1)]);
        let older = VersionVector::from_entries([(1, 1)]);
        let other = VersionVector::from_entries([(3, 1)]);
        assert_eq!(newer.compare(&older), Causality::After);
        assert_eq!(older.compare(&newer), Causality::Before);
        assert_eq!(older.compare(&other), Causality::Concurrent);
        assert_eq!(newer.compare(&newer.clone()), Causality::Equal);
        assert_eq!(newer.partial_cmp(&older), Some(Ordering::Greater));
        assert_eq!(older.partial_cmp(&newer), Some(Ordering::Less));
        assert_eq!(older.partial_cmp(&other), None);
        assert_eq!(older.partial_cmp(&older.clone()), Some(Ordering::Equal));
    }

    #[test]
    fn a_vector_displays_each_entry_in_order() {
        let vv = VersionVector::from_entries([
            (Actor::new(4, 0), 5),
            (Actor::new(1, 0), 2),
            (Actor::new(3, 7), 1),
        ]);
        assert_eq!(vv.to_string(), "{n1:2, n3.7:1, n4:5}");
        assert_eq!(VersionVector::new().to_string(), "{}");
    }

    #[test]
    fn a_version_covers_its_own_dot_and_what_it_had_seen() {
        let v = Version {
            dot: dot(2, 3),
            context: VersionVector::from_entries([(1, 4)]),
            value: "v".into(),
            timestamp_ms: 0,
        };
        assert!(v.covers(dot(2, 3)), "a version is the write of its own dot");
        assert!(v.covers(dot(1, 4)) && v.covers(dot(1, 1)));
        assert!(!v.covers(dot(2, 4)) && !v.covers(dot(1, 5)));
    }

    #[test]
    fn a_sets_footprint_counts_its_versions_and_what_it_has_seen() {
        let mut set = Siblings::new();
        for node in 1..=3 {
            blind_write(&mut set, node, "a");
        }
        let ctx = set.context();
        let c = set.mint(4, &ctx, "c".into(), 0).unwrap();
        set.sync_one(c.clone()).unwrap();
        assert_eq!(set.seen().len(), 3);
        assert_eq!(
            c.footprint(),
            1 + VERSION_OVERHEAD_BYTES + 3 * CONTEXT_ENTRY_BYTES
        );
        assert_eq!(set.footprint(), c.footprint() + 3 * CONTEXT_ENTRY_BYTES);
    }

    #[test]
    fn a_set_covers_the_dots_it_superseded_as_well_as_those_it_holds() {
        let mut set = Siblings::new();
        let a = blind_write(&mut set, 1, "a");
        let ctx = set.context();
        let b = set.mint(2, &ctx, "b".into(), 0).unwrap();
        set.sync_one(b.clone()).unwrap();
        assert_eq!(set.versions(), std::slice::from_ref(&b));
        assert!(set.covers(b.dot), "held");
        assert!(set.covers(a.dot), "superseded here");
        assert!(!set.covers(dot(1, 2)) && !set.covers(dot(2, 2)));
    }

    #[test]
    fn a_dot_held_with_another_context_or_timestamp_is_a_conflict() {
        let mut set = Siblings::new();
        let x = blind_write(&mut set, 3, "X");
        let mut other_context = x.clone();
        other_context.context = VersionVector::from_entries([(9, 1)]);
        let mut other_time = x.clone();
        other_time.timestamp_ms += 1;
        for forged in [other_context, other_time] {
            assert_eq!(
                set.sync_one(forged.clone()),
                Err(VersionError::DotConflict { dot: x.dot })
            );
            let incoming = Siblings::from_versions([forged]).unwrap();
            assert!(set.sync(&incoming).is_err());
            assert_eq!(set.versions(), std::slice::from_ref(&x));
        }
    }

    #[test]
    fn a_merge_that_brings_only_what_the_other_set_superseded_changes_the_set() {
        // Both sets hold c; only the incoming one also superseded a (by
        // b). Merged, the set must know a too.
        let (a, b, c) = superseded_beyond_a_context();
        let incoming = Siblings::from_versions([a.clone(), b, c.clone()]).unwrap();
        let mut set = Siblings::from_versions([c.clone()]).unwrap();
        assert_eq!(set.sync(&incoming), Ok(true));
        assert_eq!(set.versions(), std::slice::from_ref(&c));
        assert_eq!(set.seen(), incoming.seen());
        assert_eq!(set.max_counter(5), 1);
        assert_eq!(set.sync_one(a), Ok(false), "n5:1 stays superseded");
    }

    #[test]
    fn the_context_length_counts_each_incarnation_as_its_own_actor() {
        let mut set = Siblings::new();
        blind_write(&mut set, 3, "a");
        let fresh = set
            .mint(Actor::new(3, 7), &VersionVector::new(), "b".into(), 0)
            .unwrap();
        set.sync_one(fresh).unwrap();
        blind_write(&mut set, 3, "c");
        assert_eq!(set.len(), 3);
        assert_eq!(set.context().len(), 2);
        assert_eq!(set.context_len(), 2);
    }

    #[test]
    fn a_stored_set_is_rebuilt_with_everything_it_had_seen() {
        // What a row holds: c, whose context covers n2:1 only, beside a
        // `seen` that also has n5:1 (superseded by n2:1 before).
        let (_, _, c) = superseded_beyond_a_context();
        let seen = VersionVector::from_entries([(2, 1), (5, 1)]);
        let set = Siblings::from_parts([c.clone()], seen.clone()).unwrap();
        assert_eq!(set.seen(), &seen);
        assert_eq!(set.max_counter(5), 1);
        // A version the stored set had superseded is dropped on the way.
        let old = Siblings::new()
            .mint(5, &VersionVector::new(), "a".into(), 0)
            .unwrap();
        let set = Siblings::from_parts([old, c.clone()], seen).unwrap();
        assert_eq!(set.versions(), std::slice::from_ref(&c));
    }

    #[test]
    fn a_zero_counter_adds_no_entry() {
        let vv = VersionVector::from_entries([(1, 0), (2, 3), (3, 0)]);
        assert_eq!(vv, VersionVector::from_entries([(2, 3)]));
        assert_eq!(vv.len(), 1);
        let mut bumped = VersionVector::new();
        bumped.bump(4, 0);
        assert!(bumped.is_empty());
    }
}
