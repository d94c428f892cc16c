//! A replica's index with its digests taken when it is read rather than on
//! every update.
//!
//! A key's digest is SHA-256 over its whole sibling set, values included,
//! and the index is read only when anti-entropy compares (every couple of
//! seconds, against one peer) or serves a peer's comparison. A key written
//! many times between two reads needs only its last state digested: in
//! the simulator's standard scenario (seeds 0..20) 21,749 updates were
//! recorded and 4,953 keys were waiting when the index was read, so about
//! three digests in four were never needed. Updates wait here, the latest
//! state per key, until the index is read ([`DeferredIndex::read`]) or
//! they pass a bound ([`MAX_DEFERRED_KEYS`], [`MAX_DEFERRED_BYTES`]).
//!
//! What a reader sees is what recording every update at once would have
//! given: the index's contents depend only on each key's last recorded
//! state, never on the order keys were recorded in, and the [`Index`] is
//! reachable only through [`DeferredIndex::read`], which records every
//! waiting update first. (A key a writer updates while a read's flush is
//! digesting shows its previous state to that read, as it would have when
//! the writer's digest was still being taken.)
use super::digest::{entry_digest, KeyDigest};
use super::index::Index;
use super::reconcile::IndexRead;
use crate::version::Siblings;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// Keys whose updates may wait for a read. Past it, the writer that
/// crossed it digests them all (outside the index's lock).
pub const MAX_DEFERRED_KEYS: usize = 1024;

/// Bytes of sibling sets (their [`Siblings::footprint`]) that may wait:
/// what deferring costs in memory, at most, beside the store's own rows
/// (while one flush runs, writers go on adding to the next batch).
pub const MAX_DEFERRED_BYTES: usize = 4 * 1024 * 1024;

/// A replica's anti-entropy [`Index`] and the updates not yet recorded in
/// it, shared by the replica's writers and anti-entropy's readers.
///
/// Digests are taken outside the lock writers record under, as they were
/// when every update was digested at once (hashing under it cost a
/// measured 8 % of `quorumd`'s write throughput): a flush takes the
/// waiting batch, digests it unlocked, then records it, skipping any key
/// a writer has updated again meanwhile. One flush runs at a time, so a
/// batch digested outside the lock is never recorded after a newer one.
#[derive(Debug, Default)]
pub struct DeferredIndex {
    state: Mutex<Waiting>,
    flushing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Waiting {
    index: Index,
    /// Each waiting key's last recorded state.
    pending: BTreeMap<Box<str>, Siblings>,
    /// Sum of the waiting sets' footprints.
    pending_bytes: usize,
}

impl DeferredIndex {
    pub fn new(index: Index) -> Self {
        DeferredIndex {
            state: Mutex::new(Waiting {
                index,
                ..Waiting::default()
            }),
            flushing: Mutex::new(()),
        }
    }

    /// Record the state a key now has (as [`Index::record`]), to be
    /// digested when the index is next read. A later state of the same
    /// key replaces this one before it is ever hashed.
    pub fn record(&self, key: &str, siblings: &Siblings) {
        let over = {
            let mut waiting = self.state();
            let bytes = siblings.footprint();
            match waiting.pending.get_mut(key) {
                Some(earlier) => {
                    let freed = earlier.footprint();
                    // reuses the earlier set's allocations
                    earlier.clone_from(siblings);
                    waiting.pending_bytes = waiting.pending_bytes.saturating_sub(freed);
                }
                None => {
                    waiting.pending.insert(key.into(), siblings.clone());
                }
            }
            waiting.pending_bytes = waiting.pending_bytes.saturating_add(bytes);
            waiting.pending.len() > MAX_DEFERRED_KEYS || waiting.pending_bytes > MAX_DEFERRED_BYTES
        };
        if over {
            // A flush already running takes care of the batch before this
            // one; this writer need not wait for it.
            let flushing = match self.flushing.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(_flushing) = flushing {
                metrics::counter!("anti_entropy_index_bound_flushes_total").increment(1);
                drop(self.flush());
            }
        }
    }

    /// Take `key` out of the index, with any state of it still waiting (as
    /// [`Index::remove`]): recorded as absent, so that it also overrides a
    /// state being digested by a flush right now.
    pub fn forget(&self, key: &str) {
        self.record(key, &Siblings::new());
    }

    /// Read the index with every waiting update recorded: the only way
    /// to reach it.
    pub fn read<R>(&self, read: impl FnOnce(&Index) -> R) -> R {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = self.flush();
        read(&waiting.index)
    }

    /// Updates waiting to be digested.
    pub fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// A writer that panicked mid-update can at worst leave some summaries
    /// wrong, which a comparison reads as extra or missed differences; the
    /// index is still safe to use, so a poisoned lock is used through.
    fn state(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Digest the waiting batch outside the lock and record it; returns
    /// the lock held. Called with `flushing` held.
    fn flush(&self) -> MutexGuard<'_, Waiting> {
        let batch = {
            let mut waiting = self.state();
            waiting.pending_bytes = 0;
            std::mem::take(&mut waiting.pending)
        };
        let digested: Vec<(Box<str>, Option<KeyDigest>)> = batch
            .into_iter()
            .map(|(key, siblings)| {
                let entry = entry_digest(&siblings);
                (key, entry)
            })
            .collect();
        let mut waiting = self.state();
        for (key, entry) in digested {
            // A key updated again while this batch was hashed waits for
            // the next flush with its newer state.
            if !waiting.pending.contains_key(&key) {
                waiting.index.record_entry(&key, entry);
            }
        }
        waiting
    }
}

impl IndexRead for DeferredIndex {
    fn read_index<R>(&self, read: impl FnOnce(&Index) -> R) -> R {
        self.read(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Actor, Dot, Version, VersionVector};
    use proptest::prelude::*;

    /// A set holding one value, the first `actor` wrote.
    fn set(actor: u32, value: &str) -> Siblings {
        let version = Version {
            dot: Dot::new(Actor::new(actor, 1), 1),
            context: VersionVector::new(),
            value: value.to_string(),
            timestamp_ms: 0,
        };
        Siblings::from_versions([version]).expect("one version is a valid set")
    }

    #[derive(Debug, Clone)]
    enum Update {
        Record {
            key: u8,
            actor: u32,
            value_len: usize,
        },
        Absent {
            key: u8,
        },
        Forget {
            key: u8,
        },
        Read,
    }

    fn update() -> impl Strategy<Value = Update> {
        prop_oneof![
            6 => (0u8..24, 1u32..4, 0usize..64).prop_map(|(key, actor, value_len)| Update::Record {
                key,
                actor,
                value_len
            }),
            1 => (0u8..24).prop_map(|key| Update::Absent { key }),
            1 => (0u8..24).prop_map(|key| Update::Forget { key }),
            1 => Just(Update::Read),
        ]
    }

    proptest! {
        /// Whatever the updates and wherever the reads fall, every read
        /// sees the index that recording each update at once gives.
        #[test]
        fn reads_see_every_update_recorded(updates in prop::collection::vec(update(), 0..200)) {
            let mut eager = Index::new();
            let deferred = DeferredIndex::new(Index::new());
            for update in updates {
                match update {
                    Update::Record { key, actor, value_len } => {
                        let key = format!("k{key}");
                        let siblings = set(actor, &"v".repeat(value_len));
                        eager.record(&key, &siblings);
                        deferred.record(&key, &siblings);
                    }
                    Update::Absent { key } => {
                        let key = format!("k{key}");
                        eager.record(&key, &Siblings::new());
                        deferred.record(&key, &Siblings::new());
                    }
                    Update::Forget { key } => {
                        let key = format!("k{key}");
                        eager.remove(&key);
                        deferred.forget(&key);
                    }
                    Update::Read => {
                        prop_assert_eq!(deferred.read(Index::clone), eager.clone());
                        prop_assert_eq!(deferred.pending(), 0);
                    }
                }
            }
            prop_assert_eq!(deferred.read(Index::clone), eager);
        }
    }

    #[test]
    fn updates_wait_until_a_read() {
        let deferred = DeferredIndex::new(Index::new());
        for round in 0..3 {
            deferred.record("k", &set(1, &format!("v{round}")));
        }
        assert_eq!(deferred.pending(), 1, "one waiting state per key");
        let mut expected = Index::new();
        expected.record("k", &set(1, "v2"));
        assert_eq!(
            deferred.read(Index::clone),
            expected,
            "the last state is the one recorded"
        );
        assert_eq!(deferred.pending(), 0);
    }

    #[test]
    fn too_many_waiting_keys_are_recorded_without_a_read() {
        let deferred = DeferredIndex::new(Index::new());
        for i in 0..=MAX_DEFERRED_KEYS {
            deferred.record(&format!("k{i}"), &set(1, "v"));
            assert!(deferred.pending() <= MAX_DEFERRED_KEYS);
        }
        assert_eq!(
            deferred.pending(),
            0,
            "the key over the bound flushed them all"
        );
        assert_eq!(deferred.state().index.len(), MAX_DEFERRED_KEYS + 1);
    }

    #[test]
    fn too_many_waiting_bytes_are_recorded_without_a_read() {
        let deferred = DeferredIndex::new(Index::new());
        let value = "v".repeat(64 * 1024);
        let per_key = set(1, &value).footprint();
        let fit = MAX_DEFERRED_BYTES / per_key;
        for i in 0..fit {
            deferred.record(&format!("k{i}"), &set(1, &value));
        }
        assert_eq!(deferred.pending(), fit, "within the bound everything waits");
        deferred.record("one-more", &set(1, &value));
        assert_eq!(
            deferred.pending(),
            0,
            "over the bound everything is recorded"
        );
        assert_eq!(deferred.state().index.len(), fit + 1);
        // a replaced state counts once, not twice
        for _ in 0..2 * fit {
            deferred.record("k0", &set(2, &value));
        }
        assert_eq!(deferred.pending(), 1);
    }

    /// Writers recording while readers and bound-crossing writers flush:
    /// every key ends with its writer's last state, never an earlier one a
    /// flush digested outside the lock and recorded late.
    #[test]
    fn concurrent_flushes_never_record_a_state_late() {
        // A late record needs two flushes to overlap, which one run only
        // sometimes gets; without one flush at a time, about a third of
        // the runs caught it.
        for _ in 0..8 {
            race_writers_and_readers();
        }
    }

    fn race_writers_and_readers() {
        const WRITERS: u32 = 4;
        const KEYS_PER_WRITER: usize = 8;
        const ROUNDS: usize = 1500;
        let deferred = std::sync::Arc::new(DeferredIndex::new(Index::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let deferred = deferred.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        deferred.read(Index::len);
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (1..=WRITERS)
            .map(|writer| {
                let deferred = deferred.clone();
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let key = format!("w{writer}-{}", round % KEYS_PER_WRITER);
                        // big enough values that the byte bound is crossed too
                        let value = format!("{round:0>8}").repeat(1 + round % 4 * 4096);
                        deferred.record(&key, &set(writer, &value));
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer panicked");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for reader in readers {
            reader.join().expect("a reader panicked");
        }
        let mut expected = Index::new();
        for writer in 1..=WRITERS {
            for round in ROUNDS - KEYS_PER_WRITER..ROUNDS {
                let key = format!("w{writer}-{}", round % KEYS_PER_WRITER);
                let value = format!("{round:0>8}").repeat(1 + round % 4 * 4096);
                expected.record(&key, &set(writer, &value));
            }
        }
        assert_eq!(deferred.read(Index::clone), expected);
    }

    #[test]
    fn updates_of_exactly_the_byte_bound_still_wait() {
        let deferred = DeferredIndex::new(Index::new());
        let overhead = set(1, "").footprint();
        let value = "v".repeat(MAX_DEFERRED_BYTES - overhead);
        assert_eq!(set(1, &value).footprint(), MAX_DEFERRED_BYTES);
        deferred.record("k", &set(1, &value));
        assert_eq!(deferred.pending(), 1, "at the bound the update waits");
        deferred.record("other", &set(1, ""));
        assert_eq!(
            deferred.pending(),
            0,
            "past the bound everything is recorded"
        );
    }

    /// A key recorded again and again counts its last state only against
    /// the byte bound: its replaced states never force a flush.
    #[test]
    fn a_key_recorded_over_and_over_counts_only_its_last_state() {
        let deferred = DeferredIndex::new(Index::new());
        let value = "v".repeat(64 * 1024);
        let per_key = set(1, &value).footprint();
        for round in 0..2 * (MAX_DEFERRED_BYTES / per_key) {
            deferred.record("k", &set(1 + round as u32 % 2, &value));
            assert_eq!(
                deferred.pending(),
                1,
                "round {round}: the waiting key was flushed"
            );
        }
    }
}
