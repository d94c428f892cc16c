//! The liveness check: after the faults are healed and the clients have
//! stopped, every replica must come to hold the same sibling set for every
//! key, by the system's own background work (hints, anti-entropy), within a
//! bounded time.
//!
//! The harness snapshots every replica's store ([`StoreContents`]) while it
//! waits; [`disagreements`] compares one snapshot. Two replicas agree on a
//! key when they hold the same versions: the same dots with the same
//! values (a replica without the key holds the empty set). Only what the
//! stores hold is compared — never a read, which would repair what it
//! looks at and hide a replica that does not converge by itself.
//!
//! Read repair is judged apart ([`check_read_repair`]): after a read at
//! ALL, which heard every replica, the replicas must hold the same versions
//! of the key it read, whatever they held before.
use super::stores::StoreContents;
use quorumlog_history::{Dot, ObservedVersion, OperationRef, Outcome};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How many disagreeing keys a report lists.
const MAX_SHOWN: usize = 5;

/// One key the replicas do not agree on: what each of them holds
/// (`value@dot`, sorted; empty when it holds nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub key: String,
    pub held: BTreeMap<u32, Vec<String>>,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}:", self.key)?;
        for (node, versions) in &self.held {
            if versions.is_empty() {
                write!(f, " n{node} holds nothing;")?;
            } else {
                write!(f, " n{node} holds [{}];", versions.join(", "))?;
            }
        }
        Ok(())
    }
}

fn shown(version: &ObservedVersion) -> String {
    match &version.dot {
        Some(dot) => format!("{}@{dot}", version.value),
        None => version.value.clone(),
    }
}

/// Whether every store holds the same set of (dot, value) pairs for `key`:
/// then the sets of [`shown`] strings are equal too, and nothing needs
/// formatting. The liveness phase compares every key every 100 ms, most of
/// them already agreeing, and formatting each value (some of them tens of
/// KiB) was most of its cost. A difference is judged on the strings, as
/// before.
fn agree_on(stores: &[StoreContents], key: &str) -> bool {
    fn held<'a>(store: &'a StoreContents, key: &str) -> Vec<(Option<Dot>, &'a str)> {
        let mut versions: Vec<(Option<Dot>, &str)> = store
            .keys
            .get(key)
            .map(|vs| vs.iter().map(|v| (v.dot, v.value.as_str())).collect())
            .unwrap_or_default();
        versions.sort_unstable();
        versions.dedup();
        versions
    }
    let mut stores = stores.iter();
    let Some(first) = stores.next().map(|store| held(store, key)) else {
        return true;
    };
    stores.all(|store| held(store, key) == first)
}

/// The keys on which the replicas' stores differ, in key order.
pub fn disagreements(stores: &[StoreContents]) -> Vec<Disagreement> {
    disagreeing(stores).collect()
}

/// Whether the replicas' stores differ on any key: what [`disagreements`]
/// finds first, without describing the keys after it.
pub fn any_disagreement(stores: &[StoreContents]) -> bool {
    disagreeing(stores).next().is_some()
}

/// The keys on which the replicas' stores differ, in key order, each
/// described only when the iterator reaches it.
fn disagreeing(stores: &[StoreContents]) -> impl Iterator<Item = Disagreement> + '_ {
    let keys: BTreeSet<&String> = stores.iter().flat_map(|s| s.keys.keys()).collect();
    keys.into_iter().filter_map(|key| {
        if agree_on(stores, key) {
            return None;
        }
        let held: BTreeMap<u32, Vec<String>> = stores
            .iter()
            .map(|store| {
                let mut versions: Vec<String> = store
                    .keys
                    .get(key)
                    .map(|vs| vs.iter().map(shown).collect())
                    .unwrap_or_default();
                versions.sort();
                versions.dedup();
                (store.node, versions)
            })
            .collect();
        let distinct: BTreeSet<&Vec<String>> = held.values().collect();
        (distinct.len() > 1).then(|| Disagreement {
            key: key.clone(),
            held,
        })
    })
}

/// What the liveness phase found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConvergenceReport {
    /// Simulated milliseconds from the heal to the first snapshot in which
    /// every replica agreed on every key; `None`: not within the bound.
    pub converged_after_ms: Option<u64>,
    /// How long the phase waited at most.
    pub limit_ms: u64,
    /// Keys still differing when the bound passed (0 when converged).
    pub keys_differing: usize,
    /// The first of them, with what each replica held.
    pub examples: Vec<Disagreement>,
}

impl ConvergenceReport {
    /// Agreement within `limit_ms` of the heal.
    pub fn converged(after_ms: u64, limit_ms: u64) -> Self {
        ConvergenceReport {
            converged_after_ms: Some(after_ms),
            limit_ms,
            keys_differing: 0,
            examples: Vec::new(),
        }
    }

    /// No agreement within `limit_ms`; `last` is the final comparison.
    pub fn diverged(last: Vec<Disagreement>, limit_ms: u64) -> Self {
        ConvergenceReport {
            converged_after_ms: None,
            limit_ms,
            keys_differing: last.len(),
            examples: last.into_iter().take(MAX_SHOWN).collect(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.converged_after_ms.is_some()
    }
}

impl fmt::Display for ConvergenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.converged_after_ms {
            Some(ms) => write!(
                f,
                "convergence: every replica agreed on every key {ms} ms after the heal"
            ),
            None => {
                write!(
                    f,
                    "convergence: NOT converged {} ms after the heal: {} key(s) differ",
                    self.limit_ms, self.keys_differing
                )?;
                for example in &self.examples {
                    write!(f, "\n  {example}")?;
                }
                Ok(())
            }
        }
    }
}

/// The level a final read names when it heard every replica.
const READ_AT_ALL: &str = "R=ALL";

/// What the final reads at ALL left behind, with read repair on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    /// Keys a final read at ALL succeeded on.
    pub keys_read: usize,
    /// Of those, keys the replicas still hold differently afterwards.
    pub keys_differing: usize,
    /// The first of them, with what each replica held.
    pub examples: Vec<Disagreement>,
}

impl RepairReport {
    pub fn is_ok(&self) -> bool {
        self.keys_differing == 0
    }
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(
                f,
                "read repair: every replica holds the same versions of the {} key(s) read at ALL",
                self.keys_read
            );
        }
        write!(
            f,
            "read repair: {} of the {} key(s) read at ALL still differ after the read",
            self.keys_differing, self.keys_read
        )?;
        for example in &self.examples {
            write!(f, "\n  {example}")?;
        }
        Ok(())
    }
}

/// Judge read repair on the stores taken after the final reads: a final
/// read at ALL that succeeded heard every replica, so with read repair on,
/// every replica then holds what the read merged, and they agree on its
/// key. `stores` must be taken once the repairs have had time to land, and
/// with nothing else writing.
pub fn check_read_repair(ops: &[OperationRef<'_>], stores: &[StoreContents]) -> RepairReport {
    let read: BTreeSet<&str> = ops
        .iter()
        .filter(|op| {
            op.is_final && op.outcome == Some(Outcome::Ok) && op.level == Some(READ_AT_ALL)
        })
        .map(|op| op.key)
        .collect();
    let differing: Vec<Disagreement> = disagreeing(stores)
        .filter(|d| read.contains(d.key.as_str()))
        .collect();
    RepairReport {
        keys_read: read.len(),
        keys_differing: differing.len(),
        examples: differing.into_iter().take(MAX_SHOWN).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorumlog_history::Dot;

    fn version(value: &str, node: u32, counter: u64) -> ObservedVersion {
        ObservedVersion {
            value: value.into(),
            dot: Some(Dot {
                node,
                incarnation: 0,
                counter,
            }),
            context: None,
        }
    }

    fn store(node: u32, keys: &[(&str, Vec<ObservedVersion>)]) -> StoreContents {
        let mut s = StoreContents::new(node);
        for (key, versions) in keys {
            s.insert(*key, versions.clone());
        }
        s
    }

    #[test]
    fn equal_sets_in_any_order_agree() {
        let a = store(1, &[("k", vec![version("x", 1, 1), version("y", 2, 1)])]);
        let b = store(2, &[("k", vec![version("y", 2, 1), version("x", 1, 1)])]);
        assert!(disagreements(&[a.clone(), b.clone()]).is_empty());
        assert!(!any_disagreement(&[a, b]));
    }

    #[test]
    fn a_missing_key_or_version_is_a_disagreement_naming_each_replica() {
        let a = store(1, &[("k", vec![version("x", 1, 1)]), ("j", vec![])]);
        let b = store(2, &[("k", vec![version("x", 1, 1), version("y", 2, 1)])]);
        let c = store(3, &[]);
        assert!(any_disagreement(&[a.clone(), b.clone(), c.clone()]));
        let found = disagreements(&[a, b, c]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "k");
        assert_eq!(found[0].held[&3], Vec::<String>::new());
        let text = found[0].to_string();
        assert!(text.contains("n3 holds nothing"), "{text}");
        assert!(text.contains("y@"), "{text}");
        let report = ConvergenceReport::diverged(found, 30_000);
        assert!(!report.is_ok());
        assert!(report.to_string().contains("NOT converged"));
    }

    fn final_read(
        key: &'static str,
        level: &'static str,
        outcome: Outcome,
    ) -> OperationRef<'static> {
        OperationRef {
            id: 0,
            client: 9,
            key,
            kind: quorumlog_history::OpKind::Read,
            value: None,
            context: None,
            level: Some(level),
            is_final: true,
            overwrite: false,
            context_from: None,
            invoke_us: 0,
            complete_us: Some(1),
            outcome: Some(outcome),
            values: &[],
            version: None,
            read_context: None,
            error: None,
            invalid: false,
        }
    }

    /// Only keys a final read at ALL succeeded on are judged: another
    /// level heard some replicas only, and a failed read repaired nothing.
    #[test]
    fn read_repair_is_judged_on_the_keys_read_at_all() {
        let apart = |node| {
            store(
                node,
                &[
                    ("read", vec![version("x", node, 1)]),
                    ("quorum", vec![version("y", node, 1)]),
                    ("failed", vec![version("z", node, 1)]),
                    ("unread", vec![version("w", node, 1)]),
                    ("alike", vec![version("v", 1, 1)]),
                ],
            )
        };
        let stores = [apart(1), apart(2)];
        let ops = [
            final_read("read", "R=ALL", Outcome::Ok),
            final_read("quorum", "R=QUORUM", Outcome::Ok),
            final_read("quorum", "R=QUORUM", Outcome::Ok),
            final_read("failed", "R=ALL", Outcome::Timeout),
            final_read("alike", "R=ALL", Outcome::Ok),
        ];
        let report = check_read_repair(&ops, &stores);
        assert!(!report.is_ok());
        assert_eq!(report.keys_read, 2, "{report}");
        assert_eq!(report.keys_differing, 1, "{report}");
        assert_eq!(report.examples[0].key, "read");
        let text = report.to_string();
        assert!(
            text.contains("1 of the 2 key(s) read at ALL still differ"),
            "{text}"
        );
        assert!(text.contains("n2 holds [x@"), "{text}");

        let agreed = [apart(1), apart(1)];
        let report = check_read_repair(&ops, &agreed);
        assert!(report.is_ok(), "{report}");
        // A read that is not one of the final ones is not judged either.
        let not_final = OperationRef {
            is_final: false,
            overwrite: false,
            ..final_read("read", "R=ALL", Outcome::Ok)
        };
        assert_eq!(check_read_repair(&[not_final], &stores).keys_read, 0);
    }

    /// Every replica must agree, not just some: two alike and a third
    /// apart is a disagreement.
    #[test]
    fn one_replica_apart_from_the_rest_is_a_disagreement() {
        let alike = |node| store(node, &[("k", vec![version("x", 1, 1)])]);
        let apart = store(3, &[("k", vec![version("y", 2, 1)])]);
        let stores = [alike(1), alike(2), apart];
        assert!(any_disagreement(&stores));
        let found = disagreements(&stores);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].held[&3], ["y@n2:1"]);
    }

    /// Another value under the same dot (a dot minted twice) is another
    /// version.
    #[test]
    fn another_value_under_the_same_dot_is_not_agreement() {
        let a = store(1, &[("k", vec![version("x", 1, 1)])]);
        let b = store(2, &[("k", vec![version("y", 1, 1)])]);
        assert!(any_disagreement(&[a.clone(), b.clone()]));
        assert_eq!(disagreements(&[a, b]).len(), 1);
    }

    #[test]
    fn same_value_under_another_dot_is_not_agreement() {
        let a = store(1, &[("k", vec![version("x", 1, 1)])]);
        let b = store(2, &[("k", vec![version("x", 1, 2)])]);
        assert!(any_disagreement(&[a.clone(), b.clone()]));
        assert_eq!(disagreements(&[a, b]).len(), 1);
    }
}
