//! The CreateTrainingJob request of a job node, in the API's own JSON shape (PascalCase, as it
//! goes on the wire).
//!
//! It is equivalent to what the SageMaker Python SDK's ModelTrainer with Torchrun sends for the
//! seed workflow (github.com/aws/sagemaker-python-sdk, `ModelTrainer` in
//! `src/sagemaker/modules/train/model_trainer.py`), in the documented simplified variant: one
//! `code` channel holding the stdlib scripts and `launch.sh`, and `/bin/bash -c` as the entry
//! point; `launch.sh` installs requirements.txt and starts the script under torchrun with one
//! process per GPU and the multi-node rendezvous read from resourceconfig.json. Channels come in
//! ModelTrainer's order: data and models first, then `config`, then `code`.
//!
//! S3 layout under the target's bucket, all content-addressed so that nothing is uploaded twice:
//! `<bucket>/<pipeline>/data/<node>/<key>/<part>/`, `.../config/<node>/<key>/args.yaml`,
//! `.../code/<bundle digest>/`, `.../models/<node>/<key>/` (local models),
//! `.../output/<node>/` (SageMaker adds `<job>/output/model/`) and `.../checkpoints/<node>/<key>/`.

use super::names;
use crate::check::{Program, SecretRef, TypedNode, Val};
use crate::lower::{env_placeholder, model_inputs, string_or_env, ChannelSource, JobChannel};
use crate::lower::{CHECKPOINT_DIR, CONTAINER_CODE_DIR, CONTAINER_CONFIG};
use crate::syntax::ast::NodeKind;
use crate::target::sagemaker;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;

pub(crate) struct RequestInput<'a> {
    pub program: &'a Program,
    pub node: &'a TypedNode,
    pub channels: &'a [JobChannel],
    pub job_name: &'a str,
    pub key: &'a str,
    pub keys: &'a BTreeMap<String, String>,
    pub image: String,
    pub bundle_digest: &'a str,
    pub disk_bytes: Option<u64>,
}

/// A target field as text, `env()` as its placeholder.
pub fn base_field(program: &Program, name: &str) -> Option<String> {
    string_or_env(program.target.fields.get(name).map(|f| &f.val))
}

/// `<bucket>/<pipeline>` with the bucket's `env()` as a placeholder.
pub fn base(program: &Program) -> String {
    let bucket = string_or_env(program.target.fields.get("bucket").map(|f| &f.val)).unwrap_or_default();
    format!("{}/{}", bucket.trim_end_matches('/'), program.name)
}

/// The S3 prefix of a data reference (`parts.train` → `.../data/parts/<key>/train/`).
pub fn data_prefix(program: &Program, keys: &BTreeMap<String, String>, node: &str, part: Option<&str>) -> String {
    let key = keys.get(node).map_or("", String::as_str);
    format!("{}/data/{node}/{key}/{}/", base(program), part.unwrap_or("all"))
}

/// The S3 prefix where SageMaker puts a job node's model (uncompressed output).
pub fn model_output_prefix(program: &Program, keys: &BTreeMap<String, String>, node: &str) -> String {
    let key = keys.get(node).map_or("", String::as_str);
    let job = names::job_name(&program.name, node, key);
    format!("{}/output/{node}/{job}/output/model/", base(program))
}

pub fn code_prefix(program: &Program, bundle_digest: &str) -> String {
    format!("{}/code/{}/", base(program), &bundle_digest[..bundle_digest.len().min(16)])
}

pub fn config_prefix(program: &Program, node: &str, key: &str) -> String {
    format!("{}/config/{node}/{key}/", base(program))
}

fn channel(name: &str, uri: &str) -> Json {
    json!({
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File",
    })
}

pub(crate) fn create_training_job(input: &RequestInput<'_>) -> Json {
    let program = input.program;
    let node = input.node;
    let mut channels: Vec<Json> = Vec::new();
    for JobChannel { name, source } in input.channels {
        let uri = match source {
            ChannelSource::Hub { .. } => continue,
            ChannelSource::LocalModel { node: model } => {
                let key = input.keys.get(model).map_or("", String::as_str);
                format!("{}/models/{model}/{key}/", base(program))
            }
            ChannelSource::JobOutput { node: job } => model_output_prefix(program, input.keys, job),
            ChannelSource::Data { node, part } => data_prefix(program, input.keys, node, part.as_deref()),
        };
        channels.push(channel(name, &uri));
    }
    channels.push(channel("config", &config_prefix(program, &node.name, input.key)));
    channels.push(channel("code", &code_prefix(program, input.bundle_digest)));

    // A checked SageMaker program always has one (`missing_field` otherwise).
    let (instance_type, instance_count) =
        node.compute.as_ref().map(|c| (c.instance.clone(), c.count)).unwrap_or_default();
    let volume = input
        .disk_bytes
        .map_or(sagemaker::MIN_VOLUME_GB, |b| (b as f64 * 1.25 / 1e9).ceil() as u64)
        .clamp(sagemaker::MIN_VOLUME_GB, sagemaker::MAX_VOLUME_GB);
    let max_runtime = match node.fields.get("max_runtime").map(|f| &f.val) {
        Some(Val::Duration(s)) => *s,
        _ => 24 * 3600,
    };
    let spot = node.fields.bool("spot").unwrap_or(false);
    let mut stopping = json!({ "MaxRuntimeInSeconds": max_runtime });
    if spot {
        let wait = match node.fields.get("max_wait").map(|f| &f.val) {
            Some(Val::Duration(s)) => *s,
            _ => (2 * max_runtime).min(28 * 24 * 3600),
        };
        stopping["MaxWaitTimeInSeconds"] = json!(wait.max(max_runtime));
    }
    let script = match node.kind {
        NodeKind::Train => "train.py",
        NodeKind::Merge => "merge.py",
        _ => "evaluate.py",
    };
    let mut request = json!({
        "TrainingJobName": input.job_name,
        "AlgorithmSpecification": {
            "TrainingImage": input.image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["/bin/bash"],
            "ContainerArguments": ["-c", format!("cd {CONTAINER_CODE_DIR} && bash launch.sh {script} {CONTAINER_CONFIG}")],
        },
        "HyperParameters": { "config": CONTAINER_CONFIG },
        "RoleArn": string_or_env(program.target.fields.get("role").map(|f| &f.val)).unwrap_or_default(),
        "InputDataConfig": channels,
        "OutputDataConfig": {
            "S3OutputPath": format!("{}/output/{}/", base(program), node.name),
            "CompressionType": "NONE",
        },
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": volume,
            "KeepAlivePeriodInSeconds": 0,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "Environment": environment(program, node),
        "Tags": [
            {"Key": "tunec:pipeline", "Value": program.name},
            {"Key": "tunec:node", "Value": node.name},
            {"Key": "tunec:key", "Value": input.key},
        ],
    });
    if node.kind == NodeKind::Train {
        request["CheckpointConfig"] = json!({
            "S3Uri": format!("{}/checkpoints/{}/{}/", base(program), node.name, input.key),
            "LocalPath": CHECKPOINT_DIR,
        });
    }
    if let Some(kms) = string_or_env(program.target.fields.get("kms_key").map(|f| &f.val)) {
        request["OutputDataConfig"]["KmsKeyId"] = json!(kms);
        request["ResourceConfig"]["VolumeKmsKeyId"] = json!(kms);
    }
    request
}

/// The container environment: FSDP through accelerate's variables (Trainer sees FSDP only
/// through them under plain torchrun), the Hub token (a secret's ARN, or an `env()`
/// placeholder), and tunec's own markers.
fn environment(program: &Program, node: &TypedNode) -> Json {
    let mut env = serde_json::Map::new();
    if node.kind == NodeKind::Train && node.fields.word("fsdp").is_some() {
        let f = &node.fields;
        let flag = |b: bool| if b { "true" } else { "false" };
        let strategy = match f.word("fsdp") {
            Some("shard_grad_op") => "SHARD_GRAD_OP",
            Some("hybrid_shard") => "HYBRID_SHARD",
            _ => "FULL_SHARD",
        };
        env.insert("ACCELERATE_USE_FSDP".into(), json!("1"));
        env.insert("FSDP_SHARDING_STRATEGY".into(), json!(strategy));
        env.insert(
            "FSDP_CPU_RAM_EFFICIENT_LOADING".into(),
            json!(if f.bool("fsdp.cpu_ram_efficient_loading").unwrap_or(true) { "1" } else { "0" }),
        );
        env.insert("FSDP_SYNC_MODULE_STATES".into(), json!(flag(f.bool("fsdp.sync_module_states").unwrap_or(true))));
        env.insert("FSDP_USE_ORIG_PARAMS".into(), json!(flag(f.bool("fsdp.use_orig_params").unwrap_or(false))));
        env.insert("FSDP_OFFLOAD_PARAMS".into(), json!(flag(f.bool("fsdp.offload").unwrap_or(false))));
        if f.bool("fsdp.auto_wrap").unwrap_or(true) {
            env.insert("FSDP_AUTO_WRAP_POLICY".into(), json!("TRANSFORMER_BASED_WRAP"));
            let class = f.str("fsdp.wrap_class").map(str::to_owned).or_else(|| {
                f.reference("model").and_then(|m| program.model_facts(&m.node)).map(|m| m.decoder_layer.clone())
            });
            if let Some(class) = class {
                env.insert("FSDP_TRANSFORMER_CLS_TO_WRAP".into(), json!(class));
            }
        }
    }
    // The Hub token of the model the weights come from, wherever it is in the chain.
    let mut origin = model_inputs(program, node).1;
    while let Some(n) = origin.as_deref().and_then(|o| program.node(o)).filter(|n| n.kind != NodeKind::Model) {
        origin = model_inputs(program, n).1;
    }
    // A secret's ARN, which the entry script reads with the execution role, or an env() value,
    // which the job record keeps (the `token_in_job` warning).
    match origin.and_then(|m| program.node(&m)).and_then(|m| m.fields.get("token")).map(|f| &f.val) {
        Some(Val::Secret(secret)) => {
            let arn = match secret {
                SecretRef::Arn(arn) => arn.clone(),
                SecretRef::Env(name) => env_placeholder(name),
            };
            env.insert(crate::secret::HUB_TOKEN_SECRET_VAR.into(), json!(arn));
        }
        Some(Val::Env(name)) => {
            env.insert("HF_TOKEN".into(), json!(env_placeholder(name)));
        }
        _ => {}
    }
    env.insert("TUNEC_PIPELINE".into(), json!(program.name));
    env.insert("TUNEC_NODE".into(), json!(node.name));
    Json::Object(env)
}
