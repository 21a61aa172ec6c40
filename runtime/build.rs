//! Embeds the error-code pages of docs/errors/ into the binary for `tunec explain`.
//!
//! The pages are found at build time, so adding a page needs no code change; a test checks that
//! every diagnostic code has one.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/errors");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut pages: Vec<(String, String)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "md") {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                println!("cargo:rerun-if-changed={}", path.display());
                pages.push((name, path.display().to_string()));
            }
        }
    }
    pages.sort();
    let mut out =
        String::from("/// Error-code pages: (short name, Markdown).\npub(crate) const PAGES: &[(&str, &str)] = &[\n");
    for (name, path) in pages {
        let _ = writeln!(out, "    ({name:?}, include_str!({path:?})),");
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("error_pages.rs");
    std::fs::write(target, out).expect("OUT_DIR is writable");
}
