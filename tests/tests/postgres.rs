//! Real `quorumd` processes on PostgreSQL, one database per node
//! (`scripts/setup-postgres.sh`). Without a reachable server these skip
//! with a notice, except under CI=true, where they fail.
use quorumlog_tests::scenarios::{self, run, run_with};
use quorumlog_tests::{convergence, durability};
use quorumlog_tests::{postgres, Backend};

#[test]
fn postgres_curl_flows() {
    let Some(url) = postgres() else { return };
    run(Backend::Postgres(url), "pg-curl", scenarios::curl_flows);
}

#[test]
fn postgres_siblings_and_resolution() {
    let Some(url) = postgres() else { return };
    run(Backend::Postgres(url), "pg-siblings", scenarios::siblings);
}

#[test]
fn postgres_bad_input_changes_nothing() {
    let Some(url) = postgres() else { return };
    run(Backend::Postgres(url), "pg-bad", scenarios::bad_input);
}

#[test]
fn postgres_two_nodes_down_and_back() {
    let Some(url) = postgres() else { return };
    run(Backend::Postgres(url), "pg-fail", scenarios::failures);
}

#[test]
fn postgres_a_lost_disk_never_re_mints_a_dot() {
    let Some(url) = postgres() else { return };
    run(
        Backend::Postgres(url),
        "pg-lost-disk",
        durability::lost_disk,
    );
}

#[test]
fn postgres_huge_counters_are_refused_and_the_key_stays_writable() {
    let Some(url) = postgres() else { return };
    run(Backend::Postgres(url), "pg-huge", durability::huge_counters);
}

#[test]
fn postgres_contexts_are_bound_to_their_key_and_checked() {
    let Some(url) = postgres() else { return };
    run(
        Backend::Postgres(url),
        "pg-bound",
        durability::contexts_are_bound,
    );
}

#[test]
fn postgres_a_conflicting_dot_is_refused_not_acked() {
    let Some(url) = postgres() else { return };
    run(
        Backend::Postgres(url),
        "pg-dot",
        durability::conflicting_dot,
    );
}

#[test]
fn postgres_keys_are_bounded_and_a_full_key_disturbs_nothing() {
    let Some(url) = postgres() else { return };
    run_with(
        Backend::Postgres(url),
        "pg-bounded",
        durability::BOUNDED_KEY_ARGS,
        durability::bounded_keys,
    );
}

#[test]
fn postgres_all_with_a_dead_node_answers_503() {
    let Some(url) = postgres() else { return };
    run(Backend::Postgres(url), "pg-dead", durability::dead_node_all);
}

#[test]
fn postgres_missed_writes_arrive_without_reads() {
    let Some(url) = postgres() else { return };
    run(
        Backend::Postgres(url),
        "pg-converge",
        convergence::missed_writes_arrive_without_reads,
    );
}

#[test]
fn postgres_hints_survive_a_coordinator_restart() {
    let Some(url) = postgres() else { return };
    run_with(
        Backend::Postgres(url),
        "pg-hints",
        convergence::HINTS_ONLY_ARGS,
        convergence::hints_survive_a_coordinator_restart,
    );
}
