//! `quorumd loadgen`: one closed-loop write load for quorumlog and the
//! systems it is compared with (etcd, PostgreSQL), so every system of
//! `scripts/compare-write-path.py` is driven by the same generator with
//! the same clients, keys and values.
//!
//! Each of `clients` workers writes, one request at a time, values of
//! `value_size` bytes: with `keys` > 0 it overwrites keys of its own share
//! of `keys` (a quorumlog write sends the context its last write of that
//! key returned, so writes supersede instead of piling up siblings); with
//! `keys` = 0 every write creates a new key. Latency goes into an HDR
//! histogram; the result is one JSON line.
use crate::gateway_client::{GatewayClient, KeyContext};
use base64::Engine as _;
use hdrhistogram::Histogram;
use quorumlog_core::Consistency;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The system a load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// A quorumlog gateway (`--url http://HOST:PORT`).
    Quorumlog,
    /// An etcd member's JSON gateway (`--url http://HOST:2379`): `put`
    /// through Raft, fsynced by a majority before it answers.
    Etcd,
    /// A PostgreSQL server (`--url postgres://…`): an upsert per write,
    /// committed with the server's `synchronous_commit`.
    Postgres,
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            System::Quorumlog => "quorumlog",
            System::Etcd => "etcd",
            System::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub system: System,
    pub url: String,
    pub clients: usize,
    /// Keys overwritten, shared out between the clients; 0: a new key per
    /// write.
    pub keys: usize,
    pub value_size: usize,
    pub duration: Duration,
    /// quorumlog's write level.
    pub level: Consistency,
}

/// What one run measured.
#[derive(Debug)]
pub struct LoadReport {
    pub writes: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub histogram: Histogram<u64>,
}

impl LoadReport {
    pub fn to_json(&self, config: &LoadConfig) -> serde_json::Value {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        json!({
            "system": config.system.to_string(),
            "clients": config.clients,
            "keys": config.keys,
            "value_size": config.value_size,
            "seconds": secs,
            "writes": self.writes,
            "writes_per_s": self.writes as f64 / secs,
            "p50_ms": ms(0.5),
            "p99_ms": ms(0.99),
            "errors": self.errors,
        })
    }
}

/// One worker's connection to the system.
enum Conn {
    Quorumlog {
        client: GatewayClient,
        level: Consistency,
        contexts: Vec<KeyContext>,
    },
    Etcd {
        http: reqwest::Client,
        url: String,
    },
    Postgres {
        conn: sqlx::PgConnection,
    },
}

const POSTGRES_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS loadgen_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)";
const POSTGRES_UPSERT: &str = "INSERT INTO loadgen_kv (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";

async fn connect_postgres(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", crate::store::redact(url)))
}

impl Conn {
    async fn open(
        config: &LoadConfig,
        http: &reqwest::Client,
        id: usize,
        keys: usize,
    ) -> anyhow::Result<Conn> {
        Ok(match config.system {
            System::Quorumlog => Conn::Quorumlog {
                client: GatewayClient::new(http.clone(), &config.url, u32::try_from(id + 1)?, None),
                level: config.level,
                contexts: vec![KeyContext::default(); keys],
            },
            System::Etcd => Conn::Etcd {
                http: http.clone(),
                url: format!("{}/v3/kv/put", config.url.trim_end_matches('/')),
            },
            System::Postgres => Conn::Postgres {
                conn: connect_postgres(&config.url).await?,
            },
        })
    }

    /// One durable write; `Err` names what failed.
    async fn write(&mut self, slot: Option<usize>, key: &str, value: &str) -> Result<(), String> {
        match self {
            Conn::Quorumlog {
                client,
                level,
                contexts,
            } => {
                let mut fresh = KeyContext::default();
                let context = match slot {
                    Some(i) => &mut contexts[i],
                    None => &mut fresh,
                };
                let answer = client.write(*level, key, value, context).await;
                match answer.status {
                    200 => Ok(()),
                    status => Err(status.to_string()),
                }
            }
            Conn::Etcd { http, url } => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let body = json!({"key": b64.encode(key), "value": b64.encode(value)});
                match http.post(url.as_str()).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {
                        // The body must arrive too: etcd answers after the commit.
                        response
                            .bytes()
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                    Ok(response) => Err(response.status().as_u16().to_string()),
                    Err(e) => Err(if e.is_timeout() {
                        "timeout".into()
                    } else {
                        "connection".into()
                    }),
                }
            }
            Conn::Postgres { conn } => sqlx::query(POSTGRES_UPSERT)
                .bind(key)
                .bind(value)
                .execute(&mut *conn)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    sqlx::Error::Database(db) => db
                        .code()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "database".into()),
                    _ => "connection".into(),
                }),
        }
    }
}

pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    if config.clients == 0 {
        anyhow::bail!("--clients must be at least 1");
    }
    if config.keys > 0 && config.keys < config.clients {
        anyhow::bail!(
            "--keys {} is fewer than --clients {}: every client needs keys of its own (or --keys 0 for a new key per write)",
            config.keys,
            config.clients
        );
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.clients * 2)
        .timeout(Duration::from_secs(10))
        .build()?;
    if config.system == System::Postgres {
        use sqlx::Connection;
        let mut setup = connect_postgres(&config.url).await?;
        sqlx::query(POSTGRES_TABLE).execute(&mut setup).await?;
        let _ = setup.close().await;
    }
    let per_client = config.keys / config.clients;
    // Distinct per run, so a new-key load never overwrites an earlier one.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let mut conns = Vec::with_capacity(config.clients);
    for id in 0..config.clients {
        conns.push(Conn::open(&config, &http, id, per_client).await?);
    }
    let value: String = "v".repeat(config.value_size.max(1));
    let started = Instant::now();
    let deadline = started + config.duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(id, mut conn)| {
            let value = value.clone();
            tokio::spawn(async move {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut n: u64 = 0;
                while Instant::now() < deadline {
                    let (slot, key) = if per_client > 0 {
                        let i = (n % per_client as u64) as usize;
                        (Some(i), format!("lg-{id}-{i}"))
                    } else {
                        (None, format!("lg-{run}-{id}-{n}"))
                    };
                    n += 1;
                    let t = Instant::now();
                    match conn.write(slot, &key, &value).await {
                        Ok(()) => {
                            let micros = t.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                            histogram.record(micros)?;
                        }
                        Err(kind) => *errors.entry(kind).or_default() += 1,
                    }
                }
                anyhow::Ok((histogram, errors))
            })
        })
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = BTreeMap::new();
    for task in tasks {
        let (h, e) = task.await??;
        histogram.add(&h)?;
        for (kind, count) in e {
            *errors.entry(kind).or_default() += count;
        }
    }
    Ok(LoadReport {
        writes: histogram.len(),
        errors,
        elapsed: started.elapsed(),
        histogram,
    })
}
