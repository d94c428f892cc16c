//! Cluster security on real `quorumd` processes: nodes and a gateway
//! holding one cluster secret serve each other; a node or gateway holding
//! another, and a raw TCP client, can neither read nor write, and each
//! refusal is counted; the gateway serves HTTPS and checks its bearer token.
use quorumlog_core::protocol::Request;
use quorumlog_core::rpc::{RpcClient, RpcError};
use quorumlog_core::secure_channel::ClusterSecret;
use quorumlog_core::Consistency;
use quorumlog_tests::scenarios::{run_holding, Ctx};
use quorumlog_tests::tokio;
use quorumlog_tests::{free_port, quorumd, Backend};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "3f1e5b7a9c2d4e6f80a1b2c3d4e5f60718293a4b5c6d7e8f9011223344556677";
const OTHER: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de";

/// The value of `name{reason="…"}` in a Prometheus text page (0 if absent).
fn refused(page: &str, reason: &str) -> f64 {
    let series = format!("rpc_refused_total{{reason=\"{reason}\"}}");
    page.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics_page(http: &reqwest::Client, url: &str) -> String {
    let response = http
        .get(url)
        .send()
        .await
        .expect("the node serves /metrics");
    response.text().await.expect("a metrics page")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_gateway(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(format!("{url}/api/logs/health"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway at {url} never answered");
}

async fn outsiders_can_neither_read_nor_write(mut ctx: Ctx) -> Ctx {
    let key = ctx.key("guarded");
    let ok = ctx.write("ALL", &key, "v1", None).await;
    assert_eq!(ok.status, 200, "{ok:?}\n{}", ctx.logs());
    let before = ctx.cluster.node_metrics_url(1);
    let page = metrics_page(&ctx.http, &before).await;
    let wrong_before = refused(&page, "wrong_secret");
    let plain_before = refused(&page, "unauthenticated");

    // A gateway holding another secret: every coordinator refuses it.
    let port = free_port();
    let impostor = Killed(
        ctx.cluster
            .spawn_gateway("impostor-gateway", port, Some(OTHER)),
    );
    let impostor_url = format!("http://127.0.0.1:{port}");
    wait_for_gateway(&ctx.http, &impostor_url).await;
    let read = ctx
        .http
        .get(format!("{impostor_url}/api/logs/{key}?consistency=ONE"))
        .send()
        .await
        .unwrap();
    let status = read.status().as_u16();
    let body = read.text().await.unwrap();
    assert_eq!(status, 503, "the impostor gateway read: {body}");
    assert!(
        !body.contains("v1"),
        "the impostor gateway saw the value: {body}"
    );
    let write = ctx
        .http
        .post(format!("{impostor_url}/api/logs?consistency=ONE"))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({"key": key, "value": "forged"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status().as_u16(),
        503,
        "{}",
        write.text().await.unwrap()
    );
    drop(impostor);

    // A client of the RPC protocol without the secret, and one holding
    // the wrong secret.
    let addr = ctx.cluster.node_addr(1);
    let other = ClusterSecret::from_hex(OTHER).unwrap();
    for (secret, says) in [
        (None, "cluster secret"),
        (Some(other), "another cluster secret"),
    ] {
        let fetched = RpcClient::secured(addr, secret)
            .call(&Request::Fetch { key: key.clone() }, Duration::from_secs(5))
            .await;
        assert!(
            matches!(&fetched, Err(RpcError::Refused { reason, .. }) if reason.contains(says)),
            "{fetched:?}"
        );
    }
    // Raw TCP: a frame that is not a handshake gets a refusal and a close,
    // never data.
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let garbage = b"\x00\x00\x00\x10GET / HTTP/1.1\r\n";
    raw.write_all(garbage).unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(answer.len() < 1024, "{} bytes came back", answer.len());
    assert!(
        !answer.windows(2).any(|w| w == b"v1"),
        "the raw client got the value"
    );

    // The value is untouched: exactly what the cluster wrote.
    let read = ctx.read("ALL", &key).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(
        read.body["siblings"].as_array().map(Vec::len),
        Some(1),
        "{read:?}"
    );
    assert_eq!(read.body["value"], "v1", "{read:?}");

    // Each refusal was counted on the node.
    let page = metrics_page(&ctx.http, &before).await;
    assert!(refused(&page, "wrong_secret") > wrong_before, "{page}");
    assert!(
        refused(&page, "unauthenticated") >= plain_before + 2.0,
        "{page}"
    );

    // A node restarted with the wrong secret is cut off: the others cannot
    // reach it and it cannot reach them.
    ctx.cluster.stop_node(5);
    ctx.cluster.start_node_holding(5, Some(OTHER));
    let fresh = ctx.key("after-impostor");
    // Give node 5 time to come up, then it must be unreachable for ALL.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quorum = ctx.write("QUORUM", &fresh, "v2", None).await;
    assert_eq!(quorum.status, 200, "{quorum:?}\n{}", ctx.logs());
    // ALL never succeeds: a coordinator that has not yet met node 5 gets
    // four replicas and a refusal (indeterminate, 504) and trips node 5's
    // breaker; once every coordinator has, ALL is refused before anything
    // is sent (503).
    let mut refused_up_front = false;
    for attempt in 0..12 {
        let all = ctx
            .write(
                "ALL",
                &ctx.key(&format!("needs-five-{attempt}")),
                "v3",
                None,
            )
            .await;
        assert!(
            all.status == 503 || all.status == 504,
            "ALL with an impostor replica: {all:?}"
        );
        if all.status == 503 {
            refused_up_front = true;
            break;
        }
    }
    assert!(
        refused_up_front,
        "the coordinators never marked node 5 down"
    );
    // Through the impostor node itself nothing of the cluster is read, and
    // nothing it takes reaches the cluster.
    let impostor_node = quorumlog_core::Client::secured(
        vec![(5, ctx.cluster.node_addr(5))],
        Duration::from_secs(5),
        Some(ClusterSecret::from_hex(OTHER).unwrap()),
    );
    let read = impostor_node
        .read(
            quorumlog_core::ReadRequest {
                key: key.clone(),
                level: Consistency::Quorum,
            },
            0,
        )
        .await;
    assert!(read.is_err(), "the impostor node read at QUORUM: {read:?}");
    let write = impostor_node
        .write(
            quorumlog_core::WriteRequest {
                key: key.clone(),
                value: "forged".into(),
                context: None,
                level: Consistency::Quorum,
                overwrite: false,
            },
            0,
        )
        .await;
    assert!(
        write.is_err(),
        "the impostor node wrote at QUORUM: {write:?}"
    );
    let read = ctx.read("QUORUM", &key).await;
    assert_eq!(read.body["value"], "v1", "{read:?}");
    assert_eq!(
        read.body["siblings"].as_array().map(Vec::len),
        Some(1),
        "{read:?}"
    );
    ctx
}

#[test]
fn nodes_holding_another_secret_and_raw_clients_can_neither_read_nor_write() {
    run_holding(
        Backend::Sqlite,
        "secured",
        &[],
        Some(SECRET),
        outsiders_can_neither_read_nor_write,
    );
}

/// `curl` with `args`; its status code and body.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_gateway_serves_https_and_requires_its_bearer_token() {
    let _serial = quorumlog_tests::serial();
    let dir = std::env::temp_dir().join(format!("quorumlog-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let identity =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, identity.cert.pem()).unwrap();
    std::fs::write(&key, identity.key_pair.serialize_pem()).unwrap();
    let token = "t0ken-for-the-quorumlog-tests";

    let node_port = free_port();
    let gateway_port = free_port();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let _node = Killed(
        Command::new(quorumd())
            .args(["node", "--id", "1", "--store", "memory"])
            .args(["--listen", &format!("127.0.0.1:{node_port}")])
            .args(["--peers", &format!("1=127.0.0.1:{node_port}")])
            .args(["--context-secret", SECRET])
            .env("QUORUMD_CLUSTER_SECRET", SECRET)
            .stdin(Stdio::null())
            .stderr(log("node.log"))
            .spawn()
            .unwrap(),
    );
    let _gateway = Killed(
        Command::new(quorumd())
            .args(["gateway", "--listen", &format!("127.0.0.1:{gateway_port}")])
            .args(["--nodes", &format!("1=127.0.0.1:{node_port}")])
            .args(["--tls-cert", cert.to_str().unwrap()])
            .args(["--tls-key", key.to_str().unwrap()])
            .env("QUORUMD_CLUSTER_SECRET", SECRET)
            .env("QUORUMD_API_TOKEN", token)
            .stdin(Stdio::null())
            .stderr(log("gateway.log"))
            .spawn()
            .unwrap(),
    );
    let base = format!("https://localhost:{gateway_port}");
    let ca = cert.to_str().unwrap();
    let bearer = format!("Authorization: Bearer {token}");
    let logs = || {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        format!(
            "node:\n{}\ngateway:\n{}",
            read("node.log"),
            read("gateway.log")
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _) = curl(&[
            "--cacert",
            ca,
            "-H",
            &bearer,
            &format!("{base}/api/logs/health"),
        ]);
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the HTTPS gateway never came up\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let body = r#"{"key":"tls-key","value":"over-tls"}"#;
    let write = [
        "--cacert",
        ca,
        "-H",
        &bearer,
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    ];
    let (code, text) = curl(&[&write[..], &[&format!("{base}/api/logs?consistency=ONE")]].concat());
    assert_eq!(code, 200, "{text}\n{}", logs());
    let (code, text) = curl(&[
        "--cacert",
        ca,
        "-H",
        &bearer,
        &format!("{base}/api/logs/tls-key"),
    ]);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("over-tls"), "{text}");

    // No token, a wrong one, and another scheme: 401 with the JSON error.
    for header in [
        None,
        Some("Authorization: Bearer not-the-token-at-all".to_string()),
        Some(format!("Authorization: Basic {token}")),
    ] {
        let mut args = vec!["--cacert", ca];
        if let Some(h) = &header {
            args.extend(["-H", h.as_str()]);
        }
        let url = format!("{base}/api/logs/tls-key");
        args.push(&url);
        let (code, text) = curl(&args);
        assert_eq!(code, 401, "{header:?}: {text}");
        let error: serde_json::Value = serde_json::from_str(&text).expect("a JSON error");
        assert_eq!(error["error"], "unauthorized", "{text}");
        assert!(!text.contains("over-tls"), "{text}");
    }
    // A write without the token changes nothing.
    let unauthorized = [
        "--cacert",
        ca,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"key":"tls-key","value":"sneaked"}"#,
    ];
    let (code, _) = curl(
        &[
            &unauthorized[..],
            &[&format!("{base}/api/logs?consistency=ONE")],
        ]
        .concat(),
    );
    assert_eq!(code, 401);
    let (_, text) = curl(&[
        "--cacert",
        ca,
        "-H",
        &bearer,
        &format!("{base}/api/logs/tls-key"),
    ]);
    assert!(!text.contains("sneaked"), "{text}");
    // The API description is public; metrics are not.
    let (code, text) = curl(&["--cacert", ca, &format!("{base}/api/openapi.json")]);
    assert_eq!(code, 200, "{text}");
    let (code, _) = curl(&["--cacert", ca, &format!("{base}/metrics")]);
    assert_eq!(code, 401);
    let (code, text) = curl(&["--cacert", ca, "-H", &bearer, &format!("{base}/metrics")]);
    assert_eq!(code, 200);
    assert!(
        text.contains("http_unauthorized_total"),
        "the refusals were not counted"
    );
    // Plain HTTP on the HTTPS port gets no API answer.
    let (code, text) = curl(&[
        "-H",
        &bearer,
        &format!("http://127.0.0.1:{gateway_port}/api/logs/tls-key"),
    ]);
    assert_ne!(code, 200, "{text}");
    assert!(!text.contains("over-tls"), "{text}");
    // A client that does not trust the certificate stops at the handshake.
    let (code, _) = curl(&["-H", &bearer, &format!("{base}/api/logs/tls-key")]);
    assert_eq!(code, 0, "curl without the CA accepted the certificate");
    let _ = std::fs::remove_dir_all(&dir);
}
