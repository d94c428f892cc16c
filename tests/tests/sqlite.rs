//! The embedded default: real `quorumd` processes on SQLite files.
use quorumlog_tests::scenarios::{self, run};
use quorumlog_tests::Backend;

#[test]
fn sqlite_curl_flows() {
    run(Backend::Sqlite, "sqlite-curl", scenarios::curl_flows);
}

#[test]
fn sqlite_siblings_and_resolution() {
    run(Backend::Sqlite, "sqlite-siblings", scenarios::siblings);
}

#[test]
fn sqlite_bad_input_changes_nothing() {
    run(Backend::Sqlite, "sqlite-bad", scenarios::bad_input);
}

#[test]
fn sqlite_two_nodes_down_and_back() {
    run(Backend::Sqlite, "sqlite-fail", scenarios::failures);
}
