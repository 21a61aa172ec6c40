//! Embeds into the binary, at build time:
//! - the error-code pages of docs/errors/ for `tunec explain`;
//! - the script bundle (stdlib/python: entry scripts, launch.sh, requirements.txt, helpers) that
//!   jobs run, so the binary works from any folder;
//! - the version that `tunec --version` prints (`TUNEC_VERSION`): the crate's version, the commit
//!   it was built from and that commit's date, and whether it is a debug build.
//!
//! Files are found at build time, so adding a page or a script needs no code change; tests check
//! that every diagnostic code has a page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        if path.is_dir() {
            collect(&path, root, out);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
}

/// `0.1.0 (b772eaa1c0de 2026-12-04)`, with `, debug build` added in the dev profile.
///
/// The commit is `TUNEC_COMMIT` when set (a build from a source archive, which has no `.git`), else
/// what git says about the checkout, else `unknown commit`. The build script runs again when HEAD
/// moves: the HEAD file and the loose file of the branch it points to are watched (never the whole
/// `refs/` folder, which other worktrees' commits touch), so a commit rebuilds this crate, as it
/// would to embed any build-time value.
fn version(manifest: &Path) -> String {
    println!("cargo:rerun-if-env-changed=TUNEC_COMMIT");
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(manifest).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = match std::env::var("TUNEC_COMMIT").ok().filter(|c| !c.trim().is_empty()) {
        Some(commit) => commit.trim().to_owned(),
        None => match git(&["log", "-1", "--format=%H %cs"]) {
            Some(line) => {
                let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watched.push(git(&["rev-parse", "--git-path", &branch]));
                }
                watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
                // A path that does not exist would make cargo run this script on every build.
                for path in watched.into_iter().flatten().map(|p| manifest.join(p)).filter(|p| p.exists()) {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
                let (hash, date) = line.split_once(' ').unwrap_or((&line, ""));
                format!("{} {date}", &hash[..hash.len().min(12)]).trim_end().to_owned()
            }
            None => "unknown commit".to_owned(),
        },
    };
    let debug = if std::env::var("PROFILE").as_deref() == Ok("debug") { ", debug build" } else { "" };
    format!("{} ({commit}{debug})", env!("CARGO_PKG_VERSION"))
}

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-env=TUNEC_VERSION={}", version(&manifest));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let errors = manifest.join("../docs/errors");
    let mut pages = Vec::new();
    collect(&errors, &errors, &mut pages);
    pages.retain(|(name, _)| name.ends_with(".md"));
    pages.sort();
    let mut text =
        String::from("/// Error-code pages: (short name, Markdown).\npub(crate) const PAGES: &[(&str, &str)] = &[\n");
    for (name, path) in pages {
        let _ =
            writeln!(text, "    ({:?}, include_str!({:?})),", name.trim_end_matches(".md"), path.display().to_string());
    }
    text.push_str("];\n");
    std::fs::write(out_dir.join("error_pages.rs"), text).expect("OUT_DIR is writable");

    let python = manifest.join("../stdlib/python");
    let mut files = Vec::new();
    collect(&python, &python, &mut files);
    files.sort();
    let mut text = String::from(
        "/// The script bundle: (path in the code channel, contents).\npub(crate) const FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in files {
        let _ = writeln!(text, "    ({name:?}, include_bytes!({:?})),", path.display().to_string());
    }
    text.push_str("];\n");
    std::fs::write(out_dir.join("bundle.rs"), text).expect("OUT_DIR is writable");
}
