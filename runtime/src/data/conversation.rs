//! The messages of one row: a chat node's `system`, `user` and `assistant` templates filled with the
//! row's columns.
//!
//! A template is text with `{column}` placeholders; `{{` and `}}` write a literal brace, and any other
//! brace is an error, found when the template is parsed, as is a placeholder naming a column the
//! dataset does not declare. Values are written as follows:
//!
//! - `string`: as is.
//! - `int`, `float`: as JSON writes them (`7`, `0.5`, `2.0`).
//! - `bool`: `true` / `false`, the language's spelling.
//! - `[string]`: the items one per line (joined with `\n`), the natural layout of answer options;
//!   an empty list writes nothing. A template that wants another layout needs a pre-joined column.
//!
//! The system message is left out when the node has no `system` template; an empty rendered
//! system message is kept (the template said so).

use serde_json::{Map, Value};

use super::source::Schema;
use super::template::Message;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Column(String),
}

/// A parsed `{column}` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTemplate {
    pieces: Vec<Piece>,
}

/// Why a template does not parse, or a row does not fill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationError {
    /// A `{` without its `}`, or a `}` that is neither `}}` nor the end of a placeholder.
    UnmatchedBrace { template: String, offset: usize },
    /// `{}` or a name that is not an identifier.
    BadPlaceholder { template: String, name: String },
    /// A placeholder names a column the dataset does not declare.
    UnknownColumn { role: &'static str, column: String },
    /// The row has no value for a placeholder's column.
    MissingValue { role: &'static str, column: String },
    /// The value is an object or null, which has no text form.
    Unprintable { role: &'static str, column: String },
}

impl std::fmt::Display for ConversationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConversationError::UnmatchedBrace { template, offset } => write!(
                f,
                "unmatched brace at byte {offset} of {template:?}; write `{{{{` or `}}}}` for a literal brace"
            ),
            ConversationError::BadPlaceholder { template, name } => {
                write!(f, "`{{{name}}}` in {template:?} is not a column name")
            }
            ConversationError::UnknownColumn { role, column } => {
                write!(f, "the {role} template uses `{{{column}}}`, which is not a declared column")
            }
            ConversationError::MissingValue { role, column } => {
                write!(f, "the {role} template uses `{{{column}}}`, which the row does not have")
            }
            ConversationError::Unprintable { role, column } => {
                write!(f, "the {role} template uses `{{{column}}}`, whose value has no text form")
            }
        }
    }
}

impl std::error::Error for ConversationError {}

impl TextTemplate {
    pub fn parse(template: &str) -> Result<TextTemplate, ConversationError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(i) = rest.find(['{', '}']) {
            text.push_str(&rest[..i]);
            let offset = template.len() - rest.len() + i;
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                text.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            let unmatched = || ConversationError::UnmatchedBrace { template: template.to_string(), offset };
            if tail.starts_with('}') {
                return Err(unmatched());
            }
            let end = tail.find('}').ok_or_else(unmatched)?;
            let name = &tail[1..end];
            if !is_identifier(name) {
                return Err(ConversationError::BadPlaceholder {
                    template: template.to_string(),
                    name: name.to_string(),
                });
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Column(name.to_string()));
            rest = &tail[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(TextTemplate { pieces })
    }

    /// The columns the template reads, in order of appearance (repeats included).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Column(name) => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// Fills the placeholders with the row's values.
    pub fn render(&self, role: &'static str, row: &Map<String, Value>) -> Result<String, ConversationError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Column(column) => {
                    let value = row
                        .get(column)
                        .ok_or_else(|| ConversationError::MissingValue { role, column: column.clone() })?;
                    write_value(&mut out, value)
                        .ok_or_else(|| ConversationError::Unprintable { role, column: column.clone() })?;
                }
            }
        }
        Ok(out)
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Writes a value's text form; `None` for null and objects.
fn write_value(out: &mut String, value: &Value) -> Option<()> {
    match value {
        Value::String(text) => out.push_str(text),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                match item {
                    Value::Array(_) => return None,
                    item => write_value(out, item)?,
                }
            }
        }
        Value::Null | Value::Object(_) => return None,
    }
    Some(())
}

/// A chat node's three templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSpec {
    pub system: Option<TextTemplate>,
    pub user: TextTemplate,
    pub assistant: TextTemplate,
}

/// The messages of one row, and the assistant's text on its own (a test row's `reference`).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    pub reference: String,
}

impl ChatSpec {
    /// Parses the templates and checks that every placeholder is a declared column.
    pub fn new(
        system: Option<&str>,
        user: &str,
        assistant: &str,
        schema: &Schema,
    ) -> Result<ChatSpec, ConversationError> {
        let spec = ChatSpec {
            system: system.map(TextTemplate::parse).transpose()?,
            user: TextTemplate::parse(user)?,
            assistant: TextTemplate::parse(assistant)?,
        };
        for (role, template) in spec.templates() {
            if let Some(column) = template.columns().find(|c| schema.get(c).is_none()) {
                return Err(ConversationError::UnknownColumn { role, column: column.to_string() });
            }
        }
        Ok(spec)
    }

    fn templates(&self) -> impl Iterator<Item = (&'static str, &TextTemplate)> {
        let system = self.system.as_ref().map(|t| ("system", t));
        system.into_iter().chain([("user", &self.user), ("assistant", &self.assistant)])
    }

    /// The row's conversation: system (when declared), user, assistant.
    pub fn conversation(&self, row: &Map<String, Value>) -> Result<Conversation, ConversationError> {
        let mut messages = Vec::with_capacity(3);
        if let Some(system) = &self.system {
            messages.push(Message::new("system", &system.render("system", row)?));
        }
        messages.push(Message::new("user", &self.user.render("user", row)?));
        let reference = self.assistant.render("assistant", row)?;
        messages.push(Message::new("assistant", &reference));
        Ok(Conversation { messages, reference })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::ColumnType;
    use serde_json::json;

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().expect("object").clone()
    }

    #[test]
    fn placeholders_and_literal_braces() {
        let t = TextTemplate::parse("{{\"q\": {question}}} {n}/{ok}").expect("parses");
        let out = t.render("user", &row(json!({"question": "why?", "n": 2.5, "ok": false}))).expect("renders");
        assert_eq!(out, "{\"q\": why?} 2.5/false");
        assert_eq!(t.columns().collect::<Vec<_>>(), ["question", "n", "ok"]);
        let list = TextTemplate::parse("Options:\n{options}").expect("parses");
        assert_eq!(
            list.render("user", &row(json!({"options": ["A. x", "B. y"]}))).expect("renders"),
            "Options:\nA. x\nB. y"
        );
    }

    #[test]
    fn template_errors() {
        assert_eq!(
            TextTemplate::parse("a { b"),
            Err(ConversationError::UnmatchedBrace { template: "a { b".into(), offset: 2 })
        );
        assert_eq!(
            TextTemplate::parse("a } b"),
            Err(ConversationError::UnmatchedBrace { template: "a } b".into(), offset: 2 })
        );
        assert!(matches!(TextTemplate::parse("{}"), Err(ConversationError::BadPlaceholder { .. })));
        assert!(matches!(TextTemplate::parse("{a b}"), Err(ConversationError::BadPlaceholder { .. })));
        let schema = Schema::new(&[("question", ColumnType::String)]);
        assert_eq!(
            ChatSpec::new(None, "{question}", "{answer}", &schema),
            Err(ConversationError::UnknownColumn { role: "assistant", column: "answer".into() })
        );
        let t = TextTemplate::parse("{x}").expect("parses");
        assert!(matches!(t.render("user", &row(json!({"x": null}))), Err(ConversationError::Unprintable { .. })));
        assert!(matches!(t.render("user", &row(json!({}))), Err(ConversationError::MissingValue { .. })));
    }

    #[test]
    fn conversation_of_a_row() {
        let schema = Schema::new(&[("question", ColumnType::String), ("answer", ColumnType::String)]);
        let spec = ChatSpec::new(Some("Be brief."), "{question}", "<a>{answer}</a>", &schema).expect("spec");
        let c = spec.conversation(&row(json!({"question": "2+2?", "answer": "4"}))).expect("conversation");
        assert_eq!(
            c.messages,
            vec![
                Message::new("system", "Be brief."),
                Message::new("user", "2+2?"),
                Message::new("assistant", "<a>4</a>")
            ]
        );
        assert_eq!(c.reference, "<a>4</a>");
    }
}
