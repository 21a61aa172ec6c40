//! Argument parsing (clap) and the subcommands.
//!
//! `check` and `explain` are complete. The other subcommands belong to later stages of the
//! project (lowering, runtime, formatter); until they exist each one says so in one line and
//! exits 2, rather than printing anything that could be mistaken for a result.

use crate::errors_doc;
use crate::world::FsWorld;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunec_compiler::diagnostics::Code;
use tunec_compiler::render::{self, Style};
use tunec_compiler::Override;

#[derive(Parser, Debug)]
#[command(name = "tunec", version, about = "A compiler and runtime for LLM fine-tuning pipelines", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Type-check a pipeline and report every problem with its source span.
    Check {
        /// The `.tune` file.
        file: PathBuf,
        /// Output for people (`human`) or for editors and CI (`json`, one object on stdout).
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Override a `param`: `--set epochs=3` (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// When to colour human output.
        #[arg(long, value_enum, default_value = "auto")]
        color: Color,
    },
    /// Show the job graph, with keys, estimates and what a run would reuse.
    Plan { file: PathBuf },
    /// Write the SageMaker requests, args.yaml files and the source bundle.
    Build {
        file: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run the pipeline (resumable).
    Run { file: PathBuf },
    /// Show the state journal of a pipeline's runs.
    Status { file: Option<PathBuf> },
    /// Draw the pipeline's graph (DOT or Mermaid).
    Graph { file: PathBuf },
    /// Format `.tune` files.
    Fmt { files: Vec<PathBuf> },
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
        Command::Check { file, format, set, color } => check(&file, format, &set, color),
        Command::Explain { code } => explain(code.as_deref()),
        Command::Plan { .. } => not_yet("plan", "lowering to SageMaker job graphs"),
        Command::Build { .. } => not_yet("build", "lowering to SageMaker job graphs"),
        Command::Graph { .. } => not_yet("graph", "lowering to SageMaker job graphs"),
        Command::Run { .. } => not_yet("run", "the runtime"),
        Command::Status { .. } => not_yet("status", "the runtime's state journal"),
        Command::Fmt { .. } => not_yet("fmt", "the formatter"),
    }
}

fn not_yet(command: &str, part: &str) -> ExitCode {
    eprintln!("tunec {command}: not available yet in this version (it comes with {part}); `tunec check` works today");
    ExitCode::from(2)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("tunec: {message}");
    ExitCode::from(2)
}

fn parse_overrides(set: &[String]) -> Result<Vec<Override>, String> {
    set.iter()
        .map(|s| match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok(Override { name: name.trim().to_owned(), value: value.to_owned() })
            }
            _ => Err(format!("`--set {s}` is not NAME=VALUE (for example `--set epochs=3`)")),
        })
        .collect()
}

fn check(file: &Path, format: Format, set: &[String], color: Color) -> ExitCode {
    let overrides = match parse_overrides(set) {
        Ok(o) => o,
        Err(message) => return usage_error(&message),
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return usage_error(&format!("cannot read `{}`: {e}", file.display())),
    };
    let world = FsWorld::for_pipeline(file);
    let name = file.display().to_string();
    let checked = tunec_compiler::check(&name, &text, &overrides, &world);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match format {
        Format::Json => {
            let doc = render::check_json(&checked);
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        Format::Human => {
            let use_color = match color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            };
            let style = Style { color: use_color, width: terminal_width() };
            let mut err = std::io::stderr().lock();
            for d in &checked.diagnostics {
                let _ = write!(err, "{}", render::human(d, &checked.sources, style));
                let _ = writeln!(err);
            }
            if let Some(program) = &checked.program {
                let _ = writeln!(
                    out,
                    "pipeline `{}`: {} nodes, target {}",
                    program.name,
                    program.nodes.len(),
                    program.target.kind
                );
                let width = program.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
                for &i in &program.order {
                    let n = &program.nodes[i];
                    let _ = writeln!(out, "  {:<9} {:<width$}  {}", n.kind.as_str(), n.name, n.ty);
                    if let Some(e) = checked.estimates.as_ref().and_then(|e| e.node(&n.name)) {
                        for line in render::estimate_lines(e) {
                            let _ = writeln!(out, "  {:<9} {:<width$}    {line}", "", "");
                        }
                    }
                }
                if let Some(estimates) = checked.estimates.as_ref().filter(|e| !e.nodes.is_empty()) {
                    let _ = writeln!(out, "{}", render::total_line(estimates));
                }
            }
            write!(err, "{}", render::summary(&checked.diagnostics))
        }
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    if checked.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(100)
}

fn explain(code: Option<&str>) -> ExitCode {
    let Some(code) = code else {
        for c in Code::ALL {
            println!("{:<48} {:<8} {}", c.full(), c.severity().as_str(), c.summary());
        }
        return ExitCode::SUCCESS;
    };
    let Some(found) = Code::lookup(code) else {
        return usage_error(&format!("no diagnostic code `{code}`; `tunec explain` lists them all"));
    };
    match errors_doc::page(found.name()) {
        Some(page) => {
            print!("{page}");
            ExitCode::SUCCESS
        }
        None => usage_error(&format!("`{}` has no documentation page in this build", found.full())),
    }
}
