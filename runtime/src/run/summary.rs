//! The end of `tunec run`: what each node did, how long it took, what the run produced and where,
//! and the evaluation's metrics; as lines for people or as one JSON document.
//!
//! The summary is read from the journal after the run, so it describes what is recorded, not what
//! the executor believed: a node whose record was started during this run ran (and succeeded,
//! failed or was interrupted); a node with an earlier succeeded record under its current key, all
//! of whose inputs are done, was reused; anything else the run covers did not run. Times are those
//! of the records. What a run produced are the jobs' model folders (an adapter, a merged or fully
//! trained model) and the evaluation's `report.json`, whose `metrics` become a small table. On the
//! SageMaker target the models are the jobs' S3 model artifacts, and the report is the local copy
//! of the evaluation's output data (`target::sagemaker::output_data`).

use std::path::Path;

use serde_json::{json, Value};
use tunec_compiler::lower::JobGraph;

use super::data::measured;
use super::data_report::SplitCounts;
use super::schedule::Dag;
use super::target::local::job_root;
use super::{Outcome, RunError};
use crate::journal::{self, NodeRecord, Status};

/// What became of one node in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOutcome {
    Ran,
    Reused,
    Failed,
    Interrupted,
    /// Left running elsewhere (a SageMaker job after one Ctrl-C); the next run re-attaches.
    LeftRunning,
    NotRun,
}

impl NodeOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeOutcome::Ran => "ran",
            NodeOutcome::Reused => "reused",
            NodeOutcome::Failed => "failed",
            NodeOutcome::Interrupted => "interrupted",
            NodeOutcome::LeftRunning => "left running",
            NodeOutcome::NotRun => "not run",
        }
    }

    fn done(self) -> bool {
        matches!(self, NodeOutcome::Ran | NodeOutcome::Reused)
    }
}

/// One node of the summary.
#[derive(Debug, Clone)]
pub struct NodeSummary {
    pub name: String,
    pub kind: String,
    pub outcome: NodeOutcome,
    /// Wall-clock seconds of this run's attempt.
    pub seconds: Option<f64>,
    /// What a split kept, skipped and dropped.
    pub data: Option<SplitCounts>,
}

/// Something the run produced: a model folder or artifact, or an evaluation report.
#[derive(Debug, Clone)]
pub struct Produced {
    pub node: String,
    /// `adapter`, `model`, `merged model` or `report`.
    pub what: &'static str,
    /// A path relative to the current folder, or an `s3://` URI.
    pub location: String,
    /// The report's metrics.
    pub metrics: Option<Metrics>,
}

/// An evaluation report's metrics, in its order, and the number of examples scored.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub values: Vec<(String, Value)>,
    pub examples: Option<u64>,
}

/// The whole summary.
#[derive(Debug, Clone)]
pub struct Summary {
    pub pipeline: String,
    pub target: String,
    /// `done`, `interrupted`, `failed` or `stopped` (a job that could not start, the journal).
    pub outcome: &'static str,
    pub seconds: f64,
    pub nodes: Vec<NodeSummary>,
    pub produced: Vec<Produced>,
    pub error: Option<String>,
}

fn parse(time: &str) -> Option<jiff::Timestamp> {
    time.parse().ok()
}

fn seconds(record: &NodeRecord) -> Option<f64> {
    let started = parse(&record.started_at)?;
    let finished = parse(record.finished_at.as_deref()?)?;
    Some(finished.duration_since(started).as_secs_f64())
}

/// `0.4 s`, `24 s`, `3 min 12 s`, `1 h 05 min`.
pub fn duration(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if whole < 60 {
        format!("{whole} s")
    } else if whole < 3600 {
        format!("{} min {} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

/// The folder of a job's model among its recorded outputs, or its S3 model artifact.
fn model_location(outputs: &[crate::journal::Output], base: &Path) -> Option<String> {
    if let Some(remote) = outputs.iter().find(|o| o.path.starts_with("s3://") && !measured(&o.path)) {
        return Some(remote.path.clone());
    }
    let path = outputs.iter().map(|o| o.path.as_str()).find(|p| p.contains("/model/"))?;
    let dir = &path[..path.find("/model/")? + "/model".len()];
    Some(base.join(dir).display().to_string())
}

/// The local report of an evaluation and its metrics: a recorded output (local target), else the
/// copy of a remote job's output data in the node's folder (`root`), when it is there.
fn report(outputs: &[crate::journal::Output], base: &Path, root: &str) -> Option<(String, Option<Metrics>)> {
    let recorded = outputs.iter().find(|o| o.path.ends_with("/output/data/report.json"));
    let file = match recorded {
        Some(output) => base.join(&output.path),
        None => Some(base.join(root).join("output/data/report.json")).filter(|f| f.is_file())?,
    };
    let report: Option<Value> = std::fs::read(&file).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let metrics = report.and_then(|r| {
        let values = r.get("metrics")?.as_object()?.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Some(Metrics { values, examples: r.get("num_examples").and_then(Value::as_u64) })
    });
    Some((file.display().to_string(), metrics))
}

impl Summary {
    /// Reads what the run that started at `since` recorded for the nodes it covers (`until`).
    pub fn collect(
        graph: &JobGraph,
        base: &Path,
        until: Option<&str>,
        since: jiff::Timestamp,
        result: &Result<Outcome, RunError>,
    ) -> Summary {
        let state = journal::read_state(&journal::folder(base, &graph.pipeline)).ok().flatten().unwrap_or_default();
        let dag = Dag::new(graph, until);
        let mut nodes: Vec<NodeSummary> = Vec::new();
        let mut produced = Vec::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            if !dag.covers(index) {
                continue;
            }
            let record = state.nodes.get(&node.name);
            let this_run = record.is_some_and(|r| parse(&r.started_at).is_some_and(|t| t >= since));
            let inputs_done = dag
                .deps(index)
                .all(|d| nodes.iter().find(|n| n.name == graph.nodes[d].name).is_none_or(|n| n.outcome.done()));
            let outcome = match record {
                Some(r) if this_run => match r.status {
                    Status::Succeeded => NodeOutcome::Ran,
                    Status::Failed => NodeOutcome::Failed,
                    Status::Interrupted => NodeOutcome::Interrupted,
                    Status::Running if r.job_name.is_some() => NodeOutcome::LeftRunning,
                    Status::Running => NodeOutcome::Interrupted,
                },
                Some(r) if r.status == Status::Succeeded && r.key == node.key && inputs_done => NodeOutcome::Reused,
                _ => NodeOutcome::NotRun,
            };
            let outputs = record.map(|r| r.outputs.as_slice()).unwrap_or_default();
            if outcome.done() {
                match node.kind.as_str() {
                    "train" | "merge" => {
                        let full = node.fields().word("method") == Some("full");
                        let what = match node.kind.as_str() {
                            "merge" => "merged model",
                            _ if full => "model",
                            _ => "adapter",
                        };
                        if let Some(location) = model_location(outputs, base) {
                            produced.push(Produced { node: node.name.clone(), what, location, metrics: None });
                        }
                    }
                    "evaluate" => {
                        let root = job_root(&graph.pipeline, &node.name, &node.key);
                        if let Some((location, metrics)) = report(outputs, base, &root) {
                            produced.push(Produced { node: node.name.clone(), what: "report", location, metrics });
                        } else if let Some(location) = model_location(outputs, base) {
                            produced.push(Produced {
                                node: node.name.clone(),
                                what: "report",
                                location,
                                metrics: None,
                            });
                        }
                    }
                    _ => {}
                }
            }
            nodes.push(NodeSummary {
                name: node.name.clone(),
                kind: node.kind.clone(),
                outcome,
                seconds: if this_run { record.and_then(seconds) } else { None },
                data: if outcome.done() { SplitCounts::of(graph, &node.name, base, outputs) } else { None },
            });
        }
        let (outcome, error) = match result {
            Ok(Outcome::Done) => ("done", None),
            Ok(Outcome::Interrupted) => ("interrupted", None),
            Err(e @ RunError::NodeFailed { .. }) => ("failed", Some(e.to_string())),
            Err(e) => ("stopped", Some(e.to_string())),
        };
        Summary {
            pipeline: graph.pipeline.clone(),
            target: graph.target.to_string(),
            outcome,
            seconds: jiff::Timestamp::now().duration_since(since).as_secs_f64(),
            nodes,
            produced,
            error,
        }
    }

    /// The summary for people: a heading, a line per node, what was produced, and the metrics.
    pub fn lines(&self) -> Vec<String> {
        let heading = match self.outcome {
            "done" => format!("summary: `{}` done in {}", self.pipeline, duration(self.seconds)),
            other => format!("summary: `{}` {other} after {}", self.pipeline, duration(self.seconds)),
        };
        let mut lines = vec![heading];
        let width = self.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
        for node in &self.nodes {
            let time = node.seconds.map(duration).unwrap_or_default();
            let mut line = format!("  {:<width$}  {:<12} {:>10}", node.name, node.outcome.as_str(), time);
            if let Some(data) = &node.data {
                line.push_str("  ");
                line.push_str(&data.short());
            }
            lines.push(line.trim_end().to_owned());
        }
        for p in &self.produced {
            lines.push(format!("{} ({}): {}", p.what, p.node, p.location));
        }
        for p in &self.produced {
            let Some(metrics) = &p.metrics else { continue };
            let rows = metrics.examples.map(|n| format!(", {n} test rows")).unwrap_or_default();
            lines.push(format!("metrics ({}{rows}):", p.node));
            let width = metrics.values.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (name, value) in &metrics.values {
                let value = match value.as_f64() {
                    Some(x) => format!("{x:.4}"),
                    None if value.is_null() => "n/a".to_owned(),
                    None => value.to_string(),
                };
                lines.push(format!("  {name:<width$}  {value}"));
            }
        }
        lines
    }

    /// The summary as one JSON document (version 1), for `tunec run --format json`.
    pub fn json(&self) -> Value {
        json!({
            "version": 1,
            "pipeline": self.pipeline,
            "target": self.target,
            "outcome": self.outcome,
            "seconds": self.seconds,
            "error": self.error,
            "nodes": self.nodes.iter().map(|n| json!({
                "name": n.name,
                "kind": n.kind,
                "outcome": n.outcome.as_str(),
                "seconds": n.seconds,
                "data": n.data.as_ref().map(SplitCounts::json),
            })).collect::<Vec<_>>(),
            "produced": self.produced.iter().map(|p| json!({
                "node": p.node,
                "what": p.what,
                "location": p.location,
                "metrics": p.metrics.as_ref().map(|m| m.values.iter().cloned().collect::<serde_json::Map<_, _>>()),
                "examples": p.metrics.as_ref().and_then(|m| m.examples),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0.44), "0.4 s");
        assert_eq!(duration(24.3), "24 s");
        assert_eq!(duration(192.0), "3 min 12 s");
        assert_eq!(duration(3900.0), "1 h 05 min");
    }
}
