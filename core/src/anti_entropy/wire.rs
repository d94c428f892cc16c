//! Messages of the comparison protocol and the limits on them. Plain serde
//! enums and structs (no untagged enums, no `deserialize_any`), so they
//! travel inside the node's `Request`/`Response` in the project's codec
//! (postcard, [`crate::codec`]).
use super::digest::{KeyDigest, KEY_DIGEST_BYTES};
use super::index::{Summary, TrieNode, FANOUT, LEAF_ENTRIES, NODE_HASH_BYTES};
use crate::replica::MAX_KEY_LEN;
use serde::{Deserialize, Serialize};

/// Nodes one request may probe. Bounds the work one request asks of a
/// replica and, with [`MAX_ENTRIES_PER_NODE`], the size of the answer.
pub const MAX_PROBES: usize = 32;

/// Entries one node's answer may list. A node is answered with entries when
/// it holds at most [`LEAF_ENTRIES`]; only a node at the deepest level
/// (one 64-bit key position, which no honest key set fills) can hold more,
/// and its answer is cut here and flagged `truncated`.
pub const MAX_ENTRIES_PER_NODE: usize = 2 * LEAF_ENTRIES;

/// The codec's largest sizes of the parts of an answer (postcard writes
/// enum tags as u32 varints, lengths and u64s as varints: at most 5, 10
/// and 10 bytes).
const TAG: usize = 5;
const LEN: usize = 10;
const U64: usize = 10;
const SUMMARY: usize = NODE_HASH_BYTES + U64;
const ENTRY: usize = LEN + MAX_KEY_LEN + KEY_DIGEST_BYTES;

/// Largest [`AeResponse`] an honest replica sends (probes answered with
/// full entry lists of maximal keys): about 2.1 MB, well inside one RPC
/// frame. A transport may decode anti-entropy answers with this as its
/// allocation limit; the driver also checks every count and length it is
/// sent, whatever the transport allowed through.
pub const MAX_RESPONSE_BYTES: usize = TAG
    + LEN
    + MAX_PROBES
        * (TAG
            + max(
                LEN + MAX_ENTRIES_PER_NODE * ENTRY + 1,
                2 + LEN + FANOUT * SUMMARY,
            ));

// An honest answer always fits one RPC frame.
const _: () = assert!(MAX_RESPONSE_BYTES < crate::rpc::MAX_FRAME_BYTES);

/// Largest [`AeRequest`] the driver sends.
pub const MAX_REQUEST_BYTES: usize = TAG + LEN + MAX_PROBES * (1 + U64 + SUMMARY);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// A question to a peer's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AeRequest {
    /// For each probe: is your node the same as mine? If not, show me what
    /// is below it. At most [`MAX_PROBES`].
    Compare { probes: Vec<Probe> },
}

/// One node and how the asking replica sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub node: TrieNode,
    pub summary: Summary,
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AeResponse {
    /// One answer per probe, in the order of the probes.
    Compare { answers: Vec<NodeAnswer> },
    /// The request was not valid (too many probes, a node that does not
    /// exist); says why.
    Invalid(String),
}

/// What a peer holds under one probed node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeAnswer {
    /// Same summary as the probe: nothing to do below this node.
    Same,
    /// The node differs and holds many keys: the summaries of its
    /// non-empty children. Bit `i` of `present` says child `i` is
    /// non-empty; `summaries` lists those children in order (so its length
    /// is the number of bits set, and an empty child costs nothing).
    Children {
        present: u16,
        summaries: Vec<Summary>,
    },
    /// The node differs and holds few keys: all of them, in (position,
    /// key) order. `truncated` when the list stops at
    /// [`MAX_ENTRIES_PER_NODE`] before the node's end.
    Entries {
        entries: Vec<Entry>,
        truncated: bool,
    },
}

/// A key and its digest, as a peer holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub digest: KeyDigest,
}
