#!/usr/bin/env bash
# QUORUM write throughput with hinted handoff and anti-entropy on (the
# defaults) against both off, in interleaved rounds on one machine: a
# 5-node `quorumd cluster` on SQLite, a fresh data directory per round,
# `quorumd bench --mix 100` (16 clients). Prints op/s per round.
#
#   bash scripts/bench-repair.sh            # 3 rounds of 15 s each
#   ROUNDS=5 SECONDS_PER_ROUND=30 bash scripts/bench-repair.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_ROUND:-15}
cargo build --release -q -p quorumd
bin=target/release/quorumd

run() { # label, then extra cluster flags
    local label=$1
    shift
    local dir
    dir=$(mktemp -d)
    "$bin" cluster --store sqlite --data-dir "$dir/data" --base-port 7501 \
        --gateway 127.0.0.1:8591 "$@" >"$dir/log" 2>&1 &
    local pid=$!
    sleep 3
    local line
    line=$("$bin" bench --url http://127.0.0.1:8591 --mix 100 --levels QUORUM \
        -d "$seconds" --no-progress 2>&1 | grep '^QUORUM |' || true)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
    printf '%-4s %s op/s\n' "$label" "$(awk -F'|' '{gsub(/ /, "", $4); print $4}' <<<"$line")"
}

for _ in $(seq "$rounds"); do
    run on
    run off --anti-entropy-interval-ms 0 --hints-max-per-replica 0
done
