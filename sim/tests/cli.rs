//! The `quorumsim` binary (`cargo sim …`) as a user runs it: `check` on
//! good, bad and malformed history files, and argument errors.
use std::path::PathBuf;
use std::process::Command;

#[path = "support/outcome.rs"]
mod support;

fn quorumsim(args: &[&str]) -> (i32, String, String) {
    support::outcome(
        Command::new(env!("CARGO_BIN_EXE_quorumsim")).args(args),
        "quorumsim",
    )
}

fn history_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quorumsim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const WRITE_THEN_READ: &str = r#"{"type":"header","format":1}
{"type":"invoke","id":0,"client":1,"time_us":0,"key":"k","op":"write","value":"a","context":{}}
{"type":"complete","id":0,"client":1,"time_us":10,"outcome":"ok","version":{"value":"a","dot":{"node":1,"counter":1},"context":{}}}
"#;

#[test]
fn check_accepts_a_good_history() {
    let text = format!(
        "{WRITE_THEN_READ}{}\n{}\n",
        r#"{"type":"invoke","id":1,"client":2,"time_us":20,"key":"k","op":"read"}"#,
        r#"{"type":"complete","id":1,"client":2,"time_us":30,"outcome":"ok","values":[{"value":"a","dot":{"node":1,"counter":1},"context":{}}]}"#
    );
    let path = history_file("good.jsonl", &text);
    let (code, stdout, stderr) = quorumsim(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 stale reads"), "{stdout}");
}

#[test]
fn check_rejects_a_stale_read_with_exit_code_1() {
    // the read begins after the write was acknowledged and returns nothing
    let text = format!(
        "{WRITE_THEN_READ}{}\n{}\n",
        r#"{"type":"invoke","id":1,"client":2,"time_us":20,"key":"k","op":"read"}"#,
        r#"{"type":"complete","id":1,"client":2,"time_us":30,"outcome":"ok"}"#
    );
    let path = history_file("stale.jsonl", &text);
    for model in ["mv-register", "register"] {
        let (code, stdout, _) = quorumsim(&["check", path.to_str().unwrap(), "--model", model]);
        assert_eq!(code, 1, "{model}: {stdout}");
        assert!(stdout.contains("1 stale read"), "{stdout}");
    }
}

#[test]
fn malformed_input_is_named() {
    let path = history_file(
        "broken.jsonl",
        &format!("{WRITE_THEN_READ}{{\"type\":\"invoke\",\"id\":\n"),
    );
    let (code, _, stderr) = quorumsim(&["check", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    // Named once: an error whose message already says its cause does not
    // get the cause said again.
    assert_eq!(stderr.matches("line 4").count(), 1, "{stderr}");

    let (code, _, stderr) = quorumsim(&["check", "/definitely/not/here.jsonl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/definitely/not/here.jsonl"), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    let good = history_file("model.jsonl", WRITE_THEN_READ);
    let (code, _, stderr) = quorumsim(&["check", good.to_str().unwrap(), "--model", "paxos"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("paxos"), "{stderr}");

    let (code, _, stderr) = quorumsim(&["run", "--seeds", "9..3"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("empty") || stderr.contains("madsim"),
        "{stderr}"
    );
}

/// Shrink, then replay the schedule file it wrote; bad schedule files and
/// contradictory flags are refused with the reason.
#[cfg(madsim)]
#[test]
fn shrink_writes_a_schedule_that_replay_runs() {
    let dir = std::env::temp_dir().join(format!("quorumsim-shrink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("shrunk.json");
    let out_arg = out.to_str().unwrap();
    let (code, stdout, stderr) = quorumsim(&[
        "shrink",
        "--level",
        "ONE",
        "--ops",
        "200",
        "--seed",
        "0",
        "--guarantee",
        "no-stale-reads",
        "--out",
        out_arg,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("before     ") && stdout.contains("after      "),
        "{stdout}"
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(file["scenario"]["script"].is_array(), "{file}");
    assert!(
        file["broken"]
            .as_array()
            .unwrap()
            .contains(&"no-stale-reads".into()),
        "{file}"
    );
    // Stale reads at ONE are not a promise broken, so the replay passes.
    let (code, stdout, _) = quorumsim(&["replay", "--schedule", out_arg]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("as the file expects"), "{stdout}");

    let bad = history_file(
        "bad-schedule.json",
        r#"{"scenario":{"nodes":"five"},"seed":1,"broken":[]}"#,
    );
    let (code, _, stderr) = quorumsim(&["replay", "--schedule", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad-schedule.json") && stderr.contains("scenario"),
        "{stderr}"
    );

    let (code, _, stderr) = quorumsim(&["replay", "--swarm", "--seed", "1", "--nodes", "3"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--swarm draws the whole scenario"),
        "{stderr}"
    );

    let (code, _, stderr) = quorumsim(&["replay", "--seed", "1", "--scenario", "{\"nodez\":3}"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nodez"), "{stderr}");

    let (code, _, stderr) =
        quorumsim(&["shrink", "--faults", "none", "--ops", "50", "--seed", "1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("keeps every promised guarantee"),
        "{stderr}"
    );
}

#[cfg(madsim)]
#[test]
fn swarm_reports_its_rate_and_replays_a_draw() {
    let (code, stdout, stderr) = quorumsim(&["swarm", "--seeds", "0..4"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("scenario   swarm"), "{stdout}");
    assert!(stdout.contains("seeds/s"), "{stdout}");
    let (code, stdout, _) = quorumsim(&["replay", "--swarm", "--seed", "2"]);
    assert_eq!(code, 0, "{stdout}");
    // The drawn configuration is printed, in the JSON form `--scenario` takes.
    let drawn = stdout
        .lines()
        .find_map(|l| l.strip_prefix("drawn    "))
        .expect("the draw is printed");
    let (code, again, _) = quorumsim(&["replay", "--seed", "2", "--scenario", drawn]);
    assert_eq!(code, 0);
    let report = |text: &str| text.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert_eq!(
        report(&again),
        report(&stdout),
        "--scenario replays the same run"
    );
}

#[test]
fn an_undecided_search_exits_3_and_names_its_keys() {
    let text = format!(
        "{WRITE_THEN_READ}{}\n{}\n",
        r#"{"type":"invoke","id":1,"client":2,"time_us":20,"key":"k","op":"read"}"#,
        r#"{"type":"complete","id":1,"client":2,"time_us":30,"outcome":"ok","values":[{"value":"a","dot":{"node":1,"counter":1},"context":{}}]}"#
    );
    let path = history_file("undecided.jsonl", &text);
    let path = path.to_str().unwrap();
    let (code, stdout, stderr) = quorumsim(&["check", path, "--budget", "1"]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert!(stdout.contains("key \"k\""), "{stdout}");
    assert!(stdout.contains("raise --budget"), "{stdout}");
    // With the default budget the same history is decided, and passes.
    let (code, stdout, _) = quorumsim(&["check", path]);
    assert_eq!(code, 0, "{stdout}");
    let (code, _, stderr) = quorumsim(&["check", path, "--budget", "0"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--budget"), "{stderr}");
}

#[test]
fn the_search_can_stop_at_the_first_violating_key() {
    // Keys "a" and "b" each read nothing after an acknowledged write:
    // neither has a linearization.
    let mut text = String::from("{\"type\":\"header\",\"format\":1}\n");
    for (n, key) in ["a", "b"].iter().enumerate() {
        let (w, r) = (2 * n, 2 * n + 1);
        text += &format!(
            "{{\"type\":\"invoke\",\"id\":{w},\"client\":1,\"time_us\":0,\"key\":\"{key}\",\"op\":\"write\",\"value\":\"v{key}\",\"context\":{{}}}}\n\
             {{\"type\":\"complete\",\"id\":{w},\"client\":1,\"time_us\":10,\"outcome\":\"ok\",\"version\":{{\"value\":\"v{key}\",\"dot\":{{\"node\":1,\"counter\":{c}}},\"context\":{{}}}}}}\n\
             {{\"type\":\"invoke\",\"id\":{r},\"client\":2,\"time_us\":20,\"key\":\"{key}\",\"op\":\"read\"}}\n\
             {{\"type\":\"complete\",\"id\":{r},\"client\":2,\"time_us\":30,\"outcome\":\"ok\"}}\n",
            c = n + 1
        );
    }
    let path = history_file("two-violations.jsonl", &text);
    let path = path.to_str().unwrap();
    let (code, stdout, _) = quorumsim(&["check", path, "--model", "register"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(!stdout.contains("not checked"), "{stdout}");
    let (code, stdout, _) = quorumsim(&["check", path, "--model", "register", "--first-violation"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("1 keys not checked"), "{stdout}");
}

#[test]
fn a_sweep_refuses_a_panic_limit_of_zero_by_name() {
    for args in [
        &["run", "--seeds", "0..1", "--max-panics", "0"][..],
        &["swarm", "--seeds", "0..1", "--max-panics", "none"][..],
    ] {
        let (code, stdout, stderr) = quorumsim(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("--max-panics"), "{args:?}: {stderr}");
    }
    let (code, stdout, _) = quorumsim(&["run", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--max-panics <N>"), "{stdout}");
    assert!(stdout.contains("[default: 16]"), "{stdout}");
}

#[test]
fn a_sweep_refuses_zero_workers_by_name() {
    for args in [
        &["run", "--seeds", "0..1", "--jobs", "0"][..],
        &["swarm", "--seeds", "0..1", "--jobs", "0"][..],
        &["verdicts", "--seeds", "0..1", "--jobs", "0"][..],
    ] {
        let (code, stdout, stderr) = quorumsim(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("--jobs"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: ran anyway: {stdout}");
    }
}

/// An output path that cannot be written is refused before the work,
/// not after a sweep or a shrink that may take minutes.
#[cfg(madsim)]
#[test]
fn an_unwritable_output_fails_before_the_work() {
    // Nothing can be created under /proc, even by root.
    for (args, named) in [
        (
            &[
                "verdicts",
                "--seeds",
                "0..1",
                "--json",
                "/proc/quorumsim/v.json",
            ][..],
            "/proc/quorumsim/v.json",
        ),
        (
            &[
                "verdicts",
                "--seeds",
                "0..1",
                "--csv",
                "/proc/quorumsim/v.csv",
            ][..],
            "/proc/quorumsim/v.csv",
        ),
        (
            &["shrink", "--seed", "0", "--out", "/proc/quorumsim/s.json"][..],
            "/proc/quorumsim/s.json",
        ),
        (
            &[
                "run",
                "--seeds",
                "0..1",
                "--save-failures",
                "/proc/quorumsim",
            ][..],
            "/proc/quorumsim",
        ),
    ] {
        let (code, stdout, stderr) = quorumsim(args);
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: the work ran first: {stdout}");
    }
    // A shrink that finds nothing to shrink leaves no empty file behind.
    let dir = std::env::temp_dir().join(format!("quorumsim-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let unused = dir.join("nothing-to-shrink.json");
    let (code, _, stderr) = quorumsim(&[
        "shrink",
        "--faults",
        "none",
        "--ops",
        "50",
        "--seed",
        "1",
        "--out",
        unused.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!unused.exists(), "an empty {} was left", unused.display());
    // A writable one still gets the report.
    let json = dir.join("v.json");
    std::fs::write(&json, "old").expect("an old file");
    let (code, stdout, stderr) = quorumsim(&[
        "verdicts",
        "--seeds",
        "0..1",
        "--json",
        json.to_str().expect("a UTF-8 path"),
    ]);
    assert!(code == 0 || code == 1, "{stdout}{stderr}");
    let written = std::fs::read_to_string(&json).expect("the report");
    assert!(
        written.starts_with('{') || written.starts_with('['),
        "{written}"
    );
    assert!(!written.contains("old"), "{written}");
}
