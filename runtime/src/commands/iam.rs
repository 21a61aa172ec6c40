//! `tunec iam-policy`: least-privilege policies for the SageMaker execution role and the caller. It
//! is the one command that reads environment values, to name the account's bucket, region, role,
//! KMS key and the ARN of a `secret(env("NAME"))`; a value that is not set stays a `${env:NAME}`
//! placeholder in the policy. It never reads a secret's value.

use super::check::compiled;
use super::{usage_error, Input};
use std::process::ExitCode;
use tunec_compiler::lower::sagemaker::{iam, request};
use tunec_compiler::target::Target;

/// Replaces `${env:NAME}` with the variable's value when it is set.
fn resolve(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}').map(|e| e + start) else { break };
        let name = &rest[start + 6..end];
        match std::env::var(name) {
            Ok(value) => out.push_str(&value),
            Err(_) => {
                out.push_str(&rest[start..=end]);
                missing.push(name.to_owned());
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, missing)
}

pub(crate) fn iam_policy(input: &Input) -> ExitCode {
    let (checked, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let Some(program) = &checked.program else { return ExitCode::from(1) };
    if program.target.kind != Target::SageMaker {
        return usage_error("IAM policies are for the SageMaker target; this pipeline's target is local");
    }
    let field = |name: &str| request::base_field(program, name).map(|v| resolve(&v)).unwrap_or_default();
    let (bucket, m1) = field("bucket");
    let (region, m2) = field("region");
    let (role, m3) = field("role");
    let kms = request::base_field(program, "kms_key").map(|v| resolve(&v).0);
    for name in m1.iter().chain(&m2).chain(&m3) {
        eprintln!("tunec: `{name}` is not set; the policies show `${{env:{name}}}` in its place");
    }
    let resolve_secret = |text: &str| resolve(text).0;
    let account = iam::Account {
        bucket_uri: &bucket,
        region: &region,
        role_arn: &role,
        kms_key: kms.as_deref(),
        resolve: &resolve_secret,
    };
    let doc = serde_json::json!({
        "execution_role": iam::execution_role(&graph, &account),
        "caller": iam::caller(&graph, &account),
    });
    out!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    ExitCode::SUCCESS
}
