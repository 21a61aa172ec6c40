//! The lowering, end to end on real pipelines: the CreateTrainingJob requests, args.yaml files,
//! the SageMaker Pipelines definition and the graph drawings are snapshotted for every example,
//! and the content keys are checked to move exactly when a semantic input moves.
//!
//! The script bundle's digest is fixed here, so that editing a Python script does not churn these
//! snapshots (the runtime tests cover the real digest).

use std::path::Path;
use tunec_compiler::catalog::Catalog;
use tunec_compiler::lower::sagemaker::{names, pipeline};
use tunec_compiler::lower::{self, graph, Execution, JobGraph, LowerInput};
use tunec_compiler::{check, NoFiles, Override, World};

const BUNDLE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Local model directories resolve relative to the example's folder, as the CLI resolves them.
struct Dir(std::path::PathBuf);

impl World for Dir {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        std::fs::read_to_string(self.0.join(dir).join(file)).map_err(|e| format!("{dir}/{file}: {}", e.kind()))
    }
}

fn lowered(text: &str, overrides: &[Override]) -> JobGraph {
    lowered_in(text, overrides, &NoFiles)
}

fn lowered_in(text: &str, overrides: &[Override], world: &dyn World) -> JobGraph {
    let checked = check("pipeline.tune", text, overrides, world);
    assert!(!checked.has_errors(), "{:#?}", checked.diagnostics);
    let program = checked.program.as_ref().expect("a program");
    lower::lower(&LowerInput {
        program,
        estimates: checked.estimates.as_ref(),
        catalog: Catalog::builtin(),
        bundle_digest: BUNDLE,
    })
}

fn medreason() -> String {
    std::fs::read_to_string(root().join("examples/medreason/medreason.tune")).expect("example")
}

#[test]
fn examples_lower_to_snapshotted_requests() {
    insta::glob!("../../examples", "*/*.tune", |path| {
        let text = std::fs::read_to_string(path).expect("example");
        let example = path.file_stem().and_then(|s| s.to_str()).unwrap_or("example").to_owned();
        let graph = lowered_in(&text, &[], &Dir(path.parent().expect("a folder").to_path_buf()));
        for node in &graph.nodes {
            match &node.execution {
                Execution::SageMakerJob { request, args_yaml, job_name, .. } => {
                    assert!(names::is_valid(job_name), "{job_name}");
                    insta::assert_json_snapshot!(format!("{example}-{}-request", node.name), request);
                    insta::assert_snapshot!(format!("{example}-{}-args", node.name), args_yaml);
                }
                Execution::LocalScript { args_yaml, .. } => {
                    insta::assert_snapshot!(format!("{example}-{}-args", node.name), args_yaml)
                }
                _ => {}
            }
        }
        insta::assert_json_snapshot!(format!("{example}-pipeline"), pipeline::definition(&graph));
        insta::assert_snapshot!(format!("{example}-dot"), graph::dot(&graph));
        insta::assert_snapshot!(format!("{example}-mermaid"), graph::mermaid(&graph));
    });
}

#[test]
fn the_job_graph_round_trips_through_json() {
    let graph = lowered(&medreason(), &[]);
    let text = serde_json::to_string(&graph).expect("serialises");
    let back: JobGraph = serde_json::from_str(&text).expect("deserialises");
    assert_eq!(back, graph);
    assert_eq!(graph.version, lower::SCHEMA_VERSION);
}

/// A run reads the graph alone: each job's channels, each data step's settings, the target's.
#[test]
fn the_job_graph_carries_what_a_run_reads() {
    use tunec_compiler::lower::{ChannelSource, JobChannel};
    let dir = root().join("examples/tiny-local");
    let text = std::fs::read_to_string(dir.join("tiny.tune")).expect("example");
    let graph = lowered_in(&text, &[], &Dir(dir));
    let channels = |node: &str| -> Vec<JobChannel> { graph.node(node).expect("node").channels().to_vec() };
    let data = |name: &str, part: &str| JobChannel {
        name: name.into(),
        source: ChannelSource::Data { node: "parts".into(), part: Some(part.into()) },
    };
    assert_eq!(
        channels("sft"),
        [
            JobChannel { name: "base_model".into(), source: ChannelSource::LocalModel { node: "base".into() } },
            data("train", "train"),
            data("val", "val"),
        ]
    );
    assert_eq!(
        channels("merged"),
        [
            JobChannel { name: "adapter".into(), source: ChannelSource::JobOutput { node: "sft".into() } },
            JobChannel { name: "base_model".into(), source: ChannelSource::LocalModel { node: "base".into() } },
        ]
    );
    assert_eq!(
        channels("report"),
        [
            JobChannel { name: "model".into(), source: ChannelSource::JobOutput { node: "merged".into() } },
            data("test", "test"),
        ]
    );
    assert!(graph.node("parts").expect("parts").channels().is_empty());
    // The data steps' settings, defaults included, read back as the checker's fields would be.
    let chat = graph.node("convo").expect("convo").fields();
    assert_eq!(chat.reference("data").map(|r| r.node), Some("facts".to_owned()));
    assert_eq!(chat.reference("tokenizer").map(|r| r.node), Some("base".to_owned()));
    assert!(chat.int("seq_len").is_some() && chat.word("overflow").is_some());
    let columns = graph.node("facts").expect("facts").fields().columns("columns").expect("columns");
    assert!(!columns.is_empty());
    assert_eq!(graph.node("base").expect("base").fields().str("path"), Some("model"));
    // And the target's, with env() as a placeholder.
    let medreason = lowered(&medreason(), &[]);
    let target = medreason.target_fields();
    assert_eq!(target.str("region"), Some("us-east-1"));
    assert_eq!(target.str_or_env("role").as_deref(), Some("${env:TUNEC_SAGEMAKER_ROLE}"));
    assert_eq!(
        medreason.node("sft").expect("sft").channels()[0].source,
        ChannelSource::Hub { node: "llama".into(), id: "meta-llama/Llama-3.1-8B-Instruct".into() }
    );
}

#[test]
fn keys_move_exactly_with_semantic_inputs() {
    let base = lowered(&medreason(), &[]);
    let key = |g: &JobGraph, n: &str| g.node(n).expect("node").key.clone();

    // Lowering is deterministic.
    assert_eq!(lowered(&medreason(), &[]), base);

    // A training hyperparameter changes the train node and everything downstream, nothing upstream.
    let lr = lowered(&medreason().replace("learning_rate          = 2e-4", "learning_rate          = 1e-4"), &[]);
    for upstream in ["llama", "raw", "convo", "parts"] {
        assert_eq!(key(&lr, upstream), key(&base, upstream), "{upstream}");
    }
    for downstream in ["sft", "merged", "report"] {
        assert_ne!(key(&lr, downstream), key(&base, downstream), "{downstream}");
    }

    // Operational settings do not change what a node produces.
    let ops = lowered(
        &medreason()
            .replace("spot                   = false", "spot = true  max_wait = 10h")
            .replace("max_runtime            = 5h", "max_runtime = 6h"),
        &[],
    );
    for node in ["sft", "merged", "report"] {
        assert_eq!(key(&ops, node), key(&base, node), "{node}");
    }

    // Neither do S3 locations or the role.
    let elsewhere =
        lowered(&medreason().replace("bucket = env(\"TUNEC_BUCKET\")", "bucket = \"s3://other/prefix\""), &[]);
    for node in &base.nodes {
        assert_eq!(key(&elsewhere, &node.name), node.key, "{}", node.name);
    }

    // The data changes every key from the dataset on.
    let data = lowered(&medreason().replace("train[:10000]", "train[:20000]"), &[]);
    assert_eq!(key(&data, "llama"), key(&base, "llama"));
    for node in ["raw", "convo", "parts", "sft", "merged", "report"] {
        assert_ne!(key(&data, node), key(&base, node), "{node}");
    }
}

/// The image a job runs in, from its request.
fn training_image(graph: &JobGraph, node: &str) -> String {
    match &graph.node(node).expect("node").execution {
        Execution::SageMakerJob { request, .. } => {
            request["AlgorithmSpecification"]["TrainingImage"].as_str().expect("an image").to_owned()
        }
        other => panic!("{node} is not a SageMaker job: {other:?}"),
    }
}

#[test]
fn job_keys_follow_the_scripts_and_the_image_they_run() {
    let text = medreason();
    let checked = check("pipeline.tune", &text, &[], &NoFiles);
    let program = checked.program.as_ref().expect("a program");
    let with_bundle = |bundle: &str| {
        lower::lower(&LowerInput {
            program,
            estimates: checked.estimates.as_ref(),
            catalog: Catalog::builtin(),
            bundle_digest: bundle,
        })
    };
    let base = with_bundle(BUNDLE);
    let key = |g: &JobGraph, n: &str| g.node(n).expect("node").key.clone();
    let (jobs, data) = (["sft", "merged", "report"], ["llama", "raw", "convo", "parts"]);

    // Another script bundle (an edited train.py, merge.py or evaluate.py): every job reruns, under
    // a new name, and nothing upstream does.
    let edited = with_bundle("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
    for node in data {
        assert_eq!(key(&edited, node), key(&base, node), "{node}");
    }
    for node in jobs {
        assert_ne!(key(&edited, node), key(&base, node), "{node}");
        assert_ne!(edited.node(node).map(|n| &n.execution), base.node(node).map(|n| &n.execution), "{node}");
    }

    // Another image (the region's registry serves it under another URI): the same.
    let moved = lowered(&text.replace("region = \"us-east-1\"", "region = \"eu-west-1\""), &[]);
    for node in data {
        assert_eq!(key(&moved, node), key(&base, node), "{node}");
    }
    for node in jobs {
        assert_ne!(training_image(&moved, node), training_image(&base, node), "{node}");
        assert_ne!(key(&moved, node), key(&base, node), "{node}");
    }
}

#[test]
fn no_environment_value_is_inlined() {
    let graph = lowered(&medreason(), &[]);
    let text = serde_json::to_string(&graph).expect("serialises");
    assert_eq!(graph.env, ["TUNEC_BUCKET", "TUNEC_HF_TOKEN_SECRET", "TUNEC_SAGEMAKER_ROLE"]);
    for name in &graph.env {
        assert!(text.contains(&format!("${{env:{name}}}")), "{name} appears as a placeholder");
    }
    let Some(Execution::SageMakerJob { request, .. }) = graph.node("sft").map(|n| &n.execution) else {
        panic!("sft is a SageMaker job");
    };
    assert_eq!(request["RoleArn"], "${env:TUNEC_SAGEMAKER_ROLE}");
    assert_eq!(request["Environment"]["TUNEC_HF_TOKEN_SECRET"], "${env:TUNEC_HF_TOKEN_SECRET}");
}

#[test]
fn merge_and_evaluate_read_upstream_artifacts() {
    let graph = lowered(&medreason(), &[]);
    let job = |n: &str| match &graph.node(n).expect("node").execution {
        Execution::SageMakerJob { request, job_name, .. } => (request.clone(), job_name.clone()),
        other => panic!("{n}: {other:?}"),
    };
    let (sft, sft_job) = job("sft");
    let (merge, merge_job) = job("merged");
    let (eval, _) = job("report");
    let out = sft["OutputDataConfig"]["S3OutputPath"].as_str().expect("output path");
    let adapter = &merge["InputDataConfig"][0];
    assert_eq!(adapter["ChannelName"], "adapter");
    assert_eq!(adapter["DataSource"]["S3DataSource"]["S3Uri"], format!("{out}{sft_job}/output/model/"));
    let merged_out = merge["OutputDataConfig"]["S3OutputPath"].as_str().expect("output path");
    let channels: Vec<&str> = eval["InputDataConfig"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["ChannelName"].as_str().expect("name"))
        .collect();
    assert_eq!(channels, ["model", "test", "config", "code"]);
    assert_eq!(
        eval["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"],
        format!("{merged_out}{merge_job}/output/model/")
    );
    assert!(sft.get("CheckpointConfig").is_some() && merge.get("CheckpointConfig").is_none());

    let definition = pipeline::definition(&graph);
    let steps = definition["Steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["Arguments"].get("TrainingJobName").is_none()));
    assert_eq!(steps[1]["DependsOn"], serde_json::json!(["sft"]));
    assert_eq!(
        steps[1]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"],
        serde_json::json!({"Get": "Steps.sft.ModelArtifacts.S3ModelArtifacts"})
    );
    assert_eq!(steps[0]["Arguments"]["RoleArn"], serde_json::json!({"Get": "Parameters.TUNEC_SAGEMAKER_ROLE"}));
}

#[test]
fn spot_jobs_wait_at_least_as_long_as_they_run() {
    let graph = lowered(&medreason().replace("spot                   = false", "spot = true  max_wait = 10h"), &[]);
    let Some(Execution::SageMakerJob { request, .. }) = graph.node("sft").map(|n| &n.execution) else { panic!("job") };
    assert_eq!(request["EnableManagedSpotTraining"], true);
    assert_eq!(request["StoppingCondition"]["MaxRuntimeInSeconds"], 18_000);
    assert_eq!(request["StoppingCondition"]["MaxWaitTimeInSeconds"], 36_000);
}

#[test]
fn models_arrive_from_the_hub_an_upload_or_another_job() {
    // Evaluate a base model directly, and train again from a merged model.
    let text = medreason()
        .replace(
            "evaluate report = evaluate(merged, parts.test) {\n    metrics = [exact_match, rouge_l]\n  }",
            "evaluate report = evaluate(merged, parts.test) { metrics = [exact_match, rouge_l] }\n  evaluate baseline = evaluate(llama, parts.test) { compute = \"ml.g6e.xlarge\" x 1 }\n  train again = sft(merged, data = parts.train) {\n    method = lora { r = 8 }\n    compute = \"ml.p4d.24xlarge\" x 1\n  }",
        );
    let graph = lowered(&text, &[]);
    let job = |n: &str| match &graph.node(n).expect("node").execution {
        Execution::SageMakerJob { request, args_yaml, .. } => (request.clone(), args_yaml.clone()),
        other => panic!("{n}: {other:?}"),
    };
    let channels = |request: &serde_json::Value| -> Vec<String> {
        request["InputDataConfig"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| c["ChannelName"].as_str().expect("name").to_owned())
            .collect()
    };
    let (baseline, baseline_args) = job("baseline");
    assert_eq!(channels(&baseline), ["test", "config", "code"], "a Hub model is downloaded, not a channel");
    assert!(baseline_args.contains("model_name_or_path: \"meta-llama/Llama-3.1-8B-Instruct\""), "{baseline_args}");
    assert_eq!(baseline["Environment"]["TUNEC_HF_TOKEN_SECRET"], "${env:TUNEC_HF_TOKEN_SECRET}");

    let (again, again_args) = job("again");
    assert_eq!(channels(&again), ["base_model", "train", "config", "code"]);
    let merged_out = match &graph.node("merged").expect("merged").execution {
        Execution::SageMakerJob { request, job_name, .. } => {
            format!("{}{job_name}/output/model/", request["OutputDataConfig"]["S3OutputPath"].as_str().expect("path"))
        }
        _ => panic!("merged is a job"),
    };
    assert_eq!(again["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"], merged_out);
    assert!(again_args.contains("model_name_or_path: \"/opt/ml/input/data/base_model\""), "{again_args}");
    assert!(
        again_args.contains("pad_token: \"<|finetune_right_pad_id|>\""),
        "tokenizer facts follow the chain to the catalog model"
    );
    assert_eq!(
        again["Environment"]["TUNEC_HF_TOKEN_SECRET"], "${env:TUNEC_HF_TOKEN_SECRET}",
        "the token of the model at the chain's start"
    );
}

#[test]
fn a_hub_token_reaches_the_job_as_a_secret_arn_or_an_env_placeholder() {
    let token = "secret(env(\"TUNEC_HF_TOKEN_SECRET\"))";
    assert!(medreason().contains(token));
    let environment = |text: &str| -> Vec<serde_json::Value> {
        let graph = lowered(text, &[]);
        ["sft", "merged", "report"]
            .iter()
            .map(|n| match &graph.node(n).expect("node").execution {
                Execution::SageMakerJob { request, .. } => request["Environment"].clone(),
                other => panic!("{n}: {other:?}"),
            })
            .collect()
    };
    let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:hub/token-Ab12Cd";
    for env in environment(&medreason().replace(token, &format!("secret(\"{arn}\")"))) {
        assert_eq!(env["TUNEC_HF_TOKEN_SECRET"], arn, "the ARN as written");
        assert!(env.get("HF_TOKEN").is_none(), "{env}");
    }
    for env in environment(&medreason().replace(token, "env(\"HF_TOKEN\")")) {
        assert_eq!(env["HF_TOKEN"], "${env:HF_TOKEN}", "the value is filled in at submission (token_in_job)");
        assert!(env.get("TUNEC_HF_TOKEN_SECRET").is_none(), "{env}");
    }
    for env in environment(&medreason().replace(&format!("token     = {token}"), "")) {
        assert!(env.get("HF_TOKEN").is_none() && env.get("TUNEC_HF_TOKEN_SECRET").is_none(), "{env}");
    }
}
