//! The simulator's build aborts on a panic (`panic = "abort"` in the
//! `sim` profile), where a sweep's seed that panics must still be
//! reported and the others run: `isolate::run_isolated` parks the
//! panicking worker from the panic hook. The suite builds everything
//! else to unwind, so this compiles the module alone, in a small program
//! (`support/abort_probe.rs`), both ways, and judges what it reports.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The probe built with `-C panic={panic}`, once per test binary (the
/// tests run at once, and would otherwise write one file together).
fn build(panic: &'static str) -> PathBuf {
    static BUILT: Mutex<Vec<(&str, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(p, _)| *p == panic) {
        return path.clone();
    }
    let path = compile(panic);
    built.push((panic, path.clone()));
    path
}

fn compile(panic: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(format!("abort_probe_{panic}"));
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/abort_probe.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args(["--edition", "2021", "-C", "opt-level=1", "-C"])
        .arg(format!("panic={panic}"))
        .arg("-o")
        .arg(&out)
        .arg(&source)
        .status()
        .expect("running rustc");
    assert!(status.success(), "building the probe with panic={panic}");
    out
}

/// What the probe reported: its lines, and its standard error.
fn probe(binary: &Path, workers: usize, items: usize, max_parked: usize) -> (Vec<String>, String) {
    let output = Command::new(binary)
        .args([
            workers.to_string(),
            items.to_string(),
            max_parked.to_string(),
        ])
        .output()
        .expect("running the probe");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the probe ended with {}: {stderr}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    (stdout.lines().map(str::to_string).collect(), stderr)
}

/// The lines a probe should print for the items that ran (every one,
/// when it did not stop, is also seen once).
fn expected(ran: usize, stopped: bool) -> Vec<String> {
    let mut lines: Vec<String> = (0..ran)
        .map(|i| {
            if i % 5 == 4 {
                format!("{i} panicked: item {i} panics")
            } else {
                format!("{i} ok {}", i * 10)
            }
        })
        .collect();
    lines.push(format!("stopped {stopped}"));
    if !stopped {
        lines.push(format!("seen {ran}"));
    }
    lines
}

#[test]
fn a_panic_where_panics_abort_is_reported_and_the_other_items_run() {
    let binary = build("abort");
    for workers in [1, 3] {
        let (lines, stderr) = probe(&binary, workers, 40, 16);
        assert_eq!(lines, expected(40, false), "{workers} workers: {stderr}");
        // The hook that was there still prints each panic.
        assert!(stderr.contains("item 4 panics"), "{stderr}");
    }
}

#[test]
fn where_panics_abort_a_run_stops_at_its_limit_and_reports_up_to_that_panic() {
    let binary = build("abort");
    // Every fifth item panics: the 16th is item 79, the 3rd item 14.
    // Everything up to it, for any number of workers (what lies past it
    // is left out of the report).
    for (max_parked, last) in [(16, 79), (3, 14)] {
        let reports: Vec<Vec<String>> = [1, 3]
            .into_iter()
            .map(|workers| {
                let (mut lines, stderr) = probe(&binary, workers, 200, max_parked);
                let seen = lines.pop().expect("a seen line");
                let seen: usize = seen["seen ".len()..].parse().expect("a count");
                // Each item up to the last ran; so may some past it, while
                // the worker of a panicking item was slower to report it.
                assert!(
                    (last + 1..200).contains(&seen),
                    "{workers} workers saw {seen}: {stderr}"
                );
                lines
            })
            .collect();
        let want = expected(last + 1, true);
        assert_eq!(reports[0], want, "stopping after {max_parked}");
        assert_eq!(reports[1], want, "stopping after {max_parked}");
    }
}

#[test]
fn where_panics_unwind_every_item_runs() {
    let binary = build("unwind");
    let (lines, _) = probe(&binary, 2, 200, 16);
    assert_eq!(lines, expected(200, false));
}
