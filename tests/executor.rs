//! The executor through its target interface, with a target written here: no AWS, no Python, no
//! data engine. The graph holds job nodes only (train, merge, evaluate), so every node goes through
//! `Target::prepare` and the job lifecycle (`start`, `wait`, `stop`, `outputs`) that `target::drive`
//! runs, and the test target scripts what each attempt does and logs every call it gets.
//!
//! Covered: dependency order and the target's limit on jobs at a time; a transient failure retried
//! as new attempts, each named and recorded in the journal before it starts; a fatal failure that
//! starts nothing new but lets running jobs finish; a job that cannot be prepared, with nothing
//! recorded; a stop that detaches a job and a rerun that re-attaches to it under the same name,
//! told that the journal knows the job exists, without starting it again; a stop that
//! interrupts; and a rerun that reuses everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tunec_compiler::lower::{Execution, JobGraph, JobNode, SCHEMA_VERSION};
use tunec_compiler::target::Target as TargetKind;
use tunec_runtime::journal::{Journal, Output};
use tunec_runtime::ledger::Used;
use tunec_runtime::run::progress::{Mode, Reporter};
use tunec_runtime::run::target::{AfterStop, Attempt, BoxFuture, Ended, Failure, Job, JobInput, PrepareError, Target};
use tunec_runtime::run::{self, NodeError, Outcome, RunError, RunOptions, Stop, StopLevel};

/// What one attempt of a job does.
#[derive(Clone, Debug)]
enum Plan {
    /// Succeeds after this long.
    Succeed(Duration),
    /// Fails after this long; the failure is worth this many attempts in all.
    Fail(Duration, u32),
    /// Runs until it is stopped; the first stop detaches it.
    Remote,
    /// Runs until it is stopped; a stop interrupts it.
    UntilStopped,
    /// Stopped as asked: its wait says so.
    Stopped,
}

/// The test target: per node, what each attempt does (the last repeats), or a setup error.
#[derive(Default)]
struct Scripted {
    max_jobs: usize,
    plans: BTreeMap<String, Vec<Plan>>,
    setup_errors: BTreeMap<String, String>,
    state: Arc<Shared>,
}

/// What the test target saw, shared by its jobs.
#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<String>>,
    running: AtomicUsize,
    most: AtomicUsize,
    /// Names of the attempts that exist "remotely" (a detached job keeps existing).
    existing: Mutex<Vec<String>>,
    /// The journal's folder, to check what is recorded when an attempt starts.
    journal: PathBuf,
}

impl Shared {
    fn call(&self, text: String) {
        self.calls.lock().expect("calls").push(text);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("calls").clone()
    }

    /// The node's record in state.json as it is on disk now.
    fn recorded(&self, node: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.journal.join("state.json")).expect("state.json");
        let state: serde_json::Value = serde_json::from_str(&text).expect("json");
        state["nodes"][node].clone()
    }
}

impl Target for Scripted {
    fn describe(&self) -> &'static str {
        "the test target"
    }

    fn max_jobs(&self) -> usize {
        self.max_jobs
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn prepare<'a>(&'a self, input: JobInput<'a>, _stop: Stop) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>> {
        Box::pin(async move {
            let node = input.node.name.clone();
            self.state.call(format!("prepare {node}"));
            if let Some(message) = self.setup_errors.get(&node) {
                return Err(PrepareError::Setup(message.clone()));
            }
            let plans = self.plans.get(&node).cloned().unwrap_or_else(|| vec![Plan::Succeed(Duration::ZERO)]);
            let job: Box<dyn Job> = Box::new(ScriptedJob {
                node,
                plans,
                state: self.state.clone(),
                current: None,
                name: None,
                counted: false,
            });
            Ok(job)
        })
    }
}

struct ScriptedJob {
    node: String,
    plans: Vec<Plan>,
    state: Arc<Shared>,
    current: Option<Plan>,
    name: Option<String>,
    /// Whether it counts as running in `Shared::running`.
    counted: bool,
}

impl ScriptedJob {
    fn no_longer_running(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.state.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Job for ScriptedJob {
    fn attempt_name(&self, number: u32) -> Option<String> {
        Some(format!("{}-a{number}", self.node))
    }

    fn start<'a>(&'a mut self, attempt: &'a Attempt, _stop: &'a mut Stop) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(async move {
            let name = attempt.name.clone().expect("every attempt of this target is named");
            // The attempt and its name are in the journal before the job starts.
            let record = self.state.recorded(&self.node);
            assert_eq!(record["attempt"], attempt.number, "{record}");
            assert_eq!(record["job_name"], name.as_str(), "{record}");
            assert_eq!(record["status"], "running", "{record}");
            // What the journal knows about the job's existence is handed to the target.
            assert_eq!(record["job_created"].as_bool().unwrap_or(false), attempt.created, "{record}");
            let exists = self.state.existing.lock().expect("existing").contains(&name);
            if exists {
                self.state.call(format!("attach {name}"));
            } else {
                self.state.call(format!("start {name}"));
                self.state.existing.lock().expect("existing").push(name.clone());
            }
            let plan = self.plans[(attempt.number as usize - 1).min(self.plans.len() - 1)].clone();
            self.current = Some(plan);
            self.name = Some(name);
            self.counted = true;
            let now = self.state.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.state.most.fetch_max(now, Ordering::SeqCst);
            Ok(())
        })
    }

    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, NodeError>> {
        Box::pin(async move {
            let plan = self.current.clone().expect("started");
            let ended = match plan {
                Plan::Succeed(after) => {
                    tokio::time::sleep(after).await;
                    Ended::Succeeded
                }
                Plan::Fail(after, attempts) => {
                    tokio::time::sleep(after).await;
                    let name = self.name.clone().unwrap_or_default();
                    Ended::Failed(Failure {
                        message: format!("{name} failed for good"),
                        summary: format!("{name} failed"),
                        attempts,
                        backoff: Duration::from_millis(10),
                    })
                }
                Plan::Stopped => Ended::Stopped,
                Plan::Remote | Plan::UntilStopped => std::future::pending().await,
            };
            self.no_longer_running();
            self.state.call(format!("ended {}", self.name.clone().unwrap_or_default()));
            Ok(ended)
        })
    }

    fn stop<'a>(&'a mut self, level: StopLevel, _stop: &'a mut Stop) -> BoxFuture<'a, AfterStop> {
        Box::pin(async move {
            let name = self.name.clone().unwrap_or_default();
            self.state.call(format!("stop {name} {level:?}"));
            self.no_longer_running();
            match self.current {
                Some(Plan::Remote) => AfterStop::Detached,
                _ => {
                    // The job ends as asked: its next wait reports it stopped.
                    self.current = Some(Plan::Stopped);
                    AfterStop::Wait
                }
            }
        })
    }

    fn outputs(&mut self) -> BoxFuture<'_, Result<Vec<Output>, NodeError>> {
        Box::pin(async move {
            let name = self.name.clone().unwrap_or_default();
            self.state.call(format!("outputs {name}"));
            Ok(vec![Output { path: format!("s3://test/{}/{name}/model/", self.node), sha256: String::new(), bytes: 0 }])
        })
    }

    /// The attempt's number as its wall time, so that a test sees which attempt's usage is kept.
    fn usage(&mut self) -> BoxFuture<'_, Option<Used>> {
        let attempt = self.name.as_deref().and_then(|n| n.rsplit_once("-a")).and_then(|(_, a)| a.parse::<f64>().ok());
        Box::pin(async move { Some(Used { wall_seconds: attempt, ..Used::default() }) })
    }
}

/// A graph of job nodes: `(name, kind, deps)` in dependency order.
fn graph(nodes: &[(&str, &str, &[&str])]) -> JobGraph {
    JobGraph {
        version: SCHEMA_VERSION,
        pipeline: "p".into(),
        target: TargetKind::Local,
        target_config: json!({}),
        bundle_digest: "0".repeat(64),
        env: Vec::new(),
        nodes: nodes
            .iter()
            .map(|(name, kind, deps)| JobNode {
                name: (*name).into(),
                kind: (*kind).into(),
                function: (*kind).into(),
                key: format!("key-of-{name}"),
                deps: deps.iter().map(|d| (*d).to_owned()).collect(),
                config: json!({}),
                execution: Execution::LocalScript {
                    script: "train.py".into(),
                    args_yaml: String::new(),
                    channels: Vec::new(),
                },
            })
            .collect(),
    }
}

/// sft → (report_a, report_b) → merged: two evaluations of one training, and a merge after both.
fn diamond() -> JobGraph {
    graph(&[
        ("sft", "train", &[]),
        ("report_a", "evaluate", &["sft"]),
        ("report_b", "evaluate", &["sft"]),
        ("merged", "merge", &["report_a", "report_b"]),
    ])
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tunec-executor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

/// Runs `graph` on `target` in `base`; the output lines come back too.
fn execute(
    graph: &JobGraph,
    base: &Path,
    target: Arc<Scripted>,
    stop: Option<Stop>,
) -> (Result<Outcome, RunError>, String) {
    let journal = Journal::open(base, &graph.pipeline).expect("journal");
    let out = Arc::new(Mutex::new(Vec::new()));
    let reporter = Arc::new(Reporter::new(Mode::Plain, Box::new(Capture(out.clone()))));
    let options = RunOptions { stop, ..RunOptions::default() };
    let result = run::run(graph, base, target, &options, journal, reporter);
    let text = String::from_utf8(out.lock().expect("out").clone()).expect("utf-8");
    (result, text)
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("out").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn scripted(base: &Path, max_jobs: usize, plans: &[(&str, Vec<Plan>)]) -> Arc<Scripted> {
    Arc::new(Scripted {
        max_jobs,
        plans: plans.iter().map(|(n, p)| ((*n).to_owned(), p.clone())).collect(),
        state: Arc::new(Shared { journal: base.join(".tunec/p"), ..Shared::default() }),
        ..Scripted::default()
    })
}

fn state(base: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(base.join(".tunec/p/state.json")).expect("state")).expect("json")
}

fn position(calls: &[String], call: &str) -> usize {
    calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("no `{call}` in {calls:?}"))
}

#[test]
fn jobs_run_in_dependency_order_within_the_targets_limit() {
    let slow = vec![Plan::Succeed(Duration::from_millis(150))];
    for max_jobs in [1, 2] {
        let base = folder(&format!("order{max_jobs}"));
        let target = scripted(&base, max_jobs, &[("report_a", slow.clone()), ("report_b", slow.clone())]);
        let (result, lines) = execute(&diamond(), &base, target.clone(), None);
        assert_eq!(result.expect("the run succeeds"), Outcome::Done, "{lines}");
        let calls = target.state.calls();
        assert!(position(&calls, "outputs sft-a1") < position(&calls, "start report_a-a1"), "{calls:?}");
        assert!(position(&calls, "outputs sft-a1") < position(&calls, "start report_b-a1"), "{calls:?}");
        for before in ["outputs report_a-a1", "outputs report_b-a1"] {
            assert!(position(&calls, before) < position(&calls, "start merged-a1"), "{calls:?}");
        }
        assert_eq!(target.state.most.load(Ordering::SeqCst), max_jobs, "{calls:?}");
        let state = state(&base);
        for node in ["sft", "report_a", "report_b", "merged"] {
            assert_eq!(state["nodes"][node]["status"], "succeeded", "{state}");
            assert_eq!(state["nodes"][node]["outputs"][0]["path"], format!("s3://test/{node}/{node}-a1/model/"));
        }
        // A rerun reuses everything and prepares nothing.
        let again = scripted(&base, max_jobs, &[]);
        let (result, lines) = execute(&diamond(), &base, again.clone(), None);
        assert_eq!(result.expect("the rerun succeeds"), Outcome::Done);
        assert!(again.state.calls().is_empty(), "{:?}", again.state.calls());
        assert_eq!(lines.lines().filter(|l| l.starts_with("reuse ")).count(), 4, "{lines}");
        std::fs::remove_dir_all(&base).expect("clean up");
    }
}

#[test]
fn a_transient_failure_is_retried_as_new_attempts_recorded_before_they_start() {
    let base = folder("retry");
    let flaky = vec![Plan::Fail(Duration::ZERO, 3), Plan::Fail(Duration::ZERO, 3), Plan::Succeed(Duration::ZERO)];
    let target = scripted(&base, 1, &[("sft", flaky)]);
    let graph = graph(&[("sft", "train", &[]), ("merged", "merge", &["sft"])]);
    let (result, lines) = execute(&graph, &base, target.clone(), None);
    assert_eq!(result.expect("the third attempt succeeds"), Outcome::Done, "{lines}");
    let calls = target.state.calls();
    for name in ["sft-a1", "sft-a2", "sft-a3"] {
        assert!(calls.contains(&format!("start {name}")), "{calls:?}");
    }
    assert!(lines.contains("  sft: sft-a1 failed; a new attempt in 0 s"), "{lines}");
    let record = &state(&base)["nodes"]["sft"];
    assert_eq!((record["attempt"].as_u64(), record["job_name"].as_str()), (Some(3), Some("sft-a3")), "{record}");
    assert_eq!(record["status"], "succeeded");
    // What the job used is that of the attempt that succeeded, and survives the record's settling.
    assert_eq!(record["usage"]["wall_seconds"], 3.0, "{record}");
    assert!(state(&base)["nodes"]["merged"]["usage"]["wall_seconds"].is_number());

    // A failure worth one attempt is not retried, and stops the run.
    let base = folder("fatal");
    let target = scripted(&base, 1, &[("sft", vec![Plan::Fail(Duration::ZERO, 1)])]);
    let (result, _) = execute(&graph, &base, target.clone(), None);
    match result {
        Err(RunError::NodeFailed { node, message }) => {
            assert_eq!((node.as_str(), message.as_str()), ("sft", "sft-a1 failed for good"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!target.state.calls().iter().any(|c| c.contains("merged")), "{:?}", target.state.calls());
    assert_eq!(state(&base)["nodes"]["sft"]["status"], "failed");
    assert!(state(&base)["nodes"]["sft"].get("usage").is_none(), "a failure used nothing worth recording");
    std::fs::remove_dir_all(&base).expect("clean up");
}

#[test]
fn a_failure_lets_running_jobs_finish_and_starts_nothing_new() {
    let base = folder("siblings");
    let target = scripted(
        &base,
        2,
        &[
            ("report_a", vec![Plan::Fail(Duration::ZERO, 1)]),
            ("report_b", vec![Plan::Succeed(Duration::from_millis(300))]),
        ],
    );
    let (result, _) = execute(&diamond(), &base, target.clone(), None);
    assert!(matches!(result, Err(RunError::NodeFailed { ref node, .. }) if node == "report_a"), "{result:?}");
    let state = state(&base);
    assert_eq!(state["nodes"]["report_b"]["status"], "succeeded", "the running sibling finished: {state}");
    assert!(state["nodes"]["merged"].is_null(), "{state}");
    assert!(!target.state.calls().iter().any(|c| c.contains("merged")));
    std::fs::remove_dir_all(&base).expect("clean up");
}

#[test]
fn a_job_that_cannot_be_prepared_stops_the_run_with_nothing_recorded() {
    let base = folder("setup");
    let mut scripted = Scripted { max_jobs: 1, ..Scripted::default() };
    scripted.state = Arc::new(Shared { journal: base.join(".tunec/p"), ..Shared::default() });
    scripted.setup_errors.insert("merged".into(), "the base model is not here".into());
    let target = Arc::new(scripted);
    let graph = graph(&[("sft", "train", &[]), ("merged", "merge", &["sft"])]);
    let (result, _) = execute(&graph, &base, target.clone(), None);
    match result {
        Err(e @ RunError::Setup { .. }) => assert_eq!(e.to_string(), "cannot run merged: the base model is not here"),
        other => panic!("{other:?}"),
    }
    let state = state(&base);
    assert_eq!(state["nodes"]["sft"]["status"], "succeeded");
    assert!(state["nodes"]["merged"].is_null(), "nothing recorded: {state}");
    std::fs::remove_dir_all(&base).expect("clean up");
}

/// Runs `graph` on a thread and requests `level` once `node` has started.
fn run_and_stop(
    graph: &JobGraph,
    base: &Path,
    target: Arc<Scripted>,
    node_started: &str,
    level: StopLevel,
) -> (Result<Outcome, RunError>, String) {
    let (tx, stop) = Stop::channel();
    let shared = target.state.clone();
    let started = node_started.to_owned();
    let stopper = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !shared.calls().iter().any(|c| c.starts_with(&format!("start {started}"))) {
            assert!(std::time::Instant::now() < deadline, "{started} never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = tx.send(level);
        // Keep the sender alive until the run has ended.
        std::thread::sleep(Duration::from_millis(500));
    });
    let result = execute(graph, base, target, Some(stop));
    stopper.join().expect("stopper");
    result
}

#[test]
fn a_detached_job_is_reattached_by_the_next_run_under_the_same_name() {
    let base = folder("detach");
    let graph = graph(&[("sft", "train", &[]), ("merged", "merge", &["sft"])]);
    let first = scripted(&base, 1, &[("sft", vec![Plan::Remote])]);
    let (result, _) = run_and_stop(&graph, &base, first.clone(), "sft", StopLevel::Gracefully);
    assert_eq!(result.expect("interrupted, not failed"), Outcome::Interrupted);
    let record = &state(&base)["nodes"]["sft"];
    assert_eq!(record["status"], "running", "left running, with its name: {record}");
    assert_eq!(record["job_name"], "sft-a1");
    assert_eq!(record["job_created"], true, "the job exists, and the journal knows: {record}");

    // The next run finds the job under the recorded name and attempt, and watches it.
    let second = scripted(&base, 1, &[("sft", vec![Plan::Succeed(Duration::ZERO)])]);
    second.state.existing.lock().expect("existing").extend(first.state.existing.lock().expect("existing").clone());
    let (result, lines) = execute(&graph, &base, second.clone(), None);
    assert_eq!(result.expect("the rerun succeeds"), Outcome::Done, "{lines}");
    let calls = second.state.calls();
    assert!(
        calls.contains(&"attach sft-a1".to_owned()) && !calls.iter().any(|c| c.starts_with("start sft")),
        "{calls:?}"
    );
    assert!(lines.contains("run sft: the previous run did not finish"), "{lines}");
    let record = &state(&base)["nodes"]["sft"];
    assert_eq!((record["attempt"].as_u64(), record["status"].as_str()), (Some(1), Some("succeeded")), "{record}");
    std::fs::remove_dir_all(&base).expect("clean up");
}

#[test]
fn a_stopped_job_is_recorded_as_interrupted_and_resumed_next_time() {
    let base = folder("interrupt");
    let graph = graph(&[("sft", "train", &[]), ("merged", "merge", &["sft"])]);
    let first = scripted(&base, 1, &[("sft", vec![Plan::UntilStopped])]);
    let (result, lines) = run_and_stop(&graph, &base, first.clone(), "sft", StopLevel::Gracefully);
    assert_eq!(result.expect("interrupted, not failed"), Outcome::Interrupted, "{lines}");
    assert!(first.state.calls().contains(&"stop sft-a1 Gracefully".to_owned()), "{:?}", first.state.calls());
    assert!(lines.contains("  sft interrupted; `tunec run` resumes it"), "{lines}");
    assert_eq!(state(&base)["nodes"]["sft"]["status"], "interrupted");
    assert!(!first.state.calls().iter().any(|c| c.contains("merged")), "nothing new starts after a stop");

    let second = scripted(&base, 1, &[]);
    let (result, lines) = execute(&graph, &base, second.clone(), None);
    assert_eq!(result.expect("the rerun succeeds"), Outcome::Done);
    assert!(lines.contains("run sft: the previous run was interrupted"), "{lines}");
    assert!(second.state.calls().contains(&"start sft-a2".to_owned()), "{:?}", second.state.calls());
    std::fs::remove_dir_all(&base).expect("clean up");
}
