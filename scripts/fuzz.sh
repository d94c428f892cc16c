#!/usr/bin/env bash
# Fuzz the decoders that take bytes from outside — RPC frames, the
# cluster handshake and sealed frames, context
# tokens, history files, stored rows — with cargo-fuzz (libFuzzer and
# AddressSanitizer), each target for SECONDS (default 60): any panic,
# sanitizer report, or allocation over 64 MiB (no input up to 64 KiB may
# make one) fails the run and leaves the input in fuzz/artifacts/.
#   bash scripts/fuzz.sh          # 60 s per target
#   bash scripts/fuzz.sh 600      # longer
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes nightly-only flags (sanitizers, coverage passes); the
# machine's one stable toolchain takes them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
for target in rpc_frame sealed_channel context_token history_parser stored_row; do
    mkdir -p "fuzz/corpus/$target"
    log="fuzz/$target.log"
    if ! cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -malloc_limit_mb=64 -rss_limit_mb=2048 \
        -print_final_stats=1 > "$log" 2>&1; then
        echo "fuzz: $target FAILED (inputs in fuzz/artifacts/$target):"
        tail -40 "$log"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz: $target ${seconds}s, $runs inputs, no failure"
done
echo "fuzz: every target ran ${seconds}s with no failure"
