//! `tunec run` interrupted, the hard way and the polite way, on examples/tiny-local (data step,
//! train.py, merge.py, evaluate.py on the CPU; `TUNEC_TEST_PYTHON`, `TUNEC_FIXTURES` not needed).
//!
//! - **SIGKILL at random moments.** A run is killed again and again at pseudo-random times (a fixed
//!   seed, so a failure can be replayed), then allowed to finish. After every kill the journal must
//!   parse and every node it records as succeeded must still have its outputs with their digests;
//!   the next run must reuse every node that was succeeded before it started (finished work is
//!   never redone); and the final outputs must be identical, file for file and digest for digest, to
//!   those of a run that was never interrupted. `metrics.json` alone is compared field by field
//!   without the figures of the last process (time, throughput, memory), which no two runs share,
//!   and `usage.json` (what a job used, for the ledger) by its schema and script only.
//!   Each kill is recorded with the nodes it interrupted, and the test fails if none landed while
//!   sft trained.
//! - **SIGKILL between checkpoints.** The orphaned train.py saves the step it reached, and the
//!   next run, started at once, waits for it and resumes from that step.
//! - **Ctrl-C.** SIGINT during training stops the run with exit status 130, the node is recorded as
//!   interrupted, and the next run resumes it and finishes with the outputs of a run never
//!   interrupted.
//! - **A managed Python environment**, provisioned on first use and reused after, with a
//!   requirements file that installs nothing new (so the test needs no network and no PyTorch
//!   download): the job then runs with that interpreter and fails without torch, as it must.

#[path = "support/process.rs"]
mod process;
mod support;
#[path = "support/tiny.rs"]
mod tiny;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use process::{kill_after, stdout_lines, Lcg};
use support::root;
use tiny::{copy_tiny_local, test_python};

/// `tunec run <file>` as a child process with its stdout piped.
fn spawn_run(file: &Path, python: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tunec"))
        .args(["run", &file.display().to_string(), "--progress", "plain"])
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("TUNEC_PYTHON", python)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tunec starts")
}

/// A fresh copy of examples/tiny-local with the weights made once and shared.
fn tiny_dir(name: &str, python: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tunec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tiny_local(&dir);
    std::fs::copy(weights(python).join("model/model.safetensors"), dir.join("model/model.safetensors")).expect("copy");
    dir
}

/// The folder where make_model.py made the tiny model's weights: once per test process, by the
/// first test that asks (the tests run in parallel; the others wait for it).
fn weights(python: &str) -> &'static Path {
    static WEIGHTS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    WEIGHTS.get_or_init(|| {
        let weights = std::env::temp_dir().join(format!("tunec-tiny-weights-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&weights);
        copy_tiny_local(&weights);
        let made = Command::new(python).arg("make_model.py").current_dir(&weights).output().expect("python runs");
        assert!(made.status.success(), "make_model.py: {}", String::from_utf8_lossy(&made.stderr));
        weights
    })
}

/// The journal, or `None` before a run has written it; a journal that does not parse fails the test.
fn journal(dir: &Path) -> Option<serde_json::Value> {
    let text = match std::fs::read_to_string(dir.join(".tunec/tiny/state.json")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("state.json: {e}"),
    };
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("state.json is torn: {e}\n{text}")))
}

/// The journal of a folder where a run has been.
fn state(dir: &Path) -> serde_json::Value {
    journal(dir).unwrap_or_else(|| panic!("{} has no journal", dir.display()))
}

/// The nodes a run started (recorded as running since `before`) and did not finish: where a kill
/// landed.
fn started_and_unfinished(before: Option<&serde_json::Value>, after: &serde_json::Value) -> Vec<String> {
    let Some(nodes) = after["nodes"].as_object() else { return Vec::new() };
    nodes
        .iter()
        .filter(|(name, record)| {
            let earlier = before.map(|b| &b["nodes"][name.as_str()]);
            record["status"] == "running" && earlier.is_none_or(|e| e["started_at"] != record["started_at"])
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The nodes the journal records as succeeded.
fn succeeded(state: &serde_json::Value) -> Vec<String> {
    state["nodes"]
        .as_object()
        .map(|nodes| nodes.iter().filter(|(_, r)| r["status"] == "succeeded").map(|(n, _)| n.clone()).collect())
        .unwrap_or_default()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The metrics.json that sft recorded.
fn sft_metrics(dir: &Path, state: &serde_json::Value) -> serde_json::Value {
    let path = state["nodes"]["sft"]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find_map(|o| o["path"].as_str().filter(|p| p.ends_with("/metrics.json")))
        .expect("metrics.json");
    serde_json::from_str(&std::fs::read_to_string(dir.join(path)).expect("read")).expect("json")
}

/// Every recorded output of every node: path → digest, checked against the file on disk.
fn intact_outputs(dir: &Path, state: &serde_json::Value) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for node in succeeded(state) {
        for output in state["nodes"][&node]["outputs"].as_array().expect("outputs") {
            let path = output["path"].as_str().expect("path");
            let recorded = output["sha256"].as_str().expect("sha256");
            let digest = sha256(&dir.join(path));
            match recorded.strip_prefix("stat:") {
                // Model weights are recorded by size and modification time; compared by content.
                Some(stat) => {
                    let size = std::fs::metadata(dir.join(path)).map(|m| m.len()).unwrap_or(u64::MAX);
                    assert!(stat.starts_with(&format!("{size}:")), "{node}'s output {path} changed size");
                }
                None => assert_eq!(digest, recorded, "{node}'s output {path} is lost or half-written"),
            }
            all.insert(path.to_owned(), digest);
        }
    }
    all
}

/// What metrics.json says about the training itself, without the figures of the last process
/// only (its wall-clock time, throughput, tokens, peak memory and the step it resumed from), which
/// differ between any two runs, and without the `unlike` fields (also left out of each entry of
/// its history).
fn stable_metrics(path: &Path, unlike: &[&str]) -> serde_json::Value {
    let mut metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("metrics")).expect("json");
    let object = metrics.as_object_mut().expect("an object");
    object.retain(|key, _| {
        ["schema", "method", "global_step", "final_train_loss", "final_eval_loss", "history", "trainable_parameters"]
            .contains(&key.as_str())
    });
    assert_eq!(object.len(), 7, "metrics.json has the fields compared: {metrics}");
    object.retain(|key, _| !unlike.contains(&key.as_str()));
    for entry in object.get_mut("history").and_then(|h| h.as_array_mut()).into_iter().flatten() {
        if let Some(entry) = entry.as_object_mut() {
            entry.retain(|key, _| !unlike.contains(&key.as_str()));
        }
    }
    metrics
}

/// The folder of a run of examples/tiny-local that was never interrupted: once per test process,
/// by the first test that asks.
fn reference(python: &str) -> &'static Path {
    static REFERENCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    REFERENCE.get_or_init(|| {
        let reference = tiny_dir("reference", python);
        let run = spawn_run(&reference.join("tiny.tune"), python).wait_with_output().expect("run");
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        assert_eq!(succeeded(&state(&reference)).len(), 7);
        reference
    })
}

/// What a `usage.json` says beyond the figures of the process that wrote it (times, memory, tokens,
/// which no two runs share, and which a process resumed at the last step partly lacks, having timed
/// no step): its schema and its script.
fn usage_shape(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let usage: serde_json::Value = serde_json::from_str(&text).expect("usage.json is JSON");
    serde_json::json!({ "schema": usage["schema"], "script": usage["script"] })
}

/// Every node of the run in `dir` succeeded with the outputs of the uninterrupted run, file for
/// file and digest for digest (`metrics.json` without its per-process figures, nor the `unlike`
/// ones).
fn same_outputs_as_uninterrupted(dir: &Path, python: &str, what: &str, unlike: &[&str]) {
    let reference = reference(python);
    let expected = intact_outputs(reference, &state(reference));
    let final_state = state(dir);
    assert_eq!(succeeded(&final_state).len(), 7, "{what}: {final_state}");
    let got = intact_outputs(dir, &final_state);
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{what}: the same files");
    for (path, digest) in &expected {
        if path.ends_with("/usage.json") {
            assert_eq!(usage_shape(&dir.join(path)), usage_shape(&reference.join(path)), "{what}: {path}");
        } else if path.ends_with("/metrics.json") {
            assert_eq!(
                stable_metrics(&dir.join(path), unlike),
                stable_metrics(&reference.join(path), unlike),
                "{what}: {path}"
            );
        } else {
            assert_eq!(&got[path], digest, "{what}: {path} differs from the uninterrupted run's");
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_redoes_nothing() {
    let python = test_python();
    let dir = tiny_dir("kill", &python);
    let file = dir.join("tiny.tune");
    let seed = 0x0074_756e_6563_u64;
    let mut rng = Lcg(seed);
    let mut kills = 0;
    // Where each kill landed: the nodes running then, or "no node" (before the first started,
    // between two, after the last).
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    for attempt in 0..40 {
        let before = journal(&dir);
        let done_before = before.as_ref().map(succeeded).unwrap_or_default();
        if done_before.len() == 7 {
            break;
        }
        // Between 0.3 s and 9 s: the data step, model loading, training steps, checkpoint saves,
        // the merge and the evaluation are all hit over the loop.
        let mut delay = Duration::from_secs_f64(0.3 + 8.7 * rng.next_f64());
        let mut child = spawn_run(&file, &python);
        let (rx, reader) = stdout_lines(&mut child);
        // Until a kill has landed in training, the kill waits for sft to start and comes 0.5 to 2 s
        // later (Python has not finished importing torch by then on any machine), so that how fast
        // this machine runs the steps before it cannot decide whether training is hit at all.
        let mut seen = Vec::new();
        if !landed.contains_key("sft") && !done_before.iter().any(|n| n == "sft") {
            let deadline = Instant::now() + Duration::from_secs(600);
            while Instant::now() < deadline {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(line) => {
                        let started = line.starts_with("run sft:");
                        seen.push(line);
                        if started {
                            break;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            delay = Duration::from_secs_f64(0.5 + 1.5 * rng.next_f64());
        }
        let ended = kill_after(&mut child, delay);
        if ended.is_none() {
            kills += 1;
        }
        reader.join().expect("reader");
        let lines: Vec<String> = seen.into_iter().chain(rx.try_iter()).collect();
        if let Some(status) = ended {
            assert!(status.success(), "attempt {attempt} (seed {seed:#x}) failed: {lines:?}");
        }
        // Finished work is never redone: what had succeeded before this run is reused by it.
        for node in &done_before {
            assert!(
                !lines.iter().any(|l| l.starts_with(&format!("run {node}:"))),
                "attempt {attempt} (seed {seed:#x}, killed after {delay:?}) ran `{node}` again: {lines:?}"
            );
        }
        // The journal parses and every succeeded node's outputs are whole.
        let after = journal(&dir);
        if let Some(after) = &after {
            intact_outputs(&dir, after);
        }
        if ended.is_none() {
            let nodes = after.as_ref().map(|a| started_and_unfinished(before.as_ref(), a)).unwrap_or_default();
            *landed.entry(if nodes.is_empty() { "no node".to_owned() } else { nodes.join("+") }).or_default() += 1;
        }
    }
    assert!(kills >= 3, "the loop killed the run {kills} times; the delays are too long for this machine");
    // The kills this test is for: during training, where a process outside tunec holds work.
    assert!(landed.contains_key("sft"), "no kill landed while sft ran (seed {seed:#x}): {landed:?}");

    // Finish, then compare with the uninterrupted run.
    let last = spawn_run(&file, &python).wait_with_output().expect("run");
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));
    // Not the logged training loss: a kill while sft ran makes the supervisor save at the step
    // reached, between two logs, and the resumed Trainer's first logged loss averages only the steps
    // after it (as in the Ctrl-C test below). The weights, merged model and report are the same.
    same_outputs_as_uninterrupted(
        &dir,
        &python,
        &format!("killed {kills} times (seed {seed:#x}): {landed:?}"),
        &["train_loss", "final_train_loss"],
    );
    // No temporary file of a killed write is left outside the jobs' folders.
    for entry in support::files_under(&dir.join(".tunec/tiny")) {
        let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = name.starts_with('.') && (name.contains(".tmp") || name.ends_with(".part"));
        assert!(
            !temporary || entry.starts_with(dir.join(".tunec/tiny/jobs")),
            "{} is left by a killed run",
            entry.display()
        );
    }
    // No job process outlived its run: every job's lock is free.
    for entry in support::files_under(&dir.join(".tunec/tiny/jobs")) {
        if entry.file_name().is_some_and(|n| n == ".job.lock") {
            let file = std::fs::File::open(&entry).expect("open");
            assert!(file.try_lock().is_ok(), "{} is still held by a job process", entry.display());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_stops_training_at_a_checkpoint_and_the_next_run_resumes_it() {
    let python = test_python();
    let dir = tiny_dir("ctrl-c", &python);
    let file = dir.join("tiny.tune");
    let mut child = spawn_run(&file, &python);
    let (rx, reader) = stdout_lines(&mut child);
    // Wait for the first training step's log line, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                let training = line.starts_with("  sft | ") && line.contains("'loss'");
                seen.push(line);
                if training {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    assert!(seen.iter().any(|l| l.contains("'loss'")), "training never logged a step: {seen:?}");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    seen.extend(rx.try_iter());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert_eq!(status.code(), Some(130), "{seen:?}\n{stderr}");
    assert!(stderr.contains("interrupted; what finished is recorded"), "{stderr}");
    assert!(seen.iter().any(|l| l == "  sft interrupted; `tunec run` resumes it"), "{seen:?}");
    let after = state(&dir);
    assert_eq!(after["nodes"]["sft"]["status"], "interrupted", "{after}");
    assert!(after["nodes"].get("merged").is_none(), "nothing after sft started");

    let again = spawn_run(&file, &python).wait_with_output().expect("run");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}{}", String::from_utf8_lossy(&again.stderr));
    assert!(text.contains("run sft: the previous run was interrupted"), "{text}");
    let done = state(&dir);
    assert_eq!(done["nodes"]["sft"]["attempt"], 2);
    assert_eq!(succeeded(&done).len(), 7);
    // train.py saved a checkpoint on SIGTERM and the second attempt started from it.
    let metrics = sft_metrics(&dir, &done);
    assert!(metrics["resumed_from_step"].as_u64().is_some_and(|s| s > 0), "{metrics}");
    assert_eq!(metrics["global_step"], 20);
    // And what it made is what a run never interrupted makes: the same weights, merged model and
    // report. Not the same logged training loss: the Trainer logs the mean loss since its last log,
    // and a process resumed between two logs (here at the step Ctrl-C saved) starts that mean
    // afresh, so the first interval after the resume averages fewer steps.
    same_outputs_as_uninterrupted(
        &dir,
        &python,
        "interrupted by Ctrl-C and resumed",
        &["train_loss", "final_train_loss"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The training step a plain-mode progress line of sft shows (`  sft |  11%|█ | 32/80 [00:17<...`).
fn step_shown(line: &str, max_steps: u32) -> Option<u32> {
    let rest = line.strip_prefix("  sft | ")?;
    let end = rest.find(&format!("/{max_steps} ["))?;
    let digits = rest[..end].rsplit(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

#[test]
fn sigkill_between_checkpoints_saves_the_step_reached_and_the_next_run_resumes_from_it() {
    let python = test_python();
    let dir = tiny_dir("kill-between", &python);
    let file = dir.join("tiny.tune");
    // Checkpoints every 60 steps of 80: a kill before step 60 finds none on disk.
    let text = std::fs::read_to_string(&file).expect("read");
    let text = text
        .replace("max_steps        = 20", "max_steps        = 80")
        .replace("save_steps       = 10", "save_steps       = 60");
    assert!(text.contains("max_steps        = 80") && text.contains("save_steps       = 60"), "{text}");
    std::fs::write(&file, text).expect("write");

    let mut child = spawn_run(&file, &python);
    let (rx, reader) = stdout_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = Vec::new();
    let mut reached = None;
    while Instant::now() < deadline && reached.is_none() {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                reached = step_shown(&line, 80).filter(|&step| step >= 12);
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let Some(reached) = reached else { panic!("training never reached step 12: {seen:?}") };
    assert!(reached < 60, "killed at step {reached}, past the periodic checkpoint");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    reader.join().expect("reader");

    // At once, while the orphaned train.py may still be saving: the run waits for it on the job's lock.
    let again = spawn_run(&file, &python).wait_with_output().expect("run");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{text}{}", String::from_utf8_lossy(&again.stderr));
    assert!(text.contains("run sft: the previous run did not finish"), "{text}");
    let done = state(&dir);
    let metrics = sft_metrics(&dir, &done);
    let resumed = metrics["resumed_from_step"].as_u64().unwrap_or_else(|| panic!("no resume: {metrics}"));
    assert!(
        resumed >= u64::from(reached) && resumed < 60,
        "killed at step {reached}; resumed from {resumed}, not from the step reached"
    );
    assert_eq!(metrics["global_step"], 80);
    // The orphan's last words are in the log, which the resumed attempt appended to.
    let log = std::fs::read_to_string(dir.join(".tunec/tiny/logs/sft.log")).expect("log");
    assert!(log.contains("is gone: stopping as on SIGTERM"), "{log}");
    assert!(log.contains(&format!("stopped by SIGTERM after step {resumed}")), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_managed_environment_is_provisioned_once_and_runs_the_jobs() {
    let home = std::env::temp_dir().join(format!("tunec-managed-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).expect("mkdir");
    // pip is in every new virtualenv: "already satisfied", no network.
    std::fs::write(home.join("requirements.txt"), "pip\n").expect("write");
    let dir = std::env::temp_dir().join(format!("tunec-managed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tiny_local(&dir);
    let file = dir.join("tiny.tune").display().to_string();
    let run = || {
        support::tunec_with(&["run", &file, "--until", "sft"], |command| {
            command
                .env_remove("TUNEC_PYTHON")
                .env("TUNEC_HOME", &home)
                .env("TUNEC_MANAGED_REQUIREMENTS", home.join("requirements.txt"));
        })
    };
    let first = run();
    assert_eq!(first.code, 1, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("python: creating tunec's environment for the entry scripts in "),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("python: environment ready"), "{}", first.stdout);
    let envs: Vec<PathBuf> = std::fs::read_dir(home.join("python"))
        .expect("python/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert!(envs[0].join(".tunec-ready").is_file());
    let log = std::fs::read_to_string(dir.join(".tunec/tiny/logs/sft.log")).expect("log");
    assert!(log.starts_with(&format!("== tunec: {}", envs[0].join("bin/python").display())), "{log}");
    assert!(first.stderr.contains("No module named 'torch'"), "the environment has no torch: {}", first.stderr);

    let second = run();
    assert_eq!(second.code, 1);
    assert!(!second.stdout.contains("creating tunec's environment"), "reused: {}", second.stdout);
    assert!(second.stdout.contains("run sft: the previous run failed"), "{}", second.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&home);
}
