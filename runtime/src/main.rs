//! The `tunec` command line: check, plan, build, graph, iam-policy, explain, run, status, fmt and lsp.
//!
//! The binary does the IO the compiler crate may not: it reads files, resolves local model
//! directories relative to the pipeline file, chooses colours for terminals, and maps outcomes to
//! exit codes (0 clean or warnings only, 1 errors found, 2 usage or IO error).

/// mimalloc instead of the system allocator: the tokenizer allocates and frees a few small buffers
/// per token, from every worker thread at once, and glibc's malloc cost about a fifth of the data
/// step's CPU time on them (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes a line to stdout. A closed pipe (`tunec plan | head`) ends the output quietly instead of
/// panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// [`out!`] without the newline.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;
mod commands;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
