//! A team's calibration: factors between what its recorded runs used and what was estimated for
//! them, per GPU model and model family, which the estimator applies to the train jobs that match.
//!
//! `tunec calibrate` writes the file (`tunec.calibration.json` beside the pipeline, schema
//! `tunec.calibration/1`) from the ledger of recorded runs; the estimator reads it only when it is
//! there, so calibration is opt-in. A memory factor is the largest actual/estimated ratio of the
//! GPU peak seen (reserved memory against the estimate) and is applied only when above 1, as one
//! more term, `calibration`, so that the peak stays the sum of its terms: an estimate is never
//! lowered by a calibration, since a low memory estimate fails a paid job. An hours factor is the
//! median ratio of the runs' billable (or wall) time to their estimate and scales the job's hours
//! and cost either way. docs/estimator.md §12 says when to trust it.

use serde::{Deserialize, Serialize};

/// The schema of the calibration file.
pub const SCHEMA: &str = "tunec.calibration/1";

/// The file's name, beside the pipeline file.
pub const FILE: &str = "tunec.calibration.json";

/// One ratio and the runs it comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// What is applied: the largest ratio for memory, the median for hours.
    pub factor: f64,
    pub runs: u64,
    pub min: f64,
    pub max: f64,
}

/// The factors of one GPU model and model family.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The catalog's GPU name (`A10G`).
    pub gpu: String,
    /// The model family (`llama`, `qwen3`).
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Factor>,
    /// The runs it comes from: `pipeline/node` and the job's time.
    #[serde(default)]
    pub runs: Vec<String>,
}

/// The calibration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema: String,
    pub entries: Vec<Entry>,
}

impl Calibration {
    /// Parses the file; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<Calibration, String> {
        let calibration: Calibration = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if calibration.schema != SCHEMA {
            return Err(format!("schema `{}`, not `{SCHEMA}`", calibration.schema));
        }
        for e in &calibration.entries {
            for (what, factor) in [("memory", &e.memory), ("hours", &e.hours)] {
                if let Some(f) = factor.as_ref().filter(|f| !(f.factor.is_finite() && f.factor > 0.0)) {
                    return Err(format!(
                        "{} on {}: the {what} factor {} is not a positive number",
                        e.family, e.gpu, f.factor
                    ));
                }
            }
        }
        Ok(calibration)
    }

    /// The entry for a GPU model and family.
    pub fn entry(&self, gpu: &str, family: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.gpu == gpu && e.family == family)
    }
}
