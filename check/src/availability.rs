//! Availability, judged against the nemesis's ground truth: what the
//! system answered (`unavailable`, `timeout`, no answer) compared with what
//! the faults really did to the cluster at that moment.
//!
//! The system's own beliefs (breakers, health) are never consulted. The
//! judge knows only, per node and per link, when it was cut off, and how
//! long after a fault heals a correct coordinator may still be excused for
//! not using what came back (its breaker's open time, a call in flight, a
//! stalled stream). Two rules:
//!
//! - **No faults, no refusals.** In a run where the nemesis did nothing,
//!   every operation completes, and none answers `unavailable` or
//!   `timeout`: client errors (`fail`) are the only other answer.
//! - **Unavailable only when it was.** An operation that answered
//!   `unavailable` breaks availability if some coordinator, throughout the
//!   operation and the grace before it, was itself up and reached (both
//!   ways) at least as many replicas as the operation needed, itself
//!   included: every coordinator the client tried had to believe fewer
//!   alive, and that one had no reason to.
//!
//! - **Every key reads back once the faults heal.** The quiescent final
//!   read of a key (retried a few times after the heal and a quiet
//!   period) must succeed at least once: a key that cannot be read back
//!   cannot be judged, and that is not a pass.
//!
//! - **A context the cluster handed out stays valid.** A write that sends,
//!   unchanged, the context an earlier answer for its key handed out
//!   (`context_from`) and is refused as malformed (`invalid`) was refused
//!   for nothing it did: a stale context supersedes less, it is not wrong.
//!   (The writes judged are a well-behaved client's, whose key and value
//!   are valid too.)
//!
//! Operations whose level the judge cannot read (no `R=`/`W=` level in the
//! history) are not judged by the second rule.
use quorumlog_history::{OpKind, OperationRef, Outcome};
use serde::Serialize;
use std::fmt;

/// Something the nemesis did, from `from_us` until `to_us` (simulated
/// microseconds since the run began; `u64::MAX` if it never healed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outage {
    /// The node was down or paused: it neither coordinated nor replied.
    Node { node: u32, from_us: u64, to_us: u64 },
    /// Messages from `from` to `to` were dropped or held (one way).
    Link {
        from: u32,
        to: u32,
        from_us: u64,
        to_us: u64,
    },
    /// Every message was slowed: no link is trusted meanwhile.
    Network { from_us: u64, to_us: u64 },
}

impl Outage {
    fn span(&self) -> (u64, u64) {
        match *self {
            Outage::Node { from_us, to_us, .. }
            | Outage::Link { from_us, to_us, .. }
            | Outage::Network { from_us, to_us } => (from_us, to_us),
        }
    }
}

/// What the nemesis did to a cluster of nodes `1..=n`, and how long after
/// an outage ends a coordinator may still be excused for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroundTruth {
    pub n: usize,
    pub outages: Vec<Outage>,
    /// After a node outage (down, paused): the breaker's open time plus a
    /// replica timeout, and a little for the node to start.
    pub node_grace_us: u64,
    /// After a link outage or slowed network: as for nodes, plus the
    /// longest a stream may hold messages back after its link heals.
    pub link_grace_us: u64,
}

impl GroundTruth {
    /// Whether `outage`, with its grace, overlaps `[from, to]`.
    fn overlaps(&self, outage: &Outage, from: u64, to: u64) -> bool {
        let grace = match outage {
            Outage::Node { .. } => self.node_grace_us,
            Outage::Link { .. } | Outage::Network { .. } => self.link_grace_us,
        };
        let (start, end) = outage.span();
        start <= to && end.saturating_add(grace) >= from
    }

    fn node_clean(&self, node: u32, from: u64, to: u64) -> bool {
        !self.outages.iter().any(|o| match o {
            Outage::Node { node: n, .. } => *n == node && self.overlaps(o, from, to),
            _ => false,
        })
    }

    fn link_clean(&self, a: u32, b: u32, from: u64, to: u64) -> bool {
        !self.outages.iter().any(|o| match o {
            Outage::Link { from: x, to: y, .. } => {
                ((*x == a && *y == b) || (*x == b && *y == a)) && self.overlaps(o, from, to)
            }
            Outage::Network { .. } => self.overlaps(o, from, to),
            Outage::Node { .. } => false,
        })
    }

    /// The most replicas (itself included) any up coordinator reached both
    /// ways throughout `[from, to]`, and which coordinator that was.
    fn best_coordinator(&self, from: u64, to: u64) -> Option<(u32, usize)> {
        (1..=self.n as u32)
            .filter(|&c| self.node_clean(c, from, to))
            .map(|c| {
                let reached = (1..=self.n as u32)
                    .filter(|&r| {
                        r == c || (self.node_clean(r, from, to) && self.link_clean(c, r, from, to))
                    })
                    .count();
                (c, reached)
            })
            .max_by_key(|&(c, reached)| (reached, std::cmp::Reverse(c)))
    }
}

/// One operation the system refused although it need not have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub id: u64,
    pub client: u32,
    pub key: String,
    pub invoke_us: u64,
    /// "unavailable", "timeout", "no answer", "fail" (a final read) or
    /// "invalid" (refused as malformed).
    pub answered: &'static str,
    pub why: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AvailabilityReport {
    /// Operations the second rule could judge (answered `unavailable`,
    /// with a level the judge could read).
    pub judged_unavailable: usize,
    pub refusals: Vec<Refusal>,
    /// Total refusals (the list keeps the first few).
    pub refused: usize,
}

/// Refusals listed in a report at most.
const LISTED: usize = 10;

impl Refusal {
    /// The refused operation as reports name it: "op 7 (client 2, key k1,
    /// at 0.268s)".
    pub(crate) fn operation(&self) -> String {
        format!(
            "op {} (client {}, key {}, at {:.3}s)",
            self.id,
            self.client,
            self.key,
            self.invoke_us as f64 / 1e6
        )
    }
}

impl AvailabilityReport {
    pub fn is_ok(&self) -> bool {
        self.refused == 0
    }

    fn push(&mut self, refusal: Refusal) {
        self.refused += 1;
        if self.refusals.len() < LISTED {
            self.refusals.push(refusal);
        }
    }
}

impl fmt::Display for AvailabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(
                f,
                "availability: no operation refused while its replicas were reachable ({} unavailable answers judged)",
                self.judged_unavailable
            );
        }
        writeln!(
            f,
            "availability: {} operations refused while their replicas were reachable:",
            self.refused
        )?;
        for r in &self.refusals {
            writeln!(f, "  {} answered {}: {}", r.operation(), r.answered, r.why)?;
        }
        Ok(())
    }
}

/// Replicas an operation needs, from the level the history records
/// (`R=QUORUM`, `W=2`, …) and the replication factor.
fn needed(op: &OperationRef<'_>, n: usize) -> Option<usize> {
    let level = op.level?;
    let (side, level) = level.split_once('=')?;
    let expected = match op.kind {
        OpKind::Read => "R",
        _ => "W",
    };
    if side.trim() != expected {
        return None;
    }
    let count = match level.trim().to_ascii_uppercase().as_str() {
        "ONE" => 1,
        "QUORUM" => n / 2 + 1,
        "ALL" => n,
        number => number.parse().ok()?,
    };
    (1..=n).contains(&count).then_some(count)
}

/// Judge every operation of `ops` against `truth`.
pub fn check_availability(ops: &[OperationRef<'_>], truth: &GroundTruth) -> AvailabilityReport {
    let mut report = AvailabilityReport::default();
    let quiet = truth.outages.is_empty();
    // Keys whose final read never succeeded: (key, last attempt).
    let mut final_reads: std::collections::BTreeMap<&str, Option<&OperationRef<'_>>> =
        std::collections::BTreeMap::new();
    for op in ops.iter().filter(|op| op.is_final) {
        let entry = final_reads.entry(op.key).or_insert(Some(op));
        if op.is_ok() {
            *entry = None;
        } else if entry.is_some() {
            *entry = Some(op);
        }
    }
    for op in final_reads.values().flatten() {
        report.push(Refusal {
            id: op.id,
            client: op.client,
            key: op.key.to_string(),
            invoke_us: op.invoke_us,
            answered: match op.outcome {
                Some(Outcome::Unavailable) => "unavailable",
                Some(Outcome::Timeout) => "timeout",
                Some(Outcome::Fail) => "fail",
                _ => "no answer",
            },
            why: "the final read of this key never succeeded after the faults healed \
                  (last attempt shown)"
                .to_string(),
        });
    }
    refused_handed_out_contexts(ops, &mut report);
    for op in ops.iter().filter(|op| !op.is_final || quiet) {
        let answered = match op.outcome {
            // An answer: the operation completed (a mismatch observed its
            // compare fail), or was refused for what it asked.
            Some(Outcome::Ok | Outcome::Fail | Outcome::Mismatch) => continue,
            Some(Outcome::Unavailable) => "unavailable",
            Some(Outcome::Timeout) => "timeout",
            None => "no answer",
        };
        let refusal = |why: String| Refusal {
            id: op.id,
            client: op.client,
            key: op.key.to_string(),
            invoke_us: op.invoke_us,
            answered,
            why,
        };
        if quiet {
            report.push(refusal(
                "the nemesis injected no fault in this run: every operation must complete"
                    .to_string(),
            ));
            continue;
        }
        if op.outcome != Some(Outcome::Unavailable) {
            continue;
        }
        let Some(needed) = needed(op, truth.n) else {
            continue;
        };
        report.judged_unavailable += 1;
        let end = op.complete_us.unwrap_or(u64::MAX);
        if let Some((coordinator, reached)) = truth.best_coordinator(op.invoke_us, end) {
            if reached >= needed {
                report.push(refusal(format!(
                    "n{coordinator} was up and reached {reached} replicas (itself included; {needed} needed) \
                     throughout the operation and the grace before it"
                )));
            }
        }
    }
    report
}

/// The one rule of [`check_availability`] that needs no ground truth: a
/// write refused as malformed for sending, unchanged, the context an
/// earlier answer for its key handed out is a bug whatever the faults.
/// [`crate::check_history`] runs it on every history, a real cluster's
/// included.
pub fn check_handed_out_contexts(ops: &[OperationRef<'_>]) -> AvailabilityReport {
    let mut report = AvailabilityReport::default();
    refused_handed_out_contexts(ops, &mut report);
    report
}

/// The handed-out-context rule: writes refused as malformed although they
/// sent, unchanged, a context an earlier answer for their key handed out.
fn refused_handed_out_contexts(ops: &[OperationRef<'_>], report: &mut AvailabilityReport) {
    let refused: Vec<(&OperationRef<'_>, u64)> = ops
        .iter()
        .filter(|op| op.invalid && op.kind.is_mutation())
        .filter_map(|op| op.context_from.map(|from| (op, from)))
        .collect();
    if refused.is_empty() {
        return;
    }
    let by_id: rustc_hash::FxHashMap<u64, &OperationRef<'_>> =
        ops.iter().map(|op| (op.id, op)).collect();
    for (op, from) in refused {
        let Some(source) = by_id.get(&from) else {
            continue;
        };
        let handed_out = source.is_ok()
            && source.key == op.key
            && source.read_context.is_some()
            && source.read_context == op.context;
        if handed_out {
            report.push(Refusal {
                id: op.id,
                client: op.client,
                key: op.key.to_string(),
                invoke_us: op.invoke_us,
                answered: "invalid",
                why: format!(
                    "refused as malformed, but its context is the one op {from}'s answer handed out for this key, sent unchanged"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        id: u64,
        kind: OpKind,
        level: &'static str,
        outcome: Option<Outcome>,
        at: u64,
    ) -> OperationRef<'static> {
        OperationRef {
            id,
            client: 0,
            key: "k",
            kind,
            value: None,
            context: None,
            level: Some(level),
            is_final: false,
            overwrite: false,
            context_from: None,
            invoke_us: at,
            complete_us: outcome.map(|_| at + 1_000),
            outcome,
            values: &[],
            version: None,
            read_context: None,
            error: None,
            invalid: false,
        }
    }

    fn truth(outages: Vec<Outage>) -> GroundTruth {
        GroundTruth {
            n: 5,
            outages,
            node_grace_us: 3_000_000,
            link_grace_us: 13_000_000,
        }
    }

    #[test]
    fn with_no_faults_every_refusal_and_missing_answer_is_reported() {
        let ops = vec![
            op(1, OpKind::Write, "W=ALL", Some(Outcome::Ok), 0),
            op(2, OpKind::Write, "W=ALL", Some(Outcome::Unavailable), 10),
            op(3, OpKind::Read, "R=ONE", Some(Outcome::Timeout), 20),
            op(4, OpKind::Read, "R=ONE", None, 30),
            op(5, OpKind::Write, "W=ONE", Some(Outcome::Fail), 40),
        ];
        let report = check_availability(&ops, &truth(vec![]));
        assert_eq!(report.refused, 3);
        let ids: Vec<u64> = report.refusals.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 3, 4]);
    }

    #[test]
    fn unavailable_is_excused_only_while_too_few_replicas_were_reachable() {
        // n4 and n5 down from 1 s to 2 s: three replicas remain.
        let down = |node| Outage::Node {
            node,
            from_us: 1_000_000,
            to_us: 2_000_000,
        };
        let truth = truth(vec![down(4), down(5)]);
        // ALL during the outage: excused. QUORUM during it: three were up.
        let during_all = op(
            1,
            OpKind::Write,
            "W=ALL",
            Some(Outcome::Unavailable),
            1_500_000,
        );
        let during_quorum = op(
            2,
            OpKind::Read,
            "R=QUORUM",
            Some(Outcome::Unavailable),
            1_500_000,
        );
        // ALL within the grace after the restart: excused; long after: not.
        let soon_after = op(
            3,
            OpKind::Write,
            "W=ALL",
            Some(Outcome::Unavailable),
            3_000_000,
        );
        let long_after = op(
            4,
            OpKind::Write,
            "W=ALL",
            Some(Outcome::Unavailable),
            9_000_000,
        );
        let report =
            check_availability(&[during_all, during_quorum, soon_after, long_after], &truth);
        assert_eq!(report.judged_unavailable, 4);
        let ids: Vec<u64> = report.refusals.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 4], "{report}");
    }

    #[test]
    fn a_partition_counts_what_the_best_side_reaches_both_ways() {
        // n1,n2 | n3,n4,n5 (both ways) from 0 to 5 s, then a one-way link
        // n3 -/-> n4 for the rest of the run.
        let mut outages = Vec::new();
        for a in [1, 2] {
            for b in [3, 4, 5] {
                for (from, to) in [(a, b), (b, a)] {
                    outages.push(Outage::Link {
                        from,
                        to,
                        from_us: 0,
                        to_us: 5_000_000,
                    });
                }
            }
        }
        outages.push(Outage::Link {
            from: 3,
            to: 4,
            from_us: 5_000_000,
            to_us: u64::MAX,
        });
        let truth = truth(outages);
        // During the split the majority side reaches 3: QUORUM refused is wrong.
        let quorum = op(
            1,
            OpKind::Write,
            "W=QUORUM",
            Some(Outcome::Unavailable),
            1_000_000,
        );
        // W=4 cannot be met by any side.
        let four = op(
            2,
            OpKind::Write,
            "W=4",
            Some(Outcome::Unavailable),
            1_000_000,
        );
        // Long after the split heals, n3's broken link to n4 does not stop
        // n1 from reaching all five.
        let all = op(
            3,
            OpKind::Write,
            "W=ALL",
            Some(Outcome::Unavailable),
            30_000_000,
        );
        let report = check_availability(&[quorum, four, all], &truth);
        let ids: Vec<u64> = report.refusals.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 3], "{report}");
    }

    #[test]
    fn a_slowed_network_excuses_everything_it_overlaps() {
        let truth = truth(vec![Outage::Network {
            from_us: 0,
            to_us: 1_000_000,
        }]);
        // A slow network excuses a level that needs other replicas ...
        let quorum = op(
            1,
            OpKind::Read,
            "R=QUORUM",
            Some(Outcome::Unavailable),
            500_000,
        );
        // ... but R=ONE needs only the coordinator itself, which was up.
        let one = op(
            2,
            OpKind::Read,
            "R=ONE",
            Some(Outcome::Unavailable),
            500_000,
        );
        let report = check_availability(&[quorum, one], &truth);
        let ids: Vec<u64> = report.refusals.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![2], "{report}");
    }

    /// A polite read-then-write refused as malformed is reported; the same
    /// refusal of a context that was changed, came from another key, or
    /// names no answer is not (an adversary's).
    #[test]
    fn a_context_handed_out_and_refused_as_malformed_is_reported() {
        use quorumlog_history::{Actor, Clock};
        let handed: &'static Clock =
            Box::leak(Box::new(Clock::from_entries([(Actor::node(1), 2)])));
        let other: &'static Clock = Box::leak(Box::new(Clock::from_entries([(Actor::node(1), 3)])));
        let read = OperationRef {
            read_context: Some(handed),
            ..op(1, OpKind::Read, "R=QUORUM", Some(Outcome::Ok), 0)
        };
        let refused = |id, context, from| OperationRef {
            context: Some(context),
            context_from: from,
            invalid: true,
            value: Some("v"),
            ..op(id, OpKind::Write, "W=QUORUM", Some(Outcome::Fail), 10)
        };
        let truth = truth(vec![Outage::Network {
            from_us: 0,
            to_us: 1,
        }]);
        let ops = [read, refused(2, handed, Some(1))];
        let report = check_availability(&ops, &truth);
        assert_eq!(report.refused, 1, "{report}");
        assert_eq!(report.refusals[0].id, 2);
        assert_eq!(report.refusals[0].answered, "invalid");
        assert!(
            report.to_string().contains("op 1's answer handed out"),
            "{report}"
        );

        let other_key = OperationRef {
            key: "j",
            ..refused(3, handed, Some(1))
        };
        let not_judged = [
            read,
            refused(2, other, Some(1)),
            refused(4, handed, None),
            other_key,
            // Refused for a limit, not as malformed.
            OperationRef {
                invalid: false,
                ..refused(5, handed, Some(1))
            },
        ];
        let report = check_availability(&not_judged, &truth);
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn a_key_whose_final_read_never_succeeds_is_reported() {
        let truth = truth(vec![Outage::Node {
            node: 1,
            from_us: 0,
            to_us: 1,
        }]);
        let final_read = |id, key: &'static str, outcome| OperationRef {
            key,
            is_final: true,
            overwrite: false,
            ..op(id, OpKind::Read, "R=ALL", Some(outcome), 60_000_000 + id)
        };
        let ops = vec![
            // "a" fails once, then reads back: fine.
            final_read(1, "a", Outcome::Timeout),
            final_read(2, "a", Outcome::Ok),
            // "b" never reads back.
            final_read(3, "b", Outcome::Timeout),
            final_read(4, "b", Outcome::Fail),
        ];
        let report = check_availability(&ops, &truth);
        assert_eq!(report.refused, 1, "{report}");
        assert_eq!(report.refusals[0].key, "b");
        assert_eq!(report.refusals[0].id, 4);
        assert_eq!(report.refusals[0].answered, "fail");
    }

    /// QUORUM of five is three: with three nodes down, the two left
    /// cannot make one.
    #[test]
    fn a_quorum_is_a_majority() {
        let down = |node| Outage::Node {
            node,
            from_us: 1_000_000,
            to_us: 2_000_000,
        };
        let truth = truth(vec![down(3), down(4), down(5)]);
        let quorum = op(
            1,
            OpKind::Write,
            "W=QUORUM",
            Some(Outcome::Unavailable),
            1_500_000,
        );
        let report = check_availability(&[quorum], &truth);
        assert_eq!(report.judged_unavailable, 1);
        assert!(report.is_ok(), "{report}");
    }

    /// A link cut one way cuts both ends off from each other: neither
    /// coordinator gets its answers back from the other (a replica counts
    /// as reached only both ways).
    #[test]
    fn a_link_cut_one_way_excuses_both_of_its_ends() {
        let truth = GroundTruth {
            n: 2,
            ..truth(vec![Outage::Link {
                from: 1,
                to: 2,
                from_us: 0,
                to_us: u64::MAX,
            }])
        };
        let all = op(
            1,
            OpKind::Write,
            "W=ALL",
            Some(Outcome::Unavailable),
            1_000_000,
        );
        let report = check_availability(&[all], &truth);
        assert_eq!(report.judged_unavailable, 1);
        assert!(report.is_ok(), "{report}");
    }

    /// Once a key's final read has succeeded, a later attempt that failed
    /// takes nothing back.
    #[test]
    fn a_final_read_that_succeeded_once_is_not_reported() {
        let truth = truth(vec![Outage::Node {
            node: 1,
            from_us: 0,
            to_us: 1,
        }]);
        let final_read = |id, outcome| OperationRef {
            is_final: true,
            ..op(id, OpKind::Read, "R=ALL", Some(outcome), 60_000_000 + id)
        };
        let ops = [final_read(1, Outcome::Ok), final_read(2, Outcome::Timeout)];
        let report = check_availability(&ops, &truth);
        assert!(report.is_ok(), "{report}");
    }

    /// Under faults only an `unavailable` answer is judged against what
    /// was reachable: a timeout or a missing answer is what a fault
    /// anywhere on the operation's path may cause, and only a run without
    /// faults judges those.
    #[test]
    fn under_faults_only_unavailable_answers_are_judged() {
        let truth = truth(vec![Outage::Node {
            node: 1,
            from_us: 0,
            to_us: 1,
        }]);
        let ops = [
            op(
                1,
                OpKind::Write,
                "W=QUORUM",
                Some(Outcome::Timeout),
                60_000_000,
            ),
            op(2, OpKind::Read, "R=QUORUM", None, 60_000_000),
        ];
        let report = check_availability(&ops, &truth);
        assert_eq!(report.judged_unavailable, 0);
        assert!(report.is_ok(), "{report}");
    }

    /// An answer that handed out no context (a read of a key with no
    /// version) gave the write that names it nothing to send: its refusal
    /// is not the rule's.
    #[test]
    fn a_refusal_naming_an_answer_that_handed_out_no_context_is_not_judged() {
        let read = op(1, OpKind::Read, "R=QUORUM", Some(Outcome::Ok), 0);
        let refused = OperationRef {
            context_from: Some(1),
            invalid: true,
            value: Some("v"),
            ..op(2, OpKind::Write, "W=QUORUM", Some(Outcome::Fail), 10)
        };
        let report = check_handed_out_contexts(&[read, refused]);
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn levels_the_judge_cannot_read_are_not_judged() {
        let truth = truth(vec![Outage::Node {
            node: 1,
            from_us: 0,
            to_us: 1,
        }]);
        let odd = op(
            1,
            OpKind::Write,
            "LOCAL_QUORUM",
            Some(Outcome::Unavailable),
            60_000_000,
        );
        let wrong_side = op(
            2,
            OpKind::Write,
            "R=ONE",
            Some(Outcome::Unavailable),
            60_000_000,
        );
        let report = check_availability(&[odd, wrong_side], &truth);
        assert_eq!(report.judged_unavailable, 0);
        assert!(report.is_ok());
    }
}
