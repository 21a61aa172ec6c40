//! The data step of a chat node and its split (`runtime/src/data/prepare.rs`), end to end on real
//! files and the real Llama 3.1 tokenizer, with Llama 3.1 Instruct's chat template
//! (`tests/data/llama3_1_instruct.jinja`, as published with meta-llama/Llama-3.1-8B-Instruct).
//!
//! `tests/data/medreason.jsonl` is MedReason-shaped (question, answer, reasoning): 31 records on 32
//! lines, of which 27 distinct good rows, record 6 repeats record 3, record 12 is longer than
//! `seq_len`, record 18 has no `reasoning`, line 19 is blank and record 24 (line 25) is not valid
//! JSON. `tests/data/medreason.csv` holds its first five records, with a quoted comma and a quoted
//! newline. The tokenizer comes from `TUNEC_FIXTURES` (`.ci/fixtures.sh`); without it the tests
//! fail rather than pass without having tokenized anything.

#[path = "support/parquet.rs"]
mod parquet_file;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use tunec_compiler::estimate::DataProfile;
use tunec_runtime::data::conversation::ChatSpec;
use tunec_runtime::data::prepare::{prepare, PrepareConfig, PrepareError, Profile, Split, SplitFractions, TrainOn};
use tunec_runtime::data::source::{
    BadRowPolicy, ColumnType, Origin, RowError, RowPos, Schema, SourceError, SourceSpec, SplitSlice,
};
use tunec_runtime::data::template::ChatTemplate;
use tunec_runtime::data::tokenize::{ChatTokenizer, OverflowPolicy, IGNORE_INDEX};

const BOS: u64 = 128_000;
const EOT: i64 = 128_009;
const SEQ_LEN: usize = 160;
const SYSTEM: &str = "You are a deep-thinking AI assistant.\n\nFor every user question, first write your thoughts \
                      and reasoning inside <think>...</think> tags, then provide your answer.";
const ASSISTANT: &str = "<think>\n{reasoning}\n</think>\n\n{answer}";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data").join(name)
}

/// The Llama 3.1 tokenizer with the Instruct template, loaded once.
fn llama() -> &'static ChatTokenizer {
    static LLAMA: OnceLock<ChatTokenizer> = OnceLock::new();
    LLAMA.get_or_init(|| {
        let fixtures = match std::env::var_os("TUNEC_FIXTURES") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => panic!(
                "TUNEC_FIXTURES is not set: these tests tokenize with the real Llama 3.1 tokenizer; run them \
                 through .ci/run, or export TUNEC_FIXTURES (the folder .ci/fixtures.sh fills)"
            ),
        };
        let dir = fixtures.join("llama3_1");
        let base = ChatTokenizer::from_files(&dir)
            .unwrap_or_else(|e| panic!("cannot load {} (run .ci/fixtures.sh): {e}", dir.display()));
        let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("tokenizer_config.json");
        let jinja = std::fs::read_to_string(data("llama3_1_instruct.jinja")).expect("instruct template");
        base.with_template(ChatTemplate::from_config(&config, Some(&jinja)).expect("template"))
    })
}

fn schema() -> Schema {
    Schema::new(&[("question", ColumnType::String), ("answer", ColumnType::String), ("reasoning", ColumnType::String)])
}

fn source(name: &str, on_bad_row: BadRowPolicy) -> SourceSpec {
    SourceSpec { on_bad_row, ..SourceSpec::file(&data(name), schema()) }
}

fn config(overflow: OverflowPolicy) -> PrepareConfig {
    let chat = ChatSpec::new(Some(SYSTEM), "{question}", ASSISTANT, &schema()).expect("chat spec");
    let split = SplitFractions { train: 0.6, val: 0.2, test: 0.2, seed: 42 };
    let mut config = PrepareConfig::new(chat, SEQ_LEN, overflow, split);
    config.template_vars.insert("date_string".into(), json!("26 Jul 2024"));
    config.batch_rows = 7;
    config
}

/// A fresh output folder for one test.
fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tunec-data-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn run(source: &SourceSpec, config: &PrepareConfig, name: &str) -> (Profile, PathBuf) {
    let out = out_dir(name);
    let profile = prepare(source, llama(), config, &out).unwrap_or_else(|e| panic!("prepare failed: {e}"));
    (profile, out)
}

fn read_split(out: &Path, split: Split) -> Vec<Map<String, Value>> {
    let text = std::fs::read_to_string(split.path(out)).expect("split file");
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line").as_object().cloned().expect("object"))
        .collect()
}

fn ints(row: &Map<String, Value>, key: &str) -> Vec<i64> {
    row[key].as_array().expect("list").iter().map(|v| v.as_i64().expect("int")).collect()
}

fn all_files(out: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = Split::ALL.iter().flat_map(|s| [s.path(out), s.parquet_path(out)]).collect();
    files.push(out.join("profile.json"));
    files.iter().map(|f| std::fs::read(f).expect("output file")).collect()
}

#[test]
fn skip_policy_counts_every_record() {
    let (profile, out) = run(&source("medreason.jsonl", BadRowPolicy::Skip), &config(OverflowPolicy::Drop), "skip");
    assert_eq!(
        (profile.read, profile.skipped, profile.duplicates, profile.dropped, profile.truncated, profile.rows),
        (31, 2, 1, 1, 0, 27)
    );
    let counts = [profile.splits.train, profile.splits.val, profile.splits.test];
    assert_eq!(counts.iter().sum::<u64>(), 27);
    assert!(counts.iter().all(|&n| n > 0), "every split gets rows: {counts:?}");

    // The profile's numbers are those of the written files.
    let mut lengths = Vec::new();
    for (split, expected) in Split::ALL.iter().zip(counts) {
        let rows = read_split(&out, *split);
        assert_eq!(rows.len() as u64, expected, "{}", split.name());
        lengths.extend(rows.iter().map(|r| ints(r, "input_ids").len() as u64));
    }
    assert_eq!(profile.max_tokens, *lengths.iter().max().expect("rows"));
    assert!(profile.max_tokens <= SEQ_LEN as u64);
    let mean = lengths.iter().sum::<u64>() as f64 / lengths.len() as f64;
    assert!((profile.mean_tokens - mean).abs() < 1e-9);
    assert_eq!(profile.histogram.iter().map(|b| b.rows).sum::<u64>(), 27);
    for length in &lengths {
        let bar = profile.histogram.iter().find(|b| *length <= b.tokens_up_to).expect("a bar");
        assert!(*length > bar.tokens_up_to / 2 || bar.tokens_up_to == 1);
    }
    let written: Profile =
        serde_json::from_slice(&std::fs::read(out.join("profile.json")).expect("profile.json")).expect("profile");
    // serde_json parses floats to the nearest value only within an ulp or so.
    assert!((written.mean_tokens - profile.mean_tokens).abs() < 1e-9);
    assert_eq!(Profile { mean_tokens: profile.mean_tokens, ..written }, profile);
    // The estimator reads the same file.
    let estimator = DataProfile::parse(&std::fs::read_to_string(out.join("profile.json")).expect("profile"))
        .expect("a DataProfile");
    assert_eq!((estimator.rows, estimator.max_tokens), (27, profile.max_tokens));
    // No temporary file is left behind.
    for split in Split::ALL {
        let dir = out.join(split.name());
        let mut names: Vec<_> = std::fs::read_dir(&dir).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        let want = [format!("{}.jsonl", split.name()), format!("{}.parquet", split.name())];
        assert_eq!(names, want.map(std::ffi::OsString::from), "{names:?}");
    }
}

#[test]
fn fail_policy_stops_at_the_first_bad_row() {
    let error = prepare(
        &source("medreason.jsonl", BadRowPolicy::Fail),
        llama(),
        &config(OverflowPolicy::Drop),
        &out_dir("fail"),
    )
    .expect_err("record 18 has no reasoning");
    let at = RowPos { row: 18, line: 18 };
    assert!(
        matches!(
            &error,
            PrepareError::Source(SourceError::BadRow { error: RowError::MissingColumn { at: a, column }, .. })
                if *a == at && column == "reasoning"
        ),
        "{error:?}"
    );
    assert!(error.to_string().ends_with("medreason.jsonl: row 18 (line 18): missing column `reasoning`"), "{error}");

    // After the missing column, the bad JSON: record 24 is on line 25 (line 19 is blank).
    let mut sliced = source("medreason.jsonl", BadRowPolicy::Fail);
    sliced.split = Some(SplitSlice::parse("train[18:]").expect("slice"));
    let error = prepare(&sliced, llama(), &config(OverflowPolicy::Drop), &out_dir("fail-json")).expect_err("bad JSON");
    assert!(
        matches!(
            &error,
            PrepareError::Source(SourceError::BadRow { error: RowError::BadJson { at, .. }, .. })
                if *at == RowPos { row: 24, line: 25 }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("row 24 (line 25): not valid JSON"), "{error}");
}

#[test]
fn overflow_truncate_and_error() {
    let skip = source("medreason.jsonl", BadRowPolicy::Skip);
    let (profile, out) = run(&skip, &config(OverflowPolicy::Truncate), "truncate");
    assert_eq!((profile.rows, profile.truncated, profile.dropped, profile.duplicates), (28, 1, 0, 1));
    assert_eq!(profile.max_tokens, SEQ_LEN as u64);
    let long: Vec<_> = Split::ALL
        .iter()
        .flat_map(|s| read_split(&out, *s))
        .filter(|r| r["text"].as_str().expect("text").contains("Summarize the causes of anemia"))
        .collect();
    assert_eq!(long.len(), 1);
    assert_eq!(ints(&long[0], "input_ids").len(), SEQ_LEN);
    assert_eq!(ints(&long[0], "labels").len(), SEQ_LEN);

    let failed = out_dir("too-long");
    let error = prepare(&skip, llama(), &config(OverflowPolicy::Error), &failed).expect_err("too long");
    let PrepareError::TooLong { at, tokens, seq_len } = error else { panic!("expected TooLong, got {error:?}") };
    assert_eq!((at, seq_len), (RowPos { row: 12, line: 12 }, SEQ_LEN));
    assert!(tokens > SEQ_LEN);
    // A failed step leaves no output behind, and no temporary file either.
    for split in Split::ALL {
        let dir = failed.join(split.name());
        let left: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.map(|e| e.expect("entry").path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn labels_mask_exactly_the_prompt() {
    let config = config(OverflowPolicy::Drop);
    let (_, out) = run(&source("medreason.jsonl", BadRowPolicy::Skip), &config, "labels");
    // The reference: every good row through the parity-tested `encode_conversation`, by rendered text.
    let mut expected = HashMap::new();
    let text = std::fs::read_to_string(data("medreason.jsonl")).expect("fixture");
    for line in text.lines() {
        let Some(Value::Object(row)) = serde_json::from_str::<Value>(line).ok() else { continue };
        let Ok(conversation) = config.chat.conversation(&row) else { continue };
        let rendered = llama().template().render(&conversation.messages, false, &config.template_vars).expect("render");
        let example = llama().encode_conversation(&conversation.messages, &config.template_vars).expect("encode");
        expected.insert(rendered, example);
    }
    let mut checked = 0;
    for split in Split::ALL {
        for row in read_split(&out, split) {
            let ids = ints(&row, "input_ids");
            let labels = ints(&row, "labels");
            let example = &expected[row["text"].as_str().expect("text")];
            assert_eq!(ids, example.input_ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>());
            let prompt = example.prompt_tokens;
            assert!(labels[..prompt].iter().all(|&l| l == IGNORE_INDEX));
            assert_eq!(labels[prompt..], ids[prompt..]);
            assert_eq!(labels.last(), Some(&EOT), "the end-of-turn token is trained");
            assert_eq!(ids[0] as u64, BOS);
            assert_ne!(ids[1] as u64, BOS, "a row starts with BOS twice");
            assert_eq!(ids.iter().filter(|&&i| i as u64 == BOS).count(), 1);
            checked += 1;
        }
    }
    assert_eq!(checked, 27);
}

#[test]
fn train_on_all_and_no_dedup() {
    let mut config = config(OverflowPolicy::Drop);
    config.train_on = TrainOn::All;
    config.dedup = false;
    let (profile, out) = run(&source("medreason.jsonl", BadRowPolicy::Skip), &config, "all");
    assert_eq!((profile.rows, profile.duplicates), (28, 0));
    for split in Split::ALL {
        for row in read_split(&out, split) {
            assert_eq!(ints(&row, "labels"), ints(&row, "input_ids"));
        }
    }
}

#[test]
fn test_rows_carry_prompt_and_reference() {
    let (profile, out) =
        run(&source("medreason.jsonl", BadRowPolicy::Skip), &config(OverflowPolicy::Drop), "test-rows");
    let rows = read_split(&out, Split::Test);
    assert_eq!(rows.len() as u64, profile.splits.test);
    for row in &rows {
        let prompt = row["prompt"].as_str().expect("prompt");
        let reference = row["reference"].as_str().expect("reference");
        let text = row["text"].as_str().expect("text");
        assert!(prompt.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"), "{prompt:?}");
        assert_eq!(text, format!("{prompt}{reference}<|eot_id|>"));
        assert!(reference.starts_with("<think>\n") && reference.contains("\n</think>\n\n"), "{reference:?}");
        let prompt_ids = llama().encode_text(prompt).expect("encode");
        let labels = ints(row, "labels");
        assert!(labels[..prompt_ids.len()].iter().all(|&l| l == IGNORE_INDEX));
        assert_ne!(labels[prompt_ids.len()], IGNORE_INDEX);
    }
    for split in [Split::Train, Split::Val] {
        assert!(read_split(&out, split).iter().all(|r| !r.contains_key("prompt") && !r.contains_key("reference")));
    }
}

/// A split's Parquet file read back with the parquet crate's record reader, each row as JSON, and
/// the number of row groups.
fn read_parquet(out: &Path, split: Split) -> (Vec<Map<String, Value>>, usize) {
    use parquet::file::reader::{FileReader as _, SerializedFileReader};
    let file = std::fs::File::open(split.parquet_path(out)).expect("parquet file");
    let reader = SerializedFileReader::new(file).expect("a Parquet file");
    let groups = reader.metadata().num_row_groups();
    let rows = (reader.get_row_iter(None).expect("rows"))
        .map(|row| row.expect("a row").to_json_value().as_object().cloned().expect("object"))
        .collect();
    (rows, groups)
}

#[test]
fn parquet_files_hold_the_jsonl_rows() {
    let mut config = config(OverflowPolicy::Truncate);
    // Small row groups, so that rows span several and a group ends mid-batch.
    config.row_group_bytes = 4000;
    let (profile, out) = run(&source("medreason.jsonl", BadRowPolicy::Skip), &config, "parquet-output");
    for split in Split::ALL {
        let jsonl = read_split(&out, split);
        let (parquet, groups) = read_parquet(&out, split);
        assert_eq!(parquet, jsonl, "{split:?}");
        assert!(!jsonl.is_empty(), "{split:?}");
        assert!(groups > 1, "{split:?}: {groups} row groups");
    }
    assert_eq!(read_parquet(&out, Split::Train).0.len() as u64, profile.splits.train);
    assert!(read_parquet(&out, Split::Test).0.iter().all(|r| r["prompt"].is_string() && r["reference"].is_string()));
    assert!(read_parquet(&out, Split::Val).0.iter().all(|r| !r.contains_key("prompt")));

    // The default row groups give the same rows in one group each.
    let (_, whole) =
        run(&source("medreason.jsonl", BadRowPolicy::Skip), &crate::config(OverflowPolicy::Truncate), "parquet-whole");
    for split in Split::ALL {
        assert_eq!(read_parquet(&whole, split), (read_split(&out, split), 1), "{split:?}");
    }
}

#[test]
fn output_is_the_same_whatever_the_threads() {
    let source = source("medreason.jsonl", BadRowPolicy::Skip);
    let mut config = config(OverflowPolicy::Truncate);
    config.threads = 1;
    let (_, one) = run(&source, &config, "threads-1");
    config.threads = 2;
    config.batch_rows = 3;
    let (_, two) = run(&source, &config, "threads-2");
    let (_, again) = run(&source, &config, "threads-2-again");
    assert_eq!(all_files(&one), all_files(&two));
    assert_eq!(all_files(&two), all_files(&again));
}

#[test]
fn adding_rows_does_not_move_existing_ones() {
    let config = config(OverflowPolicy::Drop);
    let (_, before) = run(&source("medreason.jsonl", BadRowPolicy::Skip), &config, "stable-before");
    // The same file with new rows before, among and after the old ones.
    let old = std::fs::read_to_string(data("medreason.jsonl")).expect("fixture");
    let new_row = |i: usize| {
        json!({"question": format!("New question {i}?"), "answer": format!("{i}"), "reasoning": format!("Because {i}.")})
            .to_string()
    };
    let mut lines: Vec<String> = (0..5).map(new_row).collect();
    for (i, line) in old.lines().enumerate() {
        lines.push(line.to_string());
        if i % 4 == 0 {
            lines.push(new_row(100 + i));
        }
    }
    lines.extend((200..210).map(new_row));
    let grown = out_dir("stable-input").with_extension("jsonl");
    std::fs::write(&grown, lines.join("\n") + "\n").expect("write input");
    let grown_source = SourceSpec { on_bad_row: BadRowPolicy::Skip, ..SourceSpec::file(&grown, schema()) };
    let (profile, after) = run(&grown_source, &config, "stable-after");
    assert_eq!(profile.rows, 27 + 5 + 8 + 10);

    let splits_of = |out: &Path| -> HashMap<String, &'static str> {
        Split::ALL
            .iter()
            .flat_map(|s| {
                read_split(out, *s).into_iter().map(move |r| (r["text"].as_str().expect("text").to_string(), s.name()))
            })
            .collect()
    };
    let (old_splits, new_splits) = (splits_of(&before), splits_of(&after));
    assert_eq!(old_splits.len(), 27);
    for (text, split) in &old_splits {
        assert_eq!(new_splits.get(text), Some(split), "a row moved: {text:?}");
    }
}

#[test]
fn csv_reads_as_the_same_rows() {
    let config = config(OverflowPolicy::Drop);
    let (csv_profile, csv_out) = run(&source("medreason.csv", BadRowPolicy::Fail), &config, "csv");
    let mut jsonl = source("medreason.jsonl", BadRowPolicy::Fail);
    jsonl.split = Some(SplitSlice::parse("train[:5]").expect("slice"));
    let (jsonl_profile, jsonl_out) = run(&jsonl, &config, "csv-jsonl");
    assert_eq!((csv_profile.read, csv_profile.duplicates, csv_profile.rows), (5, 0, 5));
    assert_eq!(csv_profile.splits, jsonl_profile.splits);
    assert_eq!(all_files(&csv_out), all_files(&jsonl_out));

    // Positions count records and physical lines: record 3 starts on line 5 (after the header and a
    // quoted newline).
    let rows: Vec<_> =
        source("medreason.csv", BadRowPolicy::Fail).open().expect("opens").map(|r| r.expect("row").at).collect();
    assert_eq!(rows[2], RowPos { row: 3, line: 5 });
    // A declared column missing from the header is an error before any row.
    let mut spec = source("medreason.csv", BadRowPolicy::Skip);
    spec.schema.columns.push(("options".into(), ColumnType::StringList));
    assert!(matches!(spec.open().err(), Some(SourceError::MissingFileColumn { column, .. }) if column == "options"));
}

#[test]
fn slices_select_records() {
    let rows = |slice: &str| -> Vec<u64> {
        let mut spec = source("medreason.jsonl", BadRowPolicy::Skip);
        spec.split = Some(SplitSlice::parse(slice).expect("slice"));
        spec.open().expect("opens").map(|r| r.expect("row").at.row).collect()
    };
    assert_eq!(rows("train[:10]"), (1..=10).collect::<Vec<_>>());
    // 10% of 31 records is 3.1: from record 4.
    assert_eq!(rows("train[10%:]"), (4..=31).collect::<Vec<_>>());
    // 50% of 31 is 15.5, which rounds to 16 (half to even, as `datasets`).
    assert_eq!(rows("train[5:50%]"), (6..=16).collect::<Vec<_>>());
    assert_eq!(rows("train[-2:]"), [30, 31]);
    assert_eq!(rows("train"), (1..=31).collect::<Vec<_>>());

    // Under `skip`, bad rows inside the slice are counted.
    let mut spec = source("medreason.jsonl", BadRowPolicy::Skip);
    spec.split = Some(SplitSlice::parse("train[10:20]").expect("slice"));
    let (profile, _) = run(&spec, &config(OverflowPolicy::Drop), "slice");
    assert_eq!((profile.read, profile.skipped, profile.dropped, profile.rows), (10, 1, 1, 8));
}

#[test]
fn remote_sources_are_reported() {
    let mut spec = source("medreason.jsonl", BadRowPolicy::Fail);
    spec.origin = Origin::File { path: "s3://bucket/medreason.jsonl".into(), format: None };
    let error = prepare(&spec, llama(), &config(OverflowPolicy::Drop), &out_dir("s3")).expect_err("unsupported");
    assert!(matches!(error, PrepareError::Source(SourceError::Unsupported { .. })), "{error:?}");
    spec.origin = Origin::HfDataset { id: "UCSC-VLAA/MedReason".into() };
    let error = prepare(&spec, llama(), &config(OverflowPolicy::Drop), &out_dir("hub")).expect_err("unsupported");
    assert!(error.to_string().contains("read from its local copy, which `tunec run` downloads first"), "{error}");
}

fn write_parquet(path: &Path, rows: &[Map<String, Value>]) {
    parquet_file::write_parquet(path, rows, &["question", "answer", "reasoning"], parquet::basic::Compression::SNAPPY);
}

#[test]
fn parquet_reads_as_the_same_rows() {
    let text = std::fs::read_to_string(data("medreason.jsonl")).expect("fixture");
    let rows: Vec<Map<String, Value>> = text.lines().take(5).map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let path = out_dir("parquet-input").with_extension("parquet");
    write_parquet(&path, &rows);
    let config = config(OverflowPolicy::Drop);
    let parquet = SourceSpec { on_bad_row: BadRowPolicy::Fail, ..SourceSpec::file(&path, schema()) };
    let (parquet_profile, parquet_out) = run(&parquet, &config, "parquet");
    let mut jsonl = source("medreason.jsonl", BadRowPolicy::Fail);
    jsonl.split = Some(SplitSlice::parse("train[:5]").expect("slice"));
    let (_, jsonl_out) = run(&jsonl, &config, "parquet-jsonl");
    assert_eq!((parquet_profile.read, parquet_profile.rows), (5, 5));
    assert_eq!(all_files(&parquet_out), all_files(&jsonl_out));

    // Percentages use the row count of the footer: 40% of 5 is 2.
    let mut sliced = parquet.clone();
    sliced.split = Some(SplitSlice::parse("train[40%:]").expect("slice"));
    let positions: Vec<u64> = sliced.open().expect("opens").map(|r| r.expect("row").at.row).collect();
    assert_eq!(positions, [3, 4, 5]);
    // A declared column the file lacks is an error before any row, naming the file's columns.
    let mut wider = parquet.clone();
    wider.schema.columns.push(("options".into(), ColumnType::StringList));
    let error = prepare(&wider, llama(), &config, &out_dir("parquet-missing")).expect_err("no options column");
    assert!(
        error.to_string().contains("the Parquet schema has no column `options` (it has: question, answer, reasoning)"),
        "{error}"
    );
}

/// A split stored as shards reads as one file: the records in shard order, slices and row numbers
/// counted across the shards; shards may use other codecs and carry columns that are not declared.
#[test]
fn parquet_shards_read_as_one_split() {
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    let text = std::fs::read_to_string(data("medreason.jsonl")).expect("fixture");
    let rows: Vec<Map<String, Value>> = text.lines().take(5).map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let dir = out_dir("shards-input");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let three = ["question", "answer", "reasoning"];
    let mut with_extra: Vec<Map<String, Value>> = rows[3..].to_vec();
    for row in &mut with_extra {
        row.insert("source".into(), json!("an undeclared column"));
    }
    let shards = [dir.join("0000.parquet"), dir.join("0001.parquet"), dir.join("0002.parquet")];
    parquet_file::write_parquet(&shards[0], &rows[..2], &three, Compression::ZSTD(ZstdLevel::default()));
    parquet_file::write_parquet(&shards[1], &rows[2..3], &three, Compression::GZIP(GzipLevel::default()));
    parquet_file::write_parquet(
        &shards[2],
        &with_extra,
        &["source", "question", "answer", "reasoning"],
        Compression::LZ4_RAW,
    );
    let sharded = SourceSpec {
        origin: Origin::Shards { paths: shards.to_vec() },
        ..source("medreason.jsonl", BadRowPolicy::Fail)
    };
    let config = config(OverflowPolicy::Drop);
    let (profile, out) = run(&sharded, &config, "shards");
    let mut jsonl = source("medreason.jsonl", BadRowPolicy::Fail);
    jsonl.split = Some(SplitSlice::parse("train[:5]").expect("slice"));
    let (_, jsonl_out) = run(&jsonl, &config, "shards-jsonl");
    assert_eq!((profile.read, profile.rows), (5, 5));
    assert_eq!(all_files(&out), all_files(&jsonl_out));

    // 40% of the 5 records of all shards: from the third, which is the second shard's only one.
    let mut sliced = sharded.clone();
    sliced.split = Some(SplitSlice::parse("train[40%:]").expect("slice"));
    let mut opened = sliced.open().expect("opens");
    let first = opened.next().expect("a record").expect("readable");
    assert_eq!(first.at.row, 3);
    assert!(opened.path().ends_with("0001.parquet"), "{}", opened.path());
    let rest: Vec<u64> = opened.map(|r| r.expect("row").at.row).collect();
    assert_eq!(rest, [4, 5]);
}

/// The tokenizer of a fixture family, with a template of its own when its config has none.
fn family(name: &str) -> ChatTokenizer {
    let dir = PathBuf::from(std::env::var_os("TUNEC_FIXTURES").expect("TUNEC_FIXTURES (.ci/fixtures.sh)")).join(name);
    let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("tokenizer_config.json");
    let template = ChatTemplate::from_config(&config, Some("{% for m in messages %}{{ m.content }}{% endfor %}"))
        .expect("template");
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
    ChatTokenizer::new(template, tokenizer)
}

#[test]
fn no_token_covers_more_bytes_than_the_bound_that_drops_huge_rows_unencoded() {
    // Texts that tokenize into few, long tokens: runs of one character, repeated words, the
    // tokenizers' own added tokens, composed and combining characters, scripts of 3- and 4-byte
    // characters.
    let texts: Vec<String> = vec![
        " ".repeat(5000),
        "=".repeat(5000),
        "-".repeat(3000) + &"\n".repeat(2000),
        "the ".repeat(2000),
        "internationalization ".repeat(500),
        "<|begin_of_text|><|eot_id|><|im_start|><|im_end|><start_of_turn><end_of_turn>".repeat(100),
        "e\u{301}".repeat(2000),
        "\u{1100}\u{1161}\u{11a8}".repeat(1000),
        "日本語のテキスト。".repeat(500),
        "🙂🚀🧪".repeat(1000),
        "0123456789".repeat(500),
    ];
    let mut bounded = Vec::new();
    for name in
        ["llama3_1", "llama3_2", "qwen2_5", "qwen3", "deepseek_v3", "mistral_nemo", "gptoss", "gemma2", "gemma3"]
    {
        let tokenizer = family(name);
        let Some(bound) = tokenizer.max_bytes_per_token() else { continue };
        bounded.push(name);
        for text in &texts {
            let tokens = tokenizer.encode_text(text).expect("encode").len();
            assert!(
                tokens * bound >= text.len(),
                "{name}: {} bytes in {tokens} tokens, more than {bound} bytes per token",
                text.len()
            );
        }
    }
    // Byte-level BPE (Llama 3, Qwen, DeepSeek, Mistral Nemo, gpt-oss) and byte fallback with a
    // lengthening normalizer (Gemma's " " -> "▁") all have one.
    assert_eq!(bounded.len(), 9, "{bounded:?}");
}

#[test]
fn a_row_too_long_to_fit_is_dropped_like_any_other() {
    let huge = json!({"question": "What is this?", "answer": "yes", "reasoning": "word ".repeat(400_000)});
    let mut rows = std::fs::read_to_string(data("medreason.jsonl")).expect("fixture");
    rows.push_str(&format!("{huge}\n"));
    let dir = out_dir("huge-row");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("rows.jsonl");
    std::fs::write(&path, rows).expect("write");
    let spec = SourceSpec {
        origin: Origin::File { path: path.display().to_string(), format: None },
        split: None,
        schema: schema(),
        on_bad_row: BadRowPolicy::Skip,
    };
    let (with_it, _) = run(&spec, &config(OverflowPolicy::Drop), "huge-row-out");
    let (without, _) =
        run(&source("medreason.jsonl", BadRowPolicy::Skip), &config(OverflowPolicy::Drop), "huge-row-ref");
    assert_eq!(with_it.read, without.read + 1);
    assert_eq!(with_it.dropped, without.dropped + 1, "{with_it:?}");
    assert_eq!((with_it.rows, with_it.splits), (without.rows, without.splits));
}
