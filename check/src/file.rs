//! Checking a history file, as `cargo sim check` and `quorumd check` do:
//! read it, run every checker, and map the summary to a verdict and an
//! exit code both commands share.
use crate::{check_with_model_budget, Budget, CheckSummary, LinVerdict, ModelKind};
use quorumlog_history::{History, HistoryError};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CheckFileError {
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: HistoryError },
    #[error("{path}: the history has no operations")]
    Empty { path: PathBuf },
}

/// What a checked history shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed, linearizability decided.
    Passed,
    /// Some check found a violation.
    Violated,
    /// Nothing violated, but some key's linearizability is undecided (its
    /// search ran out of steps or memory).
    Undecided,
}

impl Verdict {
    pub fn of(summary: &CheckSummary) -> Verdict {
        if !summary.is_ok() {
            Verdict::Violated
        } else if summary.linearizable == LinVerdict::Unknown {
            Verdict::Undecided
        } else {
            Verdict::Passed
        }
    }

    /// 0 passed, 1 violated, 3 undecided (2 is left for bad input).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Violated => 1,
            Verdict::Undecided => 3,
        }
    }
}

/// The search budget the `check` commands' flags give: `steps` per key
/// (None: the default budget), `memory_mib` of cache per key, and
/// whether to stop at the first violating key.
pub fn budget_from_flags(steps: Option<u64>, memory_mib: u64, first_violation: bool) -> Budget {
    let mut budget = match steps {
        Some(steps) => Budget::steps_per_key(steps),
        None => Budget::default(),
    };
    budget.cache_bytes_per_key =
        usize::try_from(memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    budget.stop_at_first_violation = first_violation;
    budget
}

/// Read the JSON-lines history at `path` and run every checker on it.
pub fn check_file(
    path: &Path,
    model: ModelKind,
    budget: Budget,
) -> Result<CheckSummary, CheckFileError> {
    let file = std::fs::File::open(path).map_err(|source| CheckFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let history = History::read_jsonl(std::io::BufReader::new(file)).map_err(|source| {
        CheckFileError::Parse {
            path: path.to_path_buf(),
            source,
        }
    })?;
    if history.operations().is_empty() {
        return Err(CheckFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(check_with_model_budget(&history, model, budget))
}

/// The line printed after an undecided summary.
pub fn undecided_note(summary: &CheckSummary) -> String {
    format!(
        "undecided: linearizability of {} keys is unknown (listed above); raise --budget or --memory-mib",
        summary.linearizability.unknown.len()
    )
}
