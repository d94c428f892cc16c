//! A finished command as the tests judge it: exit code, stdout, stderr.
use std::process::Command;

/// Run `command` to its end (`what` names it if it cannot start).
pub fn outcome(command: &mut Command, what: &str) -> (i32, String, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what} runs: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
