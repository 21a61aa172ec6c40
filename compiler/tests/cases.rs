//! The fixture suite: every `tests/cases/*.tune` file is a test, and so is every example.
//!
//! It needs the compiler alone, so it is a test of this crate and runs without building the
//! runtime. The fixtures and their snapshots stay at the repository's `tests/cases/` and
//! `tests/snapshots/`, where the runtime's tests also find the fixture models.
//!
//! A fixture starts with header comments: `// expect: code, code` (or `// expect: clean`) names the
//! exact set of codes the check must report, and `// set: name=value` lines pass `--set`
//! overrides. The rendered diagnostics (fixed width, no colour) are snapshotted next to the source,
//! so a change in wording, span or help shows up in review; a clean fixture's snapshot is instead
//! the type of each node, which its header does not already say. Adding a case means adding a file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tunec_compiler::diagnostics::Code;
use tunec_compiler::render::{self, Style};
use tunec_compiler::{Checked, Override, World};

/// Local model directories resolve relative to the fixture's folder, as the CLI resolves them
/// relative to the pipeline file.
struct Dir(PathBuf);

impl World for Dir {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        let path = self.0.join(dir).join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("{dir}/{file}: {}", e.kind()))
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn display_name(path: &Path) -> String {
    path.strip_prefix(root().canonicalize().unwrap_or_else(|_| root()))
        .or_else(|_| path.strip_prefix(root()))
        .unwrap_or(path)
        .display()
        .to_string()
}

fn header_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with("//"))
        .filter_map(|l| l.trim_start_matches("//").trim().strip_prefix(key).map(str::trim))
        .collect()
}

fn check_file(path: &Path) -> (String, Checked) {
    let text = std::fs::read_to_string(path).expect("fixture is readable");
    let overrides: Vec<Override> = header_values(&text, "set:")
        .into_iter()
        .map(|s| {
            let (name, value) = s.split_once('=').expect("`// set: name=value`");
            Override { name: name.to_owned(), value: value.to_owned() }
        })
        .collect();
    let world = Dir(path.parent().expect("fixture has a folder").to_path_buf());
    let checked = tunec_compiler::check(&display_name(path), &text, &overrides, &world);
    (text, checked)
}

fn snapshot_text(source: &str, checked: &Checked) -> String {
    format!("----- SOURCE CODE\n{source}\n----- DIAGNOSTICS\n{}", render::human_all(checked, Style::PLAIN))
}

fn emitted(checked: &Checked) -> BTreeSet<&'static str> {
    checked.diagnostics.iter().map(|d| d.code.name()).collect()
}

/// The fixtures' and examples' snapshots, beside the fixtures at the repository's root.
fn snapshots() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root().join("tests/snapshots"));
    settings
}

#[test]
fn fixtures() {
    let _snapshots = snapshots().bind_to_scope();
    insta::glob!("../../tests/cases", "*.tune", |path| {
        let (text, checked) = check_file(path);
        let expect = header_values(&text, "expect:");
        assert_eq!(expect.len(), 1, "{}: one `// expect:` line", path.display());
        let expected: BTreeSet<&str> = expect[0].split(',').map(str::trim).filter(|c| *c != "clean").collect();
        for code in &expected {
            assert!(Code::lookup(code).is_some(), "{}: `{code}` is not a diagnostic code", path.display());
        }
        assert_eq!(emitted(&checked), expected, "{}:\n{}", path.display(), snapshot_text(&text, &checked));
        if expected.is_empty() {
            // The header already says "no problems": what is worth reviewing is the types found.
            insta::assert_snapshot!(node_types(&checked));
        } else {
            insta::assert_snapshot!(snapshot_text(&text, &checked));
        }
    });
}

#[test]
fn examples_check_clean() {
    let _snapshots = snapshots().bind_to_scope();
    insta::glob!("../../examples", "*/*.tune", |path| {
        let (text, checked) = check_file(path);
        assert!(checked.diagnostics.is_empty(), "{}", snapshot_text(&text, &checked));
        insta::assert_snapshot!(node_types(&checked));
    });
}

/// Each node of a pipeline that checked, in order, with the type the checker gave it.
fn node_types(checked: &Checked) -> String {
    let program = checked.program.as_ref().expect("a pipeline that checks");
    let nodes: Vec<String> = program
        .order
        .iter()
        .map(|&i| format!("{} {}: {}", program.nodes[i].kind, program.nodes[i].name, program.nodes[i].ty))
        .collect();
    nodes.join("\n")
}

/// Every code has a fixture that expects it and a documentation page.
#[test]
fn every_code_has_a_fixture_and_a_page() {
    let mut covered = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("tests/cases")).expect("tests/cases exists").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tune") {
            let text = std::fs::read_to_string(&path).expect("readable");
            for line in header_values(&text, "expect:") {
                covered.extend(line.split(',').map(|c| c.trim().to_owned()));
            }
        }
    }
    let mut missing_fixture = Vec::new();
    let mut missing_page = Vec::new();
    for code in Code::ALL {
        if !covered.contains(code.name()) {
            missing_fixture.push(code.name());
        }
        let page = root().join("docs/errors").join(format!("{}.md", code.name()));
        match std::fs::read_to_string(&page) {
            Ok(text) if text.starts_with(&format!("# `{}`", code.full())) => {}
            _ => missing_page.push(code.name()),
        }
    }
    assert!(missing_fixture.is_empty(), "codes without a fixture: {missing_fixture:?}");
    assert!(missing_page.is_empty(), "codes without a docs/errors page: {missing_page:?}");
}
