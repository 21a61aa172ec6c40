//! `tunec run`: compiles the pipeline, checks what the run needs before anything starts (`--until`,
//! the `env()` values the jobs read, the SageMaker target's settings), opens the journal and hands
//! the job graph to the executor (`tunec_runtime::run`).

use super::check::compiled;
use super::{usage_error, Input};
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tunec_runtime::journal::Journal;
use tunec_runtime::run::progress::{Mode, Reporter};
use tunec_runtime::run::{self as runner, LocalOptions, Outcome, RunError, SageMakerOptions};

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
) -> ExitCode {
    let (checked, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(program) = &checked.program else { return ExitCode::from(1) };
    if let Err(e) = runner::check_until(&graph, until.as_deref()) {
        return usage_error(&e.to_string());
    }
    // A run `--until` a data node creates no job: it needs none of the target's settings, and its
    // data nodes run as on the local target.
    let sagemaker = if graph.target == "sagemaker" && runner::runs_jobs(&graph, until.as_deref()) {
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
        match sagemaker_options(&checked, program, endpoint_url) {
            Ok(options) => Some(options),
            Err(message) => return usage_error(&message),
        }
    } else {
        None
    };
    let base = input.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let journal = match Journal::open(&base, &graph.pipeline) {
        Ok(journal) => journal,
        Err(e) => return usage_error(&e.to_string()),
    };
    let mode = match progress {
        Progress::Auto => Mode::detect(),
        Progress::Bars => Mode::Bars,
        Progress::Plain => Mode::Plain,
    };
    let reporter = Arc::new(Reporter::new(mode, Box::new(std::io::stdout())));
    let options = LocalOptions { python, until, signals: true, sagemaker };
    match runner::run_local(program, &graph, &base, &options, journal, reporter) {
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

/// The SageMaker target's region and KMS key (placeholders resolved from the environment), the
/// endpoint override, and each node's place in the file and memory estimate.
fn sagemaker_options(
    checked: &tunec_compiler::Checked,
    program: &tunec_compiler::check::Program,
    endpoint_url: Option<String>,
) -> Result<SageMakerOptions, String> {
    use tunec_runtime::run::target::sagemaker::{contexts, request::resolve_placeholders};
    let field = |name: &str| -> Result<Option<String>, String> {
        match program.target.fields.get(name).map(|f| &f.val) {
            Some(tunec_compiler::check::Val::Str(s)) => Ok(Some(s.clone())),
            Some(tunec_compiler::check::Val::Env(var)) => {
                resolve_placeholders(&tunec_compiler::lower::env_placeholder(var)).map(Some)
            }
            _ => Ok(None),
        }
    };
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
    Ok(SageMakerOptions {
        region: field("region")?,
        endpoint_url,
        kms_key: field("kms_key")?,
        contexts: contexts(&file, &text, program, &memory),
    })
}
