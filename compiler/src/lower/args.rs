//! `args.yaml` for each job: the configuration the entry scripts read, in the seed workflow's
//! TrlParser style (the field names of TRL's SFTConfig / transformers' TrainingArguments and TRL's
//! ModelConfig), plus the tunec keys they need (method, tokens, base-weight choice). The entry
//! scripts document the same contract in docs/entry-scripts.md.
//!
//! YAML is written as `key: <JSON value>`, one key per line: JSON is valid YAML 1.2, so every value
//! round-trips exactly without a YAML library, and the text is stable for snapshots and keys.

use crate::catalog::architecture::{MoeKind, Targets};
use crate::catalog::{Catalog, ModelFacts};
use crate::check::{Program, TypedNode, Val};
use crate::syntax::ast::NodeKind;
use serde_json::{json, Value as Json};

fn torch_dtype(word: &str) -> &'static str {
    match word {
        "fp16" => "float16",
        "fp32" => "float32",
        "uint8" => "uint8",
        _ => "bfloat16",
    }
}

/// Where the script finds the weights it starts from, and the adapter it applies, if any.
fn model_args(program: &Program, node: &TypedNode) -> Vec<(&'static str, Json)> {
    let (adapter, model) = super::model_inputs(program, node);
    let source = model.as_deref().and_then(|m| super::model_source(program, m));
    let channel = super::model_channel_name(node.kind, adapter.is_some());
    let mut out = vec![("model_name_or_path", json!(super::model_path(source.as_ref(), channel)))];
    if adapter.is_some() {
        out.push(("adapter_path", json!("/opt/ml/input/data/adapter")));
    }
    out
}

/// The catalog or local model at the start of a node's chain, whose tokenizer facts apply.
fn origin_model(program: &Program, node: &TypedNode) -> String {
    let mut origin = super::model_inputs(program, node).1.unwrap_or_default();
    while let Some(n) = program.node(&origin).filter(|n| n.kind != NodeKind::Model) {
        match super::model_inputs(program, n).1 {
            Some(next) => origin = next,
            None => break,
        }
    }
    origin
}

/// What the scripts need to know about the model's family: its `model_type`, whether the
/// checkpoint they load is MXFP4 (to load with `Mxfp4Config(dequantize=True)`), and whether it is a
/// multimodal checkpoint trained on text only.
fn family(program: &Program, node: &TypedNode, facts: Option<&ModelFacts>) -> Vec<(&'static str, Json)> {
    let Some(facts) = facts else { return Vec::new() };
    // The weights come from the published checkpoint, not from a model tunec saved (in bf16).
    let loads_checkpoint =
        super::model_inputs(program, node).1.and_then(|m| program.node(&m)).is_some_and(|m| m.kind == NodeKind::Model);
    vec![
        ("model_type", json!(facts.model_type)),
        ("dequantize_mxfp4", json!(loads_checkpoint && facts.weights == "mxfp4")),
        ("text_only", json!(facts.arch.multimodal())),
    ]
}

/// `lora_target_modules` ("all-linear" or module names) and, when the experts are fused
/// parameters and `targets` names `experts`, `lora_target_parameters` for PEFT's
/// `target_parameters`.
fn lora_targets(list: Option<Vec<String>>, facts: Option<&ModelFacts>) -> (Json, Option<Json>) {
    let Some(facts) = facts else {
        return (list.map_or_else(|| json!("all-linear"), |l| json!(l)), None);
    };
    let arch = &facts.arch;
    let t = Targets::new(list.as_deref());
    let mut names: Vec<&String> = Vec::new();
    if t.all_linear {
        names.extend(&arch.linear_modules);
    }
    names.extend(&t.modules);
    if t.experts && arch.moe == MoeKind::Modules {
        names.extend(&arch.experts);
    }
    let mut modules: Vec<String> = Vec::new();
    for name in names {
        if !modules.contains(name) {
            modules.push(name.clone());
        }
    }
    let only_all_linear = modules.len() == arch.linear_modules.len();
    if t.lm_head {
        modules.push("lm_head".to_owned());
    }
    let modules = if t.all_linear && only_all_linear && !t.lm_head { json!("all-linear") } else { json!(modules) };
    (modules, t.fused_experts(arch).then(|| json!(arch.experts)))
}

fn tokens(facts: Option<&ModelFacts>, model: Option<&TypedNode>) -> Vec<(&'static str, Json)> {
    let Some(facts) = facts else { return Vec::new() };
    let pad = model
        .and_then(|m| m.fields.str("pad_token"))
        .map(str::to_owned)
        .filter(|p| !p.is_empty())
        .or_else(|| (!facts.reserved_pad_token.is_empty()).then(|| facts.reserved_pad_token.clone()))
        .or_else(|| (!facts.pad_token.is_empty()).then(|| facts.pad_token.clone()));
    vec![
        ("pad_token", json!(pad)),
        ("eot_token", json!(facts.eot_token)),
        ("stop_tokens", json!(facts.stop_tokens)),
        ("decoder_layer", json!(facts.decoder_layer)),
    ]
}

/// The args.yaml text of a train, merge or evaluate node.
pub fn args_yaml(program: &Program, node: &TypedNode, _catalog: &Catalog) -> String {
    let pairs = match node.kind {
        NodeKind::Train => train(program, node),
        NodeKind::Merge => merge(program, node),
        _ => evaluate(program, node),
    };
    let mut out = format!(
        "# args.yaml for `{}` of pipeline `{}`, written by tunec. Values are JSON (valid YAML).\n",
        node.name, program.name
    );
    for (key, value) in pairs {
        out.push_str(&format!("{key}: {value}\n"));
    }
    out
}

fn seq_len(program: &Program, node: &TypedNode, field: &str) -> Option<i64> {
    let data = program.node(&node.fields.reference(field)?.node)?;
    data.fields.int("seq_len").or_else(|| program.node(&data.fields.reference("data")?.node)?.fields.int("seq_len"))
}

fn train(program: &Program, node: &TypedNode) -> Vec<(&'static str, Json)> {
    let f = &node.fields;
    let model_node = origin_model(program, node);
    let facts = program.model_facts(&model_node);
    let precision = f.word("precision").unwrap_or("bf16");
    let method = f.word("method").unwrap_or("lora");
    let mut out: Vec<(&'static str, Json)> = model_args(program, node);
    out.extend([
        ("method", json!(method)),
        ("torch_dtype", json!(torch_dtype(precision))),
        ("bf16", json!(precision == "bf16")),
        ("fp16", json!(precision == "fp16")),
        ("attn_implementation", json!(f.word("attention").or(facts.map(|m| m.attention(None))).unwrap_or("sdpa"))),
        ("max_length", json!(seq_len(program, node, "data"))),
        ("num_train_epochs", json!(f.int("epochs").unwrap_or(1))),
        ("max_steps", json!(f.int("max_steps").unwrap_or(-1))),
        ("learning_rate", json!(f.float("learning_rate"))),
        ("per_device_train_batch_size", json!(f.int("per_device_batch"))),
        ("per_device_eval_batch_size", json!(f.int("per_device_batch"))),
        ("gradient_accumulation_steps", json!(f.int("grad_accum"))),
        ("gradient_checkpointing", json!(f.bool("gradient_checkpointing"))),
        ("gradient_checkpointing_kwargs", json!({"use_reentrant": false})),
        ("use_cache", json!(f.bool("use_cache").unwrap_or(false))),
        ("warmup_steps", json!(f.int("warmup_steps").unwrap_or(0))),
        ("warmup_ratio", json!(f.float("warmup_ratio").unwrap_or(0.0))),
        ("weight_decay", json!(f.float("weight_decay"))),
        ("lr_scheduler_type", json!(f.word("lr_scheduler"))),
        ("optim", json!(f.word("optimizer"))),
        ("max_grad_norm", json!(f.float("max_grad_norm"))),
        ("seed", json!(f.int("seed"))),
        ("packing", json!(f.bool("packing").unwrap_or(false))),
        ("logging_steps", json!(f.int("logging_steps"))),
        ("save_strategy", json!(if f.int("save_steps").is_some() { "steps" } else { "epoch" })),
        ("save_steps", json!(f.int("save_steps"))),
        ("save_total_limit", json!(2)),
        ("eval_strategy", json!(if f.reference("eval").is_some() { "steps" } else { "no" })),
        ("eval_steps", json!(f.int("eval_steps").or_else(|| f.int("save_steps")))),
        ("output_dir", json!(super::CHECKPOINT_DIR)),
    ]);
    if method != "full" {
        let list = match f.path("method.targets").map(|v| &v.val) {
            Some(Val::Targets(Some(list))) => Some(list.iter().map(|(n, _)| n.clone()).collect()),
            _ => None,
        };
        let (targets, parameters) = lora_targets(list, facts);
        let modules_to_save = json!(f.strings("method.modules_to_save"));
        out.extend([
            ("use_peft", json!(true)),
            ("lora_r", json!(f.int("method.r"))),
            ("lora_alpha", json!(f.float("method.alpha"))),
            ("lora_dropout", json!(f.float("method.dropout"))),
            ("lora_target_modules", targets),
        ]);
        if let Some(parameters) = parameters {
            out.push(("lora_target_parameters", parameters));
        }
        out.extend([
            ("use_rslora", json!(f.bool("method.rslora").unwrap_or(false))),
            ("lora_modules_to_save", modules_to_save),
        ]);
    } else {
        out.push(("use_peft", json!(false)));
    }
    match f.word("quant") {
        Some(q @ ("nf4" | "fp4")) => out.extend([
            ("load_in_4bit", json!(true)),
            ("load_in_8bit", json!(false)),
            ("bnb_4bit_quant_type", json!(q)),
            ("use_bnb_nested_quant", json!(f.bool("quant.double_quant").unwrap_or(true))),
            ("bnb_4bit_compute_dtype", json!(torch_dtype(f.word("quant.compute").unwrap_or("bf16")))),
            ("bnb_4bit_quant_storage", json!(torch_dtype(f.word("quant.storage").unwrap_or("bf16")))),
        ]),
        Some("int8") => out.extend([("load_in_4bit", json!(false)), ("load_in_8bit", json!(true))]),
        _ => out.extend([("load_in_4bit", json!(false)), ("load_in_8bit", json!(false))]),
    }
    if let Some(strategy) = f.word("fsdp") {
        let mut words = vec![strategy];
        if f.bool("fsdp.auto_wrap").unwrap_or(true) {
            words.push("auto_wrap");
        }
        if f.bool("fsdp.offload").unwrap_or(false) {
            words.push("offload");
        }
        let wrap_class = f.str("fsdp.wrap_class").map(str::to_owned).or_else(|| facts.map(|m| m.decoder_layer.clone()));
        out.push(("fsdp", json!(words.join(" "))));
        out.push((
            "fsdp_config",
            json!({
                "transformer_layer_cls_to_wrap": wrap_class.map(|c| vec![c]),
                "cpu_ram_efficient_loading": f.bool("fsdp.cpu_ram_efficient_loading").unwrap_or(true),
                "sync_module_states": f.bool("fsdp.sync_module_states").unwrap_or(true),
                "use_orig_params": f.bool("fsdp.use_orig_params").unwrap_or(false),
                "activation_checkpointing": f.bool("fsdp.activation_checkpointing").unwrap_or(false),
                "backward_prefetch": "backward_pre",
                "forward_prefetch": false,
                "offload_params": f.bool("fsdp.offload").unwrap_or(false),
            }),
        ));
    }
    out.extend(tokens(facts, program.node(&model_node)));
    out.extend(family(program, node, facts));
    out
}

fn merge(program: &Program, node: &TypedNode) -> Vec<(&'static str, Json)> {
    let f = &node.fields;
    let base = origin_model(program, node);
    let mut out = model_args(program, node);
    out.extend([
        ("torch_dtype", json!(torch_dtype(f.word("dtype").unwrap_or("bf16")))),
        ("base_weights", json!(f.word("base_weights").unwrap_or("pristine"))),
        (
            "max_shard_size",
            json!(match f.get("max_shard_size").map(|v| &v.val) {
                Some(Val::Size(b)) => format!("{}MB", b / 1_000_000),
                _ => "5GB".to_owned(),
            }),
        ),
    ]);
    out.extend(tokens(program.model_facts(&base), program.node(&base)));
    out.extend(family(program, node, program.model_facts(&base)));
    out
}

fn evaluate(program: &Program, node: &TypedNode) -> Vec<(&'static str, Json)> {
    let f = &node.fields;
    let base = origin_model(program, node);
    let metrics = f.strings("metrics");
    let mut out = model_args(program, node);
    out.extend([
        ("metrics", json!(metrics)),
        ("max_new_tokens", json!(f.int("max_new_tokens"))),
        ("batch_size", json!(f.int("batch_size"))),
        ("temperature", json!(f.float("temperature"))),
        ("max_length", json!(seq_len(program, node, "data"))),
        ("torch_dtype", json!("bfloat16")),
    ]);
    out.extend(tokens(program.model_facts(&base), program.node(&base)));
    out.extend(family(program, node, program.model_facts(&base)));
    out
}
