//! `quorumd` on bad command lines: a one-line error that names the
//! problem and a non-zero exit, never a backtrace (even with
//! RUST_BACKTRACE=1 in the environment) and never a half-started node.
use quorumlog_tests::quorumd;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(quorumd())
        .args(args)
        .env("RUST_BACKTRACE", "1")
        // Only the command line may provide the secret here.
        .env_remove("QUORUMD_CONTEXT_SECRET")
        .env_remove("QUORUMD_CLUSTER_SECRET")
        .env_remove("QUORUMD_API_TOKEN")
        .output()
        .expect("run quorumd");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_arguments_get_one_clear_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--peers",
                "garbage",
                "--store",
                "memory",
            ],
            "\"garbage\" is not ID=HOST:PORT",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "mysql://x",
            ],
            "unknown store \"mysql://x\"",
        ),
        (
            &[
                "cluster",
                "--store",
                "postgres://u:p@127.0.0.1/db",
                "--gateway",
                "127.0.0.1:0",
                "--base-port",
                "7101",
            ],
            "must contain {id}",
        ),
        (
            &["bench", "--levels", "SOMETIMES", "--no-progress"],
            "SOMETIMES",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
            ],
            "no context secret: pass --context-secret",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--context-secret",
                "abc",
            ],
            "expected 64 hexadecimal digits",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--context-secret",
                "00000000000000000000000000000000000000000000000000000000000000aa",
                "--anti-entropy-max-keys",
                "0",
            ],
            "--anti-entropy-max-keys must be at least 1",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "0.0.0.0:0",
                "--store",
                "memory",
                "--context-secret",
                "00000000000000000000000000000000000000000000000000000000000000aa",
            ],
            "refusing to serve node 1's internal RPC on 0.0.0.0:0 without a cluster secret",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--context-secret",
                "00000000000000000000000000000000000000000000000000000000000000aa",
                "--cluster-secret",
                "0123",
            ],
            "the cluster secret is 4 characters; it must be 64 hexadecimal digits",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
                "--context-secret",
                "00000000000000000000000000000000000000000000000000000000000000aa",
                "--cluster-secret-file",
                "/nonexistent/cluster-secret",
            ],
            "reading the cluster secret file /nonexistent/cluster-secret",
        ),
        (
            &[
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                "1=127.0.0.1:7000",
                "--api-token",
                "short",
            ],
            "the API token is 5 characters; it must be 16 to 4096",
        ),
        (
            &[
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                "1=127.0.0.1:7000",
                "--tls-cert",
                "/nonexistent/cert.pem",
            ],
            "--tls-key",
        ),
        (
            &[
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--nodes",
                "1=127.0.0.1:7000",
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
            "reading the TLS certificate /nonexistent/cert.pem",
        ),
        (
            &[
                "loadgen",
                "--system",
                "quorumlog",
                "--url",
                "http://127.0.0.1:9",
                "--clients",
                "4",
                "--keys",
                "3",
            ],
            "--keys 3 is fewer than --clients 4",
        ),
        (
            &["--worker-threads", "0", "cluster"],
            "invalid value '0' for '--worker-threads <N>': 0 is not in 1..=1024",
        ),
        (
            &[
                "loadgen",
                "--system",
                "mongodb",
                "--url",
                "http://127.0.0.1:9",
            ],
            "'mongodb'",
        ),
        (
            &["nemesis", "--store", "mysql://x"],
            "--store \"mysql://x\": use sqlite or a postgres://",
        ),
        (&["nemesis", "--faults", "kills,floods"], "\"floods\""),
        (&["nemesis", "--duration", "0"], "--duration"),
        // checked before whether the nemesis can run on this machine
        (
            &["nemesis", "--nodes", "2"],
            "invalid value '2' for '--nodes",
        ),
        (
            &["nemesis", "--reads", "101"],
            "invalid value '101' for '--reads",
        ),
        (
            &["nemesis", "--clients", "0"],
            "invalid value '0' for '--clients",
        ),
        (
            &[
                "node",
                "--id",
                "0",
                "--listen",
                "127.0.0.1:0",
                "--store",
                "memory",
            ],
            "invalid value '0' for '--id <ID>'",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--replica-timeout-ms",
                "0",
                "--store",
                "memory",
            ],
            "invalid value '0' for '--replica-timeout-ms",
        ),
        (
            &[
                "node",
                "--id",
                "1",
                "--breaker-threshold",
                "0",
                "--store",
                "memory",
            ],
            "invalid value '0' for '--breaker-threshold",
        ),
        (
            &[
                "gateway",
                "--nodes",
                "1=127.0.0.1:7000",
                "--timeout-ms",
                "0",
            ],
            "invalid value '0' for '--timeout-ms",
        ),
        (
            &[
                "gateway",
                "--nodes",
                "1=127.0.0.1:7000",
                "--health-interval-ms",
                "10",
            ],
            "invalid value '10' for '--health-interval-ms",
        ),
        (
            &["cluster", "--replica-timeout-ms", "0"],
            "invalid value '0' for '--replica-timeout-ms",
        ),
        // used to wait a minute for "nohost" to resolve
        (
            &["gateway", "--listen", "127.0.0.1:0", "--nodes", "1=nohost"],
            "\"1=nohost\": the address needs a port",
        ),
        // bench used to run a zero duration as one second
        (
            &["bench", "--duration", "0", "--no-progress"],
            "invalid value '0' for '--duration",
        ),
        (
            &["bench", "--mix", "101", "--no-progress"],
            "invalid value '101' for '--mix",
        ),
        (
            &["bench", "--value-size", "0", "--no-progress"],
            "invalid value '0' for '--value-size",
        ),
        (
            &["bench", "--concurrency", "0", "--no-progress"],
            "invalid value '0' for '--concurrency",
        ),
    ];
    for (args, names) in cases {
        let (code, stderr) = run(args);
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!stderr.contains("Stack backtrace"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `quorumd cluster | head -1` and the like: when the reader of stdout
/// has gone, quorumd stops quietly (exit 0, as Unix tools do) instead of
/// panicking in `println!`.
#[test]
fn a_closed_stdout_ends_quietly() {
    let base_port = quorumlog_tests::free_port();
    let gateway = format!("127.0.0.1:{}", quorumlog_tests::free_port());
    let mut child = Command::new(quorumd())
        .args([
            "cluster",
            "--store",
            "memory",
            "--nodes",
            "1",
            "--base-port",
            &base_port.to_string(),
            "--gateway",
            &gateway,
        ])
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start quorumd cluster");
    // Close the read end before quorumd prints where to curl.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for quorumd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A node that cannot open its store says why once, with what it was
/// doing: the context, the store, the cause, each cause not repeated by
/// the errors that wrap it.
#[test]
fn a_store_that_cannot_be_opened_is_named_with_its_cause_once() {
    let secret = "ab".repeat(32);
    // Nothing can be created under /proc, even by root.
    let out = Command::new(quorumd())
        .args(["node", "--id", "1", "--listen", "127.0.0.1:0"])
        .args([
            "--peer",
            "1=127.0.0.1:7000",
            "--store",
            "fjall:/proc/quorumlog-test",
        ])
        .env("QUORUMD_CONTEXT_SECRET", &secret)
        .env("QUORUMD_CLUSTER_SECRET", &secret)
        .output()
        .expect("run quorumd node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains("starting node 1"), "{error}");
    assert!(error.contains("fjall:/proc/quorumlog-test"), "{error}");
    assert_eq!(
        error.matches("No such file or directory").count(),
        1,
        "{error}"
    );
}
