//! Argument parsing (clap) and dispatch to the subcommands.
//!
//! `check`, `plan`, `build`, `graph`, `iam-policy`, `status`, `explain`, `fmt` (the formatter,
//! `fmt.rs`), `lsp` (the language server, `tunec_runtime::lsp`) and `run` (the executor,
//! `tunec_runtime::run`, on the local and SageMaker targets) are complete.

use crate::check::compiled;
use crate::{check, emit, errors_doc, fmt, plan};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tunec_compiler::diagnostics::Code;
use tunec_runtime::journal::Journal;
use tunec_runtime::run::progress::{Mode, Reporter};
use tunec_runtime::run::summary::Summary;
use tunec_runtime::run::{self as runner, LocalOptions, Outcome, RunError, SageMakerOptions};

#[derive(Parser, Debug)]
#[command(name = "tunec", version, about = "A compiler and runtime for LLM fine-tuning pipelines", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Bars on a terminal, plain lines otherwise (and when CI is set).
    Auto,
    /// Live progress bars.
    Bars,
    /// One line per event, with the jobs' log lines streamed.
    Plain,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Emit {
    /// Also write pipeline.json, a SageMaker Pipelines definition.
    SagemakerPipeline,
}

/// What every command that compiles a pipeline takes.
#[derive(Args, Debug, Clone)]
pub(crate) struct Input {
    /// The `.tune` file.
    pub(crate) file: PathBuf,
    /// Override a `param`: `--set epochs=3` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(crate) set: Vec<String>,
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) color: Color,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Type-check a pipeline, estimate memory, time and cost, and report every problem.
    Check {
        #[command(flatten)]
        input: Input,
        /// Output for people (`human`) or for editors and CI (`json`, one object on stdout).
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Show the job graph in order: keys, executions, instances, estimates.
    Plan {
        #[command(flatten)]
        input: Input,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Write the SageMaker requests, args.yaml files, the source bundle and a manifest.
    Build {
        #[command(flatten)]
        input: Input,
        /// The output folder.
        #[arg(short, long)]
        output: PathBuf,
        /// Extra artifacts to write.
        #[arg(long, value_enum)]
        emit: Vec<Emit>,
    },
    /// Draw the job graph as Graphviz DOT or a Mermaid flowchart.
    Graph {
        #[command(flatten)]
        input: Input,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Print least-privilege IAM policies for the execution role and the caller.
    IamPolicy {
        #[command(flatten)]
        input: Input,
    },
    /// Run a local pipeline (resumable): data steps, then train, merge and evaluate scripts.
    Run {
        #[command(flatten)]
        input: Input,
        /// Run this node and what it depends on, nothing else.
        #[arg(long, value_name = "NODE")]
        until: Option<String>,
        /// The Python that runs the entry scripts (else TUNEC_PYTHON, else `target local { python }`,
        /// else an environment tunec provisions on first use).
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// How to show progress.
        #[arg(long, value_enum, default_value = "auto")]
        progress: Progress,
        /// SageMaker target: send every AWS call to this endpoint (a local AWS API server);
        /// AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_S3 / _SAGEMAKER work too.
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
        /// `human`: progress, then a summary, on stdout; `json`: progress as plain lines on
        /// stderr, then the summary as one JSON document on stdout.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Show the state journal of a pipeline's runs (`.tunec/<pipeline>/` beside the file).
    Status {
        /// The `.tune` file.
        file: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Remove the lock left by a run that was killed (refused while its process lives).
        #[arg(long)]
        clear_stale_lock: bool,
    },
    /// Format `.tune` files in place (folders: every `*.tune` below; `-`: stdin to stdout).
    Fmt {
        /// Files, folders, or `-` for standard input.
        files: Vec<PathBuf>,
        /// Write nothing; list the files that would change and exit 1 if any would (for CI).
        #[arg(long)]
        check: bool,
        /// When to colour diagnostics.
        #[arg(long, value_enum, default_value = "auto")]
        color: Color,
    },
    /// Run the language server on stdin and stdout (for editors).
    Lsp,
    /// Print the documentation page of a diagnostic code (`tunec explain fsdp_qlora_storage`).
    Explain {
        /// A full (`tunec::check::x`) or short (`x`) code; omit to list all codes.
        code: Option<String>,
    },
}

pub(crate) fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // clap uses 0 for --help/--version and 2 for usage errors.
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Check { input, format } => check::run(&input, format),
        Command::Plan { input, format } => plan::plan(&input, format),
        Command::Build { input, output, emit } => emit::build(&input, &output, emit.contains(&Emit::SagemakerPipeline)),
        Command::Graph { input, format } => plan::graph(&input, format),
        Command::IamPolicy { input } => plan::iam_policy(&input),
        Command::Explain { code } => explain(code.as_deref()),
        Command::Run { input, until, python, progress, endpoint_url, format } => {
            run(&input, until, python, progress, endpoint_url, format)
        }
        Command::Status { file, format, clear_stale_lock } => plan::status(&file, format, clear_stale_lock),
        Command::Fmt { files, check, color } => fmt::fmt(&files, check, color),
        Command::Lsp => ExitCode::from(tunec_runtime::lsp::serve_stdio()),
    }
}

/// `tunec run`: exit 0 when every node up to the end (or `--until`) is done, 1 when the pipeline
/// does not compile or a node fails, 2 for usage errors, a held lock, or a job that cannot start
/// (a Hub model locally, no usable Python, an unset `env()` variable, no AWS region), 130 when
/// interrupted (Ctrl-C).
fn run(
    input: &Input,
    until: Option<String>,
    python: Option<PathBuf>,
    progress: Progress,
    endpoint_url: Option<String>,
    format: Format,
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
        _ if format == Format::Json => Mode::Plain,
        Progress::Auto => Mode::detect(),
        Progress::Bars => Mode::Bars,
        Progress::Plain => Mode::Plain,
    };
    let out: Box<dyn std::io::Write + Send> =
        if format == Format::Json { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    let reporter = Arc::new(Reporter::new(mode, out));
    let options = LocalOptions { python, until, signals: true, sagemaker };
    let since = jiff::Timestamp::now();
    let result = runner::run_local(program, &graph, &base, &options, journal, reporter.clone());
    let summary = Summary::collect(program, &graph, &base, options.until.as_deref(), since, &result);
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

/// The SageMaker target's region and KMS key (placeholders resolved from the environment), the
/// endpoint override, and each node's place in the file and memory estimate.
fn sagemaker_options(
    checked: &tunec_compiler::check::Checked,
    program: &tunec_compiler::check::Program,
    endpoint_url: Option<String>,
) -> Result<SageMakerOptions, String> {
    use tunec_runtime::run::sagemaker::{contexts, request::resolve_placeholders};
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

pub(crate) fn usage_error(message: &str) -> ExitCode {
    eprintln!("tunec: {message}");
    ExitCode::from(2)
}

fn explain(code: Option<&str>) -> ExitCode {
    let Some(code) = code else {
        for c in Code::ALL {
            out!("{:<48} {:<8} {}", c.full(), c.severity().as_str(), c.summary());
        }
        return ExitCode::SUCCESS;
    };
    let Some(found) = Code::lookup(code) else {
        let names: Vec<String> = Code::suggest(code).iter().map(|c| format!("`{}`", c.name())).collect();
        let hint = match names.as_slice() {
            [] => String::new(),
            [one] => format!("; did you mean {one}?"),
            many => format!("; did you mean one of {}?", many.join(", ")),
        };
        return usage_error(&format!("no diagnostic code `{code}`{hint} (`tunec explain` lists them all)"));
    };
    match errors_doc::page(found.name()) {
        Some(page) => {
            out_raw!("{page}");
            ExitCode::SUCCESS
        }
        None => usage_error(&format!("`{}` has no documentation page in this build", found.full())),
    }
}
