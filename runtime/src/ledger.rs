//! The ledger: what each job used, kept in the journal next to what tunec estimated for it, so that
//! `tunec status` can say how wrong each estimate was and `tunec calibrate` can correct the next.
//!
//! A run records a job node's [`Estimated`] figures when the node starts (the estimate the job was
//! launched on, which a later edit of the file does not rewrite) and its [`Used`] figures when it
//! succeeds: the `usage.json` the entry script wrote in `output/data/` (schema `tunec.usage/1`,
//! written by `stdlib/python/tunec_entry/usage.py`; on SageMaker, from the job's `output.tar.gz`
//! once it is unpacked) and, on SageMaker, `DescribeTrainingJob`'s `BillableTimeInSeconds` and
//! `TrainingTimeInSeconds`. Neither is part of any key: a rerun with other timings reruns nothing.
//!
//! [`compare`] turns a record into rows of estimate, actual and error for GPU memory (the peak
//! reserved by PyTorch's allocator, the largest over ranks: what runs out first), host memory,
//! hours (billable time on SageMaker, the script's wall time locally) and dollars (billable hours
//! at the instance's on-demand price times the instance count, as SageMaker bills; none for a local
//! run). A figure that was not measured (GPU memory on a CPU) has no actual and no error.
//! [`calibrate`] turns the records into a team's calibration file (docs/estimator.md §12).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tunec_compiler::catalog::Catalog;
use tunec_compiler::estimate::calibration::{self, Calibration, Entry, Factor};

use crate::journal::NodeRecord;

/// The schema of the entry scripts' `usage.json`.
pub const USAGE_SCHEMA: &str = "tunec.usage/1";

/// The file the entry scripts write in `output/data/`.
pub const USAGE_FILE: &str = "usage.json";

/// What the estimator said of a job when it was started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimated {
    pub instance: String,
    pub instance_count: u64,
    /// Per GPU.
    pub gpu_peak_bytes: u64,
    pub host_peak_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// The on-demand price of all its instances together, for the actual cost of billable time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd_per_hour: Option<f64>,
    /// The accelerator (`H100`), for calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The model family (`llama`), for calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// What a calibration file added to `gpu_peak_bytes` (its `calibration` term), and the factor
    /// it multiplied `hours` by, so that a new calibration is made against the model's own figures.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub calibration_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_hours_factor: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a run gets a job's estimate when the job starts: the pipeline checked again at that
/// moment, so that the data profiles its data steps just wrote count (a first run has none
/// before it starts). `None` for a run of a build folder, which has no `.tune` file's estimate.
#[derive(Clone, Default)]
pub struct EstimateSource(Option<Arc<EstimateFn>>);

type EstimateFn = dyn Fn(&str) -> Option<Estimated> + Send + Sync;

impl EstimateSource {
    pub fn new(estimate: impl Fn(&str) -> Option<Estimated> + Send + Sync + 'static) -> EstimateSource {
        EstimateSource(Some(Arc::new(estimate)))
    }

    /// The estimate of job node `node` now.
    pub fn of(&self, node: &str) -> Option<Estimated> {
        self.0.as_ref().and_then(|estimate| estimate(node))
    }
}

impl std::fmt::Debug for EstimateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "EstimateSource(..)" } else { "EstimateSource(none)" })
    }
}

/// Each job node's estimate in `checked`, as the journal records it.
pub fn estimates(checked: &tunec_compiler::Checked) -> BTreeMap<String, Estimated> {
    let (Some(program), Some(estimates)) = (&checked.program, &checked.estimates) else { return BTreeMap::new() };
    let catalog = Catalog::builtin();
    estimates
        .nodes
        .iter()
        .map(|e| {
            let instance = catalog.instances.iter().find(|i| i.name == e.instance);
            let family = program.node(&e.node).and_then(|n| n.model.as_ref()).map(|m| {
                if m.family.is_empty() {
                    m.model_type.clone()
                } else {
                    m.family.clone()
                }
            });
            let estimated = Estimated {
                instance: e.instance.clone(),
                instance_count: e.instance_count,
                gpu_peak_bytes: e.gpu_peak_bytes,
                host_peak_bytes: e.host_peak_bytes,
                hours: e.hours,
                usd: e.usd,
                usd_per_hour: instance
                    .filter(|i| i.price_usd_per_hour > 0.0)
                    .map(|i| i.price_usd_per_hour * e.instance_count as f64),
                gpu: instance.filter(|i| !i.gpu.is_empty()).map(|i| i.gpu.clone()),
                family,
                calibration_bytes: e.gpu_terms.iter().filter(|t| t.name == "calibration").map(|t| t.bytes).sum(),
                calibration_hours_factor: e.calibration.as_ref().and_then(|c| c.hours.as_ref()).map(|f| f.factor),
            };
            (e.node.clone(), estimated)
        })
        .collect()
}

/// The ratios of one recorded run: actual over the model's own estimate (any calibration that
/// was applied taken back out).
struct Ratios {
    gpu: String,
    family: String,
    memory: Option<f64>,
    hours: Option<f64>,
    run: String,
}

fn ratios(name: &str, record: &NodeRecord) -> Option<Ratios> {
    if record.status != crate::journal::Status::Succeeded {
        return None;
    }
    let (estimate, used) = (record.estimate.as_ref()?, record.usage.as_ref()?);
    let (gpu, family) = (estimate.gpu.clone()?, estimate.family.clone()?);
    let measured_on_gpu = used.gpu_reserved_peak_bytes.is_some();
    let model_peak = estimate.gpu_peak_bytes.saturating_sub(estimate.calibration_bytes);
    let memory = used.gpu_reserved_peak_bytes.filter(|_| model_peak > 0).map(|b| b as f64 / model_peak as f64);
    // Time counts where the job ran on what was estimated: billed by SageMaker, or measured on a
    // GPU here; a CPU run's time says nothing of a GPU's.
    let model_hours = estimate.hours.map(|h| h / estimate.calibration_hours_factor.unwrap_or(1.0)).filter(|h| *h > 0.0);
    let hours = used
        .hours()
        .filter(|_| used.billable_seconds.is_some() || measured_on_gpu)
        .zip(model_hours)
        .map(|(actual, estimated)| actual / estimated);
    (memory.is_some() || hours.is_some()).then(|| Ratios {
        gpu,
        family,
        memory,
        hours,
        run: format!("{name} ({})", record.finished_at.as_deref().unwrap_or(&record.started_at)),
    })
}

fn factor(mut values: Vec<f64>, pick_largest: bool) -> Option<Factor> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let (min, max) = (values[0], values[values.len() - 1]);
    let median = if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
    };
    Some(Factor { factor: if pick_largest { max } else { median }, runs: values.len() as u64, min, max })
}

/// A calibration from recorded runs, `(pipeline/node, record)`: per GPU model and family, the
/// largest ratio of reserved to estimated GPU memory and the median ratio of actual to estimated
/// hours. Runs without a GPU measurement or a bill (a local CPU run) count for neither.
pub fn calibrate<'a>(records: impl IntoIterator<Item = (String, &'a NodeRecord)>) -> Calibration {
    let mut groups: BTreeMap<(String, String), Vec<Ratios>> = BTreeMap::new();
    for (name, record) in records {
        if let Some(r) = ratios(&name, record) {
            groups.entry((r.gpu.clone(), r.family.clone())).or_default().push(r);
        }
    }
    let entries = groups
        .into_iter()
        .map(|((gpu, family), runs)| Entry {
            gpu,
            family,
            memory: factor(runs.iter().filter_map(|r| r.memory).collect(), true),
            hours: factor(runs.iter().filter_map(|r| r.hours).collect(), false),
            runs: runs.into_iter().map(|r| r.run).collect(),
        })
        .collect();
    Calibration { schema: calibration::SCHEMA.to_owned(), entries }
}

/// One rank's figures in `usage.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RankUsage {
    pub rank: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_allocated_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_reserved_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_used_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// What a job used: the script's `usage.json` and, on SageMaker, what the service billed. Every
/// figure is optional: absent when nothing measured it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Used {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_allocated_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_reserved_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_used_peak_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranks: Vec<RankUsage>,
    /// The local target's wall time of the script's process, from its start to its exit (what
    /// `wall_seconds`, timed inside the script, leaves out: the interpreter and its imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_seconds: Option<f64>,
    /// SageMaker's `BillableTimeInSeconds` (per instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billable_seconds: Option<u64>,
    /// SageMaker's `TrainingTimeInSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_seconds: Option<u64>,
}

/// Reads the `usage.json` at `path`; `Err` says why it cannot be used.
pub fn read_usage(path: &std::path::Path) -> Result<Used, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Used::parse(&text)
}

impl Used {
    /// Reads a `usage.json`; `Err` names what is wrong with it.
    pub fn parse(text: &str) -> Result<Used, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match value.get("schema").and_then(serde_json::Value::as_str) {
            Some(USAGE_SCHEMA) => {}
            Some(other) => return Err(format!("schema `{other}`, not `{USAGE_SCHEMA}`")),
            None => return Err("no `schema`".to_owned()),
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// The hours the job counts for: billable time where the target bills, else the process's
    /// wall time, else the script's.
    pub fn hours(&self) -> Option<f64> {
        let seconds = self.billable_seconds.map(|s| s as f64).or(self.process_seconds).or(self.wall_seconds)?;
        Some(seconds / 3600.0)
    }
}

/// What is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    GpuMemory,
    HostMemory,
    Hours,
    Dollars,
}

impl Measure {
    pub const ALL: [Measure; 4] = [Measure::GpuMemory, Measure::HostMemory, Measure::Hours, Measure::Dollars];

    pub fn key(self) -> &'static str {
        match self {
            Measure::GpuMemory => "gpu_memory_bytes",
            Measure::HostMemory => "host_memory_bytes",
            Measure::Hours => "hours",
            Measure::Dollars => "usd",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Measure::GpuMemory => "GPU memory",
            Measure::HostMemory => "host memory",
            Measure::Hours => "hours",
            Measure::Dollars => "dollars",
        }
    }

    fn show(self, value: f64) -> String {
        match self {
            Measure::GpuMemory | Measure::HostMemory => format!("{:.2} GiB", value / f64::from(1u32 << 30)),
            Measure::Hours if value < 0.1 => format!("{:.1} s", value * 3600.0),
            Measure::Hours => format!("{value:.2} h"),
            Measure::Dollars => format!("${value:.2}"),
        }
    }
}

/// One measure of one job: estimate, actual, and the relative error of the estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub measure: Measure,
    pub estimate: Option<f64>,
    pub actual: Option<f64>,
    /// Why the two are not compared although both are there: a job that ran without a GPU took
    /// its time on other hardware than the estimate's (a local CPU run of a GPU job).
    pub not_compared: Option<&'static str>,
}

impl Row {
    /// `(estimate - actual) / actual`: negative when the estimate was too low.
    pub fn error(&self) -> Option<f64> {
        match (self.estimate, self.actual, self.not_compared) {
            (Some(e), Some(a), None) if a > 0.0 => Some((e - a) / a),
            _ => None,
        }
    }

    /// `estimate`, `actual`, `error` as text; `—` for what is absent, and the reason where the two
    /// are not compared.
    pub fn cells(&self) -> [String; 3] {
        let or_dash = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| self.measure.show(v));
        let error = match (self.error(), self.not_compared) {
            (Some(e), _) => format!("{:+.0}%", e * 100.0),
            (None, Some(why)) => format!("— ({why})"),
            (None, None) => "—".to_owned(),
        };
        [or_dash(self.estimate), or_dash(self.actual), error]
    }

    pub fn json(&self) -> serde_json::Value {
        let mut row = serde_json::json!({ "estimate": self.estimate, "actual": self.actual, "error": self.error() });
        if let Some(why) = self.not_compared {
            row["not_compared"] = why.into();
        }
        row
    }
}

/// The four rows of a job's record; `None` when the record has neither estimate nor usage.
pub fn compare(record: &NodeRecord) -> Option<Vec<Row>> {
    let (estimate, used) = (record.estimate.as_ref(), record.usage.as_ref());
    if estimate.is_none() && used.is_none() {
        return None;
    }
    let actual_usd = used
        .and_then(|u| u.billable_seconds)
        .zip(estimate.and_then(|e| e.usd_per_hour))
        .map(|(seconds, rate)| seconds as f64 / 3600.0 * rate);
    let bytes = |v: Option<u64>| v.map(|b| b as f64);
    // Time is compared only where the job ran on the hardware estimated for: a GPU was measured, or
    // SageMaker billed it.
    let on_cpu = used.is_some_and(|u| u.gpu_reserved_peak_bytes.is_none() && u.billable_seconds.is_none());
    Some(
        Measure::ALL
            .into_iter()
            .map(|measure| {
                let (estimate, actual) = match measure {
                    Measure::GpuMemory => {
                        (estimate.map(|e| e.gpu_peak_bytes as f64), bytes(used.and_then(|u| u.gpu_reserved_peak_bytes)))
                    }
                    Measure::HostMemory => {
                        (estimate.map(|e| e.host_peak_bytes as f64), bytes(used.and_then(|u| u.host_peak_bytes)))
                    }
                    Measure::Hours => (estimate.and_then(|e| e.hours), used.and_then(Used::hours)),
                    Measure::Dollars => (estimate.and_then(|e| e.usd), actual_usd),
                };
                let not_compared = (measure == Measure::Hours && on_cpu).then_some("ran without a GPU");
                Row { measure, estimate, actual, not_compared }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_file_of_another_schema_is_refused_and_missing_figures_stay_absent() {
        assert!(Used::parse(r#"{"schema": "tunec.usage/2"}"#).unwrap_err().contains("tunec.usage/2"));
        assert!(Used::parse("{}").unwrap_err().contains("schema"));
        let used =
            Used::parse(r#"{"schema": "tunec.usage/1", "wall_seconds": 7200, "host_peak_bytes": 5}"#).expect("parse");
        assert_eq!((used.host_peak_bytes, used.gpu_reserved_peak_bytes), (Some(5), None));
        assert_eq!(used.hours(), Some(2.0));
        // Billable time, where there is one, is what a job counts for; then the process's.
        assert_eq!(Used { process_seconds: Some(3600.0), ..used.clone() }.hours(), Some(1.0));
        assert_eq!(Used { billable_seconds: Some(1800), process_seconds: Some(3600.0), ..used }.hours(), Some(0.5));
    }

    fn run(gpu: Option<&str>, estimate: (u64, f64), used: Used) -> NodeRecord {
        NodeRecord {
            key: "k".into(),
            status: crate::journal::Status::Succeeded,
            attempt: 1,
            job_name: None,
            job_created: false,
            outputs: Vec::new(),
            started_at: "2026-12-01T00:00:00Z".into(),
            finished_at: Some("2026-12-01T01:00:00Z".into()),
            error: None,
            estimate: Some(Estimated {
                instance: "ml.g5.2xlarge".into(),
                instance_count: 1,
                gpu_peak_bytes: estimate.0,
                hours: Some(estimate.1),
                gpu: gpu.map(str::to_owned),
                family: Some("llama".into()),
                ..Estimated::default()
            }),
            usage: Some(used),
        }
    }

    #[test]
    fn calibration_takes_the_largest_memory_ratio_and_the_median_hours_ratio_per_gpu_and_family() {
        let gpu = |reserved: u64, seconds: f64| Used {
            gpu_reserved_peak_bytes: Some(reserved),
            process_seconds: Some(seconds),
            ..Used::default()
        };
        let records = [
            // Memory 11/10 and 21/20; hours 1800 s of 1 h and 2700 s of 1 h: median (0.5 + 0.75) / 2.
            ("p/a", run(Some("A10G"), (10_000, 1.0), gpu(11_000, 1800.0))),
            ("p/b", run(Some("A10G"), (20_000, 1.0), gpu(21_000, 2700.0))),
            // Billed by SageMaker, memory not downloaded: hours only, 0.9 of 2 h estimated.
            ("q/c", run(Some("L40S"), (10_000, 2.0), Used { billable_seconds: Some(6480), ..Used::default() })),
            // A CPU run measured neither a GPU nor a bill: it counts for nothing.
            (
                "r/d",
                run(
                    Some("A10G"),
                    (10_000, 1.0),
                    Used { host_peak_bytes: Some(1), wall_seconds: Some(9.0), ..Used::default() },
                ),
            ),
            // No GPU in the estimate (not a catalog instance): nothing to group it under.
            ("r/e", run(None, (10_000, 1.0), gpu(30_000, 3600.0))),
        ];
        let calibration = calibrate(records.iter().map(|(n, r)| ((*n).to_owned(), r)));
        assert_eq!(calibration.schema, "tunec.calibration/1");
        assert_eq!(calibration.entries.len(), 2, "{calibration:?}");
        let a10g = calibration.entry("A10G", "llama").expect("A10G");
        let memory = a10g.memory.as_ref().expect("memory");
        assert_eq!((memory.factor, memory.runs, memory.min, memory.max), (1.1, 2, 1.05, 1.1));
        let hours = a10g.hours.as_ref().expect("hours");
        assert_eq!((hours.factor, hours.runs), (0.625, 2));
        assert_eq!(a10g.runs, ["p/a (2026-12-01T01:00:00Z)", "p/b (2026-12-01T01:00:00Z)"]);
        let l40s = calibration.entry("L40S", "llama").expect("L40S");
        assert_eq!((l40s.memory.as_ref(), l40s.hours.as_ref().map(|f| f.factor)), (None, Some(0.9)));
        // A calibration applied when the run started is taken back out: of the 12,000 bytes
        // recorded, 2,000 were its term, so 13,200 used is 1.32 of the model's own 10,000; the 2 h
        // recorded were the model's 1 h times 2, and 1 h used is a ratio of 1.
        let mut calibrated = run(Some("A10G"), (12_000, 2.0), gpu(13_200, 3600.0));
        if let Some(e) = calibrated.estimate.as_mut() {
            e.calibration_bytes = 2_000;
            e.calibration_hours_factor = Some(2.0);
        }
        let again = calibrate([("p/f".to_owned(), &calibrated)]);
        let entry = again.entry("A10G", "llama").expect("A10G");
        assert_eq!(entry.memory.as_ref().map(|f| f.factor), Some(1.32));
        assert_eq!(entry.hours.as_ref().map(|f| f.factor), Some(1.0));
    }

    #[test]
    fn errors_are_relative_to_the_actual_and_cost_is_billable_time_at_the_on_demand_rate() {
        let estimated = Estimated {
            instance: "ml.g5.2xlarge".into(),
            instance_count: 2,
            gpu_peak_bytes: 9 << 30,
            host_peak_bytes: 4 << 30,
            hours: Some(1.5),
            usd: Some(3.0),
            usd_per_hour: Some(2.0),
            ..Estimated::default()
        };
        let used = Used {
            gpu_reserved_peak_bytes: Some(10 << 30),
            host_peak_bytes: Some(2 << 30),
            billable_seconds: Some(3600),
            wall_seconds: Some(100.0),
            ..Used::default()
        };
        let record = NodeRecord {
            key: "k".into(),
            status: crate::journal::Status::Succeeded,
            attempt: 1,
            job_name: None,
            job_created: false,
            outputs: Vec::new(),
            started_at: String::new(),
            finished_at: None,
            error: None,
            estimate: Some(estimated),
            usage: Some(used),
        };
        let rows = compare(&record).expect("rows");
        let errors: Vec<Option<f64>> = rows.iter().map(Row::error).collect();
        // 9 GiB for 10: -10 %; 4 for 2: +100 %; 1.5 h for 1 billable hour: +50 %; $3 for 1 h at $2: +50 %.
        assert_eq!(errors, [Some(-0.1), Some(1.0), Some(0.5), Some(0.5)]);
        assert_eq!(rows[0].cells(), ["9.00 GiB", "10.00 GiB", "-10%"]);
        // A local run: no GPU figure and no bill, so no actual and no error for them.
        let local = NodeRecord {
            usage: Some(Used { host_peak_bytes: Some(1 << 30), wall_seconds: Some(36.0), ..Used::default() }),
            ..record
        };
        let rows = compare(&local).expect("rows");
        assert_eq!(rows[0].cells(), ["9.00 GiB", "—", "—"]);
        // Its time is shown, and not compared with a GPU's.
        assert_eq!(rows[2].cells(), ["1.50 h", "36.0 s", "— (ran without a GPU)"]);
        assert_eq!(rows[2].error(), None);
        assert_eq!(rows[2].json()["not_compared"], "ran without a GPU");
        assert_eq!(rows[3].actual, None);
    }
}
