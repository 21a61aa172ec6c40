//! Fuzzes the whole front end: arbitrary bytes, converted lossily to UTF-8, are parsed, checked and
//! rendered both ways (human and JSON). Any panic is a bug; so is a diagnostic whose span leaves
//! its file, which the renderers would otherwise have to paper over.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunec_compiler::diagnostics::FileId;
use tunec_compiler::render::{check_json, human_all, Style};
use tunec_compiler::{check, NoFiles};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = tunec_compiler::syntax::parse_file(&text, FileId(0));
    let checked = check("fuzz.tune", &text, &[], &NoFiles);
    for d in &checked.diagnostics {
        let len = checked.sources.text(d.file).len();
        for span in std::iter::once(d.primary.span).chain(d.secondary.iter().map(|l| l.span)) {
            assert!(
                span.start <= span.end && span.end as usize <= len,
                "{}: span {span:?} outside {len} bytes",
                d.code
            );
        }
    }
    let _ = human_all(&checked, Style::PLAIN);
    let _ = check_json(&checked).to_string();
});
