//! The verdict table for a fixed seed range, as a snapshot: any change of
//! behaviour of any consistency level under any fault schedule shows up in
//! review as a diff of this table.
#![cfg(madsim)]

use quorumlog_sim::scenario::Scenario;
use quorumlog_sim::sweep::{default_jobs, Guarantee};
use quorumlog_sim::verdict::{run_table, standard_configs, standard_schedules};

#[test]
fn verdict_table_for_seeds_0_to_5() {
    let table = run_table(
        &standard_configs(5),
        &standard_schedules(),
        0..5,
        default_jobs(),
        &|| {},
    );
    assert_eq!(table.rows.len(), 42);
    assert!(
        !table.has_bugs(),
        "a configuration broke a promise:\n{}",
        table.render_text()
    );
    // Rows show stale reads and lost updates only where the configuration
    // does not promise against them; ONE under partitions shows stale
    // reads, and the table names a replay for it.
    let configs = standard_configs(5);
    let schedules = standard_schedules();
    for (i, row) in table.rows.iter().enumerate() {
        let scenario = Scenario {
            faults: schedules[i % schedules.len()],
            ..configs[i / schedules.len()].clone()
        };
        assert_eq!(row.config, scenario.levels_label());
        if Guarantee::NoLostUpdates.promised_by(&scenario) {
            assert_eq!(row.lost_updates, 0, "{row:?}");
        }
        if Guarantee::NoStaleReads.promised_by(&scenario) {
            assert_eq!(row.stale_reads, 0, "{row:?}");
        }
    }
    for faults in ["disk-loss", "all"] {
        assert!(
            table
                .rows
                .iter()
                .any(|r| r.config == "QUORUM" && r.faults == faults),
            "no QUORUM/{faults} row"
        );
    }
    // Overwrite drops the siblings its coordinator holds: shown as lost.
    let overwrite = table
        .rows
        .iter()
        .find(|r| r.config == "QUORUM overwrite" && r.faults == "none")
        .expect("an overwrite row");
    assert!(overwrite.lost_updates > 0, "{overwrite:?}");
    let one_partitions = table
        .rows
        .iter()
        .find(|r| r.config == "ONE" && r.faults == "partitions")
        .unwrap();
    let witness = one_partitions
        .witnesses
        .iter()
        .find(|w| w.guarantee == Guarantee::NoStaleReads)
        .expect("ONE under partitions read nothing stale in 5 seeds");
    assert!(witness
        .replay
        .starts_with("cargo sim replay --faults partitions --level ONE --seed "));
    // the machine-readable forms carry the same rows
    let json: serde_json::Value = serde_json::from_str(&table.to_json()).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 42);
    assert_eq!(table.to_csv().lines().count(), 43);
    insta::assert_snapshot!(table.render_text());
}
