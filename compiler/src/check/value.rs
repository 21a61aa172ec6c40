//! Typed field values, and the conversion of AST values into them against the schema.
//!
//! `convert` is where the generic checks happen: types, enumeration values with suggestions,
//! numeric ranges, `env()` only where a field accepts it, parameter substitution and reference
//! shape. A value that does not convert yields a diagnostic and no `Val`, so rules never see it.

use super::columns::{parse_columns, Column};
use super::schema::{FieldSpec, RefTy, Ty, VariantSpec};
use super::suggest;
use crate::diagnostics::{Code, Diagnostic, FileId, Label};
use crate::syntax::ast::{Field, Span, Value, ValueKind};
use std::collections::BTreeMap;

/// A checked value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    /// `env("NAME")`: resolved at run time, never written anywhere in clear.
    Env(String),
    /// `secret("ARN")` or `secret(env("NAME"))`: a value kept in AWS Secrets Manager, read by
    /// whoever needs it at run time. Holds the ARN (or the variable that holds it), which is not
    /// itself secret.
    Secret(SecretRef),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Seconds.
    Duration(u64),
    /// Bytes.
    Size(u64),
    Money(f64),
    Enum(String),
    Variant(String, Fields),
    Instance {
        name: String,
        count: i64,
    },
    Columns(Vec<Column>),
    List(Vec<Val>),
    /// `None` is `all_linear`.
    Targets(Option<Vec<(String, Span)>>),
    Ref(RefVal),
}

/// Where a `secret(...)` finds its ARN: written in the pipeline, or in an environment variable
/// (an account-specific value, like the target's `role`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    Arn(String),
    Env(String),
}

/// `parts.train` → node `parts`, part `train`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefVal {
    pub node: String,
    pub part: Option<String>,
}

impl std::fmt::Display for RefVal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.part {
            Some(part) => write!(f, "{}.{part}", self.node),
            None => f.write_str(&self.node),
        }
    }
}

/// Where a field's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Written in the pipeline (the span points at it).
    User,
    /// Filled in from a `defaults` block (the span points into that block's file).
    Default(FileId),
    /// Derived from the model's family (its row of `stdlib/catalog/architectures.toml`); the span
    /// is the node's name.
    Family,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldVal {
    pub val: Val,
    /// The value's span (in the pipeline file for `Origin::User`).
    pub span: Span,
    /// The key's span, for `Origin::User`.
    pub key_span: Span,
    pub origin: Origin,
}

/// The checked fields of a node, a variant or a target, defaults included.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(pub BTreeMap<String, FieldVal>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&FieldVal> {
        self.0.get(name)
    }

    /// Follows a dotted path through variants: `quant.storage`.
    pub fn path(&self, path: &str) -> Option<&FieldVal> {
        let mut fields = self;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let fv = fields.get(part)?;
            if parts.peek().is_none() {
                return Some(fv);
            }
            match &fv.val {
                Val::Variant(_, inner) => fields = inner,
                _ => return None,
            }
        }
        None
    }

    pub fn int(&self, path: &str) -> Option<i64> {
        match self.path(path)?.val {
            Val::Int(n) => Some(n),
            _ => None,
        }
    }

    pub fn float(&self, path: &str) -> Option<f64> {
        match self.path(path)?.val {
            Val::Float(x) => Some(x),
            Val::Int(n) => Some(n as f64),
            _ => None,
        }
    }

    pub fn bool(&self, path: &str) -> Option<bool> {
        match self.path(path)?.val {
            Val::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn str(&self, path: &str) -> Option<&str> {
        match &self.path(path)?.val {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An enumeration value, or the name of a variant.
    pub fn word(&self, path: &str) -> Option<&str> {
        match &self.path(path)?.val {
            Val::Enum(s) | Val::Variant(s, _) => Some(s),
            _ => None,
        }
    }

    /// The strings and enumeration values of a list field (`metrics`, `modules_to_save`); empty
    /// when the field is unset.
    pub fn strings(&self, path: &str) -> Vec<String> {
        match self.path(path).map(|f| &f.val) {
            Some(Val::List(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Val::Str(s) | Val::Enum(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn reference(&self, path: &str) -> Option<&RefVal> {
        match &self.path(path)?.val {
            Val::Ref(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_user(&self, path: &str) -> bool {
        self.path(path).is_some_and(|f| f.origin == Origin::User)
    }
}

/// `(field, variant)` → the defaults of that variant's fields.
pub(crate) type VariantDefaults<'a> = dyn Fn(&str, &str) -> Vec<(Field, FileId)> + 'a;

/// Parameters in scope and their checked values.
pub(crate) type Params = BTreeMap<String, (Value, Span)>;

/// What `convert` needs besides the value: where to report, and the parameters.
pub(crate) struct ConvertCtx<'a> {
    pub file: FileId,
    pub params: &'a Params,
    pub diagnostics: &'a mut Vec<Diagnostic>,
}

impl ConvertCtx<'_> {
    fn error(&mut self, code: Code, span: Span, message: String, label: &str, help: String) {
        self.diagnostics.push(Diagnostic::new(code, self.file, message, Label::new(span, label)).with_help(help));
    }

    fn mismatch(&mut self, field: &str, ty: &Ty, value: &Value) {
        let help = match ty {
            Ty::Secret => format!(
                "read it from AWS Secrets Manager, `{field} = secret(\"arn:aws:secretsmanager:...\")`, or from the \
                 environment, `{field} = env(\"NAME\")`"
            ),
            Ty::Str if matches!(value.kind, ValueKind::Call(ref c) if c.func.name == "env") => {
                format!(
                    "`{field}` is written into job artifacts, so it cannot come from `env()`; write the value itself"
                )
            }
            Ty::Instance => format!("write `{field} = \"ml.g5.2xlarge\" x 1`"),
            Ty::Ref(_) => "name a node declared in this pipeline".to_owned(),
            _ => format!("`{field}` takes {}", ty.describe()),
        };
        self.error(
            Code::TypeMismatch,
            value.span,
            format!("`{field}` expects {}, found {}", ty.describe(), value.kind.describe()),
            &format!("{} here", value.kind.describe()),
            help,
        );
    }

    /// `secret("ARN")`: one string that is the ARN of a Secrets Manager secret.
    fn secret(&mut self, call: &crate::syntax::ast::Call) -> Option<Val> {
        let [arg] = call.args.as_slice() else {
            self.error(
                Code::TypeMismatch,
                call.span,
                "`secret` takes exactly one argument".into(),
                "here",
                "write `secret(\"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME\")`".into(),
            );
            return None;
        };
        if arg.name.is_some() {
            self.error(
                Code::TypeMismatch,
                arg.value.span,
                "`secret` takes its ARN without a name".into(),
                "named argument",
                "write `secret(\"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME\")`".into(),
            );
            return None;
        }
        let text = match &arg.value.kind {
            ValueKind::Str(text) => text,
            ValueKind::Call(inner) if inner.func.name == "env" => {
                // The ARN from the environment; its shape is checked when it is read.
                return match self.convert("secret", &Ty::StrOrEnv, &arg.value, &|_, _| Vec::new())? {
                    Val::Env(name) => Some(Val::Secret(SecretRef::Env(name))),
                    _ => None,
                };
            }
            _ => {
                self.error(
                    Code::TypeMismatch,
                    arg.value.span,
                    "`secret` takes the ARN of a Secrets Manager secret, as a string or `env(\"NAME\")`".into(),
                    "not a string",
                    "write `secret(\"arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME\")`".into(),
                );
                return None;
            }
        };
        match crate::secret::parse_arn(text) {
            Ok(_) => Some(Val::Secret(SecretRef::Arn(text.clone()))),
            Err(problem) => {
                self.error(
                    Code::SecretArn,
                    arg.value.span,
                    "`secret` needs the ARN of a Secrets Manager secret".into(),
                    &problem.to_string(),
                    "copy the secret's ARN from `aws secretsmanager describe-secret --secret-id NAME --query ARN` \
                     (the form is `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-abc123`)"
                        .into(),
                );
                None
            }
        }
    }

    /// Substitutes a parameter for a bare name, once.
    fn param<'v>(&self, value: &'v Value) -> Option<&'v str> {
        value.as_word().map(|w| w.name.as_str()).filter(|name| self.params.contains_key(*name))
    }

    /// Converts `value` to the field's type; `None` after reporting when it does not fit.
    /// `variant_defaults(field, variant)` gives the defaults for a variant's fields.
    pub(crate) fn convert(
        &mut self,
        field: &str,
        ty: &Ty,
        value: &Value,
        variant_defaults: &VariantDefaults<'_>,
    ) -> Option<Val> {
        // A bare name that is a parameter stands for the parameter's value, unless it is also a
        // valid word for this field (an enumeration value or a variant).
        if let Some(name) = self.param(value) {
            let is_word = match ty {
                Ty::Enum(values) => values.contains(&name),
                Ty::Variant(variants) => variants.iter().any(|v| v.name == name),
                Ty::Targets => name == "all_linear",
                Ty::Ref(_) => true,
                _ => false,
            };
            if !is_word {
                let (param_value, _) = self.params.get(name)?.clone();
                let replaced = Value { kind: param_value.kind, span: value.span };
                return self.convert(field, ty, &replaced, variant_defaults);
            }
        }
        match (ty, &value.kind) {
            (Ty::Str | Ty::Template | Ty::Column | Ty::StrOrEnv, ValueKind::Str(s)) => Some(Val::Str(s.clone())),
            (Ty::Secret, ValueKind::Str(_)) => {
                self.error(
                    Code::InlineSecret,
                    value.span,
                    format!("`{field}` is a secret written in clear"),
                    "this value would be stored in plans, state and logs",
                    format!(
                        "keep it in AWS Secrets Manager, `{field} = secret(\"arn:aws:secretsmanager:...\")`, or read \
                         it from the environment, `{field} = env(\"NAME\")`"
                    ),
                );
                None
            }
            (Ty::StrOrEnv | Ty::Secret, ValueKind::Call(call)) if call.func.name == "env" => {
                match call.args.as_slice() {
                    [arg] if arg.name.is_none() => match &arg.value.kind {
                        ValueKind::Str(name) if is_env_name(name) => Some(Val::Env(name.clone())),
                        _ => {
                            self.error(
                                Code::TypeMismatch,
                                arg.value.span,
                                "`env` takes the name of an environment variable".into(),
                                "not a variable name",
                                "write `env(\"NAME\")` with letters, digits and `_`".into(),
                            );
                            None
                        }
                    },
                    _ => {
                        self.error(
                            Code::TypeMismatch,
                            call.span,
                            "`env` takes exactly one argument".into(),
                            "here",
                            "write `env(\"NAME\")`".into(),
                        );
                        None
                    }
                }
            }
            (Ty::Secret, ValueKind::Call(call)) if call.func.name == "secret" => self.secret(call),
            (Ty::Int { min, max }, ValueKind::Int(n)) => {
                if n < min || n > max {
                    self.range_error(field, value.span, &n.to_string(), *min as f64, *max as f64, false);
                    return None;
                }
                Some(Val::Int(*n))
            }
            (Ty::Float { min, max, min_exclusive }, ValueKind::Float(_) | ValueKind::Int(_)) => {
                let x = match value.kind {
                    ValueKind::Float(x) => x,
                    ValueKind::Int(n) => n as f64,
                    _ => return None,
                };
                let below = if *min_exclusive { x <= *min } else { x < *min };
                if below || x > *max {
                    self.range_error(field, value.span, &x.to_string(), *min, *max, *min_exclusive);
                    return None;
                }
                Some(Val::Float(x))
            }
            (Ty::Bool, ValueKind::Bool(b)) => Some(Val::Bool(*b)),
            (Ty::Duration, ValueKind::Duration(d)) => Some(Val::Duration(*d)),
            (Ty::Size, ValueKind::Size(s)) => Some(Val::Size(*s)),
            (Ty::Money, ValueKind::Money(m)) => Some(Val::Money(*m)),
            (Ty::Enum(values), ValueKind::Path(_)) if value.as_word().is_some() => {
                let word = value.as_word()?;
                if values.contains(&word.name.as_str()) {
                    Some(Val::Enum(word.name.clone()))
                } else {
                    self.unknown_value(field, &word.name, word.span, values);
                    None
                }
            }
            (Ty::Variant(variants), ValueKind::Path(_)) if value.as_word().is_some() => {
                let word = value.as_word()?;
                let spec = self.variant_spec(field, &word.name, word.span, variants)?;
                let fields =
                    self.fields(spec.fields, &[], &variant_defaults(field, spec.name), value.span, &|_, _| Vec::new());
                Some(Val::Variant(spec.name.to_owned(), fields))
            }
            (Ty::Variant(variants), ValueKind::Variant { name, fields }) => {
                let spec = self.variant_spec(field, &name.name, name.span, variants)?;
                let checked =
                    self.fields(spec.fields, fields, &variant_defaults(field, spec.name), name.span, &|_, _| {
                        Vec::new()
                    });
                Some(Val::Variant(spec.name.to_owned(), checked))
            }
            (Ty::Instance, ValueKind::Str(name)) => Some(Val::Instance { name: name.clone(), count: 1 }),
            (Ty::Instance, ValueKind::Times { value: inner, count, count_span }) => match &inner.kind {
                ValueKind::Str(name) if *count >= 1 => Some(Val::Instance { name: name.clone(), count: *count }),
                ValueKind::Str(_) => {
                    self.range_error("instance count", *count_span, &count.to_string(), 1.0, f64::MAX, false);
                    None
                }
                _ => {
                    self.mismatch(field, ty, inner);
                    None
                }
            },
            (Ty::Columns, ValueKind::Record(fields)) => self.columns(fields),
            (Ty::List(inner), ValueKind::List(items)) => {
                let mut out = Vec::new();
                for item in items {
                    out.push(self.convert(field, inner, item, variant_defaults)?);
                }
                Some(Val::List(out))
            }
            (Ty::Targets, ValueKind::Path(_)) if value.as_word().is_some_and(|w| w.name == "all_linear") => {
                Some(Val::Targets(None))
            }
            (Ty::Targets, ValueKind::List(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match &item.kind {
                        ValueKind::Str(s) => out.push((s.clone(), item.span)),
                        ValueKind::Path(_) if item.as_word().is_some() => {
                            out.push((item.as_word()?.name.clone(), item.span));
                        }
                        _ => {
                            self.mismatch(field, &Ty::Str, item);
                            return None;
                        }
                    }
                }
                Some(Val::Targets(Some(out)))
            }
            (Ty::Ref(_), ValueKind::Path(segments)) if segments.len() <= 2 => {
                Some(Val::Ref(RefVal { node: segments[0].name.clone(), part: segments.get(1).map(|s| s.name.clone()) }))
            }
            (Ty::Enum(_) | Ty::Variant(_) | Ty::Targets, ValueKind::Path(_)) | (Ty::Ref(_), ValueKind::Path(_)) => {
                self.mismatch(field, ty, value);
                None
            }
            _ => {
                self.mismatch(field, ty, value);
                None
            }
        }
    }

    fn range_error(&mut self, field: &str, span: Span, shown: &str, min: f64, max: f64, min_exclusive: bool) {
        let fmt = |x: f64| {
            if x >= 9.0e15 {
                "∞".to_owned()
            } else {
                format!("{x}")
            }
        };
        let lower = if min_exclusive { format!("above {}", fmt(min)) } else { format!("at least {}", fmt(min)) };
        self.error(
            Code::ValueRange,
            span,
            format!("`{field}` is out of range"),
            &format!("{shown} is not allowed here"),
            format!("`{field}` must be {lower} and at most {}", fmt(max)),
        );
    }

    fn unknown_value(&mut self, field: &str, word: &str, span: Span, values: &[&str]) {
        let help = match suggest::closest(word, values.iter().copied()) {
            Some(best) => format!("did you mean `{best}`? `{field}` takes {}", super::schema::one_of(values)),
            None => format!("`{field}` takes {}", super::schema::one_of(values)),
        };
        self.error(
            Code::UnknownValue,
            span,
            format!("unknown value `{word}` for `{field}`"),
            "not a known value",
            help,
        );
    }

    fn variant_spec(
        &mut self,
        field: &str,
        name: &str,
        span: Span,
        variants: &'static [VariantSpec],
    ) -> Option<&'static VariantSpec> {
        let found = variants.iter().find(|v| v.name == name);
        if found.is_none() {
            let names: Vec<&str> = variants.iter().map(|v| v.name).collect();
            self.unknown_value(field, name, span, &names);
        }
        found
    }

    fn columns(&mut self, fields: &[Field]) -> Option<Val> {
        parse_columns(self.file, fields, self.diagnostics).map(Val::Columns)
    }

    /// Checks a set of fields against their specs: unknown and duplicate keys, values, required
    /// fields, then fills the rest from `defaults`. `owner_span` is where a missing field is
    /// reported.
    pub(crate) fn fields(
        &mut self,
        specs: &[FieldSpec],
        given: &[Field],
        defaults: &[(Field, FileId)],
        owner_span: Span,
        variant_defaults: &VariantDefaults<'_>,
    ) -> Fields {
        let mut out = Fields::default();
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for f in given {
            if let Some(first) = seen.get(f.key.name.as_str()) {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::DuplicateField,
                        self.file,
                        format!("`{}` is set twice", f.key.name),
                        Label::new(f.key.span, "set again here"),
                    )
                    .with_label(Label::new(*first, "first set here"))
                    .with_help("remove one of the two"),
                );
                continue;
            }
            seen.insert(&f.key.name, f.key.span);
            let Some(spec) = specs.iter().find(|s| s.name == f.key.name) else {
                self.unknown_field(&f.key.name, f.key.span, specs);
                continue;
            };
            if let Some(val) = self.convert(spec.name, &spec.ty, &f.value, variant_defaults) {
                out.0.insert(
                    spec.name.to_owned(),
                    FieldVal { val, span: f.value.span, key_span: f.key.span, origin: Origin::User },
                );
            }
        }
        for (default, file) in defaults {
            if out.0.contains_key(&default.key.name) || seen.contains_key(default.key.name.as_str()) {
                continue;
            }
            let Some(spec) = specs.iter().find(|s| s.name == default.key.name) else { continue };
            // Defaults were checked where they were written; convert quietly here.
            let mut sink = Vec::new();
            let mut quiet = ConvertCtx { file: *file, params: self.params, diagnostics: &mut sink };
            if let Some(val) = quiet.convert(spec.name, &spec.ty, &default.value, variant_defaults) {
                out.0.insert(
                    spec.name.to_owned(),
                    FieldVal {
                        val,
                        span: default.value.span,
                        key_span: default.key.span,
                        origin: Origin::Default(*file),
                    },
                );
            }
        }
        for spec in specs.iter().filter(|s| s.required) {
            if !out.0.contains_key(spec.name) && !seen.contains_key(spec.name) {
                self.error(
                    Code::MissingField,
                    owner_span,
                    format!("missing field `{}`", spec.name),
                    &format!("`{}` is required here", spec.name),
                    format!("add `{} = ...`: {}", spec.name, spec.doc),
                );
            }
        }
        out
    }

    pub(crate) fn unknown_field(&mut self, name: &str, span: Span, specs: &[FieldSpec]) {
        let help = match suggest::closest(name, specs.iter().map(|s| s.name)) {
            Some(best) => format!("did you mean `{best}`?"),
            None => {
                let names: Vec<String> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
                if names.is_empty() {
                    "this takes no fields".to_owned()
                } else {
                    format!("known fields: {}", names.join(", "))
                }
            }
        };
        self.error(Code::UnknownField, span, format!("unknown field `{name}`"), "not a field here", help);
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The output type a reference needs, for messages.
pub(crate) fn describe_refs(tys: &[RefTy]) -> String {
    tys.iter().map(|t| format!("`{}`", t.as_str())).collect::<Vec<_>>().join(" or ")
}
