//! Completion: field names, enumeration values and variants, instance types, catalog model ids,
//! node names and functions, from the text before the cursor.
//!
//! While a user types, the document usually does not parse (`epo` is not yet a field), so
//! completion reads the text rather than the tree. A forward scan to the cursor, which skips
//! strings and comments, finds the open brackets around it; the words before each `{` or `(` say
//! what it belongs to (`train t = sft(...) {`, `target sagemaker {`, `method = qlora {`,
//! `hf_model(`). The words since the last `{`, `(`, `,` or line start say whether the cursor is on
//! a key or on the value of a key. The schema (`check/schema.rs`) and the catalog then give the
//! candidates, less the keys already written in the block (and in a node's call). This reads
//! the common layouts right; an unusual one (a node header broken over
//! several lines with comments inside) gets fewer candidates, never wrong syntax.

use lsp_types::{CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind};
use tunec_compiler::catalog::Catalog;
use tunec_compiler::check::schema::{self, FieldSpec, Ty};
use tunec_compiler::syntax::ast::NodeKind;
use tunec_compiler::syntax::opaque::opaque_at;

/// An open bracket before the cursor.
#[derive(Clone, Copy)]
struct Open {
    ch: u8,
    at: usize,
}

/// The open brackets around `offset`, innermost last, and whether `offset` is inside a string.
fn scan(text: &str, offset: usize) -> (Vec<Open>, Option<usize>) {
    let bytes = &text.as_bytes()[..offset.min(text.len())];
    let mut stack = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(opaque) = opaque_at(bytes, i) {
            if opaque.string && !opaque.closed {
                return (stack, Some(i));
            }
            i = opaque.end;
            continue;
        }
        match bytes[i] {
            ch @ (b'{' | b'(' | b'[') => stack.push(Open { ch, at: i }),
            b'}' | b')' | b']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    (stack, None)
}

/// The words and punctuation of `text`, without strings' contents.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'$' || b == b'-' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'$' | b'-'))
            {
                i += 1;
            }
            out.push(&text[start..i]);
        } else if b == b'"' {
            out.push("\"");
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            i += 1;
        } else if !b.is_ascii() {
            // Only in comments and strings; skip the whole character.
            i += text[i..].chars().next().map_or(1, char::len_utf8);
        } else {
            if !b.is_ascii_whitespace() {
                out.push(&text[i..i + 1]);
            }
            i += 1;
        }
    }
    out
}

/// What a `{` or `(` opened.
#[derive(Clone, Debug, PartialEq)]
enum Scope {
    Pipeline,
    Node {
        kind: Option<NodeKind>,
        func: String,
    },
    Target(String),
    Defaults(Vec<String>),
    /// The block of variant `variant` in field `key` of the outer scope.
    Variant {
        key: String,
        variant: String,
    },
    /// The record value of field `key`.
    Record(String),
    /// The arguments of a call to `func`.
    Call(String),
    Other,
}

/// The words before an opening bracket, back to the previous line start or bracket.
fn header(text: &str, open: Open) -> Scope {
    let before = &text[..open.at];
    // A node header ends with a call: `kind name = func(...) {`; skip back over the parentheses.
    let trimmed = before.trim_end();
    if open.ch == b'{' && trimmed.ends_with(')') {
        let close = trimmed.len() - 1;
        let (inner, _) = scan(text, close);
        if let Some(paren) = inner.last().filter(|o| o.ch == b'(') {
            if let Scope::Call(func) = header(text, *paren) {
                let words = tokens(line_of(&text[..paren.at]));
                let kind = words.iter().find_map(|w| NodeKind::from_keyword(w));
                return Scope::Node { kind, func };
            }
        }
        return Scope::Other;
    }
    let words = tokens(line_of(before));
    let last = words.last().copied().unwrap_or("");
    if open.ch == b'(' {
        return Scope::Call(last.to_owned());
    }
    if open.ch != b'{' {
        return Scope::Other;
    }
    match words.as_slice() {
        [.., "pipeline", _] => Scope::Pipeline,
        [.., "target", kind] => Scope::Target((*kind).to_owned()),
        [.., "defaults", path] => Scope::Defaults(path.split('.').map(str::to_owned).collect()),
        [.., key, "=" | ":", variant] if is_word(variant) => {
            Scope::Variant { key: (*key).to_owned(), variant: (*variant).to_owned() }
        }
        [.., key, "=" | ":"] => Scope::Record((*key).to_owned()),
        _ => Scope::Other,
    }
}

fn is_word(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

/// The text from the start of the line `text` ends on.
fn line_of(text: &str) -> &str {
    &text[text.rfind('\n').map_or(0, |i| i + 1)..]
}

/// The fields a scope takes, given the scopes around it (outermost first).
fn fields(scopes: &[Scope]) -> Vec<&'static FieldSpec> {
    let Some((scope, outer)) = scopes.split_last() else { return Vec::new() };
    match scope {
        Scope::Pipeline => schema::PIPELINE_FIELDS.iter().collect(),
        Scope::Node { kind, func } => match schema::FUNCTIONS.iter().find(|f| f.name == func) {
            Some(f) => f.fields.iter().collect(),
            None => kind.map(schema::kind_fields).unwrap_or_default(),
        },
        Scope::Call(func) => {
            schema::FUNCTIONS.iter().find(|f| f.name == func).map_or_else(Vec::new, |f| f.fields.iter().collect())
        }
        Scope::Target(kind) => {
            schema::TARGETS.iter().find(|t| t.name == kind).map_or_else(Vec::new, |t| t.fields.iter().collect())
        }
        Scope::Defaults(path) => {
            let Some(kind) = path.first().and_then(|k| NodeKind::from_keyword(k)) else { return Vec::new() };
            let all = schema::kind_fields(kind);
            match path.as_slice() {
                [_] => all,
                [_, field, variant] => all
                    .into_iter()
                    .find(|f| f.name == field)
                    .and_then(|f| variant_fields(f, variant))
                    .map_or_else(Vec::new, |v| v.iter().collect()),
                _ => Vec::new(),
            }
        }
        Scope::Variant { key, variant } => fields(outer)
            .into_iter()
            .find(|f| f.name == key)
            .and_then(|f| variant_fields(f, variant))
            .map_or_else(Vec::new, |v| v.iter().collect()),
        Scope::Record(_) | Scope::Other => Vec::new(),
    }
}

fn variant_fields(spec: &FieldSpec, variant: &str) -> Option<&'static [FieldSpec]> {
    match spec.ty {
        Ty::Variant(variants) => variants.iter().find(|v| v.name == variant).map(|v| v.fields),
        _ => None,
    }
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>, doc: Option<&str>) -> CompletionItem {
    CompletionItem {
        label: label.to_owned(),
        kind: Some(kind),
        detail,
        documentation: doc
            .map(|d| Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value: d.to_owned() })),
        ..CompletionItem::default()
    }
}

/// The node names declared in the text (`kind name =` at the start of a line or after `{`).
fn node_names(text: &str) -> Vec<String> {
    let words = tokens(text);
    let mut out: Vec<String> = words
        .windows(3)
        .filter(|w| NodeKind::from_keyword(w[0]).is_some() && is_word(w[1]) && w[2] == "=")
        .map(|w| w[1].to_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The completions at `offset`.
pub(super) fn complete(text: &str, offset: usize) -> Vec<CompletionItem> {
    let offset = (0..=offset.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    let (opens, in_string) = scan(text, offset);
    let scopes: Vec<Scope> = opens.iter().map(|o| header(text, *o)).collect();
    // The words of the current field: since the innermost bracket, the last comma, or the line start.
    let segment_start = [opens.last().map_or(0, |o| o.at + 1), text[..offset].rfind(',').map_or(0, |i| i + 1)]
        .into_iter()
        .max()
        .unwrap_or(0)
        .max(text[..offset].rfind('\n').map_or(0, |i| i + 1));
    let segment = &text[segment_start.min(offset)..offset];
    let mut words = tokens(segment);
    // Drop the word being typed; what remains says where it goes.
    let typing_word = segment.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if typing_word && in_string.is_none() {
        words.pop();
    }
    if in_string.is_some() {
        words.pop(); // the opening quote
    }
    let catalog = Catalog::builtin();
    match words.as_slice() {
        // `kind name = |`: a function of that kind.
        [.., kind, _, "="]
            if NodeKind::from_keyword(kind).is_some() && matches!(scopes.last(), Some(Scope::Pipeline)) =>
        {
            let kind = NodeKind::from_keyword(kind).unwrap_or(NodeKind::Model);
            schema::functions_for(kind)
                .map(|f| item(f.name, CompletionItemKind::FUNCTION, Some(format!("{kind} function")), Some(f.doc)))
                .collect()
        }
        // `key = |` or `key: |`: the values of that key.
        [.., key, "=" | ":"] => {
            let all = fields(&scopes);
            let spec = all.into_iter().find(|f| f.name == *key);
            values(spec, in_string.is_some(), text, catalog, &scopes)
        }
        // A positional argument of a call.
        [] if matches!(scopes.last(), Some(Scope::Call(_))) => {
            let Some(Scope::Call(func)) = scopes.last() else { return Vec::new() };
            let Some(spec) = schema::FUNCTIONS.iter().find(|f| f.name == func) else { return Vec::new() };
            let commas = text[opens.last().map_or(0, |o| o.at)..offset].matches(',').count();
            let Some(key) = spec.positional.get(commas) else { return keys(&scopes) };
            let field = schema::field(spec.fields, key);
            values(field, in_string.is_some(), text, catalog, &scopes)
        }
        // A key, other than those already written in the block.
        _ if in_string.is_none() => {
            let written = opens.last().map(|o| keys_written(text, *o, offset)).unwrap_or_default();
            keys(&scopes).into_iter().filter(|i| !written.contains(&i.label)).collect()
        }
        _ => Vec::new(),
    }
}

/// The keys written at the top level of the block or call that `open` opened, and for a node's
/// body those of its call's named arguments too (`sft(llama, data = parts.train) {`), except a key
/// under the cursor: completion does not offer a field that is set (twice would be an error).
fn keys_written(text: &str, open: Open, cursor: usize) -> std::collections::BTreeSet<String> {
    let mut written = top_level_keys(text, open.at + 1, cursor);
    let before = text[..open.at].trim_end();
    if open.ch == b'{' && before.ends_with(')') {
        let (inner, _) = scan(text, before.len() - 1);
        if let Some(paren) = inner.last().filter(|o| o.ch == b'(') {
            written.extend(top_level_keys(text, paren.at + 1, cursor));
        }
    }
    written
}

/// The `key =` and `key:` at depth 0 from `from` to the bracket that closes the block, skipping
/// strings and comments, without the key that `cursor` is in.
fn top_level_keys(text: &str, from: usize, cursor: usize) -> std::collections::BTreeSet<String> {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut keys = std::collections::BTreeSet::new();
    let mut depth = 0usize;
    let mut i = from;
    while i < bytes.len() {
        if let Some(opaque) = opaque_at(bytes, i) {
            i = opaque.end.max(i + 1);
            continue;
        }
        match bytes[i] {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' if depth == 0 => break,
            b'}' | b')' | b']' => depth -= 1,
            b if depth == 0 && (b.is_ascii_alphabetic() || b == b'_') && (i == 0 || !ident(bytes[i - 1])) => {
                let start = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                let mut j = i;
                while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                    j += 1;
                }
                let key =
                    bytes.get(j) == Some(&b':') || (bytes.get(j) == Some(&b'=') && bytes.get(j + 1) != Some(&b'='));
                if key && !(start..=i).contains(&cursor) {
                    keys.insert(text[start..i].to_owned());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    keys
}

/// Field names, and in a pipeline the item keywords.
fn keys(scopes: &[Scope]) -> Vec<CompletionItem> {
    let mut out: Vec<CompletionItem> = fields(scopes)
        .into_iter()
        .map(|f| {
            let required = if f.required { ", required" } else { "" };
            item(f.name, CompletionItemKind::FIELD, Some(format!("{}{required}", f.ty.describe())), Some(f.doc))
        })
        .collect();
    if matches!(scopes.last(), Some(Scope::Pipeline)) {
        for kind in NodeKind::ALL {
            out.push(item(kind.as_str(), CompletionItemKind::KEYWORD, Some("node".into()), None));
        }
        for word in ["target", "param", "defaults"] {
            out.push(item(word, CompletionItemKind::KEYWORD, None, None));
        }
    }
    out
}

fn values(
    spec: Option<&'static FieldSpec>,
    in_string: bool,
    text: &str,
    catalog: &Catalog,
    scopes: &[Scope],
) -> Vec<CompletionItem> {
    let quote = |s: &str| if in_string { s.to_owned() } else { format!("\"{s}\"") };
    if matches!(scopes.last(), Some(Scope::Record(k)) if k == "columns") && !in_string {
        return schema::COLUMN_TYPES.iter().map(|t| item(t, CompletionItemKind::TYPE_PARAMETER, None, None)).collect();
    }
    let Some(spec) = spec else { return Vec::new() };
    match spec.ty {
        Ty::Enum(values) | Ty::List(&Ty::Enum(values)) if !in_string => {
            values.iter().map(|v| item(v, CompletionItemKind::ENUM_MEMBER, None, Some(spec.doc))).collect()
        }
        Ty::Variant(variants) if !in_string => {
            variants.iter().map(|v| item(v.name, CompletionItemKind::STRUCT, None, Some(v.doc))).collect()
        }
        Ty::Bool if !in_string => {
            ["true", "false"].iter().map(|v| item(v, CompletionItemKind::VALUE, None, None)).collect()
        }
        Ty::Targets if !in_string => vec![item("all_linear", CompletionItemKind::ENUM_MEMBER, None, Some(spec.doc))],
        Ty::Instance => catalog
            .instances
            .iter()
            .map(|i| {
                let detail = format!(
                    "{} x {} ({} MiB), ${:.2}/h in {}",
                    i.gpu_count, i.gpu, i.gpu_memory_mib, i.price_usd_per_hour, i.price_region
                );
                let mut it = item(&i.name, CompletionItemKind::VALUE, Some(detail), None);
                it.insert_text = Some(quote(&i.name));
                it
            })
            .collect(),
        Ty::Str if spec.name == "id" && matches!(scopes.last(), Some(Scope::Call(f)) if f == "hf_model") => catalog
            .models
            .iter()
            .map(|m| {
                let mut it = item(
                    &m.id,
                    CompletionItemKind::VALUE,
                    Some(format!("{} ({} parameters)", m.family, m.params)),
                    None,
                );
                it.insert_text = Some(quote(&m.id));
                it
            })
            .collect(),
        Ty::Ref(_) if !in_string => {
            node_names(text).iter().map(|n| item(n, CompletionItemKind::REFERENCE, None, None)).collect()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labels offered where `|` stands.
    fn labels(text: &str) -> Vec<String> {
        let offset = text.find('|').expect("a cursor");
        let text = text.replacen('|', "", 1);
        complete(&text, offset).into_iter().map(|i| i.label).collect()
    }

    #[test]
    fn field_names_in_a_node_body() {
        let got = labels("pipeline p {\n  train t = sft(m, data = c) {\n    epochs = 2  lea|\n  }\n}");
        assert!(got.contains(&"learning_rate".to_owned()), "{got:?}");
        assert!(got.contains(&"method".to_owned()), "{got:?}");
    }

    #[test]
    fn fields_already_written_are_not_offered_again() {
        let got = labels(
            "pipeline p {\n  train t = sft(m, data = c) {\n    epochs = 2\n    method = lora { r = 8 }\n    |\n    \
             learning_rate = 1e-4 // grad_accum = 2\n    note = \"per_device_batch = 4\"\n  }\n}",
        );
        for set in ["epochs", "method", "learning_rate", "data"] {
            assert!(!got.contains(&set.to_owned()), "{set} is set: {got:?}");
        }
        for free in ["grad_accum", "per_device_batch", "max_steps", "eval"] {
            assert!(got.contains(&free.to_owned()), "{free} is not set (a comment, a string): {got:?}");
        }
        // Inside a variant's block, only its own fields count; a key being edited is offered.
        let got = labels("pipeline p { train t = sft(m) {\n method = qlora { r = 8, | }\n } }");
        assert!(got.contains(&"alpha".to_owned()) && !got.contains(&"r".to_owned()), "{got:?}");
        let got = labels("pipeline p { train t = sft(m) {\n epo|chs = 2\n } }");
        assert!(got.contains(&"epochs".to_owned()), "{got:?}");
    }

    #[test]
    fn variant_fields_enum_values_and_variants() {
        let got = labels("pipeline p { train t = sft(m) {\n method = qlora { r = 8, | }\n } }");
        assert!(got.contains(&"alpha".to_owned()) && !got.contains(&"epochs".to_owned()), "{got:?}");
        assert_eq!(labels("pipeline p { train t = sft(m) {\n precision = |\n } }"), ["bf16", "fp16", "fp32"]);
        assert_eq!(labels("pipeline p { train t = sft(m) {\n method = q|\n } }"), ["lora", "qlora", "full"]);
    }

    #[test]
    fn instances_models_and_node_names() {
        let got = labels("pipeline p { train t = sft(m) {\n compute = \"ml.p4|\n } }");
        assert!(got.contains(&"ml.p4d.24xlarge".to_owned()), "{got:?}");
        let got = labels("pipeline p { model m = hf_model(\"meta|\") }");
        assert!(got.contains(&"meta-llama/Llama-3.1-8B-Instruct".to_owned()), "{got:?}");
        let got = labels("pipeline p {\n model llama = hf_model(\"x\")\n chat c = chat_template(d, tokenizer = |) }");
        assert_eq!(got, ["c", "llama"]);
    }

    #[test]
    fn functions_and_pipeline_keywords() {
        assert_eq!(labels("pipeline p {\n  model m = |\n}"), ["hf_model", "local_model"]);
        let got = labels("pipeline p {\n  |\n}");
        assert!(got.contains(&"train".to_owned()) && got.contains(&"budget".to_owned()), "{got:?}");
    }

    #[test]
    fn any_offset_of_any_text_is_safe() {
        let text = "// é😀 {\npipeline p { /* ü ( */ train t = sft(m, data = \"é{\") {\n method = qlora { r = 8, é\n compute = \"ml.\u{1F600}";
        for offset in 0..=text.len() + 3 {
            let _ = complete(text, offset);
        }
    }

    #[test]
    fn column_types() {
        assert_eq!(
            labels("pipeline p { dataset d = file(\"x\") {\n columns = { q: | }\n } }"),
            ["string", "int", "float", "bool"]
        );
    }

    #[test]
    fn braces_inside_strings_do_not_count() {
        let got = labels("pipeline p { chat c = chat_template(d) {\n user = \"{q}\"\n sys| } }");
        assert!(got.contains(&"system".to_owned()), "{got:?}");
    }
}
