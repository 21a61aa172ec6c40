//! `tunec run --smoke`: the pipeline's graph with the smoke substitutions
//! (`tunec_runtime::run::smoke`), run on the local target through the same executor, then the
//! smoke report, printed and written to `.tunec/<pipeline>/smoke/report.json`.

use super::How;
use crate::commands::{usage_error, Format};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tunec_compiler::lower::JobGraph;
use tunec_compiler::target::Target;
use tunec_runtime::journal::{self, Journal};
use tunec_runtime::ledger::EstimateSource;
use tunec_runtime::run::aws::Settings;
use tunec_runtime::run::smoke::target::SmokeTarget;
use tunec_runtime::run::smoke::{self as smoke_run, report, Hardware};
use tunec_runtime::run::summary::Summary;
use tunec_runtime::run::target::local::LocalTarget;
use tunec_runtime::run::target::sagemaker::request::resolve_placeholders;
use tunec_runtime::run::{self as runner, Outcome, RunError, RunOptions};

/// Runs the smoke graph of `graph` (whose paths are relative to `base`), reading `rows` records of
/// each dataset: exit 0 when every node passed, 1 when one failed (the report says which, where and
/// why), 2 for usage errors, 130 when interrupted.
pub(super) fn execute(graph: &JobGraph, base: &Path, how: How, rows: u64) -> ExitCode {
    let How { until, python, progress, endpoint_url, format, contexts, real_estimates, .. } = how;
    if rows == 0 {
        return usage_error("`--smoke-rows 0` reads no record: give 1 or more (the default is 32)");
    }
    if let Err(e) = runner::check_until(graph, until.as_deref()) {
        return usage_error(&e.to_string());
    }
    let hardware = Hardware::detect();
    let (smoke, mut substitutions) = smoke_run::substitute(graph, rows, &hardware);
    let journal = match Journal::open(base, &smoke.pipeline) {
        Ok(journal) => journal,
        Err(e) => return usage_error(&e.to_string()),
    };
    let reporter = super::reporter(progress, format);
    reporter.line(&format!(
        "smoke run of `{}` on this machine, the first {rows} records of each dataset; substituted:",
        graph.pipeline
    ));
    for s in &substitutions {
        reporter.line(&format!("  {}", s.line()));
    }
    // `s3://` data is read as a real run reads it, from the SageMaker target's region when it names one.
    let region = (graph.target == Target::SageMaker)
        .then(|| graph.target_fields().str_or_env("region").and_then(|v| resolve_placeholders(&v).ok()))
        .flatten();
    let aws = Settings { region, endpoint_url };
    let local = LocalTarget::new(base, reporter.clone(), python);
    let smoke_target =
        Arc::new(SmokeTarget::new(local, base, hardware.cuda_devices > 0, reporter.clone(), aws.clone()));
    let target: Arc<dyn runner::target::Target> = smoke_target.clone();
    // A miniature's usage says nothing of the real jobs': nothing is recorded against their estimate.
    let options = RunOptions { until, signals: true, stop: None, aws, estimates: EstimateSource::default() };
    let since = jiff::Timestamp::now();
    let started = std::time::Instant::now();
    let result = runner::run(&smoke, base, target, &options, journal, reporter.clone());
    let summary = Summary::collect(&smoke, base, options.until.as_deref(), since, &result);
    substitutions.extend(smoke_target.substitutions());
    let failure = match &result {
        Err(RunError::NodeFailed { node, message } | RunError::Setup { node, message }) => {
            Some((node.as_str(), message.as_str()))
        }
        _ => None,
    };
    let locations: std::collections::BTreeMap<String, String> =
        contexts.iter().map(|(node, c)| (node.clone(), c.location.clone())).collect();
    let report = report::collect(&report::Inputs {
        real: graph,
        smoke: &smoke,
        base,
        substitutions: &substitutions,
        failure,
        locations: &locations,
        estimates: real_estimates.as_ref(),
        seconds: started.elapsed().as_secs_f64(),
    });
    let report_path = base.join(format!(".tunec/{}/report.json", smoke.pipeline));
    let text = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
    if let Err(e) = journal::write_atomic(&report_path, text.as_bytes()) {
        eprintln!("tunec: cannot write the smoke report `{}`: {e}", report_path.display());
    }
    match format {
        Format::Json => out!("{text}"),
        Format::Human => {
            summary.lines().iter().for_each(|line| reporter.line(line));
            report.lines().iter().for_each(|line| reporter.line(line));
            reporter.line(&format!("  report: {}", report_path.display()));
        }
    }
    match result {
        Ok(Outcome::Done) if report.passed => ExitCode::SUCCESS,
        Ok(Outcome::Done) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => {
            eprintln!("tunec: interrupted; what finished is recorded, and `tunec run --smoke` resumes the rest");
            ExitCode::from(130)
        }
        Err(e @ (RunError::NodeFailed { .. } | RunError::Setup { .. })) => {
            eprintln!("tunec: the smoke run failed: {e}");
            ExitCode::from(1)
        }
        Err(e) => usage_error(&e.to_string()),
    }
}
