//! The report at the end of a smoke run, printed and written to `.tunec/<pipeline>/smoke/report.json`.
//!
//! Everything in it is read back from what the run wrote (its journal, each split's profile and
//! parts, each train job's metrics.json) or from the checked program (where each node is in the
//! `.tune` file, the real run's estimate): each node's outcome, with the place of a failure; the
//! substitutions; per split the records read, kept, skipped and dropped and the share of tokens
//! that carry labels; per train node the padding a batch wastes at the real `per_device_batch`
//! (padded to its longest row, as the collator does, and to `seq_len`), the overfit check's first
//! and last loss and the measured host peak; and beside them the real run's estimate.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value as Json};
use tunec_compiler::estimate::Estimates;
use tunec_compiler::lower::JobGraph;

use super::Substitution;
use crate::journal::{read_state, Status};
use crate::run::target::local::job_root;

/// One node's outcome.
#[derive(Debug, Clone)]
pub struct NodeOutcome {
    pub node: String,
    pub kind: String,
    /// `succeeded`, `failed`, `interrupted`, `running` or `not run`.
    pub outcome: String,
    /// Where the node is in the `.tune` file (`p.tune:23:3 (train sft)`).
    pub location: Option<String>,
    pub error: Option<String>,
}

/// What a split's data step found.
#[derive(Debug, Clone)]
pub struct DataFigures {
    pub split: String,
    pub read: u64,
    pub kept: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// The share of tokens that carry labels.
    pub labelled: Option<f64>,
}

/// What a train node's smoke run found.
#[derive(Debug, Clone)]
pub struct TrainFigures {
    pub node: String,
    /// The real run's per_device_batch and seq_len.
    pub batch: u64,
    pub seq_len: u64,
    pub batches: u64,
    /// Mean and worst share of a batch's tokens that are padding, padded to its longest row.
    pub pad_longest: Option<(f64, f64)>,
    /// Mean share that is padding when every row is padded to seq_len.
    pub pad_seq_len: Option<f64>,
    /// The overfit check's first and last loss.
    pub losses: Option<(f64, f64)>,
    /// The train script's measured peak resident memory.
    pub host_peak_bytes: Option<u64>,
}

/// The real run's estimate of a job node.
#[derive(Debug, Clone)]
pub struct RealEstimate {
    pub node: String,
    pub instance: String,
    pub gpu_peak_bytes: u64,
    pub gpu_capacity_bytes: u64,
    pub hours: Option<f64>,
    pub usd: Option<f64>,
}

/// The report of one smoke run.
#[derive(Debug, Clone)]
pub struct Report {
    pub pipeline: String,
    pub passed: bool,
    pub nodes: Vec<NodeOutcome>,
    pub substitutions: Vec<Substitution>,
    pub data: Vec<DataFigures>,
    pub train: Vec<TrainFigures>,
    pub estimates: Vec<RealEstimate>,
    pub total_hours: Option<f64>,
    pub total_usd: Option<f64>,
    pub seconds: f64,
}

fn read_json(path: &Path) -> Option<Json> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What a report is made from.
pub struct Inputs<'a> {
    /// The graph as lowered, and its smoke graph.
    pub real: &'a JobGraph,
    pub smoke: &'a JobGraph,
    /// The pipeline's folder, under which the smoke run wrote.
    pub base: &'a Path,
    pub substitutions: &'a [Substitution],
    /// The node the run stopped at, and why.
    pub failure: Option<(&'a str, &'a str)>,
    /// Where each node is in the `.tune` file.
    pub locations: &'a BTreeMap<String, String>,
    /// The real run's estimate.
    pub estimates: Option<&'a Estimates>,
    pub seconds: f64,
}

/// The report of a smoke run, from what it wrote.
pub fn collect(inputs: &Inputs<'_>) -> Report {
    let Inputs { real, smoke, base, substitutions, failure, locations, estimates, seconds } = *inputs;
    let folder = base.join(format!(".tunec/{}", smoke.pipeline));
    let state = read_state(&folder).ok().flatten();
    let nodes: Vec<NodeOutcome> = smoke
        .nodes
        .iter()
        .map(|n| {
            let record = state.as_ref().and_then(|s| s.nodes.get(&n.name)).filter(|r| r.key == n.key);
            let mut outcome = record.map_or("not run", |r| r.status.as_str()).to_owned();
            let mut error = record.filter(|r| r.status == Status::Failed).and_then(|r| r.error.clone());
            if let Some((_, message)) = failure.filter(|(node, _)| *node == n.name) {
                outcome = "failed".to_owned();
                error = Some(message.to_owned());
            }
            NodeOutcome {
                node: n.name.clone(),
                kind: n.kind.clone(),
                outcome,
                location: locations.get(&n.name).cloned(),
                error,
            }
        })
        .collect();
    let passed = failure.is_none() && nodes.iter().all(|n| n.outcome != "failed");

    let mut data = Vec::new();
    for split in smoke.nodes.iter().filter(|n| n.kind == "split") {
        let dir = folder.join(format!("data/{}/{}", split.name, split.key));
        let Some(p) = read_json(&dir.join("profile.json")) else { continue };
        let count = |k: &str| p[k].as_u64().unwrap_or(0);
        let (trained, masked) = (count("trained_tokens"), count("masked_tokens"));
        data.push(DataFigures {
            split: split.name.clone(),
            read: count("read"),
            kept: count("rows"),
            skipped: count("skipped"),
            duplicates: count("duplicates"),
            dropped: count("dropped"),
            truncated: count("truncated"),
            labelled: (trained + masked > 0).then(|| trained as f64 / (trained + masked) as f64),
        });
    }

    let mut train = Vec::new();
    for node in smoke.nodes.iter().filter(|n| n.kind == "train") {
        let real_node = real.node(&node.name).unwrap_or(node);
        let batch = real_node.fields().int("per_device_batch").and_then(|b| u64::try_from(b).ok()).unwrap_or(1).max(1);
        let reference = node.fields().reference("data");
        let split = reference.as_ref().and_then(|r| smoke.node(&r.node));
        let chat = split.and_then(|s| s.fields().reference("data")).and_then(|r| smoke.node(&r.node).cloned());
        let seq_len = chat.as_ref().and_then(|c| c.fields().int("seq_len")).and_then(|s| u64::try_from(s).ok());
        let lengths = match (split, reference.as_ref().and_then(|r| r.part.clone())) {
            (Some(split), Some(part)) => {
                row_lengths(&folder.join(format!("data/{}/{}/{part}/{part}.jsonl", split.name, split.key)))
            }
            _ => Vec::new(),
        };
        let padding = padding(&lengths, batch as usize, seq_len.unwrap_or(0));
        let job = base.join(job_root(&smoke.pipeline, &node.name, &node.key));
        let metrics = read_json(&job.join("output/data/metrics.json"));
        let losses = metrics.as_ref().map(super::target::losses).filter(|l| !l.is_empty());
        train.push(TrainFigures {
            node: node.name.clone(),
            batch,
            seq_len: seq_len.unwrap_or(0),
            batches: lengths.len().div_ceil(batch as usize) as u64,
            pad_longest: padding.0,
            pad_seq_len: padding.1,
            losses: losses.map(|l| (l[0], l[l.len() - 1])),
            host_peak_bytes: metrics.as_ref().and_then(|m| m["peak_host_memory_bytes"].as_u64()),
        });
    }

    let estimates_of = estimates.map(|e| {
        e.nodes
            .iter()
            .map(|n| RealEstimate {
                node: n.node.clone(),
                instance: format!("{} x {}", n.instance_count, n.instance),
                gpu_peak_bytes: n.gpu_peak_bytes,
                gpu_capacity_bytes: n.gpu_capacity_bytes,
                hours: n.hours,
                usd: n.usd,
            })
            .collect::<Vec<_>>()
    });
    Report {
        pipeline: real.pipeline.clone(),
        passed,
        nodes,
        substitutions: substitutions.to_vec(),
        data,
        train,
        estimates: estimates_of.unwrap_or_default(),
        total_hours: estimates.filter(|e| e.complete).map(|e| e.total_hours),
        total_usd: estimates.filter(|e| e.complete).map(|e| e.total_usd),
        seconds,
    }
}

/// The token count of each row of a part's JSONL (its `input_ids`), in file order.
fn row_lengths(path: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter_map(|row| row["input_ids"].as_array().map(|ids| ids.len() as u64))
        .collect()
}

/// The share of padding in batches of `batch` rows taken in order: mean and worst when each batch
/// is padded to its longest row, and the mean when every row is padded to `seq_len` (0: unknown).
pub fn padding(lengths: &[u64], batch: usize, seq_len: u64) -> (Option<(f64, f64)>, Option<f64>) {
    if lengths.is_empty() || batch == 0 {
        return (None, None);
    }
    let wastes: Vec<f64> = lengths
        .chunks(batch)
        .map(|rows| {
            let longest = rows.iter().copied().max().unwrap_or(0);
            let total: u64 = rows.iter().sum();
            let padded = longest * rows.len() as u64;
            if padded == 0 {
                0.0
            } else {
                1.0 - total as f64 / padded as f64
            }
        })
        .collect();
    let mean = wastes.iter().sum::<f64>() / wastes.len() as f64;
    let worst = wastes.iter().copied().fold(0.0, f64::max);
    let to_seq_len = (seq_len > 0).then(|| {
        let tokens: u64 = lengths.iter().sum();
        1.0 - tokens as f64 / (seq_len * lengths.len() as u64) as f64
    });
    (Some((mean, worst)), to_seq_len)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

fn percent(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

impl Report {
    /// The report as the lines `tunec run --smoke` prints.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "smoke run of `{}`: {} in {:.1} s",
            self.pipeline,
            if self.passed { "passed" } else { "FAILED" },
            self.seconds
        )];
        out.push("  nodes:".to_owned());
        for n in &self.nodes {
            let mut line = format!("    {:<10} {:<9} {}", n.node, n.kind, n.outcome);
            if let Some(error) = &n.error {
                line.push_str(&format!(" at {}: {error}", n.location.as_deref().unwrap_or("?")));
            }
            out.push(line);
        }
        if !self.substitutions.is_empty() {
            out.push("  substituted:".to_owned());
            out.extend(self.substitutions.iter().map(|s| format!("    {}", s.line())));
        }
        for d in &self.data {
            out.push(format!(
                "  data `{}`: {} records read, {} kept, {} skipped, {} duplicates, {} dropped by overflow, {} \
                 truncated; {} of tokens carry labels",
                d.split,
                d.read,
                d.kept,
                d.skipped,
                d.duplicates,
                d.dropped,
                d.truncated,
                d.labelled.map_or("-".to_owned(), percent)
            ));
        }
        for t in &self.train {
            let pad = match (t.pad_longest, t.pad_seq_len) {
                (Some((mean, worst)), seq) => format!(
                    "padding {} of a batch on average ({} at worst) over {} batches of {}{}",
                    percent(mean),
                    percent(worst),
                    t.batches,
                    t.batch,
                    seq.map_or(String::new(), |s| format!(", {} if padded to seq_len {}", percent(s), t.seq_len))
                ),
                _ => "padding not measured (no rows)".to_owned(),
            };
            out.push(format!("  train `{}`: {pad}", t.node));
            if let Some((first, last)) = t.losses {
                out.push(format!("    overfit check: loss {first:.3} → {last:.3}"));
            }
            if let Some(peak) = t.host_peak_bytes {
                out.push(format!("    host peak (measured, miniature): {}", gib(peak)));
            }
        }
        if !self.estimates.is_empty() {
            out.push("  the real run (estimate):".to_owned());
            for e in &self.estimates {
                out.push(format!(
                    "    {:<10} {} GPU memory of {} on {}, {}, {}",
                    e.node,
                    gib(e.gpu_peak_bytes),
                    gib(e.gpu_capacity_bytes),
                    e.instance,
                    e.hours.map_or("hours unknown".to_owned(), |h| format!("{h:.2} h")),
                    e.usd.map_or("cost unknown".to_owned(), |u| format!("${u:.2}"))
                ));
            }
            if let (Some(h), Some(u)) = (self.total_hours, self.total_usd) {
                out.push(format!("    total      {h:.2} h, ${u:.2}"));
            }
        }
        out
    }

    /// The report as JSON (`report.json`), version 1.
    pub fn json(&self) -> Json {
        json!({
            "version": 1,
            "pipeline": self.pipeline,
            "passed": self.passed,
            "seconds": self.seconds,
            "nodes": self.nodes.iter().map(|n| json!({
                "node": n.node, "kind": n.kind, "outcome": n.outcome, "location": n.location, "error": n.error,
            })).collect::<Vec<_>>(),
            "substitutions": self.substitutions.iter().map(Substitution::json).collect::<Vec<_>>(),
            "data": self.data.iter().map(|d| json!({
                "split": d.split, "read": d.read, "kept": d.kept, "skipped": d.skipped, "duplicates": d.duplicates,
                "dropped_by_overflow": d.dropped, "truncated": d.truncated, "labelled_token_share": d.labelled,
            })).collect::<Vec<_>>(),
            "train": self.train.iter().map(|t| json!({
                "node": t.node, "per_device_batch": t.batch, "seq_len": t.seq_len, "batches": t.batches,
                "padding_to_longest_mean": t.pad_longest.map(|p| p.0),
                "padding_to_longest_worst": t.pad_longest.map(|p| p.1),
                "padding_to_seq_len": t.pad_seq_len,
                "overfit_first_loss": t.losses.map(|l| l.0), "overfit_last_loss": t.losses.map(|l| l.1),
                "host_peak_bytes": t.host_peak_bytes,
            })).collect::<Vec<_>>(),
            "real_estimate": {
                "nodes": self.estimates.iter().map(|e| json!({
                    "node": e.node, "instance": e.instance, "gpu_peak_bytes": e.gpu_peak_bytes,
                    "gpu_capacity_bytes": e.gpu_capacity_bytes, "hours": e.hours, "usd": e.usd,
                })).collect::<Vec<_>>(),
                "total_hours": self.total_hours,
                "total_usd": self.total_usd,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_counts_each_batch_against_its_longest_row_and_against_seq_len() {
        // Batches [10, 30] and [20]: 20 of 60 and 0 of 20 padded; to seq_len 40: 60 of 120.
        let (longest, seq) = padding(&[10, 30, 20], 2, 40);
        let (mean, worst) = longest.expect("rows");
        assert!((mean - (20.0 / 60.0) / 2.0).abs() < 1e-9, "{mean}");
        assert!((worst - 20.0 / 60.0).abs() < 1e-9, "{worst}");
        assert!((seq.expect("seq_len") - 0.5).abs() < 1e-9);
        assert_eq!(padding(&[], 4, 128), (None, None));
    }
}
