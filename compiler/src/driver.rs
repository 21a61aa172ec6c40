//! The compiler's first entry point, [`check`]: the checker, its rules and the estimator run in
//! turn on a pipeline file, and every diagnostic comes back sorted by position.
//!
//! It sits above the stages it calls (`check`, then `estimate`, which reads the checked program),
//! so that no stage imports one that comes after it.

use crate::catalog::Catalog;
use crate::check::{self, Override, Program, World, PRELUDE, PRELUDE_NAME};
use crate::diagnostics::{Diagnostic, FileId, Sources};
use crate::estimate::calibration::Calibration;
use crate::estimate::fit::{Fit, FitError};
use crate::estimate::{self, DataProfile, Estimates};

/// Everything `check` produces.
#[derive(Debug)]
pub struct Checked {
    pub sources: Sources,
    pub main: FileId,
    /// Present when the file parsed and declared a pipeline, even with check errors, so that
    /// editors can still show types.
    pub program: Option<Program>,
    /// Memory, time and cost of the job nodes; present with the program.
    pub estimates: Option<Estimates>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks a pipeline file. `name` is how the file is shown in diagnostics.
pub fn check(name: &str, text: &str, overrides: &[Override], world: &dyn World) -> Checked {
    check_with(name, text, overrides, world, Catalog::builtin())
}

/// The fit search for train node `node` of a checked program ([`estimate::fit`]), with the
/// data profiles `world` has, as [`check`] estimates.
pub fn fit(program: &Program, node: &str, world: &dyn World) -> Result<Fit, FitError> {
    fit_with(program, node, world, Catalog::builtin())
}

/// [`fit`] against a given catalog.
pub fn fit_with(program: &Program, node: &str, world: &dyn World, catalog: &Catalog) -> Result<Fit, FitError> {
    let profiles = |n: &str| world.profile(&program.name, n).and_then(|t| DataProfile::parse(&t));
    estimate::fit::search(program, catalog, &profiles, node)
}

/// [`check`] against a given catalog.
pub fn check_with(name: &str, text: &str, overrides: &[Override], world: &dyn World, catalog: &Catalog) -> Checked {
    let mut sources = Sources::default();
    let main = sources.add(name, text);
    let prelude = sources.add(PRELUDE_NAME, PRELUDE);
    let mut diagnostics = Vec::new();
    let program = check::program(&mut sources, main, prelude, overrides, world, catalog, &mut diagnostics);
    let mut estimates = None;
    if let Some(program) = &program {
        let profiles = |node: &str| world.profile(&program.name, node).and_then(|t| DataProfile::parse(&t));
        // The runtime refuses a calibration file that does not parse before it checks.
        let calibration = world.calibration().and_then(|t| Calibration::parse(&t).ok());
        let (est, problems) = estimate::estimate_with(program, catalog, &profiles, calibration.as_ref());
        diagnostics.extend(problems);
        estimates = Some(est);
    }
    diagnostics.sort_by_key(|d| (d.file, d.primary.span.start, d.code));
    diagnostics.dedup();
    Checked { sources, main, program, estimates, diagnostics }
}
