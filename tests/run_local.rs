//! `tunec run` on the local target, driven as a user drives it: the data nodes run, are journaled,
//! and are reused or run again for a stated reason; locks, unknown nodes, job nodes and the
//! SageMaker target stop the run with exit code 2.
//!
//! Each test builds its own folder: a `local_model("model")` directory made from the real Llama
//! 3.1 tokenizer (`TUNEC_FIXTURES`, `.ci/fixtures.sh`) with Llama 3.1 Instruct's chat template,
//! `tests/data/medreason.jsonl` (31 records, two bad and skipped with `on_bad_row = skip`) and
//! a pipeline whose split is followed by a train node, so that `--until parts` stops before it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tunec(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tunec"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "80")
        .output()
        .expect("the tunec binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn pipeline(seq_len: u32, overflow: &str) -> String {
    format!(
        r#"pipeline p {{
  model llama = local_model("model") {{
    pad_token = "<|finetune_right_pad_id|>"
  }}
  dataset raw = file("medreason.jsonl") {{
    columns = {{ question: string, answer: string, reasoning: string }}
    on_bad_row = skip
  }}
  chat convo = chat_template(raw, tokenizer = llama) {{
    system = "You are a deep-thinking AI assistant."
    user = "{{question}}"
    assistant = "<think>\n{{reasoning}}\n</think>\n\n{{answer}}"
    seq_len = {seq_len}
    overflow = {overflow}
    date_string = "26 Jul 2024"
  }}
  split parts = split(convo, train = 0.6, val = 0.2, test = 0.2)
  train sft = sft(llama, data = parts.train, eval = parts.val) {{
    method = lora {{ r = 16 }}
    compute = "ml.g6e.xlarge" x 1
  }}
}}
"#
    )
}

/// A fresh pipeline folder; returns the pipeline file's path as an argument.
fn setup(name: &str) -> (PathBuf, String) {
    let fixtures = match std::env::var_os("TUNEC_FIXTURES") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("llama3_1"),
        _ => panic!(
            "TUNEC_FIXTURES is not set: these tests tokenize with the real Llama 3.1 tokenizer (.ci/fixtures.sh)"
        ),
    };
    let dir = std::env::temp_dir().join(format!("tunec-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("model")).expect("mkdir");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures.join(file), dir.join("model").join(file))
            .unwrap_or_else(|e| panic!("cannot copy {file} from {} (run .ci/fixtures.sh): {e}", fixtures.display()));
    }
    let config = std::fs::read_to_string(root().join("tests/cases/models/tiny/config.json")).expect("config.json");
    std::fs::write(dir.join("model/config.json"), config.replace("\"vocab_size\": 512", "\"vocab_size\": 128256"))
        .expect("write");
    std::fs::copy(root().join("tests/data/llama3_1_instruct.jinja"), dir.join("model/chat_template.jinja"))
        .expect("copy");
    std::fs::copy(root().join("tests/data/medreason.jsonl"), dir.join("medreason.jsonl")).expect("copy");
    std::fs::write(dir.join("p.tune"), pipeline(160, "drop")).expect("write");
    let file = dir.join("p.tune").display().to_string();
    (dir, file)
}

fn lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

/// The split's files and profile, from the journal.
fn outputs(dir: &Path) -> Vec<PathBuf> {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".tunec/p/state.json")).expect("state")).expect("json");
    state["nodes"]["parts"]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| dir.join(o["path"].as_str().expect("path")))
        .collect()
}

fn mtimes(files: &[PathBuf]) -> Vec<SystemTime> {
    files.iter().map(|f| std::fs::metadata(f).and_then(|m| m.modified()).expect("mtime")).collect()
}

#[test]
fn the_data_nodes_run_once_and_are_then_reused() {
    let (dir, file) = setup("reuse");
    let first = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(
        lines(&first),
        [
            "run llama: no previous run",
            "run raw: no previous run",
            "run convo: no previous run",
            "run parts: no previous run"
        ]
    );
    let files = outputs(&dir);
    assert_eq!(files.len(), 5, "three split files, profile.json and its copy for the estimator");
    assert!(files.iter().all(|f| f.is_file()), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("train/train.jsonl")));
    let profile: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".tunec/p/profiles/convo.json")).expect("the estimator's profile"),
    )
    .expect("json");
    assert_eq!((&profile["rows"], &profile["dropped"]), (&27.into(), &1.into()), "one row longer than seq_len dropped");

    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("4 of 5 nodes recorded"), "{}", status.stdout);
    for name in ["llama", "raw", "convo", "parts"] {
        let line = status.stdout.lines().find(|l| l.trim_start().starts_with(name)).expect("a line per node");
        assert!(line.contains("succeeded") && line.contains("attempt 1"), "{line}");
    }
    assert!(status.stdout.contains("sft    not run"), "{}", status.stdout);
    let plan = tunec(&["plan", &file]);
    assert_eq!(plan.stdout.matches("reused: same inputs, outputs intact").count(), 4, "{}", plan.stdout);
    assert!(plan.stdout.contains("will run: no previous run"), "{}", plan.stdout);

    // The train node's estimate now reads the data profile.
    let check = tunec(&["check", "--format", "json", &file]);
    let doc: serde_json::Value = serde_json::from_str(&check.stdout).expect("json");
    let sft = doc["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == "sft").expect("sft");
    assert_eq!(sft["estimate"]["token_source"], "data profile", "{sft}");

    let before = mtimes(&files);
    let second = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(lines(&second).iter().all(|l| l.starts_with("reuse ")), "{}", second.stdout);
    assert_eq!(lines(&second).len(), 4);
    assert_eq!(mtimes(&files), before, "nothing is rewritten");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn changes_run_what_they_affect() {
    let (dir, file) = setup("changes");
    assert_eq!(tunec(&["run", &file, "--until", "parts"]).code, 0);

    std::fs::write(dir.join("p.tune"), pipeline(200, "drop")).expect("write");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let l = lines(&run);
    assert_eq!(&l[..2], ["reuse llama: same inputs, outputs intact", "reuse raw: same inputs, outputs intact"]);
    assert!(l[2].starts_with("run convo: its inputs changed"), "{}", run.stdout);
    assert!(l[3].starts_with("run parts: its inputs changed"), "{}", run.stdout);

    let val = outputs(&dir).into_iter().find(|f| f.ends_with("val/val.jsonl")).expect("val");
    std::fs::remove_file(&val).expect("remove");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(lines(&run)[3].starts_with("run parts: its output `.tunec/p/data/parts/"), "{}", run.stdout);
    assert!(lines(&run)[3].ends_with("/val/val.jsonl` is gone"), "{}", run.stdout);
    assert!(val.is_file());

    // A changed dataset file is not in any key: its digest runs the dataset and what reads it.
    let mut rows = std::fs::read_to_string(dir.join("medreason.jsonl")).expect("read");
    rows.push_str("{\"question\": \"Which deficiency causes goitre?\", \"answer\": \"iodine\", \"reasoning\": \"Thyroid hormone needs iodine.\"}\n");
    std::fs::write(dir.join("medreason.jsonl"), rows).expect("write");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(
        lines(&run)[1..],
        [
            "run raw: its output `medreason.jsonl` changed since it was written",
            "run convo: its input `raw` ran again with different outputs",
            "run parts: its input `convo` ran again with different outputs"
        ]
    );
    let status = tunec(&["status", &file]);
    let parts = status.stdout.lines().find(|l| l.trim_start().starts_with("parts")).expect("parts");
    assert!(parts.contains("attempt 4"), "{parts}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_failed_node_is_recorded_and_stops_the_run() {
    let (dir, file) = setup("failed");
    std::fs::write(dir.join("p.tune"), pipeline(160, "error")).expect("write");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("parts failed") && run.stderr.contains("more than seq_len = 160"), "{}", run.stderr);
    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("failed     attempt 1"), "{}", status.stdout);
    assert!(status.stdout.contains("error: ") && status.stdout.contains("seq_len"), "{}", status.stdout);
    let again = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(again.code, 1);
    assert!(lines(&again)[3].starts_with("run parts: the previous run failed"), "{}", again.stdout);
    assert!(tunec(&["status", &file]).stdout.contains("failed     attempt 2"));
    assert!(!dir.join(".tunec/p/lock").exists(), "the lock is released after a failure");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn locks_job_nodes_and_unknown_nodes_stop_with_exit_2() {
    let (dir, file) = setup("locks");
    std::fs::create_dir_all(dir.join(".tunec/p")).expect("mkdir");
    // pid 1 is alive on every Linux system.
    std::fs::write(dir.join(".tunec/p/lock"), r#"{"pid": 1, "since": "2026-01-01T00:00:00Z"}"#).expect("write");
    let live = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(live.code, 2);
    assert!(live.stderr.contains("another tunec run (pid 1"), "{}", live.stderr);
    assert!(live.stdout.is_empty(), "{}", live.stdout);
    // A pid no process has: Linux pids stay below 2^22.
    std::fs::write(dir.join(".tunec/p/lock"), r#"{"pid": 4294967, "since": "2026-01-01T00:00:00Z"}"#).expect("write");
    let stale = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(stale.code, 2);
    assert!(stale.stderr.contains("--clear-stale-lock"), "{}", stale.stderr);
    assert_eq!(tunec(&["status", "--clear-stale-lock", &file]).code, 0);

    let unknown = tunec(&["run", &file, "--until", "nope"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("llama, raw, convo, parts, sft"), "{}", unknown.stderr);

    let whole = tunec(&["run", &file]);
    assert_eq!(whole.code, 2, "{}", whole.stderr);
    assert_eq!(lines(&whole).len(), 4, "the data nodes run first: {}", whole.stdout);
    assert_eq!(
        whole.stderr.lines().last(),
        Some("stop before sft: running entry scripts locally is not built yet"),
        "{}",
        whole.stderr
    );
    assert!(!tunec(&["status", &file]).stdout.contains("sft    succeeded"));

    let sagemaker = tunec(&["run", &root().join("examples/medreason/medreason.tune").display().to_string()]);
    assert_eq!(sagemaker.code, 2);
    assert!(sagemaker.stderr.contains("SageMaker target"), "{}", sagemaker.stderr);
    assert!(!root().join("examples/medreason/.tunec").exists(), "no journal for a target that does not run");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
