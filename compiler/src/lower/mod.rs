//! Lowering: a checked [`Program`] becomes a [`JobGraph`], the serialisable plan the runtime
//! executes and `tunec build` writes out. The graph is all the runtime reads: each node's
//! normalised configuration (what a data step does), each job's channels (what it reads), and the
//! target's settings, so that `tunec run` can execute a `job_graph.json` without the pipeline.
//!
//! Each pipeline node becomes one graph node with its dependencies, a content-addressed key
//! (`key.rs`) and an execution: a model reference, a local data operation, or a job that runs one
//! of the stdlib entry scripts, as a SageMaker training job (`request.rs` builds the
//! CreateTrainingJob request) or as a local process. Every job also gets its `args.yaml`
//! (`args.rs`). Values that come from `env("NAME")` appear as `${env:NAME}` placeholders and are
//! resolved by the runtime at submission: no secret or account-specific value is ever written
//! into the graph. The graph is the only compiler output that crosses a process boundary, so it
//! carries a schema version.

pub mod args;
mod config;
pub mod graph;
mod key;
pub mod sagemaker;

use crate::catalog::Catalog;
use crate::check::{Program, SecretRef, TypedNode, Val};
use crate::estimate::Estimates;
use crate::syntax::ast::NodeKind;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

pub use config::Config;
pub use key::sha256_hex;

/// Where a job finds its scripts, its args.yaml and its checkpoint folder: the `/opt/ml` layout of
/// a SageMaker training container, which the local target emulates.
pub const CONTAINER_CODE_DIR: &str = "/opt/ml/input/data/code";
pub const CONTAINER_CONFIG: &str = "/opt/ml/input/data/config/args.yaml";
pub const CHECKPOINT_DIR: &str = "/opt/ml/checkpoints";

/// The version of the [`JobGraph`] schema; bumped on any incompatible change. Version 2 added the
/// target's settings and each job's channels, which `tunec run` of a built graph needs. The content
/// keys have a version of their own (`key::KEY_SCHEMA`), so a new graph schema reruns nothing.
pub const SCHEMA_VERSION: u32 = 2;

/// The lowered pipeline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobGraph {
    pub version: u32,
    pub pipeline: String,
    /// Where the jobs run: `local` or `sagemaker`.
    pub target: Target,
    /// The target's settings as written (`python`; `region`, `role`, `bucket`, `kms_key`), in the
    /// form of [`JobNode::config`]: an `env("NAME")` is `{"env": "NAME"}`.
    pub target_config: Json,
    /// SHA-256 of the script bundle the jobs run.
    pub bundle_digest: String,
    /// Environment variables the graph reads at run time (`env("NAME")`), sorted.
    pub env: Vec<String>,
    /// In dependency order.
    pub nodes: Vec<JobNode>,
}

impl JobGraph {
    pub fn node(&self, name: &str) -> Option<&JobNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The target's settings, read like a node's fields.
    pub fn target_fields(&self) -> Config<'_> {
        Config::new(&self.target_config)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobNode {
    pub name: String,
    /// `model`, `dataset`, `chat`, `split`, `train`, `merge` or `evaluate`.
    pub kind: String,
    /// The function it calls (`hf_dataset`, `sft`, ...).
    pub function: String,
    /// SHA-256 (hex) of the node's semantic inputs.
    pub key: String,
    /// The nodes it reads, in field order.
    pub deps: Vec<String>,
    /// The normalised configuration, defaults included; references name nodes.
    pub config: Json,
    pub execution: Execution,
}

impl JobNode {
    /// The normalised configuration, read field by field.
    pub fn fields(&self) -> Config<'_> {
        Config::new(&self.config)
    }

    /// Whether it runs as a job (train, merge, evaluate) rather than in the data engine.
    pub fn is_job(&self) -> bool {
        matches!(self.execution, Execution::SageMakerJob { .. } | Execution::LocalScript { .. })
    }

    /// The input channels of a job node; none for other nodes.
    pub fn channels(&self) -> &[JobChannel] {
        match &self.execution {
            Execution::SageMakerJob { channels, .. } | Execution::LocalScript { channels, .. } => channels,
            _ => &[],
        }
    }
}

/// How a node is carried out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Execution {
    /// A model: nothing runs; jobs download it (Hub id) or receive it (local directory).
    Model { source: String, location: String },
    /// Dataset loading, chat templating and tokenization, or splitting: the runtime's data engine.
    Data { operation: String },
    /// A SageMaker training job running `script`.
    #[serde(rename = "sagemaker_job")]
    SageMakerJob {
        script: String,
        job_name: String,
        image: String,
        instance_type: String,
        instance_count: u64,
        /// The CreateTrainingJob request, in the API's JSON shape.
        request: Json,
        /// The job's args.yaml, as the file's text.
        args_yaml: String,
        /// What it reads; the request names a channel's S3 prefix.
        channels: Vec<JobChannel>,
    },
    /// A local process running `script` in an emulated /opt/ml layout.
    LocalScript {
        script: String,
        args_yaml: String,
        /// What it reads, linked into its `input/data/`.
        channels: Vec<JobChannel>,
    },
}

impl Execution {
    /// A short description for plans: `data`, `SageMaker training job`, `local script`.
    pub fn describe(&self) -> &'static str {
        match self {
            Execution::Model { .. } => "model reference",
            Execution::Data { .. } => "local data step",
            Execution::SageMakerJob { .. } => "SageMaker training job",
            Execution::LocalScript { .. } => "local script",
        }
    }
}

/// What lowering needs besides the program: the script bundle's digest and the estimates.
pub struct LowerInput<'a> {
    pub program: &'a Program,
    pub estimates: Option<&'a Estimates>,
    pub catalog: &'a Catalog,
    pub bundle_digest: &'a str,
}

/// The `${env:NAME}` placeholder the runtime replaces at submission.
pub fn env_placeholder(name: &str) -> String {
    format!("${{env:{name}}}")
}

/// A string field, or the placeholder of its `env()`.
pub(crate) fn string_or_env(val: Option<&Val>) -> Option<String> {
    match val? {
        Val::Str(s) => Some(s.clone()),
        Val::Env(name) => Some(env_placeholder(name)),
        _ => None,
    }
}

/// Where a job finds the weights of a node that produces a model.
pub(crate) enum ModelSource {
    /// A Hugging Face Hub id, downloaded by the job.
    Hub(String),
    /// A local model directory, uploaded under `models/<node>/<key>/`.
    Upload(String),
    /// What another job wrote (a merged model, a fully fine-tuned model, an adapter).
    Output(String),
}

pub(crate) fn model_source(program: &Program, node: &str) -> Option<ModelSource> {
    let n = program.node(node)?;
    match n.kind {
        NodeKind::Model if n.func == "local_model" => Some(ModelSource::Upload(n.name.clone())),
        NodeKind::Model => Some(ModelSource::Hub(n.fields.str("id").unwrap_or_default().to_owned())),
        NodeKind::Train | NodeKind::Merge => Some(ModelSource::Output(n.name.clone())),
        _ => None,
    }
}

/// Where the script finds a model: the Hub id itself, or the folder of the channel it arrives in.
pub(crate) fn model_path(source: Option<&ModelSource>, channel: &str) -> String {
    match source {
        Some(ModelSource::Hub(id)) => id.clone(),
        Some(_) => format!("/opt/ml/input/data/{channel}"),
        None => String::new(),
    }
}

/// For a node reading a model: (the adapter node, if it reads one, and the model its weights
/// start from). An evaluate of an adapter reads both the adapter and the adapter's base.
pub(crate) fn model_inputs(program: &Program, node: &TypedNode) -> (Option<String>, Option<String>) {
    let adapter_base =
        |adapter: &str| program.node(adapter).and_then(|a| a.fields.reference("model")).map(|m| m.node.clone());
    match node.kind {
        NodeKind::Train => (None, node.fields.reference("model").map(|m| m.node.clone())),
        NodeKind::Merge => {
            let adapter = node.fields.reference("adapter").map(|a| a.node.clone());
            let base = node
                .fields
                .reference("base")
                .map(|b| b.node.clone())
                .or_else(|| adapter.as_deref().and_then(adapter_base));
            (adapter, base)
        }
        _ => {
            let Some(model) = node.fields.reference("model").and_then(|m| program.node(&m.node)) else {
                return (None, None);
            };
            if matches!(model.ty, crate::check::NodeType::Adapter { .. }) {
                (Some(model.name.clone()), adapter_base(&model.name))
            } else {
                (None, Some(model.name.clone()))
            }
        }
    }
}

/// The channel a job's starting weights arrive in: `model` for an evaluation of a finished model,
/// `base_model` for what an adapter is trained on or merged into.
pub(crate) fn model_channel_name(kind: NodeKind, reads_adapter: bool) -> &'static str {
    if kind == NodeKind::Evaluate && !reads_adapter {
        "model"
    } else {
        "base_model"
    }
}

/// Where a job channel's files come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ChannelSource {
    /// A part (`train`, `val`, `test`) of a split node's output; `None` for the whole split.
    Data { node: String, part: Option<String> },
    /// A `local_model` node's directory.
    LocalModel { node: String },
    /// What another job wrote to its model folder (an adapter, a merged or fully trained model).
    JobOutput { node: String },
    /// A Hugging Face Hub model (`hf_model` node, id): no channel, the job downloads it.
    Hub { node: String, id: String },
}

/// One input channel of a job: its name (`train`, `val`, `test`, `base_model`, `model`, `adapter`)
/// and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChannel {
    pub name: String,
    #[serde(flatten)]
    pub source: ChannelSource,
}

/// The input channels of a train, merge or evaluate node, in the order the SageMaker request lists
/// them: the adapter, the starting model, then the data. A Hub model is listed with its id although
/// it is no channel; the SageMaker request leaves it out, the local runtime refuses it.
pub fn job_channels(program: &Program, node: &TypedNode) -> Vec<JobChannel> {
    let mut channels = Vec::new();
    let (adapter, model) = model_inputs(program, node);
    if let Some(adapter) = &adapter {
        channels
            .push(JobChannel { name: "adapter".into(), source: ChannelSource::JobOutput { node: adapter.clone() } });
    }
    let name = model_channel_name(node.kind, adapter.is_some()).to_owned();
    match model.as_deref().and_then(|m| model_source(program, m)) {
        Some(ModelSource::Hub(id)) => channels
            .push(JobChannel { name, source: ChannelSource::Hub { node: model.clone().unwrap_or_default(), id } }),
        Some(ModelSource::Upload(node)) => {
            channels.push(JobChannel { name, source: ChannelSource::LocalModel { node } })
        }
        Some(ModelSource::Output(node)) => {
            channels.push(JobChannel { name, source: ChannelSource::JobOutput { node } })
        }
        None => {}
    }
    let data = |field: &str| {
        node.fields.reference(field).map(|r| ChannelSource::Data { node: r.node.clone(), part: r.part.clone() })
    };
    let parts: &[(&'static str, &str)] = match node.kind {
        NodeKind::Train => &[("train", "data"), ("val", "eval")],
        NodeKind::Merge => &[],
        _ => &[("test", "data")],
    };
    for (name, field) in parts {
        if let Some(source) = data(field) {
            channels.push(JobChannel { name: (*name).to_owned(), source });
        }
    }
    channels
}

fn script_of(kind: NodeKind) -> Option<&'static str> {
    match kind {
        NodeKind::Train => Some("train.py"),
        NodeKind::Merge => Some("merge.py"),
        NodeKind::Evaluate => Some("evaluate.py"),
        _ => None,
    }
}

fn collect_env(val: &Val, out: &mut Vec<String>) {
    match val {
        Val::Env(name) | Val::Secret(SecretRef::Env(name)) => out.push(name.clone()),
        Val::Variant(_, fields) => fields.0.values().for_each(|f| collect_env(&f.val, out)),
        Val::List(items) => items.iter().for_each(|v| collect_env(v, out)),
        _ => {}
    }
}

/// Lowers a checked program. Call it only on a program without errors.
pub fn lower(input: &LowerInput<'_>) -> JobGraph {
    let program = input.program;
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut nodes = Vec::new();
    let mut env: Vec<String> = Vec::new();
    program.target.fields.0.values().for_each(|f| collect_env(&f.val, &mut env));
    for &i in &program.order {
        let node = &program.nodes[i];
        node.fields.0.values().for_each(|f| collect_env(&f.val, &mut env));
        let image = image_uri(input, node);
        let semantic = json!({
            "schema": key::KEY_SCHEMA,
            "kind": node.kind.as_str(),
            "function": node.func,
            "fields": key::fields_json(&node.fields, &|n| keys.get(n).cloned().unwrap_or_default(), key::NON_SEMANTIC),
            "bundle": script_of(node.kind).map(|_| input.bundle_digest),
            "image": image,
        });
        let key = key::digest(&semantic);
        keys.insert(node.name.clone(), key.clone());
        let config = key::fields_json(&node.fields, &|n| n.to_owned(), &[]);
        let execution = execution(input, node, &key, &keys, image);
        nodes.push(JobNode {
            name: node.name.clone(),
            kind: node.kind.as_str().to_owned(),
            function: node.func.clone(),
            key,
            deps: node.inputs.clone(),
            config,
            execution,
        });
    }
    env.sort();
    env.dedup();
    JobGraph {
        version: SCHEMA_VERSION,
        pipeline: program.name.clone(),
        target: program.target.kind,
        target_config: key::fields_json(&program.target.fields, &|n| n.to_owned(), &[]),
        bundle_digest: input.bundle_digest.to_owned(),
        env,
        nodes,
    }
}

/// The training image for a job node in the target's region (`${env:...}` region: us-east-1's
/// URI with the region left to the runtime is not possible, so the placeholder form is used).
fn image_uri(input: &LowerInput<'_>, node: &TypedNode) -> Option<String> {
    script_of(node.kind)?;
    let image = input.catalog.image(node.fields.str("transformers")?, node.fields.str("pytorch")?)?;
    match input.program.target.fields.get("region").map(|f| &f.val) {
        Some(Val::Str(region)) => image.uri(region),
        Some(Val::Env(name)) => Some(format!(
            "{}.dkr.ecr.{}.amazonaws.com/{}:{}-transformers{}-{}-{}-{}",
            image.registry.first().map_or("", |r| r.account.as_str()),
            env_placeholder(name),
            image.repository,
            image.pytorch,
            image.transformers,
            image.processor,
            image.py,
            image.container
        )),
        _ => image.uri("us-east-1"),
    }
}

fn execution(
    input: &LowerInput<'_>,
    node: &TypedNode,
    key: &str,
    keys: &BTreeMap<String, String>,
    image: Option<String>,
) -> Execution {
    let program = input.program;
    match node.kind {
        NodeKind::Model => Execution::Model {
            source: if node.func == "local_model" { "local".into() } else { "hub".into() },
            location: node.fields.str("id").or_else(|| node.fields.str("path")).unwrap_or_default().to_owned(),
        },
        NodeKind::Dataset | NodeKind::Chat | NodeKind::Split => Execution::Data { operation: node.func.clone() },
        NodeKind::Train | NodeKind::Merge | NodeKind::Evaluate => {
            let script = script_of(node.kind).unwrap_or("train.py").to_owned();
            let args_yaml = args::args_yaml(program, node, input.catalog);
            let channels = job_channels(program, node);
            match program.target.kind {
                Target::Local => Execution::LocalScript { script, args_yaml, channels },
                Target::SageMaker => {
                    sagemaker::job(input, node, sagemaker::Job { key, keys, image, script, args_yaml, channels })
                }
            }
        }
    }
}
