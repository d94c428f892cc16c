//! The comparison protocol: the server side ([`Index::answer`]) and the
//! client-side driver ([`differences`]), independent of the transport
//! (an [`AePeer`] carries one request and brings back one response).
use super::digest::KeyDigest;
use super::index::{key_position, Index, Summary, TrieNode, FANOUT, LEAF_ENTRIES, MAX_LEVEL};
use super::wire::{
    AeRequest, AeResponse, Entry, NodeAnswer, Probe, MAX_ENTRIES_PER_NODE, MAX_PROBES,
};
use crate::replica::MAX_KEY_LEN;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use thiserror::Error;

impl Index {
    /// Answer a peer's request. Total: anything a peer sends gets an
    /// answer (an invalid request gets [`AeResponse::Invalid`]), and the
    /// work and the answer are bounded by [`MAX_PROBES`] nodes of at most
    /// [`FANOUT`] summaries or [`MAX_ENTRIES_PER_NODE`] entries each.
    pub fn answer(&self, request: &AeRequest) -> AeResponse {
        match request {
            AeRequest::Compare { probes } => {
                if probes.len() > MAX_PROBES {
                    return AeResponse::Invalid(format!(
                        "{} probes in one request; the limit is {MAX_PROBES}",
                        probes.len()
                    ));
                }
                let mut answers = Vec::with_capacity(probes.len());
                for probe in probes {
                    if !probe.node.is_valid() {
                        return AeResponse::Invalid(format!(
                            "no trie node at level {} with prefix {:#x}",
                            probe.node.level(),
                            probe.node.prefix()
                        ));
                    }
                    answers.push(self.answer_probe(probe));
                }
                AeResponse::Compare { answers }
            }
        }
    }

    fn answer_probe(&self, probe: &Probe) -> NodeAnswer {
        let node = probe.node;
        let ours = self.summary(node);
        if ours == probe.summary {
            return NodeAnswer::Same;
        }
        if ours.count <= LEAF_ENTRIES as u64 || node.level() == MAX_LEVEL {
            let mut entries = Vec::new();
            let mut truncated = false;
            for ((_, key), digest) in self.range(node) {
                if entries.len() == MAX_ENTRIES_PER_NODE {
                    truncated = true;
                    break;
                }
                entries.push(Entry {
                    key: key.to_string(),
                    digest: *digest,
                });
            }
            return NodeAnswer::Entries { entries, truncated };
        }
        let mut present = 0u16;
        let mut summaries = Vec::new();
        for i in 0..FANOUT {
            // below MAX_LEVEL (checked above), every child exists
            let Some(child) = node.child(i) else { break };
            let summary = self.summary(child);
            if summary.count > 0 {
                present |= 1 << i;
                summaries.push(summary);
            }
        }
        NodeAnswer::Children { present, summaries }
    }
}

/// Read access to the local index, for the driver, which takes it briefly
/// once before and once after each round trip and never across an await:
/// writers keep updating the index while a comparison runs.
pub trait IndexRead: Sync {
    fn read_index<R>(&self, read: impl FnOnce(&Index) -> R) -> R;
}

impl IndexRead for Index {
    fn read_index<R>(&self, read: impl FnOnce(&Index) -> R) -> R {
        read(self)
    }
}

/// A writer that panicked mid-update can at worst leave some summaries
/// wrong, which a comparison reads as extra or missed differences; the
/// index is still safe to read, so a poisoned lock is read through.
impl IndexRead for Mutex<Index> {
    fn read_index<R>(&self, read: impl FnOnce(&Index) -> R) -> R {
        read(&self.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl IndexRead for RwLock<Index> {
    fn read_index<R>(&self, read: impl FnOnce(&Index) -> R) -> R {
        read(&self.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// How a request reaches a peer's [`Index::answer`]: the node's RPC in a
/// deployment or the simulator, a direct call in tests.
#[async_trait]
pub trait AePeer: Sync {
    type Error: std::error::Error + Send + Sync + 'static;

    async fn call(&self, request: AeRequest) -> Result<AeResponse, Self::Error>;
}

/// How much one comparison may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Differing keys to report at most; the walk stops once it has them.
    pub max_keys: usize,
    /// Requests (round trips) to send at most.
    pub max_requests: usize,
}

impl Default for Budget {
    /// About 2 MB of keys to repair and at most 64 round trips: a handful
    /// of differences among millions of keys needs 6 or 7.
    fn default() -> Self {
        Budget {
            max_keys: 1024,
            max_requests: 64,
        }
    }
}

/// A key whose state differs, with the digest each side held when it was
/// compared: `local: None` means only the peer holds it (pull it),
/// `peer: None` only we do (push it), both means both hold different
/// states (merge both ways).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDifference {
    pub key: String,
    pub local: Option<KeyDigest>,
    pub peer: Option<KeyDigest>,
}

/// What one comparison cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AeStats {
    pub round_trips: usize,
    /// Encoded size of the requests sent and the responses received (the
    /// messages themselves, without RPC framing).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Trie nodes whose summaries were compared.
    pub nodes_compared: u64,
    /// Entries (local and peer) looked at in key-level comparisons.
    pub keys_compared: u64,
}

/// The result of one comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Differences {
    /// Differing keys, in key order.
    pub keys: Vec<KeyDifference>,
    /// Whether the walk finished: false when the budget ran out (or a
    /// peer's list was cut) before every differing node was resolved.
    /// Either way the keys listed differed when compared; and since both
    /// indexes change while the walk runs, even a complete walk may miss
    /// or add a key that a later round settles.
    pub complete: bool,
    pub stats: AeStats,
}

/// A peer's answer that breaks the protocol: it is not used at all.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Malformed {
    #[error("{sent} nodes were probed but {got} answered")]
    AnswerCount { sent: usize, got: usize },
    #[error("children listed for {node:?}, which is at the deepest level")]
    ChildrenOfDeepest { node: TrieNode },
    #[error("children of {node:?}: {listed} summaries for {present} present children")]
    ChildCount {
        node: TrieNode,
        present: u32,
        listed: usize,
    },
    #[error("children of {node:?}: child {child} is listed as present but holds no key")]
    EmptyChild { node: TrieNode, child: usize },
    #[error("{got} entries for one node; the limit is {MAX_ENTRIES_PER_NODE}")]
    TooManyEntries { got: usize },
    #[error("a key of {bytes} bytes; the limit is {MAX_KEY_LEN}")]
    KeyTooLong { bytes: usize },
    #[error("key {key:?} does not belong under {node:?}")]
    EntryOutsideNode { key: String, node: TrieNode },
    #[error("entries of {node:?} are not in (position, key) order, or repeat a key")]
    EntriesOutOfOrder { node: TrieNode },
}

/// Why a comparison failed. Nothing it found is returned: a later round
/// starts again.
#[derive(Debug, Error)]
pub enum AeError<E: std::error::Error + 'static> {
    #[error("anti-entropy request failed: {0}")]
    Transport(#[source] E),
    #[error("the peer refused an anti-entropy request: {0}")]
    Refused(String),
    #[error("the peer sent a malformed anti-entropy answer: {0}")]
    Malformed(#[from] Malformed),
}

/// How much of a peer's refusal message an error quotes.
const REFUSAL_QUOTE_CHARS: usize = 256;

/// Compare the local index with a peer's, top-down: probe nodes whose
/// summaries differ, descend only into children that differ, and compare
/// keys where a node holds few. Returns the keys whose digests differ or
/// that one side lacks, within `budget`.
///
/// For `d` differences among `n` keys it takes about
/// `log16(n / 32) + 2` round trips (batched: up to [`MAX_PROBES`] nodes a
/// request) and O(d · log n) bytes; identical indexes take one round trip.
///
/// The local index is read under its lock briefly before and after each
/// round trip, never across one, and may change in between: a stale
/// summary only yields an extra or a missed key. The walk cannot loop:
/// each request descends at least one level below the nodes it came from,
/// and there are at most `budget.max_requests` requests.
pub async fn differences<L, P>(
    local: &L,
    peer: &P,
    budget: Budget,
) -> Result<Differences, AeError<P::Error>>
where
    L: IndexRead + ?Sized,
    P: AePeer + ?Sized,
{
    let mut walk = Walk {
        found: BTreeMap::new(),
        max_keys: budget.max_keys,
        complete: true,
        stats: AeStats::default(),
    };
    // Nodes to probe, the next one last: children are pushed in reverse so
    // the walk runs depth-first in position order, which reaches keys early
    // when the budget is small and keeps this stack small: it grows by at
    // most 15 · MAX_PROBES nodes a request, whatever the peer answers.
    let mut pending = vec![TrieNode::ROOT];
    while !pending.is_empty() {
        if walk.stats.round_trips >= budget.max_requests || walk.found.len() >= walk.max_keys {
            walk.complete = false;
            break;
        }
        let take = pending.len().min(MAX_PROBES);
        let mut batch = pending.split_off(pending.len() - take);
        batch.reverse();

        let probes: Vec<Probe> = local.read_index(|index| {
            batch
                .iter()
                .map(|&node| Probe {
                    node,
                    summary: index.summary(node),
                })
                .collect()
        });
        let request = AeRequest::Compare { probes };
        walk.stats.round_trips += 1;
        walk.stats.bytes_sent = walk.stats.bytes_sent.saturating_add(wire_size(&request));
        let response = peer.call(request).await.map_err(AeError::Transport)?;
        walk.stats.bytes_received = walk
            .stats
            .bytes_received
            .saturating_add(wire_size(&response));

        // Check everything (and hash the peer's keys) before taking the
        // lock, so the lock is held only for the comparison itself.
        let answers = check_response(&batch, response)?;
        let next = local.read_index(|index| {
            let mut next = Vec::new();
            for (node, answer) in batch.iter().zip(&answers) {
                walk.compare(index, *node, answer, &mut next);
            }
            next
        });
        pending.extend(next.into_iter().rev());
    }
    Ok(Differences {
        keys: walk.found.into_values().collect(),
        complete: walk.complete,
        stats: walk.stats,
    })
}

fn wire_size<T: Serialize>(message: &T) -> u64 {
    // Our own in-memory messages always serialise; the size is a statistic.
    crate::codec::encoded_size(message) as u64
}

/// A peer's answer for one node, checked.
enum Checked {
    Same,
    Children(Box<[Summary; FANOUT]>),
    /// Entries with their positions, in (position, key) order.
    Entries {
        entries: Vec<(u64, Entry)>,
        truncated: bool,
    },
}

fn check_response<E: std::error::Error>(
    batch: &[TrieNode],
    response: AeResponse,
) -> Result<Vec<Checked>, AeError<E>> {
    let answers = match response {
        AeResponse::Compare { answers } => answers,
        AeResponse::Invalid(reason) => {
            return Err(AeError::Refused(
                reason.chars().take(REFUSAL_QUOTE_CHARS).collect(),
            ))
        }
    };
    if answers.len() != batch.len() {
        return Err(Malformed::AnswerCount {
            sent: batch.len(),
            got: answers.len(),
        }
        .into());
    }
    batch
        .iter()
        .zip(answers)
        .map(|(&node, answer)| check_answer(node, answer).map_err(AeError::from))
        .collect()
}

fn check_answer(node: TrieNode, answer: NodeAnswer) -> Result<Checked, Malformed> {
    match answer {
        NodeAnswer::Same => Ok(Checked::Same),
        NodeAnswer::Children { present, summaries } => {
            if node.level() >= MAX_LEVEL {
                return Err(Malformed::ChildrenOfDeepest { node });
            }
            if present.count_ones() as usize != summaries.len() {
                return Err(Malformed::ChildCount {
                    node,
                    present: present.count_ones(),
                    listed: summaries.len(),
                });
            }
            let mut children = [Summary::EMPTY; FANOUT];
            let mut listed = summaries.into_iter();
            for (child, slot) in children.iter_mut().enumerate() {
                if present & (1 << child) == 0 {
                    continue;
                }
                // as many summaries as bits set, checked above
                let Some(summary) = listed.next() else { break };
                if summary.count == 0 {
                    return Err(Malformed::EmptyChild { node, child });
                }
                *slot = summary;
            }
            Ok(Checked::Children(Box::new(children)))
        }
        NodeAnswer::Entries { entries, truncated } => {
            if entries.len() > MAX_ENTRIES_PER_NODE {
                return Err(Malformed::TooManyEntries { got: entries.len() });
            }
            let mut checked: Vec<(u64, Entry)> = Vec::with_capacity(entries.len());
            for entry in entries {
                if entry.key.len() > MAX_KEY_LEN {
                    return Err(Malformed::KeyTooLong {
                        bytes: entry.key.len(),
                    });
                }
                let position = key_position(&entry.key);
                if !node.contains(position) {
                    return Err(Malformed::EntryOutsideNode {
                        key: entry.key.chars().take(64).collect(),
                        node,
                    });
                }
                if let Some((last_position, last)) = checked.last() {
                    if (*last_position, last.key.as_str()) >= (position, entry.key.as_str()) {
                        return Err(Malformed::EntriesOutOfOrder { node });
                    }
                }
                checked.push((position, entry));
            }
            Ok(Checked::Entries {
                entries: checked,
                truncated,
            })
        }
    }
}

/// The state of one comparison.
struct Walk {
    found: BTreeMap<String, KeyDifference>,
    max_keys: usize,
    complete: bool,
    stats: AeStats,
}

impl Walk {
    /// Note a differing key; false once the budget is full (the walk is
    /// then incomplete).
    fn note(&mut self, key: &str, local: Option<KeyDigest>, peer: Option<KeyDigest>) -> bool {
        if self.found.len() >= self.max_keys {
            self.complete = false;
            return false;
        }
        self.found.insert(
            key.to_owned(),
            KeyDifference {
                key: key.to_owned(),
                local,
                peer,
            },
        );
        true
    }

    /// Compare one node's answer with the local index; push the children
    /// to probe next onto `next`, in position order.
    fn compare(
        &mut self,
        index: &Index,
        node: TrieNode,
        answer: &Checked,
        next: &mut Vec<TrieNode>,
    ) {
        match answer {
            Checked::Same => {}
            Checked::Children(theirs) => {
                for (i, theirs) in theirs.iter().enumerate() {
                    let Some(child) = node.child(i) else { break };
                    self.stats.nodes_compared += 1;
                    if index.summary(child) == *theirs {
                        continue;
                    }
                    if theirs.count == 0 {
                        // The peer holds nothing here: everything we hold
                        // under this child is ours alone, no need to ask.
                        if !self.only_local(index, child) {
                            return;
                        }
                    } else {
                        next.push(child);
                    }
                }
            }
            Checked::Entries { entries, truncated } => {
                self.compare_entries(index, node, entries, *truncated);
            }
        }
    }

    /// Note every local key under `node` as held only here; false once the
    /// budget is full.
    fn only_local(&mut self, index: &Index, node: TrieNode) -> bool {
        for ((_, key), digest) in index.range(node) {
            self.stats.keys_compared += 1;
            if !self.note(key, Some(*digest), None) {
                return false;
            }
        }
        true
    }

    /// Merge the peer's entries of `node` with ours, both in (position,
    /// key) order. When the peer's list was cut, our keys after its last
    /// entry are left for a later round.
    fn compare_entries(
        &mut self,
        index: &Index,
        node: TrieNode,
        theirs: &[(u64, Entry)],
        truncated: bool,
    ) {
        if truncated {
            self.complete = false;
        }
        let mut ours = index.range(node).peekable();
        let mut theirs = theirs.iter().peekable();
        loop {
            let (key, local, peer) = match (ours.peek(), theirs.peek()) {
                (None, None) => break,
                (Some(_), None) if truncated => break,
                (Some(((_, key), digest)), None) => {
                    let found = (&**key, Some(**digest), None);
                    ours.next();
                    found
                }
                (None, Some((_, entry))) => {
                    let found = (entry.key.as_str(), None, Some(entry.digest));
                    theirs.next();
                    found
                }
                (Some(((position, key), digest)), Some((their_position, entry))) => {
                    match (*position, &**key).cmp(&(*their_position, entry.key.as_str())) {
                        std::cmp::Ordering::Less => {
                            let found = (&**key, Some(**digest), None);
                            ours.next();
                            found
                        }
                        std::cmp::Ordering::Greater => {
                            let found = (entry.key.as_str(), None, Some(entry.digest));
                            theirs.next();
                            found
                        }
                        std::cmp::Ordering::Equal => {
                            let found = (&**key, Some(**digest), Some(entry.digest));
                            ours.next();
                            theirs.next();
                            found
                        }
                    }
                }
            };
            self.stats.keys_compared += 1;
            if local != peer && !self.note(key, local, peer) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
    use super::*;
    use futures::executor::block_on;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn d(n: u64) -> KeyDigest {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        bytes[15] = 0xa5;
        KeyDigest::from_bytes(bytes)
    }

    #[derive(Debug, Error)]
    #[error("test transport: {0}")]
    struct TestError(String);

    /// A peer in the same process, with its messages going through the
    /// codec as the RPC carries them (bounded by the bytes, as the RPC is).
    struct InProcess<'a, L: ?Sized> {
        index: &'a L,
    }

    fn through_codec<T: Serialize + serde::de::DeserializeOwned>(
        message: &T,
    ) -> Result<T, TestError> {
        let bytes = crate::codec::encode(message).map_err(|e| TestError(e.to_string()))?;
        crate::codec::decode(&bytes).map_err(|e| TestError(e.to_string()))
    }

    #[async_trait]
    impl<L: IndexRead + ?Sized> AePeer for InProcess<'_, L> {
        type Error = TestError;
        async fn call(&self, request: AeRequest) -> Result<AeResponse, TestError> {
            let request = through_codec(&request)?;
            let response = self.index.read_index(|index| index.answer(&request));
            through_codec(&response)
        }
    }

    /// A peer that answers honestly, then lets `tamper` change the answer.
    struct Tampering<'a, F> {
        index: &'a Index,
        tamper: F,
    }

    #[async_trait]
    impl<F> AePeer for Tampering<'_, F>
    where
        F: Fn(&AeRequest, AeResponse) -> AeResponse + Sync,
    {
        type Error = TestError;
        async fn call(&self, request: AeRequest) -> Result<AeResponse, TestError> {
            let honest = self.index.answer(&request);
            Ok((self.tamper)(&request, honest))
        }
    }

    fn compare(local: &Index, peer: &Index, budget: Budget) -> Differences {
        block_on(differences(local, &InProcess { index: peer }, budget)).unwrap()
    }

    /// The differences as a model computes them from two key → digest maps.
    fn expected(
        local: &BTreeMap<String, KeyDigest>,
        peer: &BTreeMap<String, KeyDigest>,
    ) -> Vec<KeyDifference> {
        let keys: BTreeSet<&String> = local.keys().chain(peer.keys()).collect();
        keys.into_iter()
            .filter(|key| local.get(*key) != peer.get(*key))
            .map(|key| KeyDifference {
                key: key.clone(),
                local: local.get(key).copied(),
                peer: peer.get(key).copied(),
            })
            .collect()
    }

    fn keys(n: u64) -> BTreeMap<String, KeyDigest> {
        (0..n).map(|i| (format!("key/{i:07}"), d(i))).collect()
    }

    #[test]
    fn identical_indexes_take_one_round_trip() {
        for n in [0, 1, 40, 5000] {
            let index = Index::from_entries(keys(n));
            let found = compare(&index, &index.clone(), Budget::default());
            assert!(found.keys.is_empty());
            assert!(found.complete);
            assert_eq!(found.stats.round_trips, 1, "{n} keys");
            assert!(found.stats.bytes_sent + found.stats.bytes_received < 100);
        }
    }

    #[test]
    fn one_side_empty() {
        let full = Index::from_entries(keys(300));
        let empty = Index::new();
        let pulled = compare(&empty, &full, Budget::default());
        assert!(pulled.complete);
        assert_eq!(pulled.keys, expected(&BTreeMap::new(), &keys(300)));
        let pushed = compare(&full, &empty, Budget::default());
        assert!(pushed.complete);
        assert_eq!(pushed.keys, expected(&keys(300), &BTreeMap::new()));
        // the peer said "empty" at the root: nothing more to ask
        assert_eq!(pushed.stats.round_trips, 1);
    }

    #[derive(Debug, Clone, Copy)]
    enum Divergence {
        Same,
        OnlyLocal,
        OnlyPeer,
        Changed,
        Neither,
    }

    fn divergence() -> impl Strategy<Value = Divergence> {
        prop_oneof![
            30 => Just(Divergence::Same),
            1 => Just(Divergence::OnlyLocal),
            1 => Just(Divergence::OnlyPeer),
            1 => Just(Divergence::Changed),
            1 => Just(Divergence::Neither),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Random divergences: exactly the differing keys are found, each
        /// with the digests both sides hold, within the round-trip bound.
        #[test]
        fn finds_exactly_the_differing_keys(
            kinds in prop::collection::vec(divergence(), 0..4000),
        ) {
            let mut local = BTreeMap::new();
            let mut peer = BTreeMap::new();
            for (i, kind) in kinds.iter().enumerate() {
                let key = format!("k{i}");
                let i = i as u64;
                match kind {
                    Divergence::Same => {
                        local.insert(key.clone(), d(i));
                        peer.insert(key, d(i));
                    }
                    Divergence::OnlyLocal => { local.insert(key, d(i)); }
                    Divergence::OnlyPeer => { peer.insert(key, d(i)); }
                    Divergence::Changed => {
                        local.insert(key.clone(), d(i));
                        peer.insert(key, d(i + 1_000_000));
                    }
                    Divergence::Neither => {}
                }
            }
            let budget = Budget { max_keys: usize::MAX, max_requests: usize::MAX };
            let found = compare(&Index::from_entries(local.clone()), &Index::from_entries(peer.clone()), budget);
            prop_assert!(found.complete);
            prop_assert_eq!(&found.keys, &expected(&local, &peer));
            // depth-first, batched: each level of the trie costs at most
            // ⌈differing nodes / MAX_PROBES⌉ round trips
            let differing = found.keys.len();
            prop_assert!(found.stats.round_trips <= 1 + 4 * differing.div_ceil(MAX_PROBES).max(1),
                "{} round trips for {} differences", found.stats.round_trips, differing);
        }

        /// Whatever the budget, the walk keeps to it, and what it reports
        /// are real differences.
        #[test]
        fn the_budget_is_respected(
            only_peer in 0u64..600,
            changed in 0u64..600,
            max_keys in 0usize..200,
            max_requests in 0usize..12,
        ) {
            let local = keys(600);
            let mut peer = keys(600);
            for i in 0..changed {
                peer.insert(format!("key/{i:07}"), d(i + 7));
            }
            for i in 600..600 + only_peer {
                peer.insert(format!("key/{i:07}"), d(i));
            }
            let all = expected(&local, &peer);
            let budget = Budget { max_keys, max_requests };
            let found = compare(&Index::from_entries(local), &Index::from_entries(peer), budget);
            prop_assert!(found.keys.len() <= max_keys);
            prop_assert!(found.stats.round_trips <= max_requests);
            for difference in &found.keys {
                prop_assert!(all.contains(difference));
            }
            if found.complete {
                prop_assert_eq!(&found.keys, &all);
            } else {
                // an honest peer: only the budget can cut a walk short
                prop_assert!(
                    found.keys.len() >= max_keys || found.stats.round_trips >= max_requests,
                    "incomplete within budget: {:?}", found.stats
                );
            }
        }
    }

    /// Rounds within a budget, each repairing what it found, converge.
    #[test]
    fn repeated_rounds_converge() {
        let mut local = Index::from_entries(keys(3000));
        let mut peer = local.clone();
        for i in (0..3000u64).step_by(7) {
            peer.upsert(&format!("key/{i:07}"), d(i + 1));
        }
        for i in (0..3000u64).step_by(11) {
            local.remove(&format!("key/{i:07}"));
        }
        let budget = Budget {
            max_keys: 50,
            max_requests: 4,
        };
        for _ in 0..200 {
            let found = compare(&local, &peer, budget);
            if found.complete && found.keys.is_empty() {
                assert_eq!(local.root(), peer.root());
                return;
            }
            // repair: the peer's state wins (a stand-in for a merge)
            for difference in found.keys {
                match difference.peer {
                    Some(digest) => local.upsert(&difference.key, digest),
                    None => {
                        peer.upsert(&difference.key, difference.local.unwrap());
                    }
                }
            }
        }
        panic!("did not converge in 200 rounds");
    }

    /// The local index changes under the walk between round trips (writes
    /// keep coming): no panic, no loop, the budget holds; a later quiet
    /// round is exact.
    #[test]
    fn local_writes_during_a_walk_are_harmless() {
        struct Churning<'a> {
            local: &'a Mutex<Index>,
            peer: Index,
            calls: Mutex<u64>,
        }
        #[async_trait]
        impl AePeer for Churning<'_> {
            type Error = TestError;
            async fn call(&self, request: AeRequest) -> Result<AeResponse, TestError> {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                let mut local = self.local.lock().unwrap();
                for i in 0..500 {
                    let key = format!("churn/{}/{i}", *calls);
                    local.upsert(&key, d(i));
                    local.remove(&format!("key/{:07}", (*calls * 500 + i) % 5000));
                }
                Ok(self.peer.answer(&request))
            }
        }
        let local = Mutex::new(Index::from_entries(keys(5000)));
        let mut peer = Index::from_entries(keys(5000));
        for i in (0..5000u64).step_by(13) {
            peer.upsert(&format!("key/{i:07}"), d(i + 3));
        }
        let churning = Churning {
            local: &local,
            peer: peer.clone(),
            calls: Mutex::new(0),
        };
        let budget = Budget {
            max_keys: 10_000,
            max_requests: 40,
        };
        let found = block_on(differences(&local, &churning, budget)).unwrap();
        assert!(found.stats.round_trips <= 40);
        assert!(!found.keys.is_empty());
        // quiet now: a new round is exact
        let local = local.into_inner().unwrap();
        let model = |index: &Index| -> BTreeMap<String, KeyDigest> {
            index.iter().map(|(k, d)| (k.to_owned(), d)).collect()
        };
        let unlimited = Budget {
            max_keys: usize::MAX,
            max_requests: usize::MAX,
        };
        let again = compare(&local, &peer, unlimited);
        assert!(again.complete);
        assert_eq!(again.keys, expected(&model(&local), &model(&peer)));
    }

    #[test]
    fn the_driver_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let local = Mutex::new(Index::new());
        let peer_index = Mutex::new(Index::new());
        let peer = InProcess { index: &peer_index };
        let walk = differences(&local, &peer, Budget::default());
        assert_send(&walk);
        drop(walk);
    }

    /// 1,000,000 keys, one differs: found in O(log n) round trips and a
    /// few KB, whichever way it differs.
    #[test]
    fn one_difference_among_a_million_keys() {
        const N: u64 = 1_000_000;
        let local = Index::from_entries((0..N).map(|i| (format!("user/{i:010}"), d(i))));
        let mut peer = local.clone();
        // log16(1e6 / 32) + 2 ≈ 5.7 on average; a leaf node's count
        // varies, so allow two more levels.
        let max_round_trips = (N as f64 / LEAF_ENTRIES as f64).log(16.0).ceil() as usize + 4;
        let max_bytes = 8 * 1024;

        peer.upsert("user/0000123456", d(7));
        let found = compare(&local, &peer, Budget::default());
        assert!(found.complete);
        assert_eq!(
            found.keys,
            vec![KeyDifference {
                key: "user/0000123456".into(),
                local: Some(d(123_456)),
                peer: Some(d(7)),
            }]
        );
        let stats = found.stats;
        assert!(stats.round_trips <= max_round_trips, "{stats:?}");
        assert!(
            stats.bytes_sent + stats.bytes_received <= max_bytes,
            "{stats:?}"
        );
        assert!(stats.keys_compared <= 2 * LEAF_ENTRIES as u64, "{stats:?}");

        // a key only one side holds
        peer.upsert("user/0000123456", d(123_456));
        peer.remove("user/0000999999");
        let found = compare(&local, &peer, Budget::default());
        assert_eq!(found.keys.len(), 1);
        assert_eq!(found.keys[0].key, "user/0000999999");
        assert_eq!(found.keys[0].peer, None);
        assert!(
            found.stats.round_trips <= max_round_trips,
            "{:?}",
            found.stats
        );
        assert!(found.stats.bytes_sent + found.stats.bytes_received <= max_bytes);
    }

    fn hostile(tamper: impl Fn(&AeRequest, AeResponse) -> AeResponse + Sync) -> String {
        let mut local = Index::from_entries(keys(2000));
        local.upsert("key/0000042", d(1));
        let peer = Index::from_entries(keys(2000));
        let tampering = Tampering {
            index: &peer,
            tamper,
        };
        match block_on(differences(&local, &tampering, Budget::default())) {
            Ok(found) => panic!("a malformed answer was accepted: {found:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Change the first answer that is of the kind `pick` selects.
    fn first<F>(pick: F) -> impl Fn(&AeRequest, AeResponse) -> AeResponse + Sync
    where
        F: Fn(&mut NodeAnswer) -> bool + Sync,
    {
        move |_, mut response| {
            if let AeResponse::Compare { answers } = &mut response {
                for answer in answers {
                    if pick(answer) {
                        break;
                    }
                }
            }
            response
        }
    }

    #[test]
    fn malformed_answers_are_errors() {
        let cases: Vec<(&str, String)> = vec![
            (
                "nodes were probed",
                hostile(|_, _| AeResponse::Compare { answers: vec![] }),
            ),
            (
                "nodes were probed",
                hostile(|_, mut r| {
                    if let AeResponse::Compare { answers } = &mut r {
                        answers.push(NodeAnswer::Same);
                    }
                    r
                }),
            ),
            (
                "refused",
                hostile(|_, _| AeResponse::Invalid("x".repeat(10_000))),
            ),
            (
                "present children",
                hostile(first(|a| match a {
                    NodeAnswer::Children { summaries, .. } => {
                        summaries.pop();
                        true
                    }
                    _ => false,
                })),
            ),
            (
                "holds no key",
                hostile(first(|a| match a {
                    NodeAnswer::Children { summaries, .. } => {
                        summaries[0].count = 0;
                        true
                    }
                    _ => false,
                })),
            ),
            (
                "does not belong",
                hostile(first(|a| match a {
                    NodeAnswer::Entries { entries, .. } => {
                        entries.push(Entry {
                            key: "elsewhere".into(),
                            digest: d(0),
                        });
                        true
                    }
                    _ => false,
                })),
            ),
            (
                "not in (position, key) order",
                hostile(first(|a| match a {
                    NodeAnswer::Entries { entries, .. } => {
                        entries.push(entries[0].clone());
                        true
                    }
                    _ => false,
                })),
            ),
            (
                "the limit is 64",
                hostile(first(|a| match a {
                    NodeAnswer::Entries { entries, .. } => {
                        *entries = vec![entries[0].clone(); 10_000];
                        true
                    }
                    _ => false,
                })),
            ),
            (
                "the limit is 1024",
                hostile(first(|a| match a {
                    NodeAnswer::Entries { entries, .. } => {
                        entries[0].key = "k".repeat(5000);
                        true
                    }
                    _ => false,
                })),
            ),
        ];
        for (expected, message) in cases {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(message.len() < 600, "an error quotes too much: {message}");
        }
    }

    #[test]
    fn children_of_the_deepest_level_are_refused() {
        let probe = TrieNode::new(MAX_LEVEL, 5).unwrap();
        let answer = NodeAnswer::Children {
            present: 1,
            summaries: vec![Summary {
                hash: Default::default(),
                count: 1,
            }],
        };
        assert!(matches!(
            check_answer(probe, answer),
            Err(Malformed::ChildrenOfDeepest { .. })
        ));
    }

    /// A peer's list cut at the limit (a deepest node with more keys than
    /// any honest set has) makes the walk incomplete, not wrong.
    #[test]
    fn a_truncated_list_is_incomplete() {
        let local = Index::from_entries(keys(100));
        let peer = Index::from_entries(keys(100).into_iter().take(50));
        let cut = Tampering {
            index: &peer,
            tamper: first(|a| match a {
                NodeAnswer::Entries { entries, truncated } => {
                    entries.truncate(10);
                    *truncated = true;
                    true
                }
                _ => false,
            }),
        };
        let found = block_on(differences(&local, &cut, Budget::default())).unwrap();
        assert!(!found.complete);
        let all = expected(&keys(100), &keys(100).into_iter().take(50).collect());
        for difference in &found.keys {
            assert!(all.contains(difference));
        }
    }

    #[test]
    fn invalid_requests_get_an_invalid_answer() {
        let index = Index::from_entries(keys(100));
        let probe = Probe {
            node: TrieNode::ROOT,
            summary: Summary::EMPTY,
        };
        let too_many = AeRequest::Compare {
            probes: vec![probe; MAX_PROBES + 1],
        };
        assert!(matches!(index.answer(&too_many), AeResponse::Invalid(_)));
        // a node decoded from the wire with a prefix too big for its level
        let bad: TrieNode =
            crate::codec::decode(&crate::codec::encode(&(1u8, 99u64)).unwrap()).unwrap();
        assert!(!bad.is_valid());
        let request = AeRequest::Compare {
            probes: vec![Probe {
                node: bad,
                summary: Summary::EMPTY,
            }],
        };
        assert!(matches!(index.answer(&request), AeResponse::Invalid(_)));
    }

    /// The size bounds hold for the largest honest messages, and fit an
    /// RPC frame.
    #[test]
    fn the_largest_messages_fit_their_bounds() {
        let entry = Entry {
            key: "k".repeat(MAX_KEY_LEN),
            digest: d(0),
        };
        let entries = NodeAnswer::Entries {
            entries: vec![entry; MAX_ENTRIES_PER_NODE],
            truncated: true,
        };
        let children = NodeAnswer::Children {
            present: u16::MAX,
            summaries: vec![Summary::EMPTY; FANOUT],
        };
        for answer in [entries, children] {
            let response = AeResponse::Compare {
                answers: vec![answer; MAX_PROBES],
            };
            assert!(wire_size(&response) <= MAX_RESPONSE_BYTES as u64);
        }
        let request = AeRequest::Compare {
            probes: vec![
                Probe {
                    node: TrieNode::ROOT,
                    summary: Summary::EMPTY
                };
                MAX_PROBES
            ],
        };
        assert!(wire_size(&request) <= MAX_REQUEST_BYTES as u64);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Bytes a faulty or hostile peer could send instead of an honest
        /// answer: whatever decodes is either rejected or leads to a walk
        /// within budget; nothing panics.
        #[test]
        fn garbage_answers_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut local = Index::from_entries(keys(1500));
            local.upsert("key/0000009", d(5));
            let peer = Index::from_entries(keys(1500));
            let flips = &flips;
            let garbage = Tampering {
                index: &peer,
                tamper: move |_: &AeRequest, honest: AeResponse| {
                    let mut bytes = crate::codec::encode(&honest).unwrap();
                    for (at, value) in flips {
                        let at = at.index(bytes.len());
                        bytes[at] ^= value;
                    }
                    if truncate {
                        bytes.truncate(cut.index(bytes.len() + 1));
                    }
                    crate::codec::decode(&bytes)
                        .unwrap_or_else(|e| AeResponse::Invalid(e.to_string()))
                },
            };
            let budget = Budget { max_keys: 100, max_requests: 10 };
            if let Ok(found) = block_on(differences(&local, &garbage, budget)) {
                prop_assert!(found.keys.len() <= 100);
                prop_assert!(found.stats.round_trips <= 10);
            }
        }

        /// Arbitrary requests get an answer, never a panic, and a bounded one.
        #[test]
        fn arbitrary_requests_are_answered(
            probes in prop::collection::vec((any::<u8>(), any::<u64>(), any::<u64>()), 0..40),
        ) {
            let index = Index::from_entries(keys(3000));
            let probes = probes
                .into_iter()
                .map(|(level, prefix, count)| {
                    let node: TrieNode =
                        crate::codec::decode(&crate::codec::encode(&(level % 20, prefix >> (level % 64))).unwrap()).unwrap();
                    Probe { node, summary: Summary { hash: Default::default(), count } }
                })
                .collect();
            let response = index.answer(&AeRequest::Compare { probes });
            prop_assert!(wire_size(&response) <= MAX_RESPONSE_BYTES as u64);
        }
    }

    /// A node holding exactly `LEAF_ENTRIES` keys is answered with its
    /// entries, not its children: one round trip settles it.
    #[test]
    fn a_node_of_exactly_leaf_size_is_settled_in_one_round_trip() {
        let local = Index::from_entries(keys(LEAF_ENTRIES as u64));
        let mut peer = local.clone();
        peer.upsert("key/0000003", d(99));
        let found = compare(&local, &peer, Budget::default());
        assert!(found.complete);
        assert_eq!(found.keys.len(), 1);
        assert_eq!(found.stats.round_trips, 1, "{:?}", found.stats);
    }

    /// A child the peer holds nothing of is settled from the local index
    /// alone, without probing it.
    #[test]
    fn a_child_the_peer_lacks_is_settled_without_asking() {
        let all = keys(2000);
        let child = TrieNode::ROOT.child(0).unwrap();
        let peer: BTreeMap<String, KeyDigest> = all
            .iter()
            .filter(|(key, _)| !child.contains(key_position(key)))
            .map(|(key, digest)| (key.clone(), *digest))
            .collect();
        let found = compare(
            &Index::from_entries(all.clone()),
            &Index::from_entries(peer.clone()),
            Budget::default(),
        );
        assert!(found.complete);
        assert_eq!(found.keys, expected(&all, &peer));
        assert!(!found.keys.is_empty());
        assert_eq!(found.stats.round_trips, 1, "{:?}", found.stats);
    }

    /// The walk goes depth-first in position order: a budget of a few keys
    /// gets the first differing keys in the index's order.
    #[test]
    fn a_small_budget_finds_the_first_differences_in_position_order() {
        let local = Index::from_entries(keys(2000));
        let peer = Index::from_entries((0..2000u64).map(|i| (format!("key/{i:07}"), d(i + 5000))));
        let budget = Budget {
            max_keys: 5,
            max_requests: 64,
        };
        let found = compare(&local, &peer, budget);
        assert!(!found.complete);
        let mut first: Vec<&str> = local.iter().take(5).map(|(key, _)| key).collect();
        first.sort_unstable();
        let got: Vec<&str> = found.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(got, first);
    }

    #[test]
    fn a_key_of_the_longest_length_is_compared() {
        let longest = "k".repeat(MAX_KEY_LEN);
        let peer = Index::from_entries([(longest.clone(), d(1))]);
        let found = compare(&Index::new(), &peer, Budget::default());
        assert!(found.complete);
        assert_eq!(
            found.keys,
            vec![KeyDifference {
                key: longest,
                local: None,
                peer: Some(d(1)),
            }]
        );
    }

    /// A list of exactly `MAX_ENTRIES_PER_NODE` entries (a deepest node cut
    /// at the limit) is taken.
    #[test]
    fn an_entry_list_of_exactly_the_limit_is_taken() {
        let mut entries: Vec<(u64, Entry)> = (0..MAX_ENTRIES_PER_NODE as u64)
            .map(|i| {
                let key = format!("k{i}");
                (key_position(&key), Entry { key, digest: d(i) })
            })
            .collect();
        entries.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        let answer = NodeAnswer::Entries {
            entries: entries.into_iter().map(|(_, entry)| entry).collect(),
            truncated: true,
        };
        assert!(matches!(
            check_answer(TrieNode::ROOT, answer),
            Ok(Checked::Entries { entries, truncated: true }) if entries.len() == MAX_ENTRIES_PER_NODE
        ));
    }

    #[test]
    fn a_key_listed_twice_is_refused() {
        let entry = Entry {
            key: "k".into(),
            digest: d(0),
        };
        let answer = NodeAnswer::Entries {
            entries: vec![entry.clone(), entry],
            truncated: false,
        };
        assert!(matches!(
            check_answer(TrieNode::ROOT, answer),
            Err(Malformed::EntriesOutOfOrder { .. })
        ));
    }

    /// Keys after the end of a peer's cut list are left for a later round,
    /// not reported as held only here.
    #[test]
    fn keys_past_a_cut_list_are_left_for_later() {
        let peer = Index::from_entries(keys(100));
        let mut local = peer.clone();
        local.upsert("key/0000042", d(1));
        let cut = Tampering {
            index: &peer,
            tamper: first(|a| match a {
                NodeAnswer::Entries { entries, truncated } => {
                    entries.truncate(1);
                    *truncated = true;
                    true
                }
                _ => false,
            }),
        };
        let found = block_on(differences(&local, &cut, Budget::default())).unwrap();
        assert!(!found.complete);
        let model = |index: &Index| -> BTreeMap<String, KeyDigest> {
            index.iter().map(|(k, d)| (k.to_owned(), d)).collect()
        };
        let all = expected(&model(&local), &model(&peer));
        for difference in &found.keys {
            assert!(all.contains(difference), "not a difference: {difference:?}");
        }
    }
}
