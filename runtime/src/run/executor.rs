//! The scheduler: the job graph as a DAG ([`Dag`]), walked on tokio as a loop over [`Event`]s.
//!
//! Each turn starts every ready node: a node whose inputs are all done is decided on and either
//! reused (same key, succeeded, outputs intact, per [`journal::decide`]; the caller is told with one
//! line) or run. A node also runs when one of its inputs ran in this run and produced different
//! outputs that it reads (a changed dataset file or model directory, which no key captures; a chat
//! node does not read a model's weights), when a file appeared in its `local_model` folder, and
//! when it reads a remote source (`s3://`, the Hub), which is checked. Data nodes run as tasks on
//! blocking threads (the data engine uses every core with rayon); job nodes are prepared by the
//! target (what they read is resolved before anything is recorded, so a job that cannot start
//! stops the run as a setup error with nothing recorded) and run by [`target::drive`], at most
//! [`Target::max_jobs`] at a time. A run is recorded as `running` (attempt + 1) before the work
//! and as `succeeded` with its outputs, `failed` with the error, or `interrupted` after it.
//!
//! Then the loop waits for the next event: a node's task ended (finished, failed, interrupted,
//! detached, or crashed), a Ctrl-C or SIGTERM (stop level), or a tick (the rows the running data
//! steps have read). The loop ends when no task runs and nothing more can start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tunec_compiler::lower::JobGraph;

use super::progress::{Reporter, Work};
use super::schedule::Dag;
use super::sources::Sources;
use super::target::{self, Attempt, PrepareError, Target};
use super::{check_until, data, data_report, runs_jobs, NodeError, Outcome, RunError, RunOptions, Stop, StopLevel};
use crate::data::prepare::StepControl;
use crate::journal::{self, Decision, Journal, NodeRecord, Output, Reason, Status};
use crate::ledger::EstimateSource;

/// What the scheduler waits for.
#[derive(Debug)]
enum Event {
    /// A node's work succeeded with these outputs.
    Finished { index: usize, outputs: Vec<Output> },
    /// A node's work failed.
    Failed { index: usize, message: String },
    /// A node's work stopped on request; the next run resumes it.
    Interrupted { index: usize },
    /// A job was left running on its target (SageMaker after one Ctrl-C); the next run re-attaches.
    Detached { index: usize },
    /// A node's task ended abnormally (it panicked); its record stays `running`.
    Crashed { message: String },
    /// Ctrl-C or SIGTERM.
    Signal(StopLevel),
    /// Time passed while nodes run.
    Tick,
}

/// How often a tick comes: the progress of data steps.
const TICK: Duration = Duration::from_millis(200);

/// Runs `graph` with `base` the pipeline's folder and its jobs on `target`, recording in `journal`
/// and reporting to `reporter`. Starts its own tokio runtime.
pub fn run(
    graph: &JobGraph,
    base: &Path,
    target: Arc<dyn Target>,
    options: &RunOptions,
    journal: Journal,
    reporter: Arc<Reporter>,
) -> Result<Outcome, RunError> {
    check_until(graph, options.until.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| RunError::Runtime(e.to_string()))?;
    runtime.block_on(async {
        if runs_jobs(graph, options.until.as_deref()) {
            target.connect().await.map_err(|message| RunError::Setup { node: target.describe().into(), message })?;
        }
        Executor::new(Arc::new(graph.clone()), base, target, options, journal, reporter).execute().await
    })
}

/// A task's result, with the node it ran.
type TaskResult = (usize, Result<Vec<Output>, NodeError>);

struct Executor {
    graph: Arc<JobGraph>,
    base: PathBuf,
    dag: Dag,
    target: Arc<dyn Target>,
    sources: Arc<Sources>,
    journal: Arc<Mutex<Journal>>,
    reporter: Arc<Reporter>,
    stop_tx: watch::Sender<StopLevel>,
    stop: Stop,
    stopping: StopLevel,
    signals: Signals,
    tasks: JoinSet<TaskResult>,
    /// Jobs running now, for the target's limit.
    jobs: usize,
    /// The running data steps' controls: rows read, cancellation.
    steps: BTreeMap<usize, Arc<StepControl>>,
    done: BTreeSet<usize>,
    /// Nodes that ran in this run and whose outputs differ from the recorded ones: the paths that
    /// differ, or `None` when all of them count as changed (no previous outputs, an input ran).
    changed: BTreeMap<usize, Option<BTreeSet<String>>>,
    /// Node records in flight, by index: the `running` record, the reason it ran, the previous one.
    records: BTreeMap<usize, (NodeRecord, Reason, Option<NodeRecord>)>,
    /// Nodes that failed or were interrupted in this run.
    ended: BTreeSet<usize>,
    failure: Option<RunError>,
    /// Each job node's estimate, recorded when it starts.
    estimates: EstimateSource,
}

impl Executor {
    fn new(
        graph: Arc<JobGraph>,
        base: &Path,
        target: Arc<dyn Target>,
        options: &RunOptions,
        journal: Journal,
        reporter: Arc<Reporter>,
    ) -> Executor {
        let (stop_tx, stop) = Stop::channel();
        Executor {
            dag: Dag::new(&graph, options.until.as_deref()),
            graph,
            base: base.to_path_buf(),
            target,
            sources: Arc::new(Sources::new(options.aws.clone())),
            journal: Arc::new(Mutex::new(journal)),
            reporter,
            stop_tx,
            stop,
            stopping: StopLevel::No,
            signals: Signals::new(options.signals, options.stop.clone()),
            tasks: JoinSet::new(),
            jobs: 0,
            steps: BTreeMap::new(),
            done: BTreeSet::new(),
            changed: BTreeMap::new(),
            records: BTreeMap::new(),
            ended: BTreeSet::new(),
            failure: None,
            estimates: options.estimates.clone(),
        }
    }

    async fn execute(mut self) -> Result<Outcome, RunError> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.start_ready().await?;
            if self.tasks.is_empty() {
                break;
            }
            let event = tokio::select! {
                joined = self.tasks.join_next() => match joined {
                    Some(Ok((index, result))) => ended(index, result),
                    Some(Err(e)) => Event::Crashed { message: format!("a node task ended abnormally: {e}") },
                    None => continue,
                },
                level = self.signals.next() => Event::Signal(level),
                _ = tick.tick() => Event::Tick,
            };
            self.handle(event)?;
        }
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if self.stopping != StopLevel::No {
            return Ok(Outcome::Interrupted);
        }
        Ok(Outcome::Done)
    }

    fn started(&self) -> BTreeSet<usize> {
        self.records.keys().chain(&self.ended).copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts every ready node, reusing what can be reused (which may make more nodes ready).
    async fn start_ready(&mut self) -> Result<(), RunError> {
        while self.stopping == StopLevel::No && self.failure.is_none() {
            let (tasks, reused) = (self.tasks.len(), self.done.len());
            for index in self.dag.ready(&self.done, &self.started()) {
                if self.stopping != StopLevel::No || self.failure.is_some() {
                    break;
                }
                let graph = self.graph.clone();
                let node = &graph.nodes[index];
                if node.is_job() && self.jobs >= self.target.max_jobs() {
                    continue;
                }
                let previous = self.lock().state().nodes.get(&node.name).cloned();
                let Some(reason) = self.reason(index, previous.as_ref())? else {
                    self.reporter.line(&format!("reuse {}: same inputs, outputs intact", node.name));
                    self.done.insert(index);
                    continue;
                };
                if node.is_job() {
                    self.start_job(index, reason, previous).await?;
                } else {
                    self.start_data(index, reason, previous)?;
                }
            }
            if self.tasks.len() == tasks && self.done.len() == reused {
                break;
            }
        }
        Ok(())
    }

    /// Why node `index` runs, or `None` when it is reused.
    fn reason(&self, index: usize, previous: Option<&NodeRecord>) -> Result<Option<Reason>, RunError> {
        let node = &self.graph.nodes[index];
        if let Decision::Run(reason) = journal::decide(previous, &node.key, &self.base)? {
            return Ok(Some(reason));
        }
        let input_ran = self.dag.deps(index).find(|d| {
            self.changed.get(d).is_some_and(|paths| {
                paths.as_ref().is_none_or(|paths| paths.iter().any(|p| data::reads(&node.kind, p)))
            })
        });
        if let Some(dep) = input_ran {
            return Ok(Some(Reason::InputRan(self.graph.nodes[dep].name.clone())));
        }
        let recorded = previous.map(|p| p.outputs.as_slice()).unwrap_or_default();
        Ok(data::still_runs(&self.graph, node, &self.base, recorded))
    }

    /// Records node `index` as running (attempt + 1, or the attempt a job left running, with its
    /// job's name and whether that job is known to exist) and keeps its record for
    /// [`Executor::settle`].
    fn record_running(
        &mut self,
        index: usize,
        reason: Reason,
        previous: Option<NodeRecord>,
        attempt: u32,
        job: Option<(String, bool)>,
    ) -> Result<(), RunError> {
        let graph = self.graph.clone();
        let node = &graph.nodes[index];
        self.reporter.line(&format!("run {}: {reason}", node.name));
        let record = NodeRecord {
            key: node.key.clone(),
            status: Status::Running,
            attempt,
            job_created: job.as_ref().is_some_and(|(_, created)| *created),
            job_name: job.map(|(name, _)| name),
            outputs: Vec::new(),
            started_at: journal::now(),
            finished_at: None,
            error: None,
            estimate: if node.is_job() { self.estimates.of(&node.name) } else { None },
            usage: None,
        };
        self.lock().record(&node.name, record.clone())?;
        self.records.insert(index, (record, reason, previous));
        Ok(())
    }

    fn start_data(&mut self, index: usize, reason: Reason, previous: Option<NodeRecord>) -> Result<(), RunError> {
        let attempt = previous.as_ref().map_or(0, |p| p.attempt) + 1;
        self.record_running(index, reason, previous, attempt, None)?;
        let control = Arc::new(StepControl::default());
        self.steps.insert(index, control.clone());
        let graph = self.graph.clone();
        let (base, reporter, sources) = (self.base.clone(), self.reporter.clone(), self.sources.clone());
        self.tasks.spawn(async move {
            let node = &graph.nodes[index];
            if let Some(remote) = data::remote(&graph, node) {
                if let Err(message) = sources.fetch(&graph.pipeline, &base, &remote, &reporter, &node.name).await {
                    return (index, Err(NodeError::Failed(message)));
                }
            }
            reporter.start(&node.name, Work::Rows);
            let task = {
                let (graph, base, control) = (graph.clone(), base.clone(), control.clone());
                tokio::task::spawn_blocking(move || data::run_node(&graph, &graph.nodes[index], &base, &control))
            };
            let result = task.await;
            if let Some(engine) = control.engine_once() {
                reporter.line(&format!("  {}: tokenizer: {engine}", node.name));
            }
            if let Ok(Ok(_)) = &result {
                // The step's total, so that a plain log shows every count it passed, however fast it went.
                reporter.rows(&node.name, control.rows_read.load(Ordering::Relaxed));
            }
            reporter.finish(&node.name);
            if let Ok(Ok(outputs)) = &result {
                if let Some(counts) = data_report::SplitCounts::of(&graph, &node.name, &base, outputs) {
                    reporter.line(&format!("  {}: {}", node.name, counts.describe()));
                    counts.warnings().iter().for_each(|w| reporter.line(&format!("  {}: {w}", node.name)));
                }
            }
            let result = match result {
                Ok(Ok(outputs)) => Ok(outputs),
                Ok(Err(_)) if control.cancelled.load(Ordering::Relaxed) => Err(NodeError::Interrupted),
                Ok(Err(e)) => Err(NodeError::Failed(e.0)),
                Err(e) => Err(NodeError::Failed(format!("the data step ended abnormally: {e}"))),
            };
            (index, result)
        });
        Ok(())
    }

    /// Prepares node `index`'s job on the target (listening for Ctrl-C meanwhile: preparing may
    /// take minutes), records it and starts it.
    async fn start_job(&mut self, index: usize, reason: Reason, previous: Option<NodeRecord>) -> Result<(), RunError> {
        let graph = self.graph.clone();
        let node = &graph.nodes[index];
        let state = self.lock().state().clone();
        // The job's settings may have changed since the splits it reads ran: it is checked again
        // against their recorded counts before anything is prepared.
        if let Err(message) = data_report::check_job(&graph, node, &self.base, &state.nodes) {
            self.failure = Some(RunError::Setup { node: node.name.clone(), message });
            return Ok(());
        }
        let prepared = {
            let prepare =
                self.target.prepare(target::JobInput { graph: &graph, node, state: &state }, self.stop.clone());
            tokio::pin!(prepare);
            loop {
                tokio::select! {
                    result = &mut prepare => break result,
                    level = self.signals.next() => {
                        self.stopping = self.stopping.max(level);
                        let _ = self.stop_tx.send(self.stopping);
                    }
                }
            }
        };
        let job = match prepared {
            Ok(job) => job,
            Err(PrepareError::Setup(message)) => {
                self.failure = Some(RunError::Setup { node: node.name.clone(), message });
                return Ok(());
            }
            Err(PrepareError::Interrupted) => return Ok(()),
        };
        // A job recorded as running under this key and a name may still exist (a SageMaker job
        // left running): the same attempt and name, so that the target re-attaches to it.
        let reattach =
            previous.as_ref().filter(|p| p.key == node.key && p.status == Status::Running && p.job_name.is_some());
        let attempt = match reattach {
            Some(p) => Attempt { number: p.attempt, name: p.job_name.clone(), resume: true, created: p.job_created },
            None => {
                let number = previous.as_ref().map_or(0, |p| p.attempt) + 1;
                let resume = matches!(reason, Reason::NotSucceeded(_));
                Attempt { number, name: job.attempt_name(number), resume, created: false }
            }
        };
        let job_name = attempt.name.clone().map(|name| (name, attempt.created));
        self.record_running(index, reason, previous, attempt.number, job_name)?;
        self.jobs += 1;
        let drive = target::Drive {
            node: node.name.clone(),
            attempt,
            journal: self.journal.clone(),
            reporter: self.reporter.clone(),
            stop: self.stop.clone(),
        };
        self.tasks.spawn(async move { (index, target::drive(job, drive).await) });
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), RunError> {
        match event {
            Event::Tick => {
                for (&index, control) in &self.steps {
                    let name = &self.graph.nodes[index].name;
                    // The tokenizer's engine, said once, when the step has loaded it.
                    if let Some(engine) = control.engine_once() {
                        self.reporter.line(&format!("  {name}: tokenizer: {engine}"));
                    }
                    self.reporter.rows(name, control.rows_read.load(Ordering::Relaxed));
                }
            }
            Event::Signal(level) => {
                self.stopping = self.stopping.max(level);
                let _ = self.stop_tx.send(self.stopping);
                if self.stopping != StopLevel::No {
                    for control in self.steps.values() {
                        control.cancelled.store(true, Ordering::Relaxed);
                    }
                }
                self.reporter.line(match self.stopping {
                    StopLevel::Now => "interrupted again: killing the running jobs",
                    _ => {
                        "interrupted: stopping the running nodes (train.py saves a checkpoint); Ctrl-C again kills them"
                    }
                });
            }
            Event::Crashed { message } => {
                self.failure.get_or_insert(RunError::Runtime(message));
            }
            Event::Finished { index, outputs } => self.settle(index, Ok(outputs))?,
            Event::Failed { index, message } => self.settle(index, Err(NodeError::Failed(message)))?,
            Event::Interrupted { index } => self.settle(index, Err(NodeError::Interrupted))?,
            Event::Detached { index } => self.settle(index, Err(NodeError::Detached))?,
        }
        Ok(())
    }

    /// Records how node `index`'s task ended.
    fn settle(&mut self, index: usize, result: Result<Vec<Output>, NodeError>) -> Result<(), RunError> {
        let graph = self.graph.clone();
        let node = &graph.nodes[index];
        let name = &node.name;
        if node.is_job() {
            self.jobs = self.jobs.saturating_sub(1);
        }
        self.steps.remove(&index);
        let Some((mut record, reason, previous)) = self.records.remove(&index) else { return Ok(()) };
        record.finished_at = Some(journal::now());
        let journal = self.journal.clone();
        let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
        // A job records its retries (attempt, job name) as it goes: keep them.
        if let Some(current) = journal.state().nodes.get(name).filter(|c| c.key == record.key) {
            record.attempt = current.attempt;
            record.job_name.clone_from(&current.job_name);
            record.job_created = current.job_created;
            record.started_at.clone_from(&current.started_at);
            record.usage.clone_from(&current.usage);
        }
        match result {
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
                    self.changed.insert(index, paths);
                }
                self.done.insert(index);
            }
            Err(NodeError::Detached) => {
                // Nothing is written: the journal keeps the `running` record with its job name
                // (not this copy, whose end time is set), and the next run re-attaches to the job.
                self.ended.insert(index);
            }
            Err(NodeError::Interrupted) => {
                self.ended.insert(index);
                record.status = Status::Interrupted;
                journal.record(name, record)?;
                self.reporter.line(&format!("  {name} interrupted; `tunec run` resumes it"));
            }
            Err(NodeError::Failed(message)) => {
                self.ended.insert(index);
                record.status = Status::Failed;
                record.error = Some(message.clone());
                journal.record(name, record)?;
                self.failure.get_or_insert(RunError::NodeFailed { node: name.clone(), message });
            }
        }
        Ok(())
    }
}

/// The event of a task that ended.
fn ended(index: usize, result: Result<Vec<Output>, NodeError>) -> Event {
    match result {
        Ok(outputs) => Event::Finished { index, outputs },
        Err(NodeError::Failed(message)) => Event::Failed { index, message },
        Err(NodeError::Interrupted) => Event::Interrupted { index },
        Err(NodeError::Detached) => Event::Detached { index },
    }
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

/// Ctrl-C and SIGTERM as stop levels (the first asks to stop gracefully, the next to stop now),
/// and the caller's own stop requests.
///
/// Both signals are listened to for the whole run, through one listener each made at the start:
/// a signal that arrives while the executor is busy elsewhere (the `next` future dropped by a
/// `select!` that another event won) is kept for the next call, not lost. A listener made anew on
/// every call (`tokio::signal::ctrl_c()`) misses what arrived before it, so on a loaded machine a
/// second Ctrl-C right after the first could go unseen, and the job it was meant to stop was left
/// running.
struct Signals {
    count: u32,
    interrupt: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    enabled: bool,
    external: Option<Stop>,
}

/// When `signal` is delivered; never without a listener.
async fn received(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

impl Signals {
    fn new(enabled: bool, external: Option<Stop>) -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| enabled.then(|| signal(kind).ok()).flatten();
        Signals {
            count: 0,
            interrupt: listen(SignalKind::interrupt()),
            term: listen(SignalKind::terminate()),
            enabled,
            external,
        }
    }

    async fn next(&mut self) -> StopLevel {
        let Signals { count, interrupt, term, enabled, external } = self;
        let caller = async {
            match external {
                Some(stop) => stop.next().await,
                None => std::future::pending().await,
            }
        };
        let os = async {
            if !*enabled {
                std::future::pending::<()>().await;
            }
            tokio::select! {
                () = received(interrupt.as_mut()) => {}
                () = received(term.as_mut()) => {}
            }
            *count += 1;
            if *count == 1 {
                StopLevel::Gracefully
            } else {
                StopLevel::Now
            }
        };
        tokio::select! {
            level = caller => level,
            level = os => level,
        }
    }
}
