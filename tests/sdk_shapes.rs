//! Every lowered CreateTrainingJob request, turned into the real aws-sdk-sagemaker input type
//! through its builders: each required field must be present and every enumeration value must be
//! one the SDK knows (an unknown instance type or input mode would be sent as an opaque string and
//! fail only at the service). Placeholders are filled with well-formed account values first, as
//! the runtime does at submission.

use aws_sdk_sagemaker::operation::create_training_job::CreateTrainingJobInput;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, CheckpointConfig, DataSource, OutputCompressionType, OutputDataConfig,
    ResourceConfig, S3DataDistribution, S3DataSource, S3DataType, StoppingCondition, Tag, TrainingInputMode,
    TrainingInstanceType,
};
use serde_json::Value;
use std::path::Path;
use tunec_compiler::catalog::Catalog;
use tunec_compiler::lower::{self, Execution, LowerInput};

fn fill(value: &Value) -> Value {
    let text = serde_json::to_string(value)
        .expect("json")
        .replace("${env:TUNEC_SAGEMAKER_ROLE}", "arn:aws:iam::111122223333:role/tunec-execution")
        .replace("${env:TUNEC_BUCKET}", "s3://tunec-test-bucket/team")
        .replace("${env:HF_TOKEN}", "hf_placeholder");
    assert!(!text.contains("${env:"), "every placeholder is known to this test: {text}");
    serde_json::from_str(&text).expect("json")
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} is a string"))
}

fn i(v: &Value, pointer: &str) -> i32 {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or_else(|| panic!("{pointer} is an int"))
}

fn known<T>(value: &str, values: &[&str], what: &str) -> T
where
    T: From<&'static str>,
{
    assert!(values.contains(&value), "`{value}` is not a {what} the SDK knows");
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    T::from(leaked)
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|x| x.as_str().expect("string").to_owned()).collect())
        .unwrap_or_default()
}

fn to_sdk(req: &Value) -> CreateTrainingJobInput {
    let algorithm = AlgorithmSpecification::builder()
        .training_image(s(req, "/AlgorithmSpecification/TrainingImage"))
        .training_input_mode(known::<TrainingInputMode>(
            s(req, "/AlgorithmSpecification/TrainingInputMode"),
            TrainingInputMode::values(),
            "input mode",
        ))
        .set_container_entrypoint(Some(strings(req, "/AlgorithmSpecification/ContainerEntrypoint")))
        .set_container_arguments(Some(strings(req, "/AlgorithmSpecification/ContainerArguments")))
        .build();
    // The SDK's builders do not enforce the API's required members; the API model does
    // (service-2.json), so check them here.
    assert!(algorithm.training_input_mode().is_some() && algorithm.training_image().is_some());
    let channels: Vec<Channel> = req["InputDataConfig"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            let source = S3DataSource::builder()
                .s3_data_type(known::<S3DataType>(
                    s(c, "/DataSource/S3DataSource/S3DataType"),
                    S3DataType::values(),
                    "S3 data type",
                ))
                .s3_uri(s(c, "/DataSource/S3DataSource/S3Uri"))
                .s3_data_distribution_type(known::<S3DataDistribution>(
                    s(c, "/DataSource/S3DataSource/S3DataDistributionType"),
                    S3DataDistribution::values(),
                    "distribution",
                ))
                .build();
            assert!(source.s3_data_type().is_some() && source.s3_uri().is_some());
            assert!(s(c, "/DataSource/S3DataSource/S3Uri").starts_with("s3://"));
            Channel::builder()
                .channel_name(s(c, "/ChannelName"))
                .data_source(DataSource::builder().s3_data_source(source).build())
                .input_mode(known::<TrainingInputMode>(s(c, "/InputMode"), TrainingInputMode::values(), "input mode"))
                .build()
        })
        .collect();
    assert!(channels.len() <= 20, "SageMaker accepts at most 20 channels");
    let output = OutputDataConfig::builder()
        .s3_output_path(s(req, "/OutputDataConfig/S3OutputPath"))
        .compression_type(known::<OutputCompressionType>(
            s(req, "/OutputDataConfig/CompressionType"),
            OutputCompressionType::values(),
            "compression",
        ))
        .build();
    assert!(output.s3_output_path().is_some());
    let resources = ResourceConfig::builder()
        .instance_type(known::<TrainingInstanceType>(
            s(req, "/ResourceConfig/InstanceType"),
            TrainingInstanceType::values(),
            "training instance type",
        ))
        .instance_count(i(req, "/ResourceConfig/InstanceCount"))
        .volume_size_in_gb(i(req, "/ResourceConfig/VolumeSizeInGB"))
        .keep_alive_period_in_seconds(i(req, "/ResourceConfig/KeepAlivePeriodInSeconds"))
        .build();
    let mut stopping =
        StoppingCondition::builder().max_runtime_in_seconds(i(req, "/StoppingCondition/MaxRuntimeInSeconds"));
    if req.pointer("/StoppingCondition/MaxWaitTimeInSeconds").is_some() {
        stopping = stopping.max_wait_time_in_seconds(i(req, "/StoppingCondition/MaxWaitTimeInSeconds"));
    }
    let mut input = CreateTrainingJobInput::builder()
        .training_job_name(s(req, "/TrainingJobName"))
        .algorithm_specification(algorithm)
        .role_arn(s(req, "/RoleArn"))
        .set_input_data_config(Some(channels))
        .output_data_config(output)
        .resource_config(resources)
        .stopping_condition(stopping.build())
        .enable_managed_spot_training(req["EnableManagedSpotTraining"].as_bool().expect("bool"));
    for (k, v) in req["HyperParameters"].as_object().expect("hyperparameters") {
        input = input.hyper_parameters(k, v.as_str().expect("hyperparameters are strings"));
    }
    for (k, v) in req["Environment"].as_object().expect("environment") {
        assert!(k.len() <= 512 && v.as_str().expect("string").len() <= 512, "environment limits");
        input = input.environment(k, v.as_str().expect("environment values are strings"));
    }
    for tag in req["Tags"].as_array().expect("tags") {
        input = input.tags(Tag::builder().key(s(tag, "/Key")).value(s(tag, "/Value")).build());
    }
    if req.get("CheckpointConfig").is_some() {
        input = input.checkpoint_config(
            CheckpointConfig::builder()
                .s3_uri(s(req, "/CheckpointConfig/S3Uri"))
                .local_path(s(req, "/CheckpointConfig/LocalPath"))
                .build(),
        );
    }
    let input = input.build().expect("CreateTrainingJobInput builds");
    for channel in input.input_data_config() {
        assert!(channel.channel_name().is_some_and(|n| n.len() <= 64) && channel.data_source().is_some());
    }
    assert!(input.resource_config().is_some_and(|r| r.volume_size_in_gb().is_some()));
    assert!(input.stopping_condition().is_some() && input.role_arn().is_some());
    input
}

#[test]
fn every_example_request_builds_with_the_sdk() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut requests = 0;
    for entry in std::fs::read_dir(root.join("examples")).expect("examples").flatten() {
        for file in std::fs::read_dir(entry.path()).expect("example folder").flatten() {
            if file.path().extension().is_none_or(|e| e != "tune") {
                continue;
            }
            let text = std::fs::read_to_string(file.path()).expect("example");
            let checked = tunec_compiler::check("example.tune", &text, &[], &tunec_compiler::NoFiles);
            let program = checked.program.as_ref().expect("program");
            let graph = lower::lower(&LowerInput {
                program,
                estimates: checked.estimates.as_ref(),
                catalog: Catalog::builtin(),
                bundle_digest: "0000000000000000000000000000000000000000000000000000000000000000",
            });
            for node in &graph.nodes {
                if let Execution::SagemakerJob { request, job_name, .. } = &node.execution {
                    let input = to_sdk(&fill(request));
                    assert_eq!(input.training_job_name(), Some(job_name.as_str()));
                    requests += 1;
                }
            }
        }
    }
    assert!(requests >= 3, "the medreason example has three jobs");
}

#[test]
fn every_catalog_instance_is_a_sagemaker_training_instance_type() {
    for instance in &Catalog::builtin().instances {
        assert!(
            TrainingInstanceType::values().contains(&instance.name.as_str()),
            "`{}` is not a TrainingInstanceType of the SDK",
            instance.name
        );
    }
}
