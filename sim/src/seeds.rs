//! Regression seed files (`seeds/*.json`): a scenario, a seed and the
//! guarantees that run is expected to break, replayed by the test suite so
//! a behaviour change on a known-interesting seed shows up at once.
//!
//! A schedule file (`cargo sim shrink`'s output) is a seed file whose
//! scenario carries an explicit fault script.
//!
//! ```json
//! {"scenario": {"faults": "partitions", "level": "ONE"}, "seed": 3,
//!  "broken": ["no-stale-reads"], "note": "a 3-2 split: ONE reads miss minority writes"}
//! ```
use crate::guarantee::Guarantee;
use crate::scenario::{Scenario, ScenarioError};
use serde::{Deserialize, Serialize};
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeedFile {
    /// The scenario's JSON form ([`Scenario`]): fields left out take the
    /// standard scenario's values.
    #[serde(default)]
    scenario: serde_json::Value,
    seed: u64,
    broken: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeedFile {
    pub path: PathBuf,
    pub scenario: Scenario,
    pub seed: u64,
    /// Exactly the guarantees this run breaks.
    pub broken: BTreeSet<Guarantee>,
    pub note: Option<String>,
}

fn guarantee(name: &str) -> Option<Guarantee> {
    Guarantee::EVERY.into_iter().find(|g| g.key() == name)
}

impl SeedFile {
    pub fn parse(path: &Path, text: &str) -> Result<Self, SeedFileError> {
        let parse_err = |reason: String| SeedFileError::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawSeedFile = serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        let scenario = match raw.scenario {
            serde_json::Value::Null => Scenario::default(),
            value => serde_json::from_value(value)
                .map_err(|e| parse_err(format!("in \"scenario\": {e}")))?,
        };
        scenario
            .validate()
            .map_err(|source| SeedFileError::Scenario {
                path: path.to_path_buf(),
                source,
            })?;
        let mut broken = BTreeSet::new();
        for name in &raw.broken {
            let g = guarantee(name).ok_or_else(|| {
                let known: Vec<&str> = Guarantee::EVERY.iter().map(|g| g.key()).collect();
                parse_err(format!(
                    "unknown guarantee {name:?} in \"broken\" (expected one of {})",
                    known.join(", ")
                ))
            })?;
            broken.insert(g);
        }
        Ok(SeedFile {
            path: path.to_path_buf(),
            scenario,
            seed: raw.seed,
            broken,
            note: raw.note,
        })
    }

    /// The text of a seed file for this run.
    pub fn record(
        scenario: &Scenario,
        seed: u64,
        broken: &[Guarantee],
        note: Option<String>,
    ) -> String {
        // Faults and levels always, for the reader; the rest when not standard.
        let mut json = serde_json::json!({
            "faults": scenario.faults,
            "level": scenario.levels,
        });
        if let (Some(all), serde_json::Value::Object(rest)) =
            (json.as_object_mut(), scenario.to_json_value())
        {
            all.extend(rest);
        }
        let raw = RawSeedFile {
            scenario: json,
            seed,
            broken: broken.iter().map(|g| g.key().to_string()).collect(),
            note,
        };
        serde_json::to_string_pretty(&raw).expect("a seed file serialises") + "\n"
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
            r#"{"scenario":{"faults":"partitions","level":"ONE"},"seed":3,"broken":["no-stale-reads"]}"#,
        )
        .unwrap();
        assert_eq!(ok.seed, 3);
        assert!(ok.broken.contains(&Guarantee::NoStaleReads));
        let bad = SeedFile::parse(
            p,
            r#"{"scenario":{"faults":"quake","level":"ONE"},"seed":3,"broken":[]}"#,
        )
        .unwrap_err();
        assert!(
            bad.to_string().contains("seeds/x.json") && bad.to_string().contains("quake"),
            "{bad}"
        );
        let bad = SeedFile::parse(
            p,
            r#"{"scenario":{"faults":"none","level":"ONE"},"seed":3,"broken":["fast"]}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("\"fast\""), "{bad}");
        let bad = SeedFile::parse(p, r#"{"scenario":{"faults":"none"},"seed":-1,"broken":[]}"#)
            .unwrap_err();
        assert!(bad.to_string().contains("seeds/x.json"), "{bad}");
        let bad = SeedFile::parse(
            p,
            r#"{"scenario":{"faults":"none","level":"R=9,W=1"},"seed":1,"broken":[]}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("R = 9"), "{bad}");
        let bad = SeedFile::parse(
            p,
            r#"{"scenario":{"nodes":5,"node":3},"seed":1,"broken":[]}"#,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("`node`"), "{bad}");
        let bad =
            SeedFile::parse(p, r#"{"scenario":{},"seed":1,"broken":[],"extra":1}"#).unwrap_err();
        assert!(bad.to_string().contains("`extra`"), "{bad}");
    }

    #[test]
    fn a_recorded_file_reads_back_as_the_same_run() {
        let mut scenario = Scenario::standard(
            crate::scenario::FaultSchedule::All,
            "R=2,W=2".parse().unwrap(),
        );
        scenario.tuning.hedge_after_ms = None;
        scenario.mix.read_percent = 10;
        scenario.script = Some(vec![crate::scenario::ScriptedFault {
            at_us: 1_000,
            hold_us: 20_000,
            fault: crate::scenario::Fault::Partition(vec![vec![1, 2], vec![3, 4, 5]]),
        }]);
        let text = SeedFile::record(&scenario, 7, &[Guarantee::Converges], Some("n".into()));
        let back = SeedFile::parse(Path::new("x.json"), &text).unwrap();
        assert_eq!(back.scenario, scenario);
        assert_eq!(back.seed, 7);
        assert_eq!(back.broken, BTreeSet::from([Guarantee::Converges]));
        assert_eq!(back.note.as_deref(), Some("n"));
    }
}
