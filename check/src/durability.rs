//! The durability checker: no acknowledged write is lost, and no two
//! acknowledged writes share a dot.
//!
//! The checker judges what clients did (the values they wrote, the contexts
//! they *sent*, the outcomes they got), not what the system says about its
//! own versions: a system whose version logic is wrong must not be able to
//! explain its own losses away.
//!
//! **Lost writes.** For each key, take its last successful final read
//! (`final: true`, issued after every fault healed). An acknowledged write
//! `w` of that key is *lost* when
//!
//! - its value is absent from that final read (written values are unique
//!   per key, so absence is meaningful), and
//! - no other write `x` of the key that did not certainly fail (outcome ok,
//!   timeout, or never completed) sent, in its invoke's `context`, a clock
//!   covering the dot `w`'s acknowledgement reported — as far as `x`'s own
//!   client had been answered with that dot before invoking `x`
//!   ([`SentContexts`]).
//!
//! Such an `x` is a client saying "I have seen `w`, replace it": that is
//! the only way `w` may legitimately disappear. Timed-out and unfinished
//! superseders count because they may have applied: a timed-out write
//! that landed and replaced `w` is correct behaviour, and a checker that
//! ignored it would report a loss the system did not commit (unsound).
//! The price is that a superseder which in fact never applied still
//! vouches for `w`; that is the usual indeterminacy, resolved in the
//! system's favour.
//!
//! This deliberately does not ask whether the final read's versions (their
//! echoed contexts) cover `w`: a system that reuses dots, or that drops a
//! version because a newer one *claims* its dot, would vouch for itself.
//!
//! Writes recorded without dots fall back to register order: the final
//! read must return `w`'s value or a value whose write was invoked after
//! `w` was acknowledged.
//!
//! **Reused dots.** Two acknowledged writes of the same key (different
//! operations) whose acknowledgements report the same dot: one of them is
//! unreachable by dot, and whichever a replica holds silently stands for
//! both. Judged on every key, with or without a final read.
//!
//! **Misreported writes.** An acknowledged write whose acknowledgement
//! reports a version that is not the write its client made: another value
//! than the one sent, or a causal context that leaves out part of the
//! context sent (so the version would not supersede what its client had
//! seen, and those versions come back as siblings). Judged on every key,
//! with or without a final read, and at the acknowledgement itself: a
//! coordinator that stores another value than it was sent is caught on a
//! write no read ever returns. Where the history does not record what the
//! acknowledgement reported (a value, a context), that part is not judged.
//!
//! Keys with acknowledged writes but no successful final read cannot be
//! judged for loss; they are counted (`unverified_*`) but are not
//! violations.
use super::common::{
    ContextCover, FxHashMap, KeyGroups, OpSummary, SentContexts, MAX_EXAMPLES, MAX_PRINTED,
};
use quorumlog_history::{Dot, History, OpKind, OperationRef};
use serde::Serialize;
use std::fmt;

/// An acknowledged write missing from the final read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostWrite {
    pub write: OpSummary,
    pub final_read: OpSummary,
}

/// Two acknowledged writes of one key reported with the same dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReusedDot {
    pub dot: String,
    /// The first write acknowledged with that dot.
    pub first: OpSummary,
    /// A later one.
    pub again: OpSummary,
}

/// An acknowledged write whose acknowledgement reports a version other
/// than the write its client made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MisreportedWrite {
    pub write: OpSummary,
    /// What the acknowledgement got wrong, for a person.
    pub problem: String,
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
    /// Acknowledged writes whose dot an earlier acknowledged write of the
    /// same key already reported (each such write counts once).
    pub reused_dots: usize,
    /// The first of them, in acknowledgement order.
    pub reused_examples: Vec<ReusedDot>,
    /// Acknowledged writes whose acknowledgement reports another value
    /// than the one sent, or a context that leaves out part of the one
    /// sent.
    pub misreported_writes: usize,
    /// The first of them, in acknowledgement order.
    pub misreported_examples: Vec<MisreportedWrite>,
    /// Keys with acknowledged writes but no successful final read.
    pub unverified_keys: usize,
    /// Acknowledged writes of those keys.
    pub unverified_writes: usize,
    /// Some of those keys (sorted).
    pub unverified_examples: Vec<String>,
}

impl DurabilityReport {
    pub fn is_ok(&self) -> bool {
        self.keeps_acknowledged_writes() && self.misreported_writes == 0
    }

    /// No acknowledged write lost, and no dot claimed by two: what
    /// durability promises. A misreported write is another matter (an
    /// answer that contradicts its request), whether or not the write
    /// had to last.
    pub fn keeps_acknowledged_writes(&self) -> bool {
        self.lost_updates == 0 && self.reused_dots == 0
    }
}

impl fmt::Display for DurabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "durability: {} acknowledged writes over {} keys against their final read: ",
            self.acknowledged_writes, self.keys_checked
        )?;
        if self.lost_updates == 0 {
            write!(f, "none lost")?;
        } else {
            write!(f, "{} lost", self.lost_updates)?;
        }
        if self.reused_dots > 0 {
            write!(
                f,
                "; {} acknowledged writes reuse the dot of another",
                self.reused_dots
            )?;
        }
        if self.misreported_writes > 0 {
            write!(
                f,
                "; {} acknowledged writes reported as another write than the one sent",
                self.misreported_writes
            )?;
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
        for (i, reused) in self.reused_examples.iter().take(MAX_PRINTED).enumerate() {
            writeln!(
                f,
                "  reused dot {}: {} acknowledged for two different writes",
                i + 1,
                reused.dot
            )?;
            writeln!(f, "      first: {}", reused.first)?;
            writeln!(f, "      again: {}", reused.again)?;
        }
        if self.reused_dots > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more reused dots",
                self.reused_dots - MAX_PRINTED
            )?;
        }
        for (i, misreported) in self
            .misreported_examples
            .iter()
            .take(MAX_PRINTED)
            .enumerate()
        {
            writeln!(f, "  misreported write {}: {}", i + 1, misreported.write)?;
            writeln!(f, "      {}", misreported.problem)?;
        }
        if self.misreported_writes > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more misreported writes",
                self.misreported_writes - MAX_PRINTED
            )?;
        }
        Ok(())
    }
}

/// What an acknowledged write's acknowledgement says that contradicts
/// the write its client sent, if anything: judged from the history alone
/// (the value and context the client sent, the version the
/// acknowledgement reported).
fn misreport(write: &OperationRef<'_>) -> Option<String> {
    let reported = write.version?;
    if let Some(sent) = write.value {
        if reported.value != sent {
            return Some(format!(
                "the acknowledgement reports the value {:?}, not the value sent",
                clip(&reported.value)
            ));
        }
    }
    if let (Some(sent), Some(reported_context)) = (write.context, reported.context.as_ref()) {
        if !reported_context.descends_from(sent) {
            return Some(format!(
                "the acknowledgement reports the context {reported_context}, which leaves out part of the context sent, {sent}: the write would not supersede what its client had seen"
            ));
        }
    }
    // An overwrite supersedes every sibling its coordinator held, so its
    // answer lists its own version alone (an answer that lists none was
    // not recorded, and says nothing).
    if write.overwrite {
        let others = write
            .values
            .iter()
            .filter(|v| v.dot != reported.dot || v.value != reported.value)
            .count();
        if others > 0 {
            return Some(format!(
                "an overwrite acknowledged beside {others} other sibling(s): it did not supersede what its coordinator held"
            ));
        }
    }
    None
}

/// A value as a report shows it: the first few dozen characters.
fn clip(value: &str) -> String {
    const SHOWN: usize = 40;
    match value.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_string(),
    }
}

pub fn check_durability(history: &History) -> DurabilityReport {
    check_durability_ops(&history.operation_refs())
}

/// The writes of a key that may vouch for a dot: every mutation that did
/// not certainly fail, by the context its client sent, cut back to what
/// that client could have seen ([`SentContexts`]).
pub(crate) fn vouching_index(
    ops: &[OperationRef<'_>],
    group: &[usize],
    sent: &SentContexts<'_>,
) -> ContextCover {
    let mut cover = ContextCover::default();
    for &i in group {
        let op = &ops[i];
        if !op.kind.is_mutation() || op.is_failed() {
            continue;
        }
        if let Some(context) = sent.of(i) {
            cover.add(i, context);
        }
    }
    cover
}

/// For undotted writes (register order): value -> latest invocation of a
/// write of it that did not certainly fail.
pub(crate) fn latest_invocations<'a>(
    ops: &[OperationRef<'a>],
    group: &[usize],
) -> FxHashMap<&'a str, u64> {
    let mut by_value: FxHashMap<&'a str, u64> = FxHashMap::default();
    for &i in group {
        if ops[i].kind == OpKind::Write && !ops[i].is_failed() {
            if let Some(v) = ops[i].value {
                let e = by_value.entry(v).or_insert(0);
                *e = (*e).max(ops[i].invoke_us);
            }
        }
    }
    by_value
}

pub(crate) fn check_durability_ops(ops: &[OperationRef<'_>]) -> DurabilityReport {
    check_durability_groups(&KeyGroups::new(ops))
}

/// [`check_durability_ops`] over keys already grouped (shared with the
/// other checkers).
pub(crate) fn check_durability_groups(groups: &KeyGroups<'_>) -> DurabilityReport {
    let ops = groups.operations();
    let mut report = DurabilityReport::default();
    let mut lost: Vec<(usize, usize)> = Vec::new();
    let mut reused: Vec<(Dot, usize, usize)> = Vec::new();
    let mut misreported: Vec<(usize, String)> = Vec::new();
    let done = |i: usize| ops[i].complete_us.unwrap_or(u64::MAX);
    for key_group in groups.groups() {
        let (key, group) = (key_group.key, &key_group.ops);
        let mut acked: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&i| ops[i].kind == OpKind::Write && ops[i].is_ok())
            .collect();
        acked.sort_by_key(|&w| (done(w), ops[w].id));
        // Reused dots and misreported writes: every key, final read or not.
        let mut first_with: FxHashMap<Dot, usize> = FxHashMap::default();
        for &w in &acked {
            if let Some(problem) = misreport(&ops[w]) {
                report.misreported_writes += 1;
                misreported.push((w, problem));
            }
            if let Some(dot) = ops[w].written_dot() {
                match first_with.get(&dot) {
                    Some(&first) => {
                        report.reused_dots += 1;
                        reused.push((dot, first, w));
                    }
                    None => {
                        first_with.insert(dot, w);
                    }
                }
            }
        }
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
        let present = |w: usize| {
            let value = ops[w].value.unwrap_or_default();
            returned.iter().any(|v| v.value == value)
        };
        let missing: Vec<usize> = acked.iter().copied().filter(|&w| !present(w)).collect();
        if missing.is_empty() {
            continue;
        }
        let vouchers = vouching_index(ops, group, groups.sent(key_group));
        // For undotted writes: the latest invocation among the writes of
        // the returned values.
        let mut latest_writer_invoke: Option<u64> = None;
        if missing.iter().any(|&w| ops[w].written_dot().is_none()) {
            let by_value = latest_invocations(ops, group);
            latest_writer_invoke = returned
                .iter()
                .filter_map(|v| by_value.get(v.value.as_str()).copied())
                .max();
        }
        for w in missing {
            let vouched = match ops[w].written_dot() {
                Some(dot) => vouchers.covered_by_other(dot, w),
                None => latest_writer_invoke.is_some_and(|latest| latest > done(w)),
            };
            if !vouched {
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
    reused.sort_by_key(|&(_, _, w)| (done(w), ops[w].id));
    report.reused_examples = reused
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(dot, first, again)| ReusedDot {
            dot: dot.to_string(),
            first: OpSummary::of(&ops[first]),
            again: OpSummary::of(&ops[again]),
        })
        .collect();
    misreported.sort_by_key(|&(w, _)| (done(w), ops[w].id));
    report.misreported_examples = misreported
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(w, problem)| MisreportedWrite {
            write: OpSummary::of(&ops[w]),
            problem,
        })
        .collect();
    report
}
