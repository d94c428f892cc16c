//! The embedded default: real `quorumd` processes on SQLite files.
use quorumlog_tests::scenarios::{self, run, run_with};
use quorumlog_tests::Backend;
use quorumlog_tests::{convergence, durability};

#[test]
fn sqlite_curl_flows() {
    run(Backend::Sqlite, "sqlite-curl", scenarios::curl_flows);
}

#[test]
fn sqlite_siblings_and_resolution() {
    run(Backend::Sqlite, "sqlite-siblings", scenarios::siblings);
}

#[test]
fn sqlite_bench_records_a_history_that_checks() {
    run(Backend::Sqlite, "sqlite-bench", scenarios::recorded_bench);
}

#[test]
fn sqlite_a_gateway_knowing_one_node_takes_every_level() {
    run(
        Backend::Sqlite,
        "sqlite-one-gateway",
        scenarios::gateway_knowing_one_node,
    );
}

#[test]
fn sqlite_bad_input_changes_nothing() {
    run(Backend::Sqlite, "sqlite-bad", scenarios::bad_input);
}

#[test]
fn sqlite_two_nodes_down_and_back() {
    run(Backend::Sqlite, "sqlite-fail", scenarios::failures);
}

#[test]
fn sqlite_a_lost_disk_never_re_mints_a_dot() {
    run(Backend::Sqlite, "sqlite-lost-disk", durability::lost_disk);
}

#[test]
fn sqlite_huge_counters_are_refused_and_the_key_stays_writable() {
    run(Backend::Sqlite, "sqlite-huge", durability::huge_counters);
}

#[test]
fn sqlite_contexts_are_bound_to_their_key_and_checked() {
    run(
        Backend::Sqlite,
        "sqlite-bound",
        durability::contexts_are_bound,
    );
}

#[test]
fn sqlite_a_conflicting_dot_is_refused_not_acked() {
    run(Backend::Sqlite, "sqlite-dot", durability::conflicting_dot);
}

#[test]
fn sqlite_keys_are_bounded_and_a_full_key_disturbs_nothing() {
    run_with(
        Backend::Sqlite,
        "sqlite-bounded",
        durability::BOUNDED_KEY_ARGS,
        durability::bounded_keys,
    );
}

#[test]
fn sqlite_all_with_a_dead_node_answers_503() {
    run(Backend::Sqlite, "sqlite-dead", durability::dead_node_all);
}

#[test]
fn sqlite_missed_writes_arrive_without_reads() {
    run(
        Backend::Sqlite,
        "sqlite-converge",
        convergence::missed_writes_arrive_without_reads,
    );
}

#[test]
fn sqlite_hints_survive_a_coordinator_restart() {
    run_with(
        Backend::Sqlite,
        "sqlite-hints",
        convergence::HINTS_ONLY_ARGS,
        convergence::hints_survive_a_coordinator_restart,
    );
}

#[test]
fn sqlite_a_crash_of_every_node_loses_no_acknowledged_write() {
    run(
        Backend::Sqlite,
        "sqlite-crash",
        durability::crash_loses_no_acknowledged_write,
    );
}
