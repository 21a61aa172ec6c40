//! `tunec run`: compiles the pipeline (or reads the job graph a `tunec build` folder holds), checks
//! what the run needs before anything starts (`--until`, the `env()` values the jobs read, the
//! SageMaker target's settings), opens the journal and hands the job graph to the executor
//! (`tunec_runtime::run`).
//!
//! A build folder (or its `job_graph.json`) runs like the pipeline it was built from: its paths
//! are relative to the pipeline's folder, which `manifest.json` names (`pipeline_file`, relative
//! to the build folder), and its journal is that folder's. It must have been built by a tunec with
//! the same job-graph version and script bundle, since the keys it holds cover both, and the
//! folder's copy of the scripts (`code/`) must be that bundle unedited: the jobs run the bundle
//! tunec carries, so an edit there would be ignored while its old results were reused.

mod smoke;

use super::check::{compiled, parse_overrides};
use super::{usage_error, Format, Input};
use clap::ValueEnum;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tunec_compiler::lower::{Execution, JobGraph, SCHEMA_VERSION};
use tunec_compiler::secret::{parse_arn, HUB_TOKEN_SECRET_VAR};
use tunec_compiler::target::Target;
use tunec_runtime::bundle;
use tunec_runtime::journal::Journal;
use tunec_runtime::ledger::{self, EstimateSource};
use tunec_runtime::run::aws::Settings;
use tunec_runtime::run::progress::{Mode, Reporter};
use tunec_runtime::run::summary::Summary;
use tunec_runtime::run::target::local::LocalTarget;
use tunec_runtime::run::target::sagemaker::request::resolve_placeholders;
use tunec_runtime::run::target::sagemaker::{NodeContext, SageMakerOptions, SageMakerTarget};
use tunec_runtime::run::{self as runner, Outcome, RunError, RunOptions};
use tunec_runtime::world::FsWorld;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Bars on a terminal, plain lines otherwise (and when CI is set).
    Auto,
    /// Live progress bars.
    Bars,
    /// One line per event, with the jobs' log lines streamed.
    Plain,
}

/// `tunec run`: exit 0 when every node up to the end (or `--until`) is done, 1 when the pipeline
/// does not compile or a node fails, 2 for usage errors, a held lock, or a job that cannot start
/// (a Hub model locally, no usable Python, an unset `env()` variable, no AWS region), 130 when
/// interrupted (Ctrl-C).
pub(crate) fn run(
    input: &Input,
    until: Option<String>,
    python: Option<PathBuf>,
    progress: Progress,
    endpoint_url: Option<String>,
    format: Format,
    smoke: Option<u64>,
) -> ExitCode {
    if let Some(file) = job_graph_file(&input.file) {
        if !input.set.is_empty() {
            return usage_error(
                "`--set` changes a pipeline before it is lowered, and a job graph is lowered already: build it \
                 again with the value (`tunec build FILE --set NAME=VALUE -o DIR`)",
            );
        }
        let (graph, base) = match read_build(&file) {
            Ok(x) => x,
            Err(message) => return usage_error(&message),
        };
        let contexts = graph
            .nodes
            .iter()
            .map(|n| {
                let location = format!("{} ({} {})", file.display(), n.kind, n.name);
                (n.name.clone(), NodeContext { location, memory: None })
            })
            .collect();
        // A build folder carries no `.tune` file to estimate: its jobs record what they used only.
        let estimates = EstimateSource::default();
        let how =
            How { until, python, progress, endpoint_url, format, contexts, estimates, smoke, real_estimates: None };
        return execute(&graph, &base, how);
    }
    let (checked, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(program) = &checked.program else { return ExitCode::from(1) };
    let base = input.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let how = How {
        until,
        python,
        progress,
        endpoint_url,
        format,
        contexts: contexts(&checked, program),
        estimates: estimate_source(input, &checked),
        smoke,
        real_estimates: checked.estimates.clone(),
    };
    execute(&graph, &base, how)
}

/// The job graph to run when `path` names a build folder or a `.json` file.
fn job_graph_file(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        return Some(path.join("job_graph.json"));
    }
    path.extension().is_some_and(|e| e == "json").then(|| path.to_path_buf())
}

/// The job graph in `file` and the pipeline's folder, which the `manifest.json` beside it names.
fn read_build(file: &Path) -> Result<(JobGraph, PathBuf), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("`{}` is not a job graph (not JSON: {e})", file.display()))?;
    let rebuild = "run `tunec build` again with this tunec";
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "`{}` is a job graph of version {v}, and this tunec runs version {SCHEMA_VERSION}: {rebuild}",
                file.display()
            ))
        }
        None => return Err(format!("`{}` is not a job graph (no `version`)", file.display())),
    }
    let graph: JobGraph = serde_json::from_value(value)
        .map_err(|e| format!("`{}` is not a job graph of version {SCHEMA_VERSION}: {e}", file.display()))?;
    let digest = bundle::digest();
    if graph.bundle_digest != digest {
        return Err(format!(
            "`{}` was built for the script bundle {}, and this tunec carries {}: its keys name scripts this tunec \
             does not have; {rebuild}",
            file.display(),
            &graph.bundle_digest[..graph.bundle_digest.len().min(12)],
            &digest[..12]
        ));
    }
    let folder = file.parent().unwrap_or(Path::new(""));
    // The folder's copy of the scripts is what a reader of the build sees; the jobs run the bundle
    // this tunec carries, whose digest is in every job's key. An edited copy would silently not run,
    // and the results of the old scripts would be reused under their old keys: refuse it.
    let code = folder.join("code");
    if code.is_dir() {
        let edited =
            bundle::differences(&code).map_err(|e| format!("cannot read the scripts in `{}`: {e}", code.display()))?;
        if !edited.is_empty() {
            return Err(format!(
                "the scripts in `{}` are not the bundle `{}` was built with: {}. tunec runs the entry scripts it \
                 carries (bundle {}), and their digest is in every job's key, so an edited copy would neither run \
                 nor change a key: undo the edit (`tunec build` again writes the bundle afresh), or change \
                 stdlib/python in tunec's source and rebuild tunec, which gives every job a new key",
                code.display(),
                file.display(),
                edited.join(", "),
                &digest[..12]
            ));
        }
    }
    let manifest = folder.join("manifest.json");
    let pipeline_file = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|m| m["pipeline_file"].as_str().map(PathBuf::from))
        .ok_or_else(|| {
            format!(
                "`{}` does not name the pipeline's file (`pipeline_file`), whose folder holds the graph's inputs and \
                 journal: {rebuild}",
                manifest.display()
            )
        })?;
    let pipeline_file = folder.join(pipeline_file);
    if !pipeline_file.is_file() {
        return Err(format!(
            "the pipeline `{}` that `{}` names is not there, nor the inputs beside it: the build folder was moved \
             without it",
            pipeline_file.display(),
            manifest.display()
        ));
    }
    Ok((graph, pipeline_file.parent().map(Path::to_path_buf).unwrap_or_default()))
}

/// How to run a graph: the command's flags, and where each node is in its `.tune` file.
struct How {
    until: Option<String>,
    python: Option<PathBuf>,
    progress: Progress,
    endpoint_url: Option<String>,
    format: Format,
    contexts: BTreeMap<String, NodeContext>,
    /// Each job node's estimate, recorded next to what it used.
    estimates: EstimateSource,
    /// `--smoke`: the number of records of each dataset to read (`--smoke-rows`).
    smoke: Option<u64>,
    /// The real run's estimate, for the smoke report.
    real_estimates: Option<tunec_compiler::estimate::Estimates>,
}

/// Every job's `TUNEC_HF_TOKEN_SECRET`, resolved, is the ARN of a Secrets Manager secret.
fn check_secret_arns(graph: &JobGraph) -> Result<(), String> {
    for node in &graph.nodes {
        let Execution::SageMakerJob { request, .. } = &node.execution else { continue };
        let Some(arn) = request["Environment"][HUB_TOKEN_SECRET_VAR].as_str() else { continue };
        let arn = resolve_placeholders(arn)?;
        parse_arn(&arn).map_err(|problem| {
            format!(
                "the Hub token's secret of `{}` is not the ARN of a Secrets Manager secret ({problem}): `{arn}`; \
                 set it to the ARN that `aws secretsmanager describe-secret --query ARN` prints",
                node.name
            )
        })?;
    }
    Ok(())
}

/// Runs `graph`, whose paths are relative to `base`, on its target.
fn execute(graph: &JobGraph, base: &Path, how: How) -> ExitCode {
    if let Some(rows) = how.smoke {
        return smoke::execute(graph, base, how, rows);
    }
    let How { until, python, progress, endpoint_url, format, contexts, estimates, .. } = how;
    if let Err(e) = runner::check_until(graph, until.as_deref()) {
        return usage_error(&e.to_string());
    }
    // A run `--until` a data node creates no job: it needs none of the target's settings.
    let jobs = runner::runs_jobs(graph, until.as_deref());
    let (region, kms_key) = if graph.target == Target::SageMaker && jobs {
        // Every env() the jobs read must be set before anything runs, not discovered at the first job.
        let missing: Vec<&str> =
            graph.env.iter().map(String::as_str).filter(|v| std::env::var(v).map_or(true, |x| x.is_empty())).collect();
        if !missing.is_empty() {
            return usage_error(&format!(
                "the pipeline reads {} with env(...), and {} not set: export {} (`tunec plan` lists what it reads)",
                missing.join(", "),
                if missing.len() == 1 { "it is" } else { "they are" },
                missing.iter().map(|m| format!("{m}=...")).collect::<Vec<_>>().join(" ")
            ));
        }
        // A Hub token's secret ARN from env() is checked here, not by the first job that reads it.
        if let Err(message) = check_secret_arns(graph) {
            return usage_error(&message);
        }
        let setting = |name: &str| graph.target_fields().str_or_env(name).map(|v| resolve_placeholders(&v)).transpose();
        match (setting("region"), setting("kms_key")) {
            (Ok(region), Ok(kms_key)) => (region, kms_key),
            (Err(message), _) | (_, Err(message)) => return usage_error(&message),
        }
    } else {
        (None, None)
    };
    let journal = match Journal::open(base, &graph.pipeline) {
        Ok(journal) => journal,
        Err(e) => return usage_error(&e.to_string()),
    };
    let reporter = reporter(progress, format);
    let aws = Settings { region, endpoint_url };
    // The one place that knows the targets: each is built here and run through the same executor.
    let target: Arc<dyn runner::target::Target> = match graph.target {
        Target::Local => Arc::new(LocalTarget::new(base, reporter.clone(), python)),
        Target::SageMaker => {
            let options = SageMakerOptions { aws: aws.clone(), kms_key, contexts };
            Arc::new(SageMakerTarget::new(base, reporter.clone(), options))
        }
    };
    let options = RunOptions { until, signals: true, stop: None, aws, estimates };
    let since = jiff::Timestamp::now();
    let result = runner::run(graph, base, target, &options, journal, reporter.clone());
    let summary = Summary::collect(graph, base, options.until.as_deref(), since, &result);
    match format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&summary.json()).unwrap_or_default()),
        Format::Human => summary.lines().iter().for_each(|line| reporter.line(line)),
    }
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => {
            eprintln!("tunec: interrupted; what finished is recorded, and `tunec run` resumes the rest");
            ExitCode::from(130)
        }
        Err(e @ RunError::NodeFailed { .. }) => {
            eprintln!("tunec: {e}");
            ExitCode::from(1)
        }
        Err(e) => usage_error(&e.to_string()),
    }
}

/// Where a run's progress goes: stdout, or stderr when stdout is for the JSON document.
fn reporter(progress: Progress, format: Format) -> Arc<Reporter> {
    let mode = match progress {
        _ if format == Format::Json => Mode::Plain,
        Progress::Auto => Mode::detect(),
        Progress::Bars => Mode::Bars,
        Progress::Plain => Mode::Plain,
    };
    let out: Box<dyn std::io::Write + Send> =
        if format == Format::Json { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    Arc::new(Reporter::new(mode, out))
}

/// A job's estimate as the run starts it: the same text and `--set` values checked again, with
/// the data profiles written by then.
fn estimate_source(input: &Input, checked: &tunec_compiler::Checked) -> EstimateSource {
    let Some(source) = checked.sources.get(checked.main) else { return EstimateSource::default() };
    let (name, text) = (source.name.clone(), source.text.clone());
    let overrides = parse_overrides(&input.set).unwrap_or_default();
    let world = FsWorld::for_pipeline(&input.file);
    EstimateSource::new(move |node| {
        ledger::estimates(&tunec_compiler::check(&name, &text, &overrides, &world)).remove(node)
    })
}

/// Each node's place in the `.tune` file and memory estimate, for the messages of a run.
fn contexts(checked: &tunec_compiler::Checked, program: &tunec_compiler::Program) -> BTreeMap<String, NodeContext> {
    let (file, text) = checked.sources.get(checked.main).map(|f| (f.name.clone(), f.text.clone())).unwrap_or_default();
    let memory = checked
        .estimates
        .as_ref()
        .map(|e| {
            e.nodes
                .iter()
                .map(|n| {
                    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
                    (
                        n.node.clone(),
                        format!(
                            "{:.1} GiB of {:.1} GiB per GPU on {} x {}",
                            gib(n.gpu_peak_bytes),
                            gib(n.gpu_capacity_bytes),
                            n.instance_count,
                            n.instance
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    tunec_runtime::run::target::sagemaker::contexts(&file, &text, program, &memory)
}
