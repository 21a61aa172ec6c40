//! `tunec status`: the state journal of a pipeline's runs, node by node, whether a run holds its
//! lock (`--clear-stale-lock` says why there is never a stale one to clear), and for every job
//! the ledger: its estimate against what it used ([`tunec_runtime::ledger`]).

use super::check::{checked, lowered, print_diagnostics};
use super::{usage_error, Color, Format, Input};
use std::path::Path;
use std::process::ExitCode;
use tunec_runtime::journal;
use tunec_runtime::ledger::{self, Row};
use tunec_runtime::run::data_report::SplitCounts;

pub(crate) fn status(file: &Path, format: Format, clear_stale_lock: bool) -> ExitCode {
    let input = Input { file: file.to_path_buf(), set: Vec::new(), color: Color::Auto };
    let checked = match checked(&input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(program) = &checked.program else {
        print_diagnostics(&checked, input.color, true);
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
    // The split counts read each split's settings from the job graph (none when the file has errors).
    let graph = lowered(&checked);
    let counts = |name: &str, r: &journal::NodeRecord| SplitCounts::of(graph.as_ref()?, name, &base, &r.outputs);
    let state = match journal::read_state(&folder) {
        Ok(state) => state,
        Err(e) => return usage_error(&e.to_string()),
    };
    if format == Format::Json {
        // What each recorded split kept, skipped and dropped, from its profile.
        let data: serde_json::Map<String, serde_json::Value> = state
            .iter()
            .flat_map(|s| &s.nodes)
            .filter_map(|(name, r)| Some((name.clone(), counts(name, r)?.json())))
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
                "ledger": ledger_json(state.as_ref(), &program.order.iter().map(|&i| program.nodes[i].name.as_str()).collect::<Vec<_>>()),
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
                if let Some(counts) = counts(name, r) {
                    out!("  {:<width$}  {}", "", counts.describe());
                    counts.warnings().iter().for_each(|w| out!("  {:<width$}  {w}", ""));
                }
            }
            None => out!("  {name:<width$}  not run"),
        }
    }
    let names: Vec<&str> = program.order.iter().map(|&i| program.nodes[i].name.as_str()).collect();
    ledger_lines(&state, &names).iter().for_each(|line| out!("{line}"));
    ExitCode::SUCCESS
}

/// The ledger's rows of each node that has them, in `names`' order.
fn ledger_rows<'a>(state: &'a journal::State, names: &[&'a str]) -> Vec<(&'a str, Vec<Row>)> {
    names.iter().filter_map(|&n| Some((n, ledger::compare(state.nodes.get(n)?)?))).collect()
}

/// `node → measure → {estimate, actual, error}`.
fn ledger_json(state: Option<&journal::State>, names: &[&str]) -> serde_json::Value {
    let Some(state) = state else { return serde_json::json!({}) };
    let nodes: serde_json::Map<String, serde_json::Value> = ledger_rows(state, names)
        .into_iter()
        .map(|(node, rows)| {
            let measures = rows.iter().map(|r| (r.measure.key().to_owned(), r.json())).collect();
            (node.to_owned(), serde_json::Value::Object(measures))
        })
        .collect();
    serde_json::Value::Object(nodes)
}

/// The ledger as a table: a row per node and measure; `—` for what was not estimated or measured.
fn ledger_lines(state: &journal::State, names: &[&str]) -> Vec<String> {
    let rows = ledger_rows(state, names);
    if rows.is_empty() {
        return Vec::new();
    }
    let mut table = vec![["node", "measure", "estimate", "actual", "error"].map(str::to_owned).to_vec()];
    for (node, measures) in &rows {
        for row in measures {
            let [estimate, actual, error] = row.cells();
            table.push(vec![(*node).to_owned(), row.measure.label().to_owned(), estimate, actual, error]);
        }
    }
    let mut lines = vec![String::new(), "estimate against actual (error: (estimate - actual) / actual):".to_owned()];
    lines.extend(tunec_compiler::render::table(&table, &[2, 3, 4]));
    lines
}
