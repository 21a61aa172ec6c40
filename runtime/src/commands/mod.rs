//! The subcommands of the `tunec` binary, one module each, and what they share: the pipeline file
//! with its `--set` overrides and colour choice ([`Input`]), the output format, and the exit code of
//! a usage error. The command line (`cli.rs`) parses arguments and calls in here; nothing here
//! reads the command line.

pub(crate) mod build;
pub(crate) mod calibrate;
pub(crate) mod check;
pub(crate) mod completions;
pub(crate) mod explain;
pub(crate) mod fmt;
pub(crate) mod graph;
pub(crate) mod iam;
pub(crate) mod man;
pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod status;

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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

/// Prints `tunec: message` to stderr and returns the exit code of a usage or IO error, 2.
pub(crate) fn usage_error(message: &str) -> ExitCode {
    eprintln!("tunec: {message}");
    ExitCode::from(2)
}
