//! Every lowered CreateTrainingJob request, turned into the real aws-sdk-sagemaker input type
//! through its builders: each required field must be present and every enumeration value must be
//! one the SDK knows (an unknown instance type or input mode would be sent as an opaque string and
//! fail only at the service). Placeholders are filled with well-formed account values first, as
//! the runtime does at submission.

use aws_sdk_sagemaker::operation::create_training_job::CreateTrainingJobInput;
use aws_sdk_sagemaker::types::TrainingInstanceType;
use serde_json::Value;
use std::path::Path;
use tunec_compiler::catalog::Catalog;
use tunec_compiler::lower::{self, Execution, LowerInput};
use tunec_runtime::run::target::sagemaker::request::to_input;

fn fill(value: &Value) -> Value {
    let text = serde_json::to_string(value)
        .expect("json")
        .replace("${env:TUNEC_SAGEMAKER_ROLE}", "arn:aws:iam::111122223333:role/tunec-execution")
        .replace("${env:TUNEC_BUCKET}", "s3://tunec-test-bucket/team")
        .replace("${env:HF_TOKEN}", "hf_placeholder")
        .replace(
            "${env:TUNEC_HF_TOKEN_SECRET}",
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:hub-token-Ab12Cd",
        );
    assert!(!text.contains("${env:"), "every placeholder is known to this test: {text}");
    serde_json::from_str(&text).expect("json")
}

/// The runtime's conversion (the one `tunec run` submits with), plus the API's limits that the
/// SDK's builders do not check.
fn to_sdk(req: &Value) -> CreateTrainingJobInput {
    let input = to_input(req).unwrap_or_else(|e| panic!("the request does not convert: {e}"));
    assert!(input.algorithm_specification().is_some_and(|a| a.training_input_mode().is_some()));
    for channel in input.input_data_config() {
        assert!(channel.channel_name().is_some_and(|n| n.len() <= 64) && channel.data_source().is_some());
        let uri = channel.data_source().and_then(|d| d.s3_data_source()).and_then(|s| s.s3_uri());
        assert!(uri.is_some_and(|u| u.starts_with("s3://")), "{uri:?}");
    }
    assert!(input.input_data_config().len() <= 20, "SageMaker accepts at most 20 channels");
    assert!(input.resource_config().is_some_and(|r| r.volume_size_in_gb().is_some() && r.instance_type().is_some()));
    assert!(input.stopping_condition().is_some() && input.role_arn().is_some());
    assert!(input.output_data_config().is_some_and(|o| o.s3_output_path().is_some()));
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
                if let Execution::SageMakerJob { request, job_name, .. } = &node.execution {
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
