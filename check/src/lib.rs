//! Consistency checkers over a [`quorumlog_history::History`].
//!
//! Three independent judges, all working per key on the same history:
//!
//! - [`check_staleness`]: the regular-register property that W+R>N
//!   promises (no stale reads, no superseded version returned, no phantom
//!   values, siblings concurrent);
//! - [`check_durability`]: no acknowledged write is missing from the final
//!   quiescent read unless a client superseded it (no lost updates), and no
//!   two acknowledged writes share a dot;
//! - [`check_linearizability`]: Wing & Gong search with Lowe's memoisation,
//!   generic over a sequential [`Model`].
//!
//! Besides these, [`check_availability`] judges refusals against the
//! nemesis's ground truth ([`GroundTruth`]: who was cut off, and when),
//! never against what the system believed. Its one rule that needs no
//! ground truth, [`check_handed_out_contexts`] (a write refused as
//! malformed for sending the context an earlier answer handed out), runs
//! on every history, so a real cluster's is judged by it too.
//!
//! [`check_history`] runs all three (linearizability against the
//! [`MultiValueRegister`], the model that fits quorumlog's siblings) and
//! returns a [`CheckSummary`]. [`check_stores`] judges durability on the
//! replicas' stores read out after a run, without final reads.
//!
//! The checkers use the history's own version types
//! ([`quorumlog_history::Dot`], [`quorumlog_history::Clock`]) and judge what
//! clients did (values written, contexts sent, outcomes), so a bug in the
//! system's version algebra cannot blind them.
use quorumlog_history::{History, OperationRef};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

mod availability;
pub(crate) mod common;
mod convergence;
mod durability;
pub mod file;
pub mod generate;
mod linearizability;
mod models;
mod staleness;
mod stores;

pub use availability::{
    check_availability, check_handed_out_contexts, AvailabilityReport, GroundTruth, Outage, Refusal,
};
pub use common::{Bucket, Distribution, OpSummary};
pub use convergence::{
    any_disagreement, check_read_repair, disagreements, ConvergenceReport, Disagreement,
    RepairReport,
};
pub use durability::{check_durability, DurabilityReport, LostWrite, MisreportedWrite, ReusedDot};
pub use linearizability::{
    check_linearizability, check_linearizability_ops, Budget, LinReport, LinVerdict, LinViolation,
    StuckOp, UnknownKey,
};
pub use models::{CasRegister, Interner, KeyValue, Model, MultiValueRegister, Register};
pub use staleness::{
    check_staleness, OutsideContext, PhantomKind, PhantomRead, SiblingViolation, StaleRead,
    StalenessReport, SupersededReturn,
};
pub use stores::{check_stores, check_stores_ops, MissingWrite, StoreContents, StoreReport};

/// Everything the checkers found in one history.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSummary {
    /// Operations in the history (final reads included).
    pub operations: usize,
    /// Reads that missed a write acknowledged before they began, or
    /// returned a version such a write had superseded.
    pub stale_reads: usize,
    /// Versions returned after an acknowledged write had superseded them
    /// (their reads are among `stale_reads`).
    pub superseded_returned: usize,
    /// Acknowledged writes missing from the final read.
    pub lost_updates: usize,
    /// Acknowledged writes reported with another acknowledged write's dot.
    pub reused_dots: usize,
    /// Acknowledged writes reported as another write than the one their
    /// client sent (another value, or a context missing part of the one
    /// sent).
    pub misreported_writes: usize,
    /// Writes refused as malformed for sending, unchanged, the context an
    /// earlier answer for their key handed out
    /// ([`check_handed_out_contexts`]).
    pub refused_contexts: AvailabilityReport,
    pub linearizable: LinVerdict,
    pub staleness: StalenessReport,
    pub durability: DurabilityReport,
    pub linearizability: LinReport,
}

impl CheckSummary {
    /// No stale read (superseded versions included), phantom, sibling
    /// violation, lost update, reused dot, misreported write or handed-out
    /// context refused as malformed, and not shown non-linearizable.
    /// (`Unknown` linearizability does not fail the summary; see
    /// [`CheckSummary::is_strictly_ok`].)
    pub fn is_ok(&self) -> bool {
        self.stale_reads == 0
            && self.superseded_returned == 0
            && self.lost_updates == 0
            && self.reused_dots == 0
            && self.misreported_writes == 0
            && self.refused_contexts.is_ok()
            && self.staleness.is_ok()
            && self.durability.is_ok()
            && self.linearizable != LinVerdict::NotLinearizable
    }

    /// Like [`CheckSummary::is_ok`], and linearizability was decided.
    pub fn is_strictly_ok(&self) -> bool {
        self.is_ok() && self.linearizable == LinVerdict::Linearizable
    }
}

impl fmt::Display for CheckSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operations: {} stale reads",
            self.operations, self.stale_reads
        )?;
        if self.superseded_returned > 0 {
            write!(
                f,
                " ({} superseded versions returned)",
                self.superseded_returned
            )?;
        }
        write!(f, ", {} lost updates", self.lost_updates)?;
        if self.reused_dots > 0 {
            write!(f, ", {} reused dots", self.reused_dots)?;
        }
        if self.misreported_writes > 0 {
            write!(f, ", {} misreported writes", self.misreported_writes)?;
        }
        if !self.refused_contexts.is_ok() {
            write!(
                f,
                ", {} handed-out contexts refused",
                self.refused_contexts.refused
            )?;
        }
        writeln!(f, ", {}", self.linearizable)?;
        writeln!(f)?;
        if !self.refused_contexts.is_ok() {
            writeln!(
                f,
                "contexts: {} writes refused as malformed for the context an earlier answer handed out:",
                self.refused_contexts.refused
            )?;
            for r in &self.refused_contexts.refusals {
                writeln!(f, "  {}: {}", r.operation(), r.why)?;
            }
        }
        writeln!(f, "{}", self.staleness)?;
        writeln!(f, "{}", self.durability)?;
        write!(f, "{}", self.linearizability)
    }
}

/// The sequential models the CLI offers (`--model`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Read/write register: a read returns the last value written.
    Register,
    /// Register with compare-and-set.
    CasRegister,
    /// Key/value map with get/put/append (checked per key).
    KeyValue,
    /// quorumlog's sibling semantics: a read returns every version not
    /// covered by a later write's context.
    #[default]
    MultiValueRegister,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Register,
        ModelKind::CasRegister,
        ModelKind::KeyValue,
        ModelKind::MultiValueRegister,
    ];

    /// The name `--model` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::KeyValue => "kv",
            ModelKind::MultiValueRegister => "mv-register",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("unknown model {0:?} (expected one of: register, cas-register, kv, mv-register)")]
pub struct UnknownModel(pub String);

impl FromStr for ModelKind {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "register" => Ok(ModelKind::Register),
            "cas-register" | "cas" => Ok(ModelKind::CasRegister),
            "kv" | "key-value" => Ok(ModelKind::KeyValue),
            "mv-register" | "mv" | "multi-value-register" => Ok(ModelKind::MultiValueRegister),
            _ => Err(UnknownModel(s.to_string())),
        }
    }
}

/// Staleness, durability and linearizability (multi-value register).
pub fn check_history(history: &History) -> CheckSummary {
    check_with_model(history, ModelKind::MultiValueRegister)
}

/// Staleness, durability and linearizability against `model`.
pub fn check_with_model(history: &History, model: ModelKind) -> CheckSummary {
    check_with_model_budget(history, model, Budget::default())
}

/// Staleness and durability only (no linearizability search): the fast
/// checks, pairing the operations once.
pub fn check_staleness_and_durability(history: &History) -> (StalenessReport, DurabilityReport) {
    let ops = history.operation_refs();
    let groups = common::KeyGroups::new(&ops);
    (
        staleness::check_staleness_groups(&groups),
        durability::check_durability_groups(&groups),
    )
}

/// [`check_with_model`] with an explicit search budget.
pub fn check_with_model_budget(
    history: &History,
    model: ModelKind,
    budget: Budget,
) -> CheckSummary {
    let ops = history.operation_refs();
    summarize(&ops, model, budget)
}

/// [`check_history`] and [`check_stores_ops`] on operations already paired
/// (see [`History::operation_refs`]), each key's operations grouped, and
/// what its writers may vouch for worked out, once for both.
pub fn check_history_and_stores_ops(
    ops: &[OperationRef<'_>],
    stores: &[StoreContents],
) -> (CheckSummary, StoreReport) {
    let groups = common::KeyGroups::new(ops);
    (
        summarize_groups(&groups, ModelKind::MultiValueRegister, Budget::default()),
        stores::check_stores_groups(&groups, stores),
    )
}

fn summarize(ops: &[OperationRef<'_>], model: ModelKind, budget: Budget) -> CheckSummary {
    summarize_groups(&common::KeyGroups::new(ops), model, budget)
}

fn summarize_groups(
    groups: &common::KeyGroups<'_>,
    model: ModelKind,
    budget: Budget,
) -> CheckSummary {
    let ops = groups.operations();
    let staleness = staleness::check_staleness_groups(groups);
    let durability = durability::check_durability_groups(groups);
    let linearizability = match model {
        ModelKind::Register => check_linearizability_ops(ops, &Register, budget),
        ModelKind::CasRegister => check_linearizability_ops(ops, &CasRegister, budget),
        ModelKind::KeyValue => check_linearizability_ops(ops, &KeyValue, budget),
        ModelKind::MultiValueRegister => {
            check_linearizability_ops(ops, &MultiValueRegister, budget)
        }
    };
    CheckSummary {
        operations: ops.len(),
        stale_reads: staleness.stale_reads,
        superseded_returned: staleness.superseded_returned,
        lost_updates: durability.lost_updates,
        reused_dots: durability.reused_dots,
        misreported_writes: durability.misreported_writes,
        refused_contexts: availability::check_handed_out_contexts(ops),
        linearizable: linearizability.verdict,
        staleness,
        durability,
        linearizability,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_round_trip() {
        for kind in ModelKind::ALL {
            assert_eq!(kind.as_str().parse::<ModelKind>(), Ok(kind));
        }
        assert!("paxos"
            .parse::<ModelKind>()
            .unwrap_err()
            .to_string()
            .contains("paxos"));
    }
}
