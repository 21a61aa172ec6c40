//! The AWS clients of a run (S3 for the SageMaker target's uploads and for `s3://` sources, and
//! SageMaker for its training jobs), configured the standard way: credentials only through
//! the SDK's default chain (environment, shared config and SSO, web identity, container and
//! instance roles), the region from the pipeline's target (else the chain's), and an endpoint
//! override for a local AWS API server.
//!
//! `--endpoint-url URL` (or `AWS_ENDPOINT_URL`) sends every service to `URL`; the SDK also reads
//! the per-service `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL_SAGEMAKER`. With any override, S3
//! uses path-style addressing (`URL/bucket/key`), which local servers such as moto expect.

use aws_config::BehaviorVersion;

/// Where the clients connect: a region (else the AWS configuration's) and an endpoint for every
/// service (`--endpoint-url`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

impl Settings {
    /// The clients, with `kms_key` for uploads.
    pub async fn connect(&self, kms_key: Option<String>) -> Result<Aws, String> {
        connect(self.region.clone(), self.endpoint_url.as_deref(), kms_key).await
    }
}

/// The clients a run uses, and what the runtime needs to know about them.
#[derive(Clone, Debug)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub sagemaker: aws_sdk_sagemaker::Client,
    /// The region the clients use.
    pub region: String,
    /// A KMS key for uploads (the target's `kms_key`), after placeholder resolution.
    pub kms_key: Option<String>,
}

fn overridden(endpoint: Option<&str>) -> bool {
    endpoint.is_some()
        || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// Loads the configuration and builds the clients. Fails only without a region.
pub async fn connect(region: Option<String>, endpoint: Option<&str>, kms_key: Option<String>) -> Result<Aws, String> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = region.clone() {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    let region = config.region().map(|r| r.to_string()).ok_or(
        "no AWS region: write `region = \"...\"` in the pipeline's target, or set AWS_REGION (or a profile's region)",
    )?;
    let s3_config = aws_sdk_s3::config::Builder::from(&config).force_path_style(overridden(endpoint)).build();
    Ok(Aws {
        s3: aws_sdk_s3::Client::from_conf(s3_config),
        sagemaker: aws_sdk_sagemaker::Client::new(&config),
        region,
        kms_key,
    })
}

/// An SDK error as (code, message), for classification and messages; a transport failure
/// (no connection, a timeout) has the code `Transport`.
pub fn error_parts<E, R>(error: &aws_sdk_sagemaker::error::SdkError<E, R>) -> (String, String)
where
    E: aws_sdk_sagemaker::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sagemaker::error::SdkError;
    match error {
        SdkError::ServiceError(e) => {
            let err = e.err();
            (
                err.code().unwrap_or("Unknown").to_owned(),
                err.message().map(str::to_owned).unwrap_or_else(|| err.to_string()),
            )
        }
        SdkError::TimeoutError(_) => ("Transport".into(), "the request timed out".into()),
        SdkError::DispatchFailure(e) => ("Transport".into(), format!("cannot reach the endpoint: {e:?}")),
        other => ("Transport".into(), format!("{other}")),
    }
}
