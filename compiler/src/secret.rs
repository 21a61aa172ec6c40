//! References to secrets kept in AWS Secrets Manager: `token = secret("arn:aws:secretsmanager:...")`.
//!
//! The pipeline names a secret by its ARN, never by its value, so the ARN may appear in plans,
//! requests and policies. The checker parses it here (a wrong ARN is a `secret_arn` error at its
//! span), and the lowering and `tunec iam-policy` read its parts: the region the secret lives in,
//! which the job's client must use, and the resource a policy grants `GetSecretValue` on.
//!
//! The shape is `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`, with NAME 1 to 512 of
//! `A-Z a-z 0-9 / _ + = . @ -` (the Secrets Manager API reference, `CreateSecret`'s `Name`). The
//! ARN Secrets Manager returns ends its name with `-` and six random characters; a name written
//! without them (a "partial ARN") still reads the secret, but IAM matches policies against the
//! full ARN, so the policy names it with `-??????`, as the Secrets Manager user guide advises.

use std::fmt;

/// The environment variable that carries a Hub token's secret ARN into a job.
pub const HUB_TOKEN_SECRET_VAR: &str = "TUNEC_HF_TOKEN_SECRET";

/// A parsed Secrets Manager ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

/// What is wrong with a text given as a Secrets Manager ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArnProblem {
    /// It does not start with `arn:` or has the wrong number of `:`-separated parts.
    NotAnArn,
    /// An ARN of another service (`ssm`, `kms`, ...).
    OtherService(String),
    /// An ARN of Secrets Manager that is not a `secret:` resource.
    NotASecret,
    BadPartition(String),
    BadRegion(String),
    BadAccount(String),
    BadName,
}

impl fmt::Display for ArnProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArnProblem::NotAnArn => f.write_str("not an ARN"),
            ArnProblem::OtherService(s) => write!(f, "an ARN of `{s}`, not of Secrets Manager"),
            ArnProblem::NotASecret => f.write_str("a Secrets Manager ARN that names no secret"),
            ArnProblem::BadPartition(p) => write!(f, "`{p}` is not an AWS partition"),
            ArnProblem::BadRegion(r) => write!(f, "`{r}` is not a region"),
            ArnProblem::BadAccount(a) => write!(f, "`{a}` is not a 12-digit account id"),
            ArnProblem::BadName => f.write_str("not a secret name (1 to 512 of letters, digits and `/_+=.@-`)"),
        }
    }
}

/// Parses `text` as the ARN of a Secrets Manager secret.
pub fn parse_arn(text: &str) -> Result<SecretArn<'_>, ArnProblem> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.first() != Some(&"arn") || parts.len() < 6 {
        return Err(ArnProblem::NotAnArn);
    }
    if parts[2] != "secretsmanager" {
        return Err(ArnProblem::OtherService(parts[2].to_owned()));
    }
    if parts.len() != 7 || parts[5] != "secret" {
        return Err(ArnProblem::NotASecret);
    }
    let (partition, region, account, name) = (parts[1], parts[3], parts[4], parts[6]);
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !(partition == "aws" || partition.starts_with("aws-") && word(partition)) {
        return Err(ArnProblem::BadPartition(partition.to_owned()));
    }
    if !word(region) || !region.contains('-') || region.starts_with('-') || region.ends_with('-') {
        return Err(ArnProblem::BadRegion(region.to_owned()));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ArnProblem::BadAccount(account.to_owned()));
    }
    let name_ok =
        (1..=512).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
    if !name_ok {
        return Err(ArnProblem::BadName);
    }
    Ok(SecretArn { partition, region, account, name })
}

impl SecretArn<'_> {
    /// Whether the name ends with the `-` and six characters Secrets Manager appends.
    pub fn is_complete(&self) -> bool {
        let bytes = self.name.as_bytes();
        bytes.len() > 7
            && bytes[bytes.len() - 7] == b'-'
            && bytes[bytes.len() - 6..].iter().all(u8::is_ascii_alphanumeric)
    }

    /// The resource an IAM policy names to allow reading this secret.
    pub fn policy_resource(&self) -> String {
        let arn =
            format!("arn:{}:secretsmanager:{}:{}:secret:{}", self.partition, self.region, self.account, self.name);
        if self.is_complete() {
            arn
        } else {
            format!("{arn}-??????")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_into_their_parts() {
        let arn = parse_arn("arn:aws:secretsmanager:eu-west-1:111122223333:secret:hub/token-AbC123").expect("arn");
        assert_eq!(
            (arn.partition, arn.region, arn.account, arn.name),
            ("aws", "eu-west-1", "111122223333", "hub/token-AbC123")
        );
        assert!(arn.is_complete());
        assert_eq!(arn.policy_resource(), "arn:aws:secretsmanager:eu-west-1:111122223333:secret:hub/token-AbC123");
        let partial = parse_arn("arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:hf_token").expect("partial");
        assert!(!partial.is_complete());
        assert_eq!(
            partial.policy_resource(),
            "arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:hf_token-??????"
        );
    }

    #[test]
    fn wrong_arns_say_what_is_wrong() {
        let cases = [
            ("hf-token", ArnProblem::NotAnArn),
            ("arn:aws:ssm:us-east-1:111122223333:parameter/hf", ArnProblem::OtherService("ssm".into())),
            ("arn:aws:secretsmanager:us-east-1:111122223333:other:x", ArnProblem::NotASecret),
            ("arn:aws:secretsmanager:us-east-1:111122223333:secret", ArnProblem::NotASecret),
            ("arn:gcp:secretsmanager:us-east-1:111122223333:secret:x", ArnProblem::BadPartition("gcp".into())),
            ("arn:aws:secretsmanager:US-EAST-1:111122223333:secret:x", ArnProblem::BadRegion("US-EAST-1".into())),
            ("arn:aws:secretsmanager::111122223333:secret:x", ArnProblem::BadRegion(String::new())),
            ("arn:aws:secretsmanager:us-east-1:1111:secret:x", ArnProblem::BadAccount("1111".into())),
            ("arn:aws:secretsmanager:us-east-1:111122223333:secret:", ArnProblem::BadName),
            ("arn:aws:secretsmanager:us-east-1:111122223333:secret:a b", ArnProblem::BadName),
        ];
        for (text, problem) in cases {
            assert_eq!(parse_arn(text), Err(problem), "{text}");
        }
    }
}
