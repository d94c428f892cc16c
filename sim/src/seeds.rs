//! Regression seed files (`seeds/*.json`): a scenario, a seed and the
//! guarantees that run is expected to break, replayed by the test suite so
//! a behaviour change on a known-interesting seed shows up at once.
//!
//! ```json
//! {"faults": "partitions", "level": "ONE", "seed": 3,
//!  "broken": ["no-stale-reads"], "note": "a 3-2 split: ONE reads miss minority writes"}
//! ```
use crate::guarantee::Guarantee;
use crate::scenario::{DiskFaults, FaultSchedule, Levels, Scenario, ScenarioError};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeedFileError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a seed file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Scenario {
        path: PathBuf,
        source: ScenarioError,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeedFile {
    faults: String,
    level: String,
    seed: u64,
    #[serde(default)]
    client_levels: Vec<String>,
    #[serde(default)]
    nodes: Option<usize>,
    #[serde(default)]
    clients: Option<usize>,
    #[serde(default)]
    ops: Option<usize>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    no_read_repair: bool,
    /// The disks' commit failure rates, when not the schedule's.
    #[serde(default)]
    disk: Option<DiskFaults>,
    broken: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeedFile {
    pub path: PathBuf,
    pub scenario: Scenario,
    pub seed: u64,
    /// Exactly the guarantees this run breaks.
    pub broken: BTreeSet<Guarantee>,
}

fn guarantee(name: &str) -> Option<Guarantee> {
    Guarantee::EVERY.into_iter().find(|g| {
        serde_json::to_value(g)
            .ok()
            .and_then(|v| v.as_str().map(|s| s == name))
            .unwrap_or(false)
    })
}

impl SeedFile {
    pub fn parse(path: &Path, text: &str) -> Result<Self, SeedFileError> {
        let parse_err = |reason: String| SeedFileError::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawSeedFile = serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let scenario_err = |source| SeedFileError::Scenario {
            path: path.to_path_buf(),
            source,
        };
        let faults: FaultSchedule = raw.faults.parse().map_err(scenario_err)?;
        let levels: Levels = raw.level.parse().map_err(scenario_err)?;
        let mut scenario = Scenario::standard(faults, levels);
        scenario.nodes = raw.nodes.unwrap_or(scenario.nodes);
        scenario.clients = raw.clients.unwrap_or(scenario.clients);
        scenario.operations = raw.ops.unwrap_or(scenario.operations);
        scenario.overwrite = raw.overwrite;
        scenario.no_read_repair = raw.no_read_repair;
        scenario.disk = raw.disk;
        for level in &raw.client_levels {
            scenario
                .client_levels
                .push(level.parse().map_err(scenario_err)?);
        }
        scenario.validate().map_err(scenario_err)?;
        let mut broken = BTreeSet::new();
        for name in &raw.broken {
            let g = guarantee(name).ok_or_else(|| {
                parse_err(format!(
                    "unknown guarantee {name:?} in \"broken\" (expected no-stale-reads, no-lost-updates, well-formed-reads, linearizable, bounded-keys or converges)"
                ))
            })?;
            broken.insert(g);
        }
        Ok(SeedFile {
            path: path.to_path_buf(),
            scenario,
            seed: raw.seed,
            broken,
        })
    }

    /// The text of a seed file for this run.
    pub fn record(
        scenario: &Scenario,
        seed: u64,
        broken: &[Guarantee],
        note: Option<String>,
    ) -> String {
        let standard = Scenario::standard(scenario.faults, scenario.levels);
        let mut value = serde_json::json!({
            "faults": scenario.faults.name(),
            "level": scenario.levels.label(),
            "seed": seed,
            "broken": broken,
        });
        for (name, ours, default) in [
            ("nodes", scenario.nodes, standard.nodes),
            ("clients", scenario.clients, standard.clients),
            ("ops", scenario.operations, standard.operations),
        ] {
            if ours != default {
                value[name] = ours.into();
            }
        }
        if scenario.overwrite {
            value["overwrite"] = true.into();
        }
        if scenario.no_read_repair {
            value["no_read_repair"] = true.into();
        }
        if let Some(disk) = scenario.disk {
            value["disk"] = serde_json::to_value(disk).expect("disk faults serialise");
        }
        if !scenario.client_levels.is_empty() {
            value["client_levels"] = scenario
                .client_levels
                .iter()
                .map(Levels::label)
                .collect::<Vec<_>>()
                .into();
        }
        if let Some(note) = note {
            value["note"] = note.into();
        }
        serde_json::to_string_pretty(&value).expect("a seed file serialises") + "\n"
    }

    pub fn load(path: &Path) -> Result<Self, SeedFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Every `*.json` in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, SeedFileError> {
        let entries = std::fs::read_dir(dir).map_err(|source| SeedFileError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Self::load(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_reasons() {
        let p = Path::new("seeds/x.json");
        let ok = SeedFile::parse(
            p,
            r#"{"faults":"partitions","level":"ONE","seed":3,"broken":["no-stale-reads"]}"#,
        )
        .unwrap();
        assert_eq!(ok.seed, 3);
        assert!(ok.broken.contains(&Guarantee::NoStaleReads));
        let bad = SeedFile::parse(
            p,
            r#"{"faults":"quake","level":"ONE","seed":3,"broken":[]}"#,
        )
        .unwrap_err();
        assert!(
            bad.to_string().contains("seeds/x.json") && bad.to_string().contains("quake"),
            "{bad}"
        );
        let bad = SeedFile::parse(
            p,
            r#"{"faults":"none","level":"ONE","seed":3,"broken":["fast"]}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("\"fast\""), "{bad}");
        let bad = SeedFile::parse(
            p,
            r#"{"faults":"none","level":"ONE","seed":-1,"broken":[]}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("seeds/x.json"), "{bad}");
        let bad = SeedFile::parse(
            p,
            r#"{"faults":"none","level":"R=9,W=1","seed":1,"broken":[]}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("R = 9"), "{bad}");
    }
}
