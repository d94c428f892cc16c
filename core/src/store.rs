//! Local storage of sibling sets, one per key, behind a small trait so the
//! same replica logic runs on memory (simulation, tests), SQLite and
//! PostgreSQL (deployment; implemented in `quorumd`).
use crate::version::Siblings;
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
}

/// In-memory store. In the simulator the harness owns one per node, so a
/// killed node restarts with everything it acknowledged.
#[derive(Debug, Default)]
pub struct MemoryStore {
    data: Mutex<BTreeMap<String, Siblings>>,
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
}
