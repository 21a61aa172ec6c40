//! A lowered CreateTrainingJob request (the API's JSON shape, `docs/lowering.md` §6) as the SDK's
//! input type, and the `${env:NAME}` placeholders resolved from the environment, in memory only.
//!
//! The SDK's builders do not check the API's required members or its enumerations (an unknown
//! instance type would be sent as an opaque string and refused by the service), so [`to_input`]
//! does: a member that is missing or of the wrong type, or an enumeration value the SDK does not
//! know, is an error that names it. So is a member it does not map ([`MAPPED`]): a request
//! lowered with a member the conversion would drop is refused, not sent without it.

use aws_sdk_sagemaker::operation::create_training_job::CreateTrainingJobInput;
use aws_sdk_sagemaker::types::{
    AlgorithmSpecification, Channel, CheckpointConfig, DataSource, OutputCompressionType, OutputDataConfig,
    ResourceConfig, S3DataDistribution, S3DataSource, S3DataType, StoppingCondition, Tag, TrainingInputMode,
    TrainingInstanceType,
};
use serde_json::Value;

fn text<'a>(v: &'a Value, pointer: &str) -> Result<&'a str, String> {
    v.pointer(pointer).and_then(Value::as_str).ok_or_else(|| format!("the request has no string at {pointer}"))
}

fn int(v: &Value, pointer: &str) -> Result<i32, String> {
    v.pointer(pointer)
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| format!("the request has no 32-bit integer at {pointer}"))
}

fn known<T: From<&'static str>>(value: &str, values: &'static [&'static str], what: &str) -> Result<T, String> {
    values
        .iter()
        .find(|v| **v == value)
        .map(|v| T::from(v))
        .ok_or_else(|| format!("`{value}` is not a {what} the SageMaker API knows"))
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The members [`to_input`] maps, in the request's shape: an object lists its members, a list
/// holds the shape of its items, `"*"` maps any member to a string (HyperParameters, Environment),
/// and `true` is a value taken as it is.
const MAPPED: &str = r#"{
  "TrainingJobName": true, "RoleArn": true, "EnableManagedSpotTraining": true,
  "AlgorithmSpecification": {"TrainingImage": true, "TrainingInputMode": true,
                             "ContainerEntrypoint": true, "ContainerArguments": true},
  "InputDataConfig": [{"ChannelName": true, "InputMode": true,
                       "DataSource": {"S3DataSource": {"S3DataType": true, "S3Uri": true, "S3DataDistributionType": true}}}],
  "OutputDataConfig": {"S3OutputPath": true, "CompressionType": true, "KmsKeyId": true},
  "ResourceConfig": {"InstanceType": true, "InstanceCount": true, "VolumeSizeInGB": true,
                     "KeepAlivePeriodInSeconds": true, "VolumeKmsKeyId": true},
  "StoppingCondition": {"MaxRuntimeInSeconds": true, "MaxWaitTimeInSeconds": true},
  "HyperParameters": "*", "Environment": "*",
  "Tags": [{"Key": true, "Value": true}],
  "CheckpointConfig": {"S3Uri": true, "LocalPath": true}
}"#;

/// The JSON pointers of the members of `value` that `shape` does not map.
fn unmapped(pointer: &str, value: &Value, shape: &Value, out: &mut Vec<String>) {
    match (value, shape) {
        (Value::Object(members), Value::Object(known)) => {
            for (name, member) in members {
                let at = format!("{pointer}/{name}");
                match known.get(name) {
                    Some(shape) => unmapped(&at, member, shape, out),
                    None => out.push(at),
                }
            }
        }
        (Value::Array(items), Value::Array(shape)) => {
            for (i, item) in items.iter().enumerate() {
                unmapped(&format!("{pointer}/{i}"), item, &shape[0], out);
            }
        }
        _ => {}
    }
}

/// The SDK's CreateTrainingJob input for a request in the API's JSON shape.
pub fn to_input(req: &Value) -> Result<CreateTrainingJobInput, String> {
    let shape: Value = serde_json::from_str(MAPPED).map_err(|e| format!("the mapped members: {e}"))?;
    let mut dropped = Vec::new();
    unmapped("", req, &shape, &mut dropped);
    if !dropped.is_empty() {
        return Err(format!(
            "the request has members tunec does not send to SageMaker: {} (a newer tunec lowered it, or it was edited)",
            dropped.join(", ")
        ));
    }
    let algorithm = AlgorithmSpecification::builder()
        .training_image(text(req, "/AlgorithmSpecification/TrainingImage")?)
        .training_input_mode(known::<TrainingInputMode>(
            text(req, "/AlgorithmSpecification/TrainingInputMode")?,
            TrainingInputMode::values(),
            "training input mode",
        )?)
        .set_container_entrypoint(Some(strings(req, "/AlgorithmSpecification/ContainerEntrypoint")))
        .set_container_arguments(Some(strings(req, "/AlgorithmSpecification/ContainerArguments")))
        .build();
    let mut channels = Vec::new();
    for c in req["InputDataConfig"].as_array().ok_or("the request has no InputDataConfig list")? {
        let uri = text(c, "/DataSource/S3DataSource/S3Uri")?;
        if !uri.starts_with("s3://") {
            return Err(format!("channel S3Uri `{uri}` is not an s3:// URI"));
        }
        let source = S3DataSource::builder()
            .s3_data_type(known::<S3DataType>(
                text(c, "/DataSource/S3DataSource/S3DataType")?,
                S3DataType::values(),
                "S3 data type",
            )?)
            .s3_uri(uri)
            .s3_data_distribution_type(known::<S3DataDistribution>(
                text(c, "/DataSource/S3DataSource/S3DataDistributionType")?,
                S3DataDistribution::values(),
                "S3 data distribution",
            )?)
            .build();
        let name = text(c, "/ChannelName")?;
        if name.is_empty() || name.len() > 64 {
            return Err(format!("channel name `{name}` must have 1 to 64 characters"));
        }
        channels.push(
            Channel::builder()
                .channel_name(name)
                .data_source(DataSource::builder().s3_data_source(source).build())
                .input_mode(known::<TrainingInputMode>(
                    text(c, "/InputMode")?,
                    TrainingInputMode::values(),
                    "input mode",
                )?)
                .build(),
        );
    }
    if channels.len() > 20 {
        return Err(format!("{} channels; SageMaker accepts at most 20", channels.len()));
    }
    let output = OutputDataConfig::builder()
        .s3_output_path(text(req, "/OutputDataConfig/S3OutputPath")?)
        .compression_type(known::<OutputCompressionType>(
            text(req, "/OutputDataConfig/CompressionType")?,
            OutputCompressionType::values(),
            "output compression",
        )?)
        .set_kms_key_id(req.pointer("/OutputDataConfig/KmsKeyId").and_then(Value::as_str).map(str::to_owned))
        .build();
    let resources = ResourceConfig::builder()
        .instance_type(known::<TrainingInstanceType>(
            text(req, "/ResourceConfig/InstanceType")?,
            TrainingInstanceType::values(),
            "training instance type",
        )?)
        .instance_count(int(req, "/ResourceConfig/InstanceCount")?)
        .volume_size_in_gb(int(req, "/ResourceConfig/VolumeSizeInGB")?)
        .keep_alive_period_in_seconds(int(req, "/ResourceConfig/KeepAlivePeriodInSeconds")?)
        .set_volume_kms_key_id(req.pointer("/ResourceConfig/VolumeKmsKeyId").and_then(Value::as_str).map(str::to_owned))
        .build();
    let mut stopping =
        StoppingCondition::builder().max_runtime_in_seconds(int(req, "/StoppingCondition/MaxRuntimeInSeconds")?);
    if req.pointer("/StoppingCondition/MaxWaitTimeInSeconds").is_some() {
        stopping = stopping.max_wait_time_in_seconds(int(req, "/StoppingCondition/MaxWaitTimeInSeconds")?);
    }
    let mut input = CreateTrainingJobInput::builder()
        .training_job_name(text(req, "/TrainingJobName")?)
        .algorithm_specification(algorithm)
        .role_arn(text(req, "/RoleArn")?)
        .set_input_data_config(Some(channels))
        .output_data_config(output)
        .resource_config(resources)
        .stopping_condition(stopping.build())
        .enable_managed_spot_training(req["EnableManagedSpotTraining"].as_bool().unwrap_or(false));
    let pairs = |key: &str| -> Result<Vec<(String, String)>, String> {
        let Some(map) = req.get(key).and_then(Value::as_object) else { return Ok(Vec::new()) };
        map.iter()
            .map(|(k, v)| {
                v.as_str().map(|v| (k.clone(), v.to_owned())).ok_or_else(|| format!("{key}.{k} is not a string"))
            })
            .collect()
    };
    for (k, v) in pairs("HyperParameters")? {
        input = input.hyper_parameters(k, v);
    }
    for (k, v) in pairs("Environment")? {
        if k.len() > 512 || v.len() > 512 {
            return Err(format!("Environment.{k}: names and values are limited to 512 characters"));
        }
        input = input.environment(k, v);
    }
    for tag in req.get("Tags").and_then(Value::as_array).into_iter().flatten() {
        input = input.tags(Tag::builder().key(text(tag, "/Key")?).value(text(tag, "/Value")?).build());
    }
    if req.get("CheckpointConfig").is_some() {
        input = input.checkpoint_config(
            CheckpointConfig::builder()
                .s3_uri(text(req, "/CheckpointConfig/S3Uri")?)
                .local_path(text(req, "/CheckpointConfig/LocalPath")?)
                .build(),
        );
    }
    input.build().map_err(|e| format!("the CreateTrainingJob request does not build: {e}"))
}

/// `text` with every `${env:NAME}` replaced by the variable's value; an unset or empty variable is
/// an error naming all of them.
pub fn resolve_placeholders(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = &after[..end];
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => out.push_str(&value),
            _ => {
                if !missing.contains(&name) {
                    missing.push(name);
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the pipeline reads {} with env(...), and {} not set: export {}",
            missing.join(", "),
            if missing.len() == 1 { "it is" } else { "they are" },
            missing.iter().map(|m| format!("{m}=...")).collect::<Vec<_>>().join(" ")
        ))
    }
}

/// `value` with the placeholders of every string resolved (values are inserted as data, never
/// spliced into JSON text).
pub fn resolve_value(value: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => Value::String(resolve_placeholders(s)?),
        Value::Array(items) => Value::Array(items.iter().map(resolve_value).collect::<Result<_, _>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Ok((k.clone(), resolve_value(v)?))).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_resolved_as_data_and_missing_ones_are_all_named() {
        // Variables no other test sets, with a value that would break JSON if it were spliced in.
        std::env::set_var("TUNEC_TEST_REQ_ROLE", "arn:aws:iam::111122223333:role/r\"x");
        let value =
            serde_json::json!({"RoleArn": "${env:TUNEC_TEST_REQ_ROLE}", "list": ["a-${env:TUNEC_TEST_REQ_ROLE}"]});
        let resolved = resolve_value(&value).expect("resolved");
        assert_eq!(resolved["RoleArn"], "arn:aws:iam::111122223333:role/r\"x");
        assert_eq!(resolved["list"][0], "a-arn:aws:iam::111122223333:role/r\"x");
        let err = resolve_placeholders("${env:TUNEC_TEST_UNSET_A}/${env:TUNEC_TEST_UNSET_B}/${env:TUNEC_TEST_UNSET_A}")
            .expect_err("unset");
        assert!(err.contains("TUNEC_TEST_UNSET_A, TUNEC_TEST_UNSET_B") && err.contains("they are not set"), "{err}");
        assert_eq!(resolve_placeholders("no placeholder").expect("plain"), "no placeholder");
    }

    #[test]
    fn a_request_with_an_unknown_instance_type_is_refused_by_name() {
        let mut req = serde_json::json!({
            "TrainingJobName": "p-sft-0123456789",
            "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::111122223333:role/r",
            "InputDataConfig": [],
            "OutputDataConfig": {"S3OutputPath": "s3://b/p/output/sft/", "CompressionType": "NONE"},
            "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30, "KeepAlivePeriodInSeconds": 0},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        });
        let input = to_input(&req).expect("builds");
        assert_eq!(input.training_job_name(), Some("p-sft-0123456789"));
        req["ResourceConfig"]["InstanceType"] = "ml.g99.huge".into();
        let err = to_input(&req).expect_err("unknown instance type");
        assert!(err.contains("`ml.g99.huge` is not a training instance type"), "{err}");
        req["ResourceConfig"]["InstanceType"] = "ml.g5.2xlarge".into();
        req["StoppingCondition"] = serde_json::json!({});
        assert!(to_input(&req).expect_err("missing").contains("/StoppingCondition/MaxRuntimeInSeconds"));
    }

    #[test]
    fn a_member_the_conversion_would_drop_is_refused_by_its_pointer() {
        let mut req = serde_json::json!({
            "TrainingJobName": "p-sft-0123456789",
            "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::111122223333:role/r",
            "InputDataConfig": [{"ChannelName": "train", "InputMode": "File", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://b/p/data/", "S3DataDistributionType": "FullyReplicated"}}}],
            "OutputDataConfig": {"S3OutputPath": "s3://b/p/output/sft/", "CompressionType": "NONE"},
            "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30, "KeepAlivePeriodInSeconds": 0},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "HyperParameters": {"config": "/opt/ml/input/data/config/args.yaml"},
            "Environment": {"TUNEC_NODE": "sft"},
        });
        to_input(&req).expect("every member is mapped");
        req["VpcConfig"] = serde_json::json!({"Subnets": ["subnet-1"]});
        req["InputDataConfig"][0]["ContentType"] = "application/jsonlines".into();
        req["ResourceConfig"]["InstanceGroups"] = serde_json::json!([]);
        let err = to_input(&req).expect_err("unmapped members");
        assert!(err.contains("/InputDataConfig/0/ContentType, /ResourceConfig/InstanceGroups, /VpcConfig"), "{err}");
    }
}
