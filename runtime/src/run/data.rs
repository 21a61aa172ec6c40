//! The data nodes of a run, on every target: what each one reads, writes and records as its
//! outputs. Everything is read from the job graph: each node's normalised configuration and the
//! nodes it references.
//!
//! - `model`: a `local_model` directory's `config.json`, `tokenizer.json`, `tokenizer_config.json`
//!   (and `chat_template.jinja`, `generation_config.json` and weight index files when present) are
//!   recorded with their digests, and its weights (`*.safetensors`, `*.bin`, `*.pt`, `*.pth`,
//!   `*.gguf`) by size and modification time, so that a changed model runs its dependents again.
//!   A Hub model that a chat node uses as its tokenizer records its local copy of the tokenizer's
//!   files (downloaded by the executor, [`super::hub`]); one that none uses records nothing (its
//!   jobs download it).
//! - `dataset`: a local `file(...)` is recorded with its digest; an `s3://` object is read from its
//!   local copy under `.tunec/<pipeline>/sources/` (downloaded first, [`super::sources`]); an
//!   `hf_dataset` split from its Parquet shards under `.tunec/<pipeline>/sources/hf/`
//!   ([`super::hub`]). Each copy is what is recorded.
//! - `chat`: nothing of its own; its settings are used by the split below.
//! - `split`: the data engine's `prepare` runs the chat node's dataset through the chat template and
//!   tokenizer into `.tunec/<pipeline>/data/<split>/<key>/`, and `profile.json` is copied to
//!   `.tunec/<pipeline>/profiles/<chat>.json`, where `tunec check` reads it for estimates. A split
//!   that no job could train on fails here ([`data_report::check_trainable`]). `TUNEC_DATA_THREADS`
//!   and `TUNEC_DATA_BATCH_ROWS` set the step's threads and batch size; its files are the same
//!   bytes whatever they are.
//!
//! Output paths are relative to the pipeline's folder (`base`), as the journal records them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tunec_compiler::check::columns::parse_type_text;
use tunec_compiler::lower::{JobGraph, JobNode};

use super::data_report;
use super::hub::{self, Manifest};
use crate::data::conversation::{ChatFields, ChatSpec};
use crate::data::prepare::{prepare, PrepareConfig, Split, SplitFractions, StepControl, TrainOn};
use crate::data::source::{parse_split, BadRowPolicy, Origin, Schema, SchemaColumn, SourceSpec, SplitSlice};
use crate::data::tokenize::{ChatTokenizer, OverflowPolicy};
use crate::journal::{self, Output, Reason};

/// Why a data node failed, as the journal records it and the run prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError(pub String);

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepError {}

fn fail<T>(message: impl Into<String>) -> Result<T, StepError> {
    Err(StepError(message.into()))
}

fn err(e: impl fmt::Display) -> StepError {
    StepError(e.to_string())
}

/// Where a pipeline's data-step outputs go, relative to the pipeline's folder.
fn tunec_dir(pipeline: &str) -> String {
    format!(".tunec/{pipeline}")
}

/// A recorded output: `rel` (relative to `base`) with its digest.
fn output(base: &Path, rel: &str) -> Result<Output, StepError> {
    let (sha256, bytes) = journal::digest_file(&base.join(rel)).map_err(err)?;
    Ok(Output { path: rel.to_owned(), sha256, bytes })
}

fn referenced<'g>(graph: &'g JobGraph, from: &JobNode, field: &str) -> Result<&'g JobNode, StepError> {
    match from.fields().reference(field) {
        Some(r) => graph.node(&r.node).ok_or_else(|| StepError(format!("the job graph has no node `{}`", r.node))),
        None => fail(format!("`{}` has no `{field}`", from.name)),
    }
}

/// Carries out a data node (model, dataset, chat or split) of `graph` and returns the outputs to
/// record; `control` counts the records a split reads and stops it when cancelled.
pub fn run_node(
    graph: &JobGraph,
    n: &JobNode,
    base: &Path,
    control: &Arc<StepControl>,
) -> Result<Vec<Output>, StepError> {
    match n.kind.as_str() {
        "model" => model_outputs(n, base, &graph.pipeline),
        "dataset" => dataset_outputs(n, base, &graph.pipeline),
        "chat" => Ok(Vec::new()),
        "split" => split(graph, n, base, control),
        kind => fail(format!("`{}` is a {kind} node, not a data step", n.name)),
    }
}

/// The files of a model that decide what its tokenizer does: a local directory's, or the local
/// copy of a Hub model's when a chat node uses it.
fn model_outputs(n: &JobNode, base: &Path, pipeline: &str) -> Result<Vec<Output>, StepError> {
    if n.function == "hf_model" {
        let dir = hub_model_dir(n, pipeline);
        return match Manifest::read(&base.join(&dir)) {
            Some(manifest) => manifest.files.iter().map(|f| output(base, &format!("{dir}/{}", f.name))).collect(),
            None => Ok(Vec::new()),
        };
    }
    let mut outputs = Vec::new();
    for rel in local_model_files(n, base)? {
        if is_weights(&rel) {
            // Weights by size and modification time: hashing gigabytes on every run would cost a minute.
            let (sha256, bytes) = journal::stat_fingerprint(&base.join(&rel)).map_err(err)?;
            outputs.push(Output { path: rel, sha256, bytes });
        } else {
            outputs.push(output(base, &rel)?);
        }
    }
    Ok(outputs)
}

/// The files of a `local_model` directory that are recorded, relative to `base`: the tokenizer's
/// and `config.json` first, then the weights, weight indexes and `generation_config.json`, sorted.
fn local_model_files(n: &JobNode, base: &Path) -> Result<Vec<String>, StepError> {
    let dir = n.fields().str("path").unwrap_or_default();
    let mut files = Vec::new();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
        let rel = Path::new(dir).join(file).display().to_string();
        if file == "chat_template.jinja" && !base.join(&rel).is_file() {
            continue;
        }
        files.push(rel);
    }
    let mut others: Vec<String> = std::fs::read_dir(base.join(dir))
        .map_err(|e| StepError(format!("model `{}`: cannot read {dir}: {e}", n.name)))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| is_weights(name) || name.ends_with(".index.json") || name == "generation_config.json")
        .collect();
    others.sort();
    files.extend(others.iter().map(|name| Path::new(dir).join(name).display().to_string()));
    Ok(files)
}

/// Why a data node whose record is intact (same key, outputs unchanged) runs all the same: a file
/// that its `local_model` folder gained since (found without hashing anything), or a remote source
/// to look at again. `None`: it is reused. The executor and `tunec plan` both ask this.
pub fn still_runs(graph: &JobGraph, n: &JobNode, base: &Path, recorded: &[Output]) -> Option<Reason> {
    if n.kind == "model" && n.function == "local_model" {
        let files = local_model_files(n, base).ok()?;
        if let Some(file) = files.into_iter().find(|f| !recorded.iter().any(|o| &o.path == f)) {
            return Some(Reason::NewFile(file));
        }
    }
    remote(graph, n).map(|r| Reason::RemoteSource(r.to_string()))
}

/// Whether a node of `kind` reads an input's output at `path`. These are what a node's dependents
/// are keyed on: one of them runs again when an input ran in this run and an output it reads came
/// out different. A chat node reads a model's tokenizer files, not its weights, so new weights
/// rerun the jobs but not the data step. No node reads what a job measured of itself, so a rerun
/// whose model came out the same reruns nothing, however its timings differ ([`measured`]).
pub fn reads(kind: &str, path: &str) -> bool {
    if measured(path) {
        return false;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    !(kind == "chat" && (is_weights(name) || name.ends_with(".index.json")))
}

/// Whether a job's output is for people rather than for the nodes after it, on either target.
/// Locally, a job's `output/data/` (`metrics.json` with its wall-clock time, throughput and peak
/// memory, merge's `smoke.json`, the evaluation's report and predictions): a merge reads the
/// adapter's `model/` folder, an evaluation the merged `model/`. On SageMaker the same files go
/// to `output.tar.gz`, whose local copy is not recorded, and the job's checkpoint prefix
/// (`s3://…/checkpoints/<node>/<key>/`), which is recorded for resuming and read by no other job;
/// what its dependents read is the model artifact.
pub fn measured(path: &str) -> bool {
    if let Some(rest) = path.strip_prefix("s3://") {
        // `…/checkpoints/<node>/<key>/`
        let parts: Vec<&str> = rest.trim_end_matches('/').rsplit('/').take(3).collect();
        let key = |k: &str| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit());
        return matches!(parts.as_slice(), [k, _, "checkpoints"] if key(k));
    }
    let parts: Vec<&str> = path.split('/').collect();
    // `.tunec/<pipeline>/jobs/<node>/<key>/output/...`
    parts.len() > 6 && parts[0] == ".tunec" && parts[2] == "jobs" && parts[5] == "output"
}

/// Whether a model file holds weights (`model.safetensors`, `pytorch_model-00001-of-00004.bin`).
fn is_weights(name: &str) -> bool {
    [".safetensors", ".bin", ".pt", ".pth", ".gguf"].iter().any(|ext| name.ends_with(ext))
}

/// A source that lives elsewhere and is copied next to the pipeline before its node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// An `s3://` object.
    S3(String),
    /// A Hub dataset split.
    HubDataset {
        id: String,
        subset: Option<String>,
        split: Option<SplitSlice>,
        revision: Option<String>,
        token: Option<Token>,
        dir: String,
    },
    /// A Hub model's tokenizer files.
    HubModel { id: String, revision: Option<String>, token: Option<Token>, dir: String },
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::S3(uri) => f.write_str(uri),
            Remote::HubDataset { id, .. } => write!(f, "hf://datasets/{id}"),
            Remote::HubModel { id, .. } => write!(f, "hf://{id}"),
        }
    }
}

/// Where a Hub source's token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `token = env("NAME")`: the variable's name.
    Env(String),
    /// `token = secret(...)`: the secret's ARN, or the `${env:NAME}` placeholder of one.
    Secret(String),
}

/// A node's `token`, if it has one.
fn token(n: &JobNode) -> Option<Token> {
    let fields = n.fields();
    fields.secret("token").map(Token::Secret).or_else(|| fields.env("token").map(|name| Token::Env(name.to_owned())))
}

fn hub_model_dir(n: &JobNode, pipeline: &str) -> String {
    let fields = n.fields();
    hub::model_dir(pipeline, fields.str("id").unwrap_or_default(), fields.str("revision"))
}

fn hub_dataset_dir(n: &JobNode, pipeline: &str) -> String {
    let fields = n.fields();
    let split = fields.str("split").and_then(|s| SplitSlice::parse(s).ok());
    hub::dataset_dir(
        pipeline,
        fields.str("id").unwrap_or_default(),
        fields.str("subset"),
        split.as_ref().map(|s| s.split.as_str()),
    )
}

/// The Hub copy of an `hf_model` node's files: what a chat node's tokenizer is read from, and a
/// smoke run's miniature built.
pub fn hub_model(n: &JobNode, pipeline: &str) -> Remote {
    let fields = n.fields();
    Remote::HubModel {
        id: fields.str("id").unwrap_or_default().to_owned(),
        revision: fields.str("revision").map(str::to_owned),
        token: token(n),
        dir: hub_model_dir(n, pipeline),
    }
}

/// Where a model node's files are, relative to the pipeline's folder: a `local_model` folder, or
/// the local copy of an `hf_model`'s files.
pub fn model_folder(model: &JobNode, pipeline: &str) -> String {
    if model.function == "hf_model" {
        hub_model_dir(model, pipeline)
    } else {
        model.fields().str("path").unwrap_or_default().to_owned()
    }
}

/// The remote source a data node reads, if any: an `s3://` dataset, a Hub dataset, or the Hub model
/// that a chat node of the graph uses as its tokenizer.
pub fn remote(graph: &JobGraph, n: &JobNode) -> Option<Remote> {
    let pipeline = &graph.pipeline;
    let fields = n.fields();
    match (n.kind.as_str(), n.function.as_str()) {
        ("dataset", "file") => fields.str("path").filter(|p| p.starts_with("s3://")).map(|p| Remote::S3(p.to_owned())),
        ("dataset", "hf_dataset") => Some(Remote::HubDataset {
            id: fields.str("id").unwrap_or_default().to_owned(),
            subset: fields.str("subset").map(str::to_owned),
            split: fields.str("split").and_then(|s| SplitSlice::parse(s).ok()),
            revision: fields.str("revision").map(str::to_owned),
            token: token(n),
            dir: hub_dataset_dir(n, pipeline),
        }),
        ("model", "hf_model") => {
            let tokenizer = graph
                .nodes
                .iter()
                .any(|c| c.kind == "chat" && c.fields().reference("tokenizer").is_some_and(|r| r.node == n.name));
            tokenizer.then(|| hub_model(n, pipeline))
        }
        _ => None,
    }
}

/// Where the local copy of an `s3://` source lives, relative to the pipeline's folder:
/// `.tunec/<pipeline>/sources/<bucket>/<key>` (the key keeps its file name, so its format).
pub fn s3_copy(pipeline: &str, uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("s3://")?;
    let clean: Vec<&str> = rest.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
    (clean.len() >= 2).then(|| format!("{}/sources/{}", tunec_dir(pipeline), clean.join("/")))
}

/// The dataset node's source as the data engine reads it: a local path resolved against `base`,
/// an `s3://` object as its local copy (which the executor downloads first).
fn source_spec(n: &JobNode, base: &Path, pipeline: &str) -> Result<SourceSpec, StepError> {
    let fields = n.fields();
    let origin = match n.function.as_str() {
        "file" => {
            let path = fields.str("path").unwrap_or_default();
            let path = match s3_copy(pipeline, path) {
                Some(copy) if path.starts_with("s3://") => base.join(copy).display().to_string(),
                _ if path.starts_with("s3://") => {
                    return fail(format!("dataset `{}`: `{path}` names no object", n.name))
                }
                _ => base.join(path).display().to_string(),
            };
            Origin::File { path, format: fields.word("format").map(str::to_owned) }
        }
        _ => {
            let dir = hub_dataset_dir(n, pipeline);
            match Manifest::read(&base.join(&dir)) {
                Some(manifest) => {
                    Origin::Shards { paths: manifest.files.iter().map(|f| base.join(&dir).join(&f.name)).collect() }
                }
                None => Origin::HfDataset { id: fields.str("id").unwrap_or_default().to_owned() },
            }
        }
    };
    let columns = match fields.columns("columns") {
        Some(columns) => columns
            .into_iter()
            .map(|(name, ty)| match parse_type_text(ty) {
                Some((ty, optional)) => Ok(SchemaColumn { name: name.to_owned(), ty, optional }),
                None => fail(format!("column `{name}` has a type the data step does not read: {ty}")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => return fail(format!("dataset `{}` declares no columns", n.name)),
    };
    Ok(SourceSpec {
        origin,
        split: fields.str("split").map(parse_split).transpose().map_err(err)?,
        schema: Schema { columns },
        on_bad_row: if fields.word("on_bad_row") == Some("skip") { BadRowPolicy::Skip } else { BadRowPolicy::Fail },
    })
}

fn dataset_outputs(n: &JobNode, base: &Path, pipeline: &str) -> Result<Vec<Output>, StepError> {
    let spec = source_spec(n, base, pipeline)?;
    for (path, _) in spec.local().map_err(err)? {
        if !path.is_file() {
            return fail(format!("dataset `{}`: no file at {}", n.name, path.display()));
        }
    }
    if n.function == "hf_dataset" {
        let dir = hub_dataset_dir(n, pipeline);
        let manifest = Manifest::read(&base.join(&dir))
            .ok_or_else(|| StepError(format!("dataset `{}`: no local copy", n.name)))?;
        return manifest.files.iter().map(|f| output(base, &format!("{dir}/{}", f.name))).collect();
    }
    let path = n.fields().str("path").unwrap_or_default();
    match s3_copy(pipeline, path) {
        Some(copy) => Ok(vec![output(base, &copy)?]),
        None => Ok(vec![output(base, path)?]),
    }
}

/// The tokenizer of the chat node's model: a local directory, or the local copy of a Hub model's
/// tokenizer files.
fn tokenizer(model: &JobNode, base: &Path, pipeline: &str) -> Result<ChatTokenizer, StepError> {
    ChatTokenizer::from_files(&base.join(model_folder(model, pipeline)))
        .map_err(|e| StepError(format!("cannot load the tokenizer of `{}`: {e}", model.name)))
}

fn prepare_config(chat: &JobNode, split: &JobNode, schema: &Schema) -> Result<PrepareConfig, StepError> {
    let f = chat.fields();
    if f.bool("add_special_tokens") == Some(true) {
        return fail(format!(
            "chat `{}`: add_special_tokens = true is not supported by the data step (the chat template already \
             writes BOS, so it would be doubled); remove it",
            chat.name
        ));
    }
    let fields = ChatFields {
        system: f.str("system"),
        user: f.str("user"),
        assistant: f.str("assistant"),
        messages: f.str("messages"),
        prompt: f.str("prompt"),
        completion: f.str("completion"),
        tools: f.str("tools"),
    };
    let spec = ChatSpec::from_fields(&fields, schema).map_err(|e| StepError(format!("chat `{}`: {e}", chat.name)))?;
    let seq_len = f.int("seq_len").and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let overflow = match f.word("overflow") {
        Some("drop") => OverflowPolicy::Drop,
        Some("truncate") => OverflowPolicy::Truncate,
        _ => OverflowPolicy::Error,
    };
    let s = split.fields();
    let fractions = SplitFractions {
        train: s.float("train").unwrap_or(0.0),
        val: s.float("val").unwrap_or(0.0),
        test: s.float("test").unwrap_or(0.0),
        seed: s.int("seed").and_then(|n| u64::try_from(n).ok()).unwrap_or(42),
    };
    let mut config = PrepareConfig::new(spec, seq_len, overflow, fractions);
    config.train_on = match f.word("train_on") {
        Some("all") => TrainOn::All,
        Some("last_assistant") => TrainOn::LastAssistant,
        _ => TrainOn::Assistant,
    };
    config.dedup = s.bool("dedup").unwrap_or(true);
    if let Some(date) = f.str("date_string") {
        config.template_vars.insert("date_string".into(), json!(date));
    }
    Ok(config)
}

/// A count the environment sets for the data step (`TUNEC_DATA_THREADS`, `TUNEC_DATA_BATCH_ROWS`):
/// `None` when unset or empty, an error naming the variable when it is not a whole number of 1 or
/// more. Neither changes what the step writes, only how it works, so neither is in any key.
fn env_count(name: &str, what: &str) -> Result<Option<usize>, StepError> {
    let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    match value.to_str().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if n >= 1 => Ok(Some(n)),
        _ => fail(format!(
            "{name} is `{}`: set it to the number of {what} (1 or more), or unset it",
            value.to_string_lossy()
        )),
    }
}

/// Prepares the split's files and the chat node's data profile.
fn split(graph: &JobGraph, split: &JobNode, base: &Path, control: &Arc<StepControl>) -> Result<Vec<Output>, StepError> {
    let chat = referenced(graph, split, "data")?;
    let dataset = referenced(graph, chat, "data")?;
    let model = referenced(graph, chat, "tokenizer")?;
    let source = source_spec(dataset, base, &graph.pipeline)?;
    let mut config = prepare_config(chat, split, &source.schema)?;
    config.control = control.clone();
    config.threads = env_count("TUNEC_DATA_THREADS", "threads")?.unwrap_or(config.threads);
    config.batch_rows = env_count("TUNEC_DATA_BATCH_ROWS", "records per batch")?.unwrap_or(config.batch_rows);
    let tokenizer = tokenizer(model, base, &graph.pipeline)?;
    let _ = control.engine.set(tokenizer.engine().to_string());
    let dir = tunec_dir(&graph.pipeline);
    let out_rel = format!("{dir}/data/{}/{}", split.name, split.key);
    let out = base.join(&out_rel);
    let profile = prepare(&source, &tokenizer, &config, &out)
        .map_err(|e| StepError(data_report::failure(&e, split, chat, dataset)))?;
    let profile_rel = format!("{dir}/profiles/{}.json", chat.name);
    let text = serde_json::to_vec_pretty(&profile).map_err(err)?;
    journal::write_atomic(&base.join(&profile_rel), &text).map_err(err)?;
    // The estimator's copy of the profile is written all the same: `tunec check` then shows the
    // counts the step found.
    data_report::check_trainable(graph, split, &profile).map_err(StepError)?;
    let mut outputs = Vec::new();
    for part in Split::ALL {
        outputs.push(output(base, &format!("{out_rel}/{0}/{0}.jsonl", part.name()))?);
        outputs.push(output(base, &format!("{out_rel}/{0}/{0}.parquet", part.name()))?);
    }
    outputs.push(output(base, &format!("{out_rel}/profile.json"))?);
    outputs.push(output(base, &profile_rel)?);
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_nodes_read_a_models_tokenizer_not_its_weights() {
        for weights in
            ["model/model.safetensors", "m/pytorch_model-00001-of-00002.bin", "m/model.safetensors.index.json"]
        {
            assert!(!reads("chat", weights), "{weights}");
            assert!(reads("train", weights), "{weights}");
            assert!(reads("merge", weights), "{weights}");
        }
        assert!(reads("chat", "model/tokenizer.json"));
        assert!(reads("chat", "model/chat_template.jinja"));
    }

    #[test]
    fn no_node_reads_what_a_job_measured_of_itself_on_either_target() {
        let job = ".tunec/tiny/jobs/sft/5a759ad0dab7edafd932dc92558f1899f81790fc3c6a4e6b6ab671a07810c046";
        for kind in ["merge", "evaluate"] {
            assert!(reads(kind, &format!("{job}/model/adapter_model.safetensors")));
            assert!(reads(kind, &format!("{job}/model/adapter_config.json")));
            assert!(!reads(kind, &format!("{job}/output/data/metrics.json")));
            assert!(!reads(kind, &format!("{job}/output/data/smoke.json")));
            // SageMaker: the model artifact is read, the checkpoint prefix is not.
            assert!(reads(kind, "s3://b/medreason/out/medreason-sft-5a759ad0da-a2/output/model.tar.gz"));
            let key = "5a759ad0dab7edafd932dc92558f1899f81790fc3c6a4e6b6ab671a07810c046";
            assert!(!reads(kind, &format!("s3://b/medreason/checkpoints/sft/{key}/")));
            assert!(reads(kind, "s3://checkpoints/p/output/sft/p-sft-5a759ad0da/output/model.tar.gz"));
        }
        // A data file of the user's that happens to sit in a folder named `output` is read.
        assert!(reads("split", "data/output/rows.jsonl"));
        assert!(reads("split", ".tunec/p/sources/bucket/output/data/rows.jsonl"));
    }
}
