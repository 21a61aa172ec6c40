//! `tunec run` on the local target, driven as a user drives it: the data nodes run, are journaled,
//! and are reused or run again for a stated reason; locks, unknown nodes, a job without a Python
//! and the SageMaker target stop the run with exit code 2; and examples/tiny-local runs end to end
//! (data step, train.py, merge.py, evaluate.py on the CPU) with `TUNEC_TEST_PYTHON`.
//!
//! The data-node tests build their own folder: a `local_model("model")` directory made from the real Llama
//! 3.1 tokenizer (`TUNEC_FIXTURES`, `.ci/fixtures.sh`) with Llama 3.1 Instruct's chat template,
//! `tests/data/medreason.jsonl` (31 records, two bad and skipped with `on_bad_row = skip`) and
//! a pipeline whose split is followed by a train node, so that `--until parts` stops before it;
//! data that no job could train on (an empty file, a part smaller than a batch, a declared row
//! count far off) stops the data step.

#[path = "support/medreason.rs"]
mod medreason;
mod support;
#[path = "support/tiny.rs"]
mod tiny;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;
use support::{root, Run};
use tiny::{copy_tiny_local, test_python};

/// Runs the tunec binary without a Python for the entry scripts (`TUNEC_PYTHON` removed) and
/// unable to provision one (no base Python), so that no test installs PyTorch by accident.
fn tunec(args: &[&str]) -> Run {
    tunec_with(args, None)
}

fn tunec_with(args: &[&str], python: Option<&str>) -> Run {
    support::tunec_with(args, |command| {
        command
            .env_remove("TUNEC_PYTHON")
            .env_remove("TUNEC_MANAGED_REQUIREMENTS")
            .env("TUNEC_BASE_PYTHON", "/nonexistent/python3")
            .env("TUNEC_HOME", std::env::temp_dir().join(format!("tunec-home-{}", std::process::id())));
        if let Some(python) = python {
            command.env("TUNEC_PYTHON", python);
        }
    })
}

fn pipeline(seq_len: u32, overflow: &str) -> String {
    medreason::pipeline(&medreason::Shape {
        target: "",
        seq_len,
        overflow,
        instance: "ml.g6e.xlarge",
        train_extra: "",
        after_train: "",
    })
}

/// A fresh pipeline folder; returns the pipeline file's path as an argument.
fn setup(name: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("tunec-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    medreason::model_and_rows(&dir);
    std::fs::write(dir.join("p.tune"), pipeline(160, "drop")).expect("write");
    let file = dir.join("p.tune").display().to_string();
    (dir, file)
}

/// The decision lines of a run (`run <node>: …`, `reuse <node>: …`), without the lines that
/// report on a step or sum the run up.
fn decisions(run: &Run) -> Vec<&str> {
    run.stdout.lines().filter(|l| l.starts_with("run ") || l.starts_with("reuse ")).collect()
}

/// The lines after `summary: …`, inclusive.
fn summary(run: &Run) -> Vec<&str> {
    run.stdout.lines().skip_while(|l| !l.starts_with("summary: ")).collect()
}

/// Runs `tunec args` on a pseudo-terminal of 100 columns, as a user at a terminal does; returns
/// its exit code and everything it drew, control sequences included.
fn tunec_on_a_terminal(args: &[&str], python: &str) -> (Option<i32>, String) {
    use nix::pty::{openpty, Winsize};
    use std::io::Read as _;
    let size = Winsize { ws_row: 40, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = openpty(&size, None).expect("a pseudo-terminal");
    let terminal = std::fs::File::from(pty.slave);
    let mut command = Command::new(env!("CARGO_BIN_EXE_tunec"));
    command
        .args(args)
        .current_dir(root())
        .env("TERM", "xterm-256color")
        .env("TUNEC_PYTHON", python)
        .env_remove("CI")
        .stdin(std::process::Stdio::null())
        .stdout(terminal.try_clone().expect("dup"))
        .stderr(terminal);
    let mut child = command.spawn().expect("the tunec binary runs");
    drop(command); // its copies of the terminal: the screen ends (EIO) when tunec's do
    let mut screen = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = screen.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        bytes
    });
    let status = child.wait().expect("wait");
    let bytes = reader.join().expect("reader");
    (status.code(), String::from_utf8_lossy(&bytes).into_owned())
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
        decisions(&first),
        [
            "run llama: no previous run",
            "run raw: no previous run",
            "run convo: no previous run",
            "run parts: no previous run"
        ]
    );
    // The step says what it kept and left out, and warns about the 2 of 31 records (6.5%) skipped.
    assert!(
        first.stdout.contains(
            "\n  parts: 27 rows (14 train, 5 val, 8 test) from 31 records of medreason.jsonl; 2 skipped (bad rows, \
             on_bad_row = skip), 1 duplicate left out (dedup), 1 dropped (longer than seq_len = 160, overflow = drop)\n"
        ),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains(
            "\n  parts: warning: 6.5% of the records of medreason.jsonl (2 of 31) were skipped as bad rows, more than 5%"
        ),
        "{}",
        first.stdout
    );
    let files = outputs(&dir);
    assert_eq!(
        files.len(),
        8,
        "three JSONL and three Parquet split files, profile.json and its copy for the estimator"
    );
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
    assert!(
        status
            .stdout
            .contains("         27 rows (14 train, 5 val, 8 test) from 31 records of medreason.jsonl; 2 skipped"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("         warning: 6.5% of the records"), "{}", status.stdout);
    let status = tunec(&["status", &file, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!((&doc["data"]["parts"]["skipped"], &doc["data"]["parts"]["dropped"]), (&2.into(), &1.into()), "{doc}");
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
    assert!(decisions(&second).iter().all(|l| l.starts_with("reuse ")), "{}", second.stdout);
    assert_eq!(decisions(&second).len(), 4);
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
    let l = decisions(&run);
    assert_eq!(&l[..2], ["reuse llama: same inputs, outputs intact", "reuse raw: same inputs, outputs intact"]);
    assert!(l[2].starts_with("run convo: its inputs changed"), "{}", run.stdout);
    assert!(l[3].starts_with("run parts: its inputs changed"), "{}", run.stdout);

    let val = outputs(&dir).into_iter().find(|f| f.ends_with("val/val.jsonl")).expect("val");
    std::fs::remove_file(&val).expect("remove");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(decisions(&run)[3].starts_with("run parts: its output `.tunec/p/data/parts/"), "{}", run.stdout);
    assert!(decisions(&run)[3].ends_with("/val/val.jsonl` is gone"), "{}", run.stdout);
    assert!(val.is_file());
    // The Parquet copies are outputs too.
    let parquet = outputs(&dir).into_iter().find(|f| f.ends_with("test/test.parquet")).expect("test.parquet");
    std::fs::remove_file(&parquet).expect("remove");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(decisions(&run)[3].ends_with("/test/test.parquet` is gone"), "{}", run.stdout);
    assert!(parquet.is_file());

    // A changed dataset file is not in any key: its digest runs the dataset and what reads it.
    let mut rows = std::fs::read_to_string(dir.join("medreason.jsonl")).expect("read");
    rows.push_str("{\"question\": \"Which deficiency causes goitre?\", \"answer\": \"iodine\", \"reasoning\": \"Thyroid hormone needs iodine.\"}\n");
    std::fs::write(dir.join("medreason.jsonl"), rows).expect("write");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(
        decisions(&run)[1..],
        [
            "run raw: its output `medreason.jsonl` changed since it was written",
            "run convo: its input `raw` ran again with different outputs",
            "run parts: its input `convo` ran again with different outputs"
        ]
    );
    let status = tunec(&["status", &file]);
    let parts = status.stdout.lines().find(|l| l.trim_start().starts_with("parts")).expect("parts");
    assert!(parts.contains("attempt 5"), "{parts}");

    // Weights are recorded by size and modification time; new weights run the model node again,
    // but not the data step, which reads only the tokenizer's files.
    std::fs::write(dir.join("model/model.safetensors"), b"weights, first version").expect("write");
    let plan = tunec(&["plan", &file]);
    assert!(plan.stdout.contains("will run: `model/model.safetensors` is new since it ran"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("may run: its input `llama` runs again; it runs too if that changes what it reads"),
        "{}",
        plan.stdout
    );
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(decisions(&run)[0], "run llama: `model/model.safetensors` is new since it ran", "{}", run.stdout);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".tunec/p/state.json")).expect("state")).expect("json");
    let weights = state["nodes"]["llama"]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["path"] == "model/model.safetensors")
        .cloned();
    assert!(weights.is_some_and(|w| w["sha256"].as_str().is_some_and(|f| f.starts_with("stat:22:"))), "{state}");
    assert_eq!(
        decisions(&run)[2..],
        ["reuse convo: same inputs, outputs intact", "reuse parts: same inputs, outputs intact"]
    );
    std::fs::write(dir.join("model/model.safetensors"), b"weights, the second version").expect("write");
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(
        decisions(&run),
        [
            "run llama: its output `model/model.safetensors` changed since it was written",
            "reuse raw: same inputs, outputs intact",
            "reuse convo: same inputs, outputs intact",
            "reuse parts: same inputs, outputs intact"
        ]
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_temporary_files_of_a_killed_run_are_removed_by_the_next() {
    let (dir, file) = setup("leftovers");
    assert_eq!(tunec(&["run", &file, "--until", "parts"]).code, 0);
    let train = outputs(&dir).into_iter().find(|f| f.ends_with("train/train.jsonl")).expect("train.jsonl");
    // What a run killed while writing leaves: a split file, the journal, a download; and a file in
    // a job's folder, where a script that outlived its run may still be writing.
    let leftovers = [
        train.with_file_name(".train.jsonl.tmp-99999"),
        dir.join(".tunec/p/.state.json.99999.tmp"),
        dir.join(".tunec/p/sources/hf/datasets/x/.data.parquet.99999.part"),
    ];
    let in_a_job = dir.join(".tunec/p/jobs/sft/k/checkpoints/.trainer_state.json.tmp-99999");
    for path in leftovers.iter().chain([&in_a_job]) {
        std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
        std::fs::write(path, vec![b'x'; 1 << 20]).expect("write");
    }
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(decisions(&run).iter().all(|l| l.starts_with("reuse ")), "{}", run.stdout);
    for path in &leftovers {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert!(in_a_job.exists(), "a job's folder is the job's");
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
    assert!(decisions(&again)[3].starts_with("run parts: the previous run failed"), "{}", again.stdout);
    assert!(tunec(&["status", &file]).stdout.contains("failed     attempt 2"));
    assert!(!tunec(&["status", &file]).stdout.contains("locked"), "the lock is released after a failure");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn data_that_cannot_train_stops_the_data_step_naming_the_file_and_the_setting() {
    let (dir, file) = setup("untrainable");
    let write = |text: String| std::fs::write(dir.join("p.tune"), text).expect("write");
    let fails = |needles: &[&str]| {
        let run = tunec(&["run", &file, "--until", "parts"]);
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        for needle in needles {
            assert!(run.stderr.contains(needle), "`{needle}` in:\n{}", run.stderr);
        }
    };
    let medreason = |train_extra: &str| {
        medreason::pipeline(&medreason::Shape {
            target: "",
            seq_len: 160,
            overflow: "drop",
            instance: "ml.g6e.xlarge",
            train_extra,
            after_train: "",
        })
    };

    // A bad row names the file, the row and the setting that would skip it.
    write(pipeline(160, "drop").replace("on_bad_row = skip", "on_bad_row = fail"));
    fails(&["tunec: parts failed: split `parts`: medreason.jsonl: row ", "set `on_bad_row = skip` on dataset `raw`"]);

    // A row longer than seq_len names the file and the chat's overflow policy.
    write(pipeline(160, "error"));
    fails(&[
        "tunec: parts failed: split `parts`: medreason.jsonl: row ",
        "more than seq_len = 160 of chat `convo`: set `overflow = drop`",
    ]);

    // A train part smaller than one optimizer step's batch.
    write(medreason("    per_device_batch = 8\n    grad_accum = 4"));
    fails(&[
        "split `parts`: `parts.train` has 14 rows, fewer than one batch of train `sft` (per_device_batch x \
         grad_accum = 32)",
        "27 rows (14 train, 5 val, 8 test) from 31 records of medreason.jsonl",
    ]);

    // A declared row count far from what the file holds: the estimates made with it were wrong.
    write(medreason("").replace("on_bad_row = skip", "on_bad_row = skip\n    rows = 1000"));
    fails(&["dataset `raw` declares rows = 1000, but medreason.jsonl gave 31 records, more than 2 times off"]);
    write(medreason("    per_device_batch = 14").replace("on_bad_row = skip", "on_bad_row = skip\n    rows = 40"));
    let run = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(run.code, 0, "40 is within a factor of 2 of 31, and 14 rows make one batch of 14: {}", run.stderr);

    // A batch raised after the split ran is checked against the split's counts before the job starts.
    write(medreason("    per_device_batch = 16"));
    let run = tunec(&["run", &file]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "tunec: cannot run sft: split `parts`: `parts.train` has 14 rows, fewer than one batch of train `sft` \
             (per_device_batch x grad_accum = 16)"
        ),
        "{}",
        run.stderr
    );

    // An empty file fails the data step, before any job, naming the file rather than a job's input.
    write(pipeline(160, "drop"));
    std::fs::write(dir.join("medreason.jsonl"), "").expect("empty the file");
    fails(&["tunec: parts failed: split `parts`: `parts.train` has no rows, and train `sft` reads it \
         (`data = parts.train`): medreason.jsonl has no records: add rows to it"]);
    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("error: split `parts`: `parts.train` has no rows"), "{}", status.stdout);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn locks_a_job_without_python_and_unknown_nodes_stop_with_exit_2() {
    let (dir, file) = setup("locks");
    std::fs::create_dir_all(dir.join(".tunec/p")).expect("mkdir");
    // A live run holds an advisory lock on the file; this test holds it the same way.
    let held = std::fs::File::create(dir.join(".tunec/p/lock")).expect("create");
    held.lock().expect("lock");
    std::fs::write(dir.join(".tunec/p/lock"), r#"{"pid": 4242, "since": "2026-01-01T00:00:00Z"}"#).expect("write");
    let live = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(live.code, 2);
    assert!(live.stderr.contains("another tunec run (pid 4242, started 2026-01-01T00:00:00Z)"), "{}", live.stderr);
    assert!(live.stdout.is_empty(), "{}", live.stdout);
    // A killed run's lock file names a dead process and is not locked: the next run takes it.
    drop(held);
    let taken = tunec(&["run", &file, "--until", "raw"]);
    assert_eq!(taken.code, 0, "{}", taken.stderr);
    assert_eq!(decisions(&taken), ["run raw: no previous run"], "--until covers the node and its inputs only");

    let unknown = tunec(&["run", &file, "--until", "nope"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("llama, raw, convo, parts, sft"), "{}", unknown.stderr);

    let whole = tunec(&["run", &file]);
    assert_eq!(whole.code, 2, "{}", whole.stderr);
    assert_eq!(decisions(&whole).len(), 4, "the data nodes run first: {}", whole.stdout);
    assert!(decisions(&whole)[1].starts_with("reuse raw"), "{}", whole.stdout);
    let last = whole.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tunec: cannot run sft: no Python 3.10 or newer to create tunec's environment"),
        "{}",
        whole.stderr
    );
    assert!(last.contains("(found /nonexistent/python3 (not found))") && last.contains("TUNEC_PYTHON"), "{last}");
    assert!(
        tunec(&["status", &file]).stdout.contains("sft    not run"),
        "nothing is recorded for a job that cannot start"
    );
    let missing = tunec(&["run", &file, "--python", "/nonexistent/python3"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("`/nonexistent/python3`, does not exist"), "{}", missing.stderr);

    let sagemaker = support::tunec_with(
        &["run", &root().join("examples/medreason/medreason.tune").display().to_string()],
        |command| {
            command.env_remove("TUNEC_BUCKET").env_remove("TUNEC_SAGEMAKER_ROLE").env_remove("TUNEC_HF_TOKEN_SECRET");
        },
    );
    assert_eq!(sagemaker.code, 2);
    assert!(
        sagemaker
            .stderr
            .contains("the pipeline reads TUNEC_BUCKET, TUNEC_HF_TOKEN_SECRET, TUNEC_SAGEMAKER_ROLE with env(...)"),
        "{}",
        sagemaker.stderr
    );
    assert!(!root().join("examples/medreason/.tunec").exists(), "nothing runs, and no journal, without them");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_tiny_local_example_trains_merges_and_evaluates() {
    let python = test_python();
    let dir = std::env::temp_dir().join(format!("tunec-run-tiny-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tiny_local(&dir);
    let committed: Vec<String> = ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join("model").join(f)).expect("read"))
        .collect();
    let made = Command::new(&python).arg("make_model.py").current_dir(&dir).output().expect("python runs");
    assert!(made.status.success(), "make_model.py: {}", String::from_utf8_lossy(&made.stderr));
    for (file, before) in
        ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"].iter().zip(&committed)
    {
        let after = std::fs::read_to_string(dir.join("model").join(file)).expect("read");
        assert_eq!(&after, before, "make_model.py rewrites the committed {file} identically");
    }
    assert!(dir.join("model/model.safetensors").is_file());

    // The first run at a terminal, with live bars.
    let file = dir.join("tiny.tune").display().to_string();
    let (code, screen) = tunec_on_a_terminal(&["run", &file, "--progress", "bars"], &python);
    assert_eq!(code, Some(0), "{screen}");
    for node in ["sft", "merged", "report"] {
        assert!(screen.contains(&format!("run {node}: no previous run")), "{screen}");
        assert!(screen.contains(&format!("  {node} done in ")), "{screen}");
        let log = dir.join(format!(".tunec/tiny/logs/{node}.log"));
        assert!(std::fs::metadata(&log).expect("a log per job").len() > 0);
    }
    // The evaluation's last line stays on the screen in full, wider than a bar's message could be.
    let text = tunec_runtime::run::progress::without_controls(&screen).into_owned();
    // (A permanent line ends where the terminal's width does: indicatif pads it with spaces.)
    let metrics_line = text
        .match_indices("  report | ")
        .map(|(at, _)| {
            let line = &text[at..];
            &line[..line.find("   ").or_else(|| line.find(['\r', '\n'])).unwrap_or(line.len())]
        })
        .find(|l| l.contains("metrics: {") && l.ends_with('}'))
        .unwrap_or_else(|| panic!("the metrics line is cut or erased: {screen:?}"));
    assert!(metrics_line.contains("\"exact_match\": ") && metrics_line.contains("\"rouge_l\": "), "{metrics_line}");
    assert!(screen.contains("summary: `tiny` done in "), "{screen}");

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".tunec/tiny/state.json")).expect("state"))
            .expect("json");
    let outputs = |node: &str| -> Vec<String> {
        state["nodes"][node]["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| o["path"].as_str().expect("path").to_owned())
            .collect()
    };
    let has = |node: &str, suffix: &str| outputs(node).iter().any(|p| p.ends_with(suffix));
    assert!(has("sft", "/model/adapter_model.safetensors") && has("sft", "/model/adapter_config.json"));
    assert!(has("sft", "/output/data/metrics.json"));
    assert!(has("merged", "/model/model.safetensors") && has("merged", "/output/data/smoke.json"));
    assert!(has("report", "/output/data/report.json") && has("report", "/output/data/predictions.jsonl"));
    for node in ["sft", "merged", "report"] {
        for path in outputs(node) {
            assert!(path.starts_with(&format!(".tunec/tiny/jobs/{node}/")), "{path}");
            assert!(dir.join(&path).is_file(), "{path}");
        }
    }
    let report_path = outputs("report").into_iter().find(|p| p.ends_with("output/data/report.json")).expect("report");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(&report_path)).expect("report")).expect("json");
    assert_eq!(report["schema"], "tunec.eval-report/1");
    assert!(report["num_examples"].as_u64().expect("num_examples") > 0, "{report}");
    assert!(report["metrics"]["rouge_l"].is_number(), "{report}");
    let metrics_path = outputs("sft").into_iter().find(|p| p.ends_with("output/data/metrics.json")).expect("metrics");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(metrics_path)).expect("metrics")).expect("json");
    assert_eq!(metrics["global_step"], 20, "{metrics}");

    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("7 of 7 nodes recorded"), "{}", status.stdout);
    for name in ["base", "facts", "convo", "parts", "sft", "merged", "report"] {
        let line = status.stdout.lines().find(|l| l.trim_start().starts_with(name)).expect("a line per node");
        assert!(line.contains("succeeded"), "{line}");
    }

    // Everything is reused, without even needing the Python; the summary says what the pipeline
    // produced and where, and the evaluation's metrics.
    let again = tunec(&["run", &file]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(decisions(&again).len(), 7, "{}", again.stdout);
    assert!(decisions(&again).iter().all(|l| l.starts_with("reuse ")), "{}", again.stdout);
    let table = summary(&again);
    assert!(table[0].starts_with("summary: `tiny` done in "), "{}", again.stdout);
    for (i, name) in ["base", "facts", "convo", "parts", "sft", "merged", "report"].iter().enumerate() {
        let words: Vec<&str> = table[i + 1].split_whitespace().collect();
        assert_eq!(words[..2], [*name, "reused"], "{}", again.stdout);
    }
    assert!(table[4].contains(" rows (") && table[4].contains(" train, "), "the split's counts: {}", table[4]);
    let job_dir = |node: &str| outputs(node)[0].split('/').take(5).collect::<Vec<_>>().join("/");
    let at = |rel: String| dir.join(rel).display().to_string();
    assert!(
        table.contains(&format!("adapter (sft): {}", at(format!("{}/model", job_dir("sft")))).as_str()),
        "{table:?}"
    );
    assert!(
        table.contains(&format!("merged model (merged): {}", at(format!("{}/model", job_dir("merged")))).as_str()),
        "{table:?}"
    );
    assert!(table.contains(&format!("report (report): {}", at(report_path.clone())).as_str()), "{table:?}");
    let heading = table.iter().position(|l| l.starts_with("metrics (report, ")).expect("a metrics table");
    assert_eq!(table[heading], format!("metrics (report, {} test rows):", report["num_examples"]));
    let rouge = format!("{:.4}", report["metrics"]["rouge_l"].as_f64().expect("rouge_l"));
    assert!(table[heading + 1..].iter().any(|l| l.split_whitespace().eq(["rouge_l", rouge.as_str()])), "{table:?}");

    // The same summary as JSON, with the progress on stderr.
    let json = tunec(&["run", &file, "--format", "json"]);
    assert_eq!(json.code, 0, "{}{}", json.stdout, json.stderr);
    assert!(json.stderr.contains("reuse report: same inputs, outputs intact"), "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("one JSON document on stdout");
    assert_eq!((&doc["version"], &doc["outcome"], &doc["pipeline"]), (&1.into(), &"done".into(), &"tiny".into()));
    assert!(doc["nodes"].as_array().expect("nodes").iter().all(|n| n["outcome"] == "reused"), "{doc}");
    let produced = doc["produced"].as_array().expect("produced");
    let evaluation = produced.iter().find(|p| p["what"] == "report").expect("the report");
    assert_eq!(evaluation["metrics"], report["metrics"], "{doc}");
    assert_eq!(doc["nodes"][3]["data"]["read"], 40, "{doc}");

    // The adapter is lost and trained again, byte for byte the same; its metrics.json differs in
    // its timings, throughput and memory, which no node reads: merge and evaluate are reused.
    let adapter =
        outputs("sft").into_iter().find(|p| p.ends_with("/model/adapter_model.safetensors")).expect("adapter");
    let before = std::fs::read(dir.join(&adapter)).expect("adapter");
    std::fs::remove_file(dir.join(&adapter)).expect("remove the adapter");
    let retrained = tunec_with(&["run", &file], Some(&python));
    assert_eq!(retrained.code, 0, "{}{}", retrained.stdout, retrained.stderr);
    // Plain lines carry no terminal control sequences, though tqdm's nested bars write them.
    assert!(retrained.stdout.contains("  sft | "), "{}", retrained.stdout);
    assert!(!retrained.stdout.contains('\u{1b}'), "{:?}", retrained.stdout);
    assert!(retrained.stdout.contains(&format!("run sft: its output `{adapter}` is gone")), "{}", retrained.stdout);
    assert_eq!(std::fs::read(dir.join(&adapter)).expect("adapter"), before, "trained again to the same bytes");
    for node in ["merged", "report"] {
        assert!(
            retrained.stdout.contains(&format!("reuse {node}: same inputs, outputs intact")),
            "{}",
            retrained.stdout
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_tiny_local_chat_example_trains_every_assistant_turn() {
    let python = test_python();
    let dir = std::env::temp_dir().join(format!("tunec-run-tiny-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tiny_local(&dir);
    let made = Command::new(&python).arg("make_model.py").current_dir(&dir).output().expect("python runs");
    assert!(made.status.success(), "make_model.py: {}", String::from_utf8_lossy(&made.stderr));

    let file = dir.join("chat.tune").display().to_string();
    let run = tunec_with(&["run", &file, "--until", "sft"], Some(&python));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("  sft done in "), "{}", run.stdout);

    // The profile counts every turn of the 24 conversations: 12 two-turn chats, 12 with a tool call.
    let profile: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".tunec/chat/profiles/convo.json")).expect("the chat's profile"),
    )
    .expect("json");
    assert_eq!((profile["rows"].as_u64(), profile["assistant_turns"].as_u64()), (Some(24), Some(48)), "{profile}");
    assert_eq!(profile["messages"], 24 * 5, "4 messages each, and the node's system message");

    // In the training rows, the trained tokens are the assistant turns: answers and tool calls.
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("model/tokenizer.json")).expect("tokenizer");
    let train = support::files_under(&dir.join(".tunec/chat/data"))
        .into_iter()
        .find(|p| p.ends_with("train/train.jsonl"))
        .expect("train.jsonl");
    let mut tool_calls = 0;
    for line in std::fs::read_to_string(train).expect("read").lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("json");
        let ids: Vec<u32> =
            row["input_ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id") as u32).collect();
        let labels: Vec<i64> =
            row["labels"].as_array().expect("labels").iter().map(|v| v.as_i64().expect("label")).collect();
        let mut runs: Vec<String> = Vec::new();
        let mut current: Vec<u32> = Vec::new();
        for (id, label) in ids.iter().zip(&labels).chain([(&0, &-100)]) {
            if *label == -100 {
                if !current.is_empty() {
                    runs.push(tokenizer.decode(&current, false).expect("decode"));
                    current.clear();
                }
            } else {
                current.push(*id);
            }
        }
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert!(runs.iter().all(|r| r.ends_with("<|eot_id|>")), "{runs:?}");
        if runs[0].starts_with("{\"name\": \"calculator\"") {
            tool_calls += 1;
        }
    }
    assert!(tool_calls > 0, "a tool call is trained");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A number in a JSON object; `None` when absent or not a number.
fn figure(value: &serde_json::Value, key: &str) -> Option<f64> {
    value.get(key).and_then(serde_json::Value::as_f64)
}

#[test]
fn the_ledger_keeps_each_local_jobs_estimate_and_what_it_used() {
    let python = test_python();
    let dir = std::env::temp_dir().join(format!("tunec-run-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tiny_local(&dir);
    // A local pipeline that names the instance it would run on has an estimate for it.
    let text = std::fs::read_to_string(dir.join("tiny.tune")).expect("read");
    let text = text.replace(
        "    per_device_batch = 2\n",
        "    per_device_batch = 2\n    compute          = \"ml.g5.xlarge\" x 1\n",
    );
    assert!(text.contains("ml.g5.xlarge"), "the train node takes the instance");
    std::fs::write(dir.join("tiny.tune"), text).expect("write");
    let made = Command::new(&python).arg("make_model.py").current_dir(&dir).output().expect("python runs");
    assert!(made.status.success(), "make_model.py: {}", String::from_utf8_lossy(&made.stderr));
    let file = dir.join("tiny.tune").display().to_string();
    let run = tunec_with(&["run", &file, "--progress", "plain"], Some(&python));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    let read = |rel: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(rel)).expect("read")).expect("json")
    };
    let state = read(".tunec/tiny/state.json");
    let check = read_check(&file);
    for node in ["sft", "merged", "report"] {
        let record = &state["nodes"][node];
        // The estimate the job started with: that of `tunec check` now that the data profile exists.
        let estimate = &check[node];
        assert_eq!(record["estimate"]["instance"], "ml.g5.xlarge", "{record}");
        assert_eq!(record["estimate"]["gpu_peak_bytes"], estimate["gpu_peak_bytes"], "{node}: {record}");
        assert_eq!(record["estimate"]["host_peak_bytes"], estimate["host_peak_bytes"], "{node}: {record}");
        assert_eq!(record["estimate"]["hours"], estimate["hours"], "{node}: {record}");
        // What it used: the script's usage.json, and the process's wall time around it.
        let job_dir =
            record["outputs"][0]["path"].as_str().expect("path").split('/').take(5).collect::<Vec<_>>().join("/");
        let usage = read(&format!("{job_dir}/output/data/usage.json"));
        let used = &record["usage"];
        assert_eq!(used["host_peak_bytes"], usage["host_peak_bytes"], "{node}: {used}");
        assert_eq!(used["wall_seconds"], usage["wall_seconds"], "{node}: {used}");
        let process = figure(used, "process_seconds").expect("the process's seconds");
        assert!(process > figure(&usage, "wall_seconds").expect("wall"), "the process outlives its main: {used}");
        assert!(figure(used, "host_peak_bytes").expect("host") > 50.0 * 1024.0 * 1024.0, "{used}");
        // The CPU: no GPU figure, no bill; absent, not zero.
        for absent in
            ["gpu_reserved_peak_bytes", "gpu_allocated_peak_bytes", "device_used_peak_bytes", "billable_seconds"]
        {
            assert!(used.get(absent).is_none(), "{node}: {absent} in {used}");
        }
    }
    assert_eq!(state["nodes"]["sft"]["usage"]["steps"], 20, "{}", state["nodes"]["sft"]);
    assert!(state["nodes"]["convo"].get("estimate").is_none() && state["nodes"]["convo"].get("usage").is_none());

    // `tunec status --format json`: estimate, actual and error per measure, the error computed from
    // the two as (estimate - actual) / actual.
    let status = tunec(&["status", &file, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    let sft = &doc["ledger"]["sft"];
    let host = &sft["host_memory_bytes"];
    let (estimated, actual) = (figure(host, "estimate").expect("estimate"), figure(host, "actual").expect("actual"));
    assert_eq!(estimated, figure(&state["nodes"]["sft"]["estimate"], "host_peak_bytes").expect("host"));
    assert_eq!(actual, figure(&state["nodes"]["sft"]["usage"], "host_peak_bytes").expect("host"));
    assert!((figure(host, "error").expect("error") - (estimated - actual) / actual).abs() < 1e-12, "{host}");
    let hours = &sft["hours"];
    let process = figure(&state["nodes"]["sft"]["usage"], "process_seconds").expect("seconds");
    assert!((figure(hours, "actual").expect("actual") - process / 3600.0).abs() < 1e-12, "{hours}");
    assert!(hours["error"].is_null() && hours["not_compared"] == "ran without a GPU", "{hours}");
    assert!(sft["gpu_memory_bytes"]["estimate"].is_number(), "{sft}");
    assert!(sft["gpu_memory_bytes"]["actual"].is_null() && sft["gpu_memory_bytes"]["error"].is_null(), "{sft}");
    assert!(sft["usd"]["actual"].is_null(), "a local run has no bill: {sft}");
    assert!(doc["ledger"].get("convo").is_none(), "{}", doc["ledger"]);

    // The same as a table for people.
    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("estimate against actual"), "{}", status.stdout);
    let row = |node: &str, measure: &str| -> Vec<String> {
        let line = status
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(node) && l.contains(measure))
            .unwrap_or_else(|| panic!("no {node} {measure} row: {}", status.stdout));
        line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
    };
    let gib = |b: f64| format!("{:.2} GiB", b / f64::from(1u32 << 30));
    let error = format!("{:+.0}%", (estimated - actual) / actual * 100.0);
    assert_eq!(row("sft", "host memory"), ["sft", "host memory", &gib(estimated), &gib(actual), &error]);
    assert_eq!(row("sft", "GPU memory")[3..], ["—", "—"], "{}", status.stdout);

    // Trained again (the adapter is lost): new figures are recorded for sft, and merge and
    // evaluate, whose inputs came out the same, are reused although usage.json differs.
    let adapter = dir.join(format!(
        "{}/model/adapter_model.safetensors",
        state["nodes"]["sft"]["outputs"][0]["path"]
            .as_str()
            .expect("path")
            .split('/')
            .take(5)
            .collect::<Vec<_>>()
            .join("/")
    ));
    std::fs::remove_file(&adapter).expect("remove the adapter");
    let again = tunec_with(&["run", &file, "--progress", "plain"], Some(&python));
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    for node in ["merged", "report"] {
        assert!(again.stdout.contains(&format!("reuse {node}: same inputs, outputs intact")), "{}", again.stdout);
    }
    let after = read(".tunec/tiny/state.json");
    assert_ne!(after["nodes"]["sft"]["usage"], state["nodes"]["sft"]["usage"], "the new run's figures");
    assert_eq!(after["nodes"]["merged"]["usage"], state["nodes"]["merged"]["usage"]);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// `tunec check --format json`'s estimate of each job node, by name.
fn read_check(file: &str) -> serde_json::Map<String, serde_json::Value> {
    let check = tunec(&["check", file, "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&check.stdout).expect("json");
    doc["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| !n["estimate"].is_null())
        .map(|n| (n["name"].as_str().expect("name").to_owned(), n["estimate"].clone()))
        .collect()
}

#[test]
fn a_failed_job_is_recorded_with_the_reason_the_script_wrote() {
    let python = test_python();
    let dir = std::env::temp_dir().join(format!("tunec-run-tiny-failed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The committed files without make_model.py's weights: the data step runs, train.py cannot load.
    copy_tiny_local(&dir);
    let file = dir.join("tiny.tune").display().to_string();
    let run = tunec_with(&["run", &file], Some(&python));
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("  sft failed after "), "{}", run.stdout);
    assert!(
        run.stderr.contains("tunec: sft failed: OSError: ") && run.stderr.contains("model.safetensors"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(train.py exit status 1; log: .tunec/tiny/logs/sft.log)"), "{}", run.stderr);
    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("failed     attempt 1"), "{}", status.stdout);
    assert!(status.stdout.contains("merged  not run"), "{}", status.stdout);
    assert!(!status.stdout.contains("locked"), "the lock is released: {}", status.stdout);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_built_job_graph_runs_like_the_pipeline_it_was_built_from() {
    let python = test_python();
    let dir = std::env::temp_dir().join(format!("tunec-run-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tiny_local(&dir);
    let made = Command::new(&python).arg("make_model.py").current_dir(&dir).output().expect("python runs");
    assert!(made.status.success(), "make_model.py: {}", String::from_utf8_lossy(&made.stderr));
    let file = dir.join("tiny.tune").display().to_string();
    let build = dir.join("build");
    let built = tunec(&["build", &file, "-o", &build.display().to_string()]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let graph = build.join("job_graph.json").display().to_string();

    // The data steps from the graph alone; the pipeline then reuses them (same keys, same journal).
    let data = tunec(&["run", &graph, "--until", "parts"]);
    assert_eq!(data.code, 0, "{}{}", data.stdout, data.stderr);
    assert_eq!(
        decisions(&data),
        [
            "run base: no previous run",
            "run facts: no previous run",
            "run convo: no previous run",
            "run parts: no previous run"
        ]
    );
    let again = tunec(&["run", &file, "--until", "parts"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(decisions(&again).iter().all(|l| l.starts_with("reuse ")), "{}", again.stdout);

    // The whole graph, from the build folder: train.py, merge.py and evaluate.py run.
    let run = tunec_with(&["run", &build.display().to_string()], Some(&python));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for node in ["sft", "merged", "report"] {
        assert!(run.stdout.contains(&format!("run {node}: no previous run")), "{}", run.stdout);
        assert!(run.stdout.contains(&format!("  {node} done in ")), "{}", run.stdout);
    }
    let report = dir.join(".tunec/tiny/state.json");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).expect("state")).expect("json");
    let outputs = state["nodes"]["report"]["outputs"].as_array().expect("outputs");
    assert!(outputs.iter().any(|o| o["path"].as_str().is_some_and(|p| p.ends_with("output/data/report.json"))));
    let from_file = tunec(&["run", &file]);
    assert_eq!(decisions(&from_file).len(), 7, "{}", from_file.stdout);
    assert!(decisions(&from_file).iter().all(|l| l.starts_with("reuse ")), "{}", from_file.stdout);
    // The summary of a graph's run reads the graph alone: the split's counts, the adapter, the report.
    let summary = tunec(&["run", &build.display().to_string(), "--format", "json"]);
    assert_eq!(summary.code, 0, "{}", summary.stderr);
    let doc: serde_json::Value = serde_json::from_str(&summary.stdout).expect("one JSON document");
    assert_eq!(doc["outcome"], "done", "{doc}");
    let nodes = doc["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 7, "{doc}");
    assert!(nodes.iter().all(|n| n["outcome"] == "reused"), "{doc}");
    let parts = nodes.iter().find(|n| n["name"] == "parts").expect("parts");
    assert!(parts["data"]["rows"].as_u64().is_some_and(|r| r > 0), "{doc}");
    let what: Vec<&str> =
        doc["produced"].as_array().expect("produced").iter().filter_map(|p| p["what"].as_str()).collect();
    assert_eq!(what, ["adapter", "merged model", "report"], "{doc}");

    // An edited train.py in the build folder is refused by name, before anything runs or is reused;
    // undone, the folder runs again.
    let train = build.join("code/train.py");
    let original = std::fs::read_to_string(&train).expect("the build folder holds train.py");
    std::fs::write(&train, format!("{original}\nraise SystemExit('patched')\n")).expect("write");
    let edited = tunec(&["run", &build.display().to_string()]);
    assert_eq!(edited.code, 2, "{}{}", edited.stdout, edited.stderr);
    assert!(edited.stderr.contains("train.py (changed)"), "{}", edited.stderr);
    assert!(edited.stderr.contains("undo the edit"), "{}", edited.stderr);
    assert!(decisions(&edited).is_empty(), "nothing ran or was reused: {}", edited.stdout);
    std::fs::write(&train, original).expect("write");
    let undone = tunec(&["run", &build.display().to_string()]);
    assert_eq!(undone.code, 0, "{}{}", undone.stdout, undone.stderr);
    assert_eq!(decisions(&undone).len(), 7, "{}", undone.stdout);
    assert!(decisions(&undone).iter().all(|l| l.starts_with("reuse ")), "{}", undone.stdout);

    // What cannot run: `--set` on a lowered graph, another script bundle, another graph version,
    // a build folder moved away from its pipeline.
    let set = tunec(&["run", &graph, "--set", "epochs=2"]);
    assert_eq!(set.code, 2);
    assert!(set.stderr.contains("build it again with the value"), "{}", set.stderr);
    let text = std::fs::read_to_string(&graph).expect("graph");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    doc["bundle_digest"] = "f".repeat(64).into();
    std::fs::write(&graph, doc.to_string()).expect("write");
    let other = tunec(&["run", &graph]);
    assert_eq!(other.code, 2);
    assert!(other.stderr.contains("was built for the script bundle ffffffffffff"), "{}", other.stderr);
    doc["version"] = 1.into();
    std::fs::write(&graph, doc.to_string()).expect("write");
    let old = tunec(&["run", &graph]);
    assert_eq!(old.code, 2);
    assert!(old.stderr.contains("a job graph of version 1, and this tunec runs version 2"), "{}", old.stderr);
    std::fs::write(&graph, &text).expect("write");
    let moved = std::env::temp_dir().join(format!("tunec-run-graph-moved-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::create_dir_all(moved.join("deep/er")).expect("mkdir");
    for name in ["job_graph.json", "manifest.json"] {
        std::fs::copy(build.join(name), moved.join("deep/er").join(name)).expect("copy");
    }
    let lost = tunec(&["run", &moved.join("deep/er").display().to_string()]);
    assert_eq!(lost.code, 2, "{}", lost.stderr);
    assert!(lost.stderr.contains("the build folder was moved without it"), "{}", lost.stderr);
    std::fs::remove_dir_all(&moved).expect("clean up");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
