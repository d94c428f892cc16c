//! The `quorumsim` binary (`cargo sim …`) as a user runs it: `check` on
//! good, bad and malformed history files, and argument errors.
use std::path::PathBuf;
use std::process::Command;

fn quorumsim(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quorumsim"))
        .args(args)
        .output()
        .expect("quorumsim runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
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
    assert!(stderr.contains("line 4"), "{stderr}");

    let (code, _, stderr) = quorumsim(&["check", "/definitely/not/here.jsonl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/definitely/not/here.jsonl"), "{stderr}");

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
