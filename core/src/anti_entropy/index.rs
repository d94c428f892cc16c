//! The Merkle index: a fixed-fanout trie over a hash of the key, whose
//! nodes summarise their key range as (XOR of entry hashes, entry count).
//! See the module documentation of `anti_entropy` for the design and its
//! costs.
use super::digest::{entry_digest, KeyDigest};
use crate::version::Siblings;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{BitXor, BitXorAssign, Bound};

/// Bits of the key position each trie level consumes: 16 children a node.
pub const FANOUT_BITS: u32 = 4;
/// Children of an inner node.
pub const FANOUT: usize = 1 << FANOUT_BITS;
/// Deepest level: a level-16 node is one full 64-bit key position.
pub const MAX_LEVEL: u8 = (u64::BITS / FANOUT_BITS) as u8;
/// A node holding at most this many entries is answered with its entries
/// rather than its children, and is not stored (its summary is computed
/// from its entries on demand). 32 keeps the stored nodes to about one per
/// 100 keys while a leaf answer stays around a kilobyte for short keys.
pub const LEAF_ENTRIES: usize = 32;

/// Bytes of a node hash.
pub const NODE_HASH_BYTES: usize = 16;

/// XOR of the entry hashes under a trie node.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeHash([u8; NODE_HASH_BYTES]);

impl NodeHash {
    pub const ZERO: NodeHash = NodeHash([0; NODE_HASH_BYTES]);

    pub const fn as_bytes(&self) -> &[u8; NODE_HASH_BYTES] {
        &self.0
    }
}

impl BitXor for NodeHash {
    type Output = NodeHash;
    fn bitxor(mut self, other: NodeHash) -> NodeHash {
        self ^= other;
        self
    }
}

impl BitXorAssign for NodeHash {
    fn bitxor_assign(&mut self, other: NodeHash) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a ^= b;
        }
    }
}

impl fmt::Debug for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// What two replicas compare for one trie node: the XOR of its entries'
/// hashes and how many entries it holds. Equal summaries mean (up to a
/// 2^-128 accident) equal contents; the count also tells an empty node
/// from one whose hashes happen to cancel, and which side holds more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub hash: NodeHash,
    pub count: u64,
}

impl Summary {
    pub const EMPTY: Summary = Summary {
        hash: NodeHash::ZERO,
        count: 0,
    };

    fn add(&mut self, entry: NodeHash) {
        self.hash ^= entry;
        // Bounded by the number of entries held in memory: cannot wrap.
        self.count += 1;
    }
}

/// A node of the trie: the keys whose position starts with the `level`
/// nibbles of `prefix`. The trie's shape depends only on key positions,
/// never on what a replica holds, so a node names the same key range on
/// every replica and can be sent on the wire.
///
/// Fields are private: a value decoded from a peer may be invalid and is
/// checked with [`TrieNode::is_valid`] before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrieNode {
    level: u8,
    prefix: u64,
}

impl TrieNode {
    /// The whole key space.
    pub const ROOT: TrieNode = TrieNode {
        level: 0,
        prefix: 0,
    };

    /// The node at `level` with `prefix` (its top `4 × level` bits,
    /// right-aligned), if that names a node.
    pub fn new(level: u8, prefix: u64) -> Option<TrieNode> {
        let node = TrieNode { level, prefix };
        node.is_valid().then_some(node)
    }

    pub fn level(self) -> u8 {
        self.level
    }

    pub fn prefix(self) -> u64 {
        self.prefix
    }

    /// Whether this names a node: a level within the trie and a prefix
    /// that fits it.
    pub fn is_valid(self) -> bool {
        self.level <= MAX_LEVEL
            && self
                .prefix
                .checked_shr(self.bits())
                .is_none_or(|rest| rest == 0)
    }

    /// Bits of the position this node fixes (0..=64).
    fn bits(self) -> u32 {
        u32::from(self.level) * FANOUT_BITS
    }

    /// The node at `level` on the path to `position`.
    pub(crate) fn of_position(position: u64, level: u8) -> TrieNode {
        let bits = u32::from(level) * FANOUT_BITS;
        TrieNode {
            level,
            // level 0 shifts by 64, which `>>` refuses: the root's prefix is 0
            prefix: position.checked_shr(u64::BITS - bits).unwrap_or(0),
        }
    }

    /// Child `index` (0..16), or `None` for a node at [`MAX_LEVEL`].
    pub fn child(self, index: usize) -> Option<TrieNode> {
        if self.level >= MAX_LEVEL || index >= FANOUT {
            return None;
        }
        Some(TrieNode {
            level: self.level + 1,
            prefix: (self.prefix << FANOUT_BITS) | index as u64,
        })
    }

    /// First and last key position of this node's range (inclusive).
    pub fn bounds(self) -> (u64, u64) {
        let low = self
            .prefix
            .checked_shl(u64::BITS - self.bits())
            .unwrap_or(0);
        let span = u64::MAX.checked_shr(self.bits()).unwrap_or(0);
        (low, low | span)
    }

    pub fn contains(self, position: u64) -> bool {
        let (low, high) = self.bounds();
        (low..=high).contains(&position)
    }
}

/// Domain tags: the key position and the entry hash must never coincide
/// with each other or with any other SHA-256 in the system. Short, so that
/// for keys up to 23 bytes each hash is a single SHA-256 block (one block
/// holds 55 bytes of message): these run twice per update and 2n times
/// per build.
const POSITION_DOMAIN: &[u8] = b"qlae:p1\0";
const ENTRY_DOMAIN: &[u8] = b"qlae:e1\0";

/// Where a key sits in the trie: the first 64 bits of a hash of the key, so
/// keys spread evenly whatever their names look like.
pub fn key_position(key: &str) -> u64 {
    let hash = Sha256::new()
        .chain_update(POSITION_DOMAIN)
        .chain_update(key.as_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(head)
}

/// The hash one (key, digest) entry contributes to every node above it.
/// It binds the key as well as the digest: XOR-ing digests alone would let
/// two keys swapping states cancel out.
fn entry_hash(key: &str, digest: &KeyDigest) -> NodeHash {
    let hash = Sha256::new()
        .chain_update(ENTRY_DOMAIN)
        .chain_update((key.len() as u64).to_le_bytes())
        .chain_update(key.as_bytes())
        .chain_update(digest.as_bytes())
        .finalize();
    let mut bytes = [0u8; NODE_HASH_BYTES];
    bytes.copy_from_slice(&hash[..NODE_HASH_BYTES]);
    NodeHash(bytes)
}

/// The summary of `node`, whose entries have these (sorted) positions and
/// hashes; stores it and every node below it holding more than
/// `LEAF_ENTRIES` entries in `stored`.
fn summarise(
    node: TrieNode,
    positions: &[u64],
    hashes: &[NodeHash],
    stored: &mut BTreeMap<TrieNode, Summary>,
) -> Summary {
    let count = positions.len() as u64;
    if positions.len() <= LEAF_ENTRIES || node.level == MAX_LEVEL {
        let hash = hashes.iter().fold(NodeHash::ZERO, |sum, hash| sum ^ *hash);
        let summary = Summary { hash, count };
        if positions.len() > LEAF_ENTRIES {
            stored.insert(node, summary);
        }
        return summary;
    }
    let mut hash = NodeHash::ZERO;
    let mut start = 0;
    for i in 0..FANOUT {
        let Some(child) = node.child(i) else { break };
        let (_, high) = child.bounds();
        let end = start + positions[start..].partition_point(|&p| p <= high);
        hash ^= summarise(child, &positions[start..end], &hashes[start..end], stored).hash;
        start = end;
    }
    let summary = Summary { hash, count };
    stored.insert(node, summary);
    summary
}

/// An entry's place in the index: ordered by position, then by key (two
/// keys with one 64-bit position are possible, and must stay distinct).
type EntryKey = (u64, Box<str>);

/// What the index holds for a key: its digest, and the hash the entry
/// contributes to the nodes above it, kept rather than hashed again each
/// time a node is summed from its entries (every comparison of a small
/// index, and every probe of a leaf, sums them all).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Held {
    digest: KeyDigest,
    hash: NodeHash,
}

/// The Merkle index of one replica's keys: key → [`KeyDigest`], and a
/// summary for every trie node holding more than [`LEAF_ENTRIES`] keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Index {
    entries: BTreeMap<EntryKey, Held>,
    /// Exactly the nodes holding more than `LEAF_ENTRIES` entries, with
    /// their summaries. On any key's path they form a prefix of the path
    /// (a child never holds more than its parent), so an update stops at
    /// the first node that is not stored. Every other node's summary is
    /// computed from its (at most `LEAF_ENTRIES`) entries when asked for.
    nodes: BTreeMap<TrieNode, Summary>,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("keys", &self.entries.len())
            .field("stored_nodes", &self.nodes.len())
            .field("root", &self.root())
            .finish()
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Build the index in one pass over a replica's keys (at node start),
    /// instead of a million single upserts: sort once, hash every entry
    /// once, sum up the stored nodes by splitting the sorted entries top
    /// down (only nodes above `LEAF_ENTRIES` are split, so each entry is
    /// touched at about log16(n / 32) + 1 levels), and build the map in
    /// bulk (densely packed). If a key comes twice, the later digest wins.
    pub fn from_entries<K, I>(entries: I) -> Self
    where
        K: Into<Box<str>>,
        I: IntoIterator<Item = (K, KeyDigest)>,
    {
        let mut sorted: Vec<(EntryKey, KeyDigest)> = entries
            .into_iter()
            .map(|(key, digest)| {
                let key: Box<str> = key.into();
                ((key_position(&key), key), digest)
            })
            .collect();
        // stable, so that of two equal keys the later stays later
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sorted.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = later.1;
            }
            same
        });
        let positions: Vec<u64> = sorted.iter().map(|((position, _), _)| *position).collect();
        let hashes: Vec<NodeHash> = sorted
            .iter()
            .map(|((_, key), digest)| entry_hash(key, digest))
            .collect();
        let mut nodes = BTreeMap::new();
        summarise(TrieNode::ROOT, &positions, &hashes, &mut nodes);
        Index {
            // from a sorted sequence std builds the tree in bulk, full nodes
            entries: sorted
                .into_iter()
                .zip(hashes)
                .map(|((key, digest), hash)| (key, Held { digest, hash }))
                .collect(),
            nodes,
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Trie nodes stored (those above [`LEAF_ENTRIES`] keys): the index's
    /// memory beyond its entries.
    pub fn stored_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The digest held for `key`, if any.
    pub fn get(&self, key: &str) -> Option<KeyDigest> {
        self.entries
            .get(&(key_position(key), Box::from(key)))
            .map(|held| held.digest)
    }

    /// Summary of the whole index: equal roots, equal replicas.
    pub fn root(&self) -> Summary {
        self.summary(TrieNode::ROOT)
    }

    /// Record the state a key now has: its digest, or no entry when the
    /// set is absent.
    pub fn record(&mut self, key: &str, siblings: &Siblings) {
        self.record_entry(key, entry_digest(siblings));
    }

    /// Record a state already digested by [`entry_digest`] (which a
    /// replica's writers take outside the index's lock).
    pub fn record_entry(&mut self, key: &str, entry: Option<KeyDigest>) {
        match entry {
            Some(digest) => self.upsert(key, digest),
            None => {
                self.remove(key);
            }
        }
    }

    /// Set `key`'s digest. O(depth): the entry hash changes every stored
    /// node on the key's path; a new key may push the first unstored node
    /// (rarely also the ones below it) over `LEAF_ENTRIES`, and each such
    /// node is then summed from its 33 entries.
    pub fn upsert(&mut self, key: &str, digest: KeyDigest) {
        let position = key_position(key);
        let new = entry_hash(key, &digest);
        let held = Held { digest, hash: new };
        let (delta, added) = match self.entries.insert((position, key.into()), held) {
            Some(old) if old.digest == digest => return,
            Some(old) => (old.hash ^ new, false),
            None => (new, true),
        };
        for level in 0..=MAX_LEVEL {
            let node = TrieNode::of_position(position, level);
            if let Some(summary) = self.nodes.get_mut(&node) {
                summary.hash ^= delta;
                if added {
                    summary.count += 1;
                }
                continue;
            }
            // Not stored: it held at most LEAF_ENTRIES before this update,
            // and so does everything below it. Only a new key can push it
            // over, and then its deeper nodes may need storing too.
            // Count before hashing: almost always it stays small.
            if !added || self.range(node).take(LEAF_ENTRIES + 1).count() <= LEAF_ENTRIES {
                break;
            }
            let summary = self.scan(node, LEAF_ENTRIES + 1);
            self.nodes.insert(node, summary);
        }
    }

    /// Forget `key` (its set became absent). Returns whether it was held.
    pub fn remove(&mut self, key: &str) -> bool {
        let position = key_position(key);
        let Some(Held { hash, .. }) = self.entries.remove(&(position, Box::from(key))) else {
            return false;
        };
        for level in 0..=MAX_LEVEL {
            let node = TrieNode::of_position(position, level);
            let Some(summary) = self.nodes.get_mut(&node) else {
                break;
            };
            summary.hash ^= hash;
            // a stored node holds more than LEAF_ENTRIES ≥ 1 entries
            summary.count -= 1;
            if summary.count <= LEAF_ENTRIES as u64 {
                self.nodes.remove(&node);
            }
        }
        true
    }

    /// Summary of any node: stored, or computed from its few entries.
    pub fn summary(&self, node: TrieNode) -> Summary {
        match self.nodes.get(&node) {
            Some(summary) => *summary,
            // not stored: at most LEAF_ENTRIES entries to hash
            None => self.scan(node, usize::MAX),
        }
    }

    /// Summary of up to `limit` first entries of `node` (all of them for
    /// an unstored node, whose entries are few).
    fn scan(&self, node: TrieNode, limit: usize) -> Summary {
        let mut summary = Summary::EMPTY;
        for (_, held) in self.held(node).take(limit) {
            summary.add(held.hash);
        }
        summary
    }

    /// The entries of a node, in (position, key) order.
    pub(crate) fn range(
        &self,
        node: TrieNode,
    ) -> impl Iterator<Item = (&EntryKey, &KeyDigest)> + '_ {
        self.held(node).map(|(key, held)| (key, &held.digest))
    }

    /// What the index holds for each key of a node, in (position, key)
    /// order.
    fn held(&self, node: TrieNode) -> impl Iterator<Item = (&EntryKey, &Held)> + '_ {
        let (low, high) = node.bounds();
        let start = Bound::Included((low, Box::<str>::default()));
        let end = match high.checked_add(1) {
            Some(next) => Bound::Excluded((next, Box::<str>::default())),
            None => Bound::Unbounded,
        };
        self.entries.range((start, end))
    }

    /// Every key and digest, in (position, key) order: the index's own
    /// deterministic order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, KeyDigest)> + '_ {
        self.entries
            .iter()
            .map(|((_, key), held)| (&**key, held.digest))
    }

    /// Whether every entry's kept hash and every node's stored summary is
    /// right, and exactly the nodes above `LEAF_ENTRIES` are stored (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        for ((_, key), held) in &self.entries {
            if held.hash != entry_hash(key, &held.digest) {
                return Err(format!("the entry hash kept for {key:?} is not its own"));
            }
        }
        let rebuilt = Index::from_entries(self.iter());
        if rebuilt.nodes != self.nodes {
            return Err(format!(
                "stored nodes differ from a rebuild: {} stored, {} rebuilt",
                self.nodes.len(),
                rebuilt.nodes.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anti_entropy::digest::digest;
    use proptest::prelude::*;

    fn d(n: u64) -> KeyDigest {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        bytes[8] = 1;
        KeyDigest::from_bytes(bytes)
    }

    #[test]
    fn node_bounds_cover_the_key_space() {
        assert_eq!(TrieNode::ROOT.bounds(), (0, u64::MAX));
        let leaf = TrieNode::new(MAX_LEVEL, 0xdead_beef).unwrap();
        assert_eq!(leaf.bounds(), (0xdead_beef, 0xdead_beef));
        assert!(leaf.child(0).is_none());
        assert!(TrieNode::new(1, 16).is_none());
        assert!(TrieNode::new(MAX_LEVEL + 1, 0).is_none());
        let node = TrieNode::new(1, 0xf).unwrap();
        assert_eq!(node.bounds(), (0xf << 60, u64::MAX));
        let children: Vec<_> = (0..FANOUT).map(|i| node.child(i).unwrap()).collect();
        assert_eq!(children[0].bounds().0, node.bounds().0);
        assert_eq!(children[15].bounds().1, node.bounds().1);
        for pair in children.windows(2) {
            assert_eq!(pair[0].bounds().1 + 1, pair[1].bounds().0);
        }
        for level in 0..=MAX_LEVEL {
            let p = 0x0123_4567_89ab_cdef;
            assert!(TrieNode::of_position(p, level).contains(p));
        }
    }

    #[test]
    fn nodes_are_stored_above_the_leaf_size_and_dropped_below() {
        let mut index = Index::new();
        for i in 0..2000u64 {
            index.upsert(&format!("k{i}"), d(i));
        }
        index.check().unwrap();
        assert!(index.stored_nodes() > 16);
        assert_eq!(index.root().count, 2000);
        for i in 0..2000u64 {
            assert!(index.remove(&format!("k{i}")));
        }
        assert_eq!(index, Index::new());
        assert!(!index.remove("k0"));
    }

    #[test]
    fn an_absent_set_is_no_entry() {
        let mut index = Index::new();
        let set = Siblings::from_versions([crate::version::Version {
            dot: crate::version::Dot::new(1, 1),
            context: Default::default(),
            value: "v".into(),
            timestamp_ms: 0,
        }])
        .unwrap();
        index.record("a", &set);
        assert_eq!(index.get("a"), Some(digest(&set)));
        index.record("a", &Siblings::new());
        assert_eq!(index, Index::new());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Upsert(u16, u8),
        Remove(u16),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                3 => (0u16..600, any::<u8>()).prop_map(|(k, v)| Op::Upsert(k, v)),
                1 => (0u16..600).prop_map(Op::Remove),
            ],
            0..1500,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Incremental updates leave exactly the index a one-pass build of
        /// the same contents gives, whatever the order of updates.
        #[test]
        fn incremental_updates_equal_a_fresh_build(ops in ops()) {
            let mut index = Index::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Upsert(k, v) => {
                        index.upsert(&format!("key{k}"), d(v.into()));
                        model.insert(format!("key{k}"), d(v.into()));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(
                            index.remove(&format!("key{k}")),
                            model.remove(&format!("key{k}")).is_some()
                        );
                    }
                }
            }
            let built = Index::from_entries(model.clone());
            prop_assert_eq!(&index, &built);
            prop_assert_eq!(index.check(), Ok(()));
            prop_assert_eq!(index.root().count, model.len() as u64);
            for (key, digest) in &model {
                prop_assert_eq!(index.get(key), Some(*digest));
            }
        }
    }

    #[test]
    fn the_root_depends_only_on_the_contents() {
        let forward = Index::from_entries((0..500u64).map(|i| (format!("k{i}"), d(i))));
        let mut backward = Index::new();
        for i in (0..500u64).rev() {
            backward.upsert(&format!("k{i}"), d(i + 1));
            backward.upsert(&format!("k{i}"), d(i));
        }
        assert_eq!(forward.root(), backward.root());
        // a duplicated key keeps the later digest
        let twice = Index::from_entries([("a", d(1)), ("a", d(2))]);
        assert_eq!(twice.get("a"), Some(d(2)));
        assert_eq!(twice.len(), 1);
        let mut changed = forward.clone();
        changed.upsert("k7", d(1000));
        assert_ne!(changed.root(), forward.root());
        assert_eq!(changed.root().count, forward.root().count);
    }

    #[test]
    fn two_keys_that_swap_states_change_the_root() {
        let one = Index::from_entries([("a", d(1)), ("b", d(2))]);
        let swapped = Index::from_entries([("a", d(2)), ("b", d(1))]);
        assert_ne!(one.root(), swapped.root());
    }

    /// A one-pass build splits a node's entries among its children by
    /// position: the last position of a child's range is that child's.
    #[test]
    fn a_position_at_the_end_of_a_childs_range_is_summed_in_that_child() {
        let child = TrieNode::ROOT.child(0).unwrap();
        let (low, high) = child.bounds();
        // one entry more than a leaf in child 0, the last at its last
        // position, and one entry in child 1
        let mut positions: Vec<u64> = (0..LEAF_ENTRIES as u64).map(|i| low + i).collect();
        positions.push(high);
        positions.push(high + 1);
        let hashes: Vec<NodeHash> = (0..positions.len())
            .map(|i| entry_hash(&format!("k{i}"), &d(i as u64)))
            .collect();
        let mut stored = BTreeMap::new();
        summarise(TrieNode::ROOT, &positions, &hashes, &mut stored);
        let in_child = hashes[..=LEAF_ENTRIES]
            .iter()
            .fold(NodeHash::ZERO, |sum, hash| sum ^ *hash);
        assert_eq!(
            stored.get(&child),
            Some(&Summary {
                hash: in_child,
                count: LEAF_ENTRIES as u64 + 1
            })
        );
    }
}
