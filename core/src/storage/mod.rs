//! The storage `quorumd` deploys, built here so the simulator runs the
//! same code: group commit with optimistic row versions
//! ([`GroupCommit`]), its write-through row cache, the row format, and the
//! [`RowBackend`] trait the SQLite and PostgreSQL backends (in `quorumd`)
//! and the simulator's faulty disk implement. Nothing here needs more than
//! tokio (madsim-tokio: simulated under `--cfg madsim`); no database
//! driver belongs in this crate.
use crate::store::StoreError;
use crate::version::Incarnation;
use async_trait::async_trait;
use std::collections::BTreeSet;

mod group_commit;
mod row_cache;
mod row_format;

pub use group_commit::GroupCommit;
pub use row_format::{decode, encode, MARKER_LEN, ROW_FORMAT_2, ROW_FORMAT_3, ROW_FORMAT_4};

/// A row to write if the stored row's version is still `expected` (None:
/// the key had no row, so insert unless someone inserted it meanwhile).
/// A written row's version becomes `expected + 1` (0 for an insert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowWrite {
    pub key: String,
    pub data: Vec<u8>,
    pub expected: Option<i64>,
}

/// How to record a node's incarnation (see [`crate::Store::incarnation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordIncarnation {
    /// Only if none is recorded: `fresh` when the database holds no rows,
    /// 0 when it does (rows written before incarnations, all under 0).
    IfAbsent { fresh: Incarnation },
    /// Whatever is recorded (a restored backup, whose recorded incarnation
    /// may have minted dots the backup does not hold).
    Replace(Incarnation),
}

/// Name of the incarnation's row in `node_meta`.
pub const INCARNATION: &str = "incarnation";

/// Name of the `node_meta` row holding the last hint generation handed
/// out. A counter of its own, not the largest generation in `hints`: a
/// key whose hint was removed and hinted again must get a generation no
/// hint read before the removal has.
pub const HINT_GENERATION: &str = "hint_generation";

/// A row of the `hints` table, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintRow {
    pub target: i64,
    pub key: String,
    pub data: Vec<u8>,
    pub generation: i64,
    pub stored_at: i64,
    pub bytes: i64,
}

/// A hint to write under a new generation (taken from the
/// `hint_generation` counter in the same commit): inserted when
/// `expected` is None unless a row exists, otherwise written over the row
/// only if its generation is still `expected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintWrite {
    pub target: i64,
    pub key: String,
    pub data: Vec<u8>,
    pub stored_at: i64,
    pub bytes: i64,
    pub expected: Option<i64>,
}

/// One target's hints as stored, split at an expiry cutoff.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HintTotals {
    /// Hints stored at or after the cutoff, and their bytes.
    pub live: i64,
    pub live_bytes: i64,
    /// Hints stored before it.
    pub expired: i64,
}

/// Where the rows live.
#[async_trait]
pub trait RowBackend: Send + Sync + 'static {
    /// For error messages: "PostgreSQL", "SQLite".
    fn name(&self) -> &'static str;
    /// The key's encoded sibling set and row version.
    async fn read_row(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StoreError>;
    /// Write `rows` (distinct keys) with one commit, each only if its
    /// version still matches; return the keys written.
    async fn write_rows(&self, rows: &[RowWrite]) -> Result<BTreeSet<String>, StoreError>;
    /// Every key with a row, in order.
    async fn keys(&self) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` committed rows (key, data) in key order after `after`.
    async fn read_rows(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// The incarnation recorded in `node_meta`, if any (as stored).
    async fn read_incarnation(&self) -> Result<Option<i64>, StoreError>;
    /// Record an incarnation as `record` says, in one transaction (for
    /// `IfAbsent`, whether the database holds rows is decided inside it),
    /// and return what is recorded afterwards (as stored).
    async fn record_incarnation(&self, record: RecordIncarnation) -> Result<i64, StoreError>;
    /// The hint row for `(target, key)`.
    async fn read_hint(&self, target: i64, key: &str) -> Result<Option<HintRow>, StoreError>;
    /// `target`'s hints, split at `cutoff` (a `stored_at`).
    async fn hint_totals(&self, target: i64, cutoff: i64) -> Result<HintTotals, StoreError>;
    /// Up to `limit` of `target`'s hint rows, by `stored_at` then key.
    async fn read_hints(&self, target: i64, limit: i64) -> Result<Vec<HintRow>, StoreError>;
    /// Write `hint` as [`HintWrite`] says, counter and row in one commit
    /// made by the database's owner; the generation written, or None
    /// (nothing written) if the row was not as expected.
    async fn write_hint(&self, hint: &HintWrite) -> Result<Option<i64>, StoreError>;
    /// Delete the `(target, key)` hint if its generation is `generation`,
    /// in one commit; whether it was deleted.
    async fn delete_hint(
        &self,
        target: i64,
        key: &str,
        generation: i64,
    ) -> Result<bool, StoreError>;
    /// Delete the hints (of `target`, or of every target) stored before
    /// `cutoff`, in one commit; `(target, bytes)` of each deleted.
    async fn delete_expired_hints(
        &self,
        target: Option<i64>,
        cutoff: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError>;
    /// `(target, count, bytes)` of the hints held, per target, in order.
    async fn hint_backlog(&self) -> Result<Vec<(i64, i64, i64)>, StoreError>;
    /// Close every connection and give up ownership of the database.
    async fn close(&self);
}
