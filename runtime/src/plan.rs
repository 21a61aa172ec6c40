//! `tunec plan`, `tunec graph` and `tunec iam-policy`: views of the lowered job graph.

use crate::check::{checked, compiled};
use crate::cli::{usage_error, Format, GraphFormat, Input};
use std::path::Path;
use std::process::ExitCode;
use tunec_compiler::lower::{graph as draw, iam, Execution};
use tunec_compiler::render;
use tunec_runtime::journal::{self, Decision};
use tunec_runtime::run::data_report::SplitCounts;

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
    let decisions = decisions(&checked, &graph, state.as_ref(), &base);
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
                    "job_name": match &n.execution { Execution::SagemakerJob { job_name, .. } => Some(job_name), _ => None },
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
            Execution::SagemakerJob { job_name, instance_type, instance_count, .. } => {
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
    checked: &tunec_compiler::check::Checked,
    graph: &tunec_compiler::lower::JobGraph,
    state: Option<&journal::State>,
    base: &Path,
) -> Vec<(String, String)> {
    use tunec_runtime::run::data;
    let mut decided: Vec<(String, String)> = Vec::new();
    for n in &graph.nodes {
        let record = state.and_then(|s| s.nodes.get(&n.name));
        let program = checked.program.as_ref();
        let decision = match journal::decide(record, &n.key, base) {
            Ok(Decision::Run(reason)) => ("run", reason.to_string()),
            Err(e) => ("run", e.to_string()),
            Ok(Decision::Reuse) => {
                let recorded = record.map(|r| r.outputs.as_slice()).unwrap_or_default();
                let rerun = n.deps.iter().find(|d| {
                    let i = graph.nodes.iter().position(|m| &m.name == *d);
                    i.and_then(|i| decided.get(i)).is_some_and(|(action, _)| action != "reuse")
                });
                match (program.and_then(|p| data::still_runs(p, &n.name, base, recorded)), rerun) {
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

pub(crate) fn graph(input: &Input, format: GraphFormat) -> ExitCode {
    let (_, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    out_raw!(
        "{}",
        match format {
            GraphFormat::Dot => draw::dot(&graph),
            GraphFormat::Mermaid => draw::mermaid(&graph),
        }
    );
    ExitCode::SUCCESS
}

/// Replaces `${env:NAME}` with the variable's value when it is set.
fn resolve(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}').map(|e| e + start) else { break };
        let name = &rest[start + 6..end];
        match std::env::var(name) {
            Ok(value) => out.push_str(&value),
            Err(_) => {
                out.push_str(&rest[start..=end]);
                missing.push(name.to_owned());
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, missing)
}

pub(crate) fn iam_policy(input: &Input) -> ExitCode {
    let (checked, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(program) = &checked.program else { return ExitCode::from(1) };
    if program.target.kind != "sagemaker" {
        return usage_error("IAM policies are for the SageMaker target; this pipeline's target is local");
    }
    let field =
        |name: &str| tunec_compiler::lower::request::base_field(program, name).map(|v| resolve(&v)).unwrap_or_default();
    let (bucket, m1) = field("bucket");
    let (region, m2) = field("region");
    let (role, m3) = field("role");
    let kms = tunec_compiler::lower::request::base_field(program, "kms_key").map(|v| resolve(&v).0);
    for name in m1.iter().chain(&m2).chain(&m3) {
        eprintln!("tunec: `{name}` is not set; the policies show `${{env:{name}}}` in its place");
    }
    let account = iam::Account { bucket_uri: &bucket, region: &region, role_arn: &role, kms_key: kms.as_deref() };
    let doc = serde_json::json!({
        "execution_role": iam::execution_role(&graph, &account),
        "caller": iam::caller(&graph, &account),
    });
    out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    ExitCode::SUCCESS
}

pub(crate) fn status(file: &Path, format: Format, clear_stale_lock: bool) -> ExitCode {
    let input = crate::cli::Input { file: file.to_path_buf(), set: Vec::new(), color: crate::cli::Color::Auto };
    let checked = match checked(&input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(program) = &checked.program else {
        crate::check::print_diagnostics(&checked, input.color, true);
        return ExitCode::from(1);
    };
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let folder = journal::folder(&base, &program.name);
    let holder = match journal::lock_holder(&folder) {
        Ok(holder) => holder,
        Err(e) => return usage_error(&e.to_string()),
    };
    if clear_stale_lock {
        if let Some(h) = &holder {
            return usage_error(&format!(
                "a live run (pid {}, started {}) holds the lock of `{}`; it is not cleared",
                h.pid, h.since, program.name
            ));
        }
        out!(
            "no run holds the lock of `{}`: a run's lock ends with its process, so a killed run leaves nothing to clear",
            program.name
        );
        return ExitCode::SUCCESS;
    }
    let state = match journal::read_state(&folder) {
        Ok(state) => state,
        Err(e) => return usage_error(&e.to_string()),
    };
    if format == Format::Json {
        // What each recorded split kept, skipped and dropped, from its profile.
        let data: serde_json::Map<String, serde_json::Value> = state
            .iter()
            .flat_map(|s| &s.nodes)
            .filter_map(|(name, r)| Some((name.clone(), SplitCounts::of(program, name, &base, &r.outputs)?.json())))
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "version": 1,
                "pipeline": program.name,
                "journal": folder.display().to_string(),
                "locked": holder.is_some(),
                "lock_holder": holder,
                "state": state,
                "data": data,
            }))
            .unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let Some(state) = state else {
        out!("no run of `{}` yet (no journal in {})", program.name, folder.display());
        return ExitCode::SUCCESS;
    };
    out!("`{}`: {} of {} nodes recorded in {}", program.name, state.nodes.len(), program.nodes.len(), folder.display());
    if let Some(h) = &holder {
        out!("locked: a run is in progress (pid {}, started {})", h.pid, h.since);
    }
    let width = program.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    for &i in &program.order {
        let name = &program.nodes[i].name;
        match state.nodes.get(name) {
            Some(r) => {
                // A `running` record with no run holding the lock belongs to a run that was killed.
                let status = match r.status {
                    journal::Status::Running if holder.is_none() => "unfinished",
                    status => status.as_str(),
                };
                let job = r.job_name.as_deref().map(|j| format!("  job {j}")).unwrap_or_default();
                let when = r.finished_at.as_deref().unwrap_or(&r.started_at);
                out!(
                    "  {name:<width$}  {status:<9}  attempt {}  key {}  {} outputs  {when}{job}",
                    r.attempt,
                    &r.key[..r.key.len().min(12)],
                    r.outputs.len()
                );
                if let Some(error) = &r.error {
                    out!("  {:<width$}  error: {error}", "");
                }
                if let Some(counts) = SplitCounts::of(program, name, &base, &r.outputs) {
                    out!("  {:<width$}  {}", "", counts.describe());
                    counts.warnings().iter().for_each(|w| out!("  {:<width$}  {w}", ""));
                }
            }
            None => out!("  {name:<width$}  not run"),
        }
    }
    ExitCode::SUCCESS
}
