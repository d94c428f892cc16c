#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this):
# formatting, clippy (normal and simulated builds), PostgreSQL set-up, the
# normal tests (core, checkers, quorumd on SQLite and PostgreSQL, the
# real-process nemesis, compose checks, the decoders of outside bytes fed
# any bytes), schemathesis against a live gateway and the deterministic
# simulation tests under --cfg madsim. Fuzzing at length with libFuzzer is
# scripts/fuzz.sh, outside this command: its sanitizer build of every
# dependency took three minutes of the suite for fifteen seconds of
# fuzzing, while the same decoders take 512 cases of any bytes and of
# damaged valid encodings each in `cargo test` (core/tests/any_bytes.rs,
# history/tests/any_bytes.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (simulation build, --cfg madsim) -- -D warnings"
cargo simclippy -- -D warnings

# The simulation build (five minutes of both cores from a clean clone) is
# compiled at the lowest CPU and I/O priority while the steps below run:
# the real-process tests leave a core idle most of the time, and at nice 19
# the build takes only what they leave. It has target-sim/ to itself.
step "cargo simtest --no-run in the background, at low priority (log: target-sim/simtest-build.log)"
mkdir -p target-sim
nice -n 19 ionice -c 3 cargo simtest --no-run > target-sim/simtest-build.log 2>&1 &
simtest_build=$!
trap 'kill "$simtest_build" 2>/dev/null || true' EXIT

step "cargo clippy -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "PostgreSQL for the quorumd tests"
bash scripts/setup-postgres.sh

step "nftables and iproute2 for the real-process nemesis"
bash scripts/setup-nemesis.sh

step "cargo test (normal build)"
cargo test --workspace

step "write path beside etcd and PostgreSQL quorum commit, one short round (scripts/compare-write-path.py for the full table)"
# The quorumd the tests above built (every test target selected, so the
# same features: nothing but its main.rs to build if anything changed).
cargo build --quiet --workspace --bins --tests
python3 scripts/compare-write-path.py --quorumd target/debug/quorumd --rounds 1 --seconds 2 --check

step "schemathesis against a live gateway (OpenAPI document, no server errors)"
bash scripts/schemathesis.sh

step "cargo simtest (deterministic simulation, --cfg madsim)"
if ! wait "$simtest_build"; then
    echo "the simulation build failed:"
    tail -60 target-sim/simtest-build.log
    exit 1
fi
trap - EXIT
cargo simtest

step "all test suites passed"
