//! What the language server knows about one version of a document: the check's result and the
//! syntax tree, and the answers built from them (diagnostics, hover, definition, references,
//! document symbols).
//!
//! An `Analysis` is computed from scratch for a text: the compiler's `check` with the same
//! file-system `World` as `tunec check` (local models and data profiles relative to the document's
//! folder), plus a second parse for the tree (parsing medreason takes microseconds). The whole
//! check of a medreason-sized file takes about a millisecond (runtime/benches/lsp.rs), so nothing
//! finer-grained is cached: the incremental part is the text sync and the debounce in `mod.rs`.
//! A text that does not parse has diagnostics but no tree, so the tree-based answers are empty.

use super::document::Document;
use lsp_types::{
    CodeDescription, DiagnosticRelatedInformation, DiagnosticSeverity, DocumentSymbol, Hover, HoverContents, Location,
    MarkupContent, MarkupKind, NumberOrString, Range, SymbolKind, Url,
};
use std::path::Path;
use tunec_compiler::check::schema::{self, FieldSpec, Ty};
use tunec_compiler::check::{show, Origin};
use tunec_compiler::diagnostics::{Diagnostic, FileId, Severity};
use tunec_compiler::render;
use tunec_compiler::syntax::ast::{Call, Field, File, Ident, Item, Node, NodeKind, Span, Value, ValueKind};
use tunec_compiler::syntax::parse_file;
use tunec_compiler::target::Target;
use tunec_compiler::{Checked, NoFiles, World};

use crate::world::FsWorld;

/// The check and the tree of one text.
pub struct Analysis {
    pub checked: Checked,
    pub file: Option<File>,
}

/// Checks `text`; `path` is the document's file, for the `World` (none for unsaved documents).
pub fn analyze(name: &str, text: &str, path: Option<&Path>) -> Analysis {
    let world: Box<dyn World> = match path {
        Some(path) => Box::new(FsWorld::for_pipeline(path)),
        None => Box::new(NoFiles),
    };
    let checked = tunec_compiler::check(name, text, &[], world.as_ref());
    let file = parse_file(text, FileId(0)).ok();
    Analysis { checked, file }
}

// -------------------------------------------------------------------------------------------------
// Diagnostics

/// The diagnostics in LSP form. Labels in other sources (the prelude, `--set` values) cannot be
/// shown in this document: such a diagnostic is put at the start of the file, naming its source.
pub(super) fn diagnostics(
    analysis: &Analysis,
    doc: &Document,
    uri: &Url,
    docs_url: &str,
) -> Vec<lsp_types::Diagnostic> {
    let main = analysis.checked.main;
    analysis
        .checked
        .diagnostics
        .iter()
        .map(|d| {
            let in_main = d.file == main;
            let range = if in_main { doc.range(d.primary.span) } else { Range::default() };
            let mut message = d.message.clone();
            if !in_main {
                message = format!("{message} (in {})", analysis.checked.sources.name(d.file));
            }
            if let Some(help) = &d.help {
                message.push_str("\nhelp: ");
                message.push_str(help);
            }
            let related: Vec<DiagnosticRelatedInformation> = std::iter::once(&d.primary)
                .filter(|_| in_main)
                .chain(d.secondary.iter().filter(|_| in_main))
                .map(|label| DiagnosticRelatedInformation {
                    location: Location { uri: uri.clone(), range: doc.range(label.span) },
                    message: label.message.clone(),
                })
                .collect();
            lsp_types::Diagnostic {
                range,
                severity: Some(match d.severity {
                    Severity::Error => DiagnosticSeverity::ERROR,
                    Severity::Warning => DiagnosticSeverity::WARNING,
                }),
                code: Some(NumberOrString::String(d.code.full())),
                code_description: docs_href(docs_url, d).map(|href| CodeDescription { href }),
                source: Some("tunec".to_owned()),
                message,
                related_information: (!related.is_empty()).then_some(related),
                tags: None,
                data: None,
            }
        })
        .collect()
}

fn docs_href(docs_url: &str, d: &Diagnostic) -> Option<Url> {
    Url::parse(&format!("{docs_url}{}.md", d.code.name())).ok()
}

// -------------------------------------------------------------------------------------------------
// Names: definition, references, symbols

/// A declared node or parameter.
struct Decl<'a> {
    name: &'a Ident,
    node: Option<&'a Node>,
}

fn decls(file: &File) -> Vec<Decl<'_>> {
    file.pipelines
        .iter()
        .flat_map(|p| &p.items)
        .filter_map(|item| match item {
            Item::Node(n) => Some(Decl { name: &n.name, node: Some(n) }),
            Item::Param(p) => Some(Decl { name: &p.name, node: None }),
            _ => None,
        })
        .collect()
}

/// Every path's first segment: the identifiers that may refer to a node or a parameter.
fn path_heads(file: &File) -> Vec<&Ident> {
    fn value<'a>(v: &'a Value, out: &mut Vec<&'a Ident>) {
        match &v.kind {
            ValueKind::Path(segments) => out.extend(segments.first()),
            ValueKind::List(items) => items.iter().for_each(|i| value(i, out)),
            ValueKind::Record(fields) | ValueKind::Variant { fields, .. } => {
                fields.iter().for_each(|f| value(&f.value, out));
            }
            ValueKind::Call(c) => c.args.iter().for_each(|a| value(&a.value, out)),
            ValueKind::Times { value: inner, .. } => value(inner, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for p in &file.pipelines {
        for item in &p.items {
            match item {
                Item::Node(n) => {
                    n.call.args.iter().for_each(|a| value(&a.value, &mut out));
                    n.body.iter().for_each(|f| value(&f.value, &mut out));
                }
                Item::Param(param) => value(&param.value, &mut out),
                Item::Setting(f) => value(&f.value, &mut out),
                Item::Target(t) => t.fields.iter().for_each(|f| value(&f.value, &mut out)),
                Item::Defaults(d) => d.fields.iter().for_each(|f| value(&f.value, &mut out)),
            }
        }
    }
    out
}

fn contains(span: Span, offset: usize) -> bool {
    span.start as usize <= offset && offset <= span.end as usize
}

/// The name under the cursor, when it is a declared node or parameter (its declaration or a use).
fn name_at(file: &File, offset: usize) -> Option<&str> {
    let declared = decls(file);
    let hit = declared.iter().map(|d| d.name).chain(path_heads(file)).find(|ident| contains(ident.span, offset))?;
    declared.iter().any(|d| d.name.name == hit.name).then_some(hit.name.as_str())
}

/// The span of the declaration of the name under the cursor.
pub(super) fn definition(analysis: &Analysis, offset: usize) -> Option<Span> {
    let file = analysis.file.as_ref()?;
    let name = name_at(file, offset)?;
    decls(file).into_iter().find(|d| d.name.name == name).map(|d| d.name.span)
}

/// The spans of every use of the name under the cursor (and of its declaration, when asked).
pub(super) fn references(analysis: &Analysis, offset: usize, include_declaration: bool) -> Vec<Span> {
    let Some(file) = analysis.file.as_ref() else { return Vec::new() };
    let Some(name) = name_at(file, offset) else { return Vec::new() };
    let mut out: Vec<Span> = Vec::new();
    if include_declaration {
        out.extend(decls(file).iter().filter(|d| d.name.name == name).map(|d| d.name.span));
    }
    out.extend(path_heads(file).into_iter().filter(|i| i.name == name).map(|i| i.span));
    out.sort();
    out
}

/// The pipeline and its nodes, parameters and target.
pub(super) fn symbols(analysis: &Analysis, doc: &Document) -> Vec<DocumentSymbol> {
    let Some(file) = analysis.file.as_ref() else { return Vec::new() };
    let program = analysis.checked.program.as_ref();
    file.pipelines
        .iter()
        .map(|p| {
            let children: Vec<DocumentSymbol> = p
                .items
                .iter()
                .filter_map(|item| {
                    let (name, detail, kind, span, name_span) = match item {
                        Item::Node(n) => {
                            let ty = program.and_then(|p| p.node(&n.name.name)).map(|t| t.ty.to_string());
                            let detail = match ty {
                                Some(ty) => format!("{} {}", n.kind, ty),
                                None => n.kind.to_string(),
                            };
                            (n.name.name.clone(), detail, SymbolKind::FUNCTION, n.span, n.name.span)
                        }
                        Item::Param(param) => {
                            (param.name.name.clone(), "param".into(), SymbolKind::VARIABLE, param.span, param.name.span)
                        }
                        Item::Target(t) => (
                            format!("target {}", t.kind.name),
                            "target".into(),
                            SymbolKind::OBJECT,
                            t.span,
                            t.kind.span,
                        ),
                        _ => return None,
                    };
                    Some(symbol(doc, name, Some(detail), kind, span, name_span, None))
                })
                .collect();
            symbol(
                doc,
                p.name.name.clone(),
                Some("pipeline".into()),
                SymbolKind::MODULE,
                p.span,
                p.name.span,
                Some(children),
            )
        })
        .collect()
}

#[allow(deprecated)] // `deprecated` is a required field of the type, deprecated in the protocol
fn symbol(
    doc: &Document,
    name: String,
    detail: Option<String>,
    kind: SymbolKind,
    span: Span,
    name_span: Span,
    children: Option<Vec<DocumentSymbol>>,
) -> DocumentSymbol {
    DocumentSymbol {
        name: if name.is_empty() { "?".into() } else { name },
        detail,
        kind,
        tags: None,
        deprecated: None,
        range: doc.range(span),
        selection_range: doc.range(name_span),
        children,
    }
}

// -------------------------------------------------------------------------------------------------
// Hover

/// Where a field sits, to find its schema entry.
#[derive(Clone)]
enum Ctx {
    /// A node's field; `func` picks the function's table, else every field of the kind.
    Node {
        kind: NodeKind,
        func: String,
        node: String,
    },
    Target(String),
    Pipeline,
    /// The fields of a variant (`qlora { r = 32 }`), under the node field `path`.
    Variant {
        specs: &'static [FieldSpec],
        node: Option<String>,
        path: String,
    },
    Defaults(Vec<String>),
    Other,
}

impl Ctx {
    fn field(&self, key: &str) -> Option<&'static FieldSpec> {
        match self {
            Ctx::Node { kind, func, .. } => match schema::function(*kind, func) {
                Some(f) => schema::field(f.fields, key),
                None => schema::kind_fields(*kind).into_iter().find(|f| f.name == key),
            },
            Ctx::Target(kind) => {
                schema::TARGETS.iter().find(|t| t.name == kind).and_then(|t| schema::field(t.fields, key))
            }
            Ctx::Pipeline => schema::field(schema::PIPELINE_FIELDS, key),
            Ctx::Variant { specs, .. } => schema::field(specs, key),
            Ctx::Defaults(path) => {
                let kind = NodeKind::from_keyword(path.first()?)?;
                let fields = schema::kind_fields(kind);
                match path.as_slice() {
                    [_] => fields.into_iter().find(|f| f.name == key),
                    [_, field, variant] => {
                        let spec = fields.into_iter().find(|f| f.name == field)?;
                        variant_specs(spec, variant).and_then(|specs| schema::field(specs, key))
                    }
                    _ => None,
                }
            }
            Ctx::Other => None,
        }
    }

    /// The context inside the variant `variant` of field `key`.
    fn enter(&self, key: &str, variant: &str) -> Ctx {
        let Some(specs) = self.field(key).and_then(|spec| variant_specs(spec, variant)) else { return Ctx::Other };
        let (node, path) = match self {
            Ctx::Node { node, .. } => (Some(node.clone()), key.to_owned()),
            Ctx::Variant { node, path, .. } => (node.clone(), format!("{path}.{key}")),
            _ => (None, key.to_owned()),
        };
        Ctx::Variant { specs, node, path }
    }

    /// The node and the dotted field path a key of this context has in the checked program.
    fn program_path(&self, key: &str) -> Option<(String, String)> {
        match self {
            Ctx::Node { node, .. } => Some((node.clone(), key.to_owned())),
            Ctx::Variant { node: Some(node), path, .. } => Some((node.clone(), format!("{path}.{key}"))),
            _ => None,
        }
    }
}

fn variant_specs(spec: &FieldSpec, variant: &str) -> Option<&'static [FieldSpec]> {
    match spec.ty {
        Ty::Variant(variants) => variants.iter().find(|v| v.name == variant).map(|v| v.fields),
        _ => None,
    }
}

/// What the cursor is on.
enum Hit<'a> {
    Node(&'a Node),
    Func(NodeKind, &'a Ident),
    Target(&'a Ident),
    Key { ctx: Ctx, key: &'a Ident },
    Value { ctx: Ctx, key: String, value: &'a Value, word: Option<&'a Ident> },
}

fn locate(file: &File, offset: usize) -> Option<Hit<'_>> {
    for d in &file.defaults {
        if contains(d.span, offset) {
            let ctx = Ctx::Defaults(d.path.iter().map(|s| s.name.clone()).collect());
            return locate_fields(&ctx, &d.fields, offset);
        }
    }
    let pipeline = file.pipelines.iter().find(|p| contains(p.span, offset))?;
    for item in &pipeline.items {
        match item {
            Item::Node(n) if contains(n.span, offset) => {
                if contains(n.name.span, offset) {
                    return Some(Hit::Node(n));
                }
                if contains(n.call.func.span, offset) {
                    return Some(Hit::Func(n.kind, &n.call.func));
                }
                let ctx = Ctx::Node { kind: n.kind, func: n.call.func.name.clone(), node: n.name.name.clone() };
                if let Some(hit) = locate_call(&ctx, &n.call, offset) {
                    return Some(hit);
                }
                return locate_fields(&ctx, &n.body, offset);
            }
            Item::Target(t) if contains(t.span, offset) => {
                if contains(t.kind.span, offset) {
                    return Some(Hit::Target(&t.kind));
                }
                return locate_fields(&Ctx::Target(t.kind.name.clone()), &t.fields, offset);
            }
            Item::Setting(f) if contains(f.span, offset) => {
                return locate_fields(&Ctx::Pipeline, std::slice::from_ref(f), offset)
            }
            Item::Defaults(d) if contains(d.span, offset) => {
                let ctx = Ctx::Defaults(d.path.iter().map(|s| s.name.clone()).collect());
                return locate_fields(&ctx, &d.fields, offset);
            }
            Item::Param(p) if contains(p.span, offset) => {
                return locate_value(&Ctx::Other, &p.name.name, &p.value, offset);
            }
            _ => {}
        }
    }
    None
}

fn locate_call<'a>(ctx: &Ctx, call: &'a Call, offset: usize) -> Option<Hit<'a>> {
    let positional = match ctx {
        Ctx::Node { kind, func, .. } => schema::function(*kind, func).map_or(&[][..], |f| f.positional),
        _ => &[],
    };
    let mut position = 0;
    for arg in &call.args {
        let key = match &arg.name {
            Some(name) => {
                if contains(name.span, offset) {
                    return Some(Hit::Key { ctx: ctx.clone(), key: name });
                }
                name.name.clone()
            }
            None => {
                position += 1;
                positional.get(position - 1).map_or_else(String::new, |k| (*k).to_owned())
            }
        };
        if contains(arg.value.span, offset) {
            return locate_value(ctx, &key, &arg.value, offset);
        }
    }
    None
}

fn locate_fields<'a>(ctx: &Ctx, fields: &'a [Field], offset: usize) -> Option<Hit<'a>> {
    let field = fields.iter().find(|f| contains(f.span, offset))?;
    if contains(field.key.span, offset) {
        return Some(Hit::Key { ctx: ctx.clone(), key: &field.key });
    }
    locate_value(ctx, &field.key.name, &field.value, offset)
}

fn locate_value<'a>(ctx: &Ctx, key: &str, value: &'a Value, offset: usize) -> Option<Hit<'a>> {
    let hit = |word| Some(Hit::Value { ctx: ctx.clone(), key: key.to_owned(), value, word });
    match &value.kind {
        ValueKind::Variant { name, fields } => {
            if contains(name.span, offset) {
                return hit(Some(name));
            }
            locate_fields(&ctx.enter(key, &name.name), fields, offset).or_else(|| hit(None))
        }
        ValueKind::Record(fields) => locate_fields(&Ctx::Other, fields, offset).or_else(|| hit(None)),
        ValueKind::List(items) => match items.iter().find(|i| contains(i.span, offset)) {
            Some(item) => locate_value(ctx, key, item, offset),
            None => hit(None),
        },
        ValueKind::Times { value: inner, .. } if contains(inner.span, offset) => locate_value(ctx, key, inner, offset),
        ValueKind::Path(segments) => hit(segments.iter().find(|s| contains(s.span, offset))),
        _ => hit(None),
    }
}

/// Markdown for what is under the cursor, and the span it describes.
pub(super) fn hover(analysis: &Analysis, offset: usize) -> Option<(String, Span)> {
    let file = analysis.file.as_ref()?;
    // A use of a node or parameter name describes what it names.
    if let Some(name) = name_at(file, offset) {
        let span = path_heads(file)
            .into_iter()
            .chain(decls(file).into_iter().map(|d| d.name))
            .find(|i| contains(i.span, offset))?
            .span;
        return Some((describe_name(analysis, file, name)?, span));
    }
    match locate(file, offset)? {
        Hit::Node(n) => Some((describe_name(analysis, file, &n.name.name)?, n.name.span)),
        Hit::Func(kind, func) => {
            let spec = schema::function(kind, &func.name)?;
            let args: Vec<&str> = spec.positional.to_vec();
            Some((format!("```tune\n{kind} _ = {}({}, ...)\n```\n{}", spec.name, args.join(", "), spec.doc), func.span))
        }
        Hit::Target(kind) => {
            let spec = schema::TARGETS.iter().find(|t| t.name == kind.name)?;
            Some((format!("```tune\ntarget {}\n```\n{}", spec.name, spec.doc), kind.span))
        }
        Hit::Key { ctx, key } => Some((describe_field(analysis, &ctx, &key.name)?, key.span)),
        Hit::Value { ctx, key, value, word } => {
            let spec = ctx.field(&key);
            if let (Some(word), Some(spec)) = (word, spec) {
                if let Ty::Variant(variants) = spec.ty {
                    if let Some(v) = variants.iter().find(|v| v.name == word.name) {
                        return Some((format!("`{}`: {}\n\n{}", v.name, v.doc, field_line(spec)), word.span));
                    }
                }
                if let Ty::Enum(values) | Ty::List(&Ty::Enum(values)) = spec.ty {
                    if values.contains(&word.name.as_str()) {
                        return Some((
                            format!("`{}`, {}\n\n{}", word.name, spec.ty.describe(), field_line(spec)),
                            word.span,
                        ));
                    }
                }
            }
            Some((describe_field(analysis, &ctx, &key)?, value.span))
        }
    }
}

fn field_line(spec: &FieldSpec) -> String {
    let required = if spec.required { "required" } else { "optional" };
    format!("`{}`: {} ({required})\n\n{}", spec.name, spec.ty.describe(), spec.doc)
}

fn describe_field(analysis: &Analysis, ctx: &Ctx, key: &str) -> Option<String> {
    let spec = ctx.field(key)?;
    let mut out = field_line(spec);
    let program = analysis.checked.program.as_ref();
    if let Some((node, path)) = ctx.program_path(key) {
        if let Some(fv) = program.and_then(|p| p.node(&node)).and_then(|n| n.fields.path(&path)) {
            let from = match &fv.origin {
                Origin::User => String::new(),
                Origin::Default(file) => format!(" (a default from `{}`)", analysis.checked.sources.name(*file)),
                Origin::Family => " (the model family's default)".to_owned(),
            };
            out.push_str(&format!("\n\nvalue: {}{from}", show(&fv.val)));
        }
    }
    Some(out)
}

/// Why job `name` has no estimate, as the estimator decides (estimate/mod.rs): no instance to
/// estimate for (on the local target a job runs on this machine), an instance the catalog does not
/// know or without a CUDA GPU, or a node or input that did not check.
fn no_estimate(analysis: &Analysis, name: &str) -> String {
    use tunec_compiler::catalog::{Accelerator, Catalog};
    use tunec_compiler::check::{TypedNode, Val};
    let Some(program) = analysis.checked.program.as_ref() else { return "the file does not check".to_owned() };
    let Some(node) = program.node(name) else { return "the node does not check".to_owned() };
    let compute = |n: &TypedNode| match n.fields.get("compute").map(|f| &f.val) {
        Some(Val::Instance { name, .. }) => Some(name.clone()),
        _ => None,
    };
    // A merge or an evaluation without `compute` runs on the instance of the job it reads.
    let upstream = ["adapter", "model"]
        .iter()
        .filter_map(|field| node.fields.reference(field))
        .filter_map(|r| program.node(&r.node))
        .find(|n| n.kind == NodeKind::Train || n.kind == NodeKind::Merge);
    let instance = compute(node).or_else(|| upstream.and_then(compute));
    let errors = analysis.checked.diagnostics.iter().any(|d| {
        d.severity == Severity::Error
            && d.file == analysis.checked.main
            && node.span.start <= d.primary.span.start
            && d.primary.span.end <= node.span.end
    });
    match instance {
        None if program.target.kind == Target::Local => {
            "the local target runs the job on this machine, whose accelerator \
             tunec does not know; give it `compute = \"<instance>\" x 1` to estimate it as on that instance"
                .to_owned()
        }
        None => "it has no `compute` instance".to_owned(),
        Some(instance) => match Catalog::builtin().instance(&instance) {
            None => format!("`{instance}` is not in the instance catalog"),
            Some(i) if i.accelerator != Accelerator::Cuda => format!("`{instance}` has no CUDA GPU"),
            Some(_) if errors => "the node has errors".to_owned(),
            Some(_) => "the size of its model or data is unknown".to_owned(),
        },
    }
}

/// A node's or parameter's kind, type, function documentation and, for jobs, the estimate with its
/// terms, as `tunec check` prints it.
fn describe_name(analysis: &Analysis, file: &File, name: &str) -> Option<String> {
    let decl = decls(file).into_iter().find(|d| d.name.name == name)?;
    let program = analysis.checked.program.as_ref();
    let Some(node) = decl.node else {
        let param = program.and_then(|p| p.params.iter().find(|p| p.name == name));
        let value = param.map_or_else(String::new, |p| format!(" = {}", show(&p.value)));
        return Some(format!("```tune\nparam {name}{value}\n```\noverridable with `--set {name}=...`"));
    };
    let typed = program.and_then(|p| p.node(name));
    let ty = typed.map_or_else(|| "(not checked)".to_owned(), |t| t.ty.to_string());
    let mut out = format!("```tune\n{} {name}: {ty}\n```\n", node.kind);
    if let Some(spec) = schema::function(node.kind, &node.call.func.name) {
        out.push_str(&format!("`{}`: {}\n", spec.name, spec.doc));
    }
    if let Some(estimate) = analysis.checked.estimates.as_ref().and_then(|e| e.node(name)) {
        out.push_str("\n**Estimate**\n\n");
        for line in render::estimate_lines(estimate) {
            out.push_str(&format!("- {line}\n"));
        }
    } else if matches!(node.kind, NodeKind::Train | NodeKind::Merge | NodeKind::Evaluate) {
        out.push_str(&format!("\nno estimate: {}\n", no_estimate(analysis, name)));
    }
    Some(out)
}

pub(super) fn hover_value(markdown: String, range: Range) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: markdown }),
        range: Some(range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDREASON: &str = include_str!("../../../examples/medreason/medreason.tune");

    #[test]
    fn every_offset_answers_without_panicking() {
        let text = MEDREASON.replace("pipeline medreason {", "pipeline medreason { // é😀 ü");
        let analysis = analyze("m.tune", &text, None);
        let doc = Document::new(text.clone(), 1);
        for offset in 0..=text.len() + 2 {
            let _ = hover(&analysis, offset);
            let _ = definition(&analysis, offset);
            let _ = references(&analysis, offset, true);
        }
        assert!(!symbols(&analysis, &doc).is_empty());
    }

    #[test]
    fn a_text_that_does_not_parse_has_diagnostics_and_no_answers() {
        let analysis = analyze("m.tune", "pipeline p { model m hf_model() }", None);
        assert_eq!(analysis.checked.diagnostics.len(), 1);
        assert!(analysis.file.is_none());
        assert!(hover(&analysis, 20).is_none());
        assert!(references(&analysis, 20, true).is_empty());
    }

    #[test]
    fn hover_on_a_parameter_use_and_a_default_value() {
        let text = "pipeline p {\n  param lr = 2e-4\n  model m = hf_model(\"meta-llama/Llama-3.1-8B-Instruct\")\n  train t = sft(m, data = c) { learning_rate = lr }\n}";
        let analysis = analyze("m.tune", text, None);
        let (markdown, _) = hover(&analysis, text.rfind("lr").expect("use")).expect("hover");
        assert!(markdown.contains("param lr = `0.0002`"), "{markdown}");
        let refs = references(&analysis, text.find("lr").expect("decl"), true);
        assert_eq!(refs.len(), 2);
    }
}
