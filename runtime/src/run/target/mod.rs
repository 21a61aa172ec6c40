//! Execution targets: where the job nodes (train, merge, evaluate) run, behind one interface.
//!
//! A [`Target`] turns a job node of the graph into a [`Job`] (`prepare`: what the job reads is
//! resolved before anything is recorded), and a [`Job`] is started (or re-attached to), waited on,
//! stopped, and asked for its outputs. [`drive`] is the one lifecycle every job follows: start the
//! attempt, wait for its end while forwarding stop requests, collect the outputs of a success,
//! and retry a failure the target says is transient as a new attempt, recorded in the journal
//! before it starts. The executor calls only this, so it has no branch for any target.
//!
//! - [`local`]: the entry scripts as processes on this machine, in an emulated `/opt/ml`, one job
//!   at a time (they share the accelerator).
//! - [`sagemaker`]: SageMaker training jobs, created from their lowered requests after their inputs
//!   are uploaded, watched, retried and re-attached to; any number at a time.
//!
//! **Adding a target** (docs/ARCHITECTURE.md has the whole recipe): a variant of
//! `tunec_compiler::target::Target` and its fields in the schema, its execution in the lowering,
//! a module here implementing [`Target`] and [`Job`], and one arm where `tunec run` builds the
//! target (`runtime/src/commands/run.rs`).

pub mod local;
pub mod sagemaker;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tunec_compiler::lower::{JobGraph, JobNode};

use super::data::StepError;
use super::progress::{Reporter, Work};
use super::{jitter, NodeError, Stop, StopLevel};
use crate::journal::{self, Journal, Output, State, Status};

/// A boxed future, so that [`Target`] and [`Job`] can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a target prepares a job from.
#[derive(Clone, Copy)]
pub struct JobInput<'a> {
    pub graph: &'a JobGraph,
    /// A job node of `graph`.
    pub node: &'a JobNode,
    /// The journal as it is now: the names under which upstream jobs succeeded.
    pub state: &'a State,
}

/// Why a job could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// It cannot run here (a Hub model on the local target, no usable Python): the run stops with
    /// this message and nothing of the node is recorded.
    Setup(String),
    /// A stop was requested while preparing (provisioning a Python takes minutes).
    Interrupted,
}

/// Where a pipeline's jobs run.
pub trait Target: Send + Sync {
    /// For messages: `the local target`, `the SageMaker target`.
    fn describe(&self) -> &'static str;

    /// How many of its jobs may run at the same time.
    fn max_jobs(&self) -> usize;

    /// Whatever must hold before the first job (an AWS region and clients). Called once, before
    /// anything runs, by a run that covers a job node; an error stops the run with nothing done.
    fn connect(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Resolves what `input.node`'s job reads (its channels, the script's interpreter) into a job
    /// ready to start. `stop` is for work that takes long.
    fn prepare<'a>(&'a self, input: JobInput<'a>, stop: Stop) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>>;
}

/// An attempt of a job: its number, and its name where the target names jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    /// The name it runs under (a SageMaker job name), recorded before it starts.
    pub name: Option<String>,
    /// An earlier run of the same key did not finish: keep what it left (checkpoints).
    pub resume: bool,
    /// The journal records that the job named `name` was created: it exists, whatever a target's
    /// API says about a name it cannot find, and is never created again.
    pub created: bool,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    /// It stopped because it was asked to.
    Stopped,
    Failed(Failure),
}

/// A job's failure, and whether another attempt is worth it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What ended the run, with where and what to change.
    pub message: String,
    /// One line for the announcement of a new attempt: `<job> ended Failed (capacity: ...)`.
    pub summary: String,
    /// How many attempts a run makes in all for a failure of this kind (1: none again).
    pub attempts: u32,
    /// The wait before the second attempt, doubled for each further one (± 20%).
    pub backoff: Duration,
}

impl Failure {
    /// A failure that no new attempt would cure.
    pub fn fatal(message: String) -> Failure {
        Failure { summary: message.clone(), message, attempts: 1, backoff: Duration::ZERO }
    }
}

/// What follows a stop request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStop {
    /// The job is stopping: wait for its end, which counts as an interruption.
    Wait,
    /// It keeps running on the target; the next run re-attaches to it.
    Detached,
    /// It could not be stopped.
    Failed(String),
}

/// A job a target prepared.
pub trait Job: Send {
    /// The name attempt `number` runs under, recorded in the journal before it starts (a SageMaker
    /// job name); `None` where the target names nothing.
    fn attempt_name(&self, number: u32) -> Option<String>;

    /// Starts `attempt`, or re-attaches to it when it already exists; once it returns, the job
    /// exists (and the journal says so). `stop` interrupts what comes before the job runs
    /// (waiting for an earlier process, uploads).
    fn start<'a>(&'a mut self, attempt: &'a Attempt, stop: &'a mut Stop) -> BoxFuture<'a, Result<(), NodeError>>;

    /// Waits until the started job ends. Dropping the future and calling again is safe.
    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, NodeError>>;

    /// Asks the job to stop at `level` (the first Ctrl-C is `Gracefully`); `stop` sees later ones.
    fn stop<'a>(&'a mut self, level: StopLevel, stop: &'a mut Stop) -> BoxFuture<'a, AfterStop>;

    /// The outputs of a job that succeeded, to record.
    fn outputs(&mut self) -> BoxFuture<'_, Result<Vec<Output>, NodeError>>;
}

/// What [`drive`] needs besides the job.
pub struct Drive {
    pub node: String,
    /// The attempt to start with (as recorded).
    pub attempt: Attempt,
    pub journal: Arc<Mutex<Journal>>,
    pub reporter: Arc<Reporter>,
    pub stop: Stop,
}

/// Runs a prepared job to its end, from the recorded attempt: new attempts for the failures the
/// target says are worth one, each recorded (number and name) before it starts. Returns the
/// outputs to record.
pub async fn drive(mut job: Box<dyn Job>, mut d: Drive) -> Result<Vec<Output>, NodeError> {
    d.reporter.start(&d.node, Work::Process);
    let result = attempts(job.as_mut(), &mut d).await;
    d.reporter.finish(&d.node);
    result
}

async fn attempts(job: &mut dyn Job, d: &mut Drive) -> Result<Vec<Output>, NodeError> {
    let first = d.attempt.number;
    loop {
        job.start(&d.attempt, &mut d.stop).await?;
        if d.attempt.name.is_some() && !d.attempt.created {
            d.attempt.created = true;
            record_created(&d.journal, &d.node)?;
        }
        let mut asked = false;
        let ended = loop {
            tokio::select! {
                ended = job.wait() => break ended?,
                level = d.stop.next() => {
                    if level == StopLevel::No {
                        continue;
                    }
                    match job.stop(level, &mut d.stop).await {
                        AfterStop::Wait => asked = true,
                        AfterStop::Detached => return Err(NodeError::Detached),
                        AfterStop::Failed(message) => return Err(NodeError::Failed(message)),
                    }
                }
            }
        };
        let failure = match ended {
            Ended::Succeeded => return job.outputs().await,
            Ended::Stopped => return Err(NodeError::Interrupted),
            Ended::Failed(_) if asked => return Err(NodeError::Interrupted),
            Ended::Failed(failure) => failure,
        };
        let tried = d.attempt.number - first + 1;
        if tried >= failure.attempts {
            return Err(NodeError::Failed(failure.message));
        }
        let wait = jitter(failure.backoff.mul_f64(f64::from(1u32 << tried.min(5))));
        d.reporter.line(&format!("  {}: {}; a new attempt in {:.0} s", d.node, failure.summary, wait.as_secs_f64()));
        if d.stop.wait_or(wait).await {
            return Err(NodeError::Interrupted);
        }
        let number = d.attempt.number + 1;
        d.attempt = Attempt { number, name: job.attempt_name(number), resume: true, created: false };
        record_attempt(&d.journal, &d.node, &d.attempt)?;
    }
}

/// Records that the job of the current attempt exists.
fn record_created(journal: &Mutex<Journal>, node: &str) -> Result<(), NodeError> {
    let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut record) = journal.state().nodes.get(node).cloned() else {
        return Err(NodeError::Failed(format!("`{node}` has no record")));
    };
    record.job_created = true;
    journal.record(node, record).map_err(|e| NodeError::Failed(e.to_string()))
}

/// Records a new attempt (its number and name) before it starts.
fn record_attempt(journal: &Mutex<Journal>, node: &str, attempt: &Attempt) -> Result<(), NodeError> {
    let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut record) = journal.state().nodes.get(node).cloned() else {
        return Err(NodeError::Failed(format!("`{node}` has no record")));
    };
    record.attempt = attempt.number;
    record.job_name.clone_from(&attempt.name);
    record.job_created = false;
    record.status = Status::Running;
    record.started_at = journal::now();
    journal.record(node, record).map_err(|e| NodeError::Failed(e.to_string()))
}

/// Makes `path` an empty folder, clearing what was there.
pub(crate) fn fresh_dir(path: &std::path::Path) -> Result<(), StepError> {
    if path.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(path).map_err(|e| StepError(format!("cannot clear `{}`: {e}", path.display())))?;
    }
    std::fs::create_dir_all(path).map_err(|e| StepError(format!("cannot create `{}`: {e}", path.display())))
}

/// Every file under `base/rel`, as outputs named relative to `base` (`rel/...`), in path order,
/// with its digest.
pub(crate) fn collect_outputs(base: &std::path::Path, rel: &str, out: &mut Vec<Output>) -> Result<(), StepError> {
    let dir = base.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| StepError(format!("cannot read `{}`: {e}", dir.display())))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        if entry.path().is_dir() {
            collect_outputs(base, &child, out)?;
        } else {
            let (sha256, bytes) = journal::digest_file(&base.join(&child)).map_err(|e| StepError(e.to_string()))?;
            out.push(Output { path: child, sha256, bytes });
        }
    }
    Ok(())
}
