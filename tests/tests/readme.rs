//! The README's verdict excerpt is copied from the verdict snapshot the
//! simulation suite checks: every row it shows must be a row of that
//! snapshot, so the excerpt cannot drift from what the simulator says.
use std::path::Path;

#[test]
fn the_readme_verdict_excerpt_is_rows_of_the_snapshot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let snapshot = std::fs::read_to_string(
        root.join("sim/tests/snapshots/verdicts__verdict_table_for_seeds_0_to_5.snap"),
    )
    .expect("the verdict snapshot");
    let header = readme
        .lines()
        .position(|l| l.starts_with("config ") && l.contains("W+R>N"))
        .expect("a verdict excerpt in the README");
    let rows: Vec<&str> = readme
        .lines()
        .skip(header + 1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(rows.len() >= 5, "the excerpt has {} rows", rows.len());
    let snapshot_rows: Vec<&str> = snapshot.lines().collect();
    for row in rows {
        assert!(
            snapshot_rows.contains(&row),
            "README row not in the verdict snapshot (regenerate the excerpt):\n{row}"
        );
    }
}
