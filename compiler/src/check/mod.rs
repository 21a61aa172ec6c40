//! The checker: AST in, a typed [`Program`] and every diagnostic out.
//!
//! Passes, in order: pick the pipeline; collect `defaults` (prelude first, then the file's);
//! declare parameters and apply `--set` overrides; declare node names; give each node its output
//! type from its kind and function; check every node's fields against the schema (`value.rs`),
//! resolving references and their types; order the nodes topologically (a cycle is an error);
//! attach model facts (catalog or local directory); then run the domain rules (`rules/`). Nothing
//! stops early: a node with a bad field still gets its other fields checked and its rules run on
//! what did check, so one run shows every problem.

pub mod columns;
mod compute;
mod local_model;
mod resolve;
mod rules;
pub mod schema;
pub mod slice;
pub(crate) mod suggest;
pub mod template_reasoning;
#[cfg(test)]
mod tests;
pub mod value;

use crate::catalog::{Catalog, ModelFacts};
use crate::diagnostics::{Diagnostic, FileId, Sources};
use crate::syntax::ast::{NodeKind, Span};
use crate::target::Target;
pub use columns::{Column, ColumnType, ObjectField};
use std::fmt;
pub use value::{FieldVal, Fields, Origin, RefVal, SecretRef, Val};

/// Reads the files of `local_model("dir")` directories. The runtime implements it with the file
/// system (paths relative to the pipeline file); tests implement it in memory.
pub trait World {
    /// Reads `dir/file`, or says why it cannot.
    fn read(&self, dir: &str, file: &str) -> Result<String, String>;

    /// The data profile the runtime wrote for a chat node of this pipeline, if any.
    fn profile(&self, _pipeline: &str, _node: &str) -> Option<String> {
        None
    }

    /// The text of the pipeline's calibration file (`tunec.calibration.json`), when there is one
    /// ([`crate::estimate::calibration`]).
    fn calibration(&self) -> Option<String> {
        None
    }
}

/// A world with no files at all.
pub struct NoFiles;

impl World for NoFiles {
    fn read(&self, dir: &str, file: &str) -> Result<String, String> {
        Err(format!("`{dir}/{file}` cannot be read here"))
    }
}

/// The output type of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeType {
    /// A base or merged model; `base` names the model node it derives from.
    Model {
        base: String,
    },
    Dataset {
        columns: Vec<Column>,
    },
    /// Rendered, tokenized conversations from a dataset's columns, for a model's tokenizer.
    Chat {
        columns: Vec<Column>,
        tokenizer: String,
    },
    Splits {
        parts: Vec<String>,
        tokenizer: String,
    },
    Adapter {
        base: String,
    },
    EvalReport,
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeType::Model { base } => write!(f, "Model<{base}>"),
            NodeType::Dataset { columns } => {
                let cols: Vec<String> = columns.iter().map(|c| format!("{}: {}", c.name, c.type_text())).collect();
                write!(f, "Dataset<{}>", cols.join(", "))
            }
            NodeType::Chat { tokenizer, .. } => write!(f, "Chat<{tokenizer}>"),
            NodeType::Splits { parts, .. } => write!(f, "Splits<{}>", parts.join(", ")),
            NodeType::Adapter { base } => write!(f, "Adapter<{base}>"),
            NodeType::EvalReport => f.write_str("EvalReport"),
        }
    }
}

/// A checked node.
#[derive(Clone, Debug)]
pub struct TypedNode {
    pub name: String,
    pub name_span: Span,
    pub kind: NodeKind,
    /// The function it calls (`sft`, `hf_model`).
    pub func: String,
    pub ty: NodeType,
    pub span: Span,
    pub fields: Fields,
    /// The nodes it reads from, in field order, without duplicates.
    pub inputs: Vec<String>,
    /// For model nodes: the architecture and tokenizer facts.
    pub model: Option<ModelFacts>,
    /// For job nodes: the instance it runs on, its own or inherited (`compute.rs`).
    pub compute: Option<Compute>,
}

/// The instance a job node runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compute {
    /// The instance type, `ml.g5.2xlarge`.
    pub instance: String,
    /// How many instances, at least 1.
    pub count: u64,
    /// The node whose `compute` it is: the node itself, or the job it reads its model from.
    pub from: String,
}

impl TypedNode {
    /// Where a rule about `path` should point: the value when the pipeline wrote it, else the
    /// node's name (the value came from a default).
    pub fn span_of(&self, path: &str) -> Span {
        match self.fields.path(path) {
            Some(fv) if fv.origin == Origin::User => fv.span,
            _ => {
                // A nested default inside a user-written variant points at the variant.
                let mut prefix = path;
                while let Some((head, _)) = prefix.rsplit_once('.') {
                    if let Some(fv) = self.fields.path(head).filter(|fv| fv.origin == Origin::User) {
                        return fv.span;
                    }
                    prefix = head;
                }
                self.name_span
            }
        }
    }

    /// "set here" or "defaults to `bf16`", for labels.
    pub fn describe(&self, path: &str) -> String {
        match self.fields.path(path) {
            Some(fv) if fv.origin == Origin::User => format!("`{path}` is {}", show(&fv.val)),
            Some(fv) => format!("`{path}` defaults to {}", show(&fv.val)),
            None => format!("`{path}` is not set"),
        }
    }
}

/// A short rendering of a value for messages.
pub fn show(val: &Val) -> String {
    match val {
        Val::Str(s) => format!("\"{s}\""),
        Val::Env(name) => format!("env(\"{name}\")"),
        Val::Secret(SecretRef::Arn(arn)) => format!("secret(\"{arn}\")"),
        Val::Secret(SecretRef::Env(name)) => format!("secret(env(\"{name}\"))"),
        Val::Int(n) => format!("`{n}`"),
        Val::Float(x) => format!("`{x}`"),
        Val::Bool(b) => format!("`{b}`"),
        Val::Duration(s) => format!("{s} s"),
        Val::Size(b) => format!("{b} B"),
        Val::Money(m) => format!("${m}"),
        Val::Enum(w) | Val::Variant(w, _) => format!("`{w}`"),
        Val::Instance { name, count } => format!("\"{name}\" x {count}"),
        Val::Columns(_) => "a column schema".into(),
        Val::List(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        Val::Targets(None) => "`all_linear`".into(),
        Val::Targets(Some(list)) => {
            format!("[{}]", list.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "))
        }
        Val::Ref(r) => format!("`{r}`"),
    }
}

/// The pipeline's target.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    pub kind: Target,
    pub fields: Fields,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct ParamInfo {
    pub name: String,
    pub value: Val,
    /// Whether `--set` replaced the declared value.
    pub overridden: bool,
    pub span: Span,
}

/// A checked pipeline: what the estimator and the lowering consume.
#[derive(Clone, Debug)]
pub struct Program {
    pub name: String,
    pub name_span: Span,
    pub file: FileId,
    pub target: TargetConfig,
    pub budget: Option<(f64, Span)>,
    pub description: Option<String>,
    pub params: Vec<ParamInfo>,
    /// In source order.
    pub nodes: Vec<TypedNode>,
    /// Indices into `nodes` in dependency order (inputs first).
    pub order: Vec<usize>,
    /// Node name → index into `nodes`.
    pub(crate) by_name: std::collections::BTreeMap<String, usize>,
}

impl Program {
    pub fn node(&self, name: &str) -> Option<&TypedNode> {
        self.by_name.get(name).map(|&i| &self.nodes[i])
    }

    /// The model facts behind a model node, or behind what a chat, split, adapter or merged model
    /// derives from.
    pub fn model_facts(&self, node: &str) -> Option<&ModelFacts> {
        self.checkpoint(node)?.model.as_ref()
    }

    /// The model node (a local or catalog checkpoint) whose facts are behind `node`: itself, or
    /// what a chat, split, adapter or merged model derives from. A cycle (reported by the
    /// resolver) gives none.
    pub fn checkpoint(&self, node: &str) -> Option<&TypedNode> {
        let mut name = node;
        for _ in 0..=self.nodes.len() {
            let node = self.node(name)?;
            name = match &node.ty {
                NodeType::Model { base } | NodeType::Adapter { base } if base != &node.name => base,
                NodeType::Chat { tokenizer, .. } | NodeType::Splits { tokenizer, .. } => tokenizer,
                _ => return node.model.is_some().then_some(node),
            };
        }
        None
    }
}

/// A `--set name=value` override: the parameter and the value's source text.
#[derive(Clone, Debug)]
pub struct Override {
    pub name: String,
    pub value: String,
}

/// The stdlib prelude, read before every pipeline.
pub const PRELUDE: &str = include_str!("../../../stdlib/prelude.tune");
pub const PRELUDE_NAME: &str = "<stdlib/prelude.tune>";

/// Resolves and checks a pipeline file already registered in `sources` as `main` (with the prelude
/// as `prelude`), then runs the rules: the typed program, if the file declares one, with every
/// problem appended to `diagnostics`.
pub fn program(
    sources: &mut Sources,
    main: FileId,
    prelude: FileId,
    overrides: &[Override],
    world: &dyn World,
    catalog: &Catalog,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Program> {
    let program = resolve::run(sources, main, prelude, overrides, world, catalog, diagnostics);
    if let Some(program) = &program {
        rules::run(program, catalog, diagnostics);
    }
    program
}
