//! `tunec run --smoke` of a pipeline over the published `config.json` of each model family tunec
//! supports (`tests/python/families/`), with the family's real tokenizer (`TUNEC_FIXTURES`): the
//! smoke run builds the family's miniature itself, then runs the data steps, train.py, merge.py and
//! evaluate.py on it, on the CPU, through the real binary.
//!
//! One test walks the folder, so a family added there is smoke-run too, or fails here until its
//! tokenizer is named below. Where no package ships a family's own tokenizer, a real one of its
//! lineage that fits its vocabulary stands in, as in tests/families_local.rs (whose module doc says
//! which and why); for the Granite families, Llama 2's, with the config's special-token ids set to
//! Llama 2's and Mistral's `[INST]` template.

#[path = "support/fixture_templates.rs"]
mod fixture_templates;
mod support;
#[path = "support/tiny.rs"]
mod tiny;

use fixture_templates::TemplateSource;

use std::path::PathBuf;
use support::root;
use tiny::test_python;

/// A family's real tokenizer and what its pipeline needs.
struct Family {
    model_type: &'static str,
    /// The folder of `TUNEC_FIXTURES` with its tokenizer.
    tokenizer: &'static str,
    /// Where its chat template comes from.
    template: TemplateSource,
    /// Special-token ids set in the config, where the tokenizer's differ from the family's own.
    token_ids: &'static [(&'static str, u64)],
    /// Whether its template accepts a system message.
    system: bool,
    /// A pad token other than the stop token, where the tokenizer sets none.
    pad_token: Option<&'static str>,
    /// The LoRA settings (gpt-oss's fused experts take no dropout).
    method: &'static str,
}

const FAMILIES: &[Family] = &[
    Family {
        model_type: "llama",
        tokenizer: "llama3_2",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: Some("<|finetune_right_pad_id|>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "mistral",
        tokenizer: "mistral_nemo",
        template: TemplateSource::Own,
        token_ids: &[],
        system: false,
        pad_token: Some("<pad>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "qwen2",
        tokenizer: "qwen2_5",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: None,
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "gemma2",
        tokenizer: "gemma2",
        template: TemplateSource::Trl("gemma.jinja"),
        token_ids: &[],
        system: false,
        pad_token: None,
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "qwen3",
        tokenizer: "qwen3",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: None,
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "qwen3_moe",
        tokenizer: "qwen3",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: None,
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "gemma3_text",
        tokenizer: "gemma3",
        template: TemplateSource::Own,
        token_ids: &[],
        system: false,
        pad_token: None,
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "gemma3",
        tokenizer: "gemma3",
        template: TemplateSource::Own,
        token_ids: &[],
        system: false,
        pad_token: None,
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "gpt_oss",
        tokenizer: "gptoss",
        template: TemplateSource::Trl("gptoss.jinja"),
        token_ids: &[],
        system: true,
        pad_token: None,
        method: "lora { r = 8, dropout = 0.0 }",
    },
    // No package ships these families' own tokenizers: a real one of their lineage that fits the
    // vocabulary stands in, as in tests/families_local.rs.
    Family {
        model_type: "phi3",
        tokenizer: "gpt4",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: Some("<|endofprompt|>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "olmo2",
        tokenizer: "gpt4",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: Some("<|endofprompt|>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "smollm3",
        tokenizer: "llama3_2",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: Some("<|finetune_right_pad_id|>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "llama4",
        tokenizer: "llama3_1",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: Some("<|reserved_special_token_0|>"),
        method: "lora { r = 8, dropout = 0.0 }",
    },
    Family {
        model_type: "deepseek_v3",
        tokenizer: "deepseek_v3",
        template: TemplateSource::Own,
        token_ids: &[],
        system: true,
        pad_token: Some("<｜▁pad▁｜>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "granite",
        tokenizer: "llama2",
        template: TemplateSource::Of("mistral_nemo"),
        token_ids: &[("bos_token_id", 1), ("eos_token_id", 2), ("pad_token_id", 0)],
        system: false,
        pad_token: Some("<unk>"),
        method: "lora { r = 8 }",
    },
    Family {
        model_type: "granitemoe",
        tokenizer: "llama2",
        template: TemplateSource::Of("mistral_nemo"),
        token_ids: &[("bos_token_id", 1), ("eos_token_id", 2), ("pad_token_id", 0)],
        system: false,
        pad_token: Some("<unk>"),
        method: "lora { r = 8 }",
    },
];

fn pipeline(family: &Family) -> String {
    let system = if family.system { "    system    = \"You answer in a few words.\"\n" } else { "" };
    let model = match family.pad_token {
        Some(pad) => format!("local_model(\"model\") {{\n    pad_token = \"{pad}\"\n  }}"),
        None => "local_model(\"model\")".to_owned(),
    };
    let method = family.method;
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

  split parts = split(convo, train = 0.5, val = 0.25, test = 0.25, seed = 42)

  train sft = sft(base, data = parts.train, eval = parts.val) {{
    method           = {method}
    per_device_batch = 2
  }}

  merge merged = merge(sft)
  evaluate report = evaluate(merged, parts.test) {{
    metrics        = [exact_match, rouge_l]
    max_new_tokens = 4
  }}
}}
"#
    )
}

/// Smoke-runs `family`; the error names the family and says what failed.
fn smoke(family: &Family, fixtures: &std::path::Path, python: &str) -> Result<(), String> {
    let name = family.model_type;
    let dir = std::env::temp_dir().join(format!("tunec-smoke-family-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = dir.join("model");
    std::fs::create_dir_all(&model).map_err(|e| e.to_string())?;
    let copy = |from: PathBuf, to: PathBuf| {
        std::fs::copy(&from, to).map(|_| ()).map_err(|e| format!("{name}: {}: {e} (.ci/fixtures.sh)", from.display()))
    };
    let config = root().join(format!("tests/python/families/{name}.json"));
    let text = std::fs::read_to_string(&config).map_err(|e| format!("{name}: {}: {e}", config.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    for (key, id) in family.token_ids {
        if config.get(key).is_none() {
            return Err(format!("{name}: config.json has no `{key}`"));
        }
        config[key] = (*id).into();
    }
    std::fs::write(model.join("config.json"), config.to_string()).map_err(|e| e.to_string())?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        copy(fixtures.join(family.tokenizer).join(file), model.join(file))?;
    }
    if let Some(template) = family.template.read(fixtures) {
        std::fs::write(model.join("chat_template.jinja"), template).map_err(|e| e.to_string())?;
    }
    copy(root().join("examples/tiny-local/data.jsonl"), dir.join("data.jsonl"))?;
    std::fs::write(dir.join("p.tune"), pipeline(family)).map_err(|e| e.to_string())?;
    let file = dir.join("p.tune").display().to_string();
    let run = support::tunec_with(&["run", "--smoke", &file, "--smoke-rows", "16", "--progress", "plain"], |c| {
        c.env("TUNEC_PYTHON", python)
            .env("CUDA_VISIBLE_DEVICES", "")
            .env_remove("TUNEC_MANAGED_REQUIREMENTS")
            .env("TUNEC_HOME", std::env::temp_dir().join(format!("tunec-smoke-home-{}", std::process::id())));
    });
    if run.code != 0 {
        return Err(format!("{name}: exit {}:\n{}{}", run.code, run.stdout, run.stderr));
    }
    let text = std::fs::read_to_string(dir.join(".tunec/fam/smoke/report.json")).map_err(|e| format!("{name}: {e}"))?;
    let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let ran = |node: &str| {
        report["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node"] == node)).map(|n| n["outcome"].clone())
    };
    for node in ["sft", "merged", "report"] {
        if ran(node) != Some("succeeded".into()) {
            return Err(format!("{name}: {node} did not succeed: {report}"));
        }
    }
    // The miniature is the family's architecture, at 2 layers, with the real vocabulary.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let mini_text = std::fs::read_to_string(dir.join(".tunec/fam/smoke/models/base/config.json"))
        .map_err(|e| format!("{name}: the miniature: {e}"))?;
    let mini: serde_json::Value = serde_json::from_str(&mini_text).map_err(|e| e.to_string())?;
    if (&mini["model_type"], &mini["architectures"]) != (&config["model_type"], &config["architectures"]) {
        return Err(format!("{name}: the miniature is {mini}"));
    }
    std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn every_supported_family_passes_a_smoke_run() {
    let python = test_python();
    let fixtures = PathBuf::from(std::env::var_os("TUNEC_FIXTURES").expect(
        "TUNEC_FIXTURES is not set: the families run with their real tokenizers (.ci/fixtures.sh fills the folder)",
    ));
    let mut families: Vec<String> = std::fs::read_dir(root().join("tests/python/families"))
        .expect("tests/python/families")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
        .collect();
    families.sort();
    // `TUNEC_SMOKE_FAMILIES=granite,qwen3` runs those alone (while working on a family).
    if let Some(only) = std::env::var("TUNEC_SMOKE_FAMILIES").ok().filter(|v| !v.is_empty()) {
        families.retain(|f| only.split(',').any(|o| o.trim() == f));
        assert!(!families.is_empty(), "TUNEC_SMOKE_FAMILIES={only} names no family of tests/python/families");
    }
    let mut failures = Vec::new();
    for name in &families {
        let Some(family) = FAMILIES.iter().find(|f| f.model_type == name) else {
            failures
                .push(format!("{name}: tests/python/families/{name}.json has no tokenizer in tests/smoke_families.rs"));
            continue;
        };
        if let Err(e) = smoke(family, &fixtures, &python) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} families failed:\n{}",
        failures.len(),
        families.len(),
        failures.join("\n\n")
    );
}
