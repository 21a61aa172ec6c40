//! Where a miniature's `config.json` and tokenizer come from.
//!
//! A `local_model` folder has both. An `hf_model` has them in its Hub copy, which the data step
//! fetches when a chat node uses the model as its tokenizer; for a model that only a job starts
//! from (a base model templated with its instruct sibling's tokenizer), the smoke run fetches the
//! same files through the same [`Sources`], token and all. When that copy cannot be had
//! (`HF_HUB_OFFLINE`, no network, a repository the token does not open), a catalog model's
//! `config.json` is rebuilt from tunec's catalog facts (`tunec_entry.catalog_config`), with the
//! tokenizer of its own copy if one is here, else of the chat node that templated the job's data;
//! the smoke run prints that substitution. A model the catalog does not know has no facts, and the
//! run stops saying how to get its files.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use tunec_compiler::catalog::{Catalog, ModelFacts};
use tunec_compiler::lower::{JobGraph, JobNode};

use super::Substitution;
use crate::run::aws::Settings;
use crate::run::data::{hub_model, model_folder};
use crate::run::progress::Reporter;
use crate::run::sources::Sources;

/// What a miniature is built from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A folder with the model's `config.json` and tokenizer.
    Folder(PathBuf),
    /// The catalog's facts (as `tunec_entry.catalog_config` reads them) and the folder of the
    /// tokenizer that goes beside the miniature; with the substitution to print.
    Facts { facts: Json, tokenizer: PathBuf, substitution: Substitution },
}

/// Where the miniature of `model`, a model node of `graph` (whose paths are relative to `abs`),
/// comes from, when `job` starts from it. Fetches an `hf_model`'s files from the Hub when they
/// are not here (a token in Secrets Manager is read with `aws`).
pub async fn find(
    graph: &JobGraph,
    model: &JobNode,
    job: &JobNode,
    abs: &Path,
    aws: &Settings,
    reporter: &Reporter,
) -> Result<ModelSource, String> {
    let folder = model_folder(model, &graph.pipeline);
    let copy = abs.join(&folder);
    if model.function != "hf_model" || copy.join("config.json").is_file() {
        return Ok(ModelSource::Folder(copy));
    }
    let id = model.fields().str("id").unwrap_or_default();
    // The files the data step fetches for a chat node's tokenizer, fetched the same way.
    let fetched = Sources::new(aws.clone())
        .fetch(&graph.pipeline, abs, &hub_model(model, &graph.pipeline), reporter, &model.name)
        .await;
    let why = match fetched {
        Ok(()) if copy.join("config.json").is_file() => return Ok(ModelSource::Folder(copy)),
        Ok(()) => format!("the Hub's copy of `{id}` has no config.json"),
        Err(why) => why,
    };
    let Some(facts) = Catalog::builtin().model(id) else {
        return Err(format!(
            "the miniature of `{}` is built from the config.json of `{id}`, which is not on this machine ({why}), \
             and tunec's catalog has no facts for `{id}`: run the smoke run where the Hub can be reached, or \
             download the model's config.json and tokenizer files into a folder and use local_model(\"folder\")",
            model.name
        ));
    };
    let (tokenizer, whose) = if has_tokenizer(&copy) {
        (copy, format!("the tokenizer of its copy in {folder}"))
    } else {
        match chat_tokenizer(graph, job, abs) {
            Some((node, dir)) => (dir, format!("the tokenizer of `{node}`, which templated the job's data")),
            None => {
                return Err(format!(
                    "the miniature of `{}` needs a tokenizer: `{id}` is not on this machine ({why}), and no chat \
                     node upstream of `{}` has a tokenizer here; run the smoke run where the Hub can be reached",
                    model.name, job.name
                ))
            }
        }
    };
    let substitution = Substitution::new(
        &model.name,
        format!("the config.json of `{id}`"),
        format!("a config.json from tunec's catalog facts for `{id}` and {whose}"),
        format!("no copy of `{id}` is here: {why}"),
    );
    Ok(ModelSource::Facts { facts: facts_json(facts), tokenizer, substitution })
}

fn has_tokenizer(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file() || dir.join("tokenizer.model").is_file()
}

/// The first chat node upstream of `job` whose tokenizer model has its files here: its tokenizer
/// model's name and folder.
fn chat_tokenizer(graph: &JobGraph, job: &JobNode, abs: &Path) -> Option<(String, PathBuf)> {
    let mut queue: VecDeque<&str> = job.deps.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        let Some(node) = graph.node(name) else { continue };
        if node.kind == "chat" {
            let tokenizer = node.fields().reference("tokenizer").and_then(|r| graph.node(&r.node).cloned());
            if let Some(model) = tokenizer {
                let dir = abs.join(model_folder(&model, &graph.pipeline));
                if has_tokenizer(&dir) {
                    return Some((model.name.clone(), dir));
                }
            }
        }
        queue.extend(node.deps.iter().map(String::as_str));
    }
    None
}

/// A catalog row as `tunec_entry.catalog_config` reads it: the names of `stdlib/catalog/models.toml`,
/// plus the architecture class of the model type's row.
pub fn facts_json(facts: &ModelFacts) -> Json {
    let moe = facts.moe.as_ref().map(|m| {
        json!({
            "experts": m.experts,
            "top_k": m.top_k,
            "intermediate_size": m.intermediate_size,
            "shared_intermediate_size": m.shared_intermediate_size,
            "dense_layers": m.dense_layers,
        })
    });
    let mla = facts.mla.as_ref().map(|m| {
        json!({
            "q_lora_rank": m.q_lora_rank,
            "kv_lora_rank": m.kv_lora_rank,
            "qk_nope_head_dim": m.qk_nope_head_dim,
            "qk_rope_head_dim": m.qk_rope_head_dim,
            "v_head_dim": m.v_head_dim,
        })
    });
    json!({
        "id": facts.id,
        "model_type": facts.model_type,
        "architecture": facts.architecture,
        "hidden_size": facts.hidden_size,
        "intermediate_size": facts.intermediate_size,
        "num_layers": facts.num_layers,
        "num_heads": facts.num_heads,
        "num_kv_heads": facts.num_kv_heads,
        "head_dim": facts.head_dim,
        "vocab_size": facts.vocab_size,
        "max_position_embeddings": facts.max_position_embeddings,
        "tied_embeddings": facts.tied_embeddings,
        "attention_bias": facts.attention_bias,
        "moe": moe,
        "mla": mla,
        "weights": facts.weights,
        "bos_token": facts.bos_token,
        "eos_token": facts.eos_token,
        "stop_tokens": facts.stop_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_row_carries_what_the_config_builder_reads() {
        let catalog = Catalog::builtin();
        let llama = facts_json(catalog.model("meta-llama/Llama-3.1-8B").expect("in the catalog"));
        assert_eq!(llama["architecture"], "LlamaForCausalLM");
        assert_eq!((llama["num_layers"].as_u64(), llama["num_kv_heads"].as_u64()), (Some(32), Some(8)));
        assert_eq!(llama["moe"], Json::Null);
        let qwen = facts_json(catalog.model("Qwen/Qwen3-30B-A3B").expect("in the catalog"));
        assert_eq!((qwen["moe"]["experts"].as_u64(), qwen["moe"]["top_k"].as_u64()), (Some(128), Some(8)));
        let oss = facts_json(catalog.model("openai/gpt-oss-20b").expect("in the catalog"));
        assert_eq!(oss["weights"], "mxfp4");
        // Every key that tunec_entry.catalog_config requires.
        let script = crate::bundle::FILES
            .iter()
            .find(|(path, _)| *path == "tunec_entry/catalog_config.py")
            .map(|(_, bytes)| std::str::from_utf8(bytes).expect("UTF-8"))
            .expect("the bundle has the config builder");
        let start = script.find("REQUIRED = (").expect("REQUIRED in catalog_config.py");
        let tuple = &script[start..start + script[start..].find(')').expect("the tuple ends")];
        for key in tuple.split('"').skip(1).step_by(2) {
            assert!(!llama[key].is_null(), "`{key}` is not in the facts: {llama}");
        }
    }
}
