//! `tunec run`: execute a job graph, on any target, resumably.
//!
//! The executor ([`executor`]) schedules the graph's nodes as their inputs become ready, reuses
//! what the journal says is intact, runs the rest (independent nodes at the same time) and records
//! every attempt. It reads the job graph alone, never the typed program, so a `job_graph.json`
//! written by `tunec build` runs the same way as a `.tune` file.
//!
//! Data nodes (model, dataset, chat, split) run here on every target, in the data engine
//! ([`data`]), after their remote sources are brought up to date ([`sources`]: `s3://` objects,
//! the Hugging Face Hub through [`hub`]). Job nodes (train, merge, evaluate) run on the pipeline's
//! target ([`target`]): entry scripts as local processes, or SageMaker training jobs. The executor
//! calls a target through one interface (prepare a job's inputs, start or re-attach, wait, stop,
//! collect its outputs), so it has no branch for any target; [`target`] says how to add one.
//!
//! A failure lets the nodes already running finish and starts no new one. Ctrl-C (or SIGTERM) does
//! the same, asking running jobs to stop (train.py saves a checkpoint) and data steps to stop
//! between batches; a second Ctrl-C stops them now. Either way the journal is written before tunec
//! exits, and the next run resumes: an interrupted training continues from its checkpoint.

pub mod aws;
pub mod data;
pub mod data_report;
mod executor;
pub mod hub;
pub mod progress;
pub mod s3;
pub mod schedule;
pub mod secrets;
pub mod smoke;
pub mod sources;
pub mod summary;
pub mod target;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

use tokio::sync::watch;
use tunec_compiler::lower::JobGraph;

use crate::journal::JournalError;
pub use executor::run;
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
    /// A stop that is never requested, and its sender (tests and callers that stop on their own).
    pub fn channel() -> (watch::Sender<StopLevel>, Stop) {
        let (tx, rx) = watch::channel(StopLevel::No);
        (tx, Stop(rx))
    }

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

/// What a run needs besides the graph, its folder and its target.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--until NODE`: run this node and what it depends on only.
    pub until: Option<String>,
    /// Listen for Ctrl-C and SIGTERM (the command line does; tests that drive the library do not).
    pub signals: bool,
    /// Stop requests from the caller, taken as Ctrl-C is (a library caller's way to stop a run).
    pub stop: Option<Stop>,
    /// Where `s3://` sources and Secrets Manager are reached: the region (else the AWS
    /// configuration's) and one endpoint for every AWS service (a local AWS API server).
    pub aws: aws::Settings,
    /// Each job node's estimate, recorded in the journal next to what the job used
    /// ([`crate::ledger`]); nodes without one record none.
    pub estimates: crate::ledger::EstimateSource,
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
    graph.nodes.iter().enumerate().any(|(i, n)| dag.covers(i) && n.is_job())
}

/// `base` ± 20%, from a per-call random seed (std's hasher keys), so that many runs do not poll or
/// retry in step.
pub fn jitter(base: Duration) -> Duration {
    let random = RandomState::new().build_hasher().finish();
    let factor = 0.8 + 0.4 * ((random >> 11) as f64 / (1u64 << 53) as f64);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10)).as_secs_f64();
            assert!((8.0..=12.0).contains(&d), "{d}");
        }
    }
}
