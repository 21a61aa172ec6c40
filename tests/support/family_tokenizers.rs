//! Which real tokenizer each model family's miniature runs with in the end-to-end tests
//! (tests/families_local.rs, tests/smoke_families.rs), and the model folder made from it: the
//! family's published `config.json` (tests/python/families/) beside the tokenizer's files from
//! `TUNEC_FIXTURES` (.ci/fixtures.sh) and its chat template.
//!
//! A family runs with its own tokenizer where a registry package ships it; otherwise with a real
//! one of its lineage whose ids fit its vocabulary: cl100k_base for Phi-4 and OLMo 2 (whose
//! tokenizers extend it), Llama 3.2's for SmolLM3, Llama 3.1's for Llama 4, and Llama 2's for the
//! Granite families (the only packaged one that fits their 49,155 rows), with Mistral's `[INST]`
//! template and the config's special-token ids set to Llama 2's.

use crate::fixture_templates::TemplateSource;
use std::path::Path;

pub(crate) struct FamilyTokenizer {
    /// The `model_type`, and the config file's name under tests/python/families.
    pub(crate) model_type: &'static str,
    /// The folder of `TUNEC_FIXTURES` with the real tokenizer.
    pub(crate) fixture: &'static str,
    /// Its chat template: the tokenizer's own, TRL's, or a kindred family's.
    pub(crate) template: TemplateSource,
    /// Whether the template accepts a system message in a training conversation (Gemma's fold it
    /// into the user turn or refuse it, Mistral's writes it in the last user turn only; tunec's
    /// `template_roles` rule refuses one there, so the pipeline leaves it out).
    pub(crate) system: bool,
    /// The model node's `pad_token`, for a tokenizer that pads with a stop token or has no pad
    /// token (tunec's `pad_is_eos` and `missing_field` refuse those).
    pub(crate) pad_token: Option<&'static str>,
    /// Special-token ids of config.json set to the tokenizer's, for a family run with a kindred
    /// tokenizer whose ids for them differ from the family's own (Granite names id 0 for BOS, EOS
    /// and pad, its `<|end_of_text|>`; in Llama 2's vocabulary id 0 is `<unk>`).
    pub(crate) token_ids: &'static [(&'static str, u64)],
}

const OWN: FamilyTokenizer = FamilyTokenizer {
    model_type: "",
    fixture: "",
    template: TemplateSource::Own,
    system: true,
    pad_token: None,
    token_ids: &[],
};

const GRANITE: FamilyTokenizer = FamilyTokenizer {
    model_type: "granite",
    fixture: "llama2",
    template: TemplateSource::Of("mistral_nemo"),
    system: false,
    pad_token: Some("<unk>"),
    token_ids: &[("bos_token_id", 1), ("eos_token_id", 2), ("pad_token_id", 0)],
};

/// Every family of tests/python/families.
pub(crate) const FAMILIES: &[FamilyTokenizer] = &[
    FamilyTokenizer { model_type: "llama", fixture: "llama3_2", pad_token: Some("<|finetune_right_pad_id|>"), ..OWN },
    FamilyTokenizer { model_type: "mistral", fixture: "mistral_nemo", system: false, pad_token: Some("<pad>"), ..OWN },
    FamilyTokenizer { model_type: "qwen2", fixture: "qwen2_5", ..OWN },
    FamilyTokenizer {
        model_type: "gemma2",
        fixture: "gemma2",
        template: TemplateSource::Trl("gemma.jinja"),
        system: false,
        ..OWN
    },
    FamilyTokenizer { model_type: "qwen3", fixture: "qwen3", ..OWN },
    FamilyTokenizer { model_type: "qwen3_moe", fixture: "qwen3", ..OWN },
    FamilyTokenizer { model_type: "gemma3_text", fixture: "gemma3", system: false, ..OWN },
    FamilyTokenizer { model_type: "gemma3", fixture: "gemma3", system: false, ..OWN },
    FamilyTokenizer { model_type: "gpt_oss", fixture: "gptoss", template: TemplateSource::Trl("gptoss.jinja"), ..OWN },
    FamilyTokenizer { model_type: "deepseek_v3", fixture: "deepseek_v3", pad_token: Some("<｜▁pad▁｜>"), ..OWN },
    FamilyTokenizer { model_type: "phi3", fixture: "gpt4", pad_token: Some("<|endofprompt|>"), ..OWN },
    FamilyTokenizer { model_type: "olmo2", fixture: "gpt4", pad_token: Some("<|endofprompt|>"), ..OWN },
    FamilyTokenizer { model_type: "smollm3", fixture: "llama3_2", pad_token: Some("<|finetune_right_pad_id|>"), ..OWN },
    FamilyTokenizer {
        model_type: "llama4",
        fixture: "llama3_1",
        pad_token: Some("<|reserved_special_token_0|>"),
        ..OWN
    },
    GRANITE,
    FamilyTokenizer { model_type: "granitemoe", ..GRANITE },
];

/// The tokenizer `model_type` runs with, if the table names one.
pub(crate) fn of(model_type: &str) -> Option<&'static FamilyTokenizer> {
    FAMILIES.iter().find(|f| f.model_type == model_type)
}

/// The folder `TUNEC_FIXTURES` names (.ci/fixtures.sh fills it).
pub(crate) fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var_os("TUNEC_FIXTURES").unwrap_or_else(|| {
        panic!(
            "TUNEC_FIXTURES is not set: the families run with their real tokenizers; run through .ci/run, or \
             export TUNEC_FIXTURES (the folder .ci/fixtures.sh fills)"
        )
    }))
}

impl FamilyTokenizer {
    /// Writes into `dest` the family's `config.json` (with [`Self::token_ids`] set), the tokenizer's
    /// files and its chat template; the error names the family and what is missing.
    pub(crate) fn write_model(&self, root: &Path, fixtures: &Path, dest: &Path) -> Result<(), String> {
        let name = self.model_type;
        std::fs::create_dir_all(dest).map_err(|e| format!("{name}: {}: {e}", dest.display()))?;
        let path = root.join(format!("tests/python/families/{name}.json"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {}: {e}", path.display()))?;
        let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
        for (key, id) in self.token_ids {
            if config.get(key).is_none() {
                return Err(format!("{name}: config.json has no `{key}`"));
            }
            config[key] = (*id).into();
        }
        std::fs::write(dest.join("config.json"), config.to_string()).map_err(|e| format!("{name}: {e}"))?;
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            let from = fixtures.join(self.fixture).join(file);
            std::fs::copy(&from, dest.join(file))
                .map_err(|e| format!("{name}: {}: {e} (.ci/fixtures.sh)", from.display()))?;
        }
        if let Some(template) = self.template.read(fixtures) {
            std::fs::write(dest.join("chat_template.jinja"), template).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }
}
