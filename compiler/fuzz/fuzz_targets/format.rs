//! Fuzzes the formatter's promises on arbitrary bytes (converted lossily to UTF-8): `format`
//! never panics; on text that parses it is idempotent, keeps the syntax tree (modulo spans) and
//! the check's diagnostics (modulo spans); on text that does not parse it reports exactly the
//! parser's diagnostics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunec_compiler::diagnostics::{Diagnostic, FileId};
use tunec_compiler::format::format;
use tunec_compiler::syntax::parse_file;
use tunec_compiler::{check, NoFiles};

fn meanings(diagnostics: &[Diagnostic]) -> Vec<String> {
    let mut out: Vec<String> = diagnostics
        .iter()
        .map(|d| {
            let labels: Vec<&str> =
                std::iter::once(&d.primary).chain(&d.secondary).map(|l| l.message.as_str()).collect();
            format!("{} {} | {} | {:?}", d.code.name(), d.message, labels.join(" / "), d.help)
        })
        .collect();
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match format(&text) {
        Err(errors) => {
            assert_eq!(Err(errors), parse_file(&text, FileId(0)).map(|_| ()), "format reports the parser's errors");
        }
        Ok(out) => {
            assert_eq!(format(&out).as_deref(), Ok(out.as_str()), "not idempotent");
            let before = parse_file(&text, FileId(0)).expect("parses").without_spans();
            let after = parse_file(&out, FileId(0)).expect("the output parses").without_spans();
            assert!(before == after, "the tree changed");
            let checked_before = check("fuzz.tune", &text, &[], &NoFiles);
            let checked_after = check("fuzz.tune", &out, &[], &NoFiles);
            assert_eq!(meanings(&checked_before.diagnostics), meanings(&checked_after.diagnostics));
        }
    }
});
