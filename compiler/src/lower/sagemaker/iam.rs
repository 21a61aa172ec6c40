//! Least-privilege IAM policies for a pipeline: one for the SageMaker execution role the jobs run
//! as, one for the caller who runs `tunec run`.
//!
//! They grant exactly the S3 prefixes the S3 layout of `request.rs` uses, SageMaker actions on
//! training jobs whose names start with the pipeline's job-name prefix, `iam:PassRole` of the
//! execution role to SageMaker only, ECR pulls of the training image's repository, and the logs
//! and metrics the jobs write. The caller resolves `env()` values before asking for them (bucket,
//! role, region are account values, not secrets); unresolved ones stay as `${env:NAME}` so the
//! policy is still readable.

use super::names;
use crate::lower::{Execution, JobGraph};
use serde_json::{json, Value as Json};

/// The account-specific values a policy names.
pub struct Account<'a> {
    /// `s3://bucket/prefix`.
    pub bucket_uri: &'a str,
    pub region: &'a str,
    pub role_arn: &'a str,
    pub kms_key: Option<&'a str>,
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
