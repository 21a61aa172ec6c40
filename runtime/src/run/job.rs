//! The job nodes of a local run (train, merge, evaluate): the entry scripts run as local processes
//! in an emulated SageMaker layout, as docs/entry-scripts.md §1 describes.
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
//! and the Hub offline. Its stdout and stderr go to `.tunec/<pipeline>/logs/<node>.log`. The
//! outputs recorded are every file under `model/` and `output/data/`; a failure is recorded with
//! the reason the script wrote to its failure file.
//!
//! Checkpoints are kept only for a rerun of a node whose previous run did not succeed with the same
//! key (train.py then resumes from the last complete one); any other run starts from an empty
//! folder.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use tunec_compiler::check::Program;
use tunec_compiler::lower::{job_channels, ChannelSource, Execution, JobGraph, JobNode};

use super::data::StepError;
use crate::bundle;
use crate::journal::{self, Output};

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
pub fn plan(program: &Program, graph: &JobGraph, node: &JobNode, base: &Path) -> Result<JobPlan, String> {
    let Execution::LocalScript { script, args_yaml } = &node.execution else {
        return Err(format!("`{}` is not a local job", node.name));
    };
    let typed = program.node(&node.name).ok_or_else(|| format!("the program has no node `{}`", node.name))?;
    let abs = absolute(base)?;
    let pipeline = &graph.pipeline;
    let mut channels = Vec::new();
    for channel in job_channels(program, typed) {
        let target = match &channel.source {
            ChannelSource::Hub { node: model, id } => {
                return Err(format!(
                    "`{}` starts from `{model}`, the Hugging Face Hub model `{id}`, and the local target does not \
                     download models: download it (`huggingface-cli download {id} --local-dir models/{model}`) \
                     and use `local_model(\"models/{model}\")`",
                    node.name
                ));
            }
            ChannelSource::LocalModel(model) => {
                let path = program.node(model).and_then(|m| m.fields.str("path")).unwrap_or_default();
                abs.join(path)
            }
            ChannelSource::JobOutput(job) => abs.join(job_root(pipeline, job, key_of(graph, job)?)).join("model"),
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
        channels.push((channel.name.to_owned(), target));
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
fn num_gpus() -> usize {
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
fn bundle_dir(abs: &Path, pipeline: &str) -> Result<PathBuf, StepError> {
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

fn fresh_dir(path: &Path) -> Result<(), StepError> {
    if path.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(path).map_err(|e| StepError(format!("cannot clear `{}`: {e}", path.display())))?;
    }
    std::fs::create_dir_all(path).map_err(|e| StepError(format!("cannot create `{}`: {e}", path.display())))
}

/// Every file under `dir` (relative to `base` as `rel`), in path order, with its digest.
fn collect_outputs(base: &Path, rel: &str, out: &mut Vec<Output>) -> Result<(), StepError> {
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

/// The last non-empty line of the log, for a script that failed without a failure file.
fn last_log_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_owned())
}

/// Runs a planned job with `python`; `resume` keeps the checkpoints of an unfinished earlier run.
/// `summary` receives one line when the script ends. Returns the outputs to record.
pub fn run(
    job: &JobPlan,
    python: &Path,
    base: &Path,
    pipeline: &str,
    resume: bool,
    summary: &mut dyn std::io::Write,
) -> Result<Vec<Output>, StepError> {
    let abs = absolute(base).map_err(StepError)?;
    let code = bundle_dir(&abs, pipeline)?;
    let root = abs.join(&job.root);
    let data = root.join("input/data");
    fresh_dir(&root.join("input"))?;
    fresh_dir(&data)?;
    for (name, target) in &job.channels {
        if !target.exists() {
            return Err(StepError(format!("input channel `{name}`: `{}` does not exist", target.display())));
        }
        std::os::unix::fs::symlink(target, data.join(name))
            .map_err(|e| StepError(format!("cannot link channel `{name}` to `{}`: {e}", target.display())))?;
    }
    let config = data.join("config/args.yaml");
    let root_text = root.display().to_string();
    let args = job.args_yaml.replace("\"/opt/ml/", &format!("\"{root_text}/"));
    journal::write_atomic(&config, args.as_bytes()).map_err(|e| StepError(e.to_string()))?;
    fresh_dir(&root.join("model"))?;
    fresh_dir(&root.join("output"))?;
    fresh_dir(&root.join("output/data"))?;
    let checkpoints = root.join("checkpoints");
    if resume {
        std::fs::create_dir_all(&checkpoints).map_err(|e| StepError(e.to_string()))?;
    } else {
        fresh_dir(&checkpoints)?;
    }

    let log_rel = format!(".tunec/{pipeline}/logs/{}.log", job.node);
    let log_path = abs.join(&log_rel);
    let log_err = |e: std::io::Error| StepError(format!("cannot write the log `{}`: {e}", log_path.display()));
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(log_err)?;
    }
    let mut log = std::fs::File::create(&log_path).map_err(log_err)?;
    let script = code.join(&job.script);
    let _ = writeln!(
        log,
        "== tunec: {} {} --config {} (in {})",
        python.display(),
        script.display(),
        config.display(),
        root.display()
    );
    let mut command = Command::new(python);
    command
        .arg(&script)
        .arg("--config")
        .arg(&config)
        .current_dir(&code)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(log_err)?)
        .stderr(log);
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
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("PYTHONUNBUFFERED", "1");
    for (name, _) in &job.channels {
        command.env(format!("SM_CHANNEL_{}", name.to_uppercase()), path(data.join(name)));
    }
    command.env("SM_CHANNEL_CONFIG", path(data.join("config")));

    let started = Instant::now();
    let status = command.status().map_err(|e| StepError(format!("cannot start `{}`: {e}", python.display())))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".to_owned(),
        };
        let reason = std::fs::read_to_string(root.join("output/failure"))
            .ok()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .or_else(|| last_log_line(&log_path))
            .unwrap_or_else(|| "no failure reason was written".to_owned());
        let _ = writeln!(summary, "  {} failed after {seconds:.1} s ({how}); log: {log_rel}", job.node);
        return Err(StepError(format!("{reason} ({} {how}; log: {log_rel})", job.script)));
    }
    let mut outputs = Vec::new();
    collect_outputs(base, &format!("{}/model", job.root), &mut outputs)?;
    collect_outputs(base, &format!("{}/output/data", job.root), &mut outputs)?;
    let _ = writeln!(summary, "  {} done in {seconds:.1} s, {} output files; log: {log_rel}", job.node, outputs.len());
    Ok(outputs)
}
