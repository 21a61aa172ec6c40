//! `tunec plan`: each node of the lowered job graph in order, with its key, execution and
//! estimate, and what a run would do with it (`journal::decide`, plus what only the run can settle:
//! a remote source to check, or an input that runs again).

use super::check::compiled;
use super::{Format, Input};
use std::path::Path;
use std::process::ExitCode;
use tunec_compiler::lower::Execution;
use tunec_compiler::render;
use tunec_runtime::journal::{self, Decision};

pub(crate) fn plan(input: &Input, format: Format) -> ExitCode {
    let (checked, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let estimates = checked.estimates.as_ref();
    let base = input.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let state = match journal::read_state(&journal::folder(&base, &graph.pipeline)) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("tunec: {e}");
            return ExitCode::from(2);
        }
    };
    let decisions = decisions(&graph, state.as_ref(), &base);
    if format == Format::Json {
        let nodes: Vec<serde_json::Value> = graph
            .nodes
            .iter()
            .zip(&decisions)
            .map(|(n, (action, reason))| {
                serde_json::json!({
                    "name": n.name,
                    "kind": n.kind,
                    "key": n.key,
                    "deps": n.deps,
                    "execution": n.execution.describe(),
                    "job_name": match &n.execution { Execution::SageMakerJob { job_name, .. } => Some(job_name), _ => None },
                    "estimate": estimates.and_then(|e| e.node(&n.name)).map(render::estimate_json),
                    "action": action,
                    "reason": reason,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "version": 1,
            "pipeline": graph.pipeline,
            "target": graph.target,
            "bundle_digest": graph.bundle_digest,
            "env": graph.env,
            "nodes": nodes,
            "total": estimates.map(|e| serde_json::json!({"hours": e.total_hours, "usd": e.total_usd, "complete": e.complete})),
        });
        out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    out!("plan for `{}` (target {}, bundle {})", graph.pipeline, graph.target, &graph.bundle_digest[..12]);
    let width = graph.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for (i, n) in graph.nodes.iter().enumerate() {
        let how = match &n.execution {
            Execution::SageMakerJob { job_name, instance_type, instance_count, .. } => {
                format!("SageMaker training job {job_name} on {instance_type} x {instance_count}")
            }
            Execution::LocalScript { script, .. } => format!("local script {script}"),
            Execution::Data { operation } => format!("local data step ({operation})"),
            Execution::Model { source, location } => format!("model from {source}: {location}"),
        };
        out!("{:>2}. {:<9} {:<width$}  key {}  {how}", i + 1, n.kind, n.name, &n.key[..12]);
        if !n.deps.is_empty() {
            out!("    {:<9} {:<width$}  after {}", "", "", n.deps.join(", "));
        }
        if let Some(e) = estimates.and_then(|e| e.node(&n.name)) {
            for line in render::estimate_lines(e) {
                out!("    {:<9} {:<width$}  {line}", "", "");
            }
        }
        let (action, reason) = &decisions[i];
        let verb = match action.as_str() {
            "reuse" => "reused",
            "check" => "checked",
            "may run" => "may run",
            _ => "will run",
        };
        out!("    {:<9} {:<width$}  {verb}: {reason}", "", "");
    }
    if let Some(e) = estimates.filter(|e| !e.nodes.is_empty()) {
        out!("{}", render::total_line(e));
    }
    if !graph.env.is_empty() {
        out!("reads at run time: {}", graph.env.join(", "));
    }
    ExitCode::SUCCESS
}

/// What a run would do with each node (in the graph's order, inputs first), and why: `reuse`,
/// `run`, `check` (a remote source, looked at on every run), or `may run` (an input runs again,
/// and this node runs too if that changes what it reads, which only the run can tell).
fn decisions(
    graph: &tunec_compiler::lower::JobGraph,
    state: Option<&journal::State>,
    base: &Path,
) -> Vec<(String, String)> {
    use tunec_runtime::run::data;
    let mut decided: Vec<(String, String)> = Vec::new();
    for n in &graph.nodes {
        let record = state.and_then(|s| s.nodes.get(&n.name));
        let decision = match journal::decide(record, &n.key, base) {
            Ok(Decision::Run(reason)) => ("run", reason.to_string()),
            Err(e) => ("run", e.to_string()),
            Ok(Decision::Reuse) => {
                let recorded = record.map(|r| r.outputs.as_slice()).unwrap_or_default();
                let rerun = n.deps.iter().find(|d| {
                    let i = graph.nodes.iter().position(|m| &m.name == *d);
                    i.and_then(|i| decided.get(i)).is_some_and(|(action, _)| action != "reuse")
                });
                match (data::still_runs(graph, n, base, recorded), rerun) {
                    (Some(journal::Reason::RemoteSource(remote)), _) => (
                        "check",
                        format!("its source {remote} is looked at for changes; what reads it runs if it changed"),
                    ),
                    (Some(reason), _) => ("run", reason.to_string()),
                    (None, Some(dep)) => {
                        ("may run", format!("its input `{dep}` runs again; it runs too if that changes what it reads"))
                    }
                    (None, None) => ("reuse", "same inputs, outputs intact".to_owned()),
                }
            }
        };
        decided.push((decision.0.to_owned(), decision.1));
    }
    decided
}
