//! Model facts from a local directory: `config.json`, `tokenizer_config.json` (and the presence
//! of `tokenizer.json`), read through the [`World`] and parsed here.
//!
//! The same facts the catalog holds for Hub models are derived from the files: the architecture
//! and decoder-layer class, the shape and parameter count, the special tokens and what the chat
//! template does with them. Only Llama-style decoders (Llama, Mistral, Qwen2, Gemma2, Phi-3) are
//! understood; another `model_type` is reported rather than guessed.

use super::World;
use crate::catalog::ModelFacts;
use serde_json::Value as Json;

pub(super) struct Problem {
    pub message: String,
    pub label: String,
    pub help: String,
}

fn problem(message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) -> Problem {
    Problem { message: message.into(), label: label.into(), help: help.into() }
}

pub(super) fn read(dir: &str, world: &dyn World) -> Result<ModelFacts, Problem> {
    let config_text = world.read(dir, "config.json").map_err(|why| {
        problem(format!("cannot read the model config in `{dir}`"), why, "the directory needs config.json, tokenizer.json and tokenizer_config.json (as `save_pretrained` writes them)")
    })?;
    let tokenizer_text = world.read(dir, "tokenizer_config.json").map_err(|why| {
        problem(
            format!("cannot read the tokenizer config in `{dir}`"),
            why,
            "save the tokenizer next to the model: `tokenizer.save_pretrained(dir)`",
        )
    })?;
    world.read(dir, "tokenizer.json").map_err(|why| {
        problem(
            format!("no tokenizer.json in `{dir}`"),
            why,
            "save a fast tokenizer: `AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(dir)`",
        )
    })?;
    let config: Json = serde_json::from_str(&config_text).map_err(|e| {
        problem(
            format!("`{dir}/config.json` is not valid JSON"),
            e.to_string(),
            "rewrite it with `model.config.save_pretrained(dir)`",
        )
    })?;
    let tok: Json = serde_json::from_str(&tokenizer_text).map_err(|e| {
        problem(
            format!("`{dir}/tokenizer_config.json` is not valid JSON"),
            e.to_string(),
            "rewrite it with `tokenizer.save_pretrained(dir)`",
        )
    })?;
    // transformers >= 4.43 saves the template beside the config, in chat_template.jinja.
    let template = chat_template(&tok)
        .or_else(|| world.read(dir, "chat_template.jinja").ok())
        .or_else(|| {
            let text = world.read(dir, "chat_template.json").ok()?;
            let json: Json = serde_json::from_str(&text).ok()?;
            json.get("chat_template").and_then(Json::as_str).map(str::to_owned)
        })
        .unwrap_or_default();
    facts(dir, &config, &tok, &template)
}

/// The chat template inside tokenizer_config.json: a string, or the `default` of a list of named ones.
fn chat_template(tok: &Json) -> Option<String> {
    match tok.get("chat_template")? {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Json::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

fn facts(dir: &str, config: &Json, tok: &Json, template: &str) -> Result<ModelFacts, Problem> {
    let model_type = config.get("model_type").and_then(Json::as_str).unwrap_or("");
    let family = match model_type {
        "llama" => "llama",
        "mistral" => "mistral",
        "qwen2" => "qwen2",
        "gemma2" => "gemma2",
        "phi3" => "phi3",
        other => {
            return Err(problem(
                format!("model type `{other}` in `{dir}/config.json` is not supported"),
                "unsupported architecture",
                "tunec understands llama, mistral, qwen2, gemma2 and phi3 decoders",
            ))
        }
    };
    let num = |key: &str| -> Result<u64, Problem> {
        config.get(key).and_then(Json::as_u64).ok_or_else(|| {
            problem(
                format!("`{dir}/config.json` has no integer `{key}`"),
                format!("`{key}` missing"),
                "write a complete config with `model.config.save_pretrained(dir)`",
            )
        })
    };
    let hidden_size = num("hidden_size")?;
    let intermediate_size = num("intermediate_size")?;
    let num_layers = num("num_hidden_layers")?;
    let num_heads = num("num_attention_heads")?;
    let num_kv_heads = config.get("num_key_value_heads").and_then(Json::as_u64).unwrap_or(num_heads);
    if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(problem(
            format!("`{dir}/config.json` has {num_heads} attention heads and {num_kv_heads} KV heads"),
            "inconsistent head counts",
            "the number of heads must be a positive multiple of the KV heads",
        ));
    }
    let head_dim = config.get("head_dim").and_then(Json::as_u64).unwrap_or(hidden_size / num_heads);
    let vocab_size = num("vocab_size")?;
    let max_position_embeddings = num("max_position_embeddings")?;
    let tied_embeddings = config.get("tie_word_embeddings").and_then(Json::as_bool).unwrap_or(false);
    let attention_bias = family == "qwen2" || config.get("attention_bias").and_then(Json::as_bool).unwrap_or(false);
    let architecture = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Json::as_str)
        .unwrap_or("LlamaForCausalLM")
        .to_owned();
    let decoder_layer = format!("{}DecoderLayer", architecture.trim_end_matches("ForCausalLM"));
    let linear_modules: Vec<String> = if family == "phi3" {
        vec!["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    } else {
        vec!["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    }
    .into_iter()
    .map(str::to_owned)
    .collect();

    // Sizes beyond these are not a language model's, and would overflow the estimator's arithmetic.
    for (key, value, max) in [
        ("hidden_size", hidden_size, 1u64 << 20),
        ("intermediate_size", intermediate_size, 1 << 22),
        ("num_hidden_layers", num_layers, 1 << 14),
        ("num_attention_heads", num_heads, 1 << 16),
        ("head_dim", head_dim, 1 << 16),
        ("vocab_size", vocab_size, 1 << 24),
        ("max_position_embeddings", max_position_embeddings, 1 << 31),
    ] {
        if value == 0 || value > max {
            return Err(problem(
                format!("`{key}` = {value} in `{dir}/config.json` is not a plausible size"),
                format!("`{key}` out of range"),
                format!("`{key}` must be between 1 and {max}; check that the file is the model's config.json"),
            ));
        }
    }
    let (h, q, kv) = (u128::from(hidden_size), u128::from(num_heads * head_dim), u128::from(num_kv_heads * head_dim));
    let bias = if attention_bias { q + 2 * kv } else { 0 };
    let norms = if family == "gemma2" { 4 } else { 2 };
    let layer = h * q + 2 * h * kv + q * h + 3 * h * u128::from(intermediate_size) + norms * h + bias;
    let embed = u128::from(vocab_size) * h;
    let head = if tied_embeddings { 0 } else { embed };
    let total = embed + u128::from(num_layers) * layer + h + head;
    let params = u64::try_from(total).ok().filter(|p| *p <= 1 << 50).ok_or_else(|| {
        problem(
            format!("`{dir}/config.json` describes {total} parameters"),
            "more parameters than any model",
            "check the sizes in config.json",
        )
    })?;

    let token = |key: &str| -> String {
        match tok.get(key) {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).unwrap_or("").to_owned(),
            _ => String::new(),
        }
    };
    let template = template.to_owned();
    let (chat_template, eot_token) = if template.contains("<|start_header_id|>") {
        ("llama3", "<|eot_id|>".to_owned())
    } else if template.contains("<|im_start|>") {
        ("chatml", "<|im_end|>".to_owned())
    } else if template.contains("<start_of_turn>") {
        ("gemma", "<end_of_turn>".to_owned())
    } else if template.contains("<|end|>") {
        ("phi3", "<|end|>".to_owned())
    } else if template.contains("[INST]") {
        ("mistral", token("eos_token"))
    } else if template.is_empty() {
        ("none", token("eos_token"))
    } else {
        ("custom", token("eos_token"))
    };
    let eos_token = token("eos_token");
    let (reasoning_field, drops_reasoning) = super::template_reasoning::reasoning_facts(&template);
    let mut stop_tokens = vec![eos_token.clone()];
    if eot_token != eos_token && !eot_token.is_empty() {
        stop_tokens.push(eot_token.clone());
    }
    let reserved_pad_token =
        if template.contains("<|start_header_id|>") && tok.to_string().contains("<|finetune_right_pad_id|>") {
            "<|finetune_right_pad_id|>".to_owned()
        } else {
            String::new()
        };
    Ok(ModelFacts {
        id: dir.to_owned(),
        family: family.to_owned(),
        architecture,
        decoder_layer,
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size,
        max_position_embeddings,
        tied_embeddings,
        params,
        linear_modules,
        attention_bias,
        instruct: !template.is_empty(),
        chat_template: chat_template.to_owned(),
        bos_token: token("bos_token"),
        eos_token,
        eot_token,
        pad_token: token("pad_token"),
        reserved_pad_token,
        template_adds_bos: template.contains("bos_token"),
        stop_tokens,
        reasoning_field,
        drops_reasoning,
        source: format!("{dir}/config.json, {dir}/tokenizer_config.json"),
        date: String::new(),
        note: String::new(),
    })
}
