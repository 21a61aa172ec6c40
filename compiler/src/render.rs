//! Rendering diagnostics: miette's graphical reports for terminals, and the versioned JSON
//! document for editors and CI (docs/cli.md describes its shape).
//!
//! Rendering is pure: it returns strings and values, and the CLI decides where they go. Labels
//! that point into another file than the diagnostic's own (a default from the prelude) are left
//! out of the graphical report; the message and help still say where the value came from.

use crate::check::Checked;
use crate::diagnostics::{line_col, Diagnostic, Severity, Sources};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use serde_json::{json, Value as Json};
use std::fmt;

/// A diagnostic paired with its source, in the shape miette renders.
struct Report<'a> {
    diagnostic: &'a Diagnostic,
    source: NamedSource<String>,
    code: String,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.source.inner().len();
        let clamp = |span: crate::syntax::ast::Span| {
            let start = (span.start as usize).min(len);
            let end = (span.end as usize).clamp(start, len);
            (start, end - start)
        };
        let primary = &self.diagnostic.primary;
        let mut labels = vec![LabeledSpan::new_primary_with_span(Some(primary.message.clone()), clamp(primary.span))];
        labels.extend(
            self.diagnostic
                .secondary
                .iter()
                .map(|l| LabeledSpan::new_with_span(Some(l.message.clone()), clamp(l.span))),
        );
        Some(Box::new(labels.into_iter()))
    }
}

/// How human output looks.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub color: bool,
    pub width: usize,
}

impl Style {
    /// Fixed width and no colour: what snapshots use.
    pub const PLAIN: Style = Style { color: false, width: 80 };
}

/// Renders one diagnostic as miette draws it.
pub fn human(diagnostic: &Diagnostic, sources: &Sources, style: Style) -> String {
    let report = Report {
        diagnostic,
        source: NamedSource::new(sources.name(diagnostic.file), sources.text(diagnostic.file).to_owned()),
        code: diagnostic.code.full(),
    };
    let theme = if style.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(style.width).with_links(false);
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        // Rendering into a String cannot fail; keep the message if it ever does.
        out = format!("{}: {}\n", diagnostic.code.full(), diagnostic.message);
    }
    out
}

/// Renders every diagnostic, then a one-line summary.
pub fn human_all(checked: &Checked, style: Style) -> String {
    let mut out = String::new();
    for d in &checked.diagnostics {
        out.push_str(&human(d, &checked.sources, style));
        out.push('\n');
    }
    out.push_str(&summary(&checked.diagnostics));
    out
}

/// `2 errors, 1 warning` / `no problems`.
pub fn summary(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "no problems found\n".to_owned(),
        (0, w) => format!("{}\n", plural(w, "warning")),
        (e, 0) => format!("{}\n", plural(e, "error")),
        (e, w) => format!("{}, {}\n", plural(e, "error"), plural(w, "warning")),
    }
}

fn span_json(sources: &Sources, d: &Diagnostic, span: crate::syntax::ast::Span) -> Json {
    let (line, column) = line_col(sources.text(d.file), span.start as usize);
    let (end_line, end_column) = line_col(sources.text(d.file), span.end as usize);
    json!({
        "start": span.start, "end": span.end,
        "line": line, "column": column, "end_line": end_line, "end_column": end_column,
    })
}

/// One diagnostic as JSON.
pub fn diagnostic_json(d: &Diagnostic, sources: &Sources) -> Json {
    let labels: Vec<Json> = std::iter::once((&d.primary, true))
        .chain(d.secondary.iter().map(|l| (l, false)))
        .map(|(l, primary)| json!({"message": l.message, "primary": primary, "span": span_json(sources, d, l.span)}))
        .collect();
    json!({
        "code": d.code.full(),
        "severity": d.severity.as_str(),
        "message": d.message,
        "file": sources.name(d.file),
        "span": span_json(sources, d, d.primary.span),
        "labels": labels,
        "help": d.help,
        "docs": format!("docs/errors/{}.md", d.code.name()),
    })
}

/// The `--format json` document of `tunec check`, version 1.
pub fn check_json(checked: &Checked) -> Json {
    let diagnostics: Vec<Json> = checked.diagnostics.iter().map(|d| diagnostic_json(d, &checked.sources)).collect();
    let nodes: Vec<Json> = match &checked.program {
        Some(p) => p
            .order
            .iter()
            .map(|&i| &p.nodes[i])
            .chain(p.nodes.iter().enumerate().filter(|(i, _)| !p.order.contains(i)).map(|(_, n)| n))
            .map(|n| {
                let (line, column) = line_col(checked.sources.text(checked.main), n.name_span.start as usize);
                json!({
                    "name": n.name,
                    "kind": n.kind.as_str(),
                    "function": n.func,
                    "type": n.ty.to_string(),
                    "inputs": n.inputs,
                    "span": {"start": n.span.start, "end": n.span.end, "line": line, "column": column},
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
    json!({
        "version": 1,
        "file": checked.sources.name(checked.main),
        "pipeline": checked.program.as_ref().map(|p| p.name.clone()),
        "target": checked.program.as_ref().map(|p| p.target.kind.clone()),
        "summary": {"errors": errors, "warnings": checked.diagnostics.len() - errors},
        "diagnostics": diagnostics,
        "nodes": nodes,
    })
}
