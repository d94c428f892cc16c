//! `scripts/compare-sim-speed.py`, which times simulator builds against
//! each other in alternating rounds: it times every build every round,
//! refuses to compare builds whose reports differ (they do different
//! work), and refuses bad arguments by name.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

#[path = "support/outcome.rs"]
mod support;

fn compare(args: &[&str]) -> (i32, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/compare-sim-speed.py");
    support::outcome(
        Command::new("python3").arg(script).args(args),
        "python3 with the script",
    )
}

/// A stand-in build, by path: prints `verdict` as its report, then a
/// timing line.
fn stand_in(name: &str, verdict: &str, speed: f64) -> String {
    let dir = std::env::temp_dir().join(format!("compare-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\necho 'verdict    {verdict}'\n\
         echo 'seeds      0..2 (2 runs in 0.1s, 20.0 seeds/s; 0.1 s CPU, {speed:.1} seeds per CPU-second)'\n"
    );
    std::fs::write(&path, script).expect("write stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_string_lossy().into_owned()
}

// The simulator itself exists only under `--cfg madsim` (`cargo simtest`);
// the normal build's `quorumsim` only says so. The other tests use
// stand-ins and run in both.
#[cfg(madsim)]
#[test]
fn one_build_against_itself_is_timed_every_round_and_does_the_same_work() {
    let build = env!("CARGO_BIN_EXE_quorumsim");
    let (code, stdout, stderr) = compare(&["--rounds", "2", "--seeds", "0..2", build, build]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stderr.matches("round ").count(), 2, "{stderr}");
    assert!(stdout.contains("of 2 rounds"), "{stdout}");
    assert!(
        stdout.contains("reports: the same from every binary (0..2, every fault family)"),
        "{stdout}"
    );
}

#[test]
fn the_figures_are_each_builds_own_and_the_ratio_is_against_the_first() {
    let slow = stand_in("slow", "held", 80.0);
    let fast = stand_in("fast", "held", 100.0);
    let (code, stdout, stderr) = compare(&["--rounds", "3", &slow, &fast]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
            .to_string()
    };
    assert!(row(&slow).contains("80.0    80.0    80.0"), "{stdout}");
    assert!(
        row(&fast).contains("faster in 3 of 3 rounds, median ratio 1.250"),
        "{stdout}"
    );
}

/// `--at-least` counts each build's rounds at or above the figure, the
/// figure itself included.
#[test]
fn rounds_at_or_above_a_figure_are_counted_for_each_build() {
    let below = stand_in("below", "held", 99.9);
    let at = stand_in("at", "held", 100.0);
    let (code, stdout, stderr) = compare(&["--rounds", "2", "--at-least", "100", &below, &at]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("rounds at or above 100 seeds per CPU-second:"),
        "{stdout}"
    );
    // The counts follow their heading, one indented line per build.
    let count = |name: &str| {
        stdout
            .lines()
            .skip_while(|line| !line.starts_with("rounds at or above"))
            .find_map(|line| line.trim_start().strip_prefix(name))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("no count for {name}: {stdout}"))
    };
    assert_eq!(count(&below), "0 of 2", "{stdout}");
    assert_eq!(count(&at), "2 of 2", "{stdout}");
    // Without the flag, no such lines.
    let (_, plain, _) = compare(&["--rounds", "1", &below, &at]);
    assert!(!plain.contains("at or above"), "{plain}");
}

#[test]
fn builds_that_report_differently_are_not_compared() {
    let held = stand_in("held", "every promised guarantee held", 90.0);
    let broken = stand_in("broken", "a guarantee was broken", 95.0);
    let (code, stdout, stderr) = compare(&["--rounds", "1", &held, &broken]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("reports differ"), "{stdout}");
    assert!(stdout.contains(&broken), "{stdout}");
}

#[test]
fn help_says_what_the_exit_codes_mean() {
    let (code, stdout, stderr) = compare(&["--help"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("exits 1 if any differs"), "{stdout}");
    assert!(
        stdout.contains("Exit 2: bad arguments, or a binary that gave no timing line"),
        "{stdout}"
    );
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let build = env!("CARGO_BIN_EXE_quorumsim");
    for (args, named) in [
        (vec!["--rounds", "0", build], "--rounds"),
        (vec!["--rounds", "many", build], "--rounds"),
        (vec!["--seeds", "3..3", build], "--seeds"),
        (vec!["--seeds", "0-150", build], "--seeds"),
        (vec!["--at-least", "0", build], "--at-least"),
        (vec!["--at-least", "fast", build], "--at-least"),
        (vec!["--at-least", "nan", build], "--at-least"),
        (vec!["/no/such/build"], "is not an executable file"),
    ] {
        let (code, stdout, stderr) = compare(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    // A program that prints no timing line is named, with what it said.
    let (code, stdout, stderr) = compare(&["--rounds", "1", "/bin/true"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("/bin/true gave no 'seeds per CPU-second' line"),
        "{stderr}"
    );
}
