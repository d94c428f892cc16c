#!/usr/bin/env bash
# Plant, one at a time, each durability or availability bug the simulator must find by
# itself (scripts/planted-bugs/*.patch: the fix reverted), sweep the
# scenario that should expose it, and report the first seed that breaks a
# promised guarantee. Exits 1 if some planted bug goes unnoticed.
#
#   bash scripts/planted-bugs.sh            # seeds 0..40 per bug
#   SEEDS=0..200 bash scripts/planted-bugs.sh
#
# Works on a scratch git worktree of HEAD (so commit first), built in its
# own target-sim/ (the first build takes a few minutes, each bug then
# rebuilds only the core and the simulator). Never touches this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seeds=${SEEDS:-0..40}
scratch=$(mktemp -d)
tree="$scratch/tree"
git worktree add --detach "$tree" HEAD >/dev/null
cleanup() {
    git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT

missed=0
# name | patches (applied in order) | scenario
plant() {
    local name=$1 patches=$2
    shift 2
    (cd "$tree" && git checkout -q -- core)
    for p in $patches; do
        (cd "$tree" && git apply "$root/scripts/planted-bugs/$p")
    done
    printf '\n==> %s (%s): cargo sim run %s --seeds %s\n' "$name" "$patches" "$*" "$seeds"
    local out
    out=$(cd "$tree" && cargo sim run "$@" --seeds "$seeds" 2>&1) || true
    local first
    first=$(grep -m1 -E '^  seed [0-9]+' <<<"$out" || true)
    if [[ -n "$first" ]]; then
        echo "found:$first"
    else
        echo "NOT FOUND in seeds $seeds"
        grep -E '^(checks|verdict)' <<<"$out" || echo "$out" | tail -5
        missed=$((missed + 1))
    fi
}

plant "a node that lost its disk re-mints old dots" \
    "1-no-incarnations.patch" --faults disk-loss --level QUORUM
# Tokens are signed, so only a client that can forge one reaches the
# counter checks: planted with the signature check removed too.
plant "a context with huge counters freezes a key" \
    "3-unsigned-contexts.patch 2-unchecked-counters.patch" --faults none --level QUORUM
plant "forged contexts supersede unseen versions" \
    "3-unsigned-contexts.patch" --faults none --level QUORUM
plant "a replica acknowledges a dot it holds with other contents" \
    "1-no-incarnations.patch 4-conflicting-dots-acked.patch" --faults disk-loss --level QUORUM
plant "one key grows past every limit" \
    "5-no-key-limits.patch" --faults none --level QUORUM
# Availability, judged against the nemesis's ground truth.
plant "a coordinator needs one replica more than the level asks" \
    "6-unavailable-off-by-one.patch" --faults none --level ALL
plant "an open breaker never lets a probe through" \
    "7-breaker-never-probes.patch" --faults partitions --level QUORUM

if ((missed > 0)); then
    echo "$missed planted bug(s) went unnoticed"
    exit 1
fi
echo "every planted bug was found"
