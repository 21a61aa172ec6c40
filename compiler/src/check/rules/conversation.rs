//! Rules about how a chat node builds its conversations: which fields describe them, whether the
//! columns they name have the right shape, and whether the model's chat template keeps the
//! reasoning the data provides.
//!
//! A chat node describes each row's conversation in exactly one of three ways: a `messages` column
//! (a list of `{ role, content }` or ShareGPT `{ from, value }` objects), a `prompt` and a
//! `completion` column (strings, or lists of messages), or `user` and `assistant` templates. `system`
//! goes with any of them, and `tools` with the first two.

use super::Report;
use crate::check::columns::{message_format, Column, ColumnType, REASONING_FIELDS};
use crate::check::template_reasoning::{DROPS_ALL, DROPS_EARLIER};
use crate::check::{NodeType, TypedNode, Val};
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::NodeKind;

const SHAPES: &str =
    "a chat node takes a `messages` column, a `prompt` and a `completion` column, or `user` and `assistant` templates";

pub(super) fn run(r: &mut Report<'_>) {
    let program = r.program;
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Chat) {
        let columns = match &node.ty {
            NodeType::Chat { columns, .. } => columns.as_slice(),
            _ => &[],
        };
        fields(r, node);
        for field in ["messages", "prompt", "completion", "tools"] {
            column(r, node, field, columns);
        }
        reasoning(r, node, columns);
    }
}

/// Exactly one way of describing the conversation, each complete.
fn fields(r: &mut Report<'_>, node: &TypedNode) {
    let set = |f: &str| node.fields.get(f).is_some();
    let shapes: Vec<&[&str]> = [&["messages"][..], &["prompt", "completion"], &["user", "assistant"]]
        .into_iter()
        .filter(|shape| shape.iter().any(|f| set(f)))
        .collect();
    match shapes.as_slice() {
        [] => {
            r.emit(
                Code::ConversationFields,
                node.name_span,
                format!("`{}` does not say what its conversations are", node.name),
                "no `messages`, `prompt`/`completion` or `user`/`assistant`".into(),
                "set `messages = \"messages\"` (a column of messages), `prompt` and `completion` columns, or `user` and `assistant` templates".into(),
            );
        }
        [shape] => {
            if let Some(missing) = shape.iter().find(|f| !set(f)) {
                let given = shape.iter().find(|f| set(f)).copied().unwrap_or_default();
                r.emit(
                    Code::ConversationFields,
                    node.span_of(given),
                    format!("`{given}` needs `{missing}`"),
                    format!("`{given}` without `{missing}`"),
                    format!("add `{missing} = ...`: {SHAPES}"),
                );
            }
            if shape[0] == "user" && set("tools") {
                r.emit(
                    Code::ConversationFields,
                    node.span_of("tools"),
                    "`tools` needs a `messages` or `prompt`/`completion` column".into(),
                    "tools with `user` and `assistant` templates".into(),
                    "tool calls and tool results come from a column of messages; describe the conversations with `messages = \"...\"`".into(),
                );
            }
        }
        [first, second, ..] => {
            let first_field = first.iter().find(|f| set(f)).copied().unwrap_or_default();
            let second_field = second.iter().find(|f| set(f)).copied().unwrap_or_default();
            r.emit(
                Code::ConversationFields,
                node.span_of(second_field),
                format!("`{first_field}` and `{second_field}` both describe the conversations"),
                "a second description".into(),
                format!("keep one: {SHAPES}"),
            )
            .secondary
            .push(Label::new(node.span_of(first_field), "the first"));
        }
    }
}

/// A column named by `messages`, `prompt`, `completion` or `tools` exists and has a usable type.
fn column(r: &mut Report<'_>, node: &TypedNode, field: &str, columns: &[Column]) {
    let Some(Val::Str(name)) = node.fields.get(field).map(|f| &f.val) else { return };
    if columns.is_empty() {
        return;
    }
    let dataset_span = node.fields.reference("data").and_then(|d| r.program.node(&d.node)).map(|d| d.name_span);
    let Some(col) = columns.iter().find(|c| &c.name == name) else {
        let names = columns.iter().map(|c| c.name.as_str());
        let help = match crate::check::suggest::closest(name, names.clone()) {
            Some(best) => format!("did you mean `\"{best}\"`?"),
            None => {
                format!("the dataset's columns are {}", names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            }
        };
        let d = r.emit(
            Code::ConversationColumn,
            node.span_of(field),
            format!("`{field}` names no column: `{name}`"),
            "no such column".into(),
            help,
        );
        if let Some(span) = dataset_span {
            d.secondary.push(Label::new(span, "columns declared here"));
        }
        return;
    };
    let problem = match field {
        "messages" => message_format(&col.ty).err().map(|why| {
            (
                format!("`{}` is {why}", col.name),
                "declare it as `[{ role: string, content: string }]` (optional fields such as `tool_calls: [json]?` or `reasoning_content: string?` may follow), or `[{ from: string, value: string }]` for ShareGPT".to_owned(),
            )
        }),
        "prompt" | "completion" if col.ty == ColumnType::String => None,
        "prompt" | "completion" => message_format(&col.ty).err().map(|why| {
            (
                format!("`{}` is {why}", col.name),
                format!("`{field}` is a `string` column (one turn) or a list of messages"),
            )
        }),
        _ => match &col.ty {
            ColumnType::Json | ColumnType::List(_) => None,
            other => Some((
                format!("`{}` is `{other}`, not a list of tool schemas", col.name),
                "declare the tools column as `json` or `[json]`: the templates take a list of JSON schemas".to_owned(),
            )),
        },
    };
    if let Some((message, help)) = problem {
        let d = r.emit(Code::ConversationColumn, node.span_of(field), message, "this column".into(), help);
        d.secondary.push(Label::new(col.span, format!("declared as `{}`", col.type_text())));
        return;
    }
    if field == "completion" {
        let prompt = node.fields.str("prompt").and_then(|p| columns.iter().find(|c| c.name == p));
        if let Some(prompt) = prompt.filter(|p| (p.ty == ColumnType::String) != (col.ty == ColumnType::String)) {
            let d = r.emit(
                Code::ConversationColumn,
                node.span_of(field),
                "`prompt` and `completion` are of different kinds".into(),
                format!("`{}`", col.type_text()),
                "make both strings (one user and one assistant turn) or both lists of messages".into(),
            );
            d.secondary.push(Label::new(node.span_of("prompt"), format!("`{}`", prompt.type_text())));
        }
    }
}

/// Reasoning that the data provides and the model's chat template leaves out.
fn reasoning(r: &mut Report<'_>, node: &TypedNode, columns: &[Column]) {
    let Some(facts) = node.fields.reference("tokenizer").and_then(|t| r.program.model_facts(&t.node)) else {
        return;
    };
    let train_on = node.fields.word("train_on").unwrap_or("assistant");
    let template_name = facts.id.clone();
    // Reasoning written into the assistant template as `<think>...</think>`.
    if facts.drops_reasoning == DROPS_ALL {
        let thinks = node.fields.str("assistant").is_some_and(|a| a.contains("</think>"));
        if thinks {
            r.emit(
                Code::ReasoningDropped,
                node.span_of("assistant"),
                format!("the chat template of `{template_name}` cuts every assistant message at `</think>`"),
                "the reasoning before `</think>` is never rendered, so never trained".into(),
                "keep the reasoning with a template that renders it (the pipeline's `local_model` can ship its own chat_template.jinja), or train on the answers alone".into(),
            );
        }
    }
    // A reasoning field in a column of messages.
    let Some(messages) = ["messages", "completion"]
        .iter()
        .find_map(|f| node.fields.str(f))
        .and_then(|name| columns.iter().find(|c| c.name == name))
    else {
        return;
    };
    let Some(element) = messages.ty.element() else { return };
    let field_name =
        ["messages", "completion"].iter().find(|f| node.fields.str(f).is_some()).copied().unwrap_or("messages");
    for declared in REASONING_FIELDS.iter().filter(|f| element.field(f).is_some()) {
        if !facts.reasoning_field.is_empty() && facts.reasoning_field != *declared {
            r.emit(
                Code::ReasoningDropped,
                node.span_of(field_name),
                format!(
                    "the chat template of `{template_name}` reads reasoning from `{}`, not `{declared}`",
                    facts.reasoning_field
                ),
                format!("`{declared}` is never rendered"),
                format!("rename the field to `{}` in the data", facts.reasoning_field),
            )
            .secondary
            .push(Label::new(messages.span, format!("`{}` declares `{declared}`", messages.name)));
        } else if facts.reasoning_field == *declared
            && facts.drops_reasoning == DROPS_EARLIER
            && train_on == "assistant"
        {
            r.emit(
                Code::ReasoningDropped,
                node.span_of("train_on"),
                format!(
                    "the chat template of `{template_name}` keeps `{declared}` only for the assistant turns after the last user message"
                ),
                "earlier assistant turns are trained without their reasoning".into(),
                "train on the final turn only (`train_on = last_assistant`), or give each assistant turn a row of its own".into(),
            )
            .secondary
            .push(Label::new(messages.span, format!("`{}` declares `{declared}`", messages.name)));
        }
    }
}
