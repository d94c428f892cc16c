//! The fjall store under real `quorumd` processes: nodes killed and
//! restarted, a lost disk (the directory deleted), and a crash of every
//! node at once under load. The HTTP flows every backend passes run on
//! SQLite and PostgreSQL; the store's own contract (conditional batches,
//! incarnations, hints) is checked on fjall in `stores.rs`.
use quorumlog_tests::durability;
use quorumlog_tests::scenarios::{self, run};
use quorumlog_tests::Backend;

#[test]
fn fjall_two_nodes_down_and_back() {
    run(Backend::Fjall, "fjall-fail", scenarios::failures);
}

#[test]
fn fjall_a_lost_disk_never_re_mints_a_dot() {
    run(Backend::Fjall, "fjall-lost-disk", durability::lost_disk);
}

#[test]
fn fjall_a_crash_of_every_node_loses_no_acknowledged_write() {
    run(
        Backend::Fjall,
        "fjall-crash",
        durability::crash_loses_no_acknowledged_write,
    );
}
