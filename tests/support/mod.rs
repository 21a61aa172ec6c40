//! What the tests that drive the `tunec` binary share: running it as a user would (from the
//! repository root, no colour, 80 columns) and capturing what it printed and how it exited.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tunec args` from the repository root; `configure` adds environment variables or another
/// working folder.
pub(crate) fn tunec_with(args: &[&str], configure: impl FnOnce(&mut Command)) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tunec"));
    command.args(args).current_dir(root()).env("NO_COLOR", "1").env("COLUMNS", "80");
    configure(&mut command);
    let out = command.output().expect("the tunec binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file below `dir` (which must exist), without following links to folders.
#[allow(dead_code)] // not every test binary looks through folders
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}
