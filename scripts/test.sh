#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this):
# formatting, the simulator's LLVM options, clippy (normal and simulated builds, as they compile), PostgreSQL set-up, the
# normal tests (core, checkers, quorumd on SQLite and PostgreSQL, the
# real-process nemesis, compose checks, the decoders of outside bytes fed
# any bytes), schemathesis against a live gateway and the deterministic
# simulation tests under --cfg madsim. Fuzzing at length with libFuzzer is
# scripts/fuzz.sh, outside this command: its sanitizer build of every
# dependency took three minutes of the suite for fifteen seconds of
# fuzzing, while the same decoders take 512 cases of any bytes and of
# damaged valid encodings each in `cargo test` (core/tests/any_bytes.rs,
# history/tests/any_bytes.rs). So is the profile-guided simulator build,
# scripts/build-sim-pgo.sh (two more fat-LTO builds of the simulator), which
# checks its own binary's reports against its instrumented build's.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# The LLVM and linker options `cargo sim` and `cargo simbench` pass
# (.cargo/config.toml, whose sim alias scripts/build-sim-pgo.sh reads) are
# LLVM's own and LLD's (rustc's default linker): a later LLVM may drop one,
# another linker may not know one, and nothing below builds the `sim`
# profile. One empty program compiled and linked with each option tells.
step "the simulator's LLVM and linker options are known to this rustc"
option_check_dir="$(mktemp -d)"
for option in $(grep -o -- "-C\(llvm-args\|link-arg\)=[^']*" .cargo/config.toml | sort -u); do
    if ! echo 'fn main() {}' | rustc --crate-name sim_option_check --edition 2021 \
        --out-dir "$option_check_dir" "$option" -; then
        echo "rustc or its linker refuses $option (.cargo/config.toml's sim aliases): remove it there"
        exit 1
    fi
    echo "known: $option"
done
rm -rf "$option_check_dir"

# Clippy lints while the tests compile: every workspace crate goes through
# clippy's driver (scripts/clippy-while-compiling.sh), warnings denied, so
# no separate `cargo clippy` pass checks every dependency again (that pass
# and its twin under --cfg madsim were a third of the suite's CPU). The
# variables stay exported for every cargo command below, and the tests'
# own `cargo build` of quorumd inherits them: the same build, nothing
# compiled twice.
CLIPPY_DRIVER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export CLIPPY_DRIVER
export RUSTC_WORKSPACE_WRAPPER="$PWD/scripts/clippy-while-compiling.sh"

# The simulation suite (build and run, --cfg madsim, target-sim/ to
# itself) runs at the lowest CPU and I/O priority beside the steps below:
# the real-process tests leave a core idle most of the time, and at nice 19
# it takes what they leave. Its output is shown when it is waited for.
step "simulation suite in the background, at low priority: clippy + cargo simtest (log: target-sim/simtest.log)"
mkdir -p target-sim
(
    nice -n 19 ionice -c 3 cargo simtest --all-targets --no-run &&
        nice -n 19 ionice -c 3 cargo simtest
) > target-sim/simtest.log 2>&1 &
simulation=$!
# Should a step below fail, the background suite (cargo, its compilers
# and test binaries) stops with the script instead of running on.
kill_tree() {
    local child
    for child in $(pgrep -P "$1"); do kill_tree "$child"; done
    kill "$1" 2>/dev/null || true
}
trap 'kill_tree "$simulation"' EXIT

step "PostgreSQL for the quorumd tests"
bash scripts/setup-postgres.sh

step "nftables and iproute2 for the real-process nemesis"
bash scripts/setup-nemesis.sh

step "cargo test (normal build, every target linted by clippy -D warnings)"
cargo test --workspace --all-targets --no-run
cargo test --workspace

step "write path beside etcd and PostgreSQL quorum commit, one short round (scripts/compare-write-path.py for the full table)"
# The quorumd the tests above built (every test target selected, so the
# same features: nothing but its main.rs to build if anything changed).
cargo build --quiet --workspace --bins --tests
python3 scripts/compare-write-path.py --quorumd target/debug/quorumd --rounds 1 --seconds 2 --check

step "schemathesis against a live gateway (OpenAPI document, no server errors)"
bash scripts/schemathesis.sh

step "cargo simtest (deterministic simulation, --cfg madsim, clippy -D warnings): waiting for the background run"
simulation_status=0
wait "$simulation" || simulation_status=$?
trap - EXIT
cat target-sim/simtest.log
if [ "$simulation_status" -ne 0 ]; then
    echo "the simulation suite failed (exit $simulation_status): its output is above"
    exit 1
fi

step "all test suites passed"
