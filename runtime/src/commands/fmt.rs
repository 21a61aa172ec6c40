//! `tunec fmt`: the IO around the compiler's formatter.
//!
//! Each argument is a `.tune` file, a folder (every `*.tune` file below it, hidden entries
//! skipped, in sorted order), or `-` for standard input, which is formatted to standard output.
//! A file is rewritten only when its text changes, atomically (a temporary file in the same folder,
//! fsynced, then renamed over it), so an interrupted run never leaves half a file. With `--check`
//! nothing is written: the files that would change are listed on stdout, for CI. A file that does
//! not parse is reported with its diagnostic and left untouched. No argument at all is a usage
//! error rather than a wait on standard input, so that a CI step with an empty file list fails
//! loudly instead of hanging.

use super::{usage_error, Color};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunec_compiler::diagnostics::Sources;
use tunec_compiler::render;
use tunec_runtime::journal::write_atomic;

/// What happened to one input.
enum Outcome {
    Unchanged,
    /// Rewritten, or (with `--check`) would be.
    Changed,
    /// Did not parse; its diagnostics were printed.
    Invalid,
}

pub(crate) fn fmt(inputs: &[PathBuf], check: bool, color: Color) -> ExitCode {
    if inputs.is_empty() {
        return usage_error("fmt: name the files or folders to format, or `-` for standard input");
    }
    let mut files = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            files.push(None);
        } else if input.is_dir() {
            match tune_files(input) {
                Ok(found) => files.extend(found.into_iter().map(Some)),
                Err(e) => return usage_error(&format!("cannot read the folder `{}`: {e}", input.display())),
            }
        } else {
            files.push(Some(input.clone()));
        }
    }
    let mut failed = false;
    for file in files {
        let outcome = match &file {
            Some(path) => format_file(path, check, color),
            None => format_stdin(check, color),
        };
        match outcome {
            Ok(Outcome::Unchanged) => {}
            Ok(Outcome::Changed) => {
                if check {
                    out!("{}", file.as_deref().map_or("<stdin>".into(), |p| p.display().to_string()));
                    failed = true;
                }
            }
            Ok(Outcome::Invalid) => failed = true,
            Err(message) => return usage_error(&message),
        }
    }
    ExitCode::from(u8::from(failed))
}

/// The `.tune` files below `dir`, sorted, without hidden files and folders.
fn tune_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        if path.is_dir() {
            out.extend(tune_files(&path)?);
        } else if path.extension().is_some_and(|x| x == "tune") {
            out.push(path);
        }
    }
    Ok(out)
}

fn format_file(path: &Path, check: bool, color: Color) -> Result<Outcome, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let Some(formatted) = formatted(&path.display().to_string(), &text, color) else {
        return Ok(Outcome::Invalid);
    };
    if formatted == text {
        return Ok(Outcome::Unchanged);
    }
    if !check {
        let permissions = std::fs::metadata(path).map(|m| m.permissions()).ok();
        write_atomic(path, formatted.as_bytes()).map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        if let Some(permissions) = permissions {
            // The temporary file was created with default permissions; give back the file's own.
            let _ = std::fs::set_permissions(path, permissions);
        }
    }
    Ok(Outcome::Changed)
}

fn format_stdin(check: bool, color: Color) -> Result<Outcome, String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read standard input: {e}"))?;
    let Some(formatted) = formatted("<stdin>", &text, color) else {
        return Ok(Outcome::Invalid);
    };
    if !check {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(formatted.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| e.to_string())?;
    }
    Ok(if formatted == text { Outcome::Unchanged } else { Outcome::Changed })
}

/// The formatted text, or `None` after printing why the text does not parse.
fn formatted(name: &str, text: &str, color: Color) -> Option<String> {
    match tunec_compiler::format::format(text) {
        Ok(out) => Some(out),
        Err(diagnostics) => {
            let mut sources = Sources::default();
            sources.add(name, text);
            let style = super::check::style(color);
            let mut err = std::io::stderr().lock();
            for d in &diagnostics {
                let _ = writeln!(err, "{}", render::human(d, &sources, style));
            }
            let _ = writeln!(err, "tunec fmt: `{name}` does not parse; left as it is");
            None
        }
    }
}
