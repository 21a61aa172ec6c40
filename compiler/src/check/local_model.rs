//! Model facts from a local directory: `config.json`, `tokenizer_config.json` (and the presence
//! of `tokenizer.json`), read through the [`World`] and parsed here.
//!
//! The same facts the catalog holds for Hub models are derived from the files (and, when it was
//! saved, `generation_config.json`, for the ids generation stops at): the shape (for a
//! multimodal checkpoint, its text model's, under the key the architecture table names), the
//! mixture-of-experts and latent-attention sizes, how the weights are stored, the parameter count,
//! the special tokens and what the chat template does with them. What a `model_type` means (its
//! classes, norms, experts, LoRA targets) comes from its row of the architecture table
//! (`stdlib/catalog/architectures.toml`); a model type without a row is reported, with the
//! supported ones, rather than guessed.

use super::World;
use crate::catalog::{architecture, Catalog, Mla, ModelFacts, Moe};
use serde_json::Value as Json;

pub(super) struct Problem {
    pub message: String,
    pub label: String,
    pub help: String,
}

fn problem(message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) -> Problem {
    Problem { message: message.into(), label: label.into(), help: help.into() }
}

pub(super) fn read(dir: &str, world: &dyn World, catalog: &Catalog) -> Result<ModelFacts, Problem> {
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
    // generation_config.json, when saved, names the ids generation stops at (Qwen3 stops at
    // `<|endoftext|>` as well as `<|im_end|>`); the entry scripts add them to the stop tokens.
    let stop_ids: Vec<u64> = world
        .read(dir, "generation_config.json")
        .ok()
        .and_then(|text| serde_json::from_str::<Json>(&text).ok())
        .and_then(|g| match g.get("eos_token_id")? {
            Json::Array(ids) => Some(ids.iter().filter_map(Json::as_u64).collect()),
            id => id.as_u64().map(|id| vec![id]),
        })
        .unwrap_or_default();
    let mut facts = facts(dir, &config, &tok, &template, catalog)?;
    for id in stop_ids {
        let token = tok.pointer(&format!("/added_tokens_decoder/{id}/content")).and_then(Json::as_str);
        if let Some(token) = token.filter(|t| !facts.stop_tokens.iter().any(|s| s == t)) {
            facts.stop_tokens.push(token.to_owned());
        }
    }
    Ok(facts)
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

fn facts(dir: &str, config: &Json, tok: &Json, template: &str, catalog: &Catalog) -> Result<ModelFacts, Problem> {
    let model_type = config.get("model_type").and_then(Json::as_str).unwrap_or("");
    let Some(arch) = catalog.architecture(model_type) else {
        let known: Vec<&str> = catalog.architectures.iter().map(|a| a.model_type.as_str()).collect();
        let what =
            if model_type.is_empty() { "no `model_type`".to_owned() } else { format!("model type `{model_type}`") };
        return Err(problem(
            format!("{what} in `{dir}/config.json` is not supported"),
            "unsupported architecture",
            format!(
                "tunec knows {}; a new family is a row in stdlib/catalog/architectures.toml plus a fixture (docs/language.md, \"Adding a model family\")",
                known.join(", ")
            ),
        ));
    };
    // A multimodal checkpoint keeps its text model's config under a key of its own; keys missing
    // there (often `tie_word_embeddings`) are read from the top level.
    let text = if arch.text_config.is_empty() {
        config
    } else {
        config.get(&arch.text_config).filter(|t| t.is_object()).ok_or_else(|| {
            problem(
                format!("`{dir}/config.json` has no `{}`", arch.text_config),
                format!("a `{model_type}` checkpoint keeps its text model in `{}`", arch.text_config),
                "write a complete config with `model.config.save_pretrained(dir)`",
            )
        })?
    };
    let get = |key: &str| lookup(text, config, key);
    let int = |key: &str| get(key).and_then(Json::as_u64).or_else(|| arch.config_defaults.get(key).copied());
    let num = |key: &str| -> Result<u64, Problem> {
        int(key).ok_or_else(|| {
            problem(
                format!("`{dir}/config.json` has no integer `{key}`"),
                format!("`{key}` missing"),
                "write a complete config with `model.config.save_pretrained(dir)`",
            )
        })
    };
    let hidden_size = num("hidden_size")?;
    let num_layers = num("num_hidden_layers")?;
    let num_heads = num("num_attention_heads")?;
    let num_kv_heads = int("num_key_value_heads").unwrap_or(num_heads);
    if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
        return Err(problem(
            format!("`{dir}/config.json` has {num_heads} attention heads and {num_kv_heads} KV heads"),
            "inconsistent head counts",
            "the number of heads must be a positive multiple of the KV heads",
        ));
    }
    let head_dim = int("head_dim").unwrap_or(hidden_size / num_heads);
    let vocab_size = num("vocab_size")?;
    let max_position_embeddings = num("max_position_embeddings")?;
    let tied_embeddings = get("tie_word_embeddings").and_then(Json::as_bool).unwrap_or(arch.tie_word_embeddings);
    let attention_bias = arch.attention_bias == architecture::BiasKind::Qkv
        || get("attention_bias").and_then(Json::as_bool).unwrap_or(false);
    let moe = if arch.is_moe() { Some(moe_shape(dir, arch, text, config, num_layers)?) } else { None };
    // The dense MLP's width: Llama 4 names it apart from the experts'.
    let intermediate_size = match (int("intermediate_size_mlp"), moe) {
        (Some(dense), Some(_)) => dense,
        _ => num("intermediate_size")?,
    };
    let mla = match arch.attention {
        architecture::AttentionKind::Mla => Some(Mla {
            // `null` means queries are projected directly (DeepSeek-V2-Lite), not the default rank.
            q_lora_rank: if text.get("q_lora_rank").is_some_and(Json::is_null) {
                0
            } else {
                int("q_lora_rank").unwrap_or(0)
            },
            kv_lora_rank: num("kv_lora_rank")?,
            qk_nope_head_dim: num("qk_nope_head_dim")?,
            qk_rope_head_dim: num("qk_rope_head_dim")?,
            v_head_dim: num("v_head_dim")?,
        }),
        architecture::AttentionKind::Gqa => None,
    };

    // Sizes beyond these are not a language model's, and would overflow the estimator's arithmetic.
    let mut sizes = vec![
        ("hidden_size", hidden_size, 1u64 << 20),
        ("intermediate_size", intermediate_size, 1 << 22),
        ("num_hidden_layers", num_layers, 1 << 14),
        ("num_attention_heads", num_heads, 1 << 16),
        ("head_dim", head_dim, 1 << 16),
        ("vocab_size", vocab_size, 1 << 24),
        ("max_position_embeddings", max_position_embeddings, 1 << 31),
    ];
    if let Some(moe) = moe {
        sizes.extend([
            ("experts", moe.experts, 1 << 12),
            ("num_experts_per_tok", moe.top_k, moe.experts),
            ("expert intermediate size", moe.intermediate_size, 1 << 20),
        ]);
    }
    if let Some(mla) = mla {
        sizes.extend([
            ("kv_lora_rank", mla.kv_lora_rank, 1 << 16),
            ("qk_nope_head_dim", mla.qk_nope_head_dim, 1 << 12),
            ("qk_rope_head_dim", mla.qk_rope_head_dim, 1 << 12),
            ("v_head_dim", mla.v_head_dim, 1 << 12),
        ]);
    }
    for (key, value, max) in sizes {
        if value == 0 || value > max {
            return Err(problem(
                format!("`{key}` = {value} in `{dir}/config.json` is not a plausible size"),
                format!("`{key}` out of range"),
                format!("`{key}` must be between 1 and {max}; check that the file is the model's config.json"),
            ));
        }
    }
    let vision_params = if arch.vision.is_empty() {
        0
    } else {
        config
            .get("vision_config")
            .and_then(|v| architecture::vision_params(&arch.vision, v, hidden_size))
            .filter(|p| *p <= 1 << 40)
            .ok_or_else(|| {
                problem(
                    format!("`{dir}/config.json` has no complete `vision_config`"),
                    format!("a `{model_type}` checkpoint has a vision tower"),
                    "write a complete config with `model.config.save_pretrained(dir)`; tunec counts the vision tower's memory",
                )
            })?
    };
    // `mxfp4` and `fp8` as the catalog writes them; any other method (a checkpoint pre-quantized by
    // bitsandbytes, GPTQ, AWQ, ...) by its name, which only the merge rule reads.
    let weights = match config.pointer("/quantization_config/quant_method").and_then(Json::as_str) {
        Some(method) if !method.is_empty() && method.len() <= 64 => method,
        _ => "",
    };

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
    let bos_token = token("bos_token");
    let pad_token = token("pad_token");
    let used = [&bos_token, &eos_token, &eot_token, &pad_token, &reserved_pad_token];
    let max_token_id = max_token_id(tok, used.into_iter().chain(stop_tokens.iter()));
    let template_system = template_system(&template);
    let mut facts = ModelFacts {
        id: dir.to_owned(),
        model_type: model_type.to_owned(),
        family: String::new(),
        architecture: String::new(),
        decoder_layer: String::new(),
        hidden_size,
        intermediate_size,
        num_layers,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size,
        max_position_embeddings,
        tied_embeddings,
        params: 0,
        linear_modules: Vec::new(),
        attention_bias,
        moe,
        mla,
        vision_params,
        weights: weights.to_owned(),
        instruct: !template.is_empty(),
        chat_template: chat_template.to_owned(),
        bos_token,
        eos_token,
        eot_token,
        pad_token,
        reserved_pad_token,
        template_adds_bos: template.contains("bos_token"),
        stop_tokens,
        reasoning_field,
        drops_reasoning,
        max_token_id,
        template_system: template_system.to_owned(),
        source: format!("{dir}/config.json, {dir}/tokenizer_config.json"),
        date: String::new(),
        note: String::new(),
        arch: Default::default(),
    }
    .with_arch(arch.clone());
    let counts = facts.counts();
    facts.params = Some(counts.total).filter(|p| *p <= 1 << 50).ok_or_else(|| {
        problem(
            format!("`{dir}/config.json` describes {} parameters", counts.total),
            "more parameters than any model",
            "check the sizes in config.json",
        )
    })?;
    Ok(facts)
}

/// The experts of a MoE config, under the keys the families use: `num_experts` (Qwen3-MoE),
/// `num_local_experts` (gpt-oss, Granite MoE, Llama 4) or `n_routed_experts` (DeepSeek V3); the
/// expert width `moe_intermediate_size`, else `intermediate_size`; dense layers from
/// `first_k_dense_replace`, `mlp_only_layers` and `decoder_sparse_step`, or `moe_layers` and
/// `interleave_moe_layer_step`.
fn moe_shape(
    dir: &str,
    arch: &crate::catalog::Architecture,
    text: &Json,
    config: &Json,
    layers: u64,
) -> Result<Moe, Problem> {
    let get = |key: &str| lookup(text, config, key);
    let int = |key: &str| get(key).and_then(Json::as_u64).or_else(|| arch.config_defaults.get(key).copied());
    let missing = |what: &str| {
        problem(
            format!("`{dir}/config.json` has no {what}"),
            format!("a `{}` model has experts", arch.model_type),
            "write a complete config with `model.config.save_pretrained(dir)`",
        )
    };
    let experts = ["num_experts", "num_local_experts", "n_routed_experts"]
        .into_iter()
        .find_map(&int)
        .ok_or_else(|| missing("expert count (`num_experts`, `num_local_experts` or `n_routed_experts`)"))?;
    let top_k = ["num_experts_per_tok", "experts_per_token"]
        .into_iter()
        .find_map(&int)
        .ok_or_else(|| missing("`num_experts_per_tok`"))?;
    let intermediate_size = int("moe_intermediate_size")
        .or_else(|| int("intermediate_size"))
        .ok_or_else(|| missing("`moe_intermediate_size`"))?;
    let shared_intermediate_size = match (int("n_shared_experts"), arch.model_type.as_str()) {
        (Some(n), _) => n * intermediate_size,
        // Llama 4's MoE block always has one shared expert of the experts' width.
        (None, "llama4") => intermediate_size,
        _ => 0,
    };
    let list = |key: &str| -> Option<Vec<u64>> { get(key)?.as_array()?.iter().map(Json::as_u64).collect() };
    let dense_layers = if let Some(k) = int("first_k_dense_replace") {
        k.min(layers)
    } else if let Some(moe_layers) = list("moe_layers") {
        layers - (moe_layers.iter().filter(|l| **l < layers).count() as u64)
    } else if let Some(step) = int("interleave_moe_layer_step").filter(|s| *s > 0) {
        layers - layers / step
    } else {
        let only = list("mlp_only_layers").unwrap_or_default();
        let step = int("decoder_sparse_step").unwrap_or(1).max(1);
        (0..layers).filter(|l| only.contains(l) || (l + 1) % step != 0).count() as u64
    };
    Ok(Moe { experts, top_k, intermediate_size, shared_intermediate_size, dense_layers })
}

/// A key of the text config, else of the top level; JSON `null` counts as absent.
fn lookup<'a>(text: &'a Json, config: &'a Json, key: &str) -> Option<&'a Json> {
    text.get(key).filter(|v| !v.is_null()).or_else(|| config.get(key).filter(|v| !v.is_null()))
}

/// The largest id among `tokens` in tokenizer_config.json's `added_tokens_decoder`, where the
/// special tokens are listed with their ids.
fn max_token_id<'a>(tok: &Json, tokens: impl Iterator<Item = &'a String>) -> Option<u64> {
    let added = tok.get("added_tokens_decoder")?.as_object()?;
    let wanted: Vec<&String> = tokens.filter(|t| !t.is_empty()).collect();
    added
        .iter()
        .filter(|(_, entry)| {
            entry.get("content").and_then(Json::as_str).is_some_and(|c| wanted.iter().any(|w| *w == c))
        })
        .filter_map(|(id, _)| id.parse::<u64>().ok())
        .max()
}

/// What a chat template does with a system message, read from its own checks: `refused` (it
/// raises "System role not supported", as Gemma 2's does), `last_user` (written into the last user
/// turn only, `loop.last and system_message`, as Mistral's templates do), `folded` into the first
/// user turn (Gemma 3's `first_user_prefix`, another system message inside `[INST]`) or `native`.
fn template_system(template: &str) -> &'static str {
    if template.contains("raise_exception") && template.contains("System role not supported") {
        "refused"
    } else if template.contains("loop.last and system_message") {
        "last_user"
    } else if template.contains("first_user_prefix")
        || (template.contains("system_message") && template.contains("[INST]"))
    {
        "folded"
    } else {
        "native"
    }
}
