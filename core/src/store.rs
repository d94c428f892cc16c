//! Local storage of sibling sets, one per key, behind a small trait so the
//! same replica logic runs on memory (simulation, tests), SQLite and
//! PostgreSQL (deployment; implemented in `quorumd`).
use crate::version::{Incarnation, Siblings};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("stored data for key {key:?} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
}

/// A closure that changes a key's sibling set in place and says whether it
/// changed anything (nothing is written when it did not).
pub type Update<'a> = &'a mut (dyn FnMut(&mut Siblings) -> bool + Send);

/// Durable per-key sibling sets.
///
/// `update` is a read-modify-write that must be atomic per key and durable
/// before it returns: a replica acknowledges a write only after `update`
/// returned, so whatever it acked survives a crash.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError>;

    /// Apply `update` to the key's current siblings and persist the result.
    /// Returns the siblings as stored afterwards.
    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError>;

    /// Every key with data, in order.
    async fn keys(&self) -> Result<Vec<String>, StoreError>;

    /// The incarnation of the node this store belongs to, recorded durably
    /// the first time it is asked. A store with no record takes `fresh`
    /// when it holds no data (a new or replaced disk: a new life of the
    /// node, whose dots must not collide with the old life's), or 0 when it
    /// already holds data (written before incarnations were recorded, all
    /// under incarnation 0).
    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError>;
}

/// In-memory store. In the simulator the harness owns one per node, so a
/// killed node restarts with everything it acknowledged (and a lost disk
/// is a fresh `MemoryStore`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<BTreeMap<String, Siblings>>,
    incarnation: Mutex<Option<Incarnation>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Siblings>> {
        // A panic while holding the lock cannot leave a half-applied sync:
        // `update` only swaps in a fully computed set.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Look at everything held, key by key, without copying it (for the
    /// simulator's checks during and after a run).
    pub fn inspect<R>(&self, look: impl FnOnce(&BTreeMap<String, Siblings>) -> R) -> R {
        look(&self.lock())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Siblings, StoreError> {
        Ok(self.lock().get(key).cloned().unwrap_or_default())
    }

    async fn update(&self, key: &str, update: Update<'_>) -> Result<Siblings, StoreError> {
        let mut data = self.lock();
        let mut siblings = data.get(key).cloned().unwrap_or_default();
        if update(&mut siblings) {
            data.insert(key.to_string(), siblings.clone());
        }
        Ok(siblings)
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn incarnation(&self, fresh: Incarnation) -> Result<Incarnation, StoreError> {
        let has_data = !self.lock().is_empty();
        let mut recorded = self
            .incarnation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(*recorded.get_or_insert(if has_data { 0 } else { fresh }))
    }
}
