//! `tunec run` on the local target: schedule the job graph's nodes as their inputs become ready,
//! reuse what the journal says is intact, run the rest (independent nodes at the same time), and
//! record every attempt.
//!
//! The graph becomes a petgraph DAG ([`schedule`]); `--until NODE` keeps that node and what it
//! depends on. The executor runs on tokio: a node whose inputs are all done is decided on and, if it
//! runs, started as a task. Data nodes run on a blocking thread (the data engine uses every core
//! with rayon); job nodes (train, merge, evaluate) run their entry script as a child process
//! ([`job`]), one at a time, since they share the machine's accelerator. Each node is either reused
//! (same key, succeeded, outputs intact, per [`journal::decide`]) or run, and the caller is told
//! which with one line. A node also runs when one of its inputs ran in this run and produced
//! different outputs that it reads (a changed dataset file or model directory, which no key
//! captures; a chat node does not read a model's weights), when a file appeared in its
//! `local_model` folder, and when it reads a remote source (`s3://`, the Hub), which is checked.
//! A run is recorded as `running` (attempt + 1) before the work and as `succeeded` with its
//! outputs, `failed` with the error, or `interrupted` after it.
//!
//! A failure lets the nodes already running finish and starts no new one. Ctrl-C (or SIGTERM) does
//! the same, asking running jobs to stop (train.py saves a checkpoint) and data steps to stop
//! between batches; a second Ctrl-C kills the jobs. Either way the journal is written before tunec
//! exits, and the next run resumes: an interrupted training continues from its checkpoint.
//!
//! What a job reads is resolved before it is recorded as running: a Hub model stops the run as a
//! setup error, with nothing recorded. The Python comes from [`python`]: one the user names, or a
//! managed environment provisioned on first use.

pub mod data;
pub mod data_report;
pub mod hub;
pub mod job;
pub mod progress;
pub mod python;
pub mod sagemaker;
pub mod schedule;
pub mod summary;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tunec_compiler::check::Program;
use tunec_compiler::lower::{Execution, JobGraph};

use crate::data::prepare::StepControl;
use crate::journal::{self, Decision, Journal, JournalError, NodeRecord, Output, Reason, Status};
use progress::{Reporter, Work};
use python::PythonChoice;
use schedule::Dag;

/// Why a run stopped with an error.
#[derive(Debug)]
pub enum RunError {
    /// `--until` names no node of the graph.
    UnknownNode { name: String, known: Vec<String> },
    /// The journal cannot be read or written.
    Journal(JournalError),
    /// A node failed; the failure is recorded in the journal.
    NodeFailed { node: String, message: String },
    /// A job node cannot start here (a Hub model, no usable Python); nothing is recorded.
    Setup { node: String, message: String },
    /// The async runtime cannot start.
    Runtime(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::UnknownNode { name, known } => {
                write!(f, "`--until {name}`: no node `{name}` in this pipeline (its nodes: {})", known.join(", "))
            }
            RunError::Journal(e) => e.fmt(f),
            RunError::NodeFailed { node, message } => write!(f, "{node} failed: {message}"),
            RunError::Setup { node, message } => write!(f, "cannot run {node}: {message}"),
            RunError::Runtime(message) => write!(f, "cannot start the executor: {message}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<JournalError> for RunError {
    fn from(e: JournalError) -> Self {
        RunError::Journal(e)
    }
}

/// How a run that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every node up to the end (or `--until`) is done or reused.
    Done,
    /// Stopped by Ctrl-C or SIGTERM; what finished is recorded, the rest resumes next time.
    Interrupted,
}

/// How a node's work ended, when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    Failed(String),
    /// Stopped on request (Ctrl-C); nothing of it is lost that a rerun needs.
    Interrupted,
    /// Left running elsewhere (a SageMaker job after one Ctrl-C); the record stays `running` with
    /// its job name, and the next run re-attaches.
    Detached,
}

/// How urgently a run is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopLevel {
    No,
    /// Finish nothing new; ask running work to stop cleanly (SIGTERM to scripts).
    Gracefully,
    /// Kill running scripts.
    Now,
}

/// A node task's view of stop requests.
#[derive(Clone, Debug)]
pub struct Stop(watch::Receiver<StopLevel>);

impl Stop {
    pub fn level(&self) -> StopLevel {
        *self.0.borrow()
    }

    /// The next requested level; waits forever once nothing can request one.
    pub async fn next(&mut self) -> StopLevel {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.0.borrow_and_update()
    }

    /// Waits `period`, or less if a stop is (or already was) requested; returns whether one was.
    pub async fn wait_or(&mut self, period: Duration) -> bool {
        if self.level() != StopLevel::No {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(period) => false,
            level = self.next() => level != StopLevel::No,
        }
    }
}

/// What a local run needs besides the pipeline.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// `--python PATH`: the interpreter for the entry scripts, before `TUNEC_PYTHON` and the target's.
    pub python: Option<PathBuf>,
    /// `--until NODE`: run this node and what it depends on only.
    pub until: Option<String>,
    /// Listen for Ctrl-C and SIGTERM (the command line does; tests that drive the library do not).
    pub signals: bool,
    /// The SageMaker target's settings, when the pipeline's target is `sagemaker`.
    pub sagemaker: Option<SageMakerOptions>,
}

/// What a run on the SageMaker target needs besides the graph.
#[derive(Debug, Clone, Default)]
pub struct SageMakerOptions {
    /// The target's `region`, placeholders resolved; `None` leaves it to the AWS configuration.
    pub region: Option<String>,
    /// `--endpoint-url`: one endpoint for every AWS service (a local AWS API server).
    pub endpoint_url: Option<String>,
    /// The target's `kms_key`, placeholders resolved.
    pub kms_key: Option<String>,
    /// Where each node is in the `.tune` file, and its memory estimate, for messages.
    pub contexts: BTreeMap<String, sagemaker::NodeContext>,
}

/// Checks `--until` against the graph.
pub fn check_until(graph: &JobGraph, until: Option<&str>) -> Result<(), RunError> {
    match until {
        Some(name) if graph.node(name).is_none() => Err(RunError::UnknownNode {
            name: name.to_owned(),
            known: graph.nodes.iter().map(|n| n.name.clone()).collect(),
        }),
        _ => Ok(()),
    }
}

/// Whether the run covers a job node (train, merge, evaluate): a run `--until` a data node needs
/// none of the target's settings.
pub fn runs_jobs(graph: &JobGraph, until: Option<&str>) -> bool {
    let dag = Dag::new(graph, until);
    graph.nodes.iter().enumerate().any(|(i, n)| dag.covers(i) && !is_data(&n.execution))
}

fn is_data(execution: &Execution) -> bool {
    matches!(execution, Execution::Model { .. } | Execution::Data { .. })
}

/// What a finished node task reports to the scheduler.
struct Finished {
    index: usize,
    result: Result<Vec<Output>, NodeError>,
}

/// The state the scheduler shares with nothing: what ran, what changed, what failed.
struct Walk {
    done: BTreeSet<usize>,
    /// Nodes that ran in this run and whose outputs differ from the recorded ones: the paths that
    /// differ, or `None` when all of them count as changed (no previous outputs, an input ran).
    changed: BTreeMap<usize, Option<BTreeSet<String>>>,
    /// Node records in flight, by index: the `running` record and the reason it ran.
    records: BTreeMap<usize, (NodeRecord, Reason, Option<NodeRecord>)>,
    /// Nodes that failed or were interrupted in this run.
    ended: BTreeSet<usize>,
    failure: Option<RunError>,
}

impl Walk {
    fn started(&self) -> BTreeSet<usize> {
        self.records.keys().chain(&self.ended).copied().collect()
    }
}

/// Runs `graph` (lowered from `program`, for the local target) with `base` the pipeline's folder,
/// recording in `journal` and reporting to `reporter`. Starts its own tokio runtime.
pub fn run_local(
    program: &Program,
    graph: &JobGraph,
    base: &Path,
    options: &LocalOptions,
    journal: Journal,
    reporter: Arc<Reporter>,
) -> Result<Outcome, RunError> {
    check_until(graph, options.until.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RunError::Runtime(e.to_string()))?;
    runtime.block_on(execute(program, graph, base, options, journal, reporter))
}

async fn execute(
    program: &Program,
    graph: &JobGraph,
    base: &Path,
    options: &LocalOptions,
    journal: Journal,
    reporter: Arc<Reporter>,
) -> Result<Outcome, RunError> {
    let dag = Dag::new(graph, options.until.as_deref());
    let journal = Arc::new(Mutex::new(journal));
    let (stop_tx, stop_rx) = watch::channel(StopLevel::No);
    let stop = Stop(stop_rx);
    let mut signals = Signals::new(options.signals);
    let mut walk = Walk {
        done: BTreeSet::new(),
        changed: BTreeMap::new(),
        records: BTreeMap::new(),
        ended: BTreeSet::new(),
        failure: None,
    };
    let mut tasks: tokio::task::JoinSet<Finished> = tokio::task::JoinSet::new();
    let mut job_running = false;
    let mut python: Option<PathBuf> = None;
    let mut stopping = StopLevel::No;
    let program = Arc::new(program.clone());
    let base_buf = base.to_path_buf();
    let aws = match &options.sagemaker {
        Some(o) => {
            match sagemaker::aws::connect(o.region.clone(), o.endpoint_url.as_deref(), o.kms_key.clone()).await {
                Ok(aws) => Some(Arc::new(aws)),
                Err(message) => return Err(RunError::Setup { node: "the SageMaker target".to_owned(), message }),
            }
        }
        None => None,
    };
    let timing = sagemaker::Timing::from_env();

    loop {
        // Start every ready node, reusing what can be reused (which may make more nodes ready).
        while stopping == StopLevel::No && walk.failure.is_none() {
            let started = tasks.len();
            let reused = walk.done.len();
            for index in dag.ready(&walk.done, &walk.started()) {
                let node = &graph.nodes[index];
                let is_job = !is_data(&node.execution);
                // Local jobs share the machine's accelerator; SageMaker jobs run on their own instances.
                if is_job && job_running && aws.is_none() {
                    continue;
                }
                let previous = journal.lock().unwrap_or_else(|e| e.into_inner()).state().nodes.get(&node.name).cloned();
                let remote_source = program.node(&node.name).and_then(|n| data::remote(&program, n));
                let reason = match journal::decide(previous.as_ref(), &node.key, base)? {
                    Decision::Run(reason) => reason,
                    Decision::Reuse => match dag.deps(index).find(|d| {
                        walk.changed.get(d).is_some_and(|paths| {
                            let kind = program.node(&node.name).map(|n| n.kind);
                            paths.as_ref().is_none_or(|paths| paths.iter().any(|p| data::reads(kind, p)))
                        })
                    }) {
                        Some(dep) => Reason::InputRan(graph.nodes[dep].name.clone()),
                        None => {
                            let recorded = previous.as_ref().map(|p| p.outputs.as_slice()).unwrap_or_default();
                            match data::still_runs(&program, &node.name, base, recorded) {
                                Some(reason) => reason,
                                None => {
                                    reporter.line(&format!("reuse {}: same inputs, outputs intact", node.name));
                                    walk.done.insert(index);
                                    continue;
                                }
                            }
                        }
                    },
                };
                let setup = |message: String| RunError::Setup { node: node.name.clone(), message };
                if is_job {
                    let journal = journal.lock().unwrap_or_else(|e| e.into_inner());
                    if let Err(message) = data_report::check_job(&program, &node.name, base, &journal.state().nodes) {
                        walk.failure = Some(setup(message));
                        break;
                    }
                }
                let remote = if is_job && aws.is_some() {
                    let journal = journal.lock().unwrap_or_else(|e| e.into_inner());
                    match sagemaker::plan(&program, graph, node, base, &journal) {
                        Ok(planned) => Some(planned),
                        Err(message) => {
                            drop(journal);
                            walk.failure = Some(setup(message));
                            break;
                        }
                    }
                } else {
                    None
                };
                let planned = if is_job && remote.is_none() {
                    let planned = match job::plan(&program, graph, node, base) {
                        Ok(planned) => planned,
                        Err(message) => {
                            walk.failure = Some(setup(message));
                            break;
                        }
                    };
                    if python.is_none() {
                        let found = match python::choose(options.python.as_deref(), &program, base) {
                            Ok(PythonChoice::Named { path, .. }) => Ok(path),
                            Ok(PythonChoice::Managed) => {
                                // Provisioning takes minutes: keep listening for Ctrl-C meanwhile.
                                let provision = python::managed(reporter.clone(), stop.clone());
                                tokio::pin!(provision);
                                let provisioned = loop {
                                    tokio::select! {
                                        result = &mut provision => break result,
                                        level = signals.next() => {
                                            stopping = stopping.max(level);
                                            let _ = stop_tx.send(stopping);
                                        }
                                    }
                                };
                                provisioned.map_err(|e| match e {
                                    NodeError::Failed(message) => Some(message),
                                    NodeError::Interrupted | NodeError::Detached => None,
                                })
                            }
                            Err(message) => Err(Some(message)),
                        };
                        match found {
                            Ok(path) => python = Some(path),
                            Err(Some(message)) => {
                                walk.failure = Some(setup(message));
                                break;
                            }
                            Err(None) => break,
                        }
                    }
                    Some(planned)
                } else {
                    None
                };
                reporter.line(&format!("run {}: {reason}", node.name));
                // A SageMaker job recorded as running under this key may still exist: the same
                // attempt and name, so that the job task re-attaches instead of creating another.
                let reattach = previous
                    .as_ref()
                    .filter(|p| p.key == node.key && p.status == Status::Running && p.job_name.is_some());
                let attempt = match reattach {
                    Some(p) => p.attempt,
                    None => previous.as_ref().map_or(0, |p| p.attempt) + 1,
                };
                let job_name = remote.as_ref().map(|plan| match reattach.and_then(|p| p.job_name.clone()) {
                    Some(name) => name,
                    None => sagemaker::attempt_name(plan.lowered_name(), attempt),
                });
                let record = NodeRecord {
                    key: node.key.clone(),
                    status: Status::Running,
                    attempt,
                    job_name: job_name.clone(),
                    outputs: Vec::new(),
                    started_at: journal::now(),
                    finished_at: None,
                    error: None,
                };
                journal.lock().unwrap_or_else(|e| e.into_inner()).record(&node.name, record.clone())?;
                let resume = matches!(reason, Reason::NotSucceeded(_));
                walk.records.insert(index, (record, reason, previous));
                if let (Some(plan), Some(aws), Some(name)) = (remote, aws.clone(), job_name) {
                    let run = sagemaker::JobRun {
                        aws,
                        journal: journal.clone(),
                        reporter: reporter.clone(),
                        stop: stop.clone(),
                        timing,
                        context: options
                            .sagemaker
                            .as_ref()
                            .and_then(|o| o.contexts.get(&node.name).cloned())
                            .unwrap_or_default(),
                        base: base_buf.clone(),
                        pipeline: graph.pipeline.clone(),
                    };
                    tasks.spawn(async move {
                        let result = run.run(&plan, attempt, name).await;
                        Finished { index, result }
                    });
                    continue;
                }
                match planned {
                    Some(planned) => {
                        job_running = true;
                        let python = python.clone().unwrap_or_default();
                        let (base, pipeline, reporter, stop) =
                            (base_buf.clone(), graph.pipeline.clone(), reporter.clone(), stop.clone());
                        let name = node.name.clone();
                        tasks.spawn(async move {
                            reporter.start(&name, Work::Process);
                            let result =
                                job::run(&planned, &python, &base, &pipeline, resume, reporter.clone(), stop).await;
                            reporter.finish(&name);
                            Finished { index, result }
                        });
                    }
                    None => {
                        let (program, base, reporter, stop) =
                            (program.clone(), base_buf.clone(), reporter.clone(), stop.clone());
                        let (name, key) = (node.name.clone(), node.key.clone());
                        let fetch =
                            remote_source.clone().map(|remote| (remote, aws.clone(), options.sagemaker.clone()));
                        tasks.spawn(async move {
                            if let Some((remote, aws, sagemaker)) = fetch {
                                if let Err(message) =
                                    fetch_source(&program, &base, &remote, aws, sagemaker, &reporter, &name).await
                                {
                                    return Finished { index, result: Err(NodeError::Failed(message)) };
                                }
                            }
                            let result = data_node(&program, &name, &key, &base, &reporter, stop).await;
                            Finished { index, result }
                        });
                    }
                }
            }
            if tasks.len() == started && walk.done.len() == reused {
                break;
            }
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            finished = tasks.join_next() => {
                let Some(finished) = finished else { continue };
                let finished = match finished {
                    Ok(finished) => finished,
                    Err(e) => {
                        // A node task panicked: its record stays `running`, which the next run redoes.
                        walk.failure.get_or_insert(RunError::Runtime(format!("a node task ended abnormally: {e}")));
                        continue;
                    }
                };
                if !is_data(&graph.nodes[finished.index].execution) {
                    job_running = false;
                }
                settle(graph, &journal, &reporter, &mut walk, finished)?;
            }
            level = signals.next() => {
                stopping = stopping.max(level);
                let _ = stop_tx.send(stopping);
                reporter.line(match stopping {
                    StopLevel::Now => "interrupted again: killing the running jobs",
                    _ => "interrupted: stopping the running nodes (train.py saves a checkpoint); Ctrl-C again kills them",
                });
            }
        }
    }
    if let Some(failure) = walk.failure {
        return Err(failure);
    }
    if stopping != StopLevel::No {
        return Ok(Outcome::Interrupted);
    }
    Ok(Outcome::Done)
}

/// Records how a node task ended.
fn settle(
    graph: &JobGraph,
    journal: &Mutex<Journal>,
    reporter: &Reporter,
    walk: &mut Walk,
    finished: Finished,
) -> Result<(), RunError> {
    let index = finished.index;
    let name = &graph.nodes[index].name;
    let Some((mut record, reason, previous)) = walk.records.remove(&index) else { return Ok(()) };
    record.finished_at = Some(journal::now());
    let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
    // A SageMaker job task records its retries (attempt, job name) as it goes: keep them.
    if let Some(current) = journal.state().nodes.get(name).filter(|c| c.key == record.key) {
        record.attempt = current.attempt;
        record.job_name.clone_from(&current.job_name);
        record.started_at.clone_from(&current.started_at);
    }
    match finished.result {
        Ok(outputs) => {
            let differs = match previous.as_ref().filter(|p| p.status == Status::Succeeded) {
                _ if matches!(reason, Reason::InputRan(_)) => Some(None),
                None => Some(None),
                Some(p) => {
                    let paths = changed_paths(&p.outputs, &outputs);
                    (!paths.is_empty()).then_some(Some(paths))
                }
            };
            record.status = Status::Succeeded;
            record.outputs = outputs;
            journal.record(name, record)?;
            if let Some(paths) = differs {
                walk.changed.insert(index, paths);
            }
            walk.done.insert(index);
        }
        Err(NodeError::Detached) => {
            // Nothing is written: the journal keeps the `running` record with its job name (not
            // this copy, whose end time is set), and the next run re-attaches to the job.
            walk.ended.insert(index);
        }
        Err(NodeError::Interrupted) => {
            walk.ended.insert(index);
            record.status = Status::Interrupted;
            journal.record(name, record)?;
            reporter.line(&format!("  {name} interrupted; `tunec run` resumes it"));
        }
        Err(NodeError::Failed(message)) => {
            walk.ended.insert(index);
            record.status = Status::Failed;
            record.error = Some(message.clone());
            journal.record(name, record)?;
            walk.failure.get_or_insert(RunError::NodeFailed { node: name.clone(), message });
        }
    }
    Ok(())
}

/// A size for people: `812 B`, `4.2 MB`, `1.3 GB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The paths whose recorded fingerprint differs between two lists of outputs (or is in one only).
fn changed_paths(before: &[Output], after: &[Output]) -> BTreeSet<String> {
    let fingerprints = |outputs: &[Output]| -> BTreeMap<String, String> {
        outputs.iter().map(|o| (o.path.clone(), o.sha256.clone())).collect()
    };
    let (before, after) = (fingerprints(before), fingerprints(after));
    let mut paths: BTreeSet<String> = before.keys().chain(after.keys()).cloned().collect();
    paths.retain(|p| before.get(p) != after.get(p));
    paths
}

/// Brings the local copy of a remote source up to date: an `s3://` dataset with the SageMaker
/// target's clients or, on the local target, clients from the standard AWS configuration; a Hub
/// dataset or tokenizer with [`hub`].
async fn fetch_source(
    program: &Program,
    base: &Path,
    remote: &data::Remote,
    aws: Option<Arc<sagemaker::aws::Aws>>,
    options: Option<SageMakerOptions>,
    reporter: &Reporter,
    name: &str,
) -> Result<(), String> {
    let progress = |path: &str, bytes: u64| {
        reporter.line(&format!("  {name}: downloading {path} ({})", human_bytes(bytes)));
    };
    let synced = match remote {
        data::Remote::S3(uri) => {
            let aws = match aws {
                Some(aws) => aws,
                None => {
                    let endpoint = options.as_ref().and_then(|o| o.endpoint_url.clone());
                    Arc::new(sagemaker::aws::connect(None, endpoint.as_deref(), None).await?)
                }
            };
            let copy = data::s3_copy(&program.name, uri).ok_or_else(|| format!("`{uri}` names no object"))?;
            let downloaded = sagemaker::upload::download(&aws, uri, &base.join(&copy)).await?;
            reporter.line(&format!(
                "  {name}: {uri} {}",
                if downloaded { "downloaded" } else { "unchanged since the last download" }
            ));
            return Ok(());
        }
        data::Remote::HubDataset { id, subset, split, revision, token, dir } => {
            let hub = hub::Hub::from_env(token.as_deref())?;
            let dir = base.join(dir);
            hub.sync_dataset(id, subset.as_deref(), split.as_ref(), revision.as_deref(), &dir, &progress).await
        }
        data::Remote::HubModel { id, revision, token, dir } => {
            let hub = hub::Hub::from_env(token.as_deref())?;
            hub.sync_tokenizer(id, revision.as_deref(), &base.join(dir), &progress).await
        }
    };
    match synced.map_err(|e| e.to_string())? {
        hub::Synced::Checked { downloaded: 0, note } => {
            reporter.line(&format!("  {name}: {remote} unchanged since the last download"));
            if let Some(note) = note {
                reporter.line(&format!("  {name}: {note}"));
            }
        }
        hub::Synced::Checked { downloaded, note } => {
            let files = if downloaded == 1 { "file" } else { "files" };
            reporter.line(&format!("  {name}: {remote}: downloaded {downloaded} {files}"));
            if let Some(note) = note {
                reporter.line(&format!("  {name}: {note}"));
            }
        }
        hub::Synced::Offline { why } => {
            reporter.line(&format!("  {name}: {remote}: {why}; using the copy downloaded earlier"));
        }
    }
    Ok(())
}

/// Runs a data node on a blocking thread, reporting the records it reads.
async fn data_node(
    program: &Program,
    name: &str,
    key: &str,
    base: &Path,
    reporter: &Arc<Reporter>,
    mut stop: Stop,
) -> Result<Vec<Output>, NodeError> {
    let control = Arc::new(StepControl::default());
    let task = {
        let (program, name, key, base, control) =
            (program.clone(), name.to_owned(), key.to_owned(), base.to_path_buf(), control.clone());
        tokio::task::spawn_blocking(move || data::run_node(&program, &name, &key, &base, &control))
    };
    tokio::pin!(task);
    reporter.start(name, Work::Rows);
    let result = loop {
        tokio::select! {
            result = &mut task => break result,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                reporter.rows(name, control.rows_read.load(Ordering::Relaxed));
            }
            level = stop.next() => if level != StopLevel::No {
                control.cancelled.store(true, Ordering::Relaxed);
            }
        }
    };
    if let Ok(Ok(_)) = &result {
        // The step's total, so that a plain log shows every count it passed, however fast it went.
        reporter.rows(name, control.rows_read.load(Ordering::Relaxed));
    }
    reporter.finish(name);
    if let Ok(Ok(outputs)) = &result {
        if let Some(counts) = data_report::SplitCounts::of(program, name, base, outputs) {
            reporter.line(&format!("  {name}: {}", counts.describe()));
            counts.warnings().iter().for_each(|w| reporter.line(&format!("  {name}: {w}")));
        }
    }
    match result {
        Ok(Ok(outputs)) => Ok(outputs),
        Ok(Err(_)) if control.cancelled.load(Ordering::Relaxed) => Err(NodeError::Interrupted),
        Ok(Err(e)) => Err(NodeError::Failed(e.0)),
        Err(e) => Err(NodeError::Failed(format!("the data step ended abnormally: {e}"))),
    }
}

/// Ctrl-C and SIGTERM as stop levels: the first asks to stop gracefully, the next to stop now.
struct Signals {
    count: u32,
    term: Option<tokio::signal::unix::Signal>,
    enabled: bool,
}

impl Signals {
    fn new(enabled: bool) -> Signals {
        let term =
            enabled.then(|| tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()).flatten();
        Signals { count: 0, term, enabled }
    }

    async fn next(&mut self) -> StopLevel {
        if !self.enabled {
            std::future::pending::<()>().await;
        }
        let term = async {
            match &mut self.term {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        self.count += 1;
        if self.count == 1 {
            StopLevel::Gracefully
        } else {
            StopLevel::Now
        }
    }
}
