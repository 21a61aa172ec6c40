//! Embeds into the binary, at build time:
//! - the error-code pages of docs/errors/ for `tunec explain`;
//! - the script bundle (stdlib/python: entry scripts, launch.sh, requirements.txt, helpers) that
//!   jobs run, so the binary works from any folder.
//!
//! Files are found at build time, so adding a page or a script needs no code change; tests check
//! that every diagnostic code has a page.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

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

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
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
