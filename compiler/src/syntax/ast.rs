//! The abstract syntax tree of a `.tune` file.
//!
//! Every node carries the byte span it was parsed from, so that any later stage can point at the
//! source. The AST is deliberately untyped: `qlora { r = 32 }` is a `Variant` and `parts.train` a
//! `Path` whatever the field they appear in; giving them meaning is the checker's job. The AST is
//! not serializable on purpose: only the lowered job graph and the runtime's state cross a process
//! boundary.

use std::fmt;

/// A half-open byte range `start..end` into one source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Span { start: clamp(start), end: clamp(end) }
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The smallest span that covers both.
    pub fn cover(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A whole file: pipelines and file-level `defaults` blocks (the stdlib prelude has only the latter).
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub pipelines: Vec<Pipeline>,
    pub defaults: Vec<Defaults>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub name: Ident,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Target(Target),
    Param(Param),
    Defaults(Defaults),
    Node(Node),
    Setting(Field),
}

/// `target sagemaker { region = "us-east-1" ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub kind: Ident,
    pub fields: Vec<Field>,
    pub span: Span,
}

/// `param epochs = 2`, overridable with `--set epochs=3`.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub value: Value,
    pub span: Span,
}

/// `defaults train { precision = bf16 }`: field values every node of that kind starts from.
/// `defaults train.method.lora { r = 16 }` gives the fields of a variant their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    /// `train`, `method`, `lora`: a node kind, then field and variant names.
    pub path: Vec<Ident>,
    pub fields: Vec<Field>,
    pub span: Span,
}

/// The kinds of pipeline node, in the order data flows through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    Model,
    Dataset,
    Chat,
    Split,
    Train,
    Merge,
    Evaluate,
}

impl NodeKind {
    pub const ALL: [NodeKind; 7] = [
        NodeKind::Model,
        NodeKind::Dataset,
        NodeKind::Chat,
        NodeKind::Split,
        NodeKind::Train,
        NodeKind::Merge,
        NodeKind::Evaluate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Model => "model",
            NodeKind::Dataset => "dataset",
            NodeKind::Chat => "chat",
            NodeKind::Split => "split",
            NodeKind::Train => "train",
            NodeKind::Merge => "merge",
            NodeKind::Evaluate => "evaluate",
        }
    }

    pub fn from_keyword(s: &str) -> Option<NodeKind> {
        NodeKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `train sft = sft(llama, data = parts.train) { epochs = 2 }`
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub kind_span: Span,
    pub name: Ident,
    pub call: Call,
    /// The fields of the optional `{ ... }` block after the call.
    pub body: Vec<Field>,
    pub span: Span,
}

/// `name(positional, named = value)`
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub func: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Value,
}

/// `key = value` (or `key: value`, the form used for column schemas).
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub key: Ident,
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Seconds.
    Duration(u64),
    /// Bytes.
    Size(u64),
    /// US dollars.
    Money(f64),
    List(Vec<Value>),
    Record(Vec<Field>),
    /// `qlora { r = 32 }`: a named alternative with its own fields.
    Variant {
        name: Ident,
        fields: Vec<Field>,
    },
    /// `bf16`, `llama`, `parts.train`: an enumeration value, a parameter or a node reference.
    Path(Vec<Ident>),
    /// `env("NAME")`, `hf_model("id")`.
    Call(Call),
    /// `"ml.p4d.24xlarge" x 2`: a value repeated `count` times (instances).
    Times {
        value: Box<Value>,
        count: i64,
        count_span: Span,
    },
    /// `string?`: a type that may be absent or null (column schemas).
    Optional(Box<Value>),
}

impl ValueKind {
    /// What the value is, in the words a diagnostic uses ("a string", "a list").
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a float",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Duration(_) => "a duration",
            ValueKind::Size(_) => "a size",
            ValueKind::Money(_) => "an amount of money",
            ValueKind::List(_) => "a list",
            ValueKind::Record(_) => "a record",
            ValueKind::Variant { .. } => "a variant",
            ValueKind::Path(_) => "a name",
            ValueKind::Call(_) => "a call",
            ValueKind::Times { .. } => "a repeated value (`... x N`)",
            ValueKind::Optional(_) => "an optional type (`... ?`)",
        }
    }
}

impl Value {
    /// The single identifier of a one-segment path (`bf16`), if this is one.
    pub fn as_word(&self) -> Option<&Ident> {
        match &self.kind {
            ValueKind::Path(segments) if segments.len() == 1 => segments.first(),
            _ => None,
        }
    }
}

impl File {
    /// The same tree with every span set to `0..0`: two texts that differ only in layout and
    /// comments give equal trees. The formatter's tests compare files this way.
    #[must_use]
    pub fn without_spans(&self) -> File {
        let mut file = self.clone();
        for p in &mut file.pipelines {
            p.span = Span::default();
            p.name.span = Span::default();
            for item in &mut p.items {
                match item {
                    Item::Target(t) => {
                        t.span = Span::default();
                        t.kind.span = Span::default();
                        t.fields.iter_mut().for_each(erase_field);
                    }
                    Item::Param(param) => {
                        param.span = Span::default();
                        param.name.span = Span::default();
                        erase_value(&mut param.value);
                    }
                    Item::Defaults(d) => erase_defaults(d),
                    Item::Node(n) => {
                        n.span = Span::default();
                        n.kind_span = Span::default();
                        n.name.span = Span::default();
                        erase_call(&mut n.call);
                        n.body.iter_mut().for_each(erase_field);
                    }
                    Item::Setting(f) => erase_field(f),
                }
            }
        }
        file.defaults.iter_mut().for_each(erase_defaults);
        file
    }
}

fn erase_defaults(d: &mut Defaults) {
    d.span = Span::default();
    d.path.iter_mut().for_each(|seg| seg.span = Span::default());
    d.fields.iter_mut().for_each(erase_field);
}

fn erase_field(f: &mut Field) {
    f.span = Span::default();
    f.key.span = Span::default();
    erase_value(&mut f.value);
}

fn erase_call(c: &mut Call) {
    c.span = Span::default();
    c.func.span = Span::default();
    for arg in &mut c.args {
        if let Some(name) = &mut arg.name {
            name.span = Span::default();
        }
        erase_value(&mut arg.value);
    }
}

fn erase_value(v: &mut Value) {
    v.span = Span::default();
    match &mut v.kind {
        ValueKind::List(items) => items.iter_mut().for_each(erase_value),
        ValueKind::Record(fields) => fields.iter_mut().for_each(erase_field),
        ValueKind::Variant { name, fields } => {
            name.span = Span::default();
            fields.iter_mut().for_each(erase_field);
        }
        ValueKind::Path(segments) => segments.iter_mut().for_each(|seg| seg.span = Span::default()),
        ValueKind::Call(c) => erase_call(c),
        ValueKind::Times { value, count_span, .. } => {
            *count_span = Span::default();
            erase_value(value);
        }
        ValueKind::Optional(value) => erase_value(value),
        ValueKind::Str(_)
        | ValueKind::Int(_)
        | ValueKind::Float(_)
        | ValueKind::Bool(_)
        | ValueKind::Duration(_)
        | ValueKind::Size(_)
        | ValueKind::Money(_) => {}
    }
}
