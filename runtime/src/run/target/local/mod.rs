//! The local target: the job nodes (train, merge, evaluate) run their entry scripts as local
//! processes in an emulated SageMaker layout, as docs/entry-scripts.md §1 describes, one at a
//! time (they share the machine's accelerator). The Python comes from [`python`]: one the user
//! names, or a managed environment provisioned on first use.
//!
//! For a node with key `K`, the folder `.tunec/<pipeline>/jobs/<node>/<K>/` stands in for `/opt/ml`:
//!
//! - `input/data/<channel>/`: symbolic links to what the job reads: the split's `train`, `val` or
//!   `test` folder as the data step wrote it, a `local_model` directory (`base_model` or `model`),
//!   or another job's `model/` folder (`adapter`, or a merged `model`);
//! - `input/data/config/args.yaml`: the lowered args.yaml, with every `"/opt/ml/` path moved under
//!   the folder;
//! - `model/`, `output/data/` (the job's outputs) and `checkpoints/` (`TUNEC_CHECKPOINT_DIR`).
//!
//! The script bundle is written once per digest to `.tunec/<pipeline>/code/<digest[..16]>/`, and
//! the script runs from there as `<python> <script> --config <args.yaml>` with the `SM_*`
//! variables pointing into the folder, `SM_NUM_GPUS` the number of NVIDIA devices of the machine,
//! and the Hub offline. Its stdout and stderr go to `.tunec/<pipeline>/logs/<node>.log` and, live,
//! to the run's progress display. The outputs recorded are every file under `model/` and
//! `output/data/`; a failure is recorded with the reason the script wrote to its failure file.
//!
//! The script runs in its own process group, so a Ctrl-C reaches tunec only; tunec then sends it
//! SIGTERM (train.py saves a checkpoint and exits) and records the node as interrupted. If tunec is
//! killed instead, the script notices that its parent is gone and stops the same way
//! (`TUNEC_PARENT_PID`), its output going to the log (`TUNEC_JOB_LOG`) rather than to the pipes
//! nobody reads any more, and the next run waits for it on the job's lock (`TUNEC_JOB_LOCK`)
//! before touching the folder: see `stdlib/python/tunec_entry/supervisor.py`. A resumed job
//! appends to the log of the attempt it continues.
//!
//! Checkpoints are kept only for a rerun of a node whose previous run did not succeed with the same
//! key (train.py then resumes from the last complete one); any other run starts from an empty
//! folder.
//!
//! What a job reads is resolved when it is prepared, before anything is recorded: a Hub model (the
//! local target does not download models) or a split read whole stops the run as a setup error.

pub mod python;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tunec_compiler::lower::{ChannelSource, Execution, JobGraph, JobNode};

use super::{
    collect_outputs, fresh_dir, AfterStop, Attempt, BoxFuture, Ended, Failure, Job, JobInput, PrepareError, Target,
};
use crate::bundle;
use crate::journal::{self, Output};
use crate::ledger::{read_usage, Used, USAGE_FILE};
use crate::run::data::StepError;
use crate::run::progress::Reporter;
use crate::run::{NodeError, Stop, StopLevel};
use python::PythonChoice;

/// The local target of one run.
pub struct LocalTarget {
    /// The pipeline's folder.
    base: PathBuf,
    reporter: Arc<Reporter>,
    /// `--python PATH`, before `TUNEC_PYTHON` and the target's `python`.
    flag: Option<PathBuf>,
    /// The interpreter, once chosen (or provisioned) for the first job.
    python: tokio::sync::Mutex<Option<PathBuf>>,
}

impl LocalTarget {
    pub fn new(base: &Path, reporter: Arc<Reporter>, python: Option<PathBuf>) -> LocalTarget {
        LocalTarget { base: base.to_path_buf(), reporter, flag: python, python: tokio::sync::Mutex::new(None) }
    }

    /// The entry scripts' interpreter: named, or the managed environment (provisioned once, which
    /// takes minutes the first time and listens to `stop` meanwhile).
    pub(crate) async fn python(&self, graph: &JobGraph, stop: Stop) -> Result<PathBuf, PrepareError> {
        let mut python = self.python.lock().await;
        if let Some(path) = python.as_ref() {
            return Ok(path.clone());
        }
        let configured = graph.target_fields().str("python");
        let path = match python::choose(self.flag.as_deref(), configured, &self.base).map_err(PrepareError::Setup)? {
            PythonChoice::Named { path, .. } => path,
            PythonChoice::Managed => python::managed(self.reporter.clone(), stop).await.map_err(|e| match e {
                NodeError::Failed(message) => PrepareError::Setup(message),
                NodeError::Interrupted | NodeError::Detached => PrepareError::Interrupted,
            })?,
        };
        *python = Some(path.clone());
        Ok(path)
    }
}

impl Target for LocalTarget {
    fn describe(&self) -> &'static str {
        "the local target"
    }

    fn max_jobs(&self) -> usize {
        1
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn prepare<'a>(&'a self, input: JobInput<'a>, stop: Stop) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>> {
        Box::pin(async move {
            let plan = plan(input.graph, input.node, &self.base).map_err(PrepareError::Setup)?;
            let python = self.python(input.graph, stop).await?;
            let job: Box<dyn Job> = Box::new(LocalJob {
                plan,
                python,
                base: self.base.clone(),
                pipeline: input.graph.pipeline.clone(),
                reporter: self.reporter.clone(),
                running: None,
            });
            Ok(job)
        })
    }
}

/// A job ready to run: its script, args.yaml and channels, all resolved.
#[derive(Debug, Clone)]
pub struct JobPlan {
    node: String,
    script: String,
    args_yaml: String,
    /// The emulated `/opt/ml`, relative to the pipeline's folder.
    root: String,
    /// (channel name, absolute path of what it links to).
    channels: Vec<(String, PathBuf)>,
}

/// The pipeline's folder as an absolute path (symbolic links and args.yaml need one).
fn absolute(base: &Path) -> Result<PathBuf, String> {
    let base = if base.as_os_str().is_empty() { Path::new(".") } else { base };
    std::path::absolute(base).map_err(|e| format!("cannot resolve `{}`: {e}", base.display()))
}

fn key_of<'g>(graph: &'g JobGraph, node: &str) -> Result<&'g str, String> {
    graph.node(node).map(|n| n.key.as_str()).ok_or_else(|| format!("the job graph has no node `{node}`"))
}

/// Where the job of `node` (with key `key`) keeps its emulated `/opt/ml`, relative to the
/// pipeline's folder.
pub fn job_root(pipeline: &str, node: &str, key: &str) -> String {
    format!(".tunec/{pipeline}/jobs/{node}/{key}")
}

/// Resolves a job node's channels. An error here is a problem of the pipeline or of the machine,
/// found before anything runs (a Hub model, a split without the part a job reads).
pub fn plan(graph: &JobGraph, node: &JobNode, base: &Path) -> Result<JobPlan, String> {
    let Execution::LocalScript { script, args_yaml, channels: inputs } = &node.execution else {
        return Err(format!("`{}` is not a local job", node.name));
    };
    let abs = absolute(base)?;
    let pipeline = &graph.pipeline;
    let mut channels = Vec::new();
    for channel in inputs {
        let target = match &channel.source {
            ChannelSource::Hub { node: model, id } => {
                return Err(format!(
                    "`{}` starts from `{model}`, the Hugging Face Hub model `{id}`, and the local target does not \
                     download models: download it (`huggingface-cli download {id} --local-dir models/{model}`) \
                     and use `local_model(\"models/{model}\")`",
                    node.name
                ));
            }
            ChannelSource::LocalModel { node: model } => {
                let path = graph.node(model).and_then(|m| m.fields().str("path")).unwrap_or_default();
                abs.join(path)
            }
            ChannelSource::JobOutput { node: job } => {
                abs.join(job_root(pipeline, job, key_of(graph, job)?)).join("model")
            }
            ChannelSource::Data { node: split, part: Some(part) } => {
                abs.join(format!(".tunec/{pipeline}/data/{split}/{}/{part}", key_of(graph, split)?))
            }
            ChannelSource::Data { node: split, part: None } => {
                return Err(format!(
                    "`{}` reads the whole split `{split}`; the local target gives jobs one part: name it \
                     (`{split}.train`, `{split}.val` or `{split}.test`)",
                    node.name
                ));
            }
        };
        channels.push((channel.name.clone(), target));
    }
    Ok(JobPlan {
        node: node.name.clone(),
        script: script.clone(),
        args_yaml: args_yaml.clone(),
        root: job_root(pipeline, &node.name, &node.key),
        channels,
    })
}

/// The number of NVIDIA GPUs of this machine (`/dev/nvidia<N>`), 0 when `CUDA_VISIBLE_DEVICES` is
/// set and empty.
pub fn num_gpus() -> usize {
    if std::env::var_os("CUDA_VISIBLE_DEVICES").is_some_and(|v| v.is_empty()) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/dev") else { return 0 };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix("nvidia").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count()
}

/// Writes the script bundle under `.tunec/<pipeline>/code/<digest[..16]>/` unless a complete copy
/// is there; returns its absolute path.
pub(crate) fn bundle_dir(abs: &Path, pipeline: &str) -> Result<PathBuf, StepError> {
    let digest = bundle::digest();
    let dir = abs.join(format!(".tunec/{pipeline}/code/{}", &digest[..16]));
    let stamp = dir.join(".tunec-complete");
    if stamp.is_file() {
        return Ok(dir);
    }
    let io = |e: std::io::Error| StepError(format!("cannot write the script bundle to `{}`: {e}", dir.display()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    bundle::write(&dir).map_err(io)?;
    std::fs::write(&stamp, &digest).map_err(io)?;
    Ok(dir)
}

/// The last non-empty line of the log, for a script that failed without a failure file.
fn last_log_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_owned())
}

/// How long a run waits for the process of an earlier, killed run of the same job to stop (it is
/// saving a checkpoint) before giving up.
const ORPHAN_WAIT: Duration = Duration::from_secs(600);

/// Waits until no process holds the job's lock (`<root>/.job.lock`, held by the entry script for
/// its whole life, see `tunec_entry/supervisor.py`): the process of a killed earlier run may still
/// be saving a checkpoint into this folder.
async fn wait_for_orphan(lock: &Path, node: &str, reporter: &Reporter, stop: &mut Stop) -> Result<(), NodeError> {
    let io = |e: std::io::Error| NodeError::Failed(format!("cannot use the job lock `{}`: {e}", lock.display()));
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(lock).map_err(io)?;
    let started = Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = std::fs::read_to_string(lock).unwrap_or_default().trim().to_owned();
        if !said {
            reporter.line(&format!(
                "  {node}: waiting for the process of an earlier run (pid {holder}) to stop; it is saving its checkpoint"
            ));
            said = true;
        }
        if started.elapsed() > ORPHAN_WAIT {
            return Err(NodeError::Failed(format!(
                "the process of an earlier run of `{node}` (pid {holder}) still runs after {} s; stop it \
                 (`kill {holder}`) and run again",
                ORPHAN_WAIT.as_secs()
            )));
        }
        if stop.wait_or(Duration::from_millis(200)).await {
            return Err(NodeError::Interrupted);
        }
    }
}

/// Copies a child's output to the log file and, split into lines at `\n` and `\r` (progress bars),
/// to the reporter.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    log: Arc<Mutex<std::fs::File>>,
    reporter: Arc<Reporter>,
    node: String,
) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&buf[..n]);
        }
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                reporter.log(&node, &String::from_utf8_lossy(&line));
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        reporter.log(&node, &String::from_utf8_lossy(&line));
    }
}

/// A local job: its plan, and the process once started.
struct LocalJob {
    plan: JobPlan,
    python: PathBuf,
    base: PathBuf,
    pipeline: String,
    reporter: Arc<Reporter>,
    running: Option<Running>,
}

/// A started script.
struct Running {
    child: tokio::process::Child,
    /// The tasks copying its stdout and stderr; `None` once they have ended.
    pumps: [Option<tokio::task::JoinHandle<()>>; 2],
    started: Instant,
    /// Seconds it ran, once it ended.
    seconds: f64,
    log_path: PathBuf,
    log_rel: String,
    root: PathBuf,
    /// The most urgent stop it was asked for.
    asked: StopLevel,
}

impl LocalJob {
    /// Sets up the emulated `/opt/ml` (keeping the checkpoints of an unfinished earlier run when
    /// `resume`) and starts the script. Its output goes to its log file and, live, to the reporter.
    async fn spawn(&mut self, resume: bool, stop: &mut Stop) -> Result<Running, NodeError> {
        let job = &self.plan;
        let failed = |e: StepError| NodeError::Failed(e.0);
        let abs = absolute(&self.base).map_err(NodeError::Failed)?;
        let root = abs.join(&job.root);
        let lock = root.join(".job.lock");
        wait_for_orphan(&lock, &job.node, &self.reporter, stop).await?;
        let code = bundle_dir(&abs, &self.pipeline).map_err(failed)?;
        let data = root.join("input/data");
        fresh_dir(&root.join("input")).map_err(failed)?;
        fresh_dir(&data).map_err(failed)?;
        for (name, target) in &job.channels {
            if !target.exists() {
                return Err(NodeError::Failed(format!(
                    "input channel `{name}`: `{}` does not exist",
                    target.display()
                )));
            }
            std::os::unix::fs::symlink(target, data.join(name)).map_err(|e| {
                NodeError::Failed(format!("cannot link channel `{name}` to `{}`: {e}", target.display()))
            })?;
        }
        let config = data.join("config/args.yaml");
        let root_text = root.display().to_string();
        let args = job.args_yaml.replace("\"/opt/ml/", &format!("\"{root_text}/"));
        journal::write_atomic(&config, args.as_bytes()).map_err(|e| NodeError::Failed(e.to_string()))?;
        for dir in ["model", "output", "output/data"] {
            fresh_dir(&root.join(dir)).map_err(failed)?;
        }
        let checkpoints = root.join("checkpoints");
        if resume {
            std::fs::create_dir_all(&checkpoints).map_err(|e| NodeError::Failed(e.to_string()))?;
        } else {
            fresh_dir(&checkpoints).map_err(failed)?;
        }

        let log_rel = format!(".tunec/{}/logs/{}.log", self.pipeline, job.node);
        let log_path = abs.join(&log_rel);
        let log_err =
            |e: std::io::Error| NodeError::Failed(format!("cannot write the log `{}`: {e}", log_path.display()));
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(log_err)?;
        }
        // A resumed job keeps the log of the attempt it continues (and what an orphaned script of a
        // killed run appended to it while saving its checkpoint).
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resume)
            .truncate(!resume)
            .open(&log_path)
            .map_err(log_err)?;
        let script = code.join(&job.script);
        let python = &self.python;
        let _ = writeln!(
            log,
            "== tunec: {} {} --config {} (in {})",
            python.display(),
            script.display(),
            config.display(),
            root.display()
        );
        let mut command = tokio::process::Command::new(python);
        command
            .arg(&script)
            .arg("--config")
            .arg(&config)
            .current_dir(&code)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C in the terminal reaches tunec only, which then asks
            // the script to stop with SIGTERM (train.py saves a checkpoint first).
            .process_group(0)
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SM_") {
                command.env_remove(key);
            }
        }
        let path = |p: PathBuf| p.into_os_string();
        command
            .env("SM_INPUT_DIR", path(root.join("input")))
            .env("SM_INPUT_DATA_DIR", path(data.clone()))
            .env("SM_INPUT_CONFIG_DIR", path(root.join("input/config")))
            .env("SM_MODEL_DIR", path(root.join("model")))
            .env("SM_OUTPUT_DIR", path(root.join("output")))
            .env("SM_OUTPUT_DATA_DIR", path(root.join("output/data")))
            .env("SM_NUM_GPUS", num_gpus().to_string())
            .env(
                "SM_RESOURCE_CONFIG",
                r#"{"current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": "local"}"#,
            )
            .env("TUNEC_CHECKPOINT_DIR", path(checkpoints))
            .env("TUNEC_PARENT_PID", std::process::id().to_string())
            .env("TUNEC_JOB_LOCK", path(lock.clone()))
            .env("TUNEC_JOB_LOG", path(log_path.clone()))
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .env("PYTHONUNBUFFERED", "1");
        for (name, _) in &job.channels {
            command.env(format!("SM_CHANNEL_{}", name.to_uppercase()), path(data.join(name)));
        }
        command.env("SM_CHANNEL_CONFIG", path(data.join("config")));

        let started = Instant::now();
        let mut child =
            command.spawn().map_err(|e| NodeError::Failed(format!("cannot start `{}`: {e}", python.display())))?;
        let log = Arc::new(Mutex::new(log));
        let reporter = &self.reporter;
        let pumps = [
            child.stdout.take().map(|o| tokio::spawn(pump(o, log.clone(), reporter.clone(), job.node.clone()))),
            child.stderr.take().map(|e| tokio::spawn(pump(e, log.clone(), reporter.clone(), job.node.clone()))),
        ];
        Ok(Running { child, pumps, started, seconds: 0.0, log_path, log_rel, root, asked: StopLevel::No })
    }
}

impl Job for LocalJob {
    fn attempt_name(&self, _number: u32) -> Option<String> {
        None
    }

    fn start<'a>(&'a mut self, attempt: &'a Attempt, stop: &'a mut Stop) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(async move {
            let running = self.spawn(attempt.resume, stop).await?;
            self.running = Some(running);
            Ok(())
        })
    }

    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, NodeError>> {
        Box::pin(async move {
            let node = &self.plan.node;
            let script = &self.plan.script;
            let python = self.python.display().to_string();
            let Some(run) = self.running.as_mut() else {
                return Err(NodeError::Failed(format!("`{node}` was not started")));
            };
            let status =
                run.child.wait().await.map_err(|e| NodeError::Failed(format!("cannot wait for `{python}`: {e}")))?;
            for pump in &mut run.pumps {
                if let Some(handle) = pump {
                    let _ = handle.await;
                    *pump = None;
                }
            }
            self.reporter.keep_last_lines(node);
            run.seconds = run.started.elapsed().as_secs_f64();
            let (seconds, log_rel) = (run.seconds, &run.log_rel);
            if status.success() {
                return Ok(Ended::Succeeded);
            }
            if run.asked != StopLevel::No {
                self.reporter.line(&format!("  {node} stopped after {seconds:.1} s; log: {log_rel}"));
                return Ok(Ended::Stopped);
            }
            let how = match status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            };
            let reason = std::fs::read_to_string(run.root.join("output/failure"))
                .ok()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .or_else(|| last_log_line(&run.log_path))
                .unwrap_or_else(|| "no failure reason was written".to_owned());
            self.reporter.line(&format!("  {node} failed after {seconds:.1} s ({how}); log: {log_rel}"));
            Ok(Ended::Failed(Failure::fatal(format!("{reason} ({script} {how}; log: {log_rel})"))))
        })
    }

    /// The first stop sends the script SIGTERM (train.py saves a checkpoint and exits), the
    /// second kills it.
    fn stop<'a>(&'a mut self, level: StopLevel, _stop: &'a mut Stop) -> BoxFuture<'a, AfterStop> {
        Box::pin(async move {
            let Some(run) = self.running.as_mut() else { return AfterStop::Wait };
            run.asked = run.asked.max(level);
            match level {
                StopLevel::Gracefully => {
                    if let Some(pid) = run.child.id().and_then(|p| i32::try_from(p).ok()) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                    }
                }
                StopLevel::Now => {
                    let _ = run.child.start_kill();
                }
                StopLevel::No => {}
            }
            AfterStop::Wait
        })
    }

    /// Every file under `model/` and `output/data/`.
    fn outputs(&mut self) -> BoxFuture<'_, Result<Vec<Output>, NodeError>> {
        Box::pin(async move {
            let job = &self.plan;
            let failed = |e: StepError| NodeError::Failed(e.0);
            let mut outputs = Vec::new();
            collect_outputs(&self.base, &format!("{}/model", job.root), &mut outputs).map_err(failed)?;
            collect_outputs(&self.base, &format!("{}/output/data", job.root), &mut outputs).map_err(failed)?;
            let (seconds, log_rel) = self.running.as_ref().map(|r| (r.seconds, r.log_rel.as_str())).unwrap_or_default();
            self.reporter.line(&format!(
                "  {} done in {seconds:.1} s, {} output files; log: {log_rel}",
                job.node,
                outputs.len()
            ));
            Ok(outputs)
        })
    }

    /// The script's `usage.json`, when it wrote a readable one.
    fn usage(&mut self) -> BoxFuture<'_, Option<Used>> {
        Box::pin(async move {
            let rel = format!("{}/output/data/{USAGE_FILE}", self.plan.root);
            match read_usage(&self.base.join(&rel)) {
                Ok(used) => Some(Used { process_seconds: self.running.as_ref().map(|r| r.seconds), ..used }),
                Err(e) => {
                    self.reporter.line(&format!("  {}: no usage recorded: `{rel}`: {e}", self.plan.node));
                    None
                }
            }
        })
    }
}
