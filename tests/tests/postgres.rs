//! Real `quorumd` processes on PostgreSQL, one database per node
//! (`scripts/setup-postgres.sh`). Without a reachable server these skip
//! with a notice, except under CI=true, where they fail.
use quorumlog_tests::scenarios::{self, run};
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
