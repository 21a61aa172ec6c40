//! Time spent in each compiler stage, in process: parsing alone, the whole check (parsing and
//! estimation included, as `tunec check` runs it), estimation alone, and lowering, on the reference pipeline and on generated
//! ones (`python3 tests/bench/gen_pipeline.py N -o FILE`, passed as arguments).
//!
//!     cargo bench -p tunec-compiler --bench stages -- [FILE ...]
//!
//! Each figure is the median of repeated runs after a warm-up, so that one slow run (the machine
//! is shared) does not move it. docs/performance.md records the figures with the machine.

use std::time::{Duration, Instant};
use tunec_compiler::catalog::Catalog;
use tunec_compiler::lower::{self, LowerInput};
use tunec_compiler::{check, estimate, NoFiles};

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
    let mut files: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    files.insert(0, concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/medreason/medreason.tune").to_owned());
    let catalog = Catalog::builtin();
    println!("{:<24} {:>7} {:>14} {:>14} {:>14} {:>14}", "input", "nodes", "parse", "check", "estimate", "lower");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable input");
        let checked = check("bench.tune", &text, &[], &NoFiles);
        let program = checked.program.as_ref().expect("the input checks");
        let iterations = if program.nodes.len() > 1000 { 11 } else { 101 };
        let t_parse =
            time(iterations, || tunec_compiler::syntax::parse_file(&text, tunec_compiler::diagnostics::FileId(0)));
        let t_check = time(iterations, || check("bench.tune", &text, &[], &NoFiles));
        let t_estimate = time(iterations, || estimate::estimate(program, catalog, &|_| None));
        let t_lower = time(iterations, || {
            lower::lower(&LowerInput {
                program,
                estimates: checked.estimates.as_ref(),
                catalog,
                bundle_digest: "0000000000000000000000000000000000000000000000000000000000000000",
            })
        });
        let name = std::path::Path::new(&file).file_name().map_or(file.clone(), |n| n.to_string_lossy().into_owned());
        println!(
            "{name:<24} {:>7} {:>14?} {:>14?} {:>14?} {:>14?}",
            program.nodes.len(),
            t_parse,
            t_check,
            t_estimate,
            t_lower
        );
    }
}
