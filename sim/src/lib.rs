//! quorumlog's deterministic simulation harness and consistency checkers.
pub mod history;
