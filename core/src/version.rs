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
use std::collections::BTreeMap;
use std::fmt;

/// Identifier of a replica. In a deployment `--id 3` is node 3.
pub type NodeId = u32;

/// One event: the `counter`-th write that `node` coordinated for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub node: NodeId,
    pub counter: u64,
}

impl fmt::Display for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}:{}", self.node, self.counter)
    }
}

/// A version vector: for each node, how many of its events are included.
/// Kept as a `BTreeMap` so iteration (and therefore encoding) is ordered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct VersionVector(BTreeMap<NodeId, u64>);

/// Deserialised by hand so that node ids are accepted as numbers (bincode)
/// or as strings (JSON object keys, including inside internally tagged
/// enums, where serde hands map keys over as strings).
impl<'de> Deserialize<'de> for VersionVector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Key {
            Number(NodeId),
            Text(String),
        }
        if !deserializer.is_human_readable() {
            // Compact formats (bincode) carry node ids as plain integers.
            return BTreeMap::<NodeId, u64>::deserialize(deserializer).map(VersionVector);
        }
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = VersionVector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a map from node id to counter")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<VersionVector, A::Error> {
                let mut vv = VersionVector::new();
                while let Some((key, counter)) = map.next_entry::<Key, u64>()? {
                    let node = match key {
                        Key::Number(n) => n,
                        Key::Text(t) => t.parse().map_err(|_| {
                            serde::de::Error::custom(format!("node id {t:?} is not a number"))
                        })?,
                    };
                    vv.bump(node, counter);
                }
                Ok(vv)
            }
        }
        deserializer.deserialize_map(Entries)
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

    pub fn from_entries(entries: impl IntoIterator<Item = (NodeId, u64)>) -> Self {
        let mut vv = Self::new();
        for (node, counter) in entries {
            vv.bump(node, counter);
        }
        vv
    }

    /// The counter of `node` (0 when absent).
    pub fn get(&self, node: NodeId) -> u64 {
        self.0.get(&node).copied().unwrap_or(0)
    }

    /// Raise `node`'s entry to at least `counter`.
    pub fn bump(&mut self, node: NodeId, counter: u64) {
        if counter == 0 {
            return;
        }
        let entry = self.0.entry(node).or_insert(0);
        *entry = (*entry).max(counter);
    }

    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.node) >= dot.counter
    }

    pub fn entries(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.0.iter().map(|(n, c)| (*n, *c))
    }

    pub fn len(&self) -> usize {
        self.0.len()
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
        for (node, counter) in other.entries() {
            self.bump(node, counter);
        }
    }

    /// `self <= other` pointwise.
    pub fn descends_from(&self, other: &VersionVector) -> bool {
        other.entries().all(|(n, c)| self.get(n) >= c)
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
        for (i, (n, c)) in self.entries().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "n{n}:{c}")?;
        }
        write!(f, "}}")
    }
}

/// A stored value with its dotted version: the dot minted for the write and
/// the causal context (what the writer had seen, excluding the dot itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    pub dot: Dot,
    pub context: VersionVector,
    pub value: String,
}

impl Version {
    /// Whether this version's causal past includes `dot` (or is that write).
    pub fn covers(&self, dot: Dot) -> bool {
        self.dot == dot || self.context.covers(dot)
    }

    /// The full clock: context plus own dot.
    pub fn clock(&self) -> VersionVector {
        let mut clock = self.context.clone();
        clock.bump(self.dot.node, self.dot.counter);
        clock
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
/// dot so that equal sets compare and encode equally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Siblings(Vec<Version>);

impl Siblings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build from any versions, keeping only those not covered by another.
    pub fn from_versions(versions: impl IntoIterator<Item = Version>) -> Self {
        let mut set = Self::new();
        for v in versions {
            set.sync_one(v);
        }
        set
    }

    pub fn versions(&self) -> &[Version] {
        &self.0
    }

    pub fn into_versions(self) -> Vec<Version> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether some sibling is, or causally covers, `dot`.
    pub fn covers(&self, dot: Dot) -> bool {
        self.0.iter().any(|v| v.covers(dot))
    }

    /// Merge one incoming version: it replaces the siblings its context
    /// covers, and is dropped if a sibling already covers it. A sibling the
    /// incoming context does not cover is never dropped.
    /// Returns whether the set changed.
    pub fn sync_one(&mut self, incoming: Version) -> bool {
        if self.covers(incoming.dot) {
            return false;
        }
        self.0.retain(|s| !incoming.covers(s.dot));
        let at = self.0.partition_point(|s| s.dot < incoming.dot);
        self.0.insert(at, incoming);
        true
    }

    /// Merge another sibling set into this one. Returns whether it changed.
    pub fn sync(&mut self, incoming: &Siblings) -> bool {
        let mut changed = false;
        for v in incoming.versions() {
            changed |= self.sync_one(v.clone());
        }
        changed
    }

    /// The join of every sibling's clock: the causal context handed to a
    /// client so that its next write supersedes exactly what it has seen.
    pub fn context(&self) -> VersionVector {
        let mut vv = VersionVector::new();
        for v in &self.0 {
            vv.join_in_place(&v.context);
            vv.bump(v.dot.node, v.dot.counter);
        }
        vv
    }

    /// Highest counter of `node` known for this key (dots and contexts).
    pub fn max_counter(&self, node: NodeId) -> u64 {
        self.0
            .iter()
            .map(|v| {
                let own = if v.dot.node == node { v.dot.counter } else { 0 };
                own.max(v.context.get(node))
            })
            .max()
            .unwrap_or(0)
    }

    /// Mint a new version at `node` for a write that has seen `context`:
    /// the dot's counter is above everything this node knows for the key,
    /// so dots never repeat as long as the local store keeps what it acked.
    pub fn mint(&self, node: NodeId, context: &VersionVector, value: String) -> Version {
        let counter = self.max_counter(node).max(context.get(node)) + 1;
        Version {
            dot: Dot { node, counter },
            context: context.clone(),
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(node: NodeId, counter: u64) -> Dot {
        Dot { node, counter }
    }

    #[test]
    fn blind_writes_become_siblings_and_a_covering_write_resolves_them() {
        let mut set = Siblings::new();
        let a = set.mint(1, &VersionVector::new(), "a".into());
        set.sync_one(a.clone());
        let b = set.mint(1, &VersionVector::new(), "b".into());
        assert_eq!(b.dot, dot(1, 2));
        set.sync_one(b.clone());
        assert_eq!(
            set.len(),
            2,
            "a blind write must not discard an acked sibling"
        );
        let ctx = set.context();
        let c = set.mint(2, &ctx, "c".into());
        set.sync_one(c.clone());
        assert_eq!(set.versions(), &[c]);
    }

    #[test]
    fn stale_version_is_ignored() {
        let mut set = Siblings::new();
        let a = set.mint(1, &VersionVector::new(), "a".into());
        set.sync_one(a.clone());
        let b = set.mint(2, &set.context(), "b".into());
        set.sync_one(b.clone());
        assert!(!set.sync_one(a));
        assert_eq!(set.versions(), &[b]);
    }

    #[test]
    fn compare_versions() {
        let a = Version {
            dot: dot(1, 1),
            context: VersionVector::new(),
            value: "a".into(),
        };
        let b = Version {
            dot: dot(2, 1),
            context: VersionVector::from_entries([(1, 1)]),
            value: "b".into(),
        };
        let c = Version {
            dot: dot(3, 1),
            context: VersionVector::new(),
            value: "c".into(),
        };
        assert_eq!(a.compare(&b), Causality::Before);
        assert_eq!(b.compare(&a), Causality::After);
        assert_eq!(a.compare(&c), Causality::Concurrent);
        assert_eq!(a.compare(&a), Causality::Equal);
    }
}
