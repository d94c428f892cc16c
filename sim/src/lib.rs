//! quorumlog's deterministic simulation harness and consistency checkers.
pub mod check;
pub mod history;
