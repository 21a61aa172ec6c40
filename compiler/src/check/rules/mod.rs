//! Domain rules: the fine-tuning mistakes that cost a GPU start, turned into diagnostics.
//!
//! Each rule reads the checked [`Program`] (fields already typed, defaults filled in) and the
//! catalog, and reports with its own code. Rules are grouped by the part of the stack they guard;
//! docs/errors/<code>.md explains each one, with the evidence for why it matters. A rule never
//! assumes another field checked: a field that failed its type check is simply absent.

mod data;
mod families;
mod fsdp;
mod hardware;
mod quant;
mod secrets;
mod tokens;
mod training;

use super::{Program, TypedNode};
use crate::catalog::Catalog;
use crate::diagnostics::{Code, Diagnostic, Label};
use crate::syntax::ast::Span;

pub(super) fn run(program: &Program, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let mut r = Report { program, out };
    hardware::run(&mut r, catalog);
    hardware::images(&mut r, catalog);
    quant::run(&mut r);
    fsdp::run(&mut r, catalog);
    families::run(&mut r, catalog);
    tokens::run(&mut r);
    data::run(&mut r);
    training::run(&mut r);
    secrets::run(&mut r);
}

/// What a rule reports into.
pub(super) struct Report<'a> {
    pub(super) program: &'a Program,
    pub(super) out: &'a mut Vec<Diagnostic>,
}

impl Report<'_> {
    /// Reports `code` at `span` with a label, an optional secondary label and a help line.
    pub(super) fn emit(
        &mut self,
        code: Code,
        span: Span,
        message: String,
        label: String,
        help: String,
    ) -> &mut Diagnostic {
        self.out.push(Diagnostic::new(code, self.program.file, message, Label::new(span, label)).with_help(help));
        self.out.last_mut().expect("just pushed")
    }
}

/// The training dtype of a train node.
pub(super) fn precision(node: &TypedNode) -> &str {
    node.fields.word("precision").unwrap_or("bf16")
}

/// Whether a train node loads its base in 4 bits.
pub(super) fn four_bit(node: &TypedNode) -> bool {
    matches!(node.fields.word("quant"), Some("nf4" | "fp4"))
}
