//! Rules about tokens and templates: pad vs end-of-turn, double BOS, sequence length vs the
//! context window, placeholders that name no column, and chat templates on base models.

use super::Report;
use crate::check::{NodeType, Val};
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::{NodeKind, Span};

pub(super) fn run(r: &mut Report<'_>) {
    let program = r.program;
    // pad == eos/eot/a stop token: checked on the model node, where the pad token is chosen. The pad
    // is the one args.yaml writes: the node's, else the catalog's reserved one, else the tokenizer's.
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Model) {
        let Some(facts) = &node.model else { continue };
        let chosen = node.fields.str("pad_token");
        let pad = chosen
            .or_else(|| (!facts.reserved_pad_token.is_empty()).then_some(facts.reserved_pad_token.as_str()))
            .unwrap_or(facts.pad_token.as_str());
        let trained_by_chat = program
            .nodes
            .iter()
            .any(|n| n.kind == NodeKind::Chat && n.fields.reference("tokenizer").is_some_and(|t| t.node == node.name));
        if pad.is_empty() {
            if trained_by_chat {
                r.emit(
                    Code::MissingField,
                    node.name_span,
                    format!("`{}` has no pad token", node.name),
                    format!("the tokenizer of `{}` defines none, and tunec knows no reserved one for it", facts.id),
                    "set `pad_token` on the model to a token that is neither EOS nor end-of-turn (batches are padded with it)".into(),
                );
            }
            continue;
        }
        let which = if pad == facts.eot_token {
            "end-of-turn token"
        } else if pad == facts.eos_token {
            "end-of-sequence token"
        } else if facts.stop_tokens.iter().any(|t| t == pad) {
            "a stop token"
        } else {
            continue;
        };
        if !trained_by_chat {
            continue;
        }
        let fix = if facts.reserved_pad_token.is_empty() || facts.reserved_pad_token == pad {
            "set `pad_token` to a token that is none of the stop tokens (add one to the tokenizer if it has none)"
                .to_owned()
        } else {
            format!("set `pad_token = \"{}\"`", facts.reserved_pad_token)
        };
        let the = if which == "a stop token" { "" } else { "the " };
        let (span, label) = match chosen {
            Some(_) => (node.span_of("pad_token"), format!("\"{pad}\" is {the}{which}")),
            None => (
                node.name_span,
                format!(
                    "the tokenizer pads with \"{pad}\", {}",
                    if the.is_empty() { which.to_owned() } else { format!("its {which}") }
                ),
            ),
        };
        r.emit(
            Code::PadIsEos,
            span,
            format!("the pad token is {the}{which} `{pad}`"),
            label,
            format!("padding is masked out of the loss, so the model never learns to stop; {fix}"),
        );
    }
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Chat) {
        let Some(tokenizer) = node.fields.reference("tokenizer") else { continue };
        let Some(facts) = program.model_facts(&tokenizer.node) else { continue };
        if facts.template_adds_bos
            && node.fields.bool("add_special_tokens") == Some(true)
            && !facts.bos_token.is_empty()
        {
            r.emit(
                Code::DoubleBos,
                node.span_of("add_special_tokens"),
                format!("`{}` would start every conversation with two `{}`", node.name, facts.bos_token),
                "the tokenizer adds BOS on top of the template's".into(),
                "set `add_special_tokens = false`: the chat template already writes BOS".into(),
            );
        }
        if let Some(seq_len) = node.fields.int("seq_len") {
            if u64::try_from(seq_len).unwrap_or(0) > facts.max_position_embeddings {
                r.emit(
                    Code::SeqLenContext,
                    node.span_of("seq_len"),
                    format!("`seq_len` {seq_len} is longer than the context of `{}`", facts.id),
                    format!("the model has {} positions", facts.max_position_embeddings),
                    format!("set `seq_len` to at most {}", facts.max_position_embeddings),
                );
            }
        }
        if !facts.instruct && !trains_embeddings(program, &node.name) {
            r.emit(
                Code::UntrainedSpecialTokens,
                node.span_of("tokenizer"),
                format!("`{}` is a base model: its chat-template tokens were never trained", facts.id),
                "base checkpoint".into(),
                "start from the instruct checkpoint, or train the embeddings too: `method = lora { modules_to_save = [\"embed_tokens\", \"lm_head\"] }`".into(),
            );
        }
        let columns = match &node.ty {
            NodeType::Chat { columns, .. } => columns,
            _ => continue,
        };
        let dataset_span = node.fields.reference("data").and_then(|d| program.node(&d.node)).map(|d| d.name_span);
        for field in ["system", "user", "assistant"] {
            let Some(fv) = node.fields.get(field) else { continue };
            let Val::Str(text) = &fv.val else { continue };
            if fv.origin != crate::check::Origin::User {
                continue;
            }
            for (name, offset) in placeholders(text) {
                if columns.iter().any(|c| c.name == name) || columns.is_empty() {
                    continue;
                }
                // Point at the placeholder itself when the literal is a plain one-line string.
                let span = if program_text_matches(fv.span, text) {
                    Span::new(fv.span.start as usize + 1 + offset, fv.span.start as usize + 3 + offset + name.len())
                } else {
                    fv.span
                };
                let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                let help = match crate::check::suggest::closest(&name, names.iter().copied()) {
                    Some(best) => format!("did you mean `{{{best}}}`? write `{{{{` for a literal brace"),
                    None => format!(
                        "the dataset's columns are {}",
                        names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                let d = r.emit(
                    Code::TemplatePlaceholder,
                    span,
                    format!("`{{{name}}}` names no column"),
                    "no such column".into(),
                    help,
                );
                if let Some(ds) = dataset_span {
                    d.secondary.push(Label::new(ds, "columns declared here"));
                }
            }
        }
    }
}

/// Whether every train node fed by this chat (directly or through a split) trains the embeddings
/// and the output layer, which gives the template's special tokens trained vectors.
fn trains_embeddings(program: &crate::check::Program, chat: &str) -> bool {
    let fed_by_chat = |node: &str| {
        node == chat
            || program.node(node).is_some_and(|n| {
                n.kind == NodeKind::Split && n.fields.reference("data").is_some_and(|d| d.node == chat)
            })
    };
    let trains: Vec<_> = program
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Train && n.fields.reference("data").is_some_and(|d| fed_by_chat(&d.node)))
        .collect();
    !trains.is_empty()
        && trains.iter().all(|t| match t.fields.path("method.modules_to_save").map(|f| &f.val) {
            Some(Val::List(items)) => {
                ["embed_tokens", "lm_head"].iter().all(|m| items.iter().any(|i| matches!(i, Val::Str(s) if s == m)))
            }
            _ => false,
        })
}

/// The names inside `{...}` in a template, with their byte offset in the decoded text.
/// `{{` and `}}` are literal braces.
pub(super) fn placeholders(text: &str) -> Vec<(String, usize)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                let start = i;
                let end = text[i + 1..].find('}').map(|e| i + 1 + e);
                match end {
                    Some(end) => {
                        out.push((text[start + 1..end].trim().to_owned(), start));
                        i = end + 1;
                    }
                    None => {
                        out.push((text[start + 1..].to_owned(), start));
                        break;
                    }
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether a one-line string literal without escapes spans exactly its text plus quotes, so
/// that byte offsets in the value are offsets in the source.
fn program_text_matches(span: Span, text: &str) -> bool {
    span.len() == text.len() + 2 && !text.contains(['\n', '"', '\\'])
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn finds_placeholders_and_skips_escaped_braces() {
        let found = placeholders("<think>\n{reasoning}\n</think> {{literal}} {answer}");
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["reasoning", "answer"]);
        assert_eq!(found[0].1, 8);
    }
}
