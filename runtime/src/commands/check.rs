//! `tunec check`, and the compile step every command shares: read the file, check it, print the
//! diagnostics, and hand back the checked program (and its job graph) when there are no errors.

use super::{usage_error, Color, Format, Input};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use tunec_compiler::catalog::Catalog;
use tunec_compiler::estimate::calibration::{self, Calibration};
use tunec_compiler::lower::{self, JobGraph, LowerInput};
use tunec_compiler::render::{self, Style};
use tunec_compiler::World as _;
use tunec_compiler::{Checked, Override};
use tunec_runtime::bundle;
use tunec_runtime::world::FsWorld;

pub(crate) fn parse_overrides(set: &[String]) -> Result<Vec<Override>, String> {
    set.iter()
        .map(|s| match s.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                Ok(Override { name: name.trim().to_owned(), value: value.to_owned() })
            }
            _ => Err(format!("`--set {s}` is not NAME=VALUE (for example `--set epochs=3`)")),
        })
        .collect()
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|w| *w >= 40).unwrap_or(100)
}

pub(crate) fn style(color: Color) -> Style {
    let use_color = match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    Style { color: use_color, width: terminal_width() }
}

/// Reads and checks the pipeline; `Err` carries the exit code of a usage or IO error.
pub(crate) fn checked(input: &Input) -> Result<Checked, ExitCode> {
    let overrides = parse_overrides(&input.set).map_err(|m| usage_error(&m))?;
    let text = std::fs::read_to_string(&input.file)
        .map_err(|e| usage_error(&format!("cannot read `{}`: {e}", input.file.display())))?;
    let world = FsWorld::for_pipeline(&input.file);
    // A calibration file that does not parse is refused rather than ignored.
    if let Some(calibration) = world.calibration() {
        if let Err(e) = Calibration::parse(&calibration) {
            let path = input.file.parent().unwrap_or(std::path::Path::new("")).join(calibration::FILE);
            return Err(usage_error(&format!(
                "`{}` is not a calibration file ({e}): write it again with `tunec calibrate {}`, or remove it to estimate without one",
                path.display(),
                input.file.display()
            )));
        }
    }
    Ok(tunec_compiler::check(&input.file.display().to_string(), &text, &overrides, &world))
}

/// Prints diagnostics to stderr as people read them.
pub(crate) fn print_diagnostics(checked: &Checked, color: Color, summary: bool) {
    let style = style(color);
    let mut err = std::io::stderr().lock();
    for d in &checked.diagnostics {
        let _ = write!(err, "{}", render::human(d, &checked.sources, style));
        let _ = writeln!(err);
    }
    if summary {
        let _ = write!(err, "{}", render::summary(&checked.diagnostics));
    }
}

/// Checks and lowers; on errors prints them and returns exit code 1.
pub(crate) fn compiled(input: &Input) -> Result<(Checked, JobGraph), ExitCode> {
    let checked = checked(input)?;
    if checked.has_errors() || checked.program.is_none() {
        print_diagnostics(&checked, input.color, true);
        return Err(ExitCode::from(1));
    }
    print_diagnostics(&checked, input.color, false);
    match lowered(&checked) {
        Some(graph) => Ok((checked, graph)),
        None => Err(ExitCode::from(1)),
    }
}

/// The job graph of a pipeline that checked without errors.
pub(crate) fn lowered(checked: &Checked) -> Option<JobGraph> {
    let program = checked.program.as_ref().filter(|_| !checked.has_errors())?;
    let digest = bundle::digest();
    Some(lower::lower(&LowerInput {
        program,
        estimates: checked.estimates.as_ref(),
        catalog: Catalog::builtin(),
        bundle_digest: &digest,
    }))
}

pub(crate) fn run(input: &Input, format: Format, fit: Option<&str>) -> ExitCode {
    let checked = match checked(input) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The fit search, when asked for, on the program as checked (errors or not: a step that does
    // not fit is a `gpu_memory` error, and what fits instead is the point).
    let fit = match (fit, &checked.program) {
        (None, _) => None,
        (Some(_), None) => {
            print_diagnostics(&checked, input.color, true);
            return ExitCode::from(1);
        }
        (Some(node), Some(program)) => {
            match tunec_compiler::driver::fit(program, node, &FsWorld::for_pipeline(&input.file)) {
                Ok(fit) => Some(fit),
                Err(e) => return usage_error(&format!("--fit {node}: {e}")),
            }
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let written = match format {
        Format::Json => {
            let mut doc = render::check_json(&checked);
            if let (Some(fit), Some(object)) = (&fit, doc.as_object_mut()) {
                object.insert("fit".to_owned(), render::fit_json(fit));
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        Format::Human => {
            print_diagnostics(&checked, input.color, false);
            if let Some(fit) = &fit {
                for line in render::fit_lines(fit) {
                    let _ = writeln!(out, "{line}");
                }
            } else if let Some(program) = &checked.program {
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
            let _ = out.flush();
            write!(std::io::stderr(), "{}", render::summary(&checked.diagnostics))
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
