//! `tunec man`: the man pages of tunec and its subcommands (roff, through clap_mangen), generated
//! from the clap definition of the command line, so that they never fall behind it.

use clap::Command;
use std::path::Path;
use std::process::ExitCode;

/// `tunec man`: the page of `tunec` on stdout, or with `--output DIR` the pages of `tunec` and each
/// subcommand (`tunec-check.1`, ...) written to DIR.
pub(crate) fn man(output: Option<&Path>, cmd: Command) -> ExitCode {
    let result = match output {
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).map(|()| out_raw!("{}", String::from_utf8_lossy(&page)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::usage_error(&format!(
            "cannot write the man pages to `{}`: {e}",
            output.map(Path::display).map(|d| d.to_string()).unwrap_or_else(|| "stdout".into())
        )),
    }
}
