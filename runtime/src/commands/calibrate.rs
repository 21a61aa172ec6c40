//! `tunec calibrate`: writes the calibration file (`tunec.calibration.json`) from the runs the
//! pipelines' journals record, per GPU model and model family ([`tunec_runtime::ledger::calibrate`]);
//! from then on `tunec check`, `plan` and `run` of a pipeline in that folder apply it.

use super::check::{checked, print_diagnostics};
use super::{usage_error, Color, Input};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunec_compiler::estimate::calibration;
use tunec_runtime::journal;
use tunec_runtime::ledger;

/// Exit 0 with the file written, 1 when no recorded run measured anything to calibrate with, 2 for
/// usage and IO errors.
pub(crate) fn calibrate(files: &[PathBuf], output: Option<&Path>) -> ExitCode {
    let mut records = Vec::new();
    for file in files {
        let input = Input { file: file.clone(), set: Vec::new(), color: Color::Auto };
        let checked = match checked(&input) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let Some(program) = &checked.program else {
            print_diagnostics(&checked, input.color, true);
            return ExitCode::from(1);
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        match journal::read_state(&journal::folder(&base, &program.name)) {
            Ok(Some(state)) => {
                records.extend(state.nodes.into_iter().map(|(node, r)| (format!("{}/{node}", program.name), r)));
            }
            Ok(None) => out!("`{}`: no run recorded yet", program.name),
            Err(e) => return usage_error(&e.to_string()),
        }
    }
    let calibration = ledger::calibrate(records.iter().map(|(name, r)| (name.clone(), r)));
    if calibration.entries.is_empty() {
        eprintln!(
            "tunec: no recorded run measured GPU memory or was billed, so there is nothing to calibrate with \
             (runs on a CPU count for neither); nothing written"
        );
        return ExitCode::from(1);
    }
    let path = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| files.first().and_then(|f| f.parent()).unwrap_or(Path::new("")).join(calibration::FILE));
    let text = serde_json::to_string_pretty(&calibration).unwrap_or_default() + "\n";
    if let Err(e) = journal::write_atomic(&path, text.as_bytes()) {
        return usage_error(&e.to_string());
    }
    out!("wrote {} ({} GPU and family pairs):", path.display(), calibration.entries.len());
    let factor = |what: &str, f: &Option<calibration::Factor>| match f {
        Some(f) => format!("{what} x{:.3} ({} runs, {:.3} to {:.3})", f.factor, f.runs, f.min, f.max),
        None => format!("{what}: no run measured it"),
    };
    for e in &calibration.entries {
        out!("  {} on {}: {}; {}", e.family, e.gpu, factor("memory", &e.memory), factor("hours", &e.hours));
    }
    ExitCode::SUCCESS
}
