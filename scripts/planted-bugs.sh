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
# The scratch tree as HEAD has it, then each patch of `$1` (a list) applied.
plant_patches() {
    (cd "$tree" && git checkout -q -- core check sim history)
    local p
    for p in $1; do
        (cd "$tree" && git apply "$root/scripts/planted-bugs/$p")
    done
}
# name | patches (applied in order) | scenario
plant() {
    local name=$1 patches=$2
    shift 2
    plant_patches "$patches"
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
    plant_patches "$patches"
    printf '\n==> %s (%s): %s -- %s\n' "$name" "$patches" "${command[*]}" "$test"
    planted=$((planted + 1))
    local out
    if out=$(cd "$tree" && "${command[@]}" -q -- "$test" 2>&1); then
        # A filter that matches no test passes too: say which it was.
        if grep -q -E "^test result: ok\. [1-9]" <<<"$out"; then
            echo "NOT FOUND: $test passed"
        else
            echo "NOT FOUND: no test matched $test"
        fi
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
    plant_patches "$patches"
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

# A mutant judged equivalent where a test suite judges it: planted with
# EQUIVALENT=1, the whole suite (the command given) must still pass;
# a failing test counts as missed (its reason is wrong).
equivalent_test() {
    local name=$1 patches=$2
    shift 2
    [[ "$equivalent" == 1 ]] || return 0
    plant_patches "$patches"
    printf '\n==> judged equivalent: %s (%s): %s\n' "$name" "$patches" "$*"
    if (cd "$tree" && "$@" -q >/dev/null 2>&1); then
        echo "unnoticed, as judged"
    else
        echo "FOUND, so not equivalent: a test failed"
        missed=$((missed + 1))
    fi
}

# One-line mutants of the core.
# No simulated run sees this one: every dot a set records as superseded
# is also covered by the context of a version it keeps (contexts are
# cumulative: a write's context covers all its client saw), so merging
# the incoming versions removes what the incoming record would have
# (unnoticed by 40 seeds of partitions, 300 of swarm and 160 of
# overwrite). But a merge promises to record what the other set
# superseded, and core's test of the merge holds it to that.
plant_test "sync forgets what the incoming set superseded" \
    "8-sync-forgets-superseded.patch" \
    a_merge_that_brings_only_what_the_other_set_superseded_changes_the_set cargo test -p quorumlog-core
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


# One-line mutants of what the simulator promises and of how a history's
# findings become broken guarantees: a judge that promises less, or counts
# less as broken, hides every bug behind it. Each is judged by the
# simulator's own tests (its unit tests, or the sweeps of its suite).
plant_test "no configuration promises fresh reads" \
    "sim-01-promise-no-fresh-reads.patch" \
    guarantee::tests::each_configuration_promises_what_its_quorums_can_keep
plant_test "no configuration promises durability" \
    "sim-02-promise-no-durability.patch" \
    lost_disks_lose_no_write_acknowledged_by_two_replicas_over_500_seeds cargo simtest --test simulation
plant_test "no configuration promises convergence" \
    "sim-03-promise-no-convergence.patch" \
    hints_alone_converge_after_network_faults cargo simtest --test simulation
plant_test "no configuration promises read repair" \
    "sim-04-promise-no-read-repair.patch" \
    read_repair_alone_brings_every_key_read_at_all_to_agreement cargo simtest --test simulation
plant_test "availability is not promised" \
    "sim-05-promise-no-availability.patch" \
    guarantee::tests::each_configuration_promises_what_its_quorums_can_keep
plant_test "one stale read breaks no guarantee" \
    "sim-06-broken-one-stale-read-free.patch" \
    guarantee::tests::one_stale_read_breaks_fresh_reads
plant_test "writes acknowledged under one dot break no guarantee" \
    "sim-07-broken-ignores-durability-report.patch" \
    guarantee::tests::two_writes_acknowledged_under_one_dot_break_durability
plant_test "a misreported write breaks no guarantee" \
    "sim-08-broken-ignores-misreported.patch" \
    guarantee::tests::a_misreported_write_breaks_well_formed_answers
plant_test "fresh reads with disks lost promised only two replicas past N" \
    "sim-09-fresh-reads-with-disk-loss-stricter.patch" \
    guarantee::tests::each_configuration_promises_what_its_quorums_can_keep
plant_test "durability with disks lost promised only to writes of three replicas" \
    "sim-10-durability-needs-three.patch" \
    guarantee::tests::each_configuration_promises_what_its_quorums_can_keep
plant_test "anti-entropy promises no convergence" \
    "sim-11-convergence-only-by-hints.patch" \
    scenario::tests::hints_alone_promise_convergence_only_where_no_hint_can_be_lost
# What a run adds to its history's verdict, judged on reports built by hand.
plant_test "an acknowledged write on no store breaks no guarantee" \
    "sim-12-run-ignores-stores.patch" \
    guarantee::tests::an_acknowledged_write_on_no_store_breaks_durability
plant_test "one key past its limits breaks no guarantee" \
    "sim-13-run-one-key-over-limits-free.patch" \
    guarantee::tests::one_key_past_its_limits_breaks_bounded_keys
plant_test "replicas apart after the heal break no guarantee" \
    "sim-14-run-ignores-convergence.patch" \
    guarantee::tests::replicas_apart_after_the_heal_break_convergence
plant_test "read repair is judged broken where it does not run" \
    "sim-15-run-judges-read-repair-where-it-is-not.patch" \
    guarantee::tests::replicas_a_read_left_apart_break_read_repair_where_it_is_judged
plant_test "a refusal while reachable breaks no guarantee" \
    "sim-16-run-ignores-availability.patch" \
    guarantee::tests::one_refusal_while_reachable_breaks_availability
plant_test "durability broken by the history and the stores is listed twice" \
    "sim-17-run-lists-durability-twice.patch" \
    guarantee::tests::what_a_run_found_joins_what_its_history_broke

# One-line mutants of the checkers, each judged by the checkers' own tests
# over histories built by hand: the judges are judged too, since a checker
# blind to what it exists to report lets the core's bugs through unseen,
# here and on a real cluster's histories.
check_tests=(cargo test -p quorumlog-check)
plant_test "a write acknowledged in the microsecond a read began counts as before it" \
    "check-01-stale-ack-before-read-le.patch" \
    a_read_must_see_only_the_writes_acknowledged_before_it_began "${check_tests[@]}"
plant_test "the counters a read is taken to have seen stop one short" \
    "check-02-stale-seen-prefix-lt.patch" \
    superseded_writes_are_not_lost "${check_tests[@]}"
plant_test "a write invoked in the microsecond a read returned makes its value a phantom" \
    "check-03-stale-phantom-invoked-lt-return.patch" \
    a_read_may_return_a_write_invoked_as_it_returned "${check_tests[@]}"
plant_test "a covered sibling is found only when the covering one is listed second" \
    "check-04-stale-sibling-one-direction.patch" \
    a_covered_sibling_is_reported_in_either_order "${check_tests[@]}"
plant_test "a write of unknown outcome excuses a missed write whenever it was invoked" \
    "check-05-stale-hidden-any-time.patch" \
    a_hidden_write_excuses_a_missed_write_only_if_the_read_may_have_seen_it "${check_tests[@]}"
plant_test "a read is taken to cover an unknown dot when it covers only known ones" \
    "check-06-stale-covers-unknown-le.patch" \
    a_hidden_write_excuses_a_missed_write_only_if_the_read_may_have_seen_it "${check_tests[@]}"
plant_test "writes that certainly failed carry supersession chains" \
    "check-07-stale-chain-failed-writes.patch" \
    a_failed_write_does_not_carry_a_supersession_chain "${check_tests[@]}"
plant_test "a chain follows a writer's context as sent, not what its client was answered" \
    "check-08-stale-chain-writer-uncut.patch" \
    a_returned_version_vouches_through_its_writer_only_for_what_that_client_saw "${check_tests[@]}"
plant_test "a version is never superseded when both top writers wrote its value" \
    "check-09-stale-rule4-repeated-top-two.patch" \
    a_version_is_superseded_by_another_value_whatever_writes_of_its_own_value_sent "${check_tests[@]}"
plant_test "a chain absorbs only the writes strictly below it" \
    "check-10-stale-chain-absorb-lt.patch" \
    supersession_chains_follow_the_contexts_clients_sent "${check_tests[@]}"
plant_test "a read's siblings cover only what the last one's clock covers" \
    "check-11-common-coverage-last-context.patch" \
    a_read_covers_what_any_of_its_siblings_clocks_covers "${check_tests[@]}"
plant_test "a new top writer does not move the old one to second place" \
    "check-12-common-top-two-no-demote.patch" \
    a_version_is_superseded_by_another_value_whatever_writes_of_its_own_value_sent "${check_tests[@]}"
plant_test "only the top writer can vouch for a dot" \
    "check-13-common-covered-by-other-top-only.patch" \
    a_write_acknowledged_under_a_dot_its_client_had_seen_is_vouched_for_only_by_others "${check_tests[@]}"
plant_test "a write's own context vouches for the write" \
    "check-14-common-covered-by-self.patch" \
    a_write_acknowledged_under_a_dot_its_client_had_seen_is_vouched_for_only_by_others "${check_tests[@]}"
plant_test "a context is cut back without the answers of the write's own microsecond" \
    "check-15-common-sent-returned-before-lt.patch" \
    generated_histories_pass_every_checker "${check_tests[@]}"
plant_test "a context is cut back to the latest answer, not the highest so far" \
    "check-16-common-sent-no-running-max.patch" \
    a_client_keeps_what_it_was_answered_after_a_staler_answer "${check_tests[@]}"
plant_test "an answer's highest counter is taken as its last" \
    "check-17-common-sent-answer-last-counter.patch" \
    a_client_keeps_what_it_was_answered_after_a_staler_answer "${check_tests[@]}"
plant_test "durability is judged on the first final read, not the last" \
    "check-18-dur-first-final-read.patch" \
    durability_is_judged_on_the_last_final_read_that_succeeded "${check_tests[@]}"
plant_test "a failed final read is taken as the final read" \
    "check-19-dur-failed-final-read-counts.patch" \
    durability_is_judged_on_the_last_final_read_that_succeeded "${check_tests[@]}"
plant_test "an overwrite is reported beside another version only if it shares neither value nor dot" \
    "check-20-dur-overwrite-other-and.patch" \
    an_overwrite_acknowledged_beside_a_version_sharing_its_value_or_dot_is_reported "${check_tests[@]}"
plant_test "every write is judged as an overwrite" \
    "check-21-dur-overwrite-rule-every-write.patch" \
    a_write_that_is_not_an_overwrite_may_be_acknowledged_beside_siblings "${check_tests[@]}"
plant_test "timed-out writes are judged as acknowledged" \
    "check-22-dur-acked-includes-timeouts.patch" \
    durability_is_judged_by_the_context_the_client_sent "${check_tests[@]}"
plant_test "stores without dots: any held value vouches for a write" \
    "check-23-stores-undotted-any-held.patch" \
    stores_without_dots_are_judged_in_register_order "${check_tests[@]}"
plant_test "a timed-out operation is taken to end at its timeout" \
    "check-24-lin-timeout-returns-at-timeout.patch" \
    a_timed_out_write_may_take_effect_after_its_timeout "${check_tests[@]}"
plant_test "a context naming only known dots drops the versions of an unknown one" \
    "check-25-mv-unexplained-le.patch" \
    a_context_naming_only_known_dots_keeps_the_versions_of_unknown_dot "${check_tests[@]}"
plant_test "a compare-and-set's expected value does not count as observed" \
    "check-26-models-observed-ignores-cas-expected.patch" \
    a_timed_out_write_a_cas_expected_may_have_applied "${check_tests[@]}"
plant_test "a read's dot is trusted over its value" \
    "check-27-mv-read-dot-trusted-over-value.patch" \
    a_value_never_written_under_a_written_dot_is_not_linearizable "${check_tests[@]}"
plant_test "the availability judge counts QUORUM as half of N" \
    "check-28-avail-quorum-n-half.patch" \
    availability::tests::a_quorum_is_a_majority "${check_tests[@]}"
plant_test "a link cut one way excuses only the end it was cut from" \
    "check-29-avail-link-one-way-only.patch" \
    availability::tests::a_link_cut_one_way_excuses_both_of_its_ends "${check_tests[@]}"
plant_test "a failed final read after one that succeeded reopens the key" \
    "check-30-avail-final-read-reopened.patch" \
    availability::tests::a_final_read_that_succeeded_once_is_not_reported "${check_tests[@]}"
plant_test "under faults, timeouts and missing answers are judged as refusals" \
    "check-31-avail-timeouts-judged.patch" \
    availability::tests::under_faults_only_unavailable_answers_are_judged "${check_tests[@]}"
plant_test "a write naming an answer that handed out no context is judged by the handed-out rule" \
    "check-32-avail-handed-out-none-context.patch" \
    availability::tests::a_refusal_naming_an_answer_that_handed_out_no_context_is_not_judged "${check_tests[@]}"
plant_test "replicas agree when any of them holds what the first does" \
    "check-33-conv-any-store-agrees.patch" \
    convergence::tests::one_replica_apart_from_the_rest_is_a_disagreement "${check_tests[@]}"
plant_test "replicas are compared by dots only" \
    "check-34-conv-compare-dots-only.patch" \
    convergence::tests::another_value_under_the_same_dot_is_not_agreement "${check_tests[@]}"
plant_test "a history that is only not linearizable passes the summary" \
    "check-35-lib-ok-without-linearizability.patch" \
    a_history_that_is_only_not_linearizable_fails_the_summary "${check_tests[@]}"
plant_test "quorumd check takes an undecided key as a violation" \
    "check-36-file-undecided-is-violated.patch" \
    quorumd_check_gives_the_verdict_as_its_exit_code cargo test -p quorumlog-tests --test check_command
# Judged equivalent (see docs/simulation.md), tried with EQUIVALENT=1.
# Contexts as sent cover more than the cut-back contexts the exact search
# after this pre-filter uses, so the filter passes whatever it would have:
equivalent_test "the staleness rule's pre-filter reads contexts as sent" \
    "check-37-stale-rule4-uncut-context.patch" "${check_tests[@]}"
# Cache entries also compare the linearized set's hash, kept right, so a
# stale bit costs misses, never a wrong hit:
equivalent_test "the linearizability search's cache keeps an operation's bit on a hit" \
    "check-38-lin-cache-hit-keeps-bit.patch" "${check_tests[@]}"
# The summary also requires the durability report, which counts them:
equivalent_test "the summary leaves out misreported writes" \
    "check-39-lib-ok-without-misreported.patch" "${check_tests[@]}"

# One-line mutants of the history format (history/src/lib.rs: its parser,
# its pairing of invokes with completions, its clocks and versions), each
# judged by the history crate's and the checkers' own tests.
history_tests=(cargo test -p quorumlog-history -p quorumlog-check)
plant_test "a clock key drops its incarnation when written" \
    "history-01-key-drops-incarnation.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a clock key of incarnation 1 is written as incarnation 0" \
    "history-02-key-omits-incarnation-one.patch" \
    generated_histories_with_incarnations_pass "${history_tests[@]}"
plant_test "a clock key with a sign is read as a node id" \
    "history-03-clock-key-sign-accepted.patch" \
    tests::bad_clock_keys_are_named "${history_tests[@]}"
plant_test "a clock key's node and incarnation are read swapped" \
    "history-04-clock-key-node-and-incarnation-swapped.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a numeric clock key past a node id wraps round instead of being refused" \
    "history-05-numeric-clock-key-truncated.patch" \
    a_numeric_clock_key_past_a_node_id_is_refused_not_wrapped "${history_tests[@]}"
plant_test "a dot of incarnation 1 is written as incarnation 0" \
    "history-06-dot-omits-incarnation-one.patch" \
    generated_histories_with_incarnations_pass "${history_tests[@]}"
plant_test "a clock keeps zero entries" \
    "history-07-clock-keeps-zero-entries.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a clock built from one actor named twice keeps its lowest counter" \
    "history-08-clock-keeps-lowest-of-an-actor.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a clock counts an actor it does not name as 1" \
    "history-09-clock-get-absent-is-one.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "raising a clock's entry can lower it" \
    "history-10-bump-lowers.patch" \
    tests::clock_as_a_map::built_bumped_and_joined_as_the_map "${history_tests[@]}"
plant_test "raising a clock's entry to 0 stores a zero entry" \
    "history-11-bump-stores-zero.patch" \
    tests::clock_as_a_map::built_bumped_and_joined_as_the_map "${history_tests[@]}"
plant_test "a clock covers a dot only past its counter" \
    "history-12-covers-strict.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a clock covers a dot by its node, whatever the incarnation" \
    "history-13-covers-ignores-incarnation.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a join takes the other clock's counter, not the higher" \
    "history-14-join-takes-other-counter.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a join drops the actors only the other clock names" \
    "history-15-join-drops-new-actors.patch" \
    tests::dots_and_clocks_carry_incarnations "${history_tests[@]}"
plant_test "a clock descends from another only where it is strictly ahead" \
    "history-16-descends-strict.patch" \
    tests::clock_as_a_map::built_bumped_and_joined_as_the_map "${history_tests[@]}"
plant_test "a clock naming one actor twice is read" \
    "history-17-clock-actor-twice-accepted.patch" \
    tests::bad_clock_keys_are_named "${history_tests[@]}"
plant_test "a bad clock key is read as node 0" \
    "history-18-bad-clock-key-read-as-node-0.patch" \
    tests::bad_clock_keys_are_named "${history_tests[@]}"
plant_test "a version does not cover its own write" \
    "history-19-version-does-not-cover-itself.patch" \
    tests::round_trip_and_pairing "${history_tests[@]}"
plant_test "a version without a context covers every write" \
    "history-20-version-without-context-covers-all.patch" \
    a_version_covers_its_own_dot_and_what_its_context_covers_only "${history_tests[@]}"
plant_test "without dots, a version covers a write of any value" \
    "history-21-undotted-version-covers-any-value.patch" \
    without_dots_a_version_covers_only_a_write_of_its_own_value "${history_tests[@]}"
plant_test "errors name the line before the bad one" \
    "history-22-error-line-off-by-one.patch" \
    tests::malformed_lines_are_named "${history_tests[@]}"
plant_test "a blank line is refused" \
    "history-23-blank-line-refused.patch" \
    blank_lines_are_skipped_but_still_counted_in_line_numbers "${history_tests[@]}"
plant_test "a history of format 0 is read" \
    "history-24-format-zero-accepted.patch" \
    only_formats_one_and_two_are_read "${history_tests[@]}"
plant_test "a context_from naming no earlier operation is read" \
    "history-25-context-from-unchecked.patch" \
    tests::malformed_lines_are_named "${history_tests[@]}"
plant_test "an operation id invoked twice is read" \
    "history-26-id-invoked-twice-accepted.patch" \
    an_operation_id_invoked_twice_is_refused "${history_tests[@]}"
plant_test "an append or a cas without a value is read" \
    "history-27-append-without-value-accepted.patch" \
    a_write_append_or_cas_without_a_value_is_refused "${history_tests[@]}"
plant_test "a cas whose value is not an [expected, new] pair is read" \
    "history-28-cas-value-unchecked.patch" \
    format_one_files_still_parse_and_cas_values_are_checked "${history_tests[@]}"
plant_test "an operation completed twice is refused as never invoked" \
    "history-29-second-completion-named-never-invoked.patch" \
    an_operation_completed_twice_is_refused_as_such "${history_tests[@]}"
plant_test "an operation completed twice is read" \
    "history-30-second-completion-accepted.patch" \
    an_operation_completed_twice_is_refused_as_such "${history_tests[@]}"
plant_test "an operation completed by another client than its own is read" \
    "history-31-completion-by-another-client-accepted.patch" \
    an_operation_completed_by_another_client_is_refused "${history_tests[@]}"
plant_test "a write or an append completing with a mismatch is read" \
    "history-32-mismatch-accepted-on-writes.patch" \
    a_cas_that_observed_a_mismatch_is_checked_and_a_failed_one_is_not "${history_tests[@]}"
plant_test "an append is not taken as a mutation" \
    "history-33-append-not-a-mutation.patch" \
    a_write_append_or_cas_without_a_value_is_refused "${history_tests[@]}"
plant_test "the owned pairing takes an operation to complete when it was invoked" \
    "history-34-operations-completion-time-is-invoke-time.patch" \
    each_invoke_is_paired_with_its_own_completion_whatever_the_ids "${history_tests[@]}"
plant_test "the owned pairing drops the context a read handed out" \
    "history-35-operations-drops-read-context.patch" \
    each_invoke_is_paired_with_its_own_completion_whatever_the_ids "${history_tests[@]}"
plant_test "the owned pairing gives each completion to the last operation invoked" \
    "history-36-operations-pairs-with-last-invoke.patch" \
    an_injected_stale_read_is_rejected "${history_tests[@]}"
plant_test "the borrowed pairing indexes an id equal to the number of events as dense" \
    "history-37-refs-dense-limit-inclusive.patch" \
    cas_register_model "${history_tests[@]}"
plant_test "the borrowed pairing gives a sparse id's completion to the operation before it" \
    "history-38-refs-sparse-id-not-indexed.patch" \
    cas_register_model "${history_tests[@]}"
plant_test "the borrowed pairing drops a completion's error" \
    "history-39-refs-drops-error.patch" \
    each_invoke_is_paired_with_its_own_completion_whatever_the_ids "${history_tests[@]}"
plant_test "the borrowed pairing takes an operation to complete when it was invoked" \
    "history-40-refs-completion-time-is-invoke-time.patch" \
    a_read_must_see_only_the_writes_acknowledged_before_it_began "${history_tests[@]}"
plant_test "an operation never completed is not indeterminate" \
    "history-41-unfinished-is-not-indeterminate.patch" \
    a_hidden_write_excuses_a_missed_write_only_if_the_read_may_have_seen_it "${history_tests[@]}"
plant_test "a cas that observed a mismatch is not taken as without effect" \
    "history-42-mismatch-not-failed.patch" \
    a_cas_that_observed_a_mismatch_is_dropped_by_the_models_without_cas "${history_tests[@]}"
plant_test "an owned operation never completed is not indeterminate" \
    "history-43-owned-unfinished-is-not-indeterminate.patch" \
    an_operation_never_completed_is_indeterminate_and_a_mismatch_had_no_effect "${history_tests[@]}"
plant_test "an append writes nothing" \
    "history-44-written-ignores-appends.patch" \
    a_write_or_an_append_writes_its_value_and_nothing_else_does "${history_tests[@]}"
plant_test "cas values are written with expected and new swapped" \
    "history-45-cas-value-swapped.patch" \
    cas_register_model "${history_tests[@]}"
plant_test "a history's header is its last header event" \
    "history-46-header-is-the-last.patch" \
    the_header_is_the_first_header_event_of_a_history "${history_tests[@]}"
plant_test "an owned copy of an operation forgets when it completed" \
    "history-47-to-operation-drops-completion-time.patch" \
    each_invoke_is_paired_with_its_own_completion_whatever_the_ids "${history_tests[@]}"
plant_test "a header anywhere in a history is read" \
    "history-48-header-anywhere-accepted.patch" \
    a_header_anywhere_but_the_first_event_is_refused "${history_tests[@]}"
plant_test "a context_from naming an operation of another key is read" \
    "history-49-context-from-of-another-key-accepted.patch" \
    context_from_must_name_an_operation_of_the_same_key "${history_tests[@]}"
# Judged equivalent (see docs/simulation.md), tried with EQUIVALENT=1.
# An empty part of a clock key fails u32's own parse, with the same error
# naming the whole key, so the emptiness check only says so first:
equivalent_test "a clock key's empty node or incarnation is not refused up front" \
    "history-50-clock-key-empty-part-unchecked.patch" "${history_tests[@]}"
# Splitting at the last dot differs only for keys of two dots or more,
# and then either part holds a dot and is refused with the same error:
equivalent_test "a clock key is split at its last dot, not its first" \
    "history-51-clock-key-splits-at-last-dot.patch" "${history_tests[@]}"

# One-line mutants of the core's input boundary (context tokens, the RPC
# codec, the secure channel, stored rows, client input), each judged by
# core's own tests.
core_tests=(cargo test -p quorumlog-core)
plant_test "a context token of exactly the length limit is refused as too long" \
    "input-01-ctx-token-limit-refuses-its-own-length.patch" \
    context::tests::a_token_of_exactly_the_length_limit_is_read_not_refused_as_too_long "${core_tests[@]}"
plant_test "context tokens of any length are read" \
    "input-02-ctx-no-token-limit.patch" \
    context::tests::garbage_is_rejected_with_a_reason "${core_tests[@]}"
plant_test "a context token with space around it is refused" \
    "input-03-ctx-token-not-trimmed.patch" \
    context::tests::a_token_with_space_around_it_reads_as_the_same_context "${core_tests[@]}"
plant_test "a token of an older format is refused as of an unknown one, without asking for a new read" \
    "input-04-ctx-outdated-taken-as-unknown.patch" \
    context::tests::garbage_is_rejected_with_a_reason "${core_tests[@]}"
plant_test "a token of any format byte is read as the current format" \
    "input-05-ctx-any-format-byte.patch" \
    context::tests::garbage_is_rejected_with_a_reason "${core_tests[@]}"
plant_test "a token no longer than its tag panics the decoder" \
    "input-06-ctx-signed-part-may-be-empty.patch" \
    context::tests::a_token_no_longer_than_a_tag_is_refused_not_panicked_on "${core_tests[@]}"
plant_test "a context of exactly the entry limit is refused" \
    "input-07-ctx-entry-limit-refuses-its-own-size.patch" \
    context::tests::a_context_of_exactly_the_entry_limit_is_read_and_one_more_is_refused "${core_tests[@]}"
plant_test "contexts of any number of entries are read" \
    "input-08-ctx-no-entry-limit.patch" \
    context::tests::a_context_of_exactly_the_entry_limit_is_read_and_one_more_is_refused "${core_tests[@]}"
plant_test "a context counter of exactly the largest a node mints is refused" \
    "input-09-ctx-counter-limit-refuses-the-limit.patch" \
    context::tests::overflowing_counters_are_refused_and_named "${core_tests[@]}"
plant_test "context counters past any a node mints are read" \
    "input-10-ctx-no-counter-check.patch" \
    context::tests::overflowing_counters_are_refused_and_named "${core_tests[@]}"
plant_test "a token read from another key is taken" \
    "input-11-ctx-no-key-binding.patch" \
    context::tests::a_token_is_bound_to_its_key "${core_tests[@]}"
plant_test "the key hash ignores the order of a key's bytes: a token read from ab is taken for ba" \
    "input-12-ctx-key-hash-ignores-order.patch" \
    context::tests::a_token_read_from_another_key_is_refused_whatever_the_keys_share "${core_tests[@]}"
plant_test "a token's tag is not checked" \
    "input-13-ctx-tag-not-verified.patch" \
    context::tests::a_token_not_signed_with_the_secret_is_refused "${core_tests[@]}"
plant_test "only the first half of a token's tag is compared" \
    "input-14-ctx-half-the-tag-compared.patch" \
    context::tests::every_byte_of_the_tag_is_checked "${core_tests[@]}"
plant_test "tokens carry a 64-bit tag, not 128" \
    "input-15-ctx-64-bit-tag.patch" \
    context::tests::a_token_is_signed_with_the_first_128_bits_of_hmac_sha256 "${core_tests[@]}"
plant_test "the cached keyed HMAC is used whatever secret asks for it" \
    "input-16-ctx-keyed-mac-cached-for-any-secret.patch" \
    context::tests::a_token_not_signed_with_the_secret_is_refused "${core_tests[@]}"
plant_test "the codec reads a message with bytes after it" \
    "input-17-codec-trailing-bytes-accepted.patch" \
    codec::tests::values_round_trip_and_trailing_bytes_are_refused "${core_tests[@]}"
plant_test "a frame is taken as quorumlog's by its first magic byte alone" \
    "input-18-codec-magic-checked-by-first-byte.patch" \
    codec::tests::both_magic_bytes_must_match_for_a_frame_to_be_quorumlog "${core_tests[@]}"
plant_test "the codec's output writes only the first byte of each piece" \
    "input-19-codec-output-drops-multibyte-pieces.patch" \
    codec::tests::the_output_writes_what_postcard_writes "${core_tests[@]}"
plant_test "a legacy length prefix's byte count wraps, letting a huge count through" \
    "input-20-codec-legacy-length-bound-wraps.patch" \
    codec::tests::a_legacy_length_whose_byte_count_overflows_is_refused "${core_tests[@]}"
plant_test "legacy length prefixes are not bounded by the bytes left" \
    "input-21-codec-legacy-length-unbounded.patch" \
    codec::tests::a_huge_length_prefix_allocates_nothing "${core_tests[@]}"
plant_test "a legacy reader with bytes left is taken as finished" \
    "input-22-codec-legacy-trailing-bytes-accepted.patch" \
    codec::tests::a_legacy_reader_with_bytes_left_is_not_finished "${core_tests[@]}"
plant_test "a legacy string that is not UTF-8 is read with replacement characters" \
    "input-23-codec-legacy-string-lossy.patch" \
    codec::tests::a_legacy_string_must_be_utf8 "${core_tests[@]}"
plant_test "an empty frame on a sealed connection is read, unauthenticated" \
    "input-24-sc-empty-sealed-frame-opens.patch" \
    secure_channel::tests::an_empty_sealed_frame_fails_its_check "${core_tests[@]}"
plant_test "a sealed empty frame (a tag alone) fails its check" \
    "input-25-sc-sealed-empty-frame-refused.patch" \
    secure_channel::tests::peers_with_one_secret_agree_and_frames_of_any_size_round_trip "${core_tests[@]}"
plant_test "a frame of exactly the frame limit is refused" \
    "input-26-sc-frame-limit-refuses-its-own-size.patch" \
    rpc::tests::a_response_up_to_the_frame_limit_passes_and_one_byte_more_is_replaced "${core_tests[@]}"
plant_test "sealed frames are bounded without their tags: a frame near the limit cannot be read sealed" \
    "input-27-sc-sealed-limit-without-tags.patch" \
    secure_channel::tests::a_frame_of_exactly_the_limit_is_sent_and_read_sealed_or_plain "${core_tests[@]}"
plant_test "a sealed connection keeps the handshake's frame limit" \
    "input-28-sc-seal-with-keeps-handshake-limit.patch" \
    peers_holding_the_secret_are_served_and_nothing_travels_in_the_clear cargo test -p quorumlog-core --test secure_rpc
plant_test "the handshake binds no prologue: another protocol's handshake with the same secret is taken" \
    "input-29-sc-no-prologue.patch" \
    secure_channel::tests::a_handshake_of_another_protocol_with_the_same_secret_fails "${core_tests[@]}"
plant_test "a listener answers a hello that failed its check" \
    "input-30-sc-bad-hello-answered.patch" \
    secure_channel::tests::a_wrong_secret_fails_on_both_sides "${core_tests[@]}"
plant_test "the receiving nonce restarts at 0 for every frame" \
    "input-31-sc-receiving-nonce-reset.patch" \
    secure_channel::tests::an_altered_reordered_or_replayed_frame_fails_its_check "${core_tests[@]}"
plant_test "plain frames are bounded by the framing's default, not the limit given" \
    "input-32-sc-plain-frames-default-limit.patch" \
    rpc::tests::a_response_up_to_the_frame_limit_passes_and_one_byte_more_is_replaced "${core_tests[@]}"
plant_test "a format 2 row with bytes after it is read" \
    "input-33-row-format2-trailing-bytes-accepted.patch" \
    storage::row_format::tests::a_format_2_or_legacy_row_with_a_byte_after_it_is_corrupt "${core_tests[@]}"
plant_test "a legacy row with bytes after it is read" \
    "input-34-row-format1-trailing-bytes-accepted.patch" \
    storage::row_format::tests::a_format_2_or_legacy_row_with_a_byte_after_it_is_corrupt "${core_tests[@]}"
plant_test "legacy rows' version count is bounded by format 2's larger smallest version" \
    "input-35-row-format1-smallest-version-of-format2.patch" \
    storage::row_format::tests::a_legacy_row_of_small_versions_reads "${core_tests[@]}"
plant_test "a format 3 row is read without what it had seen" \
    "input-36-row-format3-forgets-seen.patch" \
    storage::row_format::tests::a_format_3_row_keeps_what_it_had_seen "${core_tests[@]}"
plant_test "a key of exactly the limit is refused" \
    "input-37-input-key-limit-refuses-its-own-size.patch" \
    input::tests::keys_are_printable_text_within_the_limit "${core_tests[@]}"
plant_test "the key limit counts characters, not bytes" \
    "input-38-input-key-limit-in-characters.patch" \
    input::tests::the_key_limit_counts_bytes_not_characters "${core_tests[@]}"
plant_test "a value of exactly the limit is refused" \
    "input-39-input-value-limit-refuses-its-own-size.patch" \
    input::tests::a_value_of_exactly_the_limit_is_accepted "${core_tests[@]}"
plant_test "keys refuse only ASCII control characters" \
    "input-40-input-ascii-control-only.patch" \
    input::tests::keys_are_printable_text_within_the_limit "${core_tests[@]}"
plant_test "a secret of more than 64 digits is refused as not hexadecimal, not for its length" \
    "input-41-input-secret-length-only-minimum.patch" \
    input::tests::a_secret_of_more_than_64_digits_is_refused_for_its_length "${core_tests[@]}"
# Judged equivalent, tried with EQUIVALENT=1: the whole suite must pass.
# Its body is then empty, which the codec refuses: Corrupt either way, only the
# reason's words differ.
equivalent_test "a token of its format byte and a tag alone passes the length check" "input-42-ctx-signed-part-may-be-the-format-byte-alone.patch" "${core_tests[@]}"
# Capacity only: the buffer grows by the header's three bytes, the bytes
# written are the same.
equivalent_test "a frame's buffer is reserved without room for its header" "input-43-codec-frame-capacity-without-header.patch" "${core_tests[@]}"
# snow refuses any message shorter than its tag (a decrypt error, the same
# integrity error); only an empty frame, with no message to open, needs the check.
equivalent_test "only an empty sealed frame is refused before opening" "input-44-sc-only-empty-frames-checked-before-opening.patch" "${core_tests[@]}"
# snow writes exactly the chunk and its tag and returns that length whatever
# the buffer's size, and the next chunk starts there.
equivalent_test "each chunk is sealed into the whole rest of the frame's buffer" "input-45-sc-seal-buffer-not-cut-to-chunk.patch" "${core_tests[@]}"
# A count the real bound refuses runs out of bytes reading its entries: corrupt
# either way; the reservation stays within 16 times the row.
equivalent_test "a format 2 context's entry count is bounded by one byte an entry" "input-46-row-format2-entries-bounded-by-one-byte.patch" "${core_tests[@]}"

plant_test "a commit takes one row more than MAX_BATCH" \
    "store-01-commit-batch-one-row-over.patch" \
    storage::group_commit::tests::a_commit_holds_at_most_max_batch_rows "${core_tests[@]}"
plant_test "an update a batch cannot take goes back in front of the queue, holding back the keys behind it" \
    "store-02-held-update-put-in-front.patch" \
    storage::group_commit::tests::updates_queued_behind_a_commit_share_the_next_one_row_per_key "${core_tests[@]}"
plant_test "a failed commit is answered as a lost race, so its update retries instead of reporting the error" \
    "store-03-failed-commit-taken-as-lost-race.patch" \
    storage::group_commit::tests::a_failed_commit_is_the_updates_error_and_leaves_nothing "${core_tests[@]}"
plant_test "an update takes its commit's error for a lost race and retries" \
    "store-04-update-retries-a-commit-error.patch" \
    storage::group_commit::tests::a_failed_commit_is_the_updates_error_and_leaves_nothing "${core_tests[@]}"
plant_test "the committer fills the cache instead of replacing the key's row, so the cache keeps the first row committed" \
    "store-05-commit-fills-the-cache.patch" \
    storage::group_commit::tests::updates_one_after_another_take_one_commit_each_and_read_back_the_last "${core_tests[@]}"
plant_test "a read takes its fill ticket after the database answered, so a row older than an unknown outcome fills the cache" \
    "store-06-read-ticket-after-the-read.patch" \
    storage::group_commit::tests::a_read_older_than_an_unknown_outcome_leaves_its_row_out_of_the_cache "${core_tests[@]}"
plant_test "the row cache is built with no room whatever the size asked for" \
    "store-07-cache-off.patch" \
    storage::group_commit::tests::a_committed_row_is_read_back_from_the_cache_not_the_database "${core_tests[@]}"
plant_test "an update of a key with no row expects row version 0, so it never inserts" \
    "store-08-new-key-expects-version-0.patch" \
    storage::group_commit::tests::updates_one_after_another_take_one_commit_each_and_read_back_the_last "${core_tests[@]}"
plant_test "an update expects the row version after the one it read" \
    "store-09-update-expects-next-version.patch" \
    storage::group_commit::tests::updates_one_after_another_take_one_commit_each_and_read_back_the_last "${core_tests[@]}"
plant_test "every row is written as an insert, whatever version its update read" \
    "store-10-write-always-inserts.patch" \
    storage::group_commit::tests::updates_one_after_another_take_one_commit_each_and_read_back_the_last "${core_tests[@]}"
plant_test "an update that changes nothing is committed anyway" \
    "store-11-unchanged-update-committed.patch" \
    storage::group_commit::tests::an_update_that_changes_nothing_commits_nothing "${core_tests[@]}"
plant_test "an update that loses every race gives up one commit early" \
    "store-12-retry-bound-one-short.patch" \
    storage::group_commit::tests::an_update_that_loses_every_race_gives_up_after_max_update_attempts_commits "${core_tests[@]}"
plant_test "a scan restarts at the first key whatever key it is to go on after" \
    "store-13-scan-restarts-at-the-first-key.patch" \
    storage::group_commit::tests::a_scan_goes_on_after_the_key_given "${core_tests[@]}"
plant_test "a row that lost its race is acknowledged as written when another row of its batch was" \
    "store-14-lost-row-acked-with-its-batch.patch" \
    storage::group_commit::tests::a_row_that_lost_its_race_is_merged_again_though_its_batch_landed "${core_tests[@]}"
plant_test "the committer looks one batch ahead, not two, so a round of second updates keeps the next key out of the commit" \
    "store-15-committer-looks-one-batch-ahead.patch" \
    storage::group_commit::tests::second_updates_of_a_batchs_keys_do_not_keep_the_next_key_out_of_it "${core_tests[@]}"
plant_test "a read row of exactly the cache's capacity is not cached" \
    "store-16-cache-fill-of-exactly-the-capacity-refused.patch" \
    storage::row_cache::tests::a_row_of_exactly_the_capacity_is_cached_committed_or_filled "${core_tests[@]}"
plant_test "a committed row of exactly the cache's capacity is not cached" \
    "store-17-cache-commit-of-exactly-the-capacity-refused.patch" \
    storage::row_cache::tests::a_row_of_exactly_the_capacity_is_cached_committed_or_filled "${core_tests[@]}"
plant_test "the cache evicts one row too many when exactly full" \
    "store-18-cache-evicts-at-its-budget.patch" \
    storage::row_cache::tests::a_cache_with_room_for_exactly_two_rows_keeps_both "${core_tests[@]}"
plant_test "forgetting a key that is not cached leaves the fills in flight valid" \
    "store-19-cache-forget-of-an-absent-key-keeps-tickets.patch" \
    storage::row_cache::tests::a_forget_of_a_key_not_cached_still_drops_the_fills_in_flight "${core_tests[@]}"
plant_test "a cached row's cost leaves out its key" \
    "store-20-cache-cost-leaves-out-the-key.patch" \
    storage::row_cache::tests::a_long_key_counts_against_the_budget "${core_tests[@]}"
plant_test "a fill makes room for nothing, so fills pass the byte budget" \
    "store-21-cache-fill-evicts-to-the-capacity.patch" \
    storage::row_cache::tests::fills_keep_the_byte_budget "${core_tests[@]}"
plant_test "a commit over a cached row keeps counting the old row's bytes" \
    "store-22-cache-commit-keeps-the-old-cost.patch" \
    storage::row_cache::tests::the_byte_budget_holds_however_rows_grow "${core_tests[@]}"
plant_test "a forgotten row's bytes stay counted" \
    "store-23-cache-forget-keeps-the-room.patch" \
    storage::row_cache::tests::a_forgotten_row_gives_its_room_back "${core_tests[@]}"
plant_test "an eviction leaves the fills in flight valid" \
    "store-24-cache-eviction-keeps-tickets.patch" \
    storage::row_cache::tests::a_fill_that_raced_an_eviction_is_dropped "${core_tests[@]}"
plant_test "a committed row too big to cache leaves the fills in flight valid" \
    "store-25-cache-too-big-commit-keeps-tickets.patch" \
    storage::row_cache::tests::a_committed_row_too_big_to_cache_drops_the_old_one_and_blocks_fills "${core_tests[@]}"
plant_test "a hint merge that keeps the hint's size is refused past the byte bound" \
    "store-26-hint-same-size-merge-refused.patch" \
    hints::tests::a_merge_that_keeps_the_hints_size_passes_a_bound_it_is_over "${core_tests[@]}"
plant_test "a hint merge that grows the target's hints to exactly the byte bound is refused" \
    "store-27-hint-merge-to-exactly-the-bound-refused.patch" \
    hints::tests::a_merge_up_to_exactly_the_byte_bound_is_taken "${core_tests[@]}"
plant_test "a new hint that brings the target to exactly the byte bound is refused" \
    "store-28-new-hint-of-exactly-the-bound-refused.patch" \
    hints::tests::a_new_hint_is_bounded_by_count_and_bytes "${core_tests[@]}"
plant_test "a hint exactly max_age old is expired" \
    "store-29-hint-expires-at-max-age.patch" \
    hints::tests::expiry_is_strictly_older_than_max_age "${core_tests[@]}"
plant_test "a max_age too large for milliseconds expires every hint" \
    "store-30-absurd-hint-age-expires-all.patch" \
    hints::tests::expiry_is_strictly_older_than_max_age "${core_tests[@]}"
plant_test "a hint dropped for the byte bound is not reported as a limit" \
    "store-31-only-the-count-bound-is-a-limit.patch" \
    hints::tests::both_bounds_are_limits_and_say_which "${core_tests[@]}"
plant_test "the expiry cutoff wraps below zero while now is younger than max_age" \
    "store-32-hint-expiry-cutoff-wraps.patch" \
    hints::tests::expiry_is_strictly_older_than_max_age "${core_tests[@]}"
plant_test "removing a hint from an empty backlog is not refused" \
    "store-33-hint-backlog-count-unchecked.patch" \
    hints::tests::backlog_arithmetic_is_checked "${core_tests[@]}"
# A cache requires that only this process writes the database, so a row loses only to a
# commit of this committer, which cached the newer row already: keeping it loses nothing.
equivalent_test "a row that lost its race keeps its cached row" "store-34-lost-race-keeps-the-cache.patch" "${core_tests[@]}"
# The removal count only grows and a ticket is a count taken earlier, so a count that
# differs from the ticket is always greater than it.
equivalent_test "a fill is dropped only if removals passed its ticket, not if they differ" "store-35-cache-ticket-compared-by-order.patch" "${core_tests[@]}"

# Mutants of the version algebra and the quorum arithmetic
# (core/src/version.rs, core/src/quorum.rs), judged by core's own tests:
# most of what they break no simulated run reaches (JSON keys, a peer's
# malformed map, display, a context taken from another key), and the rest
# core's tests find at once.
plant_test "a JSON key leaves out incarnation 1" \
    "version-01-json-key-drops-incarnation-one.patch" \
    json_keys_round_trip_every_incarnation_but_zero_as_a_dotted_key "${core_tests[@]}"
plant_test "a JSON key's node is read from its incarnation" \
    "version-02-json-key-node-read-from-incarnation.patch" \
    json_keys_name_the_incarnation "${core_tests[@]}"
plant_test "a compact map naming an actor twice in a row is taken as sorted" \
    "version-03-compact-decode-takes-repeats-as-sorted.patch" \
    a_compact_map_naming_an_actor_twice_in_a_row_keeps_the_last "${core_tests[@]}"
plant_test "a compact map naming an actor twice keeps the first counter" \
    "version-04-compact-decode-keeps-first-of-repeats.patch" \
    the_compact_encoding_is_the_maps_and_decodes_as_the_map_did "${core_tests[@]}"
plant_test "a zero counter is stored as an entry" \
    "version-05-bump-stores-zero-counters.patch" \
    a_zero_counter_adds_no_entry "${core_tests[@]}"
plant_test "a bump lowers an entry" \
    "version-06-bump-lowers.patch" \
    synced_agrees_with_the_reference_merge "${core_tests[@]}"
plant_test "a new actor's entry is appended out of order" \
    "version-07-bump-appends-unsorted.patch" \
    a_context_from_elsewhere_cannot_make_a_set_forget_its_dots "${core_tests[@]}"
plant_test "a vector does not cover the dot of its own counter" \
    "version-08-covers-strict.patch" \
    blind_writes_become_siblings_and_a_covering_write_resolves_them "${core_tests[@]}"
plant_test "a join leaves out the other vector's first entry" \
    "version-09-join-skips-first-entry.patch" \
    blind_writes_become_siblings_and_a_covering_write_resolves_them "${core_tests[@]}"
plant_test "descends_from checks only the actors of the descendant" \
    "version-10-descends-checks-only-own-actors.patch" \
    a_context_that_names_a_version_without_its_past_is_refused "${core_tests[@]}"
plant_test "what a context claims beyond the key includes what the key has" \
    "version-11-beyond-includes-equal.patch" \
    only_the_attempt_a_store_keeps_decides_a_write "${core_tests[@]}"
plant_test "a vector after another compares as before it" \
    "version-12-compare-before-after-swapped.patch" \
    clocks_compare_by_what_each_has_seen "${core_tests[@]}"
plant_test "concurrent vectors compare as equal" \
    "version-13-partial-cmp-concurrent-is-equal.patch" \
    clocks_compare_by_what_each_has_seen "${core_tests[@]}"
plant_test "a vector displays without the separator after its first entry" \
    "version-14-vector-display-drops-a-separator.patch" \
    a_vector_displays_each_entry_in_order "${core_tests[@]}"
plant_test "a version does not cover its own dot" \
    "version-15-version-does-not-cover-its-own-dot.patch" \
    a_version_covers_its_own_dot_and_what_it_had_seen "${core_tests[@]}"
plant_test "a version's clock leaves out its own dot" \
    "version-16-clock-leaves-out-own-dot.patch" \
    only_the_attempt_a_store_keeps_decides_a_write "${core_tests[@]}"
plant_test "a version's footprint adds one entry's bytes instead of one per context entry" \
    "version-17-footprint-context-entries-added-not-multiplied.patch" \
    a_sets_footprint_counts_its_versions_and_what_it_has_seen "${core_tests[@]}"
plant_test "a set's footprint counts its versions instead of what it has seen" \
    "version-19-set-footprint-leaves-out-seen.patch" \
    a_sets_footprint_counts_its_versions_and_what_it_has_seen "${core_tests[@]}"
plant_test "a set covers only the dots it holds, not those it superseded" \
    "version-20-set-covers-only-held-dots.patch" \
    a_set_covers_the_dots_it_superseded_as_well_as_those_it_holds "${core_tests[@]}"
plant_test "a dot held with another context or timestamp is taken as the same write" \
    "version-21-conflict-judged-by-value-alone.patch" \
    a_dot_held_with_another_context_or_timestamp_is_a_conflict "${core_tests[@]}"
plant_test "a version superseded here is merged again" \
    "version-22-superseded-version-admitted.patch" \
    stale_version_is_ignored "${core_tests[@]}"
plant_test "a merged version is appended, not put in dot order" \
    "version-24-insert-appends-unordered.patch" \
    clones_share_a_set_until_one_changes_and_a_change_reaches_no_other_clone "${core_tests[@]}"
plant_test "a merged version's own dot is recorded as superseded" \
    "version-25-insert-records-own-dot-as-seen.patch" \
    blind_writes_become_siblings_and_a_covering_write_resolves_them "${core_tests[@]}"
plant_test "a merge that brings only what the other set superseded is taken as no change" \
    "version-26-synced-ignores-a-grown-seen.patch" \
    a_merge_that_brings_only_what_the_other_set_superseded_changes_the_set "${core_tests[@]}"
plant_test "a set's context leaves out its first sibling" \
    "version-28-context-skips-the-first-sibling.patch" \
    stale_version_is_ignored "${core_tests[@]}"
plant_test "the context's length counts two incarnations of a node as one actor" \
    "version-29-context-len-counts-repeated-actors.patch" \
    the_context_length_counts_each_incarnation_as_its_own_actor "${core_tests[@]}"
plant_test "the highest counter known leaves out what the set superseded" \
    "version-30-max-counter-ignores-seen.patch" \
    a_context_from_elsewhere_cannot_make_a_set_forget_its_dots "${core_tests[@]}"
plant_test "a dot of counter MAX_COUNTER is refused" \
    "version-31-mint-refuses-max-counter.patch" \
    counters_never_overflow "${core_tests[@]}"
plant_test "a stored set is rebuilt without what it had seen" \
    "version-32-from-parts-drops-seen.patch" \
    a_stored_set_is_rebuilt_with_everything_it_had_seen "${core_tests[@]}"
plant_test "QUORUM rounds half of N up (two of four)" \
    "version-34-quorum-rounds-half-up.patch" \
    levels_for_five_replicas "${core_tests[@]}"
plant_test "a cluster of no replicas is refused as out of range, not as having none" \
    "version-35-validate-without-replicas-check.patch" \
    a_cluster_of_no_replicas_is_refused_at_every_level "${core_tests[@]}"
plant_test "a level of N replicas (ALL) is refused" \
    "version-36-validate-refuses-all.patch" \
    levels_for_five_replicas "${core_tests[@]}"
plant_test "quorums that add up to exactly N are taken as overlapping" \
    "version-37-overlapping-at-equality.patch" \
    quorums_overlap_only_when_reads_and_writes_add_up_past_n "${core_tests[@]}"
plant_test "an explicit W is taken from R" \
    "version-39-spec-w-taken-from-r.patch" \
    parse_and_validate "${core_tests[@]}"
plant_test "a spec displays the overlap the wrong way round" \
    "version-40-spec-display-relation-inverted.patch" \
    a_spec_displays_whether_its_quorums_overlap "${core_tests[@]}"
plant_test "a level with spaces around it is not parsed" \
    "version-41-level-parse-without-trim.patch" \
    levels_parse_whatever_their_case_and_surrounding_spaces "${core_tests[@]}"
# Equivalent: by then the two dots differ (equal dots answered Equal
# before), and a version covers a dot other than its own exactly when its
# context does.
equivalent_test "a version is judged after another by its context alone" \
    "version-18-version-compare-after-by-context-alone.patch" "${core_tests[@]}"
# Equivalent: a version is inserted only once admitted, and a set admits
# no dot it holds, so no held dot equals it and `<` and `<=` find the
# same place.
equivalent_test "a merged version is placed after the dots equal to it" \
    "version-23-insert-position-after-equal-dots.patch" "${core_tests[@]}"
# Equivalent: every set is built by merging (sync_one, from_parts,
# synced), which keeps no sibling its `seen` covers; so a merge that adds
# no version shortens the set only by siblings the grown `seen` covers,
# and a set that got shorter also changed `seen`. Unnoticed by 40 seeds
# of QUORUM with no faults and with partitions (with and without read
# repair), 60 of every fault family and 200 of swarm.
equivalent_test "a merge that only drops siblings is taken as no change unless seen grew" \
    "version-27-synced-ignores-a-shorter-set.patch" "${core_tests[@]}"
# Equivalent, for the same reason: no sibling of a set is covered by its
# own `seen`, so of the joined `seen` only the incoming part can supersede
# one. Unnoticed by the same sweeps.
equivalent_test "a merge prunes its siblings by the incoming set's seen alone" \
    "version-33-synced-keeps-superseded-siblings-seen-here-only.patch" "${core_tests[@]}"
# Equivalent: for one level R and W are validated alike, so W is refused
# only when R was, first: the W error is never returned.
equivalent_test "a level's W refusal is named R" \
    "version-38-from-level-names-w-as-r.patch" "${core_tests[@]}"

# Coordinator, hinted handoff, breakers, replica and client: coord-01…39.
# Found by the simulator where only it judges them (read repair alone,
# hints alone, contexts refused while reachable).
plant "a replica refuses a context that has not seen the past of versions it does not cover" \
    "coord-29-context-must-descend-every-version.patch" --faults partitions --level QUORUM
plant "a read never repairs its coordinator's own replica" \
    "coord-12-read-repair-skips-the-coordinator.patch" --faults partitions --level QUORUM \
    --scenario '{"tuning":{"anti_entropy_ms":null,"hints":false}}'
plant "background read repairs get one slot whatever the configuration" \
    "coord-14-one-background-repair-slot.patch" --faults partitions --level QUORUM \
    --scenario '{"tuning":{"anti_entropy_ms":null,"hints":false}}'
plant "replicas believed down get no hint for a write never sent to them" \
    "coord-16-peers-believed-down-get-no-hint.patch" --faults partitions --level QUORUM \
    --scenario '{"tuning":{"anti_entropy_ms":null,"read_repair":"off"}}'
# Found by core's tests that were there before.
plant_test "a read needs one replica more alive than its level asks" \
    "coord-03-read-unavailable-off-by-one.patch" \
    two_nodes_down_quorum_serves_all_is_refused_then_recovers "${core_tests[@]}"
plant_test "a read counts its replies without the coordinator's own" \
    "coord-11-read-replies-leave-out-the-coordinator.patch" \
    quorum_write_then_read_and_siblings_resolve "${core_tests[@]}"
plant_test "blocking read repairs take background slots and background ones take none" \
    "coord-15-blocking-repairs-take-slots.patch" \
    background_repairs_past_the_limit_are_skipped "${core_tests[@]}"
plant_test "a breaker is still open at the instant its open time ends" \
    "coord-24-breaker-open-at-its-end.patch" \
    breaker::tests::opens_after_threshold_and_probes_back "${core_tests[@]}"
plant_test "a success leaves a breaker's failure count as it was" \
    "coord-25-success-keeps-the-failure-count.patch" \
    breaker::tests::opens_after_threshold_and_probes_back "${core_tests[@]}"
plant_test "a breaker opens one failure past its threshold" \
    "coord-26-breaker-opens-one-failure-late.patch" \
    breaker::tests::opens_after_threshold_and_probes_back "${core_tests[@]}"
plant_test "a refused connection opens a breaker for no time" \
    "coord-27-trip-opens-for-no-time.patch" \
    breaker::tests::a_refused_connection_opens_at_once "${core_tests[@]}"
plant_test "what other replicas send is bounded by the write limits, not N times them" \
    "coord-31-apply-bounded-by-the-write-limits.patch" \
    replica::tests::a_write_that_shrinks_a_key_past_its_sibling_limit_is_taken_and_one_that_grows_it_is_not "${core_tests[@]}"
plant_test "a write is bounded by N times the key limits" \
    "coord-32-write-bounded-by-the-apply-limits.patch" \
    replica::tests::a_write_that_shrinks_a_key_past_its_sibling_limit_is_taken_and_one_that_grows_it_is_not "${core_tests[@]}"
plant_test "a key of exactly its sibling limit is refused" \
    "coord-35-sibling-limit-refuses-its-own-size.patch" \
    replica::tests::only_the_attempt_a_store_keeps_decides_a_write "${core_tests[@]}"
plant_test "a client starts at the first coordinator whatever it is given" \
    "coord-36-client-ignores-the-first-coordinator.patch" \
    a_node_that_died_is_refused_before_anything_is_sent "${core_tests[@]}"
plant_test "a client never tries the last coordinator" \
    "coord-37-client-never-tries-the-last-coordinator.patch" \
    background_repairs_past_the_limit_are_skipped "${core_tests[@]}"
# Blind spots and costs, judged by the new tests over fake replicas
# (core/tests/coordination.rs) and in replica.rs and client.rs.
plant_test "a replica's error answer counts as a success for its breaker" \
    "coord-01-replica-error-taken-as-success.patch" \
    a_replica_that_answers_errors_is_left_alone_after_the_threshold "${core_tests[@]}"
plant_test "a refused connection counts as one failure, not as down" \
    "coord-02-refused-connection-one-failure.patch" \
    a_replica_that_refuses_the_connection_is_down_at_once "${core_tests[@]}"
plant_test "a write is sent only to as many replicas as its level needs" \
    "coord-04-write-sent-only-to-its-level.patch" \
    a_write_is_sent_to_every_live_replica_whatever_its_level "${core_tests[@]}"
plant_test "a request waits for one answer more than its level needs" \
    "coord-05-gather-waits-one-answer-more.patch" \
    a_write_answers_as_soon_as_its_level_is_met "${core_tests[@]}"
plant_test "a replica that refused the connection is not counted as failed, so it gets no hint" \
    "coord-06-unreachable-replica-not-failed.patch" \
    a_replica_that_refuses_the_connection_gets_a_hint "${core_tests[@]}"
plant_test "a write replicas refused is answered as a timeout" \
    "coord-07-refusal-not-recorded.patch" \
    a_write_replicas_refuse_is_answered_refused "${core_tests[@]}"
plant_test "every read starts at the same peers" \
    "coord-09-reads-not-rotated.patch" \
    reads_spread_over_the_replicas "${core_tests[@]}"
plant_test "a read asks one peer more than its level needs" \
    "coord-10-read-asks-one-peer-more.patch" \
    a_read_asks_only_as_many_replicas_as_its_level_needs "${core_tests[@]}"
plant_test "a blocking read repair is not waited for" \
    "coord-13-blocking-repair-not-awaited.patch" \
    a_blocking_read_repair_is_done_before_the_read_answers "${core_tests[@]}"
plant_test "calls still in flight when a write answered are not followed, so their misses get no hint" \
    "coord-17-calls-in-flight-not-followed.patch" \
    a_replica_that_misses_a_write_after_it_answered_gets_a_hint "${core_tests[@]}"
plant_test "a replica that refused a write in flight gets a hint it will refuse too" \
    "coord-18-refusal-in-flight-hinted.patch" \
    a_replica_that_refused_a_write_gets_no_hint "${core_tests[@]}"
plant_test "a replay goes on past the first hint its replica failed" \
    "coord-20-replay-goes-on-past-a-failure.patch" \
    a_replay_stops_at_the_first_hint_its_replica_fails "${core_tests[@]}"
plant_test "a hint its replica refused is kept, to be refused again" \
    "coord-21-refused-hint-kept.patch" \
    a_hint_its_replica_refuses_is_dropped "${core_tests[@]}"
plant_test "hints are replayed to a replica whose breaker is open" \
    "coord-22-replay-ignores-the-breaker.patch" \
    hints_are_not_replayed_to_a_replica_whose_breaker_is_open "${core_tests[@]}"
plant_test "a replica's context checks are skipped on a key it holds nothing of" \
    "coord-28-context-checks-skipped-on-an-empty-key.patch" \
    replica::tests::a_context_may_not_claim_a_dot_of_the_replicas_own_it_never_had "${core_tests[@]}"
plant_test "an apply that changes nothing is written anyway" \
    "coord-30-unchanged-apply-written.patch" \
    replica::tests::an_apply_of_what_the_replica_already_holds_writes_nothing "${core_tests[@]}"
plant_test "a key of exactly its byte limit is refused" \
    "coord-34-byte-limit-refuses-its-own-size.patch" \
    replica::tests::a_write_that_brings_a_key_to_exactly_its_limits_is_taken "${core_tests[@]}"
plant_test "a client that finds every coordinator unavailable reports the one that saw the fewest alive" \
    "coord-38-client-reports-the-least-alive.patch" \
    a_client_that_finds_every_coordinator_unavailable_reports_the_most_alive "${core_tests[@]}"
plant_test "an unavailable answer is taken as indeterminate and a timeout as not" \
    "coord-39-unavailable-taken-as-indeterminate.patch" \
    client::tests::a_timeout_or_a_lost_answer_is_indeterminate_and_nothing_else_is "${core_tests[@]}"
# Equivalent: the hedge asks every peer not asked yet, so `next` is at the
# end of the list, and the gather's timer ignores the hedge time once no
# peer is left to ask.
equivalent_test "the hedge time is left set after the hedge" \
    "coord-08-hedge-timer-kept-after-the-hedge.patch" "${core_tests[@]}"
# Equivalent: the follow-up of a write's calls then reads answers until
# the channel closes instead of counting them; the task feeding it drops
# the sender as soon as the last call in flight ends, so it reads the same
# answers and stops at the same moment.
equivalent_test "the follow-up of a write's calls never counts them down" \
    "coord-19-in-flight-count-not-decremented.patch" "${core_tests[@]}"
# Equivalent: a write calls every live peer at once, so none is left
# never asked; only reads leave peers unasked, and reads keep no hints.
equivalent_test "peers a write never asked get no hint" \
    "coord-23-never-asked-peers-not-hinted.patch" "${core_tests[@]}"
# Equivalent: every attempt that stores nothing sets a refusal or a bad
# context, which is answered before the minted version is read, and an
# attempt that stores mints anew; the store keeps its last attempt.
equivalent_test "a write's minted version is not reset for the store's next attempt" \
    "coord-33-minted-not-reset-per-attempt.patch" "${core_tests[@]}"

# Mutants of anti-entropy (see docs/simulation.md, "Mutants of anti-entropy").
plant_test "a trie node at the deepest level is taken as invalid" \
    "ae-01-trie-node-deepest-level-invalid.patch" \
    anti_entropy::index::tests::node_bounds_cover_the_key_space "${core_tests[@]}"
plant_test "a node at the deepest level has children" \
    "ae-02-deepest-node-has-children.patch" \
    anti_entropy::index::tests::node_bounds_cover_the_key_space "${core_tests[@]}"
plant_test "the entry hash leaves out the key, so two keys that swap states cancel out" \
    "ae-05-entry-hash-leaves-out-key.patch" \
    anti_entropy::index::tests::two_keys_that_swap_states_change_the_root "${core_tests[@]}"
plant_test "a one-pass build stores nodes of exactly LEAF_ENTRIES keys" \
    "ae-06-build-stores-full-leaves.patch" \
    anti_entropy::index::tests::incremental_updates_equal_a_fresh_build "${core_tests[@]}"
plant_test "a build given a key twice keeps the earlier digest" \
    "ae-07-build-keeps-first-duplicate.patch" \
    anti_entropy::index::tests::the_root_depends_only_on_the_contents "${core_tests[@]}"
plant_test "an upsert that changes a key's digest counts it again in every stored node" \
    "ae-08-upsert-counts-changed-key.patch" \
    anti_entropy::index::tests::the_root_depends_only_on_the_contents "${core_tests[@]}"
plant_test "an upsert stores a node that reaches exactly LEAF_ENTRIES keys" \
    "ae-09-upsert-stores-at-leaf-size.patch" \
    anti_entropy::index::tests::incremental_updates_equal_a_fresh_build "${core_tests[@]}"
plant_test "a node an upsert pushes over LEAF_ENTRIES is stored summed one entry short" \
    "ae-10-upsert-sums-one-short.patch" \
    anti_entropy::index::tests::nodes_are_stored_above_the_leaf_size_and_dropped_below "${core_tests[@]}"
plant_test "a removal keeps a node stored at exactly LEAF_ENTRIES keys" \
    "ae-11-remove-keeps-full-leaf.patch" \
    anti_entropy::index::tests::incremental_updates_equal_a_fresh_build "${core_tests[@]}"
plant_test "a build puts the last position of a child's range in the next child" \
    "ae-14-build-child-split-strict.patch" \
    anti_entropy::index::tests::a_position_at_the_end_of_a_childs_range_is_summed_in_that_child "${core_tests[@]}"
plant_test "a peer refuses a request of exactly MAX_PROBES probes" \
    "ae-15-answer-refuses-full-batch.patch" \
    anti_entropy::reconcile::tests::repeated_rounds_converge "${core_tests[@]}"
plant_test "a node of exactly LEAF_ENTRIES keys is answered with its children, not its entries" \
    "ae-16-answer-children-of-full-leaf.patch" \
    anti_entropy::reconcile::tests::a_node_of_exactly_leaf_size_is_settled_in_one_round_trip "${core_tests[@]}"
plant_test "a peer lists its first child as present even when it is empty" \
    "ae-17-answer-lists-empty-children.patch" \
    anti_entropy::reconcile::tests::a_child_the_peer_lacks_is_settled_without_asking "${core_tests[@]}"
plant_test "the walk sends one request more than its budget" \
    "ae-18-walk-one-request-over-budget.patch" \
    anti_entropy::reconcile::tests::the_budget_is_respected "${core_tests[@]}"
plant_test "the walk probes every pending node in one request, past MAX_PROBES" \
    "ae-19-walk-batch-unbounded.patch" \
    anti_entropy::reconcile::tests::repeated_rounds_converge "${core_tests[@]}"
plant_test "children listed for a node at the deepest level are accepted" \
    "ae-20-deepest-children-accepted.patch" \
    anti_entropy::reconcile::tests::children_of_the_deepest_level_are_refused "${core_tests[@]}"
plant_test "a peer's list repeating a key is accepted" \
    "ae-21-repeated-entry-accepted.patch" \
    anti_entropy::reconcile::tests::a_key_listed_twice_is_refused "${core_tests[@]}"
plant_test "a peer's list of exactly MAX_ENTRIES_PER_NODE entries is refused" \
    "ae-22-full-entry-list-refused.patch" \
    anti_entropy::reconcile::tests::an_entry_list_of_exactly_the_limit_is_taken "${core_tests[@]}"
plant_test "a key of exactly MAX_KEY_LEN bytes from a peer is refused" \
    "ae-23-longest-key-refused.patch" \
    anti_entropy::reconcile::tests::a_key_of_the_longest_length_is_compared "${core_tests[@]}"
plant_test "a child the peer holds nothing of is probed instead of settled locally" \
    "ae-24-empty-peer-child-probed.patch" \
    anti_entropy::reconcile::tests::a_child_the_peer_lacks_is_settled_without_asking "${core_tests[@]}"
plant_test "local keys past the end of a peer's cut list are reported as held only here" \
    "ae-25-truncated-list-reports-rest.patch" \
    anti_entropy::reconcile::tests::keys_past_a_cut_list_are_left_for_later "${core_tests[@]}"
plant_test "a key only the peer holds is reported as held only here" \
    "ae-26-peer-key-reported-as-local.patch" \
    anti_entropy::reconcile::tests::finds_exactly_the_differing_keys "${core_tests[@]}"
plant_test "a walk that met a cut list is reported complete" \
    "ae-27-truncated-walk-complete.patch" \
    anti_entropy::reconcile::tests::a_truncated_list_is_incomplete "${core_tests[@]}"
plant_test "the walk notes one differing key more than its budget" \
    "ae-28-note-one-key-over-budget.patch" \
    anti_entropy::reconcile::tests::the_budget_is_respected "${core_tests[@]}"
plant_test "the walk probes a node's children last first" \
    "ae-29-walk-children-reverse-order.patch" \
    anti_entropy::reconcile::tests::a_small_budget_finds_the_first_differences_in_position_order "${core_tests[@]}"
plant_test "a key's digest takes versions in the order the set holds them" \
    "ae-31-digest-unsorted.patch" \
    anti_entropy::digest::tests::the_digest_sorts_versions_itself "${core_tests[@]}"
plant_test "a key's digest leaves out each value's length" \
    "ae-32-digest-no-value-length.patch" \
    anti_entropy::digest::tests::a_value_cannot_spill_into_what_follows_it "${core_tests[@]}"
plant_test "a key's digest orders versions by dot alone" \
    "ae-33-canonical-order-dot-only.patch" \
    anti_entropy::digest::tests::a_set_holding_one_dot_twice_digests_the_same_in_either_order "${core_tests[@]}"
plant_test "a key's digest leaves out the incarnations in its version vectors" \
    "ae-34-vector-no-incarnation.patch" \
    anti_entropy::digest::tests::an_actors_incarnation_in_a_vector_is_in_the_digest "${core_tests[@]}"
plant_test "a key recorded again keeps its earlier waiting state" \
    "ae-35-replaced-state-kept-earlier.patch" \
    anti_entropy::deferred::tests::updates_wait_until_a_read "${core_tests[@]}"
plant_test "a key recorded again counts its replaced state's bytes too" \
    "ae-36-replaced-bytes-counted-twice.patch" \
    anti_entropy::deferred::tests::a_key_recorded_over_and_over_counts_only_its_last_state "${core_tests[@]}"
plant_test "waiting updates are flushed at exactly MAX_DEFERRED_KEYS keys" \
    "ae-37-flush-at-key-bound.patch" \
    anti_entropy::deferred::tests::too_many_waiting_keys_are_recorded_without_a_read "${core_tests[@]}"
plant_test "waiting updates are flushed at exactly MAX_DEFERRED_BYTES bytes" \
    "ae-38-flush-at-byte-bound.patch" \
    anti_entropy::deferred::tests::updates_of_exactly_the_byte_bound_still_wait "${core_tests[@]}"
plant_test "a flush leaves the waiting byte count as it was" \
    "ae-40-flush-keeps-byte-count.patch" \
    anti_entropy::deferred::tests::too_many_waiting_bytes_are_recorded_without_a_read "${core_tests[@]}"
plant_test "an anti-entropy round gives up when the peer whose turn it is has its breaker open" \
    "ae-41-round-skips-blocked-peer.patch" \
    a_round_passes_over_a_peer_whose_breaker_is_open "${core_tests[@]}"
plant_test "a round repairs up to the default 1024 keys whatever its configured limit" \
    "ae-43-round-budget-default-keys.patch" \
    a_round_repairs_at_most_its_configured_keys "${core_tests[@]}"
plant_test "a key anti-entropy cannot merge ends its round" \
    "ae-44-repair-refusal-ends-round.patch" \
    a_key_that_cannot_be_merged_does_not_hold_back_the_keys_after_it "${core_tests[@]}"
# Positions are compared only between replicas running the same function, and little-
# endian is another fixed bijection of the same eight hash bytes: keys spread as evenly,
# and every node still names the same key range on every replica.
equivalent_test "a key's trie position reads the hash's first bytes little-endian" "ae-03-position-little-endian.patch" "${core_tests[@]}"
# The digest after the key is a fixed 16 bytes, so key and digest are already told apart
# without the length: the hashed message stays injective.
equivalent_test "the entry hash leaves out the key's length" "ae-04-entry-hash-no-key-length.patch" "${core_tests[@]}"
# Only nodes above LEAF_ENTRIES keys are stored (builds and updates keep that exactly,
# `Index::check`), so an unstored node holds at most LEAF_ENTRIES entries and the cap
# never cuts its sum.
equivalent_test "an unstored node's summary sums at most LEAF_ENTRIES entries" "ae-12-summary-scans-leaf-size.patch" "${core_tests[@]}"
# The first position is the prefix shifted up past the span's bits, which are all zero
# there, so adding the span and OR-ing it give the same number.
equivalent_test "a node's last position is its first plus the span rather than OR-ed with it" "ae-13-bounds-add-span.patch" "${core_tests[@]}"
# No replica holds such a set: a set starts empty and changes only by merging versions,
# and a merge drops a version only for one that superseded it, which it keeps; so a set
# that has seen anything holds a version (there are no deletes). Only a corrupt peer
# could send one.
equivalent_test "a set with no versions is absent whatever it has seen" "ae-30-absent-ignores-seen.patch" "${core_tests[@]}"
# The newer state stays waiting and the next flush, which runs before any later read,
# records it; the read this flush serves sees the state the batch held instead of the one
# before it, and both are states the key had before that read began.
equivalent_test "a flush records a key's digested state though a writer recorded a newer one meanwhile" "ae-39-flush-records-superseded.patch" "${core_tests[@]}"
# A walk stops with nothing found only when it may note no key at all: with an honest peer
# it goes depth-first and reaches a leaf, and so a differing key, within 17 requests of
# the 64 allowed; `quorumd` refuses `--anti-entropy-max-keys 0` and the simulator uses
# 256.
equivalent_test "a round counts as agreement a walk that stopped at its budget with nothing found" "ae-42-agreed-without-complete-walk.patch" "${core_tests[@]}"

# One-line mutants of the RPC layer (core/src/rpc.rs).
plant_test "a request's description marks a key of exactly the quoted length as cut" \
    "rpc-01-description-ellipsis-at-exact-length.patch" \
    rpc::tests::requests_are_described_by_kind_and_the_start_of_the_key "${core_unit[@]}"
plant_test "a response of exactly the frame limit is replaced by an error" \
    "rpc-02-response-at-the-limit-replaced.patch" \
    rpc::tests::a_response_up_to_the_frame_limit_passes_and_one_byte_more_is_replaced "${core_unit[@]}"
plant_test "an RPC server serves one connection past its limit" \
    "rpc-03-one-connection-past-the-limit.patch" \
    connections_past_the_limit_are_closed_and_the_slot_comes_back cargo test -p quorumlog-core --test rpc_tokio
plant_test "an RPC server forgets its live connections, and leaves them open at shutdown" \
    "rpc-04-shutdown-forgets-live-connections.patch" \
    a_node_that_died_is_refused_before_anything_is_sent cargo test -p quorumlog-core --test rpc_tokio
plant_test "every successful frame write closes the connection's writer" \
    "rpc-05-every-write-closes-the-writer.patch" \
    rpc::tests::a_peer_that_stops_sending_still_gets_every_answer "${core_unit[@]}"
plant_test "the rest of a frame whose writer gave up is never flushed" \
    "rpc-06-abandoned-frame-never-flushed.patch" \
    rpc::tests::a_frame_whose_caller_gave_up_mid_write_is_still_sent_whole "${core_unit[@]}"
plant_test "an RPC server takes any frame, not only the first, for a cluster handshake" \
    "rpc-07-every-frame-checked-as-handshake.patch" \
    a_handshake_after_the_first_frame_is_refused_as_another_protocol cargo test -p quorumlog-core --test rpc_calls
plant_test "a frame over a connection's byte limit waits for ever instead of running alone" \
    "rpc-08-frame-over-byte-limit-never-runs.patch" \
    rpc::tests::a_connection_at_its_byte_limit_waits_and_a_larger_frame_runs_alone "${core_unit[@]}"
plant_test "a connection takes one request past its in-flight limit" \
    "rpc-09-request-limit-one-over.patch" \
    rpc::tests::a_connection_at_its_request_limit_takes_the_next_only_when_one_ends "${core_unit[@]}"
plant_test "requests that fill a connection's byte limit exactly are held back" \
    "rpc-10-byte-limit-exact-fit-waits.patch" \
    rpc::tests::a_connection_at_its_byte_limit_waits_and_a_larger_frame_runs_alone "${core_unit[@]}"
# Equivalent: every share holds at least one byte (a frame's size is clamped to
# at least 1), and a share's request and bytes are taken and given back together
# under one lock, so no request is held exactly when no byte is.
equivalent_test "drained waits for the bytes held rather than the requests" \
    "rpc-11-drained-by-bytes.patch" "${core_tests[@]}"
# Equivalent: once the reader has waited, every later release leaves a wake-up
# it need not; the reader's next wait (for a share, or for the last answers)
# then wakes once for nothing, checks the counts under the lock again and
# waits again. Only a spurious wake-up, which no outcome shows.
equivalent_test "a released share wakes the reader every time once it has waited" \
    "rpc-12-release-wakes-every-time.patch" "${core_tests[@]}"
plant_test "a connection held back at its in-flight limit counts as idle and is closed" \
    "rpc-13-held-back-counts-as-idle.patch" \
    a_connection_held_back_at_its_limit_is_not_idle cargo test -p quorumlog-core --test rpc_calls
plant_test "the idle watchdog counts from the connection's start, not its last frame" \
    "rpc-14-awaiting-since-reversed.patch" \
    a_connection_is_idle_only_after_a_timeout_with_no_frame cargo test -p quorumlog-core --test rpc_tokio
plant_test "an earlier deadline does not move the connection's timer" \
    "rpc-15-timer-not-moved-earlier.patch" \
    rpc::tests::each_call_times_out_at_its_own_deadline_on_a_shared_connection "${core_unit[@]}"
plant_test "the connection's timer keeps a deadline that has passed, so a later call never times out" \
    "rpc-16-timer-keeps-a-passed-deadline.patch" \
    a_call_after_an_earlier_one_timed_out_still_times_out cargo test -p quorumlog-core --test rpc_calls
plant_test "a refused connect is reported as a connect that timed out" \
    "rpc-17-connect-error-not-refused.patch" \
    a_node_that_died_is_refused_before_anything_is_sent cargo test -p quorumlog-core --test rpc_tokio
plant_test "a client that never connected reports a lost connection" \
    "rpc-18-never-connected-counts-as-lost.patch" \
    a_client_that_never_connected_has_lost_no_connection cargo test -p quorumlog-core --test rpc_calls
plant_test "callers that waited for a connection being made each dial one of their own" \
    "rpc-19-waiting-dialers-dial-again.patch" \
    one_connection_has_at_most_its_limit_of_requests_in_flight cargo test -p quorumlog-core --test rpc_tokio
plant_test "an RPC client numbers its calls from 0, the id of a server's refusal" \
    "rpc-20-call-ids-from-zero.patch" \
    frames_up_to_the_limit_pass_both_ways cargo test -p quorumlog-core --test rpc_tokio
plant_test "a request of exactly the frame limit is refused as too large" \
    "rpc-21-request-at-the-limit-refused.patch" \
    a_request_of_exactly_the_frame_limit_is_sent cargo test -p quorumlog-core --test rpc_calls
plant_test "a call whose deadline passed is dropped instead of told, and reports a lost connection" \
    "rpc-22-expired-caller-not-told.patch" \
    rpc::tests::each_call_times_out_at_its_own_deadline_on_a_shared_connection "${core_unit[@]}"
plant_test "an RPC client leaves its socket open after its peer's frame was unreadable" \
    "rpc-23-reader-leaves-write-half-open.patch" \
    a_client_closes_its_socket_when_its_peer_sends_an_unreadable_frame cargo test -p quorumlog-core --test rpc_calls
# Equivalent: a frame header's argument is only the capacity its buffer
# starts with; the id and the body are appended whatever it is, so the frame's
# bytes are the same (one more reallocation, for the id's few bytes).
equivalent_test "a request encoded once reserves room for its body only" \
    "rpc-24-encoded-frame-reserves-body-only.patch" "${core_tests[@]}"
plant_test "a node without a cluster secret looks for a handshake only when it has one" \
    "rpc-25-handshake-check-needs-a-secret.patch" \
    a_dialer_with_a_secret_is_told_the_node_has_none cargo test -p quorumlog-core --test secure_rpc
plant_test "a flush that finished an abandoned frame ends the connection" \
    "rpc-26-finished-flush-ends-the-connection.patch" \
    rpc::tests::a_frame_whose_caller_gave_up_mid_write_is_still_sent_whole "${core_unit[@]}"
plant_test "an RPC client forgets that its peer speaks another protocol, and reports a lost connection" \
    "rpc-27-client-forgets-why-its-peer-is-unreadable.patch" \
    a_client_told_of_another_protocol_version_says_so cargo test -p quorumlog-core --test rpc_tokio
# Equivalent: closing a connection drops every waiter, and each caller's
# registration removes its own deadline as its call returns; the timer finds
# no waiter for a deadline left behind. Nothing a caller sees changes.
equivalent_test "a closed connection keeps its callers' deadlines" \
    "rpc-28-close-keeps-deadlines.patch" "${core_tests[@]}"

# A node's dispatch (core/src/node.rs), the Store contract and MemoryStore
# with its hints (core/src/store.rs), and the protocol's names
# (core/src/protocol.rs): node-01…31. Found by the simulator: the
# simulated nodes open on their stores with the scenario's key limits
# (seed 10 of QUORUM with no faults: keys over their limits).
plant "a node opened on a store bounds applies by the default key limits" \
    "node-02-open-ignores-the-key-limits.patch" --faults none --level QUORUM
# Found by core's tests that were there before.
plant_test "a node's background work (hint replay, anti-entropy) never runs" \
    "node-03-maintenance-never-runs.patch" \
    replicas_that_missed_writes_get_them_from_hints_without_reads "${core_tests[@]}"
plant_test "the in-memory store writes a key only when the update changed nothing" \
    "node-07-update-stores-only-unchanged-sets.patch" \
    node::tests::an_apply_past_the_replication_bounds_is_answered_refused_and_nothing_is_stored "${core_tests[@]}"
plant_test "an update that changes nothing of an absent key stores it empty" \
    "node-08-unchanged-update-stores-an-empty-key.patch" \
    node::tests::an_apply_past_the_replication_bounds_is_answered_refused_and_nothing_is_stored "${core_tests[@]}"
plant_test "a hint that already holds what is put is reported stored, not merged" \
    "node-16-unchanged-hint-reported-stored.patch" \
    store::tests::a_second_miss_of_a_key_merges_into_its_hint "${core_tests[@]}"
plant_test "a hint's generation is not advanced when a write merges into it" \
    "node-17-hint-generation-not-advanced.patch" \
    store::tests::removing_a_hint_read_before_a_merge_keeps_the_merge "${core_tests[@]}"
plant_test "reading one target's hints expires every target's" \
    "node-18-hint-read-expires-every-targets-hints.patch" \
    store::tests::expired_hints_are_dropped_on_read_on_put_and_when_asked "${core_tests[@]}"
plant_test "a target's hints are read without the oldest" \
    "node-19-hint-read-skips-the-oldest.patch" \
    store::tests::hints_come_oldest_first_up_to_the_limit "${core_tests[@]}"
plant_test "a hint is removed whatever generation it was read at" \
    "node-20-hint-removed-whatever-its-generation.patch" \
    store::tests::removing_a_hint_read_before_a_merge_keeps_the_merge "${core_tests[@]}"
plant_test "the in-memory store expires a hint exactly max_age old" \
    "node-21-memory-hint-expires-at-max-age.patch" \
    store::tests::expired_hints_are_dropped_on_read_on_put_and_when_asked "${core_tests[@]}"
plant_test "one target's hints run on into the targets after it" \
    "node-22-target-hints-run-into-later-targets.patch" \
    store::tests::hints_come_oldest_first_up_to_the_limit "${core_tests[@]}"
plant_test "hint generations never advance" \
    "node-23-hint-generations-never-advance.patch" \
    store::tests::removing_a_hint_read_before_a_merge_keeps_the_merge "${core_tests[@]}"
plant_test "a merged hint is not written over the one held" \
    "node-25-merged-hint-not-written.patch" \
    store::tests::a_second_miss_of_a_key_merges_into_its_hint "${core_tests[@]}"
plant_test "a node built new ignores its configured key limits" \
    "node-26-new-ignores-the-key-limits.patch" \
    node::tests::an_apply_past_the_replication_bounds_is_answered_refused_and_nothing_is_stored "${core_tests[@]}"
plant_test "a node serves without its cluster secret" \
    "node-27-server-ignores-the-cluster-secret.patch" \
    a_secured_cluster_replicates_and_refuses_another_secret "${core_tests[@]}"
plant_test "a target's hints are read newest first" \
    "node-28-hints-read-newest-first.patch" \
    store::tests::hints_come_oldest_first_up_to_the_limit "${core_tests[@]}"
plant_test "expired hints are reported without their bytes" \
    "node-29-expired-hints-reported-without-bytes.patch" \
    store::tests::expired_hints_are_dropped_on_read_on_put_and_when_asked "${core_tests[@]}"
# Found only by the new tests in core/tests/node_dispatch.rs.
plant_test "a node opened on a store mints in the fresh incarnation, not the one recorded" \
    "node-01-open-mints-in-the-fresh-incarnation.patch" \
    a_node_opened_on_a_store_mints_in_the_incarnation_the_store_recorded "${core_tests[@]}"
plant_test "a fetch the store cannot read is answered as an empty key" \
    "node-05-unreadable-fetch-answered-empty.patch" \
    a_fetch_the_store_cannot_read_is_answered_as_an_error_not_as_an_empty_key "${core_tests[@]}"
plant_test "the in-memory store lists its keys without the first" \
    "node-09-keys-skip-the-first.patch" \
    keys_and_scan_list_every_key_once_in_order "${core_tests[@]}"
# Before the new test, only a hang in core/tests/rpc_tokio.rs (an index
# build scanning the same key for ever) showed this one.
plant_test "a scan page starts at the key it should start after" \
    "node-10-scan-repeats-the-key-it-starts-after.patch" \
    keys_and_scan_list_every_key_once_in_order "${core_tests[@]}"
plant_test "a scan page of at most zero keys holds one" \
    "node-11-scan-page-of-zero-holds-one.patch" \
    keys_and_scan_list_every_key_once_in_order "${core_tests[@]}"
plant_test "the in-memory store never records its incarnation" \
    "node-12-incarnation-never-recorded.patch" \
    a_store_keeps_the_incarnation_it_recorded_first "${core_tests[@]}"
plant_test "the in-memory store takes the fresh incarnation with data and 0 without" \
    "node-13-incarnation-fresh-and-zero-swapped.patch" \
    a_store_keeps_the_incarnation_it_recorded_first "${core_tests[@]}"
plant_test "putting a hint expires every target's hints, unreported" \
    "node-14-hint-put-expires-every-targets-hints.patch" \
    a_put_expires_only_its_own_targets_hints "${core_tests[@]}"
plant_test "a hint merge is bounded as if the held hint stayed beside it" \
    "node-15-hint-merge-counts-the-held-hint-twice.patch" \
    a_merge_is_bounded_by_what_the_merged_hint_replaces "${core_tests[@]}"
plant_test "a timeout does not say that one replica refused the connection" \
    "node-24-timeout-note-left-out-for-one.patch" \
    a_timeout_names_how_many_replicas_refused_the_connection "${core_tests[@]}"
plant_test "a half-open breaker is named open" \
    "node-30-half-open-breaker-named-open.patch" \
    breaker_states_have_distinct_names "${core_tests[@]}"
plant_test "the in-memory store judges an empty store as holding data" \
    "node-31-incarnation-data-check-inverted.patch" \
    a_store_keeps_the_incarnation_it_recorded_first "${core_tests[@]}"
# Equivalent: a coordinated read sent through `Node::answer` is boxed
# there and runs the same `coordinator.read`; only the size of the
# request's future allocation differs.
equivalent_test "a coordinated read is dispatched through the boxed answer" \
    "node-04-read-dispatched-through-the-boxed-answer.patch" "${core_tests[@]}"
# Equivalent: `Replica::apply` returns only `Store` or `Refused` errors;
# `BadContext` comes from a coordinated write's context check, which an
# apply never makes.
equivalent_test "an apply's context error is answered applied" \
    "node-06-apply-context-error-answered-applied.patch" "${core_tests[@]}"

echo
echo "caught $((planted - missed)) of $planted planted bugs (judged equivalent and tried with EQUIVALENT=1: three mutants of the checkers, check-37 to check-39; two of the history format, history-50 and history-51; five of the input boundary, input-42 to input-46; two of the storage layer, store-34 and store-35; five of the version algebra and the quorum arithmetic, version-18, 23, 27, 33 and 38; four of the coordinator, hinted handoff, breakers, replica and client, coord-08, 19, 23 and 33; seven of anti-entropy, ae-03, 04, 12, 13, 30, 39 and 42; four of the RPC layer, rpc-11, 12, 24 and 28; two of the node, node-04 and node-06)"
if ((missed > 0)); then
    echo "$missed planted bug(s) went unnoticed"
    exit 1
fi
echo "every planted bug was found"
