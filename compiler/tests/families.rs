//! Every model family of the architecture table, read from a real-shaped `config.json`.
//!
//! `tests/cases/models/<model_type>/` holds one fixture per row of
//! `stdlib/catalog/architectures.toml`: the `config.json` of a published checkpoint (a link to
//! `tests/python/families/<model_type>.json`, which the entry-script tests build miniatures from),
//! a `tokenizer_config.json` with the family's special tokens and a template of its shape, and a
//! stand-in `tokenizer.json` (tests/cases/models/README.md gives the sources). Reading the
//! directory as a `local_model` must give the facts of the catalog row of the same family and
//! size: the same shape, experts and parameter count (which tests/python/test_architecture_table.py
//! checks against transformers itself). The configs were written apart from the catalog, from the
//! published files, keys left to the config class's defaults included, so the two agreeing is a
//! check of both. Then a pipeline
//! over each family checks clean as a `local_model` and as an `hf_model`, with an estimate whose
//! terms include the experts where the family has them.

use std::path::{Path, PathBuf};
use tunec_compiler::catalog::{Catalog, ModelFacts};
use tunec_compiler::World;

struct Dir(PathBuf);

impl World for Dir {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        let path = self.0.join(dir).join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("{dir}/{file}: {}", e.kind()))
    }
}

fn cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases")
}

/// The family fixtures: (directory name, the catalog row of that family and size).
fn fixtures() -> Vec<(String, String)> {
    let catalog = Catalog::builtin();
    let mut out = Vec::new();
    for arch in &catalog.architectures {
        let dir = &arch.model_type;
        if !cases().join("models").join(dir).join("config.json").exists() {
            continue;
        }
        let local = local_facts(dir);
        let row = catalog
            .models
            .iter()
            .find(|m| {
                m.model_type == local.model_type
                    && (m.hidden_size, m.intermediate_size, m.num_layers, m.vocab_size)
                        == (local.hidden_size, local.intermediate_size, local.num_layers, local.vocab_size)
            })
            .unwrap_or_else(|| {
                panic!("models/{dir}: no catalog row of its family has its widths, layers and vocabulary")
            });
        out.push((dir.clone(), row.id.clone()));
    }
    out
}

/// A pipeline that trains `model` with LoRA, sharded with CPU offload over four 8-GPU instances
/// (DeepSeek V3's 671 B parameters need that much host RAM).
fn pipeline(model: &str, extra: &str) -> String {
    format!(
        r#"pipeline p {{
  model base = {model}
  dataset raw = hf_dataset("UCSC-VLAA/MedReason", split = "train[:1000]") {{
    columns = {{ question: string, answer: string }}
  }}
  chat convo = chat_template(raw, tokenizer = base) {{
    user = "{{question}}"
    assistant = "{{answer}}"
    seq_len = 1024
  }}
  split parts = split(convo, train = 0.9, test = 0.1)
  train sft = sft(base, data = parts.train) {{
    method = lora {{ r = 16 }}
    fsdp = full_shard {{ offload = true }}
    compute = "ml.p5.48xlarge" x 4
    {extra}
  }}
}}
"#
    )
}

fn check(model: &str, extra: &str) -> tunec_compiler::Checked {
    tunec_compiler::check("p.tune", &pipeline(model, extra), &[], &Dir(cases()))
}

fn local_facts(dir: &str) -> ModelFacts {
    let checked = check(&format!("local_model(\"models/{dir}\")"), "");
    let program = checked.program.as_ref().expect("a program");
    program.node("base").and_then(|n| n.model.clone()).unwrap_or_else(|| {
        panic!(
            "models/{dir} is not understood: {:?}",
            checked.diagnostics.iter().map(|d| &d.message).collect::<Vec<_>>()
        )
    })
}

#[test]
fn every_family_has_a_fixture() {
    let have: Vec<String> = fixtures().into_iter().map(|(dir, _)| dir).collect();
    for arch in &Catalog::builtin().architectures {
        assert!(
            have.contains(&arch.model_type),
            "`{}` has no fixture: add tests/cases/models/{}/ (docs/language.md, \"Adding a model family\")",
            arch.model_type,
            arch.model_type
        );
    }
}

#[test]
fn a_fixture_reads_as_its_catalog_row() {
    let catalog = Catalog::builtin();
    for (dir, id) in fixtures() {
        let local = local_facts(&dir);
        let row = catalog.model(&id).unwrap_or_else(|| panic!("{dir}: `{id}` is not in the catalog"));
        assert_eq!(local.model_type, dir, "{dir}: the directory is named after its model type");
        assert_eq!(local.model_type, row.model_type, "{dir}");
        let shape = |m: &ModelFacts| {
            (
                m.hidden_size,
                m.intermediate_size,
                m.num_layers,
                m.num_heads,
                m.num_kv_heads,
                m.head_dim,
                m.vocab_size,
                m.tied_embeddings,
                m.attention_bias,
            )
        };
        assert_eq!(shape(&local), shape(row), "{dir}: shape");
        assert_eq!((local.moe, local.mla), (row.moe, row.mla), "{dir}: experts and latent attention");
        assert_eq!(local.vision_params, row.vision_params, "{dir}: vision tower");
        assert_eq!(local.weights, row.weights, "{dir}: weight format");
        assert_eq!(local.params, row.params, "{dir}: parameter count");
        assert_eq!(local.decoder_layer, row.decoder_layer, "{dir}");
        assert_eq!(local.template_system, row.template_system, "{dir}: what the template does with a system message");
    }
}

#[test]
fn every_family_checks_clean_as_a_local_and_a_catalog_model() {
    for (dir, id) in fixtures() {
        for model in [format!("local_model(\"models/{dir}\")"), format!("hf_model(\"{id}\")")] {
            let checked = check(&model, "");
            // A tokenizer that pads with EOS (or not at all) asks the pipeline for a pad token:
            // that is the pipeline's choice, not the family's.
            let errors: Vec<String> = checked
                .diagnostics
                .iter()
                .filter(|d| d.severity == tunec_compiler::diagnostics::Severity::Error)
                .filter(|d| !matches!(d.code.name(), "pad_is_eos" | "missing_field"))
                .map(|d| format!("{}: {}", d.code.name(), d.message))
                .collect();
            assert!(errors.is_empty(), "{model}: {errors:#?}");
            let estimates = checked.estimates.as_ref().expect("estimates");
            let sft = estimates.node("sft").expect("the train node is estimated");
            let names: Vec<&str> = sft.gpu_terms.iter().chain(&sft.host_terms).map(|t| t.name).collect();
            let facts = checked.program.as_ref().and_then(|p| p.model_facts("base")).expect("facts");
            let experts = names.iter().any(|n| n.starts_with("expert weights"));
            assert_eq!(experts, facts.moe.is_some(), "{model}: {names:?}");
        }
    }
}

#[test]
fn an_unknown_model_type_names_the_supported_ones_and_the_recipe() {
    struct OneConfig;
    impl World for OneConfig {
        fn read(&self, _dir: &str, file: &str) -> Result<String, String> {
            Ok(match file {
                "config.json" => r#"{"model_type": "qwen3_next", "hidden_size": 2048}"#.to_owned(),
                _ => "{}".to_owned(),
            })
        }
    }
    let checked = tunec_compiler::check("p.tune", &pipeline("local_model(\"next\")", ""), &[], &OneConfig);
    let d = checked.diagnostics.iter().find(|d| d.code.name() == "local_model").expect("a local_model error");
    assert!(d.message.contains("`qwen3_next`"), "{}", d.message);
    let help = d.help.as_deref().unwrap_or_default();
    for arch in &Catalog::builtin().architectures {
        assert!(help.contains(&arch.model_type), "{help}");
    }
    assert!(help.contains("architectures.toml") && help.contains("Adding a model family"), "{help}");
}

#[test]
fn a_merge_is_refused_into_the_checkpoints_stored_quantized_as_merge_py_refuses_them() {
    // merge.py merges into 16-bit weights, dequantizes MXFP4 (gpt-oss) and refuses any other
    // `quantization_config`: of the families, DeepSeek V3's FP8 checkpoint.
    for (dir, id) in fixtures() {
        for model in [format!("local_model(\"models/{dir}\")"), format!("hf_model(\"{id}\")")] {
            let text = pipeline(&model, "");
            let text = format!("{}\n  merge merged = merge(sft)\n}}\n", text.trim_end().trim_end_matches('}'));
            let checked = tunec_compiler::check("p.tune", &text, &[], &Dir(cases()));
            let refused: Vec<&str> = checked
                .diagnostics
                .iter()
                .filter(|d| d.code.name() == "merge_quantized_base")
                .map(|d| d.message.as_str())
                .collect();
            let facts = checked.program.as_ref().and_then(|p| p.model_facts("base")).expect("facts");
            if facts.weights == "fp8" {
                assert_eq!(refused.len(), 1, "{model}: {refused:?}");
                assert!(refused[0].contains("stored quantized (FP8)"), "{model}: {refused:?}");
            } else {
                assert!(refused.is_empty(), "{model} ({}): {refused:?}", facts.weights);
            }
        }
    }
    // Every family is covered, DeepSeek V3 among them.
    assert!(fixtures().iter().any(|(dir, _)| dir == "deepseek_v3"));
}
