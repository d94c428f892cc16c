//! `scripts/planted-bugs.sh` reverts each durability fix with a patch and
//! shows the simulator finding it. A patch that no longer applies would
//! make that script fail to run at all, silently losing the check: every
//! patch must still apply to this tree, and the script must use it.
use std::path::Path;
use std::process::Command;

#[test]
fn every_planted_bug_patch_applies_and_is_planted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let script = std::fs::read_to_string(root.join("scripts/planted-bugs.sh"))
        .expect("scripts/planted-bugs.sh");
    let mut patches: Vec<_> = std::fs::read_dir(root.join("scripts/planted-bugs"))
        .expect("scripts/planted-bugs/")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    assert!(patches.len() >= 5, "planted bugs: {patches:?}");
    for patch in patches {
        let name = patch.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(
            script.contains(name),
            "scripts/planted-bugs.sh never plants {name}"
        );
        let check = Command::new("git")
            .current_dir(root)
            .args(["apply", "--check"])
            .arg(&patch)
            .output()
            .expect("run git apply --check");
        assert!(
            check.status.success(),
            "{name} no longer applies: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}
