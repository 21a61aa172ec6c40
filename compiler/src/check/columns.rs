//! Column types: the schema a dataset declares in `columns`, from scalars to conversations.
//!
//! A column is `string`, `int`, `float`, `bool`, `json` (any JSON value: tool-call arguments, tool
//! schemas), a list `[T]` of any type, or an object `{ field: T, ... }` whose fields may be marked
//! optional with `?`. A conversation column is a list of objects:
//!
//! ```tune
//! columns = {
//!   messages: [{ role: string, content: string?, tool_calls: [json]?, reasoning_content: string? }]
//! }
//! ```
//!
//! `?` may follow the type of a column or of an object field, and nothing else: an optional value is
//! one that a row may leave out or set to null, which only a field can be. List elements are never
//! optional. An object declares the fields the pipeline reads; a row's other fields pass through
//! unchecked (a message's `name` or `tool_call_id` reaches the chat template whether declared or
//! not).
//!
//! This module parses the schema from the AST (reporting every bad type at once) and answers the
//! questions the chat node's rules ask (is this a list of messages, which fields does it have). The
//! runtime checks rows against the same [`ColumnType`] (`runtime/src/data/source.rs`).

use super::suggest;
use crate::diagnostics::{Code, Diagnostic, FileId, Label};
use crate::syntax::ast::{Field, Span, Value, ValueKind};
use std::fmt;

/// The scalar type names, in the order messages list them.
pub const SCALAR_TYPES: &[&str] = &["string", "int", "float", "bool", "json"];

/// The type of a column, or of a field inside an object column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    /// Any number.
    Float,
    Bool,
    /// Any JSON value.
    Json,
    List(Box<ColumnType>),
    Object(Vec<ObjectField>),
}

/// One declared field of an object type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectField {
    pub name: String,
    pub ty: ColumnType,
    /// The field may be absent or null.
    pub optional: bool,
}

impl ColumnType {
    /// The element type of a list.
    pub fn element(&self) -> Option<&ColumnType> {
        match self {
            ColumnType::List(inner) => Some(inner),
            _ => None,
        }
    }

    /// The declared fields of an object.
    pub fn fields(&self) -> &[ObjectField] {
        match self {
            ColumnType::Object(fields) => fields,
            _ => &[],
        }
    }

    /// A declared field of an object.
    pub fn field(&self, name: &str) -> Option<&ObjectField> {
        self.fields().iter().find(|f| f.name == name)
    }

    /// Whether a value of this type has a text form a `{column}` placeholder can write: a scalar, or
    /// a list of scalars (one per line).
    pub fn printable(&self) -> bool {
        match self {
            ColumnType::String | ColumnType::Int | ColumnType::Float | ColumnType::Bool => true,
            ColumnType::List(inner) => {
                matches!(**inner, ColumnType::String | ColumnType::Int | ColumnType::Float | ColumnType::Bool)
            }
            ColumnType::Json | ColumnType::Object(_) => false,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::Float => f.write_str("float"),
            ColumnType::Bool => f.write_str("bool"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::List(inner) => write!(f, "[{inner}]"),
            ColumnType::Object(fields) => {
                f.write_str("{ ")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}{}", field.name, field.ty, if field.optional { "?" } else { "" })?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// A declared column of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    /// The column may be absent from a row, or null.
    pub optional: bool,
    pub span: Span,
}

impl Column {
    /// The type as written: `string`, `[string]`, `string?`.
    pub fn type_text(&self) -> String {
        if self.optional {
            format!("{}?", self.ty)
        } else {
            self.ty.to_string()
        }
    }
}

/// Reads back a type as [`Column::type_text`] writes it (`[{ role: string, content: string? }]`,
/// `json?`): the type and whether it is optional. The job graph carries column types in this form,
/// and the data step reads them with this. `None` when the text is not such a type.
pub fn parse_type_text(text: &str) -> Option<(ColumnType, bool)> {
    let mut rest = text.trim();
    let (ty, optional) = text_field_type(&mut rest)?;
    rest.trim_start().is_empty().then_some((ty, optional))
}

/// A type, then an optional `?`, from the start of `rest`, which moves past them.
fn text_field_type(rest: &mut &str) -> Option<(ColumnType, bool)> {
    let ty = text_type(rest)?;
    *rest = rest.trim_start();
    match rest.strip_prefix('?') {
        Some(after) => {
            *rest = after;
            Some((ty, true))
        }
        None => Some((ty, false)),
    }
}

fn text_type(rest: &mut &str) -> Option<ColumnType> {
    *rest = rest.trim_start();
    if let Some(after) = rest.strip_prefix('[') {
        *rest = after;
        let inner = text_type(rest)?;
        *rest = rest.trim_start().strip_prefix(']')?;
        return Some(ColumnType::List(Box::new(inner)));
    }
    if let Some(after) = rest.strip_prefix('{') {
        *rest = after;
        let mut fields = Vec::new();
        loop {
            *rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                *rest = after;
                return (!fields.is_empty()).then_some(ColumnType::Object(fields));
            }
            if !fields.is_empty() {
                *rest = rest.strip_prefix(',')?.trim_start();
            }
            let name = text_word(rest)?;
            *rest = rest.trim_start().strip_prefix(':')?;
            let (ty, optional) = text_field_type(rest)?;
            fields.push(ObjectField { name: name.to_owned(), ty, optional });
        }
    }
    match text_word(rest)? {
        "string" => Some(ColumnType::String),
        "int" => Some(ColumnType::Int),
        "float" => Some(ColumnType::Float),
        "bool" => Some(ColumnType::Bool),
        "json" => Some(ColumnType::Json),
        _ => None,
    }
}

/// An identifier at the start of `rest`.
fn text_word<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
    let (word, after) = rest.split_at(end);
    *rest = after;
    (!word.is_empty()).then_some(word)
}

/// How a column of messages spells its turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageFormat {
    /// `{ role, content }`, the format of `apply_chat_template` and TRL.
    RoleContent,
    /// ShareGPT's `{ from, value }` with `human` / `gpt` roles.
    ShareGpt,
}

impl MessageFormat {
    /// The fields that hold a message's role and its text.
    pub fn keys(self) -> (&'static str, &'static str) {
        match self {
            MessageFormat::RoleContent => ("role", "content"),
            MessageFormat::ShareGpt => ("from", "value"),
        }
    }
}

/// The fields of a message that carry an assistant's reasoning, as chat templates read them
/// (Qwen3's `reasoning_content`, gpt-oss's `thinking`) or datasets name it.
pub const REASONING_FIELDS: &[&str] = &["reasoning_content", "thinking", "reasoning"];

/// Whether `ty` is a list of messages, and in which format; otherwise why not, in words that fit
/// after "the column is".
pub fn message_format(ty: &ColumnType) -> Result<MessageFormat, String> {
    let Some(element) = ty.element() else {
        return Err(format!("`{ty}`, not a list of messages"));
    };
    if !matches!(element, ColumnType::Object(_)) {
        return Err(format!("a list of `{element}`, not of message objects"));
    }
    let format = if element.field("role").is_some() {
        MessageFormat::RoleContent
    } else if element.field("from").is_some() {
        MessageFormat::ShareGpt
    } else {
        return Err("a list of objects with neither `role` nor `from`".to_owned());
    };
    let (role, text) = format.keys();
    match element.field(role) {
        Some(f) if f.ty == ColumnType::String && !f.optional => {}
        Some(f) => return Err(format!("a list of messages whose `{role}` is `{}`, not `string`", type_text(f))),
        None => {}
    }
    if element.field(text).is_none() {
        return Err(format!("a list of messages without a `{text}` field"));
    }
    Ok(format)
}

fn type_text(f: &ObjectField) -> String {
    if f.optional {
        format!("{}?", f.ty)
    } else {
        f.ty.to_string()
    }
}

/// Parses a `columns` record, reporting every bad type; `None` when any column failed.
pub(crate) fn parse_columns(file: FileId, fields: &[Field], diagnostics: &mut Vec<Diagnostic>) -> Option<Vec<Column>> {
    let mut parser = Parser { file, diagnostics, ok: true };
    let mut out: Vec<Column> = Vec::new();
    for f in fields {
        if let Some(prev) = out.iter().find(|c| c.name == f.key.name) {
            parser.duplicate("column", &f.key.name, f.key.span, prev.span);
            continue;
        }
        if let Some((ty, optional)) = parser.field_type(&f.key.name, &f.value) {
            out.push(Column { name: f.key.name.clone(), ty, optional, span: f.key.span });
        }
    }
    parser.ok.then_some(out)
}

struct Parser<'a> {
    file: FileId,
    diagnostics: &'a mut Vec<Diagnostic>,
    ok: bool,
}

impl Parser<'_> {
    fn error(&mut self, code: Code, span: Span, message: String, label: &str, help: String) {
        self.ok = false;
        self.diagnostics.push(Diagnostic::new(code, self.file, message, Label::new(span, label)).with_help(help));
    }

    fn duplicate(&mut self, what: &str, name: &str, span: Span, first: Span) {
        self.ok = false;
        self.diagnostics.push(
            Diagnostic::new(
                Code::DuplicateField,
                self.file,
                format!("{what} `{name}` is declared twice"),
                Label::new(span, "declared again here"),
            )
            .with_label(Label::new(first, "first declared here"))
            .with_help("remove one of the two declarations"),
        );
    }

    /// The type of a column or an object field, and whether it is optional (`T?`).
    fn field_type(&mut self, name: &str, value: &Value) -> Option<(ColumnType, bool)> {
        match &value.kind {
            ValueKind::Optional(inner) => Some((self.ty(name, inner)?, true)),
            _ => Some((self.ty(name, value)?, false)),
        }
    }

    fn ty(&mut self, name: &str, value: &Value) -> Option<ColumnType> {
        match &value.kind {
            ValueKind::Path(_) if value.as_word().is_some() => {
                let word = value.as_word()?.name.as_str();
                match word {
                    "string" => Some(ColumnType::String),
                    "int" => Some(ColumnType::Int),
                    "float" => Some(ColumnType::Float),
                    "bool" => Some(ColumnType::Bool),
                    "json" => Some(ColumnType::Json),
                    _ => {
                        let help = match suggest::closest(word, SCALAR_TYPES.iter().copied()) {
                            Some(best) => format!("did you mean `{best}`? {}", TYPES_HELP),
                            None => TYPES_HELP.to_owned(),
                        };
                        self.error(
                            Code::UnknownValue,
                            value.span,
                            format!("unknown column type for `{name}`"),
                            "not a column type",
                            help,
                        );
                        None
                    }
                }
            }
            ValueKind::List(items) if items.len() == 1 => {
                let item = &items[0];
                if let ValueKind::Optional(_) = item.kind {
                    self.error(
                        Code::UnknownValue,
                        item.span,
                        format!("the elements of `{name}` cannot be optional"),
                        "an optional element",
                        "mark the list itself optional (`[string]?`), or a field of its objects".to_owned(),
                    );
                    return None;
                }
                Some(ColumnType::List(Box::new(self.ty(name, item)?)))
            }
            ValueKind::List(items) => {
                self.error(
                    Code::UnknownValue,
                    value.span,
                    format!("the list type of `{name}` needs exactly one element type"),
                    if items.is_empty() { "no element type" } else { "more than one element type" },
                    "write the element type once: `[string]`, `[{ role: string, content: string }]`".to_owned(),
                );
                None
            }
            ValueKind::Record(fields) if fields.is_empty() => {
                self.error(
                    Code::UnknownValue,
                    value.span,
                    format!("the object type of `{name}` declares no field"),
                    "an empty object",
                    "declare the fields the pipeline reads, or use `json` for any value".to_owned(),
                );
                None
            }
            ValueKind::Record(fields) => {
                let mut out: Vec<(ObjectField, Span)> = Vec::new();
                let mut ok = true;
                for f in fields {
                    if let Some((_, first)) = out.iter().find(|(o, _)| o.name == f.key.name) {
                        self.duplicate("field", &f.key.name, f.key.span, *first);
                        ok = false;
                        continue;
                    }
                    match self.field_type(&format!("{name}.{}", f.key.name), &f.value) {
                        Some((ty, optional)) => {
                            out.push((ObjectField { name: f.key.name.clone(), ty, optional }, f.key.span));
                        }
                        None => ok = false,
                    }
                }
                ok.then(|| ColumnType::Object(out.into_iter().map(|(f, _)| f).collect()))
            }
            ValueKind::Optional(_) => {
                self.error(
                    Code::UnknownValue,
                    value.span,
                    format!("`{name}` is marked optional inside another type"),
                    "`?` here",
                    "only a column or a field of an object can be optional".to_owned(),
                );
                None
            }
            _ => {
                self.error(
                    Code::UnknownValue,
                    value.span,
                    format!("unknown column type for `{name}`"),
                    "not a column type",
                    TYPES_HELP.to_owned(),
                );
                None
            }
        }
    }
}

const TYPES_HELP: &str = "a column is `string`, `int`, `float`, `bool`, `json`, a list such as `[string]`, or an object such as `{ role: string, content: string? }`";

#[cfg(test)]
mod tests {

    use super::*;
    use crate::syntax::parse_value;

    fn parse(text: &str) -> (Option<Vec<Column>>, Vec<Diagnostic>) {
        let value = parse_value(text, FileId(0)).expect("parses");
        let ValueKind::Record(fields) = &value.kind else { panic!("a record") };
        let mut diagnostics = Vec::new();
        let columns = parse_columns(FileId(0), fields, &mut diagnostics);
        (columns, diagnostics)
    }

    #[test]
    fn conversation_types_parse_and_print_back() {
        let text = "{ q: string, tags: [string], messages: [{ role: string, content: string?, \
                    tool_calls: [{ function: { name: string, arguments: json } }]? }], system: string? }";
        let (columns, diagnostics) = parse(text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let columns = columns.expect("columns");
        let printed: Vec<String> = columns.iter().map(|c| format!("{}: {}", c.name, c.type_text())).collect();
        assert_eq!(
            printed,
            [
                "q: string",
                "tags: [string]",
                "messages: [{ role: string, content: string?, tool_calls: [{ function: { name: string, arguments: json } }]? }]",
                "system: string?"
            ]
        );
        let messages = &columns[2].ty;
        let element = messages.element().expect("a list");
        assert_eq!(element.field("content").map(|f| f.optional), Some(true));
        assert!(!messages.printable());
        assert!(columns[1].ty.printable());
    }

    #[test]
    fn message_formats() {
        let (columns, _) = parse(
            "{ m: [{ role: string, content: string? }], s: [{ from: string, value: string }], t: string, \
             u: [{ role: string? , content: string }], v: [{ role: string }], w: [{ text: string }], x: [string] }",
        );
        let columns = columns.expect("columns");
        let formats: Vec<Result<MessageFormat, String>> = columns.iter().map(|c| message_format(&c.ty)).collect();
        assert_eq!(formats[0], Ok(MessageFormat::RoleContent));
        assert_eq!(formats[1], Ok(MessageFormat::ShareGpt));
        assert_eq!(formats[2], Err("`string`, not a list of messages".to_owned()));
        assert_eq!(formats[3], Err("a list of messages whose `role` is `string?`, not `string`".to_owned()));
        assert_eq!(formats[4], Err("a list of messages without a `content` field".to_owned()));
        assert_eq!(formats[5], Err("a list of objects with neither `role` nor `from`".to_owned()));
        assert_eq!(formats[6], Err("a list of `string`, not of message objects".to_owned()));
    }

    #[test]
    fn every_bad_type_is_reported() {
        let (columns, diagnostics) = parse(
            "{ a: strng, b: [string?], c: [string, int], d: {}, e: [{ x: string, x: int }], f: [[strin]], g: 3 }",
        );
        assert_eq!(columns, None);
        let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "unknown column type for `a`",
                "the elements of `b` cannot be optional",
                "the list type of `c` needs exactly one element type",
                "the object type of `d` declares no field",
                "field `x` is declared twice",
                "unknown column type for `f`",
                "unknown column type for `g`",
            ]
        );
        assert!(diagnostics[0].help.as_deref().is_some_and(|h| h.starts_with("did you mean `string`?")));
    }

    #[test]
    fn type_texts_read_back_as_the_types_that_wrote_them() {
        let message = ColumnType::Object(vec![
            ObjectField { name: "role".into(), ty: ColumnType::String, optional: false },
            ObjectField { name: "content".into(), ty: ColumnType::String, optional: true },
            ObjectField {
                name: "tool_calls".into(),
                ty: ColumnType::List(Box::new(ColumnType::Object(vec![ObjectField {
                    name: "function".into(),
                    ty: ColumnType::Object(vec![
                        ObjectField { name: "name".into(), ty: ColumnType::String, optional: false },
                        ObjectField { name: "arguments".into(), ty: ColumnType::Json, optional: false },
                    ]),
                    optional: false,
                }]))),
                optional: true,
            },
        ]);
        let types = [
            ColumnType::String,
            ColumnType::Int,
            ColumnType::Float,
            ColumnType::Bool,
            ColumnType::Json,
            ColumnType::List(Box::new(ColumnType::List(Box::new(ColumnType::Int)))),
            ColumnType::List(Box::new(message)),
        ];
        for ty in types {
            for optional in [false, true] {
                let column = Column { name: "c".into(), ty: ty.clone(), optional, span: Span::default() };
                assert_eq!(
                    parse_type_text(&column.type_text()),
                    Some((ty.clone(), optional)),
                    "{}",
                    column.type_text()
                );
            }
        }
        for bad in
            ["", "str", "[string", "[string]]", "{}", "{ a string }", "{ a: string b: int }", "string??", "[string?]x"]
        {
            assert_eq!(parse_type_text(bad), None, "{bad}");
        }
    }
}
