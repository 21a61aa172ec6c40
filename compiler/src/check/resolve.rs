//! Name resolution and field checking: from the AST to a [`Program`] whose every field has been
//! checked against the schema and whose every reference names a node of the right type.

use super::schema::{self, FieldSpec, RefTy, Ty};
use super::suggest;
use super::value::{describe_refs, ConvertCtx, FieldVal, Fields, Origin, Params, RefVal, Val};
use super::{local_model, NodeType, Override, ParamInfo, Program, TargetConfig, TypedNode, World};
use crate::catalog::Catalog;
use crate::diagnostics::{Code, Diagnostic, FileId, Label, Sources};
use crate::syntax::ast::{self, Defaults, Field, Item, NodeKind, Span, Value, ValueKind};
use crate::syntax::{parse_file, parse_value};
use crate::target::Target;
use std::collections::{BTreeMap, BTreeSet};

/// `defaults` blocks by path (`train`, `train.method.lora`), later blocks overriding earlier ones
/// field by field.
type DefaultsMap = BTreeMap<String, Vec<(Field, FileId)>>;

pub(super) fn run(
    sources: &mut Sources,
    main: FileId,
    prelude: FileId,
    overrides: &[Override],
    world: &dyn World,
    catalog: &Catalog,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Program> {
    let prelude_ast = match parse_file(sources.text(prelude), prelude) {
        Ok(file) => file,
        Err(errors) => {
            diagnostics.extend(errors);
            return None;
        }
    };
    let file = match parse_file(sources.text(main), main) {
        Ok(file) => file,
        Err(errors) => {
            diagnostics.extend(errors);
            return None;
        }
    };
    let pipeline = match file.pipelines.as_slice() {
        [one] => one,
        [] => {
            let text = sources.text(main);
            let start = text.len() - text.trim_start().len();
            diagnostics.push(
                Diagnostic::new(
                    Code::NoPipeline,
                    main,
                    "no pipeline in this file",
                    Label::new(Span::new(start, start), "expected `pipeline NAME { ... }`"),
                )
                .with_help("wrap the nodes in `pipeline my_pipeline { ... }`"),
            );
            return None;
        }
        [first, rest @ ..] => {
            for extra in rest {
                diagnostics.push(
                    Diagnostic::new(
                        Code::NoPipeline,
                        main,
                        "more than one pipeline in this file",
                        Label::new(extra.name.span, "a second pipeline"),
                    )
                    .with_label(Label::new(first.name.span, "the first pipeline"))
                    .with_help("put each pipeline in a file of its own"),
                );
            }
            first
        }
    };

    let mut params = Params::new();
    // Parameters, then `--set` overrides.
    let mut param_infos = Vec::new();
    let mut declared: BTreeMap<String, Span> = BTreeMap::new();
    for item in &pipeline.items {
        if let Item::Param(p) = item {
            if let Some(first) = declared.get(&p.name.name) {
                duplicate(diagnostics, main, &p.name, *first, "parameter");
                continue;
            }
            declared.insert(p.name.name.clone(), p.name.span);
            params.insert(p.name.name.clone(), (p.value.clone(), p.span));
        }
    }
    let mut overridden = BTreeSet::new();
    for o in overrides {
        let file = sources.add(format!("<--set {}>", o.name), o.value.clone());
        let Some((declared_value, _)) = params.get(&o.name) else {
            let help = match suggest::closest(&o.name, params.keys().map(String::as_str)) {
                Some(best) => format!("did you mean `{best}`?"),
                None if params.is_empty() => {
                    "the pipeline declares no parameters; add `param NAME = value` to it".into()
                }
                None => format!(
                    "declared parameters: {}",
                    params.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ),
            };
            diagnostics.push(
                Diagnostic::new(
                    Code::UnknownParam,
                    file,
                    format!("no parameter `{}` to set", o.name),
                    Label::new(Span::new(0, o.value.len()), "this value has nowhere to go"),
                )
                .with_help(help),
            );
            continue;
        };
        match parse_value(&o.value, file) {
            Ok(value) if same_shape(declared_value, &value) => {
                params.insert(o.name.clone(), (value, Span::new(0, o.value.len())));
                overridden.insert(o.name.clone());
            }
            Ok(value) => diagnostics.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    file,
                    format!(
                        "`--set {}` expects {}, found {}",
                        o.name,
                        declared_value.kind.describe(),
                        value.kind.describe()
                    ),
                    Label::new(value.span, "wrong kind of value"),
                )
                .with_help(format!(
                    "the parameter is declared as {}; write a value of the same kind",
                    declared_value.kind.describe()
                )),
            ),
            Err(errors) => diagnostics.extend(errors),
        }
    }

    let mut defaults = DefaultsMap::new();
    let mut ctx = ConvertCtx { file: main, params: &params, diagnostics };
    collect_defaults(&prelude_ast.defaults, prelude, &mut defaults, &mut ctx);
    let user_defaults: Vec<Defaults> = file
        .defaults
        .iter()
        .cloned()
        .chain(pipeline.items.iter().filter_map(|i| match i {
            Item::Defaults(d) => Some(d.clone()),
            _ => None,
        }))
        .collect();
    collect_defaults(&user_defaults, main, &mut defaults, &mut ctx);

    // Node names and output types.
    let mut node_decls: Vec<&ast::Node> = Vec::new();
    let mut first_spans: BTreeMap<&str, Span> = BTreeMap::new();
    for item in &pipeline.items {
        if let Item::Node(node) = item {
            if let Some(first) = first_spans.get(node.name.name.as_str()) {
                duplicate(diagnostics, main, &node.name, *first, "node");
                continue;
            }
            if let Some(span) = declared.get(&node.name.name) {
                duplicate(diagnostics, main, &node.name, *span, "use (a parameter has it)");
                continue;
            }
            first_spans.insert(&node.name.name, node.name.span);
            node_decls.push(node);
        }
    }
    let shapes: BTreeMap<String, Shape> = node_decls.iter().map(|n| (n.name.name.clone(), shape(n))).collect();

    let mut ctx = ConvertCtx { file: main, params: &params, diagnostics };
    for p in &pipeline.items {
        if let Item::Param(p) = p {
            let (value, _) = &params[&p.name.name];
            if let Some(val) = param_val(value) {
                param_infos.push(ParamInfo {
                    name: p.name.name.clone(),
                    value: val,
                    overridden: overridden.contains(&p.name.name),
                    span: p.span,
                });
            } else {
                ctx.diagnostics.push(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        main,
                        "a parameter holds a single literal value",
                        Label::new(p.value.span, format!("{} here", p.value.kind.describe())),
                    )
                    .with_help("give the parameter a string, number, boolean, duration, size, amount or name"),
                );
            }
        }
    }

    // Target and pipeline settings.
    let mut target = TargetConfig { kind: Target::Local, fields: Fields::default(), span: pipeline.name.span };
    let mut seen_target: Option<Span> = None;
    let mut settings = Vec::new();
    for item in &pipeline.items {
        match item {
            Item::Target(t) => {
                if let Some(first) = seen_target {
                    ctx.diagnostics.push(
                        Diagnostic::new(
                            Code::DuplicateField,
                            main,
                            "the pipeline has two targets",
                            Label::new(t.kind.span, "second target"),
                        )
                        .with_label(Label::new(first, "first target"))
                        .with_help("keep one `target`; pick another at run time with `tunec run --target`"),
                    );
                    continue;
                }
                seen_target = Some(t.kind.span);
                match schema::TARGETS.iter().find(|s| s.name == t.kind.name) {
                    Some(spec) => {
                        let fields = ctx.fields(spec.fields, &t.fields, &[], t.kind.span, &|_, _| Vec::new());
                        target = TargetConfig { kind: spec.target, fields, span: t.kind.span };
                    }
                    None => {
                        let help = match suggest::closest(&t.kind.name, schema::TARGETS.iter().map(|s| s.name)) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => "the targets are `local` and `sagemaker`".into(),
                        };
                        ctx.diagnostics.push(
                            Diagnostic::new(
                                Code::UnknownValue,
                                main,
                                format!("unknown target `{}`", t.kind.name),
                                Label::new(t.kind.span, "not a target"),
                            )
                            .with_help(help),
                        );
                    }
                }
            }
            Item::Setting(field) => settings.push(field.clone()),
            _ => {}
        }
    }
    let pipeline_fields = ctx.fields(schema::PIPELINE_FIELDS, &settings, &[], pipeline.name.span, &|_, _| Vec::new());
    let budget = match pipeline_fields.get("budget") {
        Some(fv) => match fv.val {
            Val::Money(m) => Some((m, fv.span)),
            _ => None,
        },
        None => None,
    };
    let description = pipeline_fields.str("description").map(str::to_owned);

    // Nodes.
    let mut nodes = Vec::new();
    for decl in &node_decls {
        if let Some(node) = check_node(decl, &shapes, &defaults, &mut ctx, world, catalog) {
            nodes.push(node);
        }
    }
    let order = topo_order(&nodes, main, ctx.diagnostics);
    fill_types(&mut nodes, &order);
    family_defaults(&mut nodes);
    super::compute::resolve(&mut nodes);

    Some(Program {
        name: pipeline.name.name.clone(),
        name_span: pipeline.name.span,
        file: main,
        target,
        budget,
        description,
        params: param_infos,
        by_name: nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect(),
        nodes,
        order,
    })
}

fn duplicate(diagnostics: &mut Vec<Diagnostic>, file: FileId, name: &ast::Ident, first: Span, what: &str) {
    diagnostics.push(
        Diagnostic::new(
            Code::DuplicateName,
            file,
            format!("`{}` is declared twice", name.name),
            Label::new(
                name.span,
                if what.starts_with("use") {
                    format!("second {what}")
                } else {
                    format!("second {what} named `{}`", name.name)
                },
            ),
        )
        .with_label(Label::new(first, "first declared here"))
        .with_help("give each node and parameter a name of its own"),
    );
}

fn same_shape(declared: &Value, given: &Value) -> bool {
    use std::mem::discriminant;
    matches!((&declared.kind, &given.kind), (ValueKind::Float(_), ValueKind::Int(_)))
        || discriminant(&declared.kind) == discriminant(&given.kind)
}

fn param_val(value: &Value) -> Option<Val> {
    Some(match &value.kind {
        ValueKind::Str(s) => Val::Str(s.clone()),
        ValueKind::Int(n) => Val::Int(*n),
        ValueKind::Float(x) => Val::Float(*x),
        ValueKind::Bool(b) => Val::Bool(*b),
        ValueKind::Duration(d) => Val::Duration(*d),
        ValueKind::Size(s) => Val::Size(*s),
        ValueKind::Money(m) => Val::Money(*m),
        ValueKind::Path(_) => Val::Enum(value.as_word()?.name.clone()),
        _ => return None,
    })
}

/// Checks the paths and fields of `defaults` blocks and records them.
fn collect_defaults(blocks: &[Defaults], file: FileId, map: &mut DefaultsMap, ctx: &mut ConvertCtx<'_>) {
    for block in blocks {
        let Some(specs) = defaults_specs(&block.path, file, ctx) else { continue };
        let key = block.path.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(".");
        // Check the values where they are written, with the file they are written in.
        let mut local = ConvertCtx { file, params: ctx.params, diagnostics: ctx.diagnostics };
        for f in &block.fields {
            match specs.iter().find(|s| s.name == f.key.name) {
                Some(spec) => {
                    if spec.required && matches!(spec.ty, Ty::Ref(_)) {
                        local.diagnostics.push(
                            Diagnostic::new(
                                Code::TypeMismatch,
                                file,
                                format!("`{}` cannot have a default", f.key.name),
                                Label::new(f.key.span, "a reference to another node"),
                            )
                            .with_help("set it on each node"),
                        );
                        continue;
                    }
                    local.convert(spec.name, &spec.ty, &f.value, &|_, _| Vec::new());
                }
                None => local.unknown_field(&f.key.name, f.key.span, &specs),
            }
            let entry = map.entry(key.clone()).or_default();
            entry.retain(|(existing, _)| existing.key.name != f.key.name);
            entry.push((f.clone(), file));
        }
    }
}

/// The field specs a defaults path addresses: `train` → the train fields; `train.method.lora` →
/// the fields of the `lora` variant of `method`.
fn defaults_specs(path: &[ast::Ident], file: FileId, ctx: &mut ConvertCtx<'_>) -> Option<Vec<FieldSpec>> {
    let head = path.first()?;
    let Some(kind) = NodeKind::from_keyword(&head.name) else {
        let help = match suggest::closest(&head.name, NodeKind::ALL.iter().map(|k| k.as_str())) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "defaults apply to a node kind: model, dataset, chat, split, train, merge or evaluate".into(),
        };
        ctx.diagnostics.push(
            Diagnostic::new(
                Code::UnknownValue,
                file,
                format!("`{}` is not a node kind", head.name),
                Label::new(head.span, "not a node kind"),
            )
            .with_help(help),
        );
        return None;
    };
    let fields: &'static [FieldSpec] = schema::functions_for(kind).next()?.fields;
    match path {
        // A kind's defaults cover the fields of all its functions.
        [_] => Some(schema::kind_fields(kind).into_iter().copied().collect()),
        [_, field, variant] => {
            let spec = fields.iter().find(|s| s.name == field.name);
            let variants = match spec.map(|s| s.ty) {
                Some(Ty::Variant(variants)) => variants,
                _ => {
                    ctx.unknown_field(&field.name, field.span, fields);
                    return None;
                }
            };
            match variants.iter().find(|v| v.name == variant.name) {
                Some(v) => Some(v.fields.to_vec()),
                None => {
                    let names: Vec<&str> = variants.iter().map(|v| v.name).collect();
                    let help = match suggest::closest(&variant.name, names.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("`{}` takes {}", field.name, Ty::Variant(variants).describe()),
                    };
                    ctx.diagnostics.push(
                        Diagnostic::new(
                            Code::UnknownValue,
                            file,
                            format!("unknown variant `{}` of `{}`", variant.name, field.name),
                            Label::new(variant.span, "not a variant"),
                        )
                        .with_help(help),
                    );
                    None
                }
            }
        }
        _ => {
            let span = path.iter().skip(1).fold(head.span, |acc, seg| acc.cover(seg.span));
            ctx.diagnostics.push(
                Diagnostic::new(
                    Code::Syntax,
                    file,
                    "a defaults path is a node kind or `kind.field.variant`",
                    Label::new(span, "not a defaults path"),
                )
                .with_help("write `defaults train { ... }` or `defaults train.method.lora { ... }`"),
            );
            None
        }
    }
}

/// What a node produces, known before its fields are checked, so that references can be typed
/// in any order.
#[derive(Clone, Debug)]
struct Shape {
    kind: NodeKind,
    output: RefTy,
    /// Declared parts of a split node.
    parts: Vec<String>,
}

fn shape(node: &ast::Node) -> Shape {
    let field_word = |name: &str| -> Option<String> {
        node.body
            .iter()
            .find(|f| f.key.name == name)
            .map(|f| &f.value)
            .or_else(|| {
                node.call.args.iter().find(|a| a.name.as_ref().is_some_and(|n| n.name == name)).map(|a| &a.value)
            })
            .and_then(|v| match &v.kind {
                ValueKind::Path(_) => v.as_word().map(|w| w.name.clone()),
                ValueKind::Variant { name, .. } => Some(name.name.clone()),
                _ => None,
            })
    };
    let output = match node.kind {
        NodeKind::Model | NodeKind::Merge => RefTy::Model,
        NodeKind::Dataset => RefTy::Dataset,
        NodeKind::Chat => RefTy::Chat,
        NodeKind::Split => RefTy::Splits,
        NodeKind::Train if field_word("method").as_deref() == Some("full") => RefTy::Model,
        NodeKind::Train => RefTy::Adapter,
        NodeKind::Evaluate => RefTy::EvalReport,
    };
    let mut parts = Vec::new();
    if node.kind == NodeKind::Split {
        for part in ["train", "val", "test"] {
            let given = node.call.args.iter().any(|a| a.name.as_ref().is_some_and(|n| n.name == part))
                || node.body.iter().any(|f| f.key.name == part);
            if given {
                parts.push(part.to_owned());
            }
        }
    }
    Shape { kind: node.kind, output, parts }
}

fn check_node(
    node: &ast::Node,
    shapes: &BTreeMap<String, Shape>,
    defaults: &DefaultsMap,
    ctx: &mut ConvertCtx<'_>,
    world: &dyn World,
    catalog: &Catalog,
) -> Option<TypedNode> {
    let func_name = &node.call.func;
    let Some(func) = schema::function(node.kind, &func_name.name) else {
        let candidates: Vec<&str> = schema::functions_for(node.kind).map(|f| f.name).collect();
        let elsewhere = schema::FUNCTIONS.iter().find(|f| f.name == func_name.name);
        let help = match (elsewhere, suggest::closest(&func_name.name, candidates.iter().copied())) {
            (Some(f), _) => format!(
                "`{}` makes a `{}` node; write `{} {} = {}(...)`",
                f.name, f.kind, f.kind, node.name.name, f.name
            ),
            (None, Some(best)) => format!("did you mean `{best}`?"),
            (None, None) => format!(
                "a `{}` node calls {}",
                node.kind,
                candidates.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" or ")
            ),
        };
        ctx.diagnostics.push(
            Diagnostic::new(
                Code::UnknownFunction,
                ctx.file,
                format!("unknown function `{}` for a `{}` node", func_name.name, node.kind),
                Label::new(func_name.span, "not a function for this kind"),
            )
            .with_help(help),
        );
        return None;
    };

    // Arguments and the block become one list of fields.
    let mut given: Vec<Field> = Vec::new();
    let mut positional = 0;
    for arg in &node.call.args {
        match &arg.name {
            Some(name) => {
                given.push(Field { key: name.clone(), value: arg.value.clone(), span: name.span.cover(arg.value.span) })
            }
            None => {
                match func.positional.get(positional) {
                    Some(field) => given.push(Field {
                        key: ast::Ident { name: (*field).to_owned(), span: arg.value.span },
                        value: arg.value.clone(),
                        span: arg.value.span,
                    }),
                    None => {
                        let names = func.positional.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
                        ctx.diagnostics.push(
                            Diagnostic::new(
                                Code::UnknownField,
                                ctx.file,
                                format!(
                                    "`{}` takes {} positional argument{}",
                                    func.name,
                                    func.positional.len(),
                                    if func.positional.len() == 1 { "" } else { "s" }
                                ),
                                Label::new(arg.value.span, "one too many"),
                            )
                            .with_help(format!(
                                "the positional arguments are {names}; name the others (`key = value`)"
                            )),
                        );
                    }
                }
                positional += 1;
            }
        }
    }
    given.extend(node.body.iter().cloned());

    let kind_key = node.kind.as_str();
    let node_defaults = defaults.get(kind_key).cloned().unwrap_or_default();
    let variant_defaults = |field: &str, variant: &str| {
        defaults.get(&format!("{kind_key}.{field}.{variant}")).cloned().unwrap_or_default()
    };
    let mut fields = ctx.fields(func.fields, &given, &node_defaults, node.name.span, &variant_defaults);

    // References: each must name a node whose output fits the field.
    let mut inputs: Vec<String> = Vec::new();
    for spec in func.fields {
        let Ty::Ref(allowed) = spec.ty else { continue };
        let Some(fv) = fields.get(spec.name) else { continue };
        let Val::Ref(r) = &fv.val else { continue };
        if check_ref(r, fv.span, allowed, spec.name, &node.name.name, node.kind, shapes, ctx) {
            if !inputs.contains(&r.node) {
                inputs.push(r.node.clone());
            }
        } else {
            fields.0.remove(spec.name);
        }
    }

    let mut model = None;
    if node.kind == NodeKind::Model {
        model = model_facts(func.name, &fields, ctx, world, catalog);
    }
    let ty = node_type(node, &fields, shapes);
    Some(TypedNode {
        name: node.name.name.clone(),
        name_span: node.name.span,
        kind: node.kind,
        func: func.name.to_owned(),
        ty,
        span: node.span,
        fields,
        inputs,
        model,
        compute: None,
    })
}

#[allow(clippy::too_many_arguments)]
fn check_ref(
    r: &RefVal,
    span: Span,
    allowed: &[RefTy],
    field: &str,
    this: &str,
    kind: NodeKind,
    shapes: &BTreeMap<String, Shape>,
    ctx: &mut ConvertCtx<'_>,
) -> bool {
    let file = ctx.file;
    let Some(target) = shapes.get(&r.node) else {
        let help = match suggest::closest(&r.node, shapes.keys().map(String::as_str)) {
            Some(best) => format!("did you mean `{best}`?"),
            None => "declare a node with this name, e.g. `model llama = hf_model(\"...\")`".into(),
        };
        ctx.diagnostics.push(
            Diagnostic::new(
                Code::UnknownName,
                file,
                format!("unknown name `{}`", r.node),
                Label::new(span, "no node or parameter has this name"),
            )
            .with_help(help),
        );
        return false;
    };
    if r.node == this {
        ctx.diagnostics.push(
            Diagnostic::new(
                Code::Cycle,
                file,
                format!("`{this}` reads its own output"),
                Label::new(span, "refers to the node it is in"),
            )
            .with_help("a node can only read the outputs of other nodes"),
        );
        return false;
    }
    let actual = match (&r.part, target.output) {
        (Some(part), RefTy::Splits) => {
            if !target.parts.contains(part) {
                let help = match suggest::closest(part, target.parts.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{}.{best}`?", r.node),
                    None => format!(
                        "`{}` has the parts {}",
                        r.node,
                        target.parts.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                ctx.diagnostics.push(
                    Diagnostic::new(
                        Code::UnknownName,
                        file,
                        format!("split `{}` has no part `{part}`", r.node),
                        Label::new(span, "not a part of this split"),
                    )
                    .with_help(help),
                );
                return false;
            }
            RefTy::Chat
        }
        (Some(part), _) => {
            ctx.diagnostics.push(
                Diagnostic::new(
                    Code::TypeMismatch,
                    file,
                    format!("`{}` has no parts", r.node),
                    Label::new(span, format!("`.{part}` selects a part, but `{}` is a {} node", r.node, target.kind)),
                )
                .with_help(format!("refer to the node itself: `{}`", r.node)),
            );
            return false;
        }
        (None, output) => output,
    };
    if allowed.contains(&actual) {
        return true;
    }
    let help = if actual == RefTy::Splits && allowed.contains(&RefTy::Chat) {
        let preferred: &[&str] = match (field, kind) {
            ("eval", _) => &["val", "test"],
            ("data", NodeKind::Train) => &["train"],
            _ => &["test", "val"],
        };
        let part = preferred.iter().find(|p| target.parts.iter().any(|t| t == *p)).copied().unwrap_or("test");
        format!("pick one part of the split, e.g. `{}.{part}`", r.node)
    } else if actual == RefTy::Adapter && allowed.contains(&RefTy::Model) {
        format!("merge the adapter first (`merge m = merge({})`) and use the merged model", r.node)
    } else {
        format!("`{field}` takes a {} node", describe_refs(allowed))
    };
    ctx.diagnostics.push(
        Diagnostic::new(
            Code::TypeMismatch,
            file,
            format!("`{field}` expects {}, found `{}`", describe_refs(allowed), actual.as_str()),
            Label::new(span, format!("`{r}` is a `{}`", actual.as_str())),
        )
        .with_help(help),
    );
    false
}

fn node_type(node: &ast::Node, fields: &Fields, shapes: &BTreeMap<String, Shape>) -> NodeType {
    let base_of = |field: &str| fields.reference(field).map(|r| r.node.clone()).unwrap_or_default();
    match node.kind {
        NodeKind::Model => NodeType::Model { base: node.name.name.clone() },
        NodeKind::Dataset => NodeType::Dataset {
            columns: match fields.get("columns").map(|f| &f.val) {
                Some(Val::Columns(c)) => c.clone(),
                _ => Vec::new(),
            },
        },
        NodeKind::Chat => NodeType::Chat { columns: Vec::new(), tokenizer: base_of("tokenizer") },
        NodeKind::Split => NodeType::Splits {
            parts: shapes.get(&node.name.name).map(|s| s.parts.clone()).unwrap_or_default(),
            tokenizer: String::new(),
        },
        NodeKind::Train if fields.word("method") == Some("full") => NodeType::Model { base: base_of("model") },
        NodeKind::Train => NodeType::Adapter { base: base_of("model") },
        NodeKind::Merge => NodeType::Model { base: String::new() },
        NodeKind::Evaluate => NodeType::EvalReport,
    }
}

fn model_facts(
    func: &str,
    fields: &Fields,
    ctx: &mut ConvertCtx<'_>,
    world: &dyn World,
    catalog: &Catalog,
) -> Option<crate::catalog::ModelFacts> {
    let file = ctx.file;
    match func {
        "hf_model" => {
            let fv = fields.get("id")?;
            let Val::Str(id) = &fv.val else { return None };
            if let Some(facts) = catalog.model(id) {
                return Some(facts.clone());
            }
            let help = match suggest::closest(id, catalog.models.ids()) {
                Some(best) => format!("did you mean `{best}`? for a model outside the catalog, download it and use `local_model(\"dir\")`"),
                None => "for a model outside the catalog, download it and use `local_model(\"dir\")`; `tunec explain unknown_model` lists the catalog".into(),
            };
            ctx.diagnostics.push(
                Diagnostic::new(
                    Code::UnknownModel,
                    file,
                    format!("`{id}` is not in the model catalog"),
                    Label::new(fv.span, "unknown model id"),
                )
                .with_help(help),
            );
            None
        }
        _ => {
            let fv = fields.get("path")?;
            let Val::Str(path) = &fv.val else { return None };
            match local_model::read(path, world, catalog) {
                Ok(facts) => Some(facts),
                Err(problem) => {
                    ctx.diagnostics.push(
                        Diagnostic::new(Code::LocalModel, file, problem.message, Label::new(fv.span, problem.label))
                            .with_help(problem.help),
                    );
                    None
                }
            }
        }
    }
}

/// Fills the defaults that depend on the model's family: a train node without `attention` gets the
/// kernel its family's row of the architecture table recommends (eager for gpt-oss, which has no
/// SDPA), so the checked program, the keys, the estimate and args.yaml all see the same value.
fn family_defaults(nodes: &mut [TypedNode]) {
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let kernels: Vec<(usize, String)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.kind == NodeKind::Train && n.fields.get("attention").is_none())
        .filter_map(|(i, n)| {
            // Through a merged or trained model to the checkpoint it started from; a cycle (already
            // reported) ends the walk.
            let mut model = n.fields.reference("model")?.node.as_str();
            for _ in 0..nodes.len() {
                let node = &nodes[*index.get(model)?];
                if let Some(facts) = &node.model {
                    return Some((i, facts.attention(None).to_owned()));
                }
                model = match &node.ty {
                    NodeType::Model { base } | NodeType::Adapter { base } if base != model => base,
                    _ => return None,
                };
            }
            None
        })
        .collect();
    for (i, kernel) in kernels {
        let span = nodes[i].name_span;
        nodes[i].fields.0.insert(
            "attention".to_owned(),
            FieldVal { val: Val::Enum(kernel), span, key_span: span, origin: Origin::Family },
        );
    }
}

/// Completes the types that derive from inputs (a chat's columns, a split's tokenizer, a merged
/// model's base), walking inputs first.
fn fill_types(nodes: &mut [TypedNode], order: &[usize]) {
    let index: BTreeMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    for &i in order {
        let input_ty = |field: &str| {
            let name = nodes[i].fields.reference(field)?;
            index.get(&name.node).map(|&j| nodes[j].ty.clone())
        };
        let new_ty = match &nodes[i].ty {
            NodeType::Chat { tokenizer, .. } => match input_ty("data") {
                Some(NodeType::Dataset { columns }) => Some(NodeType::Chat { columns, tokenizer: tokenizer.clone() }),
                _ => None,
            },
            NodeType::Splits { parts, .. } => match input_ty("data") {
                Some(NodeType::Chat { tokenizer, .. }) => Some(NodeType::Splits { parts: parts.clone(), tokenizer }),
                _ => None,
            },
            NodeType::Model { base } if base.is_empty() => match input_ty("adapter") {
                Some(NodeType::Adapter { base }) => Some(NodeType::Model { base }),
                _ => None,
            },
            _ => None,
        };
        if let Some(ty) = new_ty {
            nodes[i].ty = ty;
        }
    }
}

/// Orders nodes inputs-first (Kahn's algorithm, ties in source order). Nodes on a cycle are
/// reported once and left out of the order.
fn topo_order(nodes: &[TypedNode], file: FileId, diagnostics: &mut Vec<Diagnostic>) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut indegree = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in &n.inputs {
            if let Some(&j) = index.get(input.as_str()) {
                dependents[j].push(i);
                indegree[i] += 1;
            }
        }
    }
    let mut order = Vec::with_capacity(nodes.len());
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|i| indegree[*i] == 0).collect();
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &d in &dependents[next] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() < nodes.len() {
        let placed: BTreeSet<usize> = order.iter().copied().collect();
        let stuck: Vec<&TypedNode> = (0..nodes.len()).filter(|i| !placed.contains(i)).map(|i| &nodes[i]).collect();
        if let Some(first) = stuck.first() {
            let names: Vec<String> = stuck.iter().map(|n| format!("`{}`", n.name)).collect();
            let mut d = Diagnostic::new(
                Code::Cycle,
                file,
                format!("{} depend on each other in a cycle", names.join(", ")),
                Label::new(first.name_span, "on a cycle"),
            );
            for other in stuck.iter().skip(1) {
                d = d.with_label(Label::new(other.name_span, "on the same cycle"));
            }
            diagnostics.push(d.with_help(
                "data flows one way: dataset → chat → split → train → merge → evaluate; remove one of the references",
            ));
        }
    }
    order
}
