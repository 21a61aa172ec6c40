//! Hugging Face chat templates, rendered with minijinja the way `transformers` renders them.
//!
//! `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` compiles the
//! template in an `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the
//! `loopcontrols` extension and its own `{% generation %}` tag, adds the globals `raise_exception` and
//! `strftime_now` and replaces `tojson` by `json.dumps(..., ensure_ascii=False)`, then renders with
//! `messages`, `tools=None`, `documents=None`, `add_generation_prompt` and the tokenizer's special
//! tokens (as strings) in scope. [`ChatTemplate`] sets minijinja up the same way; the differences
//! that matter for training data (Python string methods, `None`/`True` printing, Python whitespace
//! in `trim`, JSON spacing) are patched here and checked against transformers by
//! `tests/chat_template_parity.rs`.

use std::fmt::Write as _;
use std::path::Path;

use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use serde::Serialize;

/// The name the compiled template is stored under in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// The special-token keys of `tokenizer.special_tokens_map` that transformers puts in the render
/// context (`additional_special_tokens` is a list of strings).
const SPECIAL_TOKEN_KEYS: [&str; 7] =
    ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

/// One chat message as the template sees it: a JSON object with a string `role`, usually a
/// `content`, and any other fields (`tool_calls`, `name`, `reasoning_content`, ...), kept in their
/// order as a Python dict built from the same JSON would keep them. A field that is absent stays
/// absent and a null stays `None`: templates tell the two apart (`'tool_calls' in message`,
/// `message.content is none`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Message {
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    /// A message with text content and no other fields.
    pub fn new(role: &str, content: &str) -> Message {
        let mut fields = serde_json::Map::with_capacity(2);
        fields.insert("role".to_string(), serde_json::Value::String(role.to_string()));
        fields.insert("content".to_string(), serde_json::Value::String(content.to_string()));
        Message { fields }
    }

    /// A message from a JSON object; `None` unless it has a string `role`.
    pub fn from_object(fields: serde_json::Map<String, serde_json::Value>) -> Option<Message> {
        fields.get("role").is_some_and(serde_json::Value::is_string).then_some(Message { fields })
    }

    /// The same message with `key` set to `value` (replaced in place when present, added at the end
    /// otherwise).
    #[must_use]
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Message {
        self.fields.insert(key.to_string(), value);
        self
    }

    pub fn role(&self) -> &str {
        self.fields.get("role").and_then(serde_json::Value::as_str).unwrap_or_default()
    }

    /// The `content` field, absent or not.
    pub fn content(&self) -> Option<&serde_json::Value> {
        self.fields.get("content")
    }

    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.fields.get(key)
    }

    pub fn fields(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.fields
    }

    /// The message as a template value.
    pub fn to_value(&self) -> Value {
        Value::from(Serde(self))
    }
}

/// Why a template could not be loaded or rendered. The template's own words (a syntax error, the
/// message given to `raise_exception`) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// A file could not be read.
    Io { path: String, message: String },
    /// `tokenizer_config.json` is not valid JSON, or has no usable chat template.
    Config(String),
    /// The template does not compile.
    Syntax(String),
    /// The template called `raise_exception(message)`.
    Raised(String),
    /// Rendering failed for another reason (an undefined attribute, a bad filter argument, ...).
    Render(String),
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateError::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            TemplateError::Config(message) => write!(f, "invalid tokenizer config: {message}"),
            TemplateError::Syntax(message) => write!(f, "chat template does not compile: {message}"),
            TemplateError::Raised(message) => write!(f, "chat template raised an exception: {message}"),
            TemplateError::Render(message) => write!(f, "chat template failed to render: {message}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// The error `raise_exception` returns, so that [`ChatTemplate::render`] can tell it from the others.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// A compiled chat template with the special tokens of its tokenizer.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, ... as strings, and `additional_special_tokens` as a list.
    special_tokens: serde_json::Map<String, serde_json::Value>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("special_tokens", &self.special_tokens).finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Loads a model or tokenizer directory: `tokenizer_config.json`, and `chat_template.jinja` when
    /// present (transformers prefers it to the config's `chat_template`).
    pub fn from_files(dir: &Path) -> Result<ChatTemplate, TemplateError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map_err(|e| TemplateError::Io { path: path.display().to_string(), message: e.to_string() })
        };
        let config = read("tokenizer_config.json")?;
        let jinja = if dir.join("chat_template.jinja").is_file() { Some(read("chat_template.jinja")?) } else { None };
        ChatTemplate::from_config(&config, jinja.as_deref())
    }

    /// Builds a template from the text of `tokenizer_config.json` and, optionally, the text of a
    /// `chat_template.jinja`, which takes precedence over the config's `chat_template`. The config's
    /// template is a string, or a list of `{name, template}` of which the one named `default` is used.
    pub fn from_config(config_json: &str, jinja: Option<&str>) -> Result<ChatTemplate, TemplateError> {
        let config: serde_json::Value =
            serde_json::from_str(config_json).map_err(|e| TemplateError::Config(e.to_string()))?;
        let Some(config) = config.as_object() else {
            return Err(TemplateError::Config("expected a JSON object".to_string()));
        };
        let source = match jinja {
            Some(source) => source.to_string(),
            None => template_from_config(config)?,
        };
        let mut special_tokens = serde_json::Map::new();
        for key in SPECIAL_TOKEN_KEYS {
            if let Some(token) = config.get(key).and_then(token_text) {
                special_tokens.insert(key.to_string(), serde_json::Value::String(token));
            }
        }
        if let Some(list) = config.get("additional_special_tokens").and_then(|v| v.as_array()) {
            let tokens: Vec<serde_json::Value> =
                list.iter().filter_map(token_text).map(serde_json::Value::String).collect();
            if !tokens.is_empty() {
                special_tokens.insert("additional_special_tokens".to_string(), serde_json::Value::Array(tokens));
            }
        }
        let mut env = environment().map_err(|e| TemplateError::Syntax(describe(&e)))?;
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(&source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate { env, special_tokens })
    }

    /// Renders `messages` as `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`
    /// does. `extra` holds further template variables (`date_string`, `enable_thinking`, `tools`, ...);
    /// like transformers' keyword arguments, they override the special tokens.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let messages: Vec<Value> = messages.iter().map(Message::to_value).collect();
        self.render_values(&messages, add_generation_prompt, &Vars { extra, tools: None })
    }

    /// Renders messages already converted to template values ([`Message::to_value`]), so that a
    /// conversation rendered several times (its prefixes, for the assistant turns' masks) is
    /// converted once. `vars.tools`, when set, is the `tools` variable (a row's own tools).
    pub fn render_values(
        &self,
        messages: &[Value],
        add_generation_prompt: bool,
        vars: &Vars<'_>,
    ) -> Result<String, TemplateError> {
        let mut ctx: Vec<(&str, Value)> = vec![
            ("messages", Value::from(messages.to_vec())),
            ("tools", vars.tools.cloned().unwrap_or_else(|| Value::from(()))),
            ("documents", Value::from(())),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ];
        for (key, value) in self.special_tokens.iter().chain(vars.extra) {
            ctx.push((key.as_str(), Value::from(Serde(value))));
        }
        let template = self.env.get_template(TEMPLATE_NAME).map_err(|e| TemplateError::Syntax(describe(&e)))?;
        template.render(Value::from_pairs(ctx)).map_err(|e| match raised_message(&e) {
            Some(message) => TemplateError::Raised(message),
            None => TemplateError::Render(describe(&e)),
        })
    }
}

/// The variables a conversation is rendered with besides its messages: the chat node's (`date_string`,
/// ...) and the row's `tools`.
#[derive(Clone, Copy, Debug)]
pub struct Vars<'a> {
    pub extra: &'a serde_json::Map<String, serde_json::Value>,
    pub tools: Option<&'a Value>,
}

/// The chat template of a tokenizer config: a string, or the `default` of a list of named ones.
fn template_from_config(config: &serde_json::Map<String, serde_json::Value>) -> Result<String, TemplateError> {
    match config.get("chat_template") {
        Some(serde_json::Value::String(source)) => Ok(source.clone()),
        Some(serde_json::Value::Array(named)) => {
            let mut names = Vec::new();
            for entry in named {
                let name = entry.get("name").and_then(|v| v.as_str());
                let source = entry.get("template").and_then(|v| v.as_str());
                match (name, source) {
                    (Some("default"), Some(source)) => return Ok(source.to_string()),
                    (Some(name), Some(_)) => names.push(name.to_string()),
                    _ => {
                        return Err(TemplateError::Config(
                            "each named chat template needs a `name` and a `template` string".to_string(),
                        ))
                    }
                }
            }
            Err(TemplateError::Config(format!(
                "no chat template named `default` (the config has: {})",
                names.join(", ")
            )))
        }
        Some(_) => {
            Err(TemplateError::Config("`chat_template` must be a string or a list of named templates".to_string()))
        }
        None => Err(TemplateError::Config(
            "no `chat_template` in tokenizer_config.json and no chat_template.jinja".to_string(),
        )),
    }
}

/// A special token as transformers stores it: a string, or an `AddedToken` object `{content: ...}`.
fn token_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Object(token) => token.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

/// An environment with transformers' settings, globals and filters.
fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_unknown_method_callback(python_method);
    env.set_formatter(python_formatter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_filter("trim", trim);
    env.add_test("iterable", is_iterable);
    env.add_test("sequence", is_sequence);
    Ok(env)
}

/// `{{ value }}` prints `None`, `True` and `False` as Python does; everything else as minijinja does.
fn python_formatter(out: &mut minijinja::Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => Ok(out.write_str("None")?),
        ValueKind::Bool if value.is_true() => Ok(out.write_str("True")?),
        ValueKind::Bool => Ok(out.write_str("False")?),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str.strip()` whitespace: Rust's `char::is_whitespace` plus the separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python string methods (`.strip()`, `.split()`, `.startswith()`, `.items()`, `.get()`, ...) from
/// minijinja-contrib, with `strip`/`lstrip`/`rstrip` without arguments using Python's whitespace.
fn python_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if let (Some(text), true) = (value.as_str(), args.is_empty()) {
        match method {
            "strip" => return Ok(Value::from(text.trim_matches(is_py_space))),
            "lstrip" => return Ok(Value::from(text.trim_start_matches(is_py_space))),
            "rstrip" => return Ok(Value::from(text.trim_end_matches(is_py_space))),
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Jinja2's `iterable` test, `iter(value)` succeeding: `None` is not iterable (minijinja iterates it
/// as empty).
fn is_iterable(value: &Value) -> bool {
    !value.is_none() && value.try_iter().is_ok()
}

/// Jinja2's `sequence` test, `len(value)` and `value.__getitem__` both existing: strings and dicts are
/// sequences too, and so is an undefined value.
fn is_sequence(value: &Value) -> bool {
    value.is_undefined()
        || matches!(value.kind(), ValueKind::Seq | ValueKind::String | ValueKind::Map | ValueKind::Bytes)
}

/// Jinja's `trim(value, chars=None)`: `str(value).strip(chars)`.
fn trim(value: &Value, chars: Option<&str>) -> String {
    let text = match value.as_str() {
        Some(text) => text.to_string(),
        None => value.to_string(),
    };
    match chars {
        Some(chars) => text.trim_matches(|c| chars.contains(c)).to_string(),
        None => text.trim_matches(is_py_space).to_string(),
    }
}

/// `raise_exception(message)`: fails the render with the template's message.
fn raise_exception(message: &Value) -> Result<Value, Error> {
    let message = match message.as_str() {
        Some(text) => text.to_string(),
        None => message.to_string(),
    };
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// `strftime_now(format)`: the local time formatted as Python's `datetime.now().strftime(format)`.
/// Renders of training data should pin the date (`date_string`) instead.
fn strftime_now(format: &str) -> Result<String, Error> {
    let now = jiff::Zoned::now();
    jiff::fmt::strtime::format(format, &now)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("strftime_now: {e}")))
}

/// The message of a `raise_exception` call anywhere in the error's chain.
fn raised_message(error: &Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(raised) = current.downcast_ref::<Raised>() {
            return Some(raised.0.clone());
        }
        source = current.source();
    }
    None
}

/// A minijinja error in one line, with the template line when known.
fn describe(error: &Error) -> String {
    let detail = error.detail().map(str::to_string).unwrap_or_else(|| error.kind().to_string());
    match error.line() {
        Some(line) => format!("{detail} (line {line})"),
        None => detail,
    }
}

/// Replaces transformers' `{% generation %}` / `{% endgeneration %}` (the assistant-mask tracker,
/// which minijinja cannot parse) by `{% if true %}` / `{% endif %}`, keeping the tag's whitespace
/// control so that `trim_blocks`, `lstrip_blocks` and `{%-`/`-%}` act exactly as on the original.
pub fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match generation_tag(tag) {
            Some((len, open_ws, name, close_ws)) => {
                let body = if name == "generation" { "if true" } else { "endif" };
                out.push_str("{%");
                out.push_str(open_ws);
                out.push(' ');
                out.push_str(body);
                out.push(' ');
                out.push_str(close_ws);
                out.push_str("%}");
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// If `tag` starts with `{% generation %}` or `{% endgeneration %}` (with optional `-`/`+`
/// whitespace control), returns its length, its opening control, its name and its closing control.
fn generation_tag(tag: &str) -> Option<(usize, &str, &str, &str)> {
    let after_open = &tag[2..];
    let open_ws = control(after_open);
    let body = after_open[open_ws.len()..].trim_start();
    let name = ["endgeneration", "generation"].into_iter().find(|name| body.starts_with(name))?;
    let after_name = body[name.len()..].trim_start();
    let close_ws = control(after_name);
    let after_close = &after_name[close_ws.len()..];
    if !after_close.starts_with("%}") {
        return None;
    }
    let len = tag.len() - after_close.len() + 2;
    Some((len, open_ws, name, close_ws))
}

/// A leading `-` or `+` whitespace-control marker, or nothing.
fn control(text: &str) -> &str {
    if text.starts_with('-') || text.starts_with('+') {
        &text[..1]
    } else {
        ""
    }
}

/// How `tojson` writes JSON: `json.dumps`' options.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// which is `json.dumps` with those arguments: insertion order, `", "` and `": "` separators (`","`
/// between items when indenting), no HTML escaping.
fn tojson(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    separators: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let ensure_ascii = match ensure_ascii {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("ensure_ascii")?,
    };
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let separators = match separators {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("separators")?,
    };
    let sort_keys = kwargs.get::<Option<Value>>("sort_keys")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_str(), v.as_i64()) {
            (Some(text), _) => Some(text.to_string()),
            (None, Some(n)) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            _ => return Err(bad_argument(format!("tojson: bad indent {v}"))),
        },
    };
    let (item_separator, key_separator) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] => match (item.as_str(), key.as_str()) {
                    (Some(item), Some(key)) => (item.to_string(), key.to_string()),
                    _ => return Err(bad_argument("tojson: separators must be strings".into())),
                },
                _ => return Err(bad_argument("tojson: separators must be a pair".into())),
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent,
        item_separator,
        key_separator,
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn bad_argument(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Writes `value` as Python's `json.dumps` would with `style`.
fn write_json(out: &mut String, value: &Value, style: &JsonStyle, level: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&python_number(value)?),
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', &items, style, level, |out, item, level| {
                write_json(out, item, style, level)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, '{', '}', &entries, style, level, |out, (key, item), level| {
                write_json_string(out, key, style);
                out.push_str(&style.key_separator);
                write_json(out, item, style, level)
            })?;
        }
        kind => return Err(bad_argument(format!("tojson: Object of type {kind} is not JSON serializable"))),
    }
    Ok(())
}

/// Writes `[`...`]` or `{`...`}` with `json.dumps`' separators and indentation.
fn write_container<T>(
    out: &mut String,
    open: char,
    close: char,
    items: &[T],
    style: &JsonStyle,
    level: usize,
    mut write_item: impl FnMut(&mut String, &T, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |level: usize| style.indent.as_ref().map(|indent| format!("\n{}", indent.repeat(level)));
    let inner = newline(level + 1);
    if let Some(line) = &inner {
        out.push_str(line);
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_separator);
            if let Some(line) = &inner {
                out.push_str(line);
            }
        }
        write_item(out, item, level + 1)?;
    }
    if let Some(line) = newline(level) {
        out.push_str(&line);
    }
    out.push(close);
    Ok(())
}

/// A dict key as `json.dumps` writes it: strings as they are, numbers, booleans and None converted.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => python_number(key),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        kind => Err(bad_argument(format!("tojson: keys must be str, int, float, bool or None, not {kind}"))),
    }
}

/// A number as Python's `json.dumps` writes it: integers in full, floats as `repr(float)`.
fn python_number(value: &Value) -> Result<String, Error> {
    if value.is_integer() {
        return Ok(value.to_string());
    }
    let float = f64::try_from(value.clone())?;
    Ok(python_float_repr(float))
}

/// Python's `repr(float)` (as `json.dumps` uses it): the shortest round-tripping digits, positional
/// for exponents from -4 to 15 (`1e-05`, `0.0001`, `1e+16`), `Infinity`/`NaN` for the others.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    // `{:e}` gives the shortest round-tripping digits: "-1.2345e-7".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1;
        if point <= 0 {
            let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
            format!("{sign}0.{zeros}{digits}")
        } else {
            let point = usize::try_from(point).unwrap_or(0);
            if digits.len() <= point {
                let zeros = "0".repeat(point - digits.len());
                format!("{sign}{digits}{zeros}.0")
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs())
    }
}

/// A JSON string as Python writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
/// characters as `\u00XX`, and with `ensure_ascii` every non-ASCII character as `\uXXXX` (UTF-16).
fn write_json_string(out: &mut String, text: &str, style: &JsonStyle) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_source(source: &str, messages: &[Message]) -> Result<String, TemplateError> {
        let config = serde_json::json!({"chat_template": source, "bos_token": {"content": "<s>"}});
        let template = ChatTemplate::from_config(&config.to_string(), None)?;
        template.render(messages, false, &serde_json::Map::new())
    }

    #[test]
    fn chat_template_jinja_takes_precedence_over_the_config() {
        let dir = std::env::temp_dir().join(format!("tunec-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = serde_json::json!({"chat_template": "config", "eos_token": "</s>"});
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).expect("write");
        let render =
            |dir: &Path| ChatTemplate::from_files(dir).and_then(|t| t.render(&[], false, &serde_json::Map::new()));
        assert_eq!(render(&dir), Ok("config".to_string()));
        std::fs::write(dir.join("chat_template.jinja"), "jinja {{ eos_token }}\n").expect("write");
        assert_eq!(render(&dir), Ok("jinja </s>".to_string()));
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(matches!(render(&dir), Err(TemplateError::Io { .. })));
    }

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-2.5e-7, "-2.5e-07"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (f64::INFINITY, "Infinity"),
        ];
        for (value, python) in cases {
            assert_eq!(python_float_repr(value), python, "{value}");
        }
    }

    #[test]
    fn generation_tags_become_no_op_blocks() {
        assert_eq!(
            strip_generation_tags("a{%- generation +%}b{% endgeneration -%}c{% if x %}"),
            "a{%- if true +%}b{% endif -%}c{% if x %}"
        );
        let rendered = render_source(
            "{% for m in messages %}\n{% generation %}\n{{ m.content }}\n{% endgeneration %}\n{% endfor %}",
            &[Message::new("assistant", "hi")],
        );
        assert_eq!(rendered, Ok("hi\n".to_string()));
    }

    #[test]
    fn raise_exception_is_an_error_with_the_message() {
        let rendered = render_source(
            "{% if messages[0].role != 'system' %}{{ raise_exception('System first!') }}{% endif %}",
            &[Message::new("user", "hi")],
        );
        assert_eq!(rendered, Err(TemplateError::Raised("System first!".to_string())));
    }

    #[test]
    fn config_errors_are_data() {
        assert!(matches!(ChatTemplate::from_config("{", None), Err(TemplateError::Config(_))));
        assert!(matches!(ChatTemplate::from_config("{}", None), Err(TemplateError::Config(_))));
        let named = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "x"}]});
        assert!(matches!(
            ChatTemplate::from_config(&named.to_string(), None),
            Err(TemplateError::Config(m)) if m.contains("tool_use")
        ));
        let named = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "x"}, {"name": "default", "template": "{{ bos_token }}"}
        ]});
        let template =
            ChatTemplate::from_config(&named.to_string(), None).map(|t| t.render(&[], false, &serde_json::Map::new()));
        assert_eq!(template, Ok(Ok(String::new())));
        assert!(matches!(ChatTemplate::from_config("{}", Some("{% if %}")), Err(TemplateError::Syntax(_))));
    }

    #[test]
    fn iterable_and_sequence_tests_follow_jinja2() {
        // jinja2 3.1: False True True True True True True False False True
        let rendered = render_source(
            "{{ none is iterable }} {{ 'ab' is iterable }} {{ x is iterable }} {{ {} is iterable }} \
             {{ 'ab' is sequence }} {{ {} is sequence }} {{ x is sequence }} {{ none is sequence }} \
             {{ 3 is sequence }} {{ [1] is sequence }}",
            &[],
        );
        assert_eq!(rendered, Ok("False True True True True True True False False True".to_string()));
    }

    #[test]
    fn python_printing_and_whitespace() {
        let rendered = render_source(
            "{{ none }} {{ true }} [{{ messages[0].content | trim }}] [{{ messages[0].content.strip() }}]",
            &[Message::new("user", "\u{1f} x \u{a0}")],
        );
        assert_eq!(rendered, Ok("None True [x] [x]".to_string()));
    }

    #[test]
    fn tojson_spacing() {
        let rendered = render_source(
            "{{ messages[0] | tojson }}|{{ {'a': [1, 2.5], 'b': {}} | tojson(indent=2) }}|{{ 'é<&>' | tojson }}",
            &[Message::new("user", "say \"hi\"\n")],
        );
        assert_eq!(
            rendered,
            Ok("{\"role\": \"user\", \"content\": \"say \\\"hi\\\"\\n\"}|{\n  \"a\": [\n    1,\n    2.5\n  ],\n  \"b\": {}\n}|\"é<&>\"".to_string())
        );
    }
}
