//! The data step's promise that its files are the same bytes whatever the machine does: `tunec run`
//! over a few thousand generated records, with every combination of threads {1, 2, 3, 8, 16} and
//! batch sizes {1, 2, 7, 4096} (`TUNEC_DATA_THREADS`, `TUNEC_DATA_BATCH_ROWS`), writes
//! byte-identical JSONL, Parquet and profile files, and prints the same account of what it kept.
//!
//! The records are generated (a fixed seed) in the MedReason shape and hold what makes the order of
//! work matter: exact duplicates and duplicates written differently (other key order, escapes),
//! which dedup must resolve to the first in file order; bad rows of every kind (invalid JSON, a
//! missing column, a number for a string, `null`), skipped and counted; rows longer than
//! `seq_len`, dropped by one chat and truncated by the other; rows so long that they are dropped
//! without being tokenized; blank lines; and text beyond ASCII. Two splits read them at once, one
//! with dedup and one without. The tokenizer is the real Llama 3.1 one (`TUNEC_FIXTURES`).

#[path = "support/medreason.rs"]
#[allow(dead_code)] // the folder, not the pipeline
mod medreason;
#[path = "support/process.rs"]
#[allow(dead_code)] // the generator, not the kills
mod process;
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use process::Lcg;
use serde_json::{json, Value};

const RECORDS: usize = 2000;

const PIPELINE: &str = r#"// Two splits of the same generated records: all of them with the Llama 3.1 tokenizer, rows longer
// than seq_len dropped and duplicates left out; and the last 600 with a small byte-level BPE
// tokenizer, long rows truncated and duplicates kept.
pipeline d {
  model llama = local_model("model") {
    pad_token = "<|finetune_right_pad_id|>"
  }
  model tiny = local_model("tiny") {
    pad_token = "<|finetune_right_pad_id|>"
  }
  dataset raw = file("rows.jsonl") {
    columns    = { question: string, answer: string, reasoning: string }
    on_bad_row = skip
  }
  dataset tail = file("rows.jsonl", split = "train[-600:]") {
    columns    = { question: string, answer: string, reasoning: string }
    on_bad_row = skip
  }
  chat dropped = chat_template(raw, tokenizer = llama) {
    system      = "You are a careful clinician. Think before you answer."
    user        = "{question}"
    assistant   = "<think>\n{reasoning}\n</think>\n\n{answer}"
    seq_len     = 256
    overflow    = drop
    date_string = "26 Jul 2024"
  }
  chat cut = chat_template(tail, tokenizer = tiny) {
    user      = "{question}"
    assistant = "{reasoning} {answer}"
    seq_len   = 128
    overflow  = truncate
  }
  split parts = split(dropped, train = 0.8, val = 0.1, test = 0.1)
  split whole = split(cut, train = 0.6, val = 0.2, test = 0.2, seed = 7, dedup = false)
}
"#;

#[rustfmt::skip] // a list, one line per dozen words
const WORDS: &[&str] = &[
    "patient", "fever", "cough", "renal", "hepatic", "dose", "mg", "insulin", "thyroid", "iodine", "anemia",
    "ferritin", "biopsy", "lesion", "acute", "chronic", "bilateral", "edema", "sodium", "potassium", "café",
    "naïve", "Größe", "東京", "病院", "🙂", "Ωmega", "α-blocker", "β2", "μg/L", "—", "\"quoted\"", "tab\there",
    "new\nline", "50%", "<tag>", "{braces}", "back\\slash",
];

/// Between `least` and `least + spread` words.
fn sentence(rng: &mut Lcg, least: usize, spread: f64) -> String {
    let words = least + (rng.next_f64() * spread) as usize;
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[(rng.next_f64() * WORDS.len() as f64) as usize]);
    }
    out
}

/// One good record's fields.
fn record(rng: &mut Lcg, i: usize) -> (String, String, String) {
    let question = format!("Case {i}: {}?", sentence(rng, 4, 20.0));
    let answer = sentence(rng, 1, 8.0);
    let reasoning = sentence(rng, 5, 60.0);
    (question, answer, reasoning)
}

/// The records, one JSON object a line, with the duplicates, bad rows, long rows and blank lines
/// described above; returns the text and what it holds.
fn generate() -> (String, BTreeMap<&'static str, usize>) {
    let mut rng = Lcg(0x6465_7465_726d_u64);
    let mut lines: Vec<String> = Vec::new();
    let mut good: Vec<(String, String, String)> = Vec::new();
    let mut made: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut count = |what: &'static str| *made.entry(what).or_default() += 1;
    for i in 0..RECORDS {
        let line = match i % 97 {
            // An exact copy of an earlier record.
            13 | 61 if !good.is_empty() => {
                count("duplicate");
                let (q, a, r) = &good[(rng.next_f64() * good.len() as f64) as usize];
                json!({"question": q, "answer": a, "reasoning": r}).to_string()
            }
            // The same record written differently: other key order, escaped characters.
            29 if !good.is_empty() => {
                count("duplicate");
                let (q, a, r) = &good[(rng.next_f64() * good.len() as f64) as usize];
                // Every character as a JSON \u escape (surrogate pairs beyond the BMP).
                let escaped = |s: &str| {
                    s.encode_utf16().fold(String::new(), |mut out, unit| {
                        let _ = write!(out, "\\u{unit:04x}");
                        out
                    })
                };
                format!(r#"{{ "reasoning": {},   "answer": "{}", "question": {} }}"#, json!(r), escaped(a), json!(q))
            }
            // Bad rows of each kind.
            7 => {
                count("bad");
                format!(r#"{{"question": "Case {i}: unterminated, "answer": "#)
            }
            19 => {
                count("bad");
                json!({"question": format!("Case {i}: no reasoning?"), "answer": "none"}).to_string()
            }
            41 => {
                count("bad");
                json!({"question": format!("Case {i}?"), "answer": 42, "reasoning": "a number"}).to_string()
            }
            53 => {
                count("bad");
                json!({"question": format!("Case {i}?"), "answer": "x", "reasoning": null}).to_string()
            }
            // Longer than seq_len, and far longer (dropped before it is tokenized under drop).
            3 | 37 | 71 => {
                count("long");
                let (q, a, _) = record(&mut rng, i);
                let r = sentence(&mut rng, 300, 200.0);
                good.push((q.clone(), a.clone(), r.clone()));
                json!({"question": q, "answer": a, "reasoning": r}).to_string()
            }
            89 if i % 3 == 0 => {
                count("huge");
                let (q, a, _) = record(&mut rng, i);
                json!({"question": q, "answer": a, "reasoning": "very long ".repeat(4000)}).to_string()
            }
            _ => {
                let (q, a, r) = record(&mut rng, i);
                good.push((q.clone(), a.clone(), r.clone()));
                json!({"question": q, "answer": a, "reasoning": r}).to_string()
            }
        };
        lines.push(line);
        if i % 211 == 100 {
            lines.push(String::new());
        }
    }
    (lines.join("\n") + "\n", made)
}

/// Every file the run recorded for the two splits (the split files, their profiles and the
/// estimator's copies), by path.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".tunec/d/state.json")).expect("the journal"))
            .expect("json");
    let mut files = BTreeMap::new();
    for node in ["parts", "whole"] {
        let recorded = state["nodes"][node]["outputs"].as_array().unwrap_or_else(|| panic!("{node}: {state}"));
        for output in recorded {
            let path = output["path"].as_str().expect("path").to_owned();
            let bytes = std::fs::read(dir.join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            files.insert(path, bytes);
        }
    }
    files
}

/// What the run said about each split: its `  parts: …` and `  whole: …` lines, in order.
fn accounts(stdout: &str) -> Vec<String> {
    let mut lines: Vec<String> = stdout
        .lines()
        .filter(|l| ["  parts: ", "  parts | ", "  whole: ", "  whole | "].iter().any(|p| l.starts_with(p)))
        .map(str::to_owned)
        .collect();
    // The two steps run at once; their lines interleave in any order.
    lines.sort();
    lines
}

/// A folder with the two models, the generated records and the pipeline; returns the pipeline's
/// path and what the records hold.
fn setup(dir: &Path) -> (String, BTreeMap<&'static str, usize>) {
    let _ = std::fs::remove_dir_all(dir);
    medreason::model_and_rows(dir);
    let (rows, made) = generate();
    std::fs::write(dir.join("rows.jsonl"), &rows).expect("write");
    std::fs::create_dir_all(dir.join("tiny")).expect("mkdir");
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
        std::fs::copy(support::root().join("examples/tiny-local/model").join(file), dir.join("tiny").join(file))
            .expect("copy");
    }
    std::fs::write(dir.join("p.tune"), PIPELINE).expect("write");
    (dir.join("p.tune").display().to_string(), made)
}

/// What one run of the matrix wrote and said.
struct Cell {
    name: String,
    files: BTreeMap<String, Vec<u8>>,
    said: Vec<String>,
}

#[test]
fn the_split_files_are_the_same_bytes_for_every_thread_count_and_batch_size() {
    let dir = std::env::temp_dir().join(format!("tunec-determinism-{}", std::process::id()));
    let (file, made) = setup(&dir);

    let mut reference: Option<Cell> = None;
    for threads in [1, 2, 3, 8, 16] {
        for batch in [1, 2, 7, 4096] {
            let cell = format!("{threads} threads, batches of {batch}");
            let _ = std::fs::remove_dir_all(dir.join(".tunec"));
            let run = support::tunec_with(&["run", &file, "--progress", "plain"], |command| {
                command.env("TUNEC_DATA_THREADS", threads.to_string()).env("TUNEC_DATA_BATCH_ROWS", batch.to_string());
            });
            assert_eq!(run.code, 0, "{cell}: {}{}", run.stdout, run.stderr);
            let (files, said) = (outputs(&dir), accounts(&run.stdout));
            match &reference {
                None => reference = Some(Cell { name: cell, files, said }),
                Some(Cell { name: first, files: expected, said: expected_said }) => {
                    assert_eq!(
                        files.keys().collect::<Vec<_>>(),
                        expected.keys().collect::<Vec<_>>(),
                        "{cell} wrote other files than {first}"
                    );
                    for (path, bytes) in &files {
                        assert!(bytes == &expected[path], "{path} differs between {first} and {cell}");
                    }
                    assert_eq!(&said, expected_said, "{cell} and {first} say different things");
                }
            }
        }
    }

    // What was compared holds every kind of record the data was made with.
    let Cell { files, said, .. } = reference.expect("runs");
    let profile = |chat: &str| -> Value {
        serde_json::from_slice(&files[&format!(".tunec/d/profiles/{chat}.json")]).expect("profile")
    };
    let (dropped, cut) = (profile("dropped"), profile("cut"));
    assert!(made["bad"] > 80 && made["duplicate"] > 50 && made["long"] > 50 && made["huge"] > 5, "{made:?}");
    assert_eq!(dropped["read"], RECORDS, "{dropped}");
    assert_eq!(dropped["skipped"], made["bad"], "{dropped}");
    assert!(dropped["duplicates"].as_u64() >= Some(made["duplicate"] as u64), "{dropped}");
    assert!(dropped["dropped"].as_u64() >= Some((made["long"] + made["huge"]) as u64), "{dropped}");
    assert!(dropped["rows"].as_u64().is_some_and(|n| n > 1500), "{dropped}");
    assert_eq!((&cut["read"], &cut["duplicates"]), (&600.into(), &0.into()), "{cut}");
    // Under truncate a long row is cut, unless its prompt alone fills seq_len (the small tokenizer
    // spends many tokens on a question): nothing is left to train, and it is dropped. Every record
    // read is written, skipped or dropped.
    let count = |key: &str| cut[key].as_u64().unwrap_or_else(|| panic!("{key} in {cut}"));
    assert_eq!(count("rows") + count("skipped") + count("dropped"), 600, "{cut}");
    assert!(cut["skipped"].as_u64().is_some_and(|n| n > 10), "{cut}");
    assert!(cut["truncated"].as_u64().is_some_and(|n| n > 20), "{cut}");
    let kinds = ["jsonl", "parquet"];
    for split in ["parts", "whole"] {
        for part in ["train", "val", "test"] {
            for kind in kinds {
                let suffix = format!("/{part}/{part}.{kind}");
                assert!(
                    files.keys().any(|p| p.starts_with(&format!(".tunec/d/data/{split}/")) && p.ends_with(&suffix)),
                    "{split}{suffix} is compared: {:?}",
                    files.keys()
                );
            }
        }
    }
    assert!(said.iter().any(|l| l.contains(" duplicates left out (dedup)")), "{said:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_thread_count_or_batch_size_that_is_not_a_number_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("tunec-determinism-env-{}", std::process::id()));
    let (file, _) = setup(&dir);
    for (name, value) in [("TUNEC_DATA_THREADS", "0"), ("TUNEC_DATA_BATCH_ROWS", "lots")] {
        let run = support::tunec_with(&["run", &file, "--until", "parts", "--progress", "plain"], |command| {
            command.env(name, value);
        });
        let said = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(run.code, 1, "{name}={value}: {said}");
        assert!(said.contains(&format!("{name} is `{value}`: set it to the number of")), "{name}={value}: {said}");
        assert!(!dir.join(".tunec/d/profiles/dropped.json").exists(), "{name}={value}: the step wrote its profile");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
