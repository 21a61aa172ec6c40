//! `tunec run --smoke` of a pipeline over the published `config.json` of each model family tunec
//! supports (`tests/python/families/`), with the family's real tokenizer (`TUNEC_FIXTURES`): the
//! smoke run builds the family's miniature itself, then runs the data steps, train.py, merge.py and
//! evaluate.py on it, on the CPU, through the real binary.
//!
//! One test walks the folder, so a family added there is smoke-run too, or fails here until its
//! tokenizer is named in tests/support/family_tokenizers.rs (shared with tests/families_local.rs,
//! which says which tokenizer stands in where no package ships a family's own, and why).

#[path = "support/family_tokenizers.rs"]
mod family_tokenizers;
#[path = "support/fixture_templates.rs"]
mod fixture_templates;
mod support;
#[path = "support/tiny.rs"]
mod tiny;

use family_tokenizers::FamilyTokenizer;
use support::root;
use tiny::test_python;

/// The families whose default LoRA targets reach fused expert parameters, which take no dropout
/// (tunec's `expert_lora_dropout`).
const FUSED_EXPERTS: &[&str] = &["gpt_oss", "llama4"];

fn pipeline(family: &FamilyTokenizer) -> String {
    let system = if family.system { "    system    = \"You answer in a few words.\"\n" } else { "" };
    let model = match family.pad_token {
        Some(pad) => format!("local_model(\"model\") {{\n    pad_token = \"{pad}\"\n  }}"),
        None => "local_model(\"model\")".to_owned(),
    };
    let method =
        if FUSED_EXPERTS.contains(&family.model_type) { "lora { r = 8, dropout = 0.0 }" } else { "lora { r = 8 }" };
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

/// The config.json of a 16-bit copy of a checkpoint stored quantized (DeepSeek V3's FP8): merge.py
/// merges into 16-bit weights only, so `tunec check` refuses the merge of the published one
/// (`merge_quantized_base`), and a user trains and merges from a bf16 copy. MXFP4 (gpt-oss) stays:
/// the scripts dequantize it.
fn bf16_copy(model: &std::path::Path) -> Result<(), String> {
    let path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let method = config.pointer("/quantization_config/quant_method").and_then(|m| m.as_str()).map(str::to_owned);
    if method.is_some_and(|m| m != "mxfp4") {
        config.as_object_mut().map(|c| c.remove("quantization_config"));
        config["torch_dtype"] = "bfloat16".into();
        std::fs::write(&path, config.to_string()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Smoke-runs `family`; the error names the family and says what failed.
fn smoke(family: &FamilyTokenizer, fixtures: &std::path::Path, python: &str) -> Result<(), String> {
    let name = family.model_type;
    let dir = std::env::temp_dir().join(format!("tunec-smoke-family-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = dir.join("model");
    family.write_model(&root(), fixtures, &model)?;
    bf16_copy(&model).map_err(|e| format!("{name}: {e}"))?;
    std::fs::copy(root().join("examples/tiny-local/data.jsonl"), dir.join("data.jsonl"))
        .map_err(|e| format!("{name}: {e}"))?;
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
    let fixtures = family_tokenizers::fixtures();
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
        let Some(family) = family_tokenizers::of(name) else {
            failures.push(format!(
                "{name}: tests/python/families/{name}.json has no tokenizer in tests/support/family_tokenizers.rs"
            ));
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
