//! The durability checker: no acknowledged write is lost.
//!
//! **Rule.** For each key, take its last successful final read (`final:
//! true`, issued after every fault healed). An acknowledged write `w` of
//! that key is *lost* unless some version the final read returned covers
//! it: the version is `w` itself (same dot) or its causal context covers
//! `w`'s dot.
//!
//! "Superseded by a write whose context covered it" needs no separate
//! case: whatever superseded `w` carried `w`'s dot in its context, and so
//! does everything that later superseded *that* (contexts only grow along
//! read-then-write chains, since a read hands out the join of its siblings'
//! clocks). A superseding write that is itself missing from the final read
//! (even an acknowledged one, or one that timed out and silently applied)
//! therefore cannot vouch for `w`: either the final read covers `w` or the
//! supersession chain was lost too. So the rule is simply: *acknowledged
//! implies covered by the final read*.
//!
//! Writes recorded without dots fall back to register order: the final
//! read must return `w`'s value or a value whose write was invoked after
//! `w` was acknowledged.
//!
//! Keys with acknowledged writes but no successful final read cannot be
//! judged; they are counted (`unverified_*`) but are not violations.
use super::common::{group_by_key, Coverage, FxHashMap, OpSummary, MAX_EXAMPLES, MAX_PRINTED};
use crate::history::{History, OpKind, OperationRef};
use serde::Serialize;
use std::fmt;

/// An acknowledged write missing from the final read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    pub write: OpSummary,
    pub final_read: OpSummary,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DurabilityReport {
    /// Keys with a successful final read.
    pub keys_checked: usize,
    /// Acknowledged writes judged against a final read.
    pub acknowledged_writes: usize,
    pub lost_updates: usize,
    /// The first lost writes, in acknowledgement order.
    pub lost: Vec<LostWrite>,
    /// Keys with acknowledged writes but no successful final read.
    pub unverified_keys: usize,
    /// Acknowledged writes of those keys.
    pub unverified_writes: usize,
    /// Some of those keys (sorted).
    pub unverified_examples: Vec<String>,
}

impl DurabilityReport {
    pub fn is_ok(&self) -> bool {
        self.lost_updates == 0
    }
}

impl fmt::Display for DurabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "durability: {} acknowledged writes over {} keys against their final read: ",
            self.acknowledged_writes, self.keys_checked
        )?;
        if self.is_ok() {
            write!(f, "none lost")?;
        } else {
            write!(f, "{} lost", self.lost_updates)?;
        }
        if self.unverified_keys > 0 {
            write!(
                f,
                " ({} acknowledged writes on {} keys without a successful final read not judged, e.g. {})",
                self.unverified_writes,
                self.unverified_keys,
                self.unverified_examples.iter().take(3).map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ")
            )?;
        }
        writeln!(f)?;
        for (i, lost) in self.lost.iter().take(MAX_PRINTED).enumerate() {
            writeln!(f, "  lost write {}: {}", i + 1, lost.write)?;
            writeln!(f, "      final read: {}", lost.final_read)?;
        }
        if self.lost_updates > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more lost writes",
                self.lost_updates - MAX_PRINTED
            )?;
        }
        Ok(())
    }
}

pub fn check_durability(history: &History) -> DurabilityReport {
    check_durability_ops(&history.operation_refs())
}

pub(crate) fn check_durability_ops(ops: &[OperationRef<'_>]) -> DurabilityReport {
    let mut report = DurabilityReport::default();
    let mut lost: Vec<(usize, usize)> = Vec::new();
    let done = |i: usize| ops[i].complete_us.unwrap_or(u64::MAX);
    for (key, group) in group_by_key(ops) {
        let acked: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&i| ops[i].kind == OpKind::Write && ops[i].is_ok())
            .collect();
        let last_final = group
            .iter()
            .copied()
            .filter(|&i| ops[i].kind == OpKind::Read && ops[i].is_final && ops[i].is_ok())
            .max_by_key(|&i| (done(i), ops[i].id));
        let Some(fin) = last_final else {
            if !acked.is_empty() {
                report.unverified_keys += 1;
                report.unverified_writes += acked.len();
                if report.unverified_examples.len() < MAX_EXAMPLES {
                    report.unverified_examples.push(key.to_string());
                }
            }
            continue;
        };
        report.keys_checked += 1;
        report.acknowledged_writes += acked.len();
        let returned = ops[fin].values;
        let cov = Coverage::of(returned);
        // For undotted writes: the latest invocation among the writes of
        // the returned values.
        let mut latest_writer_invoke: Option<u64> = None;
        if acked.iter().any(|&w| ops[w].written_dot().is_none()) {
            let mut by_value: FxHashMap<&str, u64> = FxHashMap::default();
            for &i in &group {
                if ops[i].kind == OpKind::Write && !ops[i].is_failed() {
                    if let Some(v) = ops[i].value {
                        let e = by_value.entry(v).or_insert(0);
                        *e = (*e).max(ops[i].invoke_us);
                    }
                }
            }
            latest_writer_invoke = returned
                .iter()
                .filter_map(|v| by_value.get(v.value.as_str()).copied())
                .max();
        }
        for &w in &acked {
            let covered = match ops[w].written_dot() {
                Some(dot) => cov.covers(dot),
                None => {
                    let value = ops[w].value.unwrap_or_default();
                    returned.iter().any(|v| v.value == value)
                        || latest_writer_invoke.is_some_and(|latest| latest > done(w))
                }
            };
            if !covered {
                report.lost_updates += 1;
                lost.push((w, fin));
            }
        }
    }
    lost.sort_by_key(|&(w, _)| (done(w), ops[w].id));
    report.lost = lost
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(w, r)| LostWrite {
            write: OpSummary::of(&ops[w]),
            final_read: OpSummary::of(&ops[r]),
        })
        .collect();
    report
}
