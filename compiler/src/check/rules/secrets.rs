//! The secret scan: string literals that look like credentials are errors, wherever they are,
//! because plans, state, logs and uploads all carry the pipeline's values.

use super::Report;
use crate::check::{Fields, Val};
use crate::diagnostics::Code;
use crate::syntax::ast::Span;

pub(super) fn run(r: &mut Report<'_>) {
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
