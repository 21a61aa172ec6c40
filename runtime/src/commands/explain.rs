//! `tunec explain`: the documentation page of a diagnostic code, or the list of every code. The
//! pages are docs/errors/*.md, embedded by `build.rs`.

use super::usage_error;
use std::process::ExitCode;
use tunec_compiler::diagnostics::Code;

include!(concat!(env!("OUT_DIR"), "/error_pages.rs"));

/// The page of a code, by its short name.
fn page(short_name: &str) -> Option<&'static str> {
    PAGES.iter().find(|(name, _)| *name == short_name).map(|(_, text)| *text)
}

pub(crate) fn explain(code: Option<&str>) -> ExitCode {
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
    match page(found.name()) {
        Some(page) => {
            out_raw!("{page}");
            ExitCode::SUCCESS
        }
        None => usage_error(&format!("`{}` has no documentation page in this build", found.full())),
    }
}
