//! Argument parsing (clap) and dispatch to the subcommands of `commands/`.
//!
//! `check`, `plan`, `build`, `graph`, `iam-policy`, `status`, `explain`, `fmt` (the formatter),
//! `lsp` (the language server, `tunec_runtime::lsp`) and `run` (the executor, `tunec_runtime::run`,
//! on the local and SageMaker targets) are complete; `completions` and `man` print what they generate
//! from this definition.

use crate::commands::completions::{CodeNames, CompletionsArgs};
use crate::commands::graph::GraphFormat;
use crate::commands::run::Progress;
use crate::commands::{
    build, calibrate, check, completions, explain, fmt, graph, iam, man, plan, run, status, Color, Format, Input,
};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "tunec", about = "A compiler and runtime for LLM fine-tuning pipelines", long_about = None)]
#[command(version = env!("TUNEC_VERSION"))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Emit {
    /// Also write pipeline.json, a SageMaker Pipelines definition.
    #[value(name = "sagemaker-pipeline")]
    SageMakerPipeline,
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
        /// For train node NODE: the largest per_device_batch and seq_len that fit its instance,
        /// and the instances on which its job fits, cheapest job first.
        #[arg(long, value_name = "NODE")]
        fit: Option<String>,
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
    /// Run a pipeline (resumable): data steps, then train, merge and evaluate jobs; `--smoke` runs it
    /// in miniature on this machine first.
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
        /// Send every AWS call (SageMaker jobs, uploads, `s3://` sources) to this endpoint (a local
        /// AWS API server); AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_S3 / _SAGEMAKER
        /// work too.
        #[arg(long, value_name = "URL")]
        endpoint_url: Option<String>,
        /// `human`: progress, then a summary, on stdout; `json`: progress as plain lines on
        /// stderr, then the summary as one JSON document on stdout (with `--smoke`, the smoke report).
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// A smoke run: the same graph on this machine, whatever the target, with the real tokenizer,
        /// template and data (the first `--smoke-rows` records of each dataset), a random miniature
        /// of each model's architecture, and only what cannot run here substituted (each printed:
        /// QLoRA → LoRA without CUDA, FSDP → one process, bf16 → fp32, the instance → this
        /// machine); training is an overfit check whose loss must fall. Never calls SageMaker; its
        /// journal, outputs and report (report.json) live apart in `.tunec/<pipeline>/smoke/`.
        #[arg(long)]
        smoke: bool,
        /// The records of each dataset a smoke run reads.
        #[arg(long, value_name = "N", requires = "smoke", default_value_t = tunec_runtime::run::smoke::DEFAULT_ROWS)]
        smoke_rows: u64,
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
    /// Write tunec.calibration.json from the runs the pipelines' journals record: per GPU and
    /// model family, how far the estimates were from what the jobs used.
    Calibrate {
        /// The `.tune` files whose recorded runs count.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write it (default: tunec.calibration.json beside the first file).
        #[arg(short, long)]
        output: Option<PathBuf>,
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
        #[arg(value_parser = CodeNames, hide_possible_values = true)]
        code: Option<String>,
    },
    /// Print the completion script of a shell: subcommands, flags, values, codes and node names.
    Completions(CompletionsArgs),
    /// Print the man page of tunec, or write the pages of tunec and its subcommands to a folder.
    Man {
        /// Write `tunec.1` and a page per subcommand (`tunec-check.1`, ...) here instead.
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
}

pub(crate) fn main() -> ExitCode {
    // The completion scripts ask for node names by running the line typed so far with this set.
    if std::env::var_os(completions::NODES_VAR).is_some() {
        let words: Vec<String> = std::env::args_os().map(|w| w.to_string_lossy().into_owned()).collect();
        return completions::nodes(&words, Cli::command());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            // clap uses 0 for --help/--version and 2 for usage errors.
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Check { input, format, fit } => check::run(&input, format, fit.as_deref()),
        Command::Plan { input, format } => plan::plan(&input, format),
        Command::Build { input, output, emit } => {
            build::build(&input, &output, emit.contains(&Emit::SageMakerPipeline))
        }
        Command::Graph { input, format } => graph::graph(&input, format),
        Command::IamPolicy { input } => iam::iam_policy(&input),
        Command::Explain { code } => explain::explain(code.as_deref()),
        Command::Run { input, until, python, progress, endpoint_url, format, smoke, smoke_rows } => {
            run::run(&input, until, python, progress, endpoint_url, format, smoke.then_some(smoke_rows))
        }
        Command::Status { file, format, clear_stale_lock } => status::status(&file, format, clear_stale_lock),
        Command::Calibrate { files, output } => calibrate::calibrate(&files, output.as_deref()),
        Command::Fmt { files, check, color } => fmt::fmt(&files, check, color),
        Command::Lsp => ExitCode::from(tunec_runtime::lsp::serve_stdio()),
        Command::Completions(args) => completions::completions(&args, Cli::command()),
        Command::Man { output } => man::man(output.as_deref(), Cli::command()),
    }
}
