//! A write-through cache of committed rows for a store whose database has
//! exactly one writer: this process.
//!
//! The writer puts every row it commits into the cache, in commit order,
//! before it acknowledges the write, so a cached row is never older than
//! the newest acknowledged one. A miss reads the database and *fills* the
//! cache — but the row it read may already be old by the time it arrives.
//! Two rules keep that stale row out:
//!
//! - a fill never replaces an entry (the writer's entry is at least as new);
//! - a fill is dropped if any entry was removed (evicted or forgotten)
//!   after the read began: the removed entry may have been a newer row of
//!   this very key, and nothing else remembers it.
//!
//! Readers take a [`FillTicket`] before they query and hand it back with
//! the row. Dropping a fill only costs a later miss.
use crate::version::Siblings;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// A row as committed: its sibling set and the row version it carries.
pub type CachedRow = (Siblings, i64);

/// What an entry costs beyond its key and encoded row: the map slot, the
/// decoded set's allocations. An estimate; the budget is what matters.
const ENTRY_OVERHEAD: usize = 96;

/// Taken before a database read; a fill with an outdated ticket is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket(u64);

struct Entry {
    row: CachedRow,
    cost: usize,
}

struct Inner {
    /// Ordered, so which entry an eviction picks is the same on every run
    /// (the simulator replays runs exactly; hash order differs between them).
    rows: BTreeMap<String, Entry>,
    /// Sum of the entries' costs, never above the capacity.
    used: usize,
    /// Entries removed so far (evictions and forgets).
    removals: u64,
}

pub struct RowCache {
    /// Bytes (estimated: keys, encoded rows, overhead) the cache may hold.
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RowCache {
    /// A cache of at most `capacity` bytes (0 disables caching). A row too
    /// big for it is simply not cached.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                rows: BTreeMap::new(),
                used: 0,
                removals: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every method leaves the map consistent before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cost(key: &str, encoded_len: usize) -> usize {
        key.len() + encoded_len + ENTRY_OVERHEAD
    }

    pub fn get(&self, key: &str) -> Option<CachedRow> {
        self.lock().rows.get(key).map(|entry| entry.row.clone())
    }

    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.lock().removals)
    }

    /// A row read from the database under `ticket` (`encoded_len`: its
    /// stored size).
    pub fn fill(&self, ticket: FillTicket, key: &str, row: CachedRow, encoded_len: usize) {
        let cost = Self::cost(key, encoded_len);
        if cost > self.capacity {
            return;
        }
        let mut inner = self.lock();
        if inner.removals != ticket.0 || inner.rows.contains_key(key) {
            return;
        }
        Self::evict_until(&mut inner, self.capacity - cost);
        inner.used += cost;
        inner.rows.insert(key.to_string(), Entry { row, cost });
    }

    /// A row the writer has just committed (call in commit order).
    pub fn committed(&self, key: &str, row: CachedRow, encoded_len: usize) {
        let cost = Self::cost(key, encoded_len);
        let mut inner = self.lock();
        // The old entry's key is kept for the new one: a commit of a cached
        // key copies no key.
        let held = inner.rows.remove_entry(key).map(|(held, old)| {
            inner.used -= old.cost;
            held
        });
        if cost > self.capacity {
            // Not cacheable, and what was cached is old: as good as a forget.
            inner.removals += 1;
            return;
        }
        Self::evict_until(&mut inner, self.capacity - cost);
        inner.used += cost;
        let key = held.unwrap_or_else(|| key.to_string());
        inner.rows.insert(key, Entry { row, cost });
    }

    /// Drop what we know of `key`: its row changed in a way we did not see
    /// (a lost race) or may have (a commit whose outcome is unknown).
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(old) = inner.rows.remove(key) {
            inner.used -= old.cost;
        }
        // Even when absent: a read in flight may bring back the old row.
        inner.removals += 1;
    }

    /// Evict entries until at most `budget` bytes are used.
    fn evict_until(inner: &mut Inner, budget: usize) {
        while inner.used > budget {
            // Any victim will do: evicting only costs a miss.
            let Some((_, old)) = inner.rows.pop_first() else {
                break;
            };
            inner.used -= old.cost;
            inner.removals += 1;
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.lock().used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{Dot, Version, VersionVector};

    fn row(value: &str, version: i64) -> CachedRow {
        let set = Siblings::from_versions([Version {
            dot: Dot::new(1, version as u64 + 1),
            context: VersionVector::new(),
            value: value.into(),
            timestamp_ms: 0,
        }])
        .expect("one version is a sibling set");
        (set, version)
    }

    /// Room for exactly one of the small rows below.
    const ONE_ROW: usize = 5 + 10 + ENTRY_OVERHEAD;

    #[test]
    fn a_fill_never_replaces_a_committed_row() {
        let cache = RowCache::new(8 * ONE_ROW);
        let ticket = cache.ticket();
        cache.committed("k", row("new", 1), 10);
        cache.fill(ticket, "k", row("old", 0), 10);
        assert_eq!(cache.get("k"), Some(row("new", 1)));
    }

    #[test]
    fn a_fill_that_raced_an_eviction_is_dropped() {
        // The read of "k" started, then "k"'s newer committed row was
        // evicted to make room: the old row the read returns must not land.
        let cache = RowCache::new(ONE_ROW);
        let ticket = cache.ticket();
        cache.committed("k", row("new", 1), 10);
        cache.committed("other", row("x", 0), 10); // evicts "k"
        assert_eq!(cache.get("k"), None);
        cache.fill(ticket, "k", row("old", 0), 10);
        assert_eq!(cache.get("k"), None);
        // A read that starts now sees the database's newest row and may fill.
        let ticket = cache.ticket();
        cache.fill(ticket, "k", row("new", 1), 10);
        assert_eq!(cache.get("k"), Some(row("new", 1)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_fill_that_raced_a_forget_is_dropped() {
        let cache = RowCache::new(8 * ONE_ROW);
        cache.committed("k", row("a", 0), 10);
        let ticket = cache.ticket();
        cache.forget("k");
        cache.fill(ticket, "k", row("a", 0), 10);
        assert_eq!(cache.get("k"), None);
    }

    #[test]
    fn a_committed_row_too_big_to_cache_drops_the_old_one_and_blocks_fills() {
        let cache = RowCache::new(2 * ONE_ROW);
        cache.committed("k", row("small", 0), 10);
        let ticket = cache.ticket();
        cache.committed("k", row("huge", 1), 10 * ONE_ROW);
        assert_eq!(cache.get("k"), None, "the old row must not stay");
        cache.fill(ticket, "k", row("small", 0), 10);
        assert_eq!(cache.get("k"), None, "nor come back from a racing read");
        assert_eq!(cache.used(), 0);
    }

    #[test]
    fn the_byte_budget_holds_however_rows_grow() {
        let cache = RowCache::new(10 * ONE_ROW);
        for i in 0..1000_i64 {
            let key = format!("k{}", i % 37);
            let size = (i as usize * 7) % (3 * ONE_ROW);
            cache.committed(&key, row("v", i), size);
            assert!(cache.used() <= 10 * ONE_ROW, "{} > budget", cache.used());
        }
        assert!(cache.len() >= 3, "the cache kept only {} rows", cache.len());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = RowCache::new(0);
        cache.committed("k", row("a", 0), 10);
        let ticket = cache.ticket();
        cache.fill(ticket, "j", row("b", 0), 10);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_row_of_exactly_the_capacity_is_cached_committed_or_filled() {
        let exactly = RowCache::cost("k", 10);
        let cache = RowCache::new(exactly);
        cache.committed("k", row("a", 0), 10);
        assert_eq!(cache.get("k"), Some(row("a", 0)), "committed");
        let cache = RowCache::new(exactly);
        let ticket = cache.ticket();
        cache.fill(ticket, "k", row("a", 0), 10);
        assert_eq!(cache.get("k"), Some(row("a", 0)), "filled");
    }

    #[test]
    fn a_cache_with_room_for_exactly_two_rows_keeps_both() {
        let cache = RowCache::new(2 * RowCache::cost("a", 10));
        cache.committed("a", row("a", 0), 10);
        cache.committed("b", row("b", 0), 10);
        let ticket = cache.ticket();
        cache.fill(ticket, "c", row("c", 0), 10);
        // The fill needed room: one row went, not both.
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("c"), Some(row("c", 0)));
    }

    /// A commit whose outcome is unknown forgets its key whether or not it
    /// was cached: a read that began before it may bring back the row the
    /// commit replaced.
    #[test]
    fn a_forget_of_a_key_not_cached_still_drops_the_fills_in_flight() {
        let cache = RowCache::new(8 * ONE_ROW);
        let ticket = cache.ticket();
        cache.forget("k");
        cache.fill(ticket, "k", row("old", 0), 10);
        assert_eq!(cache.get("k"), None);
    }

    #[test]
    fn a_long_key_counts_against_the_budget() {
        let cache = RowCache::new(ONE_ROW);
        let key = "k".repeat(ONE_ROW);
        cache.committed(&key, row("a", 0), 10);
        let ticket = cache.ticket();
        cache.fill(ticket, &key, row("a", 0), 10);
        assert_eq!(
            cache.len(),
            0,
            "a key longer than the budget leaves no room"
        );
    }

    #[test]
    fn fills_keep_the_byte_budget() {
        let cache = RowCache::new(3 * ONE_ROW);
        for i in 0..20 {
            let ticket = cache.ticket();
            cache.fill(ticket, &format!("k{i:04}"), row("v", 0), 10);
            assert!(cache.used() <= 3 * ONE_ROW, "{} > budget", cache.used());
        }
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_forgotten_row_gives_its_room_back() {
        let cache = RowCache::new(2 * ONE_ROW);
        cache.committed("a", row("a", 0), 10);
        cache.committed("b", row("b", 0), 10);
        cache.forget("a");
        assert_eq!(cache.used(), RowCache::cost("b", 10));
        cache.committed("c", row("c", 0), 10);
        assert_eq!(cache.get("b"), Some(row("b", 0)), "room for b and c");
    }
}
