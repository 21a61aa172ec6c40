//! What the language server spends after a keystroke, in process: applying an incremental change
//! to the document, the analysis (the compiler's check with the file-system `World`, plus the
//! tree) and the conversion of its diagnostics, as `tunec lsp` does before publishing; and the
//! requests an editor sends next (hover on a job node with its estimate, completion, formatting).
//! On the reference pipeline and on generated ones (`python3 tests/bench/gen_pipeline.py N -o
//! FILE`, passed as arguments).
//!
//!     cargo bench -p tunec-runtime --bench lsp -- [FILE ...]
//!
//! Each figure is the median of repeated runs after a warm-up, as in compiler/benches/stages.rs.
//! docs/performance.md records the figures with the machine.

use lsp_types::{Position, Range, TextDocumentContentChangeEvent, Url};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tunec_runtime::lsp::{analyze, bench, Document};

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..iterations.min(5) {
        std::hint::black_box(f());
    }
    median(
        (0..iterations)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let mut files: Vec<PathBuf> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).map(PathBuf::from).collect();
    files.insert(0, PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/medreason/medreason.tune")));
    println!("{:<24} {:>7} {:>14} {:>14} {:>14} {:>14}", "input", "lines", "keystroke", "hover", "complete", "format");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable input");
        let uri = Url::from_file_path(std::fs::canonicalize(&path).expect("a path")).expect("a file URL");
        let name = path.display().to_string();
        // The keystroke: type one space at the start of the last line and take it back, so the
        // text stays the same from one iteration to the next.
        let last_line = u32::try_from(text.lines().count().saturating_sub(1)).unwrap_or(0);
        let at = Position { line: last_line, character: 0 };
        let mut doc = Document::new(text.clone(), 1);
        let mut version = 1;
        let iterations = if text.len() > 200_000 { 11 } else { 101 };
        let t_keystroke = time(iterations, || {
            version += 1;
            let insert = TextDocumentContentChangeEvent {
                range: Some(Range { start: at, end: at }),
                range_length: None,
                text: " ".into(),
            };
            doc.apply(vec![insert], version);
            let analysis = analyze(&name, &doc.text, Some(&path));
            let published = bench::diagnostics(&analysis, &doc, &uri);
            let after = Position { line: last_line, character: 1 };
            let undo = TextDocumentContentChangeEvent {
                range: Some(Range { start: at, end: after }),
                range_length: None,
                text: String::new(),
            };
            doc.apply(vec![undo], version);
            published
        });
        let analysis = analyze(&name, &doc.text, Some(&path));
        let job = text.find("train ").map_or(0, |i| i + 6);
        let t_hover = time(iterations, || bench::hover(&analysis, job));
        let field = text.find("precision = ").map_or(0, |i| i + 12);
        let t_complete = time(iterations, || bench::complete(&doc.text, field));
        let t_format = time(iterations, || tunec_compiler::format::format(&doc.text));
        let file = path.file_name().map_or(name.clone(), |n| n.to_string_lossy().into_owned());
        println!(
            "{file:<24} {:>7} {:>14?} {:>14?} {:>14?} {:>14?}",
            text.lines().count(),
            t_keystroke,
            t_hover,
            t_complete,
            t_format
        );
    }
}
