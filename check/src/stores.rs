//! The store-level durability check: after a run, every acknowledged write
//! is still held by some replica, or was superseded by a client.
//!
//! The harness reads every replica's store out once the run is over
//! ([`StoreContents`]: per key, the sibling versions it holds) and hands
//! them over with the history. **Rule.** An acknowledged write `w` of key
//! `k` is *missing* when
//!
//! - no replica holds `w`'s value among its versions of `k`, and
//! - no other write of `k` that did not certainly fail (ok, timeout or
//!   never completed) sent, in its invoke's `context`, a clock covering the
//!   dot `w`'s acknowledgement reported (the durability checker's rule:
//!   a timed-out superseder may have applied, so it may vouch).
//!
//! Writes recorded without dots fall back to register order: some replica
//! holds a value of `k` whose write (not certainly failed) was invoked
//! after `w` was acknowledged.
//!
//! Unlike [`check_durability`](super::check_durability), this needs no
//! final reads: it judges durability on the stores themselves, so a read
//! path that hides or repairs a loss cannot mask it. What the replicas
//! report about their versions' contexts is not used, only which values
//! they hold.
use super::common::{KeyGroups, OpSummary, MAX_EXAMPLES, MAX_PRINTED};
use super::durability::{latest_invocations, vouching_index};
use quorumlog_history::{History, ObservedVersion, OpKind, OperationRef};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What one replica's store held at the end of a run: per key, its
/// sibling versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreContents {
    pub node: u32,
    pub keys: BTreeMap<String, Vec<ObservedVersion>>,
}

impl StoreContents {
    pub fn new(node: u32) -> Self {
        StoreContents {
            node,
            keys: BTreeMap::new(),
        }
    }

    /// Record the versions `key` holds.
    pub fn insert(&mut self, key: impl Into<String>, versions: Vec<ObservedVersion>) -> &mut Self {
        self.keys.insert(key.into(), versions);
        self
    }
}

/// How many held versions an example lists.
const MAX_HELD_SHOWN: usize = 5;

/// An acknowledged write no replica holds and no client superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingWrite {
    pub write: OpSummary,
    /// Replicas that hold some version of the key (sorted).
    pub replicas_with_key: Vec<u32>,
    /// Some versions they hold instead, `value@dot` (sorted, distinct).
    pub held: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreReport {
    /// Replica stores read.
    pub replicas: usize,
    /// Distinct keys some replica holds a version of.
    pub keys_held: usize,
    /// Acknowledged writes judged.
    pub acknowledged_writes: usize,
    /// Of those, held by some replica.
    pub held: usize,
    /// Of those, not held but superseded by a client's context.
    pub superseded: usize,
    /// Not held, not superseded: lost from every store.
    pub missing_writes: usize,
    /// The first of them, in acknowledgement order.
    pub missing: Vec<MissingWrite>,
}

impl StoreReport {
    pub fn is_ok(&self) -> bool {
        self.missing_writes == 0
    }
}

impl fmt::Display for StoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stores: {} acknowledged writes against {} replica stores ({} keys): {} held, {} superseded by a client's context, ",
            self.acknowledged_writes, self.replicas, self.keys_held, self.held, self.superseded
        )?;
        if self.is_ok() {
            writeln!(f, "none missing")?;
        } else {
            writeln!(f, "{} missing from every store", self.missing_writes)?;
        }
        for (i, m) in self.missing.iter().take(MAX_PRINTED).enumerate() {
            writeln!(f, "  missing write {}: {}", i + 1, m.write)?;
            if m.replicas_with_key.is_empty() {
                writeln!(f, "      no replica holds the key")?;
            } else {
                let replicas: Vec<String> = m
                    .replicas_with_key
                    .iter()
                    .map(|n| format!("n{n}"))
                    .collect();
                writeln!(
                    f,
                    "      replicas {} hold [{}]",
                    replicas.join(", "),
                    m.held.join(", ")
                )?;
            }
        }
        if self.missing_writes > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more missing writes",
                self.missing_writes - MAX_PRINTED
            )?;
        }
        Ok(())
    }
}

fn show(v: &ObservedVersion) -> String {
    match v.dot {
        Some(dot) => format!("{}@{dot}", v.value),
        None => v.value.clone(),
    }
}

/// Judge the history's acknowledged writes against the replicas' stores.
pub fn check_stores(history: &History, stores: &[StoreContents]) -> StoreReport {
    check_stores_ops(&history.operation_refs(), stores)
}

/// [`check_stores`] on operations already paired.
pub fn check_stores_ops(ops: &[OperationRef<'_>], stores: &[StoreContents]) -> StoreReport {
    check_stores_groups(&KeyGroups::new(ops), stores)
}

/// [`check_stores_ops`] over keys already grouped (shared with the other
/// checkers).
pub(crate) fn check_stores_groups(groups: &KeyGroups<'_>, stores: &[StoreContents]) -> StoreReport {
    let ops = groups.operations();
    let mut report = StoreReport {
        replicas: stores.len(),
        keys_held: stores
            .iter()
            .flat_map(|s| {
                s.keys
                    .iter()
                    .filter(|(_, vs)| !vs.is_empty())
                    .map(|(k, _)| k)
            })
            .collect::<BTreeSet<_>>()
            .len(),
        ..StoreReport::default()
    };
    let done = |i: usize| ops[i].complete_us.unwrap_or(u64::MAX);
    let mut missing: Vec<usize> = Vec::new();
    for key_group in groups.groups() {
        let (key, group) = (key_group.key, &key_group.ops);
        let acked: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&i| ops[i].kind == OpKind::Write && ops[i].is_ok())
            .collect();
        if acked.is_empty() {
            continue;
        }
        report.acknowledged_writes += acked.len();
        // Every value of the key any replica holds.
        let held_values: BTreeSet<&str> = stores
            .iter()
            .filter_map(|s| s.keys.get(key))
            .flat_map(|vs| vs.iter().map(|v| v.value.as_str()))
            .collect();
        let vouchers = vouching_index(ops, group, groups.sent(key_group));
        let latest_held_invoke = acked
            .iter()
            .any(|&w| ops[w].written_dot().is_none())
            .then(|| {
                let by_value = latest_invocations(ops, group);
                held_values
                    .iter()
                    .filter_map(|v| by_value.get(v).copied())
                    .max()
            })
            .flatten();
        for &w in &acked {
            if ops[w].value.is_some_and(|v| held_values.contains(v)) {
                report.held += 1;
                continue;
            }
            let vouched = match ops[w].written_dot() {
                Some(dot) => vouchers.covered_by_other(dot, w),
                None => latest_held_invoke.is_some_and(|latest| latest > done(w)),
            };
            if vouched {
                report.superseded += 1;
                continue;
            }
            report.missing_writes += 1;
            missing.push(w);
        }
    }
    missing.sort_by_key(|&w| (done(w), ops[w].id));
    report.missing = missing
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|w| {
            let key = ops[w].key;
            let mut replicas_with_key: Vec<u32> = stores
                .iter()
                .filter(|s| s.keys.get(key).is_some_and(|vs| !vs.is_empty()))
                .map(|s| s.node)
                .collect();
            replicas_with_key.sort_unstable();
            replicas_with_key.dedup();
            let held: BTreeSet<String> = stores
                .iter()
                .filter_map(|s| s.keys.get(key))
                .flat_map(|vs| vs.iter().map(show))
                .collect();
            MissingWrite {
                write: OpSummary::of(&ops[w]),
                replicas_with_key,
                held: held.into_iter().take(MAX_HELD_SHOWN).collect(),
            }
        })
        .collect();
    report
}
