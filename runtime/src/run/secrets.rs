//! A Hub token kept in AWS Secrets Manager (`token = secret("ARN")`), read for the data step's own
//! Hub downloads. (SageMaker jobs read theirs themselves, with the execution role:
//! `stdlib/python/tunec_entry/secrets.py`.)
//!
//! - **Credentials**: the SDK's default chain only, as for S3 and SageMaker ([`super::aws`]).
//! - **Region**: the secret's own, from its ARN, whatever the pipeline's target says.
//! - **Endpoint**: `--endpoint-url` (or `AWS_ENDPOINT_URL`), and the SDK's own
//!   `AWS_ENDPOINT_URL_SECRETS_MANAGER`, so a local server such as moto can serve it.
//! - **Value**: the secret's `SecretString`, either the token itself or a JSON object with the
//!   token under `HF_TOKEN` (the console's key/value form). The entry scripts accept the same two.
//!
//! The value lives in memory only: it is never logged, and no error message quotes it or any part
//! of the secret's text.

use aws_config::BehaviorVersion;
use tunec_compiler::secret::parse_arn;

use super::aws::Settings;
use super::target::sagemaker::request::resolve_placeholders;

/// The key a JSON secret holds the token under.
pub const JSON_KEY: &str = "HF_TOKEN";

/// The Hub token in the secret `arn` (which may be a `${env:NAME}` placeholder).
pub async fn hub_token(settings: &Settings, arn: &str) -> Result<String, String> {
    let arn = resolve_placeholders(arn)?;
    let parsed = parse_arn(&arn).map_err(|problem| {
        format!("the node's `token = secret(...)` is not the ARN of a Secrets Manager secret ({problem}): `{arn}`")
    })?;
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(parsed.region.to_owned()));
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let client = aws_sdk_secretsmanager::Client::new(&loader.load().await);
    let reply = client.get_secret_value().secret_id(&arn).send().await.map_err(|e| {
        let (code, message) = super::aws::error_parts(&e);
        let help = match code.as_str() {
            "AccessDeniedException" => {
                "; your AWS credentials need secretsmanager:GetSecretValue on it (`tunec iam-policy` prints the grant)"
            }
            "ResourceNotFoundException" => "; check the ARN and the region in it",
            "Transport" => "; check the network, or the endpoint (--endpoint-url, AWS_ENDPOINT_URL_SECRETS_MANAGER)",
            _ => "",
        };
        format!("cannot read the Hub token from Secrets Manager ({arn}): {code}: {message}{help}")
    })?;
    let Some(text) = reply.secret_string() else {
        return Err(format!(
            "the secret {arn} holds binary data; store the Hub token as its SecretString (a plain string, or JSON with \
             the token under `{JSON_KEY}`)"
        ));
    };
    token_of(text).map_err(|problem| format!("the secret {arn} {problem}"))
}

/// The token in a secret's text: the text itself, or its `HF_TOKEN` when it is a JSON object.
/// The error says what is wrong without quoting the text.
pub fn token_of(text: &str) -> Result<String, String> {
    let token = if text.trim_start().starts_with('{') {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|_| "starts with `{` but is not a JSON object (store the token alone, or JSON with the token under `HF_TOKEN`)".to_owned())?;
        match object.get(JSON_KEY) {
            Some(serde_json::Value::String(token)) => token.trim().to_owned(),
            Some(_) => return Err(format!("has `{JSON_KEY}`, but not as a string")),
            None => {
                let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
                keys.sort_unstable();
                return Err(format!(
                    "is a JSON object without the key `{JSON_KEY}` (its keys: {}); name the token's key `{JSON_KEY}`, \
                     or store the token alone",
                    if keys.is_empty() { "none".to_owned() } else { keys.join(", ") }
                ));
            }
        }
    } else {
        text.trim().to_owned()
    };
    if token.is_empty() {
        return Err("is empty".into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::token_of;

    #[test]
    fn a_secret_holds_the_token_alone_or_under_hf_token() {
        assert_eq!(token_of("  hf_marker\n").as_deref(), Ok("hf_marker"));
        assert_eq!(token_of(r#"{"HF_TOKEN": "hf_marker", "other": "x"}"#).as_deref(), Ok("hf_marker"));
        let missing = token_of(r#"{"token": "hf_marker"}"#).expect_err("no HF_TOKEN");
        assert!(missing.contains("its keys: token") && !missing.contains("hf_marker"), "{missing}");
        let broken = token_of(r#"{"HF_TOKEN": "hf_marker""#).expect_err("not JSON");
        assert!(!broken.contains("hf_marker"), "{broken}");
        assert!(token_of(r#"{"HF_TOKEN": 1}"#).is_err());
        assert!(token_of(" ").is_err());
    }
}
