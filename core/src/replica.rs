//! One replica's storage logic: apply versions sent by coordinators, serve
//! its siblings for a key, and mint the version for a write it coordinates.
use crate::store::{Store, StoreError};
use crate::version::{NodeId, Siblings, Version, VersionVector};
use std::sync::Arc;
use std::time::Instant;

/// Largest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest accepted value, in bytes.
pub const MAX_VALUE_LEN: usize = 1024 * 1024;

#[derive(Clone)]
pub struct Replica {
    id: NodeId,
    store: Arc<dyn Store>,
}

impl Replica {
    pub fn new(id: NodeId, store: Arc<dyn Store>) -> Self {
        Self { id, store }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Siblings this replica holds for `key`.
    pub async fn fetch(&self, key: &str) -> Result<Siblings, StoreError> {
        let started = Instant::now();
        let out = self.store.get(key).await;
        metrics::histogram!("store_seconds", "op" => "get").record(started.elapsed().as_secs_f64());
        out
    }

    /// Merge versions sent by a coordinator (or by read repair).
    pub async fn apply(&self, key: &str, incoming: &Siblings) -> Result<Siblings, StoreError> {
        let started = Instant::now();
        let out = self
            .store
            .update(key, &mut |local| local.sync(incoming))
            .await;
        metrics::histogram!("store_seconds", "op" => "apply")
            .record(started.elapsed().as_secs_f64());
        out
    }

    /// Mint a new version for a write this node coordinates and store it.
    /// Returns the version and the sibling set after it, which is what the
    /// coordinator ships to the other replicas: shipping the whole set (not
    /// just the new version) means a replica that learns dot `(me, k)` also
    /// learns every earlier dot of mine for this key, so a context built from
    /// any replica's answer never covers a write its reader did not see.
    pub async fn write_local(
        &self,
        key: &str,
        context: &VersionVector,
        value: String,
    ) -> Result<(Version, Siblings), StoreError> {
        let started = Instant::now();
        let mut minted = None;
        let id = self.id;
        let after = self
            .store
            .update(key, &mut |local| {
                let version = local.mint(id, context, value.clone());
                minted = Some(version.clone());
                local.sync_one(version)
            })
            .await?;
        metrics::histogram!("store_seconds", "op" => "write")
            .record(started.elapsed().as_secs_f64());
        let version =
            minted.ok_or_else(|| StoreError::Backend("store did not run the update".into()))?;
        Ok((version, after))
    }
}
