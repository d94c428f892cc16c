//! The staleness checker: the regular-register property a quorum system
//! with W+R>N promises.
//!
//! For every successful read `r` of key `k`:
//!
//! 1. **No stale read.** Every write to `k` acknowledged before `r` began
//!    (`complete_us < r.invoke_us`) is covered by some version `r` returned:
//!    the version is that write (same dot), or its context covers the
//!    write's dot, or it covers (so) a write whose client *sent* a context
//!    covering the write's dot, and so on along such chains (a client may
//!    name a dot it never read; the write it supersedes takes what that
//!    write superseded with it). A write that timed out or never completed is
//!    indeterminate and never required. Writes recorded without a dot fall
//!    back to register order: `r` must return that value or a value whose
//!    write was invoked after it was acknowledged.
//! 2. **No phantom.** Every returned version was really written to `k`, by
//!    a write that did not fail and was invoked before `r` returned.
//! 3. **Siblings are concurrent.** No returned version covers another.
//!    And the context the read hands out covers every version it returned
//!    (the version's dot and what it had seen): the client's next write
//!    sends that context, and must supersede what the client read. A
//!    context that leaves a returned version out would keep that version
//!    alive beside every write made with it, however often the client
//!    resolves the conflict (`outside_context`). The same for a write whose
//!    answer lists the siblings after it with a context. Judged where the
//!    history records the context.
//! 4. **No superseded version comes back.** For every returned version `v`,
//!    with dot `d` (the dot the acknowledgement of `v`'s write reported,
//!    when that write is known and acknowledged; else the dot the read
//!    reported): no acknowledged write `x` of `k`, other than the writer of
//!    `v`, completed before `r` began while its client had *sent* a context
//!    covering `d`. Such an `x` replaced `v` as far as its client was
//!    concerned, so returning `v` is a stale read, whatever the system says
//!    about `x`'s version. This is judged on the contexts clients sent, not
//!    on the versions reads report: a coordinator that stores a write with
//!    an empty context makes the system itself report `x` and `v` as
//!    concurrent siblings, which rules 1 and 3 (on reported versions)
//!    cannot see.
//!
//! A read breaking rule 1 or 4 (or both) counts once in `stale_reads`;
//! every returned superseded version also counts in `superseded_returned`.
//! A stale read is measured by **k-staleness** (how many acknowledged
//! writes it missed or returned a version they superseded) and
//! **t-visibility** (how long, in µs, the oldest of those had been
//! acknowledged when the read began).
//!
//! Only `write` operations are judged (histories with `cas`/`append` on a
//! key are left to the linearizability checker; such keys are counted in
//! `keys_skipped`).
use super::common::{
    ContextCover, Coverage, Distribution, FxHashMap, KeyGroup, KeyGroups, OpSummary, SentContexts,
    MAX_EXAMPLES, MAX_PRINTED,
};
use quorumlog_history::{Actor, Clock, Dot, History, ObservedVersion, OpKind, OperationRef};
use serde::Serialize;
use std::fmt;

/// How many missed writes a stale-read example lists.
const MAX_MISSED_SHOWN: usize = 5;

/// A read that missed acknowledged writes, or returned a version one of
/// them had superseded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleRead {
    pub read: OpSummary,
    /// Acknowledged writes the read missed or returned a version they
    /// superseded (each write once).
    pub k: usize,
    /// How long (µs) the oldest of those writes had been acknowledged when
    /// the read began.
    pub t_visibility_us: u64,
    /// The missed writes, oldest acknowledgement first (at most five).
    pub missed: Vec<OpSummary>,
    /// Returned versions an earlier acknowledged write had superseded,
    /// `value@dot` (at most five).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
}

/// A read that returned a version an acknowledged write had superseded
/// (by the context its client sent) before the read began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupersededReturn {
    pub read: OpSummary,
    /// The returned version, `value@dot`.
    pub version: String,
    /// The dot judged (the one its write's acknowledgement reported, if
    /// known).
    pub dot: String,
    /// The earliest acknowledged write whose client-sent context covers it.
    pub superseded_by: OpSummary,
    /// That context, as the client sent it.
    pub context: String,
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

/// A version a read (or a write's answer) returned that the context it
/// handed out leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutsideContext {
    pub read: OpSummary,
    /// The version left out, `value@dot`.
    pub version: String,
    /// The context the read handed out.
    pub context: String,
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
    /// Reads that missed an acknowledged write or returned a superseded
    /// version (each read once).
    pub stale_reads: usize,
    /// Returned versions (one per read and version) that an acknowledged
    /// write, completed before the read began, had superseded by its
    /// client-sent context. Their reads are among `stale_reads`.
    pub superseded_returned: usize,
    pub phantom_reads: usize,
    pub sibling_violations: usize,
    /// Returned versions (one per read, or write answer listing siblings,
    /// and version) that the context handed out with them leaves out: a
    /// write sent with it would not supersede them.
    pub outside_context: usize,
    /// k-staleness of the stale reads.
    pub k_staleness: Distribution,
    /// t-visibility (µs) of the stale reads.
    pub t_visibility_us: Distribution,
    /// The first stale reads, in time order.
    pub stale_examples: Vec<StaleRead>,
    /// The first superseded versions returned, in read order.
    pub superseded_examples: Vec<SupersededReturn>,
    pub phantom_examples: Vec<PhantomRead>,
    pub sibling_examples: Vec<SiblingViolation>,
    pub outside_context_examples: Vec<OutsideContext>,
}

impl StalenessReport {
    pub fn is_ok(&self) -> bool {
        self.stale_reads == 0 && self.superseded_returned == 0 && self.reads_are_well_formed()
    }

    /// Every value returned was really written, siblings were concurrent,
    /// and every read's context covered what it returned: what every
    /// level promises, fresh or not.
    pub fn reads_are_well_formed(&self) -> bool {
        self.phantom_reads == 0 && self.sibling_violations == 0 && self.outside_context == 0
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
            write!(f, "{} stale reads", self.stale_reads)?;
            if self.superseded_returned > 0 {
                write!(
                    f,
                    " ({} superseded versions returned)",
                    self.superseded_returned
                )?;
            }
            write!(
                f,
                ", {} phantom values, {} sibling violations",
                self.phantom_reads, self.sibling_violations
            )?;
            if self.outside_context > 0 {
                write!(
                    f,
                    ", {} returned versions outside the context handed out with them",
                    self.outside_context
                )?;
            }
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
                if s.superseded.is_empty() {
                    writeln!(
                        f,
                        "  stale read {}: {} missed {} acknowledged write(s), oldest acknowledged {} us before it began",
                        i + 1,
                        s.read,
                        s.k,
                        s.t_visibility_us
                    )?;
                } else {
                    writeln!(
                        f,
                        "  stale read {}: {} is behind {} acknowledged write(s) (missed {}, returned superseded {}), oldest acknowledged {} us before it began",
                        i + 1,
                        s.read,
                        s.k,
                        s.missed.len(),
                        s.superseded.join(", "),
                        s.t_visibility_us
                    )?;
                }
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
        for s in self.superseded_examples.iter().take(MAX_PRINTED) {
            let acked = s.superseded_by.complete_us.unwrap_or_default();
            writeln!(
                f,
                "  superseded version returned: read op {} returned {}, superseded by op {} (its client sent context {} covering {}) acknowledged at {} us, before the read began at {} us",
                s.read.id, s.version, s.superseded_by.id, s.context, s.dot, acked, s.read.invoke_us
            )?;
            writeln!(f, "      read: {}", s.read)?;
            writeln!(f, "      superseded by: {}", s.superseded_by)?;
        }
        if self.superseded_returned > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more superseded versions returned",
                self.superseded_returned - MAX_PRINTED
            )?;
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
        for o in self.outside_context_examples.iter().take(MAX_PRINTED) {
            writeln!(
                f,
                "  outside the context handed out: {} returned {} but handed out the context {}, which leaves it out: a write sent with it would not supersede it",
                o.read, o.version, o.context
            )?;
        }
        if self.outside_context > MAX_PRINTED {
            writeln!(
                f,
                "  ... and {} more versions outside the context handed out with them",
                self.outside_context - MAX_PRINTED
            )?;
        }
        Ok(())
    }
}

/// The context operation `i` handed out (a read's, or a write's answer
/// that lists the siblings after it) covers every version it returned:
/// each one's dot and what it had seen.
fn judge_context_handed_out(ops: &[OperationRef<'_>], i: usize, part: &mut Partial) {
    let op = &ops[i];
    let Some(context) = op.read_context else {
        return;
    };
    for v in op.values {
        let Some(dot) = v.dot else { continue };
        let past_left_out = v
            .context
            .as_ref()
            .is_some_and(|past| !context.descends_from(past));
        if !context.covers(dot) || past_left_out {
            part.report.outside_context += 1;
            part.outside.push((i, show(v), context.to_string()));
        }
    }
}

fn check_key(
    ops: &[OperationRef<'_>],
    group: &[usize],
    sent: &SentContexts<'_>,
    part: &mut Partial,
) {
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
                    // A write's answer may list the siblings after it,
                    // with the context to supersede them.
                    judge_context_handed_out(ops, i, part);
                }
            }
            OpKind::Read if op.is_ok() => reads.push(i),
            _ => {}
        }
    }
    part.report.acknowledged_writes += acked.len();
    part.report.reads_checked += reads.len();
    // `sent`: what each writer's client could have seen (forged or
    // cross-key contexts cut back), all that may vouch for supersession.
    let done = |i: usize| ops[i].complete_us.unwrap_or(u64::MAX);
    acked.sort_by_key(|&i| (done(i), ops[i].id));
    reads.sort_by_key(|&i| (ops[i].invoke_us, ops[i].id));

    // Rule 4: the contexts the clients of the writes acknowledged so far
    // sent. Built from nothing when no acknowledged write sent a context.
    let any_context = acked
        .iter()
        .any(|&w| sent.of(w).is_some_and(|c| !c.is_empty()));
    let mut cover = ContextCover::default();
    // Built on first need (a read that missed a dotted write).
    let mut chains: Option<Chains> = None;
    // Built on first need: indeterminate writes no read revealed, and the
    // counters of every dot the history knows, per actor.
    let mut hidden: Option<Vec<usize>> = None;
    let mut known_dots: Option<Vec<(Actor, Vec<u64>)>> = None;
    // Built on first need (a returned version whose dot is not its
    // acknowledged writer's): value -> first acknowledged write of it.
    let mut acked_by_value: Option<FxHashMap<&str, usize>> = None;

    // Acknowledged so far: dotted writes per actor by counter; the rest
    // in acknowledgement order.
    let mut dotted: Vec<(Actor, Vec<(u64, usize)>)> = Vec::new();
    let mut undotted: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut cov = Coverage::default();
    for &r in &reads {
        let read = &ops[r];
        while next < acked.len() && done(acked[next]) < read.invoke_us {
            let w = acked[next];
            if let Some(context) = sent.of(w).filter(|_| any_context) {
                cover.add(w, context);
            }
            match ops[w].written_dot() {
                Some(dot) => {
                    let actor = dot.actor();
                    let at = match dotted.iter().position(|(a, _)| *a == actor) {
                        Some(at) => at,
                        None => {
                            dotted.push((actor, Vec::new()));
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
        judge_context_handed_out(ops, r, part);
        // Stale: acknowledged writes no returned version covers.
        cov.fill(read.values);
        let mut missed: Vec<usize> = Vec::new();
        for (actor, counters) in &dotted {
            let actor = *actor;
            let seen = cov.context_of(actor);
            let from = counters.partition_point(|&(c, _)| c <= seen);
            for &(counter, w) in &counters[from..] {
                if !cov.has_dot(Dot::new(actor, counter)) {
                    missed.push(w);
                }
            }
        }
        if !missed.is_empty() && any_context {
            // Excused: superseded along a chain of client-sent contexts
            // that starts at what the read returned (see `Chains`).
            let chains = chains.get_or_insert_with(|| Chains::build(ops, &writes, &reads));
            let reach = chains.reach(ops, sent, read.values, &by_dot, &writes);
            missed.retain(|&w| ops[w].written_dot().is_none_or(|d| !reach.covers(d)));
            // Excused too: superseded by a write whose outcome is unknown
            // and whose version no read ever returned. The chain cannot
            // follow it (its dot is unknown), so whether the read covers it
            // cannot be told; the benefit of the doubt keeps the rule free
            // of false alarms.
            // Only when the read covers some dot no write of the history is
            // known to have (a hidden write may have it): a read that
            // returned nothing, or only known versions, excuses nothing.
            let mut covers_unknown = || {
                let known = known_dots.get_or_insert_with(|| known_counters(ops, &writes, &reads));
                reach.entries().any(|(actor, counter)| {
                    let seen = known
                        .iter()
                        .find(|(a, _)| *a == actor)
                        .map_or(0, |(_, list)| list.partition_point(|&c| c <= counter));
                    (seen as u64) < counter
                })
            };
            if !missed.is_empty() && covers_unknown() {
                let hidden = hidden.get_or_insert_with(|| hidden_writes(ops, &writes, &reads));
                missed.retain(|&w| {
                    let Some(dot) = ops[w].written_dot() else {
                        return true;
                    };
                    !hidden.iter().any(|&x| {
                        x != w
                            && ops[x].invoke_us <= read_done
                            && sent.of(x).is_some_and(|c| c.covers(dot))
                    })
                });
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
        // Superseded: a returned version an earlier acknowledged write's
        // client-sent context covers.
        let mut superseded: Vec<(&ObservedVersion, Dot, usize)> = Vec::new();
        for v in read.values.iter().filter(|_| any_context) {
            // The dot v's write's acknowledgement reported, if that write is
            // known and acknowledged; else the one the read reported.
            let writer = match v.dot.and_then(|d| by_dot.get(&d)) {
                Some(&w) if ops[w].value == Some(v.value.as_str()) && ops[w].is_ok() => Some(w),
                _ => acked_by_value
                    .get_or_insert_with(|| {
                        let mut map: FxHashMap<&str, usize> = FxHashMap::default();
                        for &w in &acked {
                            if let Some(value) = ops[w].value {
                                map.entry(value).or_insert(w);
                            }
                        }
                        map
                    })
                    .get(v.value.as_str())
                    .copied(),
            };
            let Some(dot) = writer.and_then(|w| ops[w].written_dot()).or(v.dot) else {
                continue;
            };
            // Other than v's writer(s): a write of another value.
            let other = |x: usize| ops[x].value != Some(v.value.as_str());
            let candidates = cover.covering(dot);
            let maybe = match candidates {
                [Some(a), _] if other(a) => true,
                [_, Some(b)] if other(b) => true,
                // Both top writers wrote v's value (values repeated): others
                // may cover it too.
                [Some(_), Some(_)] => true,
                _ => false,
            };
            if !maybe {
                continue;
            }
            // Rare (a violation): find the earliest acknowledged superseder.
            let earliest = acked[..next]
                .iter()
                .copied()
                .find(|&x| other(x) && sent.of(x).is_some_and(|c| c.covers(dot)));
            if let Some(x) = earliest {
                superseded.push((v, dot, x));
            }
        }
        if !missed.is_empty() || !superseded.is_empty() {
            // Each write behind the read once, whether missed or superseding.
            let mut behind: Vec<usize> = missed.clone();
            behind.extend(superseded.iter().map(|s| s.2));
            behind.sort_by_key(|&w| (done(w), ops[w].id));
            behind.dedup();
            let t = read.invoke_us.saturating_sub(done(behind[0]));
            part.report.stale_reads += 1;
            part.ks.push(behind.len() as u64);
            part.ts.push(t);
            missed.sort_by_key(|&w| (done(w), ops[w].id));
            missed.truncate(MAX_MISSED_SHOWN);
            part.stale.push(StaleFound {
                read: r,
                k: behind.len(),
                t,
                missed,
                superseded: superseded
                    .iter()
                    .take(MAX_MISSED_SHOWN)
                    .map(|s| show(s.0))
                    .collect(),
            });
            part.report.superseded_returned += superseded.len();
            for (v, dot, x) in superseded {
                part.superseded.push((r, show(v), dot, x));
            }
        }
    }
    let order = |i: usize| (ops[i].invoke_us, ops[i].id);
    keep_earliest(&mut part.stale, |s| order(s.read));
    keep_earliest(&mut part.phantoms, |p| order(p.0));
    keep_earliest(&mut part.superseded, |s| order(s.0));
    keep_earliest(&mut part.siblings, |s| order(s.0));
    keep_earliest(&mut part.outside, |o| order(o.0));
}

/// The writes of one key that may have applied (not certainly failed)
/// whose dot is known (from their acknowledgement, or from a read that
/// returned their value) and whose client sent a context: per actor, by
/// counter.
///
/// Per actor, the distinct counters of every dot the history knows: the
/// writes' acknowledgements and what reads returned (sorted).
fn known_counters(
    ops: &[OperationRef<'_>],
    writes: &[usize],
    reads: &[usize],
) -> Vec<(Actor, Vec<u64>)> {
    let mut dots: Vec<Dot> = writes
        .iter()
        .filter_map(|&w| ops[w].written_dot())
        .chain(
            reads
                .iter()
                .flat_map(|&r| ops[r].values.iter().filter_map(|v| v.dot)),
        )
        .collect();
    dots.sort_unstable();
    dots.dedup();
    let mut known: Vec<(Actor, Vec<u64>)> = Vec::new();
    for dot in dots {
        match known.last_mut() {
            Some((actor, list)) if *actor == dot.actor() => list.push(dot.counter),
            _ => known.push((dot.actor(), vec![dot.counter])),
        }
    }
    known
}

/// Writes that may have applied (timed out, never completed) whose version
/// no read returned: their dots are unknown to the history.
fn hidden_writes(ops: &[OperationRef<'_>], writes: &[usize], reads: &[usize]) -> Vec<usize> {
    let returned: rustc_hash::FxHashSet<&str> = reads
        .iter()
        .flat_map(|&r| ops[r].values.iter().map(|v| v.value.as_str()))
        .collect();
    writes
        .iter()
        .copied()
        .filter(|&w| {
            let op = &ops[w];
            op.is_indeterminate()
                && op.written_dot().is_none()
                && op.value.is_none_or(|v| !returned.contains(v))
        })
        .collect()
}

/// A read need not return a write that was superseded: if `x`'s client
/// sent a context covering `w`, and a returned version's clock (or its
/// writer's client-sent context) covers `x`, the read covers `w` through
/// `x`, even when the returned version's own context does not mention
/// `w`. Contexts normally grow along such chains (a client that read `x`
/// got `x`'s whole clock), but a client may send a context naming a dot it
/// never read (an adversarial or buggy client); the system then rightly
/// replaces `x` and, with it, what `x` replaced. Past the returned
/// versions' own clocks (which rule 1 has always taken as reported), a
/// chain only follows contexts that clients sent, so a system that invents
/// coverage for the versions it stores gains nothing from it.
struct Chains {
    actors: Vec<(Actor, Vec<(u64, usize)>)>,
}

impl Chains {
    fn build(ops: &[OperationRef<'_>], writes: &[usize], reads: &[usize]) -> Self {
        // Dots of writes whose acknowledgement did not report one, as reads
        // revealed them (by value).
        let mut unknown: FxHashMap<&str, usize> = FxHashMap::default();
        for &w in writes {
            let op = &ops[w];
            if !op.is_failed() && op.written_dot().is_none() {
                if let Some(value) = op.value {
                    unknown.insert(value, w);
                }
            }
        }
        let mut revealed: FxHashMap<usize, Dot> = FxHashMap::default();
        if !unknown.is_empty() {
            for &r in reads {
                for v in ops[r].values {
                    if let (Some(dot), Some(&w)) = (v.dot, unknown.get(v.value.as_str())) {
                        revealed.entry(w).or_insert(dot);
                    }
                }
            }
        }
        let mut actors: Vec<(Actor, Vec<(u64, usize)>)> = Vec::new();
        for &w in writes {
            let op = &ops[w];
            if op.is_failed() || op.context.is_none_or(|c| c.is_empty()) {
                // (Cut-back contexts are looked up when absorbed.)
                continue;
            }
            let Some(dot) = op.written_dot().or_else(|| revealed.get(&w).copied()) else {
                continue;
            };
            let actor = dot.actor();
            match actors.iter_mut().find(|(a, _)| *a == actor) {
                Some((_, list)) => list.push((dot.counter, w)),
                None => actors.push((actor, vec![(dot.counter, w)])),
            }
        }
        for (_, list) in &mut actors {
            list.sort_unstable();
        }
        Chains { actors }
    }

    /// Everything `values` cover through chains of client-sent contexts:
    /// their clocks and their writers' contexts, then the contexts of every
    /// write those cover, to a fixpoint.
    fn reach(
        &self,
        ops: &[OperationRef<'_>],
        sent: &SentContexts<'_>,
        values: &[ObservedVersion],
        by_dot: &FxHashMap<Dot, usize>,
        writes: &[usize],
    ) -> Clock {
        let mut reach = Clock::new();
        for v in values {
            if let Some(context) = &v.context {
                reach.join_in_place(context);
            }
            // The writer's own context (by dot, else by value).
            let writer = match v.dot.and_then(|d| by_dot.get(&d)) {
                Some(&w) if ops[w].value == Some(v.value.as_str()) => Some(w),
                _ => writes
                    .iter()
                    .copied()
                    .find(|&w| !ops[w].is_failed() && ops[w].value == Some(v.value.as_str())),
            };
            if let Some(context) = writer.and_then(|w| sent.of(w)) {
                reach.join_in_place(context);
            }
        }
        // Each write is absorbed once: per actor, the covered prefix only
        // grows.
        let mut absorbed = vec![0usize; self.actors.len()];
        loop {
            let mut progress = false;
            for (i, (actor, list)) in self.actors.iter().enumerate() {
                while absorbed[i] < list.len() && list[absorbed[i]].0 <= reach.get(*actor) {
                    if let Some(context) = sent.of(list[absorbed[i]].1) {
                        reach.join_in_place(context);
                    }
                    absorbed[i] += 1;
                    progress = true;
                }
            }
            if !progress {
                return reach;
            }
        }
    }
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
    superseded: Vec<String>,
}

/// What one thread found over a run of keys. Examples are trimmed to the
/// earliest `MAX_EXAMPLES` as they accumulate, so the merged result does not
/// depend on how keys were split between threads.
#[derive(Default)]
struct Partial {
    report: StalenessReport,
    stale: Vec<StaleFound>,
    /// (read, returned version, its dot, superseding write)
    superseded: Vec<(usize, String, Dot, usize)>,
    phantoms: Vec<(usize, String, PhantomKind, Vec<usize>)>,
    siblings: Vec<(usize, String, String)>,
    /// (read, returned version, the read's context)
    outside: Vec<(usize, String, String)>,
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
    check_staleness_groups(&KeyGroups::new(ops))
}

/// [`check_staleness_ops`] over keys already grouped (shared with the
/// other checkers).
pub(crate) fn check_staleness_groups(groups: &KeyGroups<'_>) -> StalenessReport {
    let ops = groups.operations();
    let threads = if ops.len() < PARALLEL_THRESHOLD {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
    };
    check_staleness_threads(groups, threads)
}

/// One run of keys, checked by one thread.
fn check_run<'a>(groups: &KeyGroups<'a>, run: &[KeyGroup<'a>]) -> Partial {
    let mut part = Partial::default();
    for group in run {
        check_key(
            groups.operations(),
            &group.ops,
            groups.sent(group),
            &mut part,
        );
    }
    part
}

/// Keys are split into `threads` runs checked in parallel; the report is
/// the same for any number of threads.
fn check_staleness_threads(groups: &KeyGroups<'_>, threads: usize) -> StalenessReport {
    let ops = groups.operations();
    let threads = threads.max(1);
    let chunk = groups.groups().len().div_ceil(threads).max(1);
    let run = |run| check_run(groups, run);
    let parts: Vec<Partial> = if threads == 1 {
        vec![run(groups.groups())]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .groups()
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
    let mut superseded: Vec<(usize, String, Dot, usize)> = Vec::new();
    let mut phantoms: Vec<(usize, String, PhantomKind, Vec<usize>)> = Vec::new();
    let mut siblings: Vec<(usize, String, String)> = Vec::new();
    let mut outside: Vec<(usize, String, String)> = Vec::new();
    let mut ks: Vec<u64> = Vec::new();
    let mut ts: Vec<u64> = Vec::new();
    for part in parts {
        report.reads_checked += part.report.reads_checked;
        report.acknowledged_writes += part.report.acknowledged_writes;
        report.keys_skipped += part.report.keys_skipped;
        report.stale_reads += part.report.stale_reads;
        report.superseded_returned += part.report.superseded_returned;
        report.phantom_reads += part.report.phantom_reads;
        report.sibling_violations += part.report.sibling_violations;
        report.outside_context += part.report.outside_context;
        stale.extend(part.stale);
        superseded.extend(part.superseded);
        phantoms.extend(part.phantoms);
        siblings.extend(part.siblings);
        outside.extend(part.outside);
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
            superseded: s.superseded,
        })
        .collect();
    // Stable: a read's versions stay in the order it returned them.
    superseded.sort_by_key(|s| order(s.0));
    report.superseded_examples = superseded
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(r, version, dot, x)| SupersededReturn {
            read: OpSummary::of(&ops[r]),
            version,
            dot: dot.to_string(),
            superseded_by: OpSummary::of(&ops[x]),
            context: ops[x]
                .context
                .map_or_else(|| "{}".to_string(), |c| c.to_string()),
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
    outside.sort_by_key(|o| order(o.0));
    report.outside_context_examples = outside
        .into_iter()
        .take(MAX_EXAMPLES)
        .map(|(r, version, context)| OutsideContext {
            read: OpSummary::of(&ops[r]),
            version,
            context,
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{generate, GenConfig};
    use quorumlog_history::{Clock, Event};

    #[test]
    fn the_report_does_not_depend_on_threads() {
        let mut history = generate(&GenConfig::new(9, 24_000, 7, 6));
        // Empty every third successful read: plenty of stale reads. Every
        // other write claims (by the context its client sent) to supersede
        // everything its client was answered with: plenty of superseded
        // versions returned.
        let everything = Clock::from_entries((1..=5).map(|n| (Actor::node(n), 1 << 40)));
        let (mut reads, mut writes) = (0, 0);
        for event in &mut history.events {
            match event {
                Event::Complete { values, .. } if !values.is_empty() => {
                    reads += 1;
                    if reads % 3 == 0 {
                        values.clear();
                    }
                }
                Event::Invoke {
                    op: OpKind::Write,
                    context,
                    ..
                } => {
                    writes += 1;
                    if writes % 2 == 0 {
                        *context = Some(everything.clone());
                    }
                }
                _ => {}
            }
        }
        let ops = history.operation_refs();
        let groups = KeyGroups::new(&ops);
        let one = check_staleness_threads(&groups, 1);
        assert!(one.stale_reads > 2 * MAX_EXAMPLES, "{}", one.stale_reads);
        assert!(
            one.superseded_returned > 2 * MAX_EXAMPLES,
            "{}",
            one.superseded_returned
        );
        assert_eq!(one.superseded_examples.len(), MAX_EXAMPLES);
        for threads in [2, 3, 5] {
            assert_eq!(check_staleness_threads(&KeyGroups::new(&ops), threads), one);
        }
    }
}
