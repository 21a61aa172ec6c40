//! Deterministic SageMaker training-job names.
//!
//! A name is `<pipeline>-<node>-<first 10 hex digits of the node key>`: the same inputs give the
//! same name, so a resumed run finds the job it started, and a changed input gives a new one.
//! SageMaker accepts `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$` (1 to 63 characters, no `_` or `.`), and
//! names must be unique per account and region; the base is sanitised and truncated *before* the
//! key suffix is appended, so the suffix always survives.

/// The longest job name SageMaker accepts.
pub const MAX_LEN: usize = 63;
const SUFFIX_LEN: usize = 10;

/// Whether `name` is a valid training-job name.
pub fn is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

/// Replaces every run of characters SageMaker does not accept by one `-`, and trims `-` at the ends.
fn sanitize(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// The prefix every job name of `pipeline` starts with (before `-<node>-<key>`), for IAM scoping.
pub fn prefix(pipeline: &str) -> String {
    let base = sanitize(pipeline);
    let base: String = base.chars().take(MAX_LEN - SUFFIX_LEN - 2).collect();
    let base = base.trim_end_matches('-');
    if base.is_empty() {
        "tunec".to_owned()
    } else {
        base.to_owned()
    }
}

/// The job name of `node` in `pipeline` with content key `key` (hex).
pub fn job_name(pipeline: &str, node: &str, key: &str) -> String {
    let suffix: String = key.chars().filter(char::is_ascii_hexdigit).take(SUFFIX_LEN).collect();
    let suffix = if suffix.is_empty() { "0".to_owned() } else { suffix };
    let node = sanitize(node);
    let base = if node.is_empty() { prefix(pipeline) } else { format!("{}-{node}", prefix(pipeline)) };
    let room = MAX_LEN - suffix.len() - 1;
    let base: String = base.chars().take(room).collect();
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_are_readable_and_keyed() {
        assert_eq!(job_name("medreason", "sft", "0123456789abcdef"), "medreason-sft-0123456789");
        assert_eq!(job_name("my_pipe", "train.v2", "ff"), "my-pipe-train-v2-ff");
        assert_eq!(job_name("__", "__", "abc"), "tunec-abc");
        assert_eq!(job_name("_", "a", "abc"), "tunec-a-abc");
        assert!(!is_valid("bad_name"));
        assert!(!is_valid("-x"));
        assert!(!is_valid(&"a".repeat(64)));
        assert!(is_valid(&"a".repeat(63)));
    }

    proptest! {
        #[test]
        fn every_name_is_valid_and_keeps_its_suffix(pipeline in ".{0,80}", node in ".{0,80}", key in "[0-9a-f]{64}") {
            let name = job_name(&pipeline, &node, &key);
            prop_assert!(is_valid(&name), "{name}");
            prop_assert!(name.ends_with(&key[..10]));
            let p = prefix(&pipeline);
            prop_assert!(name.starts_with(&format!("{p}-")), "{name} vs {p}");
        }

        #[test]
        fn different_keys_give_different_names(pipeline in "[a-z]{1,70}", a in "[0-9a-f]{64}", b in "[0-9a-f]{64}") {
            prop_assume!(a[..10] != b[..10]);
            prop_assert_ne!(job_name(&pipeline, "sft", &a), job_name(&pipeline, "sft", &b));
        }
    }
}
