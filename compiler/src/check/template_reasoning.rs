//! What a chat template does with an assistant's reasoning, read from the template's text.
//!
//! Reasoning models' templates treat it in three ways that matter for training data:
//!
//! - **Qwen3** reads `reasoning_content` (or a `<think>...</think>` prefix of `content`) and writes it
//!   only for assistant turns after the last user message; earlier turns lose it.
//! - **gpt-oss** (harmony) reads `thinking` and writes it to the `analysis` channel of the final
//!   turn only (and of a tool call that no final answer follows).
//! - **DeepSeek-R1** distills cut every assistant `content` at `</think>` and keep what follows: the
//!   reasoning of every turn is gone, the last one's included.
//!
//! These facts are recognised by the constructs that implement them (Qwen3's `last_query_index`,
//! harmony's analysis channel guarded by `loop.last`, a `split('</think>')` without
//! `reasoning_content`), so a fine-tune that keeps its family's template keeps its facts. Catalog
//! models state them in `stdlib/catalog/models.toml`. The `reasoning_dropped` rule
//! (`rules/conversation.rs`) compares them with the data.

/// Which assistant turns' reasoning a template leaves out of the rendered text.
pub const DROPS_EARLIER: &str = "earlier";
pub const DROPS_ALL: &str = "all";

/// The message field the template reads reasoning from (empty when none) and which turns' reasoning
/// it drops ([`DROPS_EARLIER`], [`DROPS_ALL`], or empty).
pub fn reasoning_facts(template: &str) -> (String, String) {
    let reads_reasoning_content = template.contains("reasoning_content");
    let reads_thinking = template.contains("message.thinking") || template.contains("\"thinking\" in message");
    let field = if reads_reasoning_content {
        "reasoning_content"
    } else if reads_thinking {
        "thinking"
    } else {
        ""
    };
    let splits_think = template.contains("split('</think>')") || template.contains("split(\"</think>\")");
    let qwen3 = reads_reasoning_content && template.contains("last_query_index");
    let harmony = reads_thinking && template.contains("<|channel|>analysis") && template.contains("loop.last");
    let drops = if qwen3 || harmony {
        DROPS_EARLIER
    } else if splits_think && !reads_reasoning_content {
        DROPS_ALL
    } else {
        ""
    };
    (field.to_owned(), drops.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_recognised_by_their_constructs() {
        let qwen3 = "{%- set ns = namespace(last_query_index=messages|length - 1) %}{% if message.reasoning_content is string %}{% set content = content.split('</think>')[-1] %}";
        assert_eq!(reasoning_facts(qwen3), ("reasoning_content".to_owned(), "earlier".to_owned()));
        let harmony = r#"{%- if "thinking" in message %}{%- elif loop.last and not add_generation_prompt %}<|channel|>analysis<|message|>"#;
        assert_eq!(reasoning_facts(harmony), ("thinking".to_owned(), "earlier".to_owned()));
        let r1 = "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}";
        assert_eq!(reasoning_facts(r1), (String::new(), "all".to_owned()));
        let llama = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}";
        assert_eq!(reasoning_facts(llama), (String::new(), String::new()));
    }
}
