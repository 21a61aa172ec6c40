//! A SageMaker Pipelines definition (Version 2020-12-01) of a job graph.
//!
//! Each SageMaker job becomes a Training step whose Arguments are its CreateTrainingJob request
//! without `TrainingJobName` (the service names pipeline jobs). A channel that reads an upstream
//! job's model takes `Steps.<step>.ModelArtifacts.S3ModelArtifacts`, which also orders the steps;
//! `DependsOn` repeats the edges so that the order reads at a glance. `${env:NAME}` placeholders
//! become pipeline parameters (`{"Get": "Parameters.NAME"}`, joined with `Std:Join` inside longer
//! strings), so the definition holds no account value or secret. Data steps are not part of the
//! definition: `tunec run` prepares and uploads their content-addressed outputs first. Steps cache for 30 days and retry capacity and internal errors with backoff.

use crate::lower::{Execution, JobGraph};
use serde_json::{json, Value as Json};

/// SageMaker Pipelines step names: letters, digits, `-` and `_`.
pub fn step_name(node: &str) -> String {
    node.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

fn placeholders(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = text[from..].find("${env:").map(|i| i + from) {
        let Some(end) = text[start..].find('}').map(|i| i + start) else { break };
        out.push((start, end + 1, text[start + 6..end].to_owned()));
        from = end + 1;
    }
    out
}

/// Replaces placeholders in every string of `value` by parameter references, collecting names.
fn parameterize(value: &mut Json, names: &mut Vec<String>) {
    match value {
        Json::String(text) => {
            let found = placeholders(text);
            if found.is_empty() {
                return;
            }
            names.extend(found.iter().map(|(_, _, n)| n.clone()));
            let whole = found.len() == 1 && found[0].0 == 0 && found[0].1 == text.len();
            *value = if whole {
                json!({"Get": format!("Parameters.{}", found[0].2)})
            } else {
                let mut parts: Vec<Json> = Vec::new();
                let mut at = 0;
                for (start, end, name) in &found {
                    if *start > at {
                        parts.push(json!(text[at..*start]));
                    }
                    parts.push(json!({"Get": format!("Parameters.{name}")}));
                    at = *end;
                }
                if at < text.len() {
                    parts.push(json!(text[at..]));
                }
                json!({"Std:Join": {"On": "", "Values": parts}})
            };
        }
        Json::Array(items) => items.iter_mut().for_each(|v| parameterize(v, names)),
        Json::Object(map) => map.values_mut().for_each(|v| parameterize(v, names)),
        _ => {}
    }
}

/// The pipeline definition document.
pub fn definition(graph: &JobGraph) -> Json {
    let mut steps = Vec::new();
    let mut params: Vec<String> = Vec::new();
    // Model output prefix of each job → its step, to wire channels to step properties.
    let mut outputs: Vec<(String, String)> = Vec::new();
    for node in &graph.nodes {
        let Execution::SageMakerJob { request, job_name, .. } = &node.execution else { continue };
        let out = request["OutputDataConfig"]["S3OutputPath"].as_str().unwrap_or_default();
        outputs.push((format!("{out}{job_name}/output/model/"), step_name(&node.name)));
    }
    for node in &graph.nodes {
        let Execution::SageMakerJob { request, .. } = &node.execution else { continue };
        let mut arguments = request.clone();
        if let Json::Object(map) = &mut arguments {
            map.remove("TrainingJobName");
        }
        let mut depends: Vec<String> = Vec::new();
        if let Some(channels) = arguments["InputDataConfig"].as_array_mut() {
            for channel in channels {
                let uri = &mut channel["DataSource"]["S3DataSource"]["S3Uri"];
                if let Some((_, step)) = outputs.iter().find(|(prefix, _)| uri.as_str() == Some(prefix.as_str())) {
                    *uri = json!({"Get": format!("Steps.{step}.ModelArtifacts.S3ModelArtifacts")});
                    depends.push(step.clone());
                }
            }
        }
        parameterize(&mut arguments, &mut params);
        let mut step = json!({
            "Name": step_name(&node.name),
            "Type": "Training",
            "Arguments": arguments,
            "CacheConfig": {"Enabled": true, "ExpireAfter": "P30D"},
            "RetryPolicies": [
                {"ExceptionType": ["SageMaker.CAPACITY_ERROR", "SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 60, "BackoffRate": 2.0, "MaxAttempts": 5},
                {"ExceptionType": ["Step.THROTTLING", "Step.SERVICE_FAULT"], "IntervalSeconds": 5, "BackoffRate": 2.0, "MaxAttempts": 5},
            ],
        });
        if !depends.is_empty() {
            step["DependsOn"] = json!(depends);
        }
        steps.push(step);
    }
    params.sort();
    params.dedup();
    json!({
        "Version": "2020-12-01",
        "Metadata": {},
        "Parameters": params.iter().map(|p| json!({"Name": p, "Type": "String"})).collect::<Vec<_>>(),
        "PipelineExperimentConfig": {
            "ExperimentName": {"Get": "Execution.PipelineName"},
            "TrialName": {"Get": "Execution.PipelineExecutionId"},
        },
        "Steps": steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_parameters() {
        let mut v = json!({"a": "${env:ROLE}", "b": ["s3://x/${env:B}/y", "plain"]});
        let mut names = Vec::new();
        parameterize(&mut v, &mut names);
        assert_eq!(v["a"], json!({"Get": "Parameters.ROLE"}));
        assert_eq!(v["b"][0], json!({"Std:Join": {"On": "", "Values": ["s3://x/", {"Get": "Parameters.B"}, "/y"]}}));
        assert_eq!(v["b"][1], json!("plain"));
        assert_eq!(names, ["ROLE", "B"]);
    }
}
