//! The Merkle part of anti-entropy: a per-replica index of every key's
//! state, and a protocol that finds the keys two replicas disagree on while
//! exchanging little more than what differs.
//!
//! Replicas converge without client reads (DESIGN.md, "Durability and
//! convergence"): a background task on each node compares its key space
//! with each peer's and repairs the keys that differ. This module is that
//! comparison, self-contained and transport-free; the task, the RPC
//! variants carrying [`AeRequest`]/[`AeResponse`], the repair (fetch and
//! `Apply` of the differing keys) and the hook that keeps the index in step
//! with the store are the integrator's.
//!
//! # The pieces
//!
//! - [`digest()`]: a key's state as a [`KeyDigest`], 16 bytes of SHA-256
//!   over a canonical encoding of its sibling set (versions sorted by dot,
//!   vectors by actor, everything length-prefixed), so equal sets get equal
//!   digests whatever order they were merged in. An absent set (nothing
//!   ever merged) is no entry at all, like a replica that never heard of
//!   the key.
//! - [`Index`]: key → digest, with Merkle summaries kept up to date by
//!   [`Index::upsert`] / [`Index::remove`] (or [`Index::record`] with the
//!   new sibling set) on every local update, or built in one pass by
//!   [`Index::from_entries`] when a node starts.
//! - [`Index::answer`] serves a peer's [`AeRequest`]; [`differences`]
//!   drives a comparison against an [`AePeer`] within a [`Budget`].
//!
//! # The index: a hashed trie with XOR summaries
//!
//! A key's *position* is the first 64 bits of SHA-256 of the key. The trie
//! has fanout 16: the node at level `l` with prefix `p` covers every key
//! whose position starts with the `l` nibbles `p` (the root covers all;
//! level 16, the deepest, is one position). The shape depends on positions
//! only, never on what a replica holds, so a node names the same key range
//! on every replica and can be named on the wire as `(level, prefix)`.
//!
//! A node's [`Summary`] is the XOR of the *entry hashes* of its keys (16
//! bytes of SHA-256 over key and digest) and their count. XOR makes the
//! summary a function of the node's contents alone: independent of the
//! order of updates, of how the node's children are split, and of which
//! nodes a replica happens to store. An update changes each ancestor by
//! XOR-ing out the old entry hash and in the new one: O(depth), with no
//! child to re-hash and no key list to re-read.
//!
//! Only nodes holding more than [`LEAF_ENTRIES`] (32) keys are stored, in a
//! `BTreeMap<(level, prefix), Summary>`; a smaller node's summary is
//! computed from its entries when asked (at most 32 hashes). On any key's
//! path the stored nodes are a prefix of the path (a child never holds
//! more than its parent), so an update walks down only while nodes are
//! stored: about `log16(n / 32) + 1` map lookups, plus, when a new key
//! pushes a node over 32, one summing of its 33 entries. The entries
//! themselves live in a `BTreeMap<(position, key), KeyDigest>`, so a node's
//! entries are one range of it.
//!
//! Costs, with `n` keys:
//!
//! | | |
//! | --- | --- |
//! | upsert / remove | 2–3 SHA-256 + ≈ log16(n/32)+1 map updates (+ one 33-entry sum when a node fills) |
//! | build | n × 2 SHA-256 + one sort + bulk map build, O(n log n) |
//! | memory | entries map (≈ 40 B/key packed + the key's own allocation) + ≈ n/100 stored nodes |
//! | compare, `d` differences | ≈ log16(n/32)+2 round trips, O(d · log n) bytes; identical: 1 round trip, < 100 B |
//!
//! Measured on 1,000,000 keys of 15 bytes (`cargo bench -p quorumlog-core
//! --bench anti_entropy`, release build, a shared 2-core machine):
//!
//! | | |
//! | --- | --- |
//! | build | 0.5–0.8 s; peak 122 B/key while building |
//! | memory held | 57.5 B/key asked of the allocator, 15 of them the key text; 4,372 stored nodes (≈ 0.1 MB). Add the allocator's own overhead on each key's allocation (≈ 17 B for a 15-byte key with glibc) |
//! | upsert | 1.7 µs (changed digest), 3.2 µs (new key) |
//! | 1 difference among 1M | 5 round trips, 225 B sent, 2,367 B received, ≈ 70 µs in process (encoded both ways) |
//! | identical | 1 round trip, 61 B |
//!
//! # The comparison
//!
//! The driver sends batches of up to [`MAX_PROBES`] probes, each a node and
//! the local summary of it. The peer answers each with [`NodeAnswer::Same`]
//! (equal summaries: done there), with the summaries of the node's
//! non-empty children if it holds more than [`LEAF_ENTRIES`] keys there, or
//! else with its entries (keys and digests). The driver descends only into
//! children whose summaries differ; a child the peer holds nothing of is
//! settled locally (all our keys there are ours alone); entries are merged
//! with ours into the differing keys. Identical replicas settle in one
//! round trip (the root); one difference among a million keys in five or
//! six, for a few KB (see the test `one_difference_among_a_million_keys`
//! and the bench).
//!
//! The local index is shared with writers: the driver reads it under its
//! lock (any [`IndexRead`]: a `Mutex`, an `RwLock`) briefly before and
//! after each round trip and never across one. A replica's writers record
//! into a [`DeferredIndex`], which digests a key's set when the index is
//! next read rather than on every update. Both indexes may change
//! during a walk; a summary that went stale only yields an extra or a
//! missed key, which a later round settles. The walk cannot loop (every
//! probe is one level below the node it came from) and never sends more
//! than the budget's requests.
//!
//! Everything a peer sends is checked before use: answer count, child
//! bitmaps, entry counts ([`MAX_ENTRIES_PER_NODE`]), key lengths, that
//! each key belongs under its node and that entries come in order. A
//! breach is an [`AeError::Malformed`], never a panic. An honest answer is
//! at most [`MAX_RESPONSE_BYTES`] (about 2 MB), which a transport can use
//! to bound what it decodes.
//!
//! # Why not the `merkle-search-tree` crate
//!
//! `merkle-search-tree` (version 0.8.0, the current one; read from its
//! source) is a well-made Merkle search tree built for anti-entropy, and
//! was the first candidate. It does not give what this system needs:
//!
//! 1. **Its comparison is linear.** The only way to compare two trees is
//!    `serialise_page_ranges()` on each side and `diff()` of the two lists:
//!    every page of the tree with its key bounds and hash, about n/16
//!    pages. For 1,000,000 keys that is ~62,500 page ranges, each carrying
//!    two keys, i.e. megabytes per comparison, every round, even for one
//!    differing key.
//! 2. **No top-down comparison can be built on it.** A page's children
//!    (`lt_pointer`, `high_page`) are private to the crate; the only
//!    traversal is a visitor over the whole tree, whose `false` aborts the
//!    traversal rather than skipping a subtree, so even answering "the
//!    children of this page" costs O(n). And a Merkle search tree's shape
//!    depends on its contents: a page on one replica names no fixed key
//!    range on another, so a request could not point at a node anyway.
//! 3. **No removal.** The tree only has `upsert`. A key whose state
//!    becomes absent would need a tombstone value, which then differs from
//!    a replica that never had the key, where both must compare equal.
//! 4. **Hashes need `&mut self`.** Page hashes are refreshed lazily by
//!    `root_hash(&mut self)`, so serving a peer would need the writers'
//!    lock; and none of its types are serde types, so its summaries could
//!    not travel in our RPC without a parallel set of wire types.
//!
//! The hashed trie above keeps what made the crate attractive (summaries
//! that depend only on contents, incremental updates) and adds the
//! fixed, content-independent shape that a logarithmic, top-down
//! comparison needs.
//!
//! # Limits
//!
//! XOR is a linear set hash. Different contents that happen to have equal
//! summaries are a 2^-128 accident, and the count catches contents of
//! different sizes; but someone able to choose many (key, state) pairs
//! *and* which replicas hold which could, with a generalised-birthday
//! search, make a set of differences cancel out in a node. Read repair
//! still settles such keys when they are read. Keying the entry hash with
//! a cluster secret would close this, should it ever matter.
//!
//! Keys on the wire are limited to [`crate::replica::MAX_KEY_LEN`], like
//! every key the coordinator accepts; an index holding a longer key makes
//! the comparison with it fail as malformed.
//!
//! Determinism: no randomness, no clock; maps are `BTreeMap`s; the walk
//! visits nodes in position order and reports keys in key order.
pub mod deferred;
pub mod digest;
pub mod index;
pub mod reconcile;
pub mod wire;

pub use deferred::{DeferredIndex, MAX_DEFERRED_BYTES, MAX_DEFERRED_KEYS};
pub use digest::{digest, entry_digest, is_absent, KeyDigest, KEY_DIGEST_BYTES};
pub use index::{
    key_position, Index, NodeHash, Summary, TrieNode, FANOUT, LEAF_ENTRIES, MAX_LEVEL,
};
pub use reconcile::{
    differences, AeError, AePeer, AeStats, Budget, Differences, IndexRead, KeyDifference, Malformed,
};
pub use wire::{
    AeRequest, AeResponse, Entry, NodeAnswer, Probe, MAX_ENTRIES_PER_NODE, MAX_PROBES,
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};
