//! Consistency checkers over a [`crate::history::History`].
