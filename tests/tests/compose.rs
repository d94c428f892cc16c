//! No Docker engine runs here, so the deployment files are checked by
//! reading them: every service, port, scrape target, provisioning path and
//! dashboard query must name something that really exists — services in
//! the compose file, flags `quorumd --help` lists, metric names the code
//! records.
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Yaml {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

/// Services with YAML merge keys (`<<: *anchor`) resolved.
fn services() -> BTreeMap<String, Yaml> {
    let mut doc = compose();
    doc.apply_merge().expect("merge keys resolve");
    doc["services"]
        .as_mapping()
        .expect("services mapping")
        .iter()
        .map(|(k, v)| (k.as_str().expect("service name").to_string(), v.clone()))
        .collect()
}

fn command(service: &Yaml) -> Vec<String> {
    service["command"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn flag(cmd: &[String], name: &str) -> Option<String> {
    let prefix = format!("--{name}=");
    cmd.iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

fn published(service: &Yaml) -> Vec<(u16, u16)> {
    service["ports"]
        .as_sequence()
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.as_str())
                .map(|p| {
                    let (host, container) = p.split_once(':').expect("HOST:CONTAINER port");
                    (
                        host.parse().expect("host port"),
                        container.parse().expect("container port"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_has_every_service_and_port() {
    let services = services();
    let mut expected: BTreeSet<String> = (1..=5)
        .flat_map(|i| [format!("pg{i}"), format!("node{i}")])
        .collect();
    expected.extend(["gateway", "prometheus", "grafana"].map(String::from));
    let names: BTreeSet<String> = services.keys().cloned().collect();
    assert_eq!(names, expected);

    assert!(published(&services["gateway"]).contains(&(8080, 8080)));
    assert!(published(&services["grafana"]).contains(&(3000, 3000)));
    assert!(published(&services["prometheus"]).contains(&(9090, 9090)));
    let mut host_ports = BTreeSet::new();
    for (name, service) in &services {
        for (host, _) in published(service) {
            assert!(
                host_ports.insert(host),
                "host port {host} published twice ({name})"
            );
        }
    }

    let mut secrets = BTreeSet::new();
    for i in 1..=5 {
        let node = &services[&format!("node{i}")];
        let cmd = command(node);
        // A node does not start without a context secret, and tokens
        // work across coordinators only if every node has the same one.
        let secret = node["environment"]["QUORUMD_CONTEXT_SECRET"]
            .as_str()
            .unwrap_or_else(|| panic!("node{i} has no QUORUMD_CONTEXT_SECRET"));
        let default = secret
            .strip_prefix("${QUORUMD_CONTEXT_SECRET:-")
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or(secret);
        assert!(
            default.len() == 64 && default.chars().all(|c| c.is_ascii_hexdigit()),
            "node{i}: {secret:?} does not default to 64 hex digits"
        );
        secrets.insert(secret.to_string());
        assert_eq!(cmd.first().map(String::as_str), Some("node"));
        assert_eq!(flag(&cmd, "id"), Some(i.to_string()));
        // Its own PostgreSQL, which it waits for.
        let store = flag(&cmd, "store").expect("--store");
        let pg = format!("pg{i}");
        assert!(
            store.starts_with("postgres://") && store.contains(&format!("@{pg}:5432/")),
            "{store}"
        );
        assert!(
            node["depends_on"][pg.as_str()].is_mapping(),
            "node{i} must depend on {pg}"
        );
        let db = store.rsplit('/').next().expect("database");
        assert_eq!(
            services[&pg]["environment"]["POSTGRES_DB"].as_str(),
            Some(db)
        );
        // Peers name every node at the port it listens on.
        let peers = flag(&cmd, "peers").expect("--peers");
        check_node_list(&services, &peers);
        let metrics = flag(&cmd, "metrics-listen").expect("--metrics-listen");
        assert!(
            published(node).iter().any(|&(_, c)| c == port_of(&metrics)),
            "node{i} metrics port published"
        );
    }
    assert_eq!(
        secrets.len(),
        1,
        "nodes have different secrets: {secrets:?}"
    );
    // The nodes listen beyond loopback, so they (and the gateway, which
    // must prove the same secret) need the cluster secret; it has no
    // default, so `docker compose up` stops until the operator sets one.
    let mut cluster_secrets = BTreeSet::new();
    for name in (1..=5)
        .map(|i| format!("node{i}"))
        .chain(["gateway".into()])
    {
        let secret = services[&name]["environment"]["QUORUMD_CLUSTER_SECRET"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no QUORUMD_CLUSTER_SECRET"));
        assert!(
            secret.starts_with("${QUORUMD_CLUSTER_SECRET:?"),
            "{name}: {secret:?} must be required from the environment, with no default"
        );
        cluster_secrets.insert(secret.to_string());
    }
    assert_eq!(cluster_secrets.len(), 1, "{cluster_secrets:?}");
    for i in 1..=5 {
        let listen = flag(&command(&services[&format!("node{i}")]), "listen").expect("--listen");
        assert!(
            !listen.starts_with("127."),
            "node{i} listens on loopback: {listen}"
        );
    }
    let gateway = command(&services["gateway"]);
    assert_eq!(gateway.first().map(String::as_str), Some("gateway"));
    assert_eq!(flag(&gateway, "listen").map(|l| port_of(&l)), Some(8080));
    check_node_list(&services, &flag(&gateway, "nodes").expect("--nodes"));
}

/// `1=node1:7000,…`: five entries, each a node service at its listen port.
fn check_node_list(services: &BTreeMap<String, Yaml>, list: &str) {
    let entries: Vec<&str> = list.split(',').collect();
    assert_eq!(entries.len(), 5, "{list}");
    for entry in entries {
        let (id, addr) = entry.split_once('=').expect("ID=ADDR");
        let (host, port) = addr.split_once(':').expect("HOST:PORT");
        assert_eq!(host, format!("node{id}"), "{entry}");
        let service = services
            .get(host)
            .unwrap_or_else(|| panic!("{entry}: no service {host}"));
        let listen = flag(&command(service), "listen").expect("--listen");
        assert_eq!(
            port_of(&listen).to_string(),
            port,
            "{entry}: {host} listens on {listen}"
        );
    }
}

#[test]
fn compose_flags_exist_in_quorumd() {
    let bin = quorumlog_tests::quorumd();
    for (name, service) in services() {
        let cmd = command(&service);
        let Some(sub) = cmd.first() else { continue };
        if service["build"].is_null() {
            continue;
        }
        let help = Command::new(&bin)
            .args([sub.as_str(), "--help"])
            .output()
            .expect("quorumd --help");
        assert!(help.status.success(), "{name}: quorumd {sub} --help failed");
        let help = String::from_utf8_lossy(&help.stdout);
        for arg in &cmd[1..] {
            let flag = arg.split('=').next().unwrap_or(arg);
            assert!(help.contains(flag), "{name}: quorumd {sub} has no {flag}");
        }
    }
}

#[test]
fn prometheus_scrapes_every_metrics_endpoint() {
    let services = services();
    let mounts = services["prometheus"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .clone();
    let config_mount = mounts
        .iter()
        .filter_map(|m| m.as_str())
        .find(|m| m.contains("/etc/prometheus/prometheus.yml"))
        .expect("prometheus.yml mounted");
    let local = config_mount
        .split(':')
        .next()
        .expect("source")
        .trim_start_matches("./");
    let config: Yaml = serde_yaml::from_str(&read(local)).expect("prometheus.yml is YAML");
    let mut targets = BTreeSet::new();
    for job in config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
    {
        assert_eq!(
            job["metrics_path"].as_str().unwrap_or("/metrics"),
            "/metrics"
        );
        for sc in job["static_configs"].as_sequence().expect("static_configs") {
            for t in sc["targets"].as_sequence().expect("targets") {
                targets.insert(t.as_str().expect("target").to_string());
            }
        }
    }
    let mut expected = BTreeSet::new();
    let gateway_listen = flag(&command(&services["gateway"]), "listen").expect("gateway --listen");
    expected.insert(format!("gateway:{}", port_of(&gateway_listen)));
    for i in 1..=5 {
        let metrics = flag(&command(&services[&format!("node{i}")]), "metrics-listen")
            .expect("--metrics-listen");
        expected.insert(format!("node{i}:{}", port_of(&metrics)));
    }
    assert_eq!(targets, expected);
}

/// Metric names the code records: string literals passed to the metrics
/// macros in core and quorumd.
fn recorded_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in ["core/src", "node-bin/src"] {
        let mut stack = vec![root().join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).expect("read dir").flatten() {
                    stack.push(entry.path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for chunk in text.split(macro_name).skip(1) {
                    let rest = chunk.trim_start();
                    if let Some(rest) = rest.strip_prefix('"') {
                        if let Some(end) = rest.find('"') {
                            names.insert(rest[..end].to_string());
                        }
                    }
                }
            }
        }
    }
    names
}

/// Metric names in a PromQL expression (identifiers that are not
/// functions, keywords or label names).
fn metrics_in(expr: &str) -> BTreeSet<String> {
    const WORDS: &[&str] = &[
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "rate",
        "irate",
        "increase",
        "by",
        "without",
        "histogram_quantile",
        "on",
        "ignoring",
        "and",
        "or",
        "unless",
        "le",
    ];
    // Drop label matchers and grouping clauses, then take identifiers.
    let mut cleaned = String::new();
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => cleaned.push(c),
        }
    }
    let mut out = BTreeSet::new();
    let mut grouping = false;
    for token in cleaned.split(|c: char| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '(' || c == ')')
    }) {
        for part in token.split_inclusive(['(', ')']) {
            let word = part.trim_end_matches(['(', ')']);
            if word == "by" || word == "without" {
                grouping = true;
                continue;
            }
            if grouping {
                if part.ends_with(')') {
                    grouping = false;
                }
                continue;
            }
            if word.is_empty()
                || word.starts_with(|c: char| c.is_ascii_digit())
                || WORDS.contains(&word)
            {
                continue;
            }
            // A range like [1m] leaves "1m"; skip durations.
            out.insert(word.to_string());
        }
    }
    out
}

#[test]
fn grafana_is_provisioned_and_every_query_names_a_real_metric() {
    let services = services();
    let grafana = &services["grafana"];
    let mounts: Vec<(String, String)> = grafana["volumes"]
        .as_sequence()
        .expect("grafana volumes")
        .iter()
        .filter_map(|m| m.as_str())
        .map(|m| {
            let mut parts = m.split(':');
            (
                parts
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("./")
                    .to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (local, _) in &mounts {
        assert!(
            root().join(local).exists(),
            "grafana mounts {local}, which does not exist"
        );
    }
    let provisioning = mounts
        .iter()
        .find(|(_, c)| c == "/etc/grafana/provisioning")
        .expect("provisioning mount");
    let datasource: Yaml = serde_yaml::from_str(&read(&format!(
        "{}/datasources/prometheus.yml",
        provisioning.0
    )))
    .expect("datasource YAML");
    let ds = &datasource["datasources"][0];
    let prometheus_port = published(&services["prometheus"])[0].1;
    assert_eq!(
        ds["url"].as_str(),
        Some(format!("http://prometheus:{prometheus_port}").as_str())
    );
    let uid = ds["uid"].as_str().expect("datasource uid").to_string();

    let provider: Yaml = serde_yaml::from_str(&read(&format!(
        "{}/dashboards/quorumlog.yml",
        provisioning.0
    )))
    .expect("dashboard provider YAML");
    let dashboards_path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let dashboards = mounts
        .iter()
        .find(|(_, c)| c == dashboards_path)
        .expect("dashboards dir mounted at the provider path");

    let dashboard: Json = serde_json::from_str(&read(&format!("{}/quorumlog.json", dashboards.0)))
        .expect("dashboard JSON");
    let recorded = recorded_metrics();
    assert!(
        recorded.contains("http_server_requests_seconds"),
        "{recorded:?}"
    );
    let histograms = [
        "http_server_requests_seconds",
        "quorum_request_seconds",
        "store_seconds",
    ];
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    let mut used = BTreeSet::new();
    for panel in panels {
        assert_eq!(
            panel["datasource"]["uid"].as_str(),
            Some(uid.as_str()),
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"].as_str(), Some(uid.as_str()));
            let expr = target["expr"].as_str().expect("expr");
            let metrics = metrics_in(expr);
            assert!(!metrics.is_empty(), "no metric in {expr}");
            for metric in metrics {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| metric.strip_suffix(s).filter(|b| histograms.contains(b)))
                    .unwrap_or(&metric)
                    .to_string();
                assert!(
                    recorded.contains(&base),
                    "panel {:?} queries {metric}, which the code never records",
                    panel["title"]
                );
                used.insert(base);
            }
        }
    }
    for needed in [
        "http_server_requests_seconds",
        "quorum_write_success_total",
        "quorum_write_failure_total",
        "replica_up",
        "replica_breaker_state",
        "version_vector_conflicts",
        "hints_backlog",
        "anti_entropy_keys_repaired_total",
        "anti_entropy_agreement_age_seconds",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }
}

#[test]
fn metric_name_extraction() {
    let got = metrics_in("histogram_quantile(0.99, sum by (le, level) (rate(http_server_requests_seconds_bucket{uri=\"/api/logs\"}[1m])))");
    assert_eq!(
        got,
        BTreeSet::from(["http_server_requests_seconds_bucket".to_string()])
    );
    let got =
        metrics_in("sum(rate(a_total[1m])) / (sum(rate(a_total[1m])) + sum(rate(b_total[1m])))");
    assert_eq!(
        got,
        BTreeSet::from(["a_total".to_string(), "b_total".to_string()])
    );
}

#[test]
fn dockerfile_builds_and_runs_quorumd() {
    let dockerfile = read("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage Dockerfile");
    assert!(dockerfile.contains("-p quorumd"));
    assert!(dockerfile.contains("ENTRYPOINT [\"quorumd\"]"));
    for (name, service) in services() {
        if !service["build"].is_null() {
            assert_eq!(
                service["build"].as_str(),
                Some("."),
                "{name} builds from the root Dockerfile"
            );
        }
    }
}

/// Every metric the code records is in the metrics table of
/// docs/deployment.md (a row names it in backticks).
#[test]
fn every_recorded_metric_is_documented() {
    let docs = read("docs/deployment.md");
    let section = docs
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a Metrics section in docs/deployment.md");
    let missing: Vec<String> = recorded_metrics()
        .into_iter()
        .filter(|name| !section.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in the metrics table of docs/deployment.md: {missing:?}"
    );
}
