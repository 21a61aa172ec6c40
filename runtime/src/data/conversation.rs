//! The conversation of one row: its messages, which of them may carry loss, and its tools.
//!
//! A chat node builds a row's conversation in one of three ways:
//!
//! - **Templates**: its `system`, `user` and `assistant` templates filled with the row's columns.
//! - **A column of messages** (`messages = "messages"`): the row's list of message objects, passed to
//!   the chat template as they are (fields in their order, an absent field absent, a null `None`).
//!   ShareGPT's `{ from, value }` objects become `{ role, content }` ones (`human` is `user`, `gpt`
//!   is `assistant`, `observation` is `tool`, `function_call` is `assistant`), their other fields
//!   kept.
//! - **A prompt and a completion** (`prompt = "prompt"`, `completion = "completion"`): two strings (a
//!   user turn and an assistant turn), or two lists of messages. The prompt's turns are context and
//!   never trained, as in TRL's prompt-completion datasets.
//!
//! With the last two, the `system` template is added as a first system message to conversations that
//! have none, and the `tools` column (when the node names one) becomes the template's `tools`.
//!
//! A template is text with `{column}` placeholders; `{{` and `}}` write a literal brace, and any other
//! brace is an error, found when the template is parsed, as is a placeholder naming a column the
//! dataset does not declare. Values are written as follows:
//!
//! - `string`: as is.
//! - `int`, `float`: as JSON writes them (`7`, `0.5`, `2.0`).
//! - `bool`: `true` / `false`, the language's spelling.
//! - a list of those: the items one per line (joined with `\n`), the natural layout of answer
//!   options; an empty list writes nothing. A template that wants another layout needs a pre-joined
//!   column.
//! - an optional column that the row leaves out (or sets to null): nothing.
//!
//! The system message is left out when the node has no `system` template; an empty rendered
//! system message is kept (the template said so).
//!
//! A conversation must end with an assistant message that is trained (one that is not part of a
//! prompt column): a row that does not, or a ShareGPT row with a role that has no meaning here, is a
//! bad row ([`ConversationError::is_bad_row`]) and follows the dataset's `on_bad_row`.

use serde_json::{Map, Value};

use super::source::{ColumnType, Schema};
use super::template::Message;
use tunec_compiler::check::columns::{message_format, MessageFormat};

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

/// Why a chat node's fields do not describe conversations of its dataset, or a row's conversation
/// cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationError {
    /// A `{` without its `}`, or a `}` that is neither `}}` nor the end of a placeholder.
    UnmatchedBrace { template: String, offset: usize },
    /// `{}` or a name that is not an identifier.
    BadPlaceholder { template: String, name: String },
    /// A placeholder or a field names a column the dataset does not declare.
    UnknownColumn { role: &'static str, column: String },
    /// The value is an object or null, which has no text form.
    Unprintable { role: &'static str, column: String },
    /// A column named by `messages`, `prompt`, `completion` or `tools` has a type that cannot serve.
    ColumnType { field: &'static str, column: String, reason: String },
    /// The node's fields do not describe a conversation (the checker reports this first).
    Shape(String),
    /// A message of the row's list is not an object with a string role (its index from 0).
    NotAMessage { column: String, index: usize },
    /// A ShareGPT `from` that names no known role.
    UnknownRole { column: String, index: usize, role: String },
    /// The row's conversation does not end with an assistant message that is trained.
    NoAssistantTurn { last: Option<String> },
}

impl ConversationError {
    /// Whether the error is the row's (its data), which `on_bad_row = skip` counts and leaves out,
    /// rather than the node's.
    pub fn is_bad_row(&self) -> bool {
        matches!(
            self,
            ConversationError::NotAMessage { .. }
                | ConversationError::UnknownRole { .. }
                | ConversationError::NoAssistantTurn { .. }
                | ConversationError::Unprintable { .. }
        )
    }
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
            ConversationError::Unprintable { role, column } => {
                write!(f, "the {role} template uses `{{{column}}}`, whose value has no text form")
            }
            ConversationError::ColumnType { field, column, reason } => {
                write!(f, "`{field}` names column `{column}`, which is {reason}")
            }
            ConversationError::Shape(message) => f.write_str(message),
            ConversationError::NotAMessage { column, index } => {
                write!(f, "`{column}[{index}]` is not a message (an object with a string role)")
            }
            ConversationError::UnknownRole { column, index, role } => write!(
                f,
                "`{column}[{index}]` is from `{role}`, which is none of human, gpt, system, observation, function_call \
                 (or user, assistant, tool)"
            ),
            ConversationError::NoAssistantTurn { last: Some(role) } => write!(
                f,
                "the conversation ends with a `{role}` message; training needs it to end with an assistant message"
            ),
            ConversationError::NoAssistantTurn { last: None } => f.write_str("the conversation has no messages"),
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

    /// Fills the placeholders with the row's values; a column the row leaves out (an optional one)
    /// writes nothing.
    pub fn render(&self, role: &'static str, row: &Map<String, Value>) -> Result<String, ConversationError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Column(column) => {
                    let Some(value) = row.get(column) else { continue };
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

/// Where a chat node's conversations come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `user` and `assistant` templates.
    Templates { user: TextTemplate, assistant: TextTemplate },
    /// A column of messages.
    Messages(MessagesColumn),
    /// A prompt and a completion column.
    PromptCompletion { prompt: Part, completion: Part },
}

/// A column holding a list of messages, and how they are spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesColumn {
    pub column: String,
    pub format: MessageFormat,
}

/// One side of a prompt-completion pair: a string column (one turn) or a column of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Messages(MessagesColumn),
}

/// A chat node's conversation fields, as the pipeline sets them.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatFields<'a> {
    pub system: Option<&'a str>,
    pub user: Option<&'a str>,
    pub assistant: Option<&'a str>,
    pub messages: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub completion: Option<&'a str>,
    pub tools: Option<&'a str>,
}

/// How a chat node builds each row's conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSpec {
    pub system: Option<TextTemplate>,
    pub source: Source,
    /// The column of tool schemas given to the template as `tools`.
    pub tools: Option<String>,
}

/// The conversation of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub messages: Vec<Message>,
    /// How many leading messages are never trained: a prompt column's turns, and the system message
    /// added before them.
    pub context: usize,
    /// The row's tool schemas, the template's `tools`.
    pub tools: Option<Value>,
    /// The final assistant message's text (a test row's `reference`): its content, or its tool calls
    /// as JSON when it has no text.
    pub reference: String,
}

impl Conversation {
    /// The indices of the assistant messages that may carry loss.
    pub fn assistant_turns(&self) -> Vec<usize> {
        (self.context..self.messages.len()).filter(|&i| self.messages[i].role() == "assistant").collect()
    }
}

impl ChatSpec {
    /// A node with `system`, `user` and `assistant` templates; checks that every placeholder is a
    /// declared column.
    pub fn new(
        system: Option<&str>,
        user: &str,
        assistant: &str,
        schema: &Schema,
    ) -> Result<ChatSpec, ConversationError> {
        let fields = ChatFields { system, user: Some(user), assistant: Some(assistant), ..ChatFields::default() };
        ChatSpec::from_fields(&fields, schema)
    }

    /// The node's conversation fields checked against the dataset's columns.
    pub fn from_fields(fields: &ChatFields<'_>, schema: &Schema) -> Result<ChatSpec, ConversationError> {
        let system = fields.system.map(TextTemplate::parse).transpose()?;
        let source = match (fields.messages, fields.prompt, fields.completion, fields.user, fields.assistant) {
            (Some(column), None, None, None, None) => Source::Messages(messages_column("messages", column, schema)?),
            (None, Some(prompt), Some(completion), None, None) => Source::PromptCompletion {
                prompt: part("prompt", prompt, schema)?,
                completion: part("completion", completion, schema)?,
            },
            (None, None, None, Some(user), Some(assistant)) => {
                Source::Templates { user: TextTemplate::parse(user)?, assistant: TextTemplate::parse(assistant)? }
            }
            _ => {
                return Err(ConversationError::Shape(
                    "a chat node takes a `messages` column, a `prompt` and a `completion` column, or `user` and \
                     `assistant` templates"
                        .to_string(),
                ))
            }
        };
        let tools = match fields.tools {
            Some(column) if matches!(source, Source::Templates { .. }) => {
                return Err(ConversationError::Shape(format!(
                    "`tools = \"{column}\"` needs a `messages` or `prompt`/`completion` column"
                )))
            }
            Some(column) => {
                declared("tools", column, schema)?;
                Some(column.to_string())
            }
            None => None,
        };
        let spec = ChatSpec { system, source, tools };
        for (role, template) in spec.templates() {
            if let Some(column) = template.columns().find(|c| schema.get(c).is_none()) {
                return Err(ConversationError::UnknownColumn { role, column: column.to_string() });
            }
        }
        Ok(spec)
    }

    fn templates(&self) -> impl Iterator<Item = (&'static str, &TextTemplate)> {
        let system = self.system.as_ref().map(|t| ("system", t));
        let pair = match &self.source {
            Source::Templates { user, assistant } => vec![("user", user), ("assistant", assistant)],
            _ => Vec::new(),
        };
        system.into_iter().chain(pair)
    }

    /// The row's conversation.
    pub fn conversation(&self, row: &Map<String, Value>) -> Result<Conversation, ConversationError> {
        let system = self.system.as_ref().map(|t| t.render("system", row)).transpose()?;
        let (mut messages, mut context) = match &self.source {
            Source::Templates { user, assistant } => {
                let mut messages = Vec::with_capacity(3);
                messages.push(Message::new("user", &user.render("user", row)?));
                messages.push(Message::new("assistant", &assistant.render("assistant", row)?));
                (messages, 0)
            }
            Source::Messages(column) => (column.messages(row)?, 0),
            Source::PromptCompletion { prompt, completion } => {
                let mut messages = prompt.messages("user", row)?;
                let context = messages.len();
                messages.extend(completion.messages("assistant", row)?);
                (messages, context)
            }
        };
        if let Some(system) = system {
            if messages.first().is_none_or(|m| m.role() != "system") {
                messages.insert(0, Message::new("system", &system));
                context += 1;
            }
        }
        let last = messages.last();
        let trained_last = messages.len() > context && last.is_some_and(|m| m.role() == "assistant");
        let Some(last) = last.filter(|_| trained_last) else {
            return Err(ConversationError::NoAssistantTurn { last: last.map(|m| m.role().to_string()) });
        };
        let reference = reference(last);
        let tools = self.tools.as_ref().and_then(|column| row.get(column)).filter(|v| !v.is_null()).cloned();
        Ok(Conversation { messages, context, tools, reference })
    }
}

/// A message's text for a test row's `reference`: its content, or its tool calls as JSON when it has
/// no text.
pub fn reference(message: &Message) -> String {
    match (message.content(), message.get("tool_calls")) {
        (Some(Value::String(text)), _) if !text.is_empty() => text.clone(),
        (_, Some(calls)) if !calls.is_null() => calls.to_string(),
        (Some(Value::String(text)), _) => text.clone(),
        (Some(other), _) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}

fn declared<'s>(
    field: &'static str,
    column: &str,
    schema: &'s Schema,
) -> Result<&'s super::source::SchemaColumn, ConversationError> {
    schema.get(column).ok_or_else(|| ConversationError::UnknownColumn { role: field, column: column.to_string() })
}

fn messages_column(field: &'static str, column: &str, schema: &Schema) -> Result<MessagesColumn, ConversationError> {
    let declared = declared(field, column, schema)?;
    let format = message_format(&declared.ty).map_err(|reason| ConversationError::ColumnType {
        field,
        column: column.to_string(),
        reason,
    })?;
    Ok(MessagesColumn { column: column.to_string(), format })
}

fn part(field: &'static str, column: &str, schema: &Schema) -> Result<Part, ConversationError> {
    if declared(field, column, schema)?.ty == ColumnType::String {
        return Ok(Part::Text(column.to_string()));
    }
    messages_column(field, column, schema).map(Part::Messages)
}

impl Part {
    /// The part's messages: a string column is one message of `role`.
    fn messages(&self, role: &str, row: &Map<String, Value>) -> Result<Vec<Message>, ConversationError> {
        match self {
            Part::Text(column) => {
                let text = row.get(column).and_then(Value::as_str).unwrap_or_default();
                Ok(vec![Message::new(role, text)])
            }
            Part::Messages(column) => column.messages(row),
        }
    }
}

impl MessagesColumn {
    /// The row's messages, ShareGPT ones converted.
    fn messages(&self, row: &Map<String, Value>) -> Result<Vec<Message>, ConversationError> {
        let items = match row.get(&self.column) {
            Some(Value::Array(items)) => items.as_slice(),
            _ => &[],
        };
        let mut messages = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let not_a_message = || ConversationError::NotAMessage { column: self.column.clone(), index };
            let Value::Object(object) = item else { return Err(not_a_message()) };
            let message = match self.format {
                MessageFormat::RoleContent => Message::from_object(object.clone()),
                MessageFormat::ShareGpt => Some(self.sharegpt(index, object)?),
            };
            messages.push(message.ok_or_else(not_a_message)?);
        }
        Ok(messages)
    }

    /// A ShareGPT `{ from, value, ... }` as `{ role, content, ... }`.
    fn sharegpt(&self, index: usize, object: &Map<String, Value>) -> Result<Message, ConversationError> {
        let from = object.get("from").and_then(Value::as_str).unwrap_or_default();
        let role = match from {
            "human" | "user" => "user",
            "gpt" | "assistant" | "function_call" => "assistant",
            "system" => "system",
            "observation" | "tool" => "tool",
            other => {
                return Err(ConversationError::UnknownRole {
                    column: self.column.clone(),
                    index,
                    role: other.to_string(),
                })
            }
        };
        let mut fields = Map::with_capacity(object.len());
        fields.insert("role".to_string(), Value::String(role.to_string()));
        fields.insert("content".to_string(), object.get("value").cloned().unwrap_or(Value::Null));
        for (key, value) in object {
            if key != "from" && key != "value" {
                fields.insert(key.clone(), value.clone());
            }
        }
        Message::from_object(fields).ok_or(ConversationError::NotAMessage { column: self.column.clone(), index })
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
        // A column the row leaves out is an optional one: it writes nothing.
        assert_eq!(t.render("user", &row(json!({}))), Ok(String::new()));
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
