//! Least-privilege IAM policies for a pipeline: one for the SageMaker execution role the jobs run
//! as, one for the caller who runs `tunec run`.
//!
//! They grant exactly the S3 prefixes the S3 layout of `request.rs` uses, SageMaker actions on
//! training jobs whose names start with the pipeline's job-name prefix, `iam:PassRole` of the
//! execution role to SageMaker only, ECR pulls of the training image's repository, and the logs
//! and metrics the jobs write. A Hub token kept in Secrets Manager adds `GetSecretValue` on exactly
//! its secret: for the execution role when a job reads it, for the caller when `tunec run`'s data
//! step does (a Hub dataset, a chat node's tokenizer). No `kms:Decrypt` is granted for it: a secret
//! encrypted with the account's `aws/secretsmanager` key is decrypted by Secrets Manager on the
//! caller's behalf, and one under a customer managed key needs that key's policy to allow the
//! role, which is the key owner's to grant (docs/cli.md, "Hub tokens"). The caller resolves
//! `env()` values before asking for them (bucket, role, region and secret ARNs are account values,
//! not secrets); unresolved ones stay as `${env:NAME}` so the policy is still readable.

use super::names;
use crate::lower::{Execution, JobGraph};
use crate::secret::{parse_arn, HUB_TOKEN_SECRET_VAR};
use serde_json::{json, Value as Json};

/// The account-specific values a policy names.
pub struct Account<'a> {
    /// `s3://bucket/prefix`.
    pub bucket_uri: &'a str,
    pub region: &'a str,
    pub role_arn: &'a str,
    pub kms_key: Option<&'a str>,
    /// Resolves the `${env:NAME}` placeholders of a secret ARN (the identity keeps them).
    pub resolve: &'a dyn Fn(&str) -> String,
}

/// `s3://bucket/a/b` → (`bucket`, `a/b`).
pub fn split_bucket(uri: &str) -> (String, String) {
    let rest = uri.trim_start_matches("s3://").trim_end_matches('/');
    match rest.split_once('/') {
        Some((bucket, prefix)) => (bucket.to_owned(), prefix.to_owned()),
        None => (rest.to_owned(), String::new()),
    }
}

/// The ARN partition of a region: `aws`, `aws-cn` or `aws-us-gov`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

fn object_arns(p: &str, bucket: &str, base: &str, dirs: &[&str]) -> Vec<String> {
    dirs.iter().map(|d| format!("arn:{p}:s3:::{bucket}/{base}/{d}/*")).collect()
}

fn image_repositories(graph: &JobGraph) -> Vec<String> {
    let mut repos: Vec<String> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.execution {
            Execution::SageMakerJob { image, .. } => {
                // <account>.dkr.ecr.<region>.<domain>/<repository>:<tag>
                let (host, path) = image.split_once('/')?;
                let mut host_parts = host.split('.');
                let account = host_parts.next()?;
                let region = host_parts.nth(2)?;
                let repository = path.split(':').next()?;
                Some(format!("arn:{}:ecr:{region}:{account}:repository/{repository}", partition(region)))
            }
            _ => None,
        })
        .collect();
    repos.sort();
    repos.dedup();
    repos
}

/// What a policy names for a secret ARN: the ARN (with `-??????` for a partial one); a text that
/// is not an ARN, an unresolved `${env:NAME}`, as it stands.
fn secret_resource(arn: &str) -> String {
    parse_arn(arn).map_or_else(|_| arn.to_owned(), |a| a.policy_resource())
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

/// The secrets the jobs read: the `TUNEC_HF_TOKEN_SECRET` of each request's environment.
fn job_secrets(graph: &JobGraph, resolve: &dyn Fn(&str) -> String) -> Vec<String> {
    sorted(
        graph
            .nodes
            .iter()
            .filter_map(|n| match &n.execution {
                Execution::SageMakerJob { request, .. } => request["Environment"][HUB_TOKEN_SECRET_VAR].as_str(),
                _ => None,
            })
            .map(|arn| secret_resource(&resolve(arn)))
            .collect(),
    )
}

/// The secrets `tunec run`'s data step reads: the `token` of a Hub dataset, and of a Hub model
/// that a chat node uses as its tokenizer (`run/data.rs` downloads exactly those).
fn data_step_secrets(graph: &JobGraph, resolve: &dyn Fn(&str) -> String) -> Vec<String> {
    let tokenizer = |name: &str| {
        graph
            .nodes
            .iter()
            .any(|c| c.kind == "chat" && c.fields().reference("tokenizer").is_some_and(|r| r.node == name))
    };
    sorted(
        graph
            .nodes
            .iter()
            .filter(|n| n.function == "hf_dataset" || n.function == "hf_model" && tokenizer(&n.name))
            .filter_map(|n| n.fields().secret("token"))
            .map(|arn| secret_resource(&resolve(&arn)))
            .collect(),
    )
}

fn read_secrets(sid: &str, resources: Vec<String>) -> Option<Json> {
    (!resources.is_empty()).then(
        || json!({"Sid": sid, "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": resources}),
    )
}

/// The execution role's policy.
pub fn execution_role(graph: &JobGraph, account: &Account<'_>) -> Json {
    let (bucket, prefix) = split_bucket(account.bucket_uri);
    let p = partition(account.region);
    let base = if prefix.is_empty() { graph.pipeline.clone() } else { format!("{prefix}/{}", graph.pipeline) };
    let mut statements = vec![
        json!({"Sid": "ReadInputs", "Effect": "Allow", "Action": ["s3:GetObject"],
               "Resource": object_arns(p, &bucket, &base, &["data", "config", "code", "models", "output", "checkpoints"])}),
        json!({"Sid": "WriteOutputs", "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
               "Resource": object_arns(p, &bucket, &base, &["output", "checkpoints"])}),
        json!({"Sid": "ListPipelinePrefix", "Effect": "Allow", "Action": ["s3:ListBucket"],
               "Resource": [format!("arn:{p}:s3:::{bucket}")],
               "Condition": {"StringLike": {"s3:prefix": [format!("{base}/*")]}}}),
        json!({"Sid": "PullTrainingImage", "Effect": "Allow",
               "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
               "Resource": image_repositories(graph)}),
        json!({"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"}),
        json!({"Sid": "JobLogs", "Effect": "Allow",
               "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
               "Resource": [format!("arn:{p}:logs:{}:*:log-group:/aws/sagemaker/TrainingJobs*", account.region)]}),
        json!({"Sid": "JobMetrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
               "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}}),
    ];
    statements.extend(read_secrets("ReadHubToken", job_secrets(graph, account.resolve)));
    if let Some(key) = account.kms_key {
        statements.push(json!({"Sid": "UseKmsKey", "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"], "Resource": [key]}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The policy of whoever runs `tunec run` against this pipeline.
pub fn caller(graph: &JobGraph, account: &Account<'_>) -> Json {
    let (bucket, prefix) = split_bucket(account.bucket_uri);
    let p = partition(account.region);
    let base = if prefix.is_empty() { graph.pipeline.clone() } else { format!("{prefix}/{}", graph.pipeline) };
    let job_prefix = names::prefix(&graph.pipeline);
    let mut statements = vec![
        json!({"Sid": "TrainingJobs", "Effect": "Allow",
               "Action": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags", "sagemaker:ListTags"],
               "Resource": [format!("arn:{p}:sagemaker:{}:*:training-job/{job_prefix}-*", account.region)]}),
        json!({"Sid": "PassExecutionRole", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": [account.role_arn],
               "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}}),
        json!({"Sid": "UploadInputs", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
               "Resource": object_arns(p, &bucket, &base, &["data", "config", "code", "models"])}),
        json!({"Sid": "ReadOutputs", "Effect": "Allow", "Action": ["s3:GetObject"],
               "Resource": object_arns(p, &bucket, &base, &["output", "checkpoints"])}),
        json!({"Sid": "ListPipelinePrefix", "Effect": "Allow", "Action": ["s3:ListBucket"],
               "Resource": [format!("arn:{p}:s3:::{bucket}")],
               "Condition": {"StringLike": {"s3:prefix": [format!("{base}/*")]}}}),
        // DescribeLogStreams and FilterLogEvents are authorised on the log group, GetLogEvents on
        // the stream.
        json!({"Sid": "FindJobLogs", "Effect": "Allow", "Action": ["logs:DescribeLogStreams", "logs:FilterLogEvents"],
               "Resource": [format!("arn:{p}:logs:{}:*:log-group:/aws/sagemaker/TrainingJobs", account.region)]}),
        json!({"Sid": "TailJobLogs", "Effect": "Allow", "Action": ["logs:GetLogEvents"],
               "Resource": [format!("arn:{p}:logs:{}:*:log-group:/aws/sagemaker/TrainingJobs:log-stream:{job_prefix}-*", account.region)]}),
    ];
    statements.extend(read_secrets("ReadHubToken", data_step_secrets(graph, account.resolve)));
    if let Some(key) = account.kms_key {
        statements.push(json!({"Sid": "UseKmsKey", "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], "Resource": [key]}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::split_bucket;

    #[test]
    fn bucket_uris_split() {
        assert_eq!(split_bucket("s3://b/a/c/"), ("b".into(), "a/c".into()));
        assert_eq!(split_bucket("s3://b"), ("b".into(), String::new()));
        assert_eq!(super::partition("cn-north-1"), "aws-cn");
        assert_eq!(super::partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(super::partition("eu-west-1"), "aws");
    }
}
