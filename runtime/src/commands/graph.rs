//! `tunec graph`: the lowered job graph drawn as Graphviz DOT or a Mermaid flowchart.

use super::check::compiled;
use super::Input;
use clap::ValueEnum;
use std::process::ExitCode;
use tunec_compiler::lower::graph as draw;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum GraphFormat {
    Dot,
    Mermaid,
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
