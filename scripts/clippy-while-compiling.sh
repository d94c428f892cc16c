#!/usr/bin/env bash
# RUSTC_WORKSPACE_WRAPPER for the test command (scripts/test.sh): every
# workspace crate is compiled by clippy's driver, which is rustc with
# clippy's lints, so one build both compiles the tests and lints every
# target, warnings denied — what `cargo clippy --all-targets -- -D warnings`
# checks, without its second, check-only pass over every dependency.
# Cargo calls it as `WRAPPER RUSTC ARGS…`; clippy-driver takes exactly that.
exec "${CLIPPY_DRIVER:?set by scripts/test.sh}" "$@" -D warnings
