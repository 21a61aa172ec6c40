//! `tunec run` on the local target: walk the job graph in order, reuse what the journal says is
//! intact, run the rest, and record every attempt.
//!
//! The graph is already topological, so nodes are visited in its order, one at a time, up to the
//! end or to `--until`. Each node is either reused (same key, succeeded, outputs intact, per
//! [`journal::decide`]) or run, and the caller is told which with one line. A node also runs when
//! one of its inputs ran in this run and produced different outputs (a changed dataset file or
//! model directory, which no key captures). A run is recorded as `running` (attempt + 1) before the
//! work and as `succeeded` with its outputs, or `failed` with the error, after it; a failure stops
//! the walk.
//!
//! Data nodes are carried out by the data engine ([`data`]); job nodes (train, merge, evaluate) run
//! their entry script as a local process in an emulated `/opt/ml` ([`job`]), with the Python of
//! [`resolve_python`]. What a job reads is resolved before it is recorded as running: a Hub model
//! or a missing Python stops the walk as a setup error, with nothing recorded.

pub mod data;
pub mod job;

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use tunec_compiler::check::Program;
use tunec_compiler::lower::{Execution, JobGraph};

use crate::journal::{self, Decision, Journal, JournalError, NodeRecord, Reason, Status};

/// Why a run stopped with an error.
#[derive(Debug)]
pub enum RunError {
    /// `--until` names no node of the graph.
    UnknownNode { name: String, known: Vec<String> },
    /// The journal cannot be read or written.
    Journal(JournalError),
    /// A node failed; the failure is recorded in the journal.
    NodeFailed { node: String, message: String },
    /// A job node cannot start here (no Python, a Hub model); nothing is recorded.
    Setup { node: String, message: String },
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
}

/// What a local run needs besides the pipeline.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// `--python PATH`: the interpreter for the entry scripts, before `TUNEC_PYTHON` and the target's.
    pub python: Option<PathBuf>,
}

/// The Python that runs the entry scripts: `--python`, else `TUNEC_PYTHON`, else the pipeline's
/// `target local { python = "..." }` (a path with a `/` is relative to the pipeline's folder, a
/// bare name is looked up in `PATH`).
pub fn resolve_python(flag: Option<&Path>, program: &Program, base: &Path) -> Result<PathBuf, String> {
    let (python, origin) = if let Some(flag) = flag {
        (flag.to_path_buf(), "--python")
    } else if let Some(env) = std::env::var_os("TUNEC_PYTHON").filter(|v| !v.is_empty()) {
        (PathBuf::from(env), "TUNEC_PYTHON")
    } else if let Some(target) = program.target.fields.str("python") {
        let path = if target.contains('/') { base.join(target) } else { PathBuf::from(target) };
        (path, "`target local { python }`")
    } else {
        return Err("no Python to run the entry scripts with: pass `--python PATH`, set TUNEC_PYTHON, or write \
                    `target local { python = \"...\" }`. It needs the packages of stdlib/python/requirements.txt \
                    and torch 2.8.0, e.g. the virtualenv that .ci/venv.sh creates \
                    (`source .ci/venv.sh && tunec_venv && export TUNEC_PYTHON=$VENV/bin/python`); \
                    tunec does not provision one itself yet (a later version will)"
            .to_owned());
    };
    if python.components().count() > 1 && !python.is_file() {
        return Err(format!("the Python named by {origin}, `{}`, does not exist", python.display()));
    }
    Ok(python)
}

/// The index of the last node to visit: `until`'s, or the graph's last.
pub fn last_node(graph: &JobGraph, until: Option<&str>) -> Result<usize, RunError> {
    match until {
        None => Ok(graph.nodes.len().saturating_sub(1)),
        Some(name) => graph.nodes.iter().position(|n| n.name == name).ok_or_else(|| RunError::UnknownNode {
            name: name.to_owned(),
            known: graph.nodes.iter().map(|n| n.name.clone()).collect(),
        }),
    }
}

fn is_data(execution: &Execution) -> bool {
    matches!(execution, Execution::Model { .. } | Execution::Data { .. })
}

/// Runs `graph` (lowered from `program`, for the local target) up to `until`, with `base` the
/// pipeline's folder, recording in `journal` and writing one line per node to `out` (and a
/// summary line when a job ends).
pub fn run_local(
    program: &Program,
    graph: &JobGraph,
    base: &Path,
    until: Option<&str>,
    options: &LocalOptions,
    journal: &mut Journal,
    out: &mut dyn Write,
) -> Result<Outcome, RunError> {
    let last = last_node(graph, until)?;
    let mut python: Option<PathBuf> = None;
    // Nodes that ran in this run and whose outputs differ from the recorded ones.
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    for node in graph.nodes.iter().take(last + 1) {
        let previous = journal.state().nodes.get(&node.name).cloned();
        let reason = match journal::decide(previous.as_ref(), &node.key, base)? {
            Decision::Run(reason) => reason,
            Decision::Reuse => match node.deps.iter().find(|d| changed.contains(d.as_str())) {
                Some(dep) => Reason::InputRan(dep.clone()),
                None => {
                    let _ = writeln!(out, "reuse {}: same inputs, outputs intact", node.name);
                    continue;
                }
            },
        };
        let setup = |message: String| RunError::Setup { node: node.name.clone(), message };
        let job = if is_data(&node.execution) {
            None
        } else {
            let planned = job::plan(program, graph, node, base).map_err(setup)?;
            if python.is_none() {
                python = Some(resolve_python(options.python.as_deref(), program, base).map_err(setup)?);
            }
            Some(planned)
        };
        let _ = writeln!(out, "run {}: {reason}", node.name);
        let mut record = NodeRecord {
            key: node.key.clone(),
            status: Status::Running,
            attempt: previous.as_ref().map_or(0, |p| p.attempt) + 1,
            job_name: None,
            outputs: Vec::new(),
            started_at: journal::now(),
            finished_at: None,
            error: None,
        };
        journal.record(&node.name, record.clone())?;
        let result = match (&job, &python) {
            (Some(job), Some(python)) => {
                let resume = matches!(reason, Reason::NotSucceeded(_));
                job::run(job, python, base, &graph.pipeline, resume, out).map_err(|e| e.to_string())
            }
            _ => data::run_node(program, &node.name, &node.key, base).map_err(|e| e.to_string()),
        };
        record.finished_at = Some(journal::now());
        match result {
            Ok(outputs) => {
                let differs = matches!(reason, Reason::InputRan(_))
                    || previous.as_ref().is_none_or(|p| p.status != Status::Succeeded || p.outputs != outputs);
                record.status = Status::Succeeded;
                record.outputs = outputs;
                journal.record(&node.name, record)?;
                if differs {
                    changed.insert(&node.name);
                }
            }
            Err(message) => {
                record.status = Status::Failed;
                record.error = Some(message.clone());
                journal.record(&node.name, record)?;
                return Err(RunError::NodeFailed { node: node.name.clone(), message });
            }
        }
    }
    Ok(Outcome::Done)
}
