#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this):
# formatting, clippy (normal and simulated builds), PostgreSQL set-up, the
# normal tests (core, checkers, quorumd on SQLite and PostgreSQL, the
# real-process nemesis, compose checks), schemathesis against a live
# gateway, a brief fuzzing run and the deterministic simulation tests
# under --cfg madsim.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy (simulation build, --cfg madsim) -- -D warnings"
cargo simclippy -- -D warnings

step "PostgreSQL for the quorumd tests"
bash scripts/setup-postgres.sh

step "nftables and iproute2 for the real-process nemesis"
bash scripts/setup-nemesis.sh

step "cargo test (normal build)"
cargo test --workspace

step "write path beside etcd and PostgreSQL quorum commit, one short round (scripts/compare-write-path.py for the full table)"
cargo build --quiet -p quorumd --bin quorumd
python3 scripts/compare-write-path.py --quorumd target/debug/quorumd --rounds 1 --seconds 2 --check

step "schemathesis against a live gateway (OpenAPI document, no server errors)"
bash scripts/schemathesis.sh

step "fuzz the decoders of outside bytes briefly (bash scripts/fuzz.sh SECONDS for longer)"
bash scripts/fuzz.sh 3

step "cargo simtest (deterministic simulation, --cfg madsim)"
cargo simtest

step "all test suites passed"
