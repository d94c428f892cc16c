//! A node's simulated disk: a [`RowBackend`] under the real
//! [`GroupCommit`](quorumlog_core::storage::GroupCommit), so the simulated
//! cluster runs the storage code `quorumd` deploys.
//!
//! Its committed rows (and incarnation record and hints) live here, owned
//! by the harness, so they survive a crash: madsim kills every task of the
//! node, including the committer and whatever sat in its queue. What it
//! models, every draw from a seeded RNG of its own:
//!
//! - each commit takes a seeded time, first to reach the disk and then to
//!   be acknowledged; a read that misses the row cache takes one too, so
//!   reads race commits as they do against a database;
//! - a commit fails with nothing applied, or applies and then fails (an
//!   unknown outcome: what a connection lost during COMMIT gives), at the
//!   scenario's rates ([`DiskFaults`]);
//! - a crash before a batch reached the disk loses the whole batch, and a
//!   crash after it leaves it applied but never acknowledged; no batch is
//!   ever half applied (it is applied in one step, under one lock).
//!
//! Hints and the incarnation record are written at once and never fail:
//! the faults here are those of the group commit's batches.
use crate::scenario::DiskFaults;
use async_trait::async_trait;
use quorumlog_core::storage::{
    decode, HintRow, HintTotals, HintWrite, RecordIncarnation, RowBackend, RowWrite, ROW_FORMAT_4,
};
use quorumlog_core::{Siblings, StoreError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, RangeInclusive};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a commit takes to reach the disk, and again to be
/// acknowledged (µs): a flush of a local SSD to a slow network disk.
const COMMIT_LATENCY_US: RangeInclusive<u64> = 100..=1500;
/// How long a read of one row takes (µs).
const READ_LATENCY_US: RangeInclusive<u64> = 50..=500;

/// What the disks did in a run, summed over the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DiskStats {
    /// Batches handed to the disk.
    pub commits: u64,
    /// Commits that failed with nothing applied.
    pub failed: u64,
    /// Commits that applied and then reported a failure.
    pub unknown: u64,
    /// Batches on their way to the disk when their node crashed: never
    /// applied.
    pub lost_in_crash: u64,
    /// Rows committed with a version the disk's own node had just minted,
    /// whose sibling set was past the limit and larger than the row it
    /// replaced: what the coordinator's limit check must never let through
    /// (it takes a write that keeps a set past the limit from growing, so
    /// a context write can always resolve siblings).
    pub grown_past_limit: u64,
}

impl DiskStats {
    pub fn plus(self, other: DiskStats) -> DiskStats {
        DiskStats {
            commits: self.commits + other.commits,
            failed: self.failed + other.failed,
            unknown: self.unknown + other.unknown,
            lost_in_crash: self.lost_in_crash + other.lost_in_crash,
            grown_past_limit: self.grown_past_limit + other.grown_past_limit,
        }
    }
}

/// One committed row: its bytes and row version, and what they decode to.
///
/// Decoded when first asked for, and then kept: the harness reads the
/// stores only now and then (the liveness phase, a refill, the end of the
/// run), while a key is committed many times between two reads. What it
/// needs on every commit and every key-limit watch, how many versions the
/// row holds, is read off the row's head (see [`Row::versions`]).
#[derive(Debug)]
struct Row {
    data: Vec<u8>,
    version: i64,
    decoded: OnceCell<Result<Arc<Siblings>, StoreError>>,
}

impl Row {
    fn new(data: Vec<u8>, version: i64) -> Self {
        Row {
            data,
            version,
            decoded: OnceCell::new(),
        }
    }

    /// What the row decodes to (decoded once).
    fn decoded(&self, key: &str) -> &Result<Arc<Siblings>, StoreError> {
        self.decoded
            .get_or_init(|| decode(key, &self.data).map(Arc::new))
    }

    /// How many versions the row holds. A row of the current format is an
    /// encoded sibling set behind its marker, and the set's first field is
    /// its sequence of versions: the count is the varint that opens it.
    /// Any other row (or a head that does not read) is decoded.
    fn versions(&self, key: &str) -> Result<usize, StoreError> {
        let head = self
            .data
            .strip_prefix(&ROW_FORMAT_4)
            .and_then(|set| postcard::take_from_bytes::<u64>(set).ok())
            .and_then(|(count, _)| usize::try_from(count).ok());
        match head {
            Some(count) => Ok(count),
            None => self
                .decoded(key)
                .as_ref()
                .map(|set| set.len())
                .map_err(Clone::clone),
        }
    }

    /// Whether the row holds more versions than `max_siblings` or more
    /// value bytes than `max_bytes`. A row no longer than `max_bytes`
    /// holds no more value bytes than that (each value is in it, behind
    /// its length), so only a longer one is decoded to sum them.
    fn over(&self, key: &str, max_siblings: usize, max_bytes: usize) -> Result<bool, StoreError> {
        if self.versions(key)? > max_siblings {
            return Ok(true);
        }
        if self.data.len() <= max_bytes {
            return Ok(false);
        }
        match self.decoded(key) {
            Ok(set) => Ok(set.versions().iter().map(|v| v.value.len()).sum::<usize>() > max_bytes),
            Err(e) => Err(e.clone()),
        }
    }
}

/// What is on the disk: everything committed.
#[derive(Debug, Default)]
struct Committed {
    /// Per key, the committed row.
    rows: BTreeMap<String, Row>,
    incarnation: Option<i64>,
    hints: BTreeMap<(i64, String), HintRow>,
    /// The last hint generation handed out (never reused).
    hint_generation: i64,
}

/// How a drawn commit ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Applied,
    Failed,
    Unknown,
}

/// Whose disk this is and the sibling limit its coordinator enforces,
/// for judging each commit of a version the node minted.
#[derive(Debug, Clone, Copy)]
struct Owner {
    node: u32,
    max_siblings: usize,
}

pub struct SimDisk {
    committed: Mutex<Committed>,
    owner: Option<Owner>,
    faults: DiskFaults,
    /// Set when the run's faults heal: from then on every commit applies.
    /// The draws go on as before, so healing shifts no other draw.
    healed: AtomicBool,
    rng: Mutex<ChaCha8Rng>,
    stats: Mutex<DiskStats>,
}

/// Counts a batch as lost unless it is disarmed: dropped armed, its
/// future died with its node (madsim drops a killed node's tasks).
struct InFlight<'a> {
    disk: &'a SimDisk,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.disk.stats().lost_in_crash += 1;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the data whole before anything can panic.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimDisk {
    /// An empty disk failing commits at `faults`' rates, its draws from `rng`.
    pub fn new(faults: DiskFaults, rng: ChaCha8Rng) -> Self {
        Self {
            committed: Mutex::new(Committed::default()),
            owner: None,
            faults,
            healed: AtomicBool::new(false),
            rng: Mutex::new(rng),
            stats: Mutex::new(DiskStats::default()),
        }
    }

    /// Judge every commit of a version `node` minted against a sibling
    /// limit of `max_siblings` (see [`DiskStats::grown_past_limit`]).
    pub fn owned_by(mut self, node: u32, max_siblings: usize) -> Self {
        self.owner = Some(Owner { node, max_siblings });
        self
    }

    /// Whether writing `new` over `old` commits a version the owner just
    /// minted (its dot is in `new`, in the owner's recorded incarnation,
    /// and not in `old`) into a set past the limit and larger than `old`.
    /// Judged on what the rows hold (a row that does not decode counts as
    /// empty when old, and is never judged when new), with the harness's
    /// own counting.
    fn grows_past_limit(
        &self,
        key: &str,
        old: Option<&Row>,
        new: &Row,
        incarnation: Option<i64>,
    ) -> bool {
        let Some(owner) = self.owner else {
            return false;
        };
        // Counted off the rows' heads first: nearly every commit stays
        // within the limit, and is judged without decoding anything.
        let (Ok(new_len), old_len) = (
            new.versions(key),
            old.map_or(0, |old| old.versions(key).unwrap_or(0)),
        ) else {
            return false;
        };
        if new_len <= owner.max_siblings || new_len <= old_len {
            return false;
        }
        let (Ok(new), old) = (
            new.decoded(key),
            old.and_then(|old| old.decoded(key).as_deref().ok()),
        ) else {
            return false;
        };
        let incarnation = incarnation.and_then(|i| u32::try_from(i).ok()).unwrap_or(0);
        let old_dots: BTreeSet<_> = old
            .map(|old| old.versions().iter().map(|v| v.dot).collect())
            .unwrap_or_default();
        new.versions().iter().any(|v| {
            v.dot.node == owner.node
                && v.dot.incarnation == incarnation
                && !old_dots.contains(&v.dot)
        })
    }

    fn committed(&self) -> MutexGuard<'_, Committed> {
        lock(&self.committed)
    }

    fn stats(&self) -> MutexGuard<'_, DiskStats> {
        lock(&self.stats)
    }

    pub fn disk_stats(&self) -> DiskStats {
        *self.stats()
    }

    /// Fail no commit from now on (the run's faults heal).
    pub fn heal(&self) {
        self.healed.store(true, Ordering::Relaxed);
    }

    /// The disk is replaced by an empty one (the node is down).
    pub fn wipe(&self) {
        *self.committed() = Committed::default();
    }

    /// Every committed row, decoded: what the node would find on restart.
    /// The sets are shared with the disk, not copied.
    pub fn rows(&self) -> Result<BTreeMap<String, Arc<Siblings>>, StoreError> {
        self.committed()
            .rows
            .iter()
            .map(|(key, row)| Ok((key.clone(), row.decoded(key).clone()?)))
            .collect()
    }

    /// The keys whose committed rows are not the same bytes on every one
    /// of `disks`: held by some and not by others, or held differently.
    /// Rows of the same bytes decode to the same sibling set, so only these
    /// keys can differ in what the replicas hold; comparing bytes in place
    /// spares decoding and copying every other key's versions.
    pub fn keys_not_alike<'a>(disks: impl IntoIterator<Item = &'a SimDisk>) -> BTreeSet<String> {
        // Every disk's lock at once, in the order given: nothing else holds
        // more than one disk's.
        let committed: Vec<MutexGuard<'_, Committed>> =
            disks.into_iter().map(|disk| disk.committed()).collect();
        let mut keys = BTreeSet::new();
        let Some((first, rest)) = committed.split_first() else {
            return keys;
        };
        for (key, row) in &first.rows {
            let alike = |other: &MutexGuard<'_, Committed>| {
                other
                    .rows
                    .get(key)
                    .is_some_and(|theirs| theirs.data == row.data)
            };
            if !rest.iter().all(alike) {
                keys.insert(key.clone());
            }
        }
        for other in rest {
            for key in other.rows.keys() {
                if !first.rows.contains_key(key) {
                    keys.insert(key.clone());
                }
            }
        }
        keys
    }

    /// [`SimDisk::rows`], for the committed keys among `keys` only.
    pub fn rows_among(
        &self,
        keys: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Arc<Siblings>>, StoreError> {
        let committed = self.committed();
        keys.iter()
            .filter_map(|key| committed.rows.get(key).map(|row| (key, row)))
            .map(|(key, row)| Ok((key.clone(), row.decoded(key).clone()?)))
            .collect()
    }

    /// How many committed rows hold more versions than `max_siblings` or
    /// more value bytes than `max_bytes` (counted from what the rows hold,
    /// not with the core's own accounting).
    pub fn rows_over(&self, max_siblings: usize, max_bytes: usize) -> Result<usize, StoreError> {
        let committed = self.committed();
        let mut over = 0;
        for (key, row) in &committed.rows {
            over += usize::from(row.over(key, max_siblings, max_bytes)?);
        }
        Ok(over)
    }

    fn latency(&self, range: RangeInclusive<u64>) -> Duration {
        Duration::from_micros(lock(&self.rng).gen_range(range))
    }

    /// Both halves of a commit's time and its fate. Every draw is made
    /// whatever the rates, so changing a rate does not shift the rest.
    fn draw_commit(&self) -> (Duration, Duration, Fate) {
        let mut rng = lock(&self.rng);
        let to_disk = Duration::from_micros(rng.gen_range(COMMIT_LATENCY_US));
        let to_ack = Duration::from_micros(rng.gen_range(COMMIT_LATENCY_US));
        let roll: u16 = rng.gen_range(0..1000);
        let faults = if self.healed.load(Ordering::Relaxed) {
            DiskFaults::NONE
        } else {
            self.faults
        };
        let fate = if roll < faults.failed_permille {
            Fate::Failed
        } else if roll
            < faults
                .failed_permille
                .saturating_add(faults.unknown_permille)
        {
            Fate::Unknown
        } else {
            Fate::Applied
        };
        (to_disk, to_ack, fate)
    }

    /// Apply a batch as one transaction: each row only if its version is
    /// as expected (as the SQL backends' conditional writes do).
    fn apply(&self, rows: &[RowWrite]) -> BTreeSet<String> {
        let mut committed = self.committed();
        let incarnation = committed.incarnation;
        let mut written = BTreeSet::new();
        for write in rows {
            let current = committed.rows.get(&write.key);
            let next = match (write.expected, current.map(|row| row.version)) {
                (None, None) => 0,
                (Some(expected), Some(current)) if expected == current => current + 1,
                _ => continue,
            };
            let row = Row::new(write.data.clone(), next);
            if self.grows_past_limit(&write.key, current, &row, incarnation) {
                self.stats().grown_past_limit += 1;
            }
            // In place when the key has a row: no copy of the key.
            match committed.rows.get_mut(&write.key) {
                Some(slot) => *slot = row,
                None => {
                    committed.rows.insert(write.key.clone(), row);
                }
            }
            written.insert(write.key.clone());
        }
        written
    }
}

fn limit_of(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(0)
}

#[async_trait]
impl RowBackend for SimDisk {
    fn name(&self) -> &'static str {
        "simulated disk"
    }

    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError> {
        // The row as it is when the read reaches the disk: a commit may
        // land while the answer travels back.
        tokio::time::sleep(self.latency(READ_LATENCY_US)).await;
        let row = self
            .committed()
            .rows
            .get(key)
            .map(|row| (row.data.clone(), row.version));
        tokio::time::sleep(self.latency(READ_LATENCY_US)).await;
        Ok(row)
    }

    async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError> {
        // The backend's contract: a batch names each key once, so that
        // each row's condition is unambiguous. A store that broke it would
        // see its second row of a key refused, and quietly retry.
        for (at, row) in rows.iter().enumerate() {
            assert!(
                !rows[..at].iter().any(|earlier| earlier.key == row.key),
                "a commit batch holds key {:?} twice",
                row.key
            );
        }
        let (to_disk, to_ack, fate) = self.draw_commit();
        self.stats().commits += 1;
        let mut in_flight = InFlight {
            disk: self,
            armed: true,
        };
        tokio::time::sleep(to_disk).await;
        in_flight.armed = false;
        if fate == Fate::Failed {
            self.stats().failed += 1;
            return Err(StoreError::Backend(
                "simulated commit failure (nothing applied)".into(),
            ));
        }
        let written = self.apply(rows);
        // Applied: a crash from here on loses only the acknowledgement.
        tokio::time::sleep(to_ack).await;
        if fate == Fate::Unknown {
            self.stats().unknown += 1;
            return Err(StoreError::Backend(
                "simulated connection loss during commit (outcome unknown)".into(),
            ));
        }
        Ok(written)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.committed().rows.keys().cloned().collect())
    }

    async fn read_rows(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = match after {
            Some(key) => Bound::Excluded(key.to_string()),
            None => Bound::Unbounded,
        };
        Ok(self
            .committed()
            .rows
            .range((start, Bound::Unbounded))
            .take(limit_of(limit))
            .map(|(key, row)| (key.clone(), row.data.clone()))
            .collect())
    }

    async fn read_incarnation(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.committed().incarnation)
    }

    async fn record_incarnation(&self, record: RecordIncarnation) -> Result<i64, StoreError> {
        let mut committed = self.committed();
        let recorded = match record {
            RecordIncarnation::IfAbsent { fresh } => {
                let has_rows = !committed.rows.is_empty();
                *committed
                    .incarnation
                    .get_or_insert(if has_rows { 0 } else { i64::from(fresh) })
            }
            RecordIncarnation::Replace(incarnation) => {
                *committed.incarnation.insert(i64::from(incarnation))
            }
        };
        Ok(recorded)
    }

    async fn read_hint(&self, target: i64, key: &str) -> Result<Option<HintRow>, StoreError> {
        Ok(self
            .committed()
            .hints
            .get(&(target, key.to_string()))
            .cloned())
    }

    async fn hint_totals(&self, target: i64, cutoff: i64) -> Result<HintTotals, StoreError> {
        let committed = self.committed();
        let mut totals = HintTotals::default();
        for hint in committed.hints.values().filter(|h| h.target == target) {
            if hint.stored_at >= cutoff {
                totals.live += 1;
                totals.live_bytes += hint.bytes;
            } else {
                totals.expired += 1;
            }
        }
        Ok(totals)
    }

    async fn read_hints(&self, target: i64, limit: i64) -> Result<Vec<HintRow>, StoreError> {
        let committed = self.committed();
        let mut hints: Vec<&HintRow> = committed
            .hints
            .values()
            .filter(|h| h.target == target)
            .collect();
        // Held in key order; a stable sort by time keeps ties in key order.
        hints.sort_by_key(|h| h.stored_at);
        Ok(hints.into_iter().take(limit_of(limit)).cloned().collect())
    }

    async fn write_hint(&self, hint: &HintWrite) -> Result<Option<i64>, StoreError> {
        let mut committed = self.committed();
        let at = (hint.target, hint.key.clone());
        let held = committed.hints.get(&at).map(|h| h.generation);
        if held != hint.expected {
            return Ok(None);
        }
        committed.hint_generation += 1;
        let generation = committed.hint_generation;
        committed.hints.insert(
            at,
            HintRow {
                target: hint.target,
                key: hint.key.clone(),
                data: hint.data.clone(),
                generation,
                stored_at: hint.stored_at,
                bytes: hint.bytes,
            },
        );
        Ok(Some(generation))
    }

    async fn delete_hint(
        &self,
        target: i64,
        key: &str,
        generation: i64,
    ) -> Result<bool, StoreError> {
        let mut committed = self.committed();
        let at = (target, key.to_string());
        if committed.hints.get(&at).map(|h| h.generation) != Some(generation) {
            return Ok(false);
        }
        committed.hints.remove(&at);
        Ok(true)
    }

    async fn delete_expired_hints(
        &self,
        target: Option<i64>,
        cutoff: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut committed = self.committed();
        let doomed: Vec<(i64, String)> = committed
            .hints
            .values()
            .filter(|h| target.is_none_or(|t| h.target == t) && h.stored_at < cutoff)
            .map(|h| (h.target, h.key.clone()))
            .collect();
        Ok(doomed
            .into_iter()
            .filter_map(|at| committed.hints.remove(&at))
            .map(|h| (h.target, h.bytes))
            .collect())
    }

    async fn hint_backlog(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let mut backlog: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for hint in self.committed().hints.values() {
            let sum = backlog.entry(hint.target).or_default();
            sum.0 += 1;
            sum.1 += hint.bytes;
        }
        Ok(backlog
            .into_iter()
            .map(|(target, (count, bytes))| (target, count, bytes))
            .collect())
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_core::storage::{encode, GroupCommit};
    use quorumlog_core::{Dot, Store, Version, VersionVector};
    use rand::SeedableRng;

    fn disk(failed_permille: u16, unknown_permille: u16) -> Arc<SimDisk> {
        Arc::new(SimDisk::new(
            DiskFaults {
                failed_permille,
                unknown_permille,
            },
            ChaCha8Rng::seed_from_u64(7),
        ))
    }

    fn set(value: &str, counter: u64) -> Siblings {
        Siblings::from_versions([Version {
            dot: Dot::new(1, counter),
            context: VersionVector::new(),
            value: value.into(),
            timestamp_ms: 0,
        }])
        .expect("one version is a sibling set")
    }

    /// Blind versions (concurrent), each `(node, counter)`.
    fn blind(dots: &[(u32, u64)]) -> Vec<u8> {
        let versions = dots.iter().map(|&(node, counter)| Version {
            dot: Dot::new(node, counter),
            context: VersionVector::new(),
            value: format!("v{node}-{counter}"),
            timestamp_ms: 0,
        });
        encode(&Siblings::from_versions(versions).expect("concurrent versions")).expect("encode")
    }

    /// After the heal every commit applies, and the draws go on as before:
    /// each commit takes the time it would have taken unhealed.
    #[test]
    fn a_healed_disk_fails_no_commit_and_draws_as_before() {
        let healed = disk(600, 400);
        let unhealed = disk(600, 400);
        let fates = |disk: &SimDisk| (0..200).map(|_| disk.draw_commit()).collect::<Vec<_>>();
        let before = fates(&healed);
        assert!(before.iter().all(|(_, _, fate)| *fate != Fate::Applied));
        assert_eq!(before, fates(&unhealed));
        healed.heal();
        let after = fates(&healed);
        let unhealed_after = fates(&unhealed);
        assert!(after.iter().all(|(_, _, fate)| *fate == Fate::Applied));
        assert!(unhealed_after
            .iter()
            .all(|(_, _, fate)| *fate != Fate::Applied));
        let times = |draws: &[(Duration, Duration, Fate)]| {
            draws.iter().map(|&(a, b, _)| (a, b)).collect::<Vec<_>>()
        };
        assert_eq!(times(&after), times(&unhealed_after));
    }

    #[test]
    fn a_commit_of_an_own_version_that_grows_a_set_past_the_limit_is_counted() {
        let faults = DiskFaults {
            failed_permille: 0,
            unknown_permille: 0,
        };
        let disk = SimDisk::new(faults, ChaCha8Rng::seed_from_u64(1)).owned_by(1, 2);
        let write = |data: Vec<u8>, expected| {
            disk.apply(&[RowWrite {
                key: "k".into(),
                data,
                expected,
            }]);
            disk.disk_stats().grown_past_limit
        };
        // Up to the limit: fine.
        assert_eq!(write(blind(&[(1, 1), (2, 1)]), None), 0);
        // Node 2's version arrives by replication past the limit: not the
        // owner's write.
        assert_eq!(write(blind(&[(1, 1), (2, 1), (2, 2)]), Some(0)), 0);
        // The owner replaces one of node 2's versions with its own: the
        // set stays at 3, which a context write may do.
        assert_eq!(write(blind(&[(1, 1), (1, 2), (2, 2)]), Some(1)), 0);
        // The owner adds a version to a set past the limit: counted.
        assert_eq!(write(blind(&[(1, 1), (1, 2), (1, 3), (2, 2)]), Some(2)), 1);
    }

    /// The count read off a row's head is the number of versions the row
    /// decodes to, for one-byte and longer varints alike.
    #[test]
    fn a_rows_head_counts_its_versions() {
        for count in [0u32, 1, 2, 127, 128, 300] {
            let dots: Vec<(u32, u64)> = (0..count).map(|i| (i + 1, 1)).collect();
            let row = Row::new(blind(&dots), 0);
            assert_eq!(row.versions("k"), Ok(count as usize));
            let decoded = row.decoded("k").as_ref().expect("decodes").len();
            assert_eq!(decoded, count as usize);
        }
        // A row the head does not describe is decoded, and fails as that does.
        let broken = Row::new(b"not a row".to_vec(), 0);
        assert!(broken.versions("k").is_err());
    }

    /// Over the limits by versions or by value bytes, judged on what the
    /// rows hold; a row longer than the byte limit whose values fit is not.
    #[test]
    fn rows_over_the_limits_are_counted_by_versions_and_by_value_bytes() {
        let faults = DiskFaults {
            failed_permille: 0,
            unknown_permille: 0,
        };
        let disk = SimDisk::new(faults, ChaCha8Rng::seed_from_u64(1));
        let value_of = |bytes: usize| {
            let version = |node: u32, value: String| Version {
                dot: Dot::new(node, 1),
                context: VersionVector::new(),
                value,
                timestamp_ms: 0,
            };
            // Many small versions: the row is longer than its values.
            let versions = (1..=40).map(|node| version(node, "x".repeat(bytes / 40)));
            encode(&Siblings::from_versions(versions).expect("concurrent")).expect("encode")
        };
        let write = |key: &str, data: Vec<u8>| {
            disk.apply(&[RowWrite {
                key: key.into(),
                data,
                expected: None,
            }]);
        };
        write("few", blind(&[(1, 1), (2, 1)]));
        assert_eq!(disk.rows_over(2, 1 << 20), Ok(0));
        assert_eq!(disk.rows_over(1, 1 << 20), Ok(1));
        // 40 versions of 25 bytes: 1,000 value bytes in a longer row.
        write("big", value_of(1000));
        let long = disk.committed().rows["big"].data.len();
        assert!(long > 1000);
        assert_eq!(disk.rows_over(40, 1000), Ok(0));
        assert_eq!(disk.rows_over(40, 999), Ok(1));
        assert_eq!(disk.rows_over(39, 1000), Ok(1));
    }

    /// Keys held alike (the same bytes on every disk) are left out;
    /// keys held differently, or by some disks only, are named.
    #[test]
    fn keys_not_alike_are_those_held_differently_or_not_everywhere() {
        let faults = DiskFaults {
            failed_permille: 0,
            unknown_permille: 0,
        };
        let disks: Vec<SimDisk> = (0..3)
            .map(|i| SimDisk::new(faults, ChaCha8Rng::seed_from_u64(i)))
            .collect();
        assert!(SimDisk::keys_not_alike(&disks).is_empty(), "empty disks");
        for disk in &disks {
            disk.apply(&[row("same", "x", None), row("differs", "x", None)]);
        }
        disks[2].apply(&[row("differs", "y", Some(0))]);
        disks[1].apply(&[row("only-on-1", "z", None)]);
        disks[0].apply(&[row("only-on-0", "z", None)]);
        let named: Vec<String> = SimDisk::keys_not_alike(&disks).into_iter().collect();
        assert_eq!(named, ["differs", "only-on-0", "only-on-1"]);
        // Two disks alike on a key the third lacks: still named.
        assert_eq!(
            SimDisk::keys_not_alike(&disks[..2])
                .into_iter()
                .collect::<Vec<_>>(),
            ["only-on-0", "only-on-1"]
        );
        assert!(SimDisk::keys_not_alike(&disks[..1]).is_empty(), "one disk");

        let among = disks[1]
            .rows_among(
                &[
                    "differs".to_string(),
                    "only-on-0".to_string(),
                    "same".to_string(),
                ]
                .into(),
            )
            .expect("rows decode");
        assert_eq!(among.keys().collect::<Vec<_>>(), ["differs", "same"]);
        assert_eq!(among["same"], stored(&disks[1])["same"]);
    }

    fn row(key: &str, value: &str, expected: Option<i64>) -> RowWrite {
        RowWrite {
            key: key.into(),
            data: encode(&set(value, 1)).expect("encode"),
            expected,
        }
    }

    fn stored(disk: &SimDisk) -> BTreeMap<String, Arc<Siblings>> {
        disk.rows().expect("rows decode")
    }

    #[madsim::test]
    async fn a_failed_commit_applies_nothing() {
        let disk = disk(1000, 0);
        let batch = [row("a", "x", None), row("b", "y", None)];
        assert!(disk.write_rows(&batch).await.is_err());
        assert!(stored(&disk).is_empty());
        assert_eq!(disk.read_row("a").await, Ok(None));
        assert_eq!(
            disk.disk_stats(),
            DiskStats {
                commits: 1,
                failed: 1,
                ..DiskStats::default()
            }
        );
    }

    #[madsim::test]
    async fn an_unknown_outcome_applies_the_whole_batch() {
        let disk = disk(0, 1000);
        let batch = [row("a", "x", None), row("b", "y", None)];
        assert!(disk.write_rows(&batch).await.is_err());
        assert_eq!(stored(&disk).len(), 2);
        // Versions move as for a commit that was acknowledged.
        assert_eq!(
            disk.read_row("a").await.map(|r| r.map(|r| r.1)),
            Ok(Some(0))
        );
        assert_eq!(disk.disk_stats().unknown, 1);
    }

    #[madsim::test]
    async fn rows_are_written_only_at_the_version_read() {
        let disk = disk(0, 0);
        let written = disk.write_rows(&[row("a", "x", None)]).await;
        assert_eq!(written, Ok(["a".to_string()].into()));
        // A second insert and a stale update are refused; the right one lands.
        let batch = [
            row("a", "again", None),
            row("b", "y", Some(0)),
            row("c", "z", None),
        ];
        assert_eq!(disk.write_rows(&batch).await, Ok(["c".to_string()].into()));
        let written = disk.write_rows(&[row("a", "next", Some(0))]).await;
        assert_eq!(written, Ok(["a".to_string()].into()));
        assert_eq!(
            disk.read_row("a").await.map(|r| r.map(|r| r.1)),
            Ok(Some(1))
        );
        disk.wipe();
        assert!(stored(&disk).is_empty());
        assert_eq!(disk.read_incarnation().await, Ok(None));
    }

    #[madsim::test]
    async fn a_crash_before_the_disk_loses_the_batch_whole() {
        let handle = madsim::runtime::Handle::current();
        let disk = disk(0, 0);
        let node = handle.create_node().name("n").build();
        let on_node = disk.clone();
        let (started, is_started) = tokio::sync::oneshot::channel();
        let _write = node.spawn(async move {
            let batch = [row("a", "x", None), row("b", "y", None)];
            // Sending does not yield: the write starts in this same poll.
            let _ = started.send(());
            on_node.write_rows(&batch).await
        });
        // Killed at the instant the write began, before the shortest
        // commit latency is over: the batch is still on its way. (A fixed
        // sleep raced the node's start on a few seeds.)
        is_started.await.expect("the write starts");
        handle.kill(node.id());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(stored(&disk).is_empty());
        assert_eq!(disk.disk_stats().lost_in_crash, 1);
    }

    /// Updates at once, through one store: the committer batches updates
    /// of different keys into one commit, puts updates of one key in
    /// different batches (the disk checks that a batch names each key
    /// once), and every update lands.
    #[madsim::test]
    async fn concurrent_updates_are_batched_one_row_per_key_and_all_land() {
        let disk = disk(0, 0);
        let store = Arc::new(GroupCommit::new(disk.clone(), 1 << 20));
        let update_all = |keys: Vec<&'static str>, first_node: u32| {
            let updates: Vec<_> = keys
                .iter()
                .enumerate()
                .map(|(i, &key)| {
                    let store = store.clone();
                    let version = Version {
                        dot: Dot::new(first_node + i as u32, 1),
                        context: VersionVector::new(),
                        value: format!("v{i}"),
                        timestamp_ms: 0,
                    };
                    tokio::spawn(async move {
                        store
                            .update(key, &mut |s| s.sync_one(version.clone()).unwrap_or(false))
                            .await
                    })
                })
                .collect();
            async move {
                for update in updates {
                    update
                        .await
                        .expect("the task runs")
                        .expect("the update lands");
                }
                keys
            }
        };
        let lands = |keys: &[&str], first_node: u32| {
            let stored = stored(&disk);
            for (i, key) in keys.iter().enumerate() {
                assert!(
                    stored[*key].covers(Dot::new(first_node + i as u32, 1)),
                    "update {i} of {key} is on the disk"
                );
            }
        };
        // Eight keys: fewer commits than updates.
        let distinct = update_all(vec!["a", "b", "c", "d", "e", "f", "g", "h"], 1).await;
        lands(&distinct, 1);
        let commits = disk.disk_stats().commits;
        assert!(commits < 8, "{commits} commits for 8 updates of 8 keys");
        // Many of one key among others: each in a batch of its own.
        let mixed = update_all(vec!["a", "a", "b", "a", "c", "b", "a", "a"], 100).await;
        lands(&mixed, 100);
    }

    /// The store over a disk whose every commit applies and then fails:
    /// each update reports an error, yet the row cache and the optimistic
    /// row version follow the disk, so the next update merges on top of
    /// what was applied (a stale version would lose every later race and
    /// give up; a stale cache would drop the applied version).
    #[madsim::test]
    async fn unknown_outcomes_leave_the_cache_and_versions_right() {
        let disk = disk(0, 1000);
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        for counter in 1..=3 {
            let version = set(&format!("v{counter}"), counter).versions()[0].clone();
            let result = store
                .update("k", &mut |s| s.sync_one(version.clone()).unwrap_or(false))
                .await;
            assert!(result.is_err(), "an unknown outcome is an error");
            let on_disk = stored(&disk).remove("k").expect("applied");
            assert!(on_disk.covers(version.dot));
            assert_eq!(store.get("k").await, Ok((*on_disk).clone()), "cache agrees");
            assert_eq!(
                disk.read_row("k").await.map(|r| r.map(|r| r.1)),
                Ok(Some(counter as i64 - 1)),
                "one row version per commit: no update lost a race"
            );
        }
        assert_eq!(disk.disk_stats().commits, 3);
    }

    /// Updates of one key one after another, every commit acknowledged:
    /// each is one commit at the row version the one before left. The
    /// store's cache must hold the version the commit wrote, not the one
    /// the update read; with that stale, every update but the first loses
    /// its conditional write once and retries from the disk, a second
    /// commit each — a cost no guarantee of the simulation can see.
    #[madsim::test]
    async fn updates_one_after_another_never_lose_a_race() {
        let disk = disk(0, 0);
        let store = GroupCommit::new(disk.clone(), 1 << 20);
        for counter in 1..=4 {
            let version = set(&format!("v{counter}"), counter).versions()[0].clone();
            let result = store
                .update("k", &mut |s| s.sync_one(version.clone()).unwrap_or(false))
                .await;
            assert!(result.is_ok(), "update {counter}: {result:?}");
            assert_eq!(
                disk.disk_stats().commits,
                counter,
                "update {counter} took one commit: it lost no race"
            );
            assert_eq!(
                disk.read_row("k").await.map(|r| r.map(|r| r.1)),
                Ok(Some(counter as i64 - 1)),
                "one row version per update"
            );
        }
        let on_disk = stored(&disk).remove("k").expect("committed");
        assert_eq!(store.get("k").await, Ok((*on_disk).clone()), "cache agrees");
    }
}
