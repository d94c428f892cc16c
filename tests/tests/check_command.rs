//! `quorumd check FILE`: the simulator's checkers on a history file,
//! without the simulator; the verdict is the exit code (0 passed, 1
//! violated, 3 undecided, 2 bad input).
use quorumlog_tests::quorumd;
use std::path::PathBuf;
use std::process::Command;

fn history(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quorumd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the history");
    path
}

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(quorumd())
        .arg("check")
        .args(args)
        .output()
        .expect("run quorumd check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const WRITE: &str = r#"{"type":"header","format":1}
{"type":"invoke","id":0,"client":1,"time_us":0,"key":"k","op":"write","value":"a","context":{}}
{"type":"complete","id":0,"client":1,"time_us":10,"outcome":"ok","version":{"value":"a","dot":{"node":1,"counter":1},"context":{}}}
{"type":"invoke","id":1,"client":2,"time_us":20,"key":"k","op":"read"}
"#;

#[test]
fn quorumd_check_gives_the_verdict_as_its_exit_code() {
    let fresh = history(
        "fresh.jsonl",
        &format!(
            "{WRITE}{}\n",
            r#"{"type":"complete","id":1,"client":2,"time_us":30,"outcome":"ok","values":[{"value":"a","dot":{"node":1,"counter":1},"context":{}}]}"#
        ),
    );
    let fresh = fresh.to_str().expect("a UTF-8 path");
    let (code, stdout, stderr) = check(&[fresh]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 stale reads"), "{stdout}");

    let stale = history(
        "stale.jsonl",
        &format!(
            "{WRITE}{}\n",
            r#"{"type":"complete","id":1,"client":2,"time_us":30,"outcome":"ok"}"#
        ),
    );
    let (code, stdout, _) = check(&[stale.to_str().expect("a UTF-8 path")]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("1 stale read"), "{stdout}");

    // A write refused as malformed for the context the write before it
    // handed out: a bug whatever the faults, judged without ground truth.
    let refused = history(
        "refused-context.jsonl",
        &format!(
            "{WRITE}{}\n{}\n{}\n",
            r#"{"type":"complete","id":1,"client":2,"time_us":30,"outcome":"ok","values":[{"value":"a","dot":{"node":1,"counter":1},"context":{}}],"context":{"1":1}}"#,
            r#"{"type":"invoke","id":2,"client":2,"time_us":40,"key":"k","op":"write","value":"b","context":{"1":1},"context_from":1}"#,
            r#"{"type":"complete","id":2,"client":2,"time_us":50,"outcome":"fail","error":"400 bad_request","invalid":true}"#
        ),
    );
    let (code, stdout, _) = check(&[refused.to_str().expect("a UTF-8 path")]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("1 handed-out contexts refused"), "{stdout}");
    assert!(stdout.contains("op 1's answer handed out"), "{stdout}");

    let (code, stdout, _) = check(&[fresh, "--budget", "1"]);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("undecided"), "{stdout}");

    let (code, _, stderr) = check(&["/no/such/history.jsonl"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/no/such/history.jsonl"), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    let broken = history("broken.jsonl", "{\"type\":\"invoke\",\n");
    let (code, _, stderr) = check(&[broken.to_str().expect("a UTF-8 path")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("line 1:"), "{stderr}");
    assert_eq!(stderr.matches("line 1:").count(), 1, "{stderr}");
}
