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
use quorumlog_core::Siblings;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// A row as committed: its sibling set and the row version it carries.
pub type CachedRow = (Siblings, i64);

/// Taken before a database read; a fill with an outdated ticket is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket(u64);

struct Inner {
    rows: HashMap<String, CachedRow>,
    /// Entries removed so far (evictions and forgets).
    removals: u64,
}

pub struct RowCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RowCache {
    /// A cache of at most `capacity` rows (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                rows: HashMap::new(),
                removals: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every method leaves the map consistent before it can panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<CachedRow> {
        self.lock().rows.get(key).cloned()
    }

    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.lock().removals)
    }

    /// A row read from the database under `ticket`.
    pub fn fill(&self, ticket: FillTicket, key: &str, row: CachedRow) {
        let mut inner = self.lock();
        if inner.removals != ticket.0 || inner.rows.contains_key(key) {
            return;
        }
        if Self::make_room(&mut inner, self.capacity) {
            inner.rows.insert(key.to_string(), row);
        }
    }

    /// A row the writer has just committed (call in commit order).
    pub fn committed(&self, key: &str, row: CachedRow) {
        let mut inner = self.lock();
        if let Some(entry) = inner.rows.get_mut(key) {
            *entry = row;
        } else if Self::make_room(&mut inner, self.capacity) {
            inner.rows.insert(key.to_string(), row);
        }
    }

    /// Drop what we know of `key`: its row changed in a way we did not see
    /// (a lost race) or may have (a commit whose outcome is unknown).
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        inner.rows.remove(key);
        // Even when absent: a read in flight may bring back the old row.
        inner.removals += 1;
    }

    /// Evict one entry if full; false if nothing can be cached at all.
    fn make_room(inner: &mut Inner, capacity: usize) -> bool {
        if capacity == 0 {
            return false;
        }
        if inner.rows.len() >= capacity {
            // Any victim will do: evicting only costs a miss.
            if let Some(victim) = inner.rows.keys().next().cloned() {
                inner.rows.remove(&victim);
                inner.removals += 1;
            }
        }
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_core::{Dot, Version, VersionVector};

    fn row(value: &str, version: i64) -> CachedRow {
        let set = Siblings::from_versions([Version {
            dot: Dot {
                node: 1,
                counter: version as u64 + 1,
            },
            context: VersionVector::new(),
            value: value.into(),
        }]);
        (set, version)
    }

    #[test]
    fn a_fill_never_replaces_a_committed_row() {
        let cache = RowCache::new(8);
        let ticket = cache.ticket();
        cache.committed("k", row("new", 1));
        cache.fill(ticket, "k", row("old", 0));
        assert_eq!(cache.get("k"), Some(row("new", 1)));
    }

    #[test]
    fn a_fill_that_raced_an_eviction_is_dropped() {
        // The read of "k" started, then "k"'s newer committed row was
        // evicted to make room: the old row the read returns must not land.
        let cache = RowCache::new(1);
        let ticket = cache.ticket();
        cache.committed("k", row("new", 1));
        cache.committed("other", row("x", 0)); // evicts "k"
        assert_eq!(cache.get("k"), None);
        cache.fill(ticket, "k", row("old", 0));
        assert_eq!(cache.get("k"), None);
        // A read that starts now sees the database's newest row and may fill.
        let ticket = cache.ticket();
        cache.fill(ticket, "k", row("new", 1));
        assert_eq!(cache.get("k"), Some(row("new", 1)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_fill_that_raced_a_forget_is_dropped() {
        let cache = RowCache::new(8);
        cache.committed("k", row("a", 0));
        let ticket = cache.ticket();
        cache.forget("k");
        cache.fill(ticket, "k", row("a", 0));
        assert_eq!(cache.get("k"), None);
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = RowCache::new(0);
        cache.committed("k", row("a", 0));
        let ticket = cache.ticket();
        cache.fill(ticket, "j", row("b", 0));
        assert_eq!(cache.len(), 0);
    }
}
