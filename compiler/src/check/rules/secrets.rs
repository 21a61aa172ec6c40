//! The secret scan: string literals that look like credentials are errors, wherever they are,
//! because plans, state, logs and uploads all carry the pipeline's values. And a Hub token from
//! `env()` that a SageMaker job needs is a warning: the job can only receive it in its
//! `Environment`, which its record keeps.

use super::Report;
use crate::check::{Fields, Val};
use crate::diagnostics::Code;
use crate::syntax::ast::{NodeKind, Span};
use crate::target::Target;

pub(super) fn run(r: &mut Report<'_>) {
    inline(r);
    token_in_job(r);
}

/// A model whose weights a SageMaker job downloads from the Hub with a token from `env()`: the
/// lowering writes the token into the job's `Environment` (`lower/sagemaker/request.rs`), where
/// `sagemaker:DescribeTrainingJob` shows it for as long as the job record exists.
fn token_in_job(r: &mut Report<'_>) {
    let program = r.program;
    if program.target.kind != Target::SageMaker {
        return;
    }
    // The models a job starts from: a train node's `model`, a merge's `base`, an evaluation's
    // `model`. Every other job reaches its model through one of these.
    let mut origins: Vec<&str> = program
        .nodes
        .iter()
        .filter_map(|n| match n.kind {
            NodeKind::Train | NodeKind::Evaluate => n.fields.reference("model"),
            NodeKind::Merge => n.fields.reference("base"),
            _ => None,
        })
        .map(|m| m.node.as_str())
        .collect();
    origins.sort_unstable();
    origins.dedup();
    for model in origins.into_iter().filter_map(|m| program.node(m)).filter(|m| m.kind == NodeKind::Model) {
        let Some(fv) = model.fields.get("token") else { continue };
        let Val::Env(name) = &fv.val else { continue };
        let span = fv.span;
        r.emit(
            Code::TokenInJob,
            span,
            format!("the Hub token of `{}` will be visible in its SageMaker training jobs", model.name),
            format!("the value of `{name}` is written into each job's `Environment`"),
            "anyone allowed `sagemaker:DescribeTrainingJob` can read a job's environment, for as long as the job \
             record exists; keep the token in AWS Secrets Manager and write `token = \
             secret(\"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME\")`: the job then receives only the ARN \
             and reads the value with its execution role (`tunec iam-policy` grants the read)"
                .into(),
        );
    }
}

fn inline(r: &mut Report<'_>) {
    let program = r.program;
    let mut found: Vec<(String, Span, &'static str)> = Vec::new();
    for node in &program.nodes {
        scan(&node.fields, "", &mut found);
    }
    scan(&program.target.fields, "", &mut found);
    for (field, span, what) in found {
        r.emit(
            Code::InlineSecret,
            span,
            format!("`{field}` holds what looks like {what}"),
            "a credential in clear".into(),
            format!("remove it from the file (and rotate it), then read it at run time: `{field} = env(\"NAME\")`"),
        );
    }
}

fn scan(fields: &Fields, prefix: &str, out: &mut Vec<(String, Span, &'static str)>) {
    for (name, fv) in &fields.0 {
        if fv.origin != crate::check::Origin::User {
            continue;
        }
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        match &fv.val {
            Val::Str(s) => {
                if let Some(what) = looks_secret(s) {
                    out.push((path, fv.span, what));
                }
            }
            Val::Variant(_, inner) => scan(inner, &path, out),
            Val::List(items) => {
                let what = items.iter().find_map(|i| match i {
                    Val::Str(s) => looks_secret(s),
                    _ => None,
                });
                if let Some(what) = what {
                    out.push((path, fv.span, what));
                }
            }
            _ => {}
        }
    }
}

/// Recognises AWS access keys and Hugging Face tokens by their published prefixes and lengths.
pub(super) fn looks_secret(text: &str) -> Option<&'static str> {
    let words = text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
    for word in words {
        let aws = ["AKIA", "ASIA"].iter().any(|p| word.starts_with(p))
            && word.len() == 20
            && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if aws {
            return Some("an AWS access key id");
        }
        let hf = word.starts_with("hf_") && word.len() >= 34 && word[3..].chars().all(|c| c.is_ascii_alphanumeric());
        if hf {
            return Some("a Hugging Face token");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::looks_secret;

    #[test]
    fn recognises_credentials_only() {
        // Built from parts, so that this file does not itself look like it holds a key.
        assert!(looks_secret(concat!("AKIA", "ABCDEFGHIJKLMNOP")).is_some());
        assert!(looks_secret("token hf_abcdefghijklmnopqrstuvwxyz0123456789").is_some());
        assert!(looks_secret("meta-llama/Llama-3.1-8B-Instruct").is_none());
        assert!(looks_secret("AKIA is a prefix").is_none());
    }
}
