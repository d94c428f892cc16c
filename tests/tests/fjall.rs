//! The fjall store under real `quorumd` processes: the flows every backend
//! passes, a lost disk (the directory deleted), nodes killed and restarted,
//! and a crash of every node at once under load.
use quorumlog_tests::scenarios::{self, run};
use quorumlog_tests::Backend;
use quorumlog_tests::{convergence, durability};

#[test]
fn fjall_curl_flows() {
    run(Backend::Fjall, "fjall-curl", scenarios::curl_flows);
}

#[test]
fn fjall_siblings_and_resolution() {
    run(Backend::Fjall, "fjall-siblings", scenarios::siblings);
}

#[test]
fn fjall_two_nodes_down_and_back() {
    run(Backend::Fjall, "fjall-fail", scenarios::failures);
}

#[test]
fn fjall_a_lost_disk_never_re_mints_a_dot() {
    run(Backend::Fjall, "fjall-lost-disk", durability::lost_disk);
}

#[test]
fn fjall_missed_writes_arrive_without_reads() {
    run(
        Backend::Fjall,
        "fjall-converge",
        convergence::missed_writes_arrive_without_reads,
    );
}

#[test]
fn fjall_a_crash_of_every_node_loses_no_acknowledged_write() {
    run(
        Backend::Fjall,
        "fjall-crash",
        durability::crash_loses_no_acknowledged_write,
    );
}
