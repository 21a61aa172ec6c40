//! Content-addressed node keys and the normalised configuration they hash.
//!
//! A key is the SHA-256 of a canonical JSON document holding only a node's semantic inputs: its
//! kind and function, its normalised fields (defaults included, so changing a prelude default
//! changes the key), the keys of the nodes it reads, and for jobs the script bundle's digest and
//! the image. Fields that do not change a node's output (spot, time limits, logging cadence,
//! estimator hints, secret names) are left out, and so are S3 paths, job names and timestamps,
//! which are derived from the key rather than feeding it.

use crate::check::{Fields, SecretRef, Val};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The version of the key documents; bumped only when the same inputs must give new keys.
pub(crate) const KEY_SCHEMA: u32 = 1;

/// Fields that never change what a node produces: how it is scheduled and paid for, estimator
/// hints, and the name of the secret it reads. Everything written into args.yaml is semantic.
pub(crate) const NON_SEMANTIC: &[&str] =
    &["spot", "max_wait", "max_runtime", "utilization", "rows", "mean_tokens", "token"];

/// A field value as JSON. `refs` maps a referenced node to what stands for it (its key when
/// hashing, its name in the job graph).
pub(crate) fn val_json(val: &Val, refs: &dyn Fn(&str) -> String) -> Json {
    match val {
        Val::Str(s) | Val::Enum(s) => json!(s),
        Val::Env(name) => json!({ "env": name }),
        Val::Secret(SecretRef::Arn(arn)) => json!({ "secret": arn }),
        Val::Secret(SecretRef::Env(name)) => json!({ "secret": { "env": name } }),
        Val::Int(n) => json!(n),
        Val::Float(x) => json!(x),
        Val::Bool(b) => json!(b),
        Val::Duration(s) => json!({ "seconds": s }),
        Val::Size(b) => json!({ "bytes": b }),
        Val::Money(m) => json!({ "usd": m }),
        Val::Variant(name, fields) => json!({ "variant": name, "fields": fields_json(fields, refs, &[]) }),
        Val::Instance { name, count } => json!({ "instance": name, "count": count }),
        Val::Columns(cols) => {
            Json::Array(cols.iter().map(|c| json!({ "name": c.name, "type": c.type_text() })).collect())
        }
        Val::List(items) => Json::Array(items.iter().map(|v| val_json(v, refs)).collect()),
        Val::Targets(None) => json!("all_linear"),
        Val::Targets(Some(list)) => Json::Array(list.iter().map(|(n, _)| json!(n)).collect()),
        Val::Ref(r) => json!({ "node": refs(&r.node), "part": r.part }),
    }
}

/// Fields as a JSON object with sorted keys, without the `skip`ped ones.
pub(crate) fn fields_json(fields: &Fields, refs: &dyn Fn(&str) -> String, skip: &[&str]) -> Json {
    let sorted: BTreeMap<&String, Json> = fields
        .0
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, fv)| (k, val_json(&fv.val, refs)))
        .collect();
    Json::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect::<Map<String, Json>>())
}

/// SHA-256 of the canonical (compact, key-sorted) JSON text, in hex.
pub(crate) fn digest(doc: &Json) -> String {
    hex(&Sha256::digest(canonical(doc).as_bytes()))
}

/// SHA-256 of raw bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compact JSON with object keys sorted at every level.
pub(crate) fn canonical(doc: &Json) -> String {
    match doc {
        Json::Object(map) => {
            let sorted: BTreeMap<&String, &Json> = map.iter().collect();
            let parts: Vec<String> =
                sorted.into_iter().map(|(k, v)| format!("{}:{}", Json::String(k.clone()), canonical(v))).collect();
            format!("{{{}}}", parts.join(","))
        }
        Json::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "x"}});
        assert_eq!(canonical(&a), r#"{"a":{"c":"x","d":[1,{"y":1,"z":0}]},"b":1}"#);
        let b: Json = serde_json::from_str(r#"{"a":{"d":[1,{"y":1,"z":0}],"c":"x"},"b":1}"#).expect("json");
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
