//! The staleness checker: the regular-register property a quorum system
//! with W+R>N promises.
//!
//! For every successful read `r` of key `k`:
//!
//! 1. **No stale read.** Every write to `k` acknowledged before `r` began
//!    (`complete_us < r.invoke_us`) is covered by some version `r` returned:
//!    the version is that write (same dot) or its context covers the
//!    write's dot. A write that timed out or never completed is
//!    indeterminate and never required. Writes recorded without a dot fall
//!    back to register order: `r` must return that value or a value whose
//!    write was invoked after it was acknowledged.
//! 2. **No phantom.** Every returned version was really written to `k`, by
//!    a write that did not fail and was invoked before `r` returned.
//! 3. **Siblings are concurrent.** No returned version covers another.
//!
//! A stale read is measured by **k-staleness** (how many acknowledged
//! versions it missed) and **t-visibility** (how long, in µs, the oldest
//! missed write had been acknowledged when the read began).
//!
//! Only `write` operations are judged (histories with `cas`/`append` on a
//! key are left to the linearizability checker; such keys are counted in
//! `keys_skipped`).
use super::common::{
    group_by_key, Coverage, Distribution, FxHashMap, OpSummary, MAX_EXAMPLES, MAX_PRINTED,
};
use crate::history::{History, ObservedVersion, OpKind, OperationRef};
use quorumlog_core::{Dot, NodeId};
use serde::Serialize;
use std::fmt;

/// How many missed writes a stale-read example lists.
const MAX_MISSED_SHOWN: usize = 5;

/// A read that missed acknowledged writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleRead {
    pub read: OpSummary,
    /// Acknowledged writes the read missed.
    pub k: usize,
    /// How long (µs) the oldest missed write had been acknowledged when the
    /// read began.
    pub t_visibility_us: u64,
    /// The missed writes, oldest acknowledgement first (at most five).
    pub missed: Vec<OpSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhantomKind {
    /// No write of this key wrote this version.
    NeverWritten,
    /// Only writes that certainly failed wrote it.
    WrittenByFailedWrite,
    /// Its write was invoked after the read returned.
    WrittenAfterReadReturned,
}

impl fmt::Display for PhantomKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PhantomKind::NeverWritten => "was never written to this key",
            PhantomKind::WrittenByFailedWrite => "was written only by a write that failed",
            PhantomKind::WrittenAfterReadReturned => {
                "was written only by a write invoked after the read returned"
            }
        })
    }
}

/// A read that returned a value it could not have seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhantomRead {
    pub read: OpSummary,
    /// The version, `value@dot`.
    pub version: String,
    pub kind: PhantomKind,
    /// The writes of that value, if any.
    pub writers: Vec<OpSummary>,
}

/// A read whose siblings were not pairwise concurrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiblingViolation {
    pub read: OpSummary,
    /// The covered version, `value@dot`.
    pub covered: String,
    /// The version that covers it (or the same dot twice).
    pub covering: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StalenessReport {
    /// Successful reads judged.
    pub reads_checked: usize,
    /// Acknowledged writes.
    pub acknowledged_writes: usize,
    /// Keys with cas/append operations, not judged here.
    pub keys_skipped: usize,
    pub stale_reads: usize,
    pub phantom_reads: usize,
    pub sibling_violations: usize,
    /// k-staleness of the stale reads.
    pub k_staleness: Distribution,
    /// t-visibility (µs) of the stale reads.
    pub t_visibility_us: Distribution,
    /// The first stale reads, in time order.
    pub stale_examples: Vec<StaleRead>,
    pub phantom_examples: Vec<PhantomRead>,
    pub sibling_examples: Vec<SiblingViolation>,
}

impl StalenessReport {
    pub fn is_ok(&self) -> bool {
        self.stale_reads == 0 && self.phantom_reads == 0 && self.sibling_violations == 0
    }
}

impl fmt::Display for StalenessReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "staleness: {} reads against {} acknowledged writes: ",
            self.reads_checked, self.acknowledged_writes
        )?;
        if self.is_ok() {
            write!(
                f,
                "no stale reads, every value really written, siblings concurrent"
            )?;
        } else {
            write!(
                f,
                "{} stale reads, {} phantom values, {} sibling violations",
                self.stale_reads, self.phantom_reads, self.sibling_violations
            )?;
        }
        if self.keys_skipped > 0 {
            write!(
                f,
                " ({} keys with cas/append not judged)",
                self.keys_skipped
            )?;
        }
        writeln!(f)?;
        if self.stale_reads > 0 {
            writeln!(f, "  k-staleness (versions behind): {}", self.k_staleness)?;
            writeln!(
                f,
                "  t-visibility (us after ack):   {}",
                self.t_visibility_us
            )?;
            for (i, s) in self.stale_examples.iter().take(MAX_PRINTED).enumerate() {
                writeln!(
                    f,
                    "  stale read {}: {} missed {} acknowledged write(s), oldest acknowledged {} us before it began",
                    i + 1,
                    s.read,
                    s.k,
                    s.t_visibility_us
                )?;
                for w in &s.missed {
                    writeln!(f, "      missed: {w}")?;
                }
            }
            if self.stale_reads > MAX_PRINTED {
                writeln!(
                    f,
                    "  ... and {} more stale reads",
                    self.stale_reads - MAX_PRINTED
                )?;
            }
        }
        for p in self.phantom_examples.iter().take(MAX_PRINTED) {
            writeln!(
                f,
                "  phantom: {} returned {} which {}",
                p.read, p.version, p.kind
            )?;
            for w in &p.writers {
                writeln!(f, "      writer: {w}")?;
            }
        }
        if self.phantom_reads > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more phantom values",
                self.phantom_reads - MAX_PRINTED
            )?;
        }
        for s in self.sibling_examples.iter().take(MAX_PRINTED) {
            writeln!(
                f,
                "  siblings not concurrent: {} returned {} and {} which covers it",
                s.read, s.covered, s.covering
            )?;
        }
        if self.sibling_violations > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more sibling violations",
                self.sibling_violations - MAX_PRINTED
            )?;
        }
        Ok(())
    }
}

fn check_key(ops: &[OperationRef<'_>], group: &[usize], part: &mut Partial) {
    if group
        .iter()
        .any(|&i| matches!(ops[i].kind, OpKind::Cas | OpKind::Append))
    {
        part.report.keys_skipped += 1;
        return;
    }
    // Index the key's writes by dot and by value.
    let mut by_dot: FxHashMap<Dot, usize> = FxHashMap::default();
    // Built on first need (a returned version whose dot no
    // acknowledged write has): value -> writes of it.
    let mut by_value: Option<FxHashMap<&str, Vec<usize>>> = None;
    let mut writes: Vec<usize> = Vec::new();
    let mut acked: Vec<usize> = Vec::new();
    let mut reads: Vec<usize> = Vec::new();
    for &i in group {
        let op = &ops[i];
        match op.kind {
            OpKind::Write => {
                if let Some(dot) = op.written_dot() {
                    by_dot.insert(dot, i);
                }
                writes.push(i);
                if op.is_ok() {
                    acked.push(i);
                }
            }
            OpKind::Read if op.is_ok() => reads.push(i),
            _ => {}
        }
    }
    part.report.acknowledged_writes += acked.len();
    part.report.reads_checked += reads.len();
    let done = |i: usize| ops[i].complete_us.unwrap_or(u64::MAX);
    acked.sort_by_key(|&i| (done(i), ops[i].id));
    reads.sort_by_key(|&i| (ops[i].invoke_us, ops[i].id));

    // Acknowledged so far: dotted writes per node by counter; the rest
    // in acknowledgement order.
    let mut dotted: Vec<(NodeId, Vec<(u64, usize)>)> = Vec::new();
    let mut undotted: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut cov = Coverage::default();
    for &r in &reads {
        let read = &ops[r];
        while next < acked.len() && done(acked[next]) < read.invoke_us {
            let w = acked[next];
            match ops[w].written_dot() {
                Some(dot) => {
                    let at = match dotted.iter().position(|(n, _)| *n == dot.node) {
                        Some(at) => at,
                        None => {
                            dotted.push((dot.node, Vec::new()));
                            dotted.len() - 1
                        }
                    };
                    let counters = &mut dotted[at].1;
                    let pos = counters.partition_point(|&(c, _)| c <= dot.counter);
                    counters.insert(pos, (dot.counter, w));
                }
                None => undotted.push(w),
            }
            next += 1;
        }
        let read_done = done(r);
        // Phantoms: who wrote each returned version?
        let mut latest_writer_invoke = 0u64;
        for v in read.values {
            let single: [usize; 1];
            let writers: &[usize] = match v.dot.and_then(|d| by_dot.get(&d)) {
                Some(&w) if ops[w].value == Some(v.value.as_str()) => {
                    single = [w];
                    &single
                }
                _ => by_value
                    .get_or_insert_with(|| {
                        let mut map: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
                        for &w in &writes {
                            if let Some(value) = ops[w].value {
                                map.entry(value).or_default().push(w);
                            }
                        }
                        map
                    })
                    .get(v.value.as_str())
                    .map_or(&[], Vec::as_slice),
            };
            let valid = writers
                .iter()
                .filter(|&&w| !ops[w].is_failed() && ops[w].invoke_us <= read_done);
            match valid.map(|&w| ops[w].invoke_us).max() {
                Some(invoked) => latest_writer_invoke = latest_writer_invoke.max(invoked),
                None => {
                    let kind = if writers.is_empty() {
                        PhantomKind::NeverWritten
                    } else if writers.iter().all(|&w| ops[w].is_failed()) {
                        PhantomKind::WrittenByFailedWrite
                    } else {
                        PhantomKind::WrittenAfterReadReturned
                    };
                    part.report.phantom_reads += 1;
                    {
                        part.phantoms.push((r, show(v), kind, writers.to_vec()));
                    }
                }
            }
        }
        // Siblings must be pairwise concurrent.
        let pairs = if read.values.len() > 1 {
            read.values
        } else {
            &[]
        };
        for (a, va) in pairs.iter().enumerate() {
            for vb in &read.values[a + 1..] {
                let (covered, covering) = match (va.dot, vb.dot) {
                    (Some(_), Some(_)) if vb.covers(va) => (va, vb),
                    (Some(_), Some(_)) if va.covers(vb) => (vb, va),
                    _ => continue,
                };
                part.report.sibling_violations += 1;
                {
                    part.siblings.push((r, show(covered), show(covering)));
                }
            }
        }
        // Stale: acknowledged writes no returned version covers.
        cov.fill(read.values);
        let mut missed: Vec<usize> = Vec::new();
        for (node, counters) in &dotted {
            let node = *node;
            let seen = cov.context_of(node);
            let from = counters.partition_point(|&(c, _)| c <= seen);
            for &(counter, w) in &counters[from..] {
                if !cov.has_dot(Dot { node, counter }) {
                    missed.push(w);
                }
            }
        }
        if !undotted.is_empty() {
            // Register order: covered by the same value or by a value
            // whose write was invoked after this one was acknowledged.
            let from = undotted.partition_point(|&w| done(w) < latest_writer_invoke);
            for &w in &undotted[from..] {
                let value = ops[w].value.unwrap_or_default();
                if !read.values.iter().any(|v| v.value == value) {
                    missed.push(w);
                }
            }
        }
        if !missed.is_empty() {
            missed.sort_by_key(|&w| (done(w), ops[w].id));
            let t = read.invoke_us.saturating_sub(done(missed[0]));
            part.report.stale_reads += 1;
            part.ks.push(missed.len() as u64);
            part.ts.push(t);
            let k = missed.len();
            missed.truncate(MAX_MISSED_SHOWN);
            part.stale.push(StaleFound {
                read: r,
                k,
                t,
                missed,
            });
        }
    }
    let order = |i: usize| (ops[i].invoke_us, ops[i].id);
    keep_earliest(&mut part.stale, |s| order(s.read));
    keep_earliest(&mut part.phantoms, |p| order(p.0));
    keep_earliest(&mut part.siblings, |s| order(s.0));
}

pub fn check_staleness(history: &History) -> StalenessReport {
    check_staleness_ops(&history.operation_refs())
}

fn show(v: &ObservedVersion) -> String {
    match v.dot {
        Some(dot) => format!("{}@{dot}", v.value),
        None => v.value.clone(),
    }
}

struct StaleFound {
    read: usize,
    k: usize,
    t: u64,
    missed: Vec<usize>,
}

/// What one thread found over a run of keys. Examples are trimmed to the
/// earliest `MAX_EXAMPLES` as they accumulate, so the merged result does not
/// depend on how keys were split between threads.
#[derive(Default)]
struct Partial {
    report: StalenessReport,
    stale: Vec<StaleFound>,
    phantoms: Vec<(usize, String, PhantomKind, Vec<usize>)>,
    siblings: Vec<(usize, String, String)>,
    ks: Vec<u64>,
    ts: Vec<u64>,
}

fn keep_earliest<T>(items: &mut Vec<T>, order: impl Fn(&T) -> (u64, u64)) {
    if items.len() > 2 * MAX_EXAMPLES {
        items.sort_by_key(|t| order(t));
        items.truncate(MAX_EXAMPLES);
    }
}

/// Below this many operations one thread does it all.
const PARALLEL_THRESHOLD: usize = 100_000;

pub(crate) fn check_staleness_ops(ops: &[OperationRef<'_>]) -> StalenessReport {
    let threads = if ops.len() < PARALLEL_THRESHOLD {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
    };
    check_staleness_threads(ops, threads)
}

/// Keys are split into `threads` runs checked in parallel; the report is
/// the same for any number of threads.
fn check_staleness_threads(ops: &[OperationRef<'_>], threads: usize) -> StalenessReport {
    let groups = group_by_key(ops);
    let threads = threads.max(1);
    let chunk = groups.len().div_ceil(threads).max(1);
    let run = |groups: &[(&str, Vec<usize>)]| {
        let mut part = Partial::default();
        for (_key, group) in groups {
            check_key(ops, group, &mut part);
        }
        part
    };
    let parts: Vec<Partial> = if threads == 1 {
        vec![run(&groups)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .chunks(chunk)
                .map(|c| scope.spawn(move || run(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };
    let mut report = StalenessReport::default();
    let mut stale: Vec<StaleFound> = Vec::new();
    let mut phantoms: Vec<(usize, String, PhantomKind, Vec<usize>)> = Vec::new();
    let mut siblings: Vec<(usize, String, String)> = Vec::new();
    let mut ks: Vec<u64> = Vec::new();
    let mut ts: Vec<u64> = Vec::new();
    for part in parts {
        report.reads_checked += part.report.reads_checked;
        report.acknowledged_writes += part.report.acknowledged_writes;
        report.keys_skipped += part.report.keys_skipped;
        report.stale_reads += part.report.stale_reads;
        report.phantom_reads += part.report.phantom_reads;
        report.sibling_violations += part.report.sibling_violations;
        stale.extend(part.stale);
        phantoms.extend(part.phantoms);
        siblings.extend(part.siblings);
        ks.extend(part.ks);
        ts.extend(part.ts);
    }

    report.k_staleness = Distribution::from_values(ks);
    report.t_visibility_us = Distribution::from_values(ts);
    let order = |i: usize| (ops[i].invoke_us, ops[i].id);
    stale.sort_by_key(|s| order(s.read));
    report.stale_examples = stale
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|s| StaleRead {
            read: OpSummary::of(&ops[s.read]),
            k: s.k,
            t_visibility_us: s.t,
            missed: s.missed.iter().map(|&w| OpSummary::of(&ops[w])).collect(),
        })
        .collect();
    phantoms.sort_by_key(|p| order(p.0));
    report.phantom_examples = phantoms
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(r, version, kind, writers)| PhantomRead {
            read: OpSummary::of(&ops[r]),
            version,
            kind,
            writers: writers
                .iter()
                .take(MAX_MISSED_SHOWN)
                .map(|&w| OpSummary::of(&ops[w]))
                .collect(),
        })
        .collect();
    siblings.sort_by_key(|s| order(s.0));
    report.sibling_examples = siblings
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(r, covered, covering)| SiblingViolation {
            read: OpSummary::of(&ops[r]),
            covered,
            covering,
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::generate::{generate, GenConfig};
    use crate::history::Event;

    #[test]
    fn the_report_does_not_depend_on_threads() {
        let mut history = generate(&GenConfig::new(9, 3_000, 7, 6));
        // Empty every third successful read: plenty of stale reads.
        let mut n = 0;
        for event in &mut history.events {
            if let Event::Complete { values, .. } = event {
                if !values.is_empty() {
                    n += 1;
                    if n % 3 == 0 {
                        values.clear();
                    }
                }
            }
        }
        let ops = history.operation_refs();
        let one = check_staleness_threads(&ops, 1);
        assert!(one.stale_reads > 2 * MAX_EXAMPLES, "{}", one.stale_reads);
        for threads in [2, 3, 5] {
            assert_eq!(check_staleness_threads(&ops, threads), one);
        }
    }
}
