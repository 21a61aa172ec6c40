//! A node's normalised configuration (`JobNode::config`) read back field by field, so that the
//! runtime can carry out a node from the job graph alone, as it would from the checked program.
//!
//! The configuration is written by `key::fields_json`: every field with its defaults, strings and
//! enumeration values as JSON strings, a variant as `{"variant": NAME, "fields": {...}}`, a
//! reference as `{"node": NAME, "part": PART}`, columns as `[{"name", "type"}]`, durations, sizes
//! and money as `{"seconds"}`, `{"bytes"}`, `{"usd"}`, and an `env("NAME")` as `{"env": NAME}`.
//! [`Config`] reads each of them with the names `Fields` uses in the checker.

use crate::check::RefVal;
use serde_json::Value as Json;

/// A node's (or the target's) configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config<'a>(&'a Json);

impl<'a> Config<'a> {
    pub fn new(config: &'a Json) -> Config<'a> {
        Config(config)
    }

    /// The value at `path`; `quant.storage` looks inside the variant of `quant`.
    pub fn get(&self, path: &str) -> Option<&'a Json> {
        let mut parts = path.split('.');
        let mut value = self.0.get(parts.next()?)?;
        for part in parts {
            value = value.get("fields")?.get(part)?;
        }
        Some(value)
    }

    /// A string or enumeration value.
    pub fn str(&self, path: &str) -> Option<&'a str> {
        self.get(path)?.as_str()
    }

    /// An enumeration value, or the name of a variant.
    pub fn word(&self, path: &str) -> Option<&'a str> {
        let value = self.get(path)?;
        value.as_str().or_else(|| value.get("variant")?.as_str())
    }

    pub fn int(&self, path: &str) -> Option<i64> {
        self.get(path)?.as_i64()
    }

    /// A number; integers are numbers too.
    pub fn float(&self, path: &str) -> Option<f64> {
        self.get(path)?.as_f64()
    }

    pub fn bool(&self, path: &str) -> Option<bool> {
        self.get(path)?.as_bool()
    }

    /// A reference to another node, with the part it selects.
    pub fn reference(&self, path: &str) -> Option<RefVal> {
        let value = self.get(path)?;
        Some(RefVal {
            node: value.get("node")?.as_str()?.to_owned(),
            part: value.get("part").and_then(Json::as_str).map(str::to_owned),
        })
    }

    /// The declared columns, as (name, type).
    pub fn columns(&self, path: &str) -> Option<Vec<(&'a str, &'a str)>> {
        self.get(path)?.as_array()?.iter().map(|c| Some((c.get("name")?.as_str()?, c.get("type")?.as_str()?))).collect()
    }

    /// The variable name of an `env("NAME")` value.
    pub fn env(&self, path: &str) -> Option<&'a str> {
        self.get(path)?.get("env")?.as_str()
    }

    /// The ARN of a `secret(...)` value, or the `${env:NAME}` placeholder of a
    /// `secret(env("NAME"))`.
    pub fn secret(&self, path: &str) -> Option<String> {
        let secret = self.get(path)?.get("secret")?;
        match (secret.as_str(), secret.get("env").and_then(|e| e.as_str())) {
            (Some(arn), _) => Some(arn.to_owned()),
            (None, Some(name)) => Some(super::env_placeholder(name)),
            (None, None) => None,
        }
    }

    /// A string, or the `${env:NAME}` placeholder of an `env("NAME")`.
    pub fn str_or_env(&self, path: &str) -> Option<String> {
        match (self.str(path), self.env(path)) {
            (Some(s), _) => Some(s.to_owned()),
            (None, Some(name)) => Some(super::env_placeholder(name)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{FieldVal, Fields, Origin, Val};
    use crate::lower::key::fields_json;
    use crate::syntax::ast::Span;

    fn field(val: Val) -> FieldVal {
        FieldVal { val, span: Span::default(), key_span: Span::default(), origin: Origin::User }
    }

    #[test]
    fn every_kind_of_value_reads_back_as_it_was_written() {
        let mut quant = Fields::default();
        quant.0.insert("storage".into(), field(Val::Enum("bf16".into())));
        let mut fields = Fields::default();
        fields.0.insert("path".into(), field(Val::Str("data.jsonl".into())));
        fields.0.insert("seq_len".into(), field(Val::Int(4096)));
        fields.0.insert("train".into(), field(Val::Float(0.9)));
        fields.0.insert("dedup".into(), field(Val::Bool(false)));
        fields.0.insert("quant".into(), field(Val::Variant("nf4".into(), quant)));
        fields.0.insert("token".into(), field(Val::Env("HF_TOKEN".into())));
        fields.0.insert("data".into(), field(Val::Ref(RefVal { node: "parts".into(), part: Some("train".into()) })));
        let json = fields_json(&fields, &|n| n.to_owned(), &[]);
        let config = Config::new(&json);
        assert_eq!(config.str("path"), Some("data.jsonl"));
        assert_eq!(config.int("seq_len"), Some(4096));
        assert_eq!(config.float("seq_len"), Some(4096.0));
        assert_eq!(config.float("train"), Some(0.9));
        assert_eq!(config.bool("dedup"), Some(false));
        assert_eq!(config.word("quant"), Some("nf4"));
        assert_eq!(config.word("quant.storage"), Some("bf16"));
        assert_eq!(config.env("token"), Some("HF_TOKEN"));
        assert_eq!(config.str("token"), None);
        assert_eq!(config.str_or_env("token").as_deref(), Some("${env:HF_TOKEN}"));
        assert_eq!(config.secret("token"), None);
        assert_eq!(config.reference("data"), Some(RefVal { node: "parts".into(), part: Some("train".into()) }));
        assert_eq!(config.str("nothing"), None);
        assert_eq!(config.word("quant.nothing"), None);
    }
}
