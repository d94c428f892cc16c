#!/usr/bin/env bash
# Plant, one at a time, each bug the simulator must find by itself
# (scripts/planted-bugs/*.patch: a fix reverted, or a one-line mutant of
# the core), sweep the scenario that should expose it and then, if that
# finds nothing, a swarm sweep; report the first seed that breaks a
# promised guarantee (only the checkers' verdicts count: no snapshot, no
# byte-identical replay) and the catch rate. With SHRINK=1 each find is
# shrunk to a minimal schedule too. Exits 1 if some planted bug goes
# unnoticed. A mutant that costs rather than breaks (no guarantee of the
# simulation can see it) is planted under the simulator's own test that
# judges the cost instead (`plant_test`), as is one that needs a moment the
# simulated runs seldom make, under core's own test. The mutants judged equivalent
# (no promise can tell them from the real code; each says why below) are
# kept and tried with EQUIVALENT=1, which fails if one of them is ever
# found: the reason given for it is then wrong.
#
#   bash scripts/planted-bugs.sh            # seeds 0..40 per bug, 0..200 of swarm
#   SEEDS=0..200 SWARM_SEEDS=0..1000 SHRINK=1 EQUIVALENT=1 bash scripts/planted-bugs.sh
#
# Works on a scratch git worktree of HEAD (so commit first), built in its
# own target-sim/ (the first build takes a few minutes, each bug then
# rebuilds only the core and the simulator). Never touches this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seeds=${SEEDS:-0..40}
swarm_seeds=${SWARM_SEEDS:-0..200}
shrink=${SHRINK:-0}
equivalent=${EQUIVALENT:-0}
scratch=$(mktemp -d)
tree="$scratch/tree"
git worktree add --detach "$tree" HEAD >/dev/null
cleanup() {
    git -C "$root" worktree remove --force "$tree" >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT

missed=0
planted=0
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
    planted=$((planted + 1))
    local first
    first=$(grep -m1 -E '^  seed [0-9]+' <<<"$out" || true)
    if [[ -z "$first" ]]; then
        echo "not in seeds $seeds of that scenario; cargo sim swarm --seeds $swarm_seeds"
        out=$(cd "$tree" && cargo sim swarm --seeds "$swarm_seeds" 2>&1) || true
        first=$(grep -m1 -E '^  seed [0-9]+' <<<"$out" || true)
    fi
    if [[ -n "$first" ]]; then
        echo "found:$first"
        if [[ "$shrink" == 1 ]]; then
            local replay
            replay=$(sed -e 's/.*replay: cargo sim replay //' <<<"$first")
            # shellcheck disable=SC2086 # the replay arguments are words
            (cd "$tree" && eval cargo sim shrink $replay --out "$scratch/shrunk.json" 2>&1 |
                grep -E '^(before|after|runs) ') || true
        fi
    else
        echo "NOT FOUND in seeds $seeds nor in swarm seeds $swarm_seeds"
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

# A mutant no guarantee can see, planted under the test that judges it:
# found if the test fails. name | patches | test name filter
plant_test() {
    local name=$1 patches=$2 test=$3
    shift 3
    # The tests to run: the simulator's own by default, or the command
    # given (core's unit tests, its tests on real TCP).
    local command=("$@")
    [[ ${#command[@]} -gt 0 ]] || command=(cargo simtest --lib)
    (cd "$tree" && git checkout -q -- core)
    for p in $patches; do
        (cd "$tree" && git apply "$root/scripts/planted-bugs/$p")
    done
    printf '\n==> %s (%s): %s -- %s\n' "$name" "$patches" "${command[*]}" "$test"
    planted=$((planted + 1))
    local out
    if out=$(cd "$tree" && "${command[@]}" -q -- "$test" 2>&1); then
        echo "NOT FOUND: $test passed"
        missed=$((missed + 1))
    elif grep -q -E "^test result: FAILED" <<<"$out"; then
        # The line after the panic's location is its assertion message.
        echo "found: $(grep -m1 -A1 "panicked at" <<<"$out" | tail -1)"
    else
        echo "NOT FOUND: the test did not run"
        echo "$out" | tail -5
        missed=$((missed + 1))
    fi
}

# A mutant judged equivalent: planted with EQUIVALENT=1, expected to go
# unnoticed; found, it counts as missed (its reason is wrong).
equivalent() {
    local name=$1 patches=$2
    shift 2
    [[ "$equivalent" == 1 ]] || return 0
    (cd "$tree" && git checkout -q -- core)
    for p in $patches; do
        (cd "$tree" && git apply "$root/scripts/planted-bugs/$p")
    done
    printf '\n==> judged equivalent: %s (%s): cargo sim run %s --seeds %s, then swarm %s\n' \
        "$name" "$patches" "$*" "$seeds" "$swarm_seeds"
    local out
    out=$(cd "$tree" && cargo sim run "$@" --seeds "$seeds" 2>&1; cargo sim swarm --seeds "$swarm_seeds" 2>&1) || true
    if grep -q -E '^  seed [0-9]+' <<<"$out"; then
        echo "FOUND, so not equivalent: $(grep -m1 -E '^  seed [0-9]+' <<<"$out")"
        missed=$((missed + 1))
    else
        echo "unnoticed, as judged"
    fi
}

# One-line mutants of the core.
# Equivalent: every dot a set records as superseded is also covered by
# the context of a version it keeps (contexts are cumulative: a write's
# context covers all its client saw), so merging the incoming versions
# removes what the incoming record would have. Unnoticed by 40 seeds of
# partitions, 300 of swarm and 160 of overwrite.
equivalent "sync forgets what the incoming set superseded" \
    "8-sync-forgets-superseded.patch" --faults partitions --level QUORUM
plant "QUORUM counts one replica short" \
    "9-quorum-off-by-one.patch" --faults partitions --level QUORUM
plant "a write is acknowledged one replica short" \
    "10-write-acked-one-short.patch" --faults partitions --level QUORUM
plant "a read answers one replica short" \
    "11-read-answered-one-short.patch" --faults partitions --level QUORUM
plant "anti-entropy skips the first differing key" \
    "12-anti-entropy-skips-a-key.patch" --faults disk-loss --level QUORUM --no-read-repair
plant "a failed commit leaves its rows in the cache" \
    "13-failed-commit-keeps-the-cache.patch" --faults crashes --level QUORUM
# Acknowledgements that misreport the write, judged at the
# acknowledgement itself (the durability checker's misreported writes).
plant "a write's acknowledgement names another sibling" \
    "15-ack-names-another-sibling.patch" --faults none --level QUORUM
plant "a write forgets the context its client sent" \
    "16-write-forgets-its-context.patch" --faults none --level QUORUM
# A read hands out a context without the dots of the siblings it
# returned: a client resolving the conflict never supersedes them.
plant "a read's context leaves out the siblings it returned" \
    "18-read-context-leaves-out-siblings.patch" --faults none --level QUORUM
# A write's answer carries a token of what the written version had seen,
# not of the siblings it lists: a client chaining writes never supersedes
# them (simulated clients chain none; the answer itself is judged).
plant "a write's token leaves out the siblings its answer lists" \
    "19-write-token-leaves-out-siblings.patch" --faults none --level QUORUM
# An overwrite that keeps what its coordinator held: its answer lists
# those siblings beside it (a malformed answer, promised at every level,
# though an overwrite promises no durability).
plant "an overwrite keeps the siblings its coordinator held" \
    "22-overwrite-keeps-the-siblings.patch" --faults none --level QUORUM --overwrite
# Read repair judged on its own, where nothing else mends the replicas
# (no anti-entropy, no hints): after the final read of a key at ALL,
# every replica must hold the same versions of it.
plant "read repair skips the replicas behind" \
    "20-read-repair-skips-the-replicas-behind.patch" --faults partitions --level QUORUM \
    --scenario '{"tuning":{"anti_entropy_ms":null,"hints":false}}'
plant "read repair runs only on conflicting answers" \
    "21-read-repair-only-on-conflicts.patch" --faults partitions --level QUORUM \
    --scenario '{"tuning":{"anti_entropy_ms":null,"hints":false}}'
# Hinted handoff judged on its own (no anti-entropy, no read repair):
# network faults lose no hint, so the replicas must come to agree.
plant "writes keep no hints for the replicas that missed them" \
    "23-writes-keep-no-hints.patch" --faults partitions --level QUORUM \
    --scenario '{"tuning":{"anti_entropy_ms":null,"read_repair":"off"}}'
# Validation too strict: a replica refuses as malformed a context naming
# another replica's dots it has not got yet, which a read under
# partitions hands out all the time (a context the cluster handed out
# must stay valid: availability).
plant "a replica refuses a context naming dots it has not got" \
    "24-context-check-refuses-other-replicas-dots.patch" --faults partitions --level QUORUM
# A write's token that names only the version written, not the siblings
# its answer lists: unseen until clients chain writes on their answers'
# tokens (simulated clients used only reads' tokens before).
plant "a write's token names only the version written" \
    "32-write-token-names-only-the-written-version.patch" --faults none --level QUORUM \
    --scenario '{"mix":{"chain_percent":60}}'
# A commit that failed may or may not have applied: taken as applied, the
# write is acknowledged by a replica that may not hold it.
plant "a failed commit is taken as applied" \
    "17-failed-commit-taken-as-applied.patch" --faults crashes --level QUORUM
# A cost, not a fault, so no guarantee sees it: the cache keeps the row
# version the update read, so the next update of the key loses its
# conditional write once, forgets the cached row and retries from the
# disk. The store's test of updates one after another counts commits.
plant_test "the cache keeps the row version an update read" \
    "14-cache-keeps-the-old-row-version.patch" updates_one_after_another_never_lose_a_race

# Moments the simulated runs seldom make, judged by core's own tests: a
# key already past a limit (limits lowered, or the union of what replicas
# took while apart), a store's optimistic attempt that lost a race and
# runs again, an apply past the replication bounds, a replay to a
# replica that never answers, a peer that half-closes its connection.
core_unit=(cargo test -p quorumlog-core --lib)
plant_test "key limits refuse a write that leaves a key past its sibling limit but with fewer" \
    "25-limits-refuse-a-resolving-write.patch" \
    a_write_that_shrinks_a_key_past_its_sibling_limit "${core_unit[@]}"
plant_test "key limits refuse a write that leaves a key past its byte limit but smaller" \
    "26-limits-refuse-a-shrinking-write.patch" \
    a_write_that_shrinks_a_key_past_its_byte_limit "${core_unit[@]}"
plant_test "an apply keeps the refusal of a store's attempt that lost a race" \
    "27-apply-keeps-a-lost-attempts-refusal.patch" \
    only_the_attempt_a_store_keeps_decides_an_apply "${core_unit[@]}"
plant_test "a write keeps the refusal of a store's attempt that lost a race" \
    "28-write-keeps-a-lost-attempts-refusal.patch" \
    only_the_attempt_a_store_keeps_decides_a_write "${core_unit[@]}"
plant_test "a write keeps the context rejection of a store's attempt that lost a race" \
    "29-write-keeps-a-lost-attempts-context-rejection.patch" \
    only_the_attempt_a_store_keeps_decides_a_write "${core_unit[@]}"
plant_test "a replica answers an apply it refused as applied" \
    "30-apply-refusal-answered-applied.patch" \
    an_apply_past_the_replication_bounds_is_answered_refused "${core_unit[@]}"
plant_test "a replayed hint is removed although its replica never acknowledged it" \
    "31-hint-removed-unacknowledged.patch" \
    a_hint_is_removed_only_once_its_replica_acknowledged_it \
    cargo test -p quorumlog-core --test rpc_tokio
plant_test "an RPC server ends a connection its peer stopped sending on without answering what is in flight" \
    "33-server-ends-without-answering-what-is-in-flight.patch" \
    a_peer_that_stops_sending_still_gets_every_answer "${core_unit[@]}"

echo
echo "caught $((planted - missed)) of $planted planted bugs (mutant 8 judged equivalent, tried with EQUIVALENT=1)"
if ((missed > 0)); then
    echo "$missed planted bug(s) went unnoticed"
    exit 1
fi
echo "every planted bug was found"
