//! The formatter's promises, on every `.tune` file in the repository and on generated input.
//!
//! For every fixture (`tests/cases/*.tune`), example (`examples/*/*.tune`) and fuzz seed
//! (`compiler/fuzz/seeds/*.tune`), `format` must be idempotent and check-equivalent: the output
//! parses to the same tree modulo spans, and `check` reports the same diagnostics modulo spans. A
//! file that does not parse must come back as exactly the parser's diagnostics. Property tests then
//! sprinkle comments and whitespace between the tokens of those files (every comment must come out
//! once, in order) and feed arbitrary text (no panic; whatever formats obeys the same promises).
//! A few formatted files are snapshotted, so that a layout change shows up in review.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::path::{Path, PathBuf};
use tunec_compiler::diagnostics::{Diagnostic, FileId};
use tunec_compiler::format::format;
use tunec_compiler::syntax::ast::{Call, Field, File, Item, Value, ValueKind};
use tunec_compiler::syntax::parse_file;
use tunec_compiler::World;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Local model directories resolve relative to the file's folder, as in `tunec check`.
struct Dir(PathBuf);

impl World for Dir {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        std::fs::read_to_string(self.0.join(dir).join(file)).map_err(|e| e.kind().to_string())
    }
}

/// Every `.tune` file the repository holds as a test input.
fn corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let dirs = [root().join("tests/cases"), root().join("compiler/fuzz/seeds")];
    for dir in dirs {
        files.extend(tune_files(&dir));
    }
    for example in std::fs::read_dir(root().join("examples")).expect("examples/ is readable") {
        files.extend(tune_files(&example.expect("entry").path()));
    }
    files.sort();
    assert!(files.len() > 60, "the corpus is suspiciously small: {}", files.len());
    files
}

fn tune_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.map(|e| e.expect("entry").path()).filter(|p| p.extension().is_some_and(|x| x == "tune")).collect()
}

/// What a diagnostic says, without where.
fn meaning(d: &Diagnostic) -> String {
    let labels: Vec<&str> = std::iter::once(&d.primary).chain(&d.secondary).map(|l| l.message.as_str()).collect();
    format!("{} {:?} {} | {} | {:?}", d.code.name(), d.severity, d.message, labels.join(" / "), d.help)
}

fn meanings(diagnostics: &[Diagnostic]) -> Vec<String> {
    let mut out: Vec<String> = diagnostics.iter().map(meaning).collect();
    out.sort();
    out
}

/// Formats `text` and checks every promise; returns the output, or `None` when it does not parse.
fn assert_promises(text: &str, world: &dyn World, what: &str) -> Option<String> {
    let out = match format(text) {
        Ok(out) => out,
        Err(errors) => {
            let parsed = parse_file(text, FileId(0)).expect_err("format failed, so parsing fails");
            assert_eq!(errors, parsed, "{what}: format reports exactly the parser's diagnostics");
            return None;
        }
    };
    let again = format(&out).unwrap_or_else(|e| panic!("{what}: the output does not parse: {e:?}\n{out}"));
    assert_eq!(again, out, "{what}: formatting is not idempotent\n--- once:\n{out}\n--- twice:\n{again}");
    let before = parse_file(text, FileId(0)).expect("parses").without_spans();
    let after = parse_file(&out, FileId(0)).expect("parses").without_spans();
    assert_eq!(before, after, "{what}: the tree changed\n{out}");
    let checked_before = tunec_compiler::check("a.tune", text, &[], world);
    let checked_after = tunec_compiler::check("a.tune", &out, &[], world);
    assert_eq!(
        meanings(&checked_before.diagnostics),
        meanings(&checked_after.diagnostics),
        "{what}: the diagnostics changed\n{out}"
    );
    assert!(!out.lines().any(|l| l.ends_with(' ') || l.ends_with('\t')), "{what}: trailing blanks\n{out}");
    assert!(out.is_empty() || (out.ends_with('\n') && !out.ends_with("\n\n")), "{what}: ends with one newline");
    Some(out)
}

#[test]
fn every_file_formats_idempotently_and_equivalently() {
    let mut formatted = 0;
    for path in corpus() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let world = Dir(path.parent().expect("folder").to_path_buf());
        if assert_promises(&text, &world, &path.display().to_string()).is_some() {
            formatted += 1;
        }
    }
    // Only the syntax and bad-literal fixtures and seeds do not parse.
    assert!(formatted > 60, "only {formatted} files formatted");
}

#[test]
fn formatted_files() {
    for name in ["examples/medreason/medreason.tune", "examples/tiny-local/tiny.tune", "tests/cases/split_leakage.tune"]
    {
        let text = std::fs::read_to_string(root().join(name)).expect("readable");
        let out = format(&text).expect("formats");
        insta::with_settings!({ snapshot_suffix => name.replace('/', "__") }, {
            insta::assert_snapshot!(out);
        });
    }
}

#[test]
fn comments_everywhere() {
    let text = r#"// A header comment.

/* A block
   comment. */
defaults train { precision = bf16 } // trailing a block

pipeline p { // after the brace
  target local { python = "python3" /* inline */ }
  budget = $10 // money

  // Between items.
  model m = hf_model( // before the id
    "Qwen/Qwen2.5-0.5B-Instruct" /* the id */ ,
  )
  dataset d = file("d.jsonl") { columns = { q: string, /* note */ a: string } rows = 1_000 }
  chat c = chat_template(d, tokenizer = m) { user = "{q}" assistant = "{a}" seq_len = 512 // short
  }
  split s = split(c, train = 0.9, test = 0.1)
  train t = sft(m, data = s.train) {
    method = lora { r = 8 } // rank 8
    compute = "ml.g5.2xlarge" /* one */ x 1
    // dangling at the end of a body
  }
  // dangling at the end of the pipeline
}
// The end.
"#;
    let out = assert_promises(text, &Dir(root()), "comments_everywhere").expect("formats");
    insta::assert_snapshot!(out);
}

// -------------------------------------------------------------------------------------------------
// Properties

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: Some(Box::new(FileFailurePersistence::Off)), ..Config::default() }
}

/// Byte offsets where a comment or whitespace may be inserted: before and after every token the
/// tree records (spans start and end on token boundaries).
fn boundaries(file: &File) -> Vec<usize> {
    fn value(v: &Value, out: &mut Vec<usize>) {
        out.extend([v.span.start as usize, v.span.end as usize]);
        match &v.kind {
            ValueKind::List(items) => items.iter().for_each(|i| value(i, out)),
            ValueKind::Record(fields) | ValueKind::Variant { fields, .. } => fields.iter().for_each(|f| field(f, out)),
            ValueKind::Call(c) => call(c, out),
            ValueKind::Times { value: inner, count_span, .. } => {
                out.push(count_span.start as usize);
                value(inner, out);
            }
            ValueKind::Optional(inner) => value(inner, out),
            _ => {}
        }
    }
    fn field(f: &Field, out: &mut Vec<usize>) {
        out.extend([f.key.span.start as usize, f.key.span.end as usize]);
        value(&f.value, out);
    }
    fn call(c: &Call, out: &mut Vec<usize>) {
        out.extend([c.func.span.end as usize, c.span.end as usize]);
        for a in &c.args {
            if let Some(name) = &a.name {
                out.extend([name.span.start as usize, name.span.end as usize]);
            }
            value(&a.value, out);
        }
    }
    let mut out = Vec::new();
    for p in &file.pipelines {
        out.extend([p.span.start as usize, p.name.span.end as usize, p.span.end as usize]);
        for item in &p.items {
            match item {
                Item::Target(t) => {
                    out.extend([t.span.start as usize, t.kind.span.end as usize, t.span.end as usize]);
                    t.fields.iter().for_each(|f| field(f, &mut out));
                }
                Item::Param(param) => {
                    out.extend([param.span.start as usize, param.name.span.end as usize]);
                    value(&param.value, &mut out);
                }
                Item::Defaults(d) => {
                    out.extend([d.span.start as usize, d.span.end as usize]);
                    d.fields.iter().for_each(|f| field(f, &mut out));
                }
                Item::Node(n) => {
                    out.extend([n.span.start as usize, n.name.span.end as usize, n.span.end as usize]);
                    call(&n.call, &mut out);
                    n.body.iter().for_each(|f| field(f, &mut out));
                }
                Item::Setting(f) => field(f, &mut out),
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Trivia to insert; `{}` becomes a unique number so that each comment can be found again.
const TRIVIA: &[&str] =
    &[" ", "\n", "\n\n\n", "\t", " /* Z{}Z */ ", "/*Z{}Z*/", " // Z{}Z\n", "\n// Z{}Z\n\n", "/* Z{}Z\n  two */"];

/// The number inside an inserted comment.
fn picks_number(trivia: &str) -> Option<usize> {
    let start = trivia.find('Z')? + 1;
    let len = trivia[start..].find('Z')?;
    trivia[start..start + len].parse().ok()
}

const SOURCES: &[&str] = &[
    include_str!("../../examples/medreason/medreason.tune"),
    include_str!("../../examples/tiny-local/tiny.tune"),
    include_str!("../../tests/cases/defaults_for_every_kind.tune"),
    include_str!("../../tests/cases/param_override.tune"),
];

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn comments_and_whitespace_anywhere(source in 0..SOURCES.len(), picks in prop::collection::vec((any::<prop::sample::Index>(), 0..TRIVIA.len()), 1..24)) {
        let text = SOURCES[source];
        let file = parse_file(text, FileId(0)).expect("the source parses");
        let points = boundaries(&file);
        let mut inserts: Vec<(usize, String)> = picks
            .iter()
            .enumerate()
            .map(|(n, (at, trivia))| (points[at.index(points.len())], TRIVIA[*trivia].replace("{}", &n.to_string())))
            .collect();
        inserts.sort_by_key(|(at, _)| *at);
        let mut mutated = String::new();
        let mut last = 0;
        let mut markers = Vec::new();
        for (n, (at, trivia)) in inserts.iter().enumerate() {
            mutated.push_str(&text[last..*at]);
            mutated.push_str(trivia);
            if trivia.contains('Z') {
                markers.push(format!("Z{}Z", picks_number(trivia).unwrap_or(n)));
            }
            last = *at;
        }
        mutated.push_str(&text[last..]);
        let out = assert_promises(&mutated, &Dir(root().join("tests/cases")), "mutated source")
            .unwrap_or_else(|| panic!("the mutated source does not parse:\n{mutated}"));
        // Every inserted comment comes out once, in order.
        let mut previous = None;
        for marker in &markers {
            let found: Vec<usize> = out.match_indices(marker.as_str()).map(|(i, _)| i).collect();
            prop_assert_eq!(found.len(), 1, "comment `{}` appears {} times:\n{}", marker, found.len(), out);
            prop_assert!(previous < Some(found[0]), "comment `{}` moved out of order:\n{}", marker, out);
            previous = Some(found[0]);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = assert_promises(&text, &tunec_compiler::NoFiles, "arbitrary text");
    }

    #[test]
    fn token_soups_never_panic(tokens in prop::collection::vec(prop::sample::select(&[
        "pipeline", "p", "{", "}", "model", "m", "=", "f", "(", ")", "\"s\"", ",", "[", "]", "x", "1",
        "2e-4", "$1", "5h", "40GiB", ":", ".", "// c\n", "/* c */", "\n", " ", "train", "t", "sft",
        "qlora", "defaults", "target", "local", "param", "\"\"\"\n a\n \"\"\"",
    ][..]), 0..60)) {
        let text = tokens.join(" ");
        let _ = assert_promises(&text, &tunec_compiler::NoFiles, "token soup");
    }
}
