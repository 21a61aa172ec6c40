//! Where the chat template of a fixture tokenizer (`TUNEC_FIXTURES`, filled by `.ci/fixtures.sh`)
//! comes from: its own `tokenizer_config.json`, TRL's reference template of its family, or, for a
//! tokenizer whose package ships none and whose family TRL has no template for (Llama 2's), the
//! published template of a kindred family's fixture (Mistral's `[INST]` format).

use std::path::Path;

pub(crate) enum TemplateSource {
    /// The tokenizer's own `tokenizer_config.json`.
    Own,
    /// TRL's reference template (`trl_chat_templates/<name>`).
    Trl(&'static str),
    /// The `chat_template` of another fixture's `tokenizer_config.json`.
    Of(&'static str),
}

impl TemplateSource {
    /// The template's source, or `None` where the tokenizer's own is used.
    pub(crate) fn read(&self, fixtures: &Path) -> Option<String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e} (run .ci/fixtures.sh)", path.display()))
        };
        match self {
            TemplateSource::Own => None,
            TemplateSource::Trl(name) => Some(read(&fixtures.join("trl_chat_templates").join(name))),
            TemplateSource::Of(dir) => {
                let path = fixtures.join(dir).join("tokenizer_config.json");
                let config: serde_json::Value = serde_json::from_str(&read(&path)).expect("JSON");
                let template = config["chat_template"].as_str();
                Some(template.unwrap_or_else(|| panic!("{}: no chat_template", path.display())).to_string())
            }
        }
    }
}
