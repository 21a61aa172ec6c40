//! Rendering diagnostics: miette's graphical reports for terminals, and the versioned JSON
//! document for editors and CI (docs/cli.md describes its shape).
//!
//! Rendering is pure: it returns strings and values, and the CLI decides where they go. Labels
//! that point into another file than the diagnostic's own (a default from the prelude) are left
//! out of the graphical report; the message and help still say where the value came from.

use crate::diagnostics::{Diagnostic, LineIndex, Severity, Sources};
use crate::driver::Checked;
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

fn span_json(text: &str, index: &LineIndex, span: crate::syntax::ast::Span) -> Json {
    let (line, column) = index.line_col(text, span.start as usize);
    let (end_line, end_column) = index.line_col(text, span.end as usize);
    json!({
        "start": span.start, "end": span.end,
        "line": line, "column": column, "end_line": end_line, "end_column": end_column,
    })
}

/// One diagnostic as JSON.
pub fn diagnostic_json(d: &Diagnostic, sources: &Sources) -> Json {
    let text = sources.text(d.file);
    diagnostic_json_indexed(d, sources, text, &LineIndex::new(text))
}

fn diagnostic_json_indexed(d: &Diagnostic, sources: &Sources, text: &str, index: &LineIndex) -> Json {
    let labels: Vec<Json> = std::iter::once((&d.primary, true))
        .chain(d.secondary.iter().map(|l| (l, false)))
        .map(|(l, primary)| json!({"message": l.message, "primary": primary, "span": span_json(text, index, l.span)}))
        .collect();
    json!({
        "code": d.code.full(),
        "severity": d.severity.as_str(),
        "message": d.message,
        "file": sources.name(d.file),
        "span": span_json(text, index, d.primary.span),
        "labels": labels,
        "help": d.help,
        "docs": format!("docs/errors/{}.md", d.code.name()),
    })
}

/// The `--format json` document of `tunec check`, version 1.
pub fn check_json(checked: &Checked) -> Json {
    let mut indexes: std::collections::BTreeMap<crate::diagnostics::FileId, LineIndex> =
        std::collections::BTreeMap::new();
    let diagnostics: Vec<Json> = checked
        .diagnostics
        .iter()
        .map(|d| {
            let text = checked.sources.text(d.file);
            let index = indexes.entry(d.file).or_insert_with(|| LineIndex::new(text));
            diagnostic_json_indexed(d, &checked.sources, text, index)
        })
        .collect();
    let main_text = checked.sources.text(checked.main);
    let main_index = LineIndex::new(main_text);
    let nodes: Vec<Json> = match &checked.program {
        Some(p) => p
            .order
            .iter()
            .map(|&i| &p.nodes[i])
            .chain({
                let placed: std::collections::BTreeSet<usize> = p.order.iter().copied().collect();
                p.nodes.iter().enumerate().filter(move |(i, _)| !placed.contains(i)).map(|(_, n)| n)
            })
            .map(|n| {
                let (line, column) = main_index.line_col(main_text, n.name_span.start as usize);
                json!({
                    "name": n.name,
                    "kind": n.kind.as_str(),
                    "function": n.func,
                    "type": n.ty.to_string(),
                    "inputs": n.inputs,
                    "span": {"start": n.span.start, "end": n.span.end, "line": line, "column": column},
                    "estimate": checked.estimates.as_ref().and_then(|e| e.node(&n.name)).map(estimate_json),
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
        "target": checked.program.as_ref().map(|p| p.target.kind.name()),
        "summary": {"errors": errors, "warnings": checked.diagnostics.len() - errors},
        "diagnostics": diagnostics,
        "nodes": nodes,
        "total": checked.estimates.as_ref().map(|e| json!({"hours": e.total_hours, "usd": e.total_usd, "complete": e.complete})),
    })
}

fn gib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn terms_line(terms: &[crate::estimate::memory::Term]) -> String {
    terms.iter().map(|t| format!("{} {} GiB", t.name, gib(t.bytes))).collect::<Vec<_>>().join(" · ")
}

/// The lines `tunec check` prints under a job node: resources, terms, tokens, time and cost.
pub fn estimate_lines(e: &crate::estimate::NodeEstimate) -> Vec<String> {
    let hours = e.hours.map_or("time unknown".to_owned(), |h| format!("{h:.2} h"));
    let usd = match (e.usd, e.hours) {
        (Some(usd), _) => format!("${usd:.2}{}", if e.spot { " (spot)" } else { "" }),
        (None, Some(_)) => "price unknown".to_owned(),
        (None, None) => "cost unknown".to_owned(),
    };
    let mut lines = vec![
        format!(
            "{} x {}: GPU {} of {} GiB · host {} of {} GiB · disk {:.0} GB · {hours} · {usd}",
            e.instance,
            e.instance_count,
            gib(e.gpu_peak_bytes),
            gib(e.gpu_capacity_bytes),
            gib(e.host_peak_bytes),
            gib(e.host_capacity_bytes),
            e.disk_bytes as f64 / 1e9,
        ),
        format!("GPU: {}", terms_line(&e.gpu_terms)),
        format!("host: {}", terms_line(&e.host_terms)),
    ];
    if let (Some(tokens), Some(source)) = (e.tokens, e.token_source) {
        let trained = e.trained_tokens.map(|t| format!(", {:.1}M of them trained", t as f64 / 1e6)).unwrap_or_default();
        lines.push(format!("tokens: {:.1}M ({}){trained}", tokens as f64 / 1e6, source.as_str()));
    }
    if let Some(factor) = e.padding_factor {
        let saves = match e.packing_saves {
            Some((hours, usd)) => {
                let usd = usd.map(|u| format!(", ${u:.2}")).unwrap_or_default();
                format!("; `packing = true` would save {hours:.2} h{usd}")
            }
            None => String::new(),
        };
        lines
            .push(format!("padding: micro-batches padded to their longest row compute {factor:.2}x the tokens{saves}"));
    }
    if let Some(c) = &e.calibration {
        let factor = |what: &str, f: &Option<crate::estimate::calibration::Factor>| {
            f.as_ref().map(|f| format!("{what} x{:.2} ({} runs)", f.factor, f.runs))
        };
        let parts: Vec<String> =
            [factor("memory", &c.memory), factor("hours", &c.hours)].into_iter().flatten().collect();
        lines.push(format!("calibrated for {} on {}: {}", c.family, c.gpu, parts.join(", ")));
    }
    lines
}

/// The pipeline total line.
pub fn total_line(estimates: &crate::estimate::Estimates) -> String {
    let partial = if estimates.complete { "" } else { " (some jobs could not be estimated)" };
    format!("total: {:.2} h, ${:.2}{partial}", estimates.total_hours, estimates.total_usd)
}

/// The fit search for people: the node as declared, its largest batch and sequence length, and
/// the instances on which its job fits, cheapest first, as a table.
pub fn fit_lines(f: &crate::estimate::fit::Fit) -> Vec<String> {
    let mut lines = vec![
        format!(
            "`{}` on {} x {} ({}, {} GiB per GPU, {} GiB host): per_device_batch {}, seq_len {}: GPU {} GiB, host {} GiB: {}",
            f.node,
            f.instance,
            f.count,
            f.gpu,
            gib(f.capacity_bytes),
            gib(f.host_capacity_bytes),
            f.per_device_batch,
            f.seq_len,
            gib(f.peak_bytes),
            gib(f.host_peak_bytes),
            if f.fits() { "fits" } else { "does not fit" }
        ),
        match &f.max_batch {
            Some(l) => format!("  largest per_device_batch at seq_len {}: {} ({} GiB)", f.seq_len, l.value, gib(l.peak_bytes)),
            None => format!("  largest per_device_batch at seq_len {}: none (1 does not fit)", f.seq_len),
        },
        match &f.max_seq_len {
            Some(l) if l.value == f.max_position_embeddings => format!(
                "  largest seq_len at per_device_batch {}: {} ({} GiB), the model's context length",
                f.per_device_batch,
                l.value,
                gib(l.peak_bytes)
            ),
            Some(l) => {
                format!("  largest seq_len at per_device_batch {}: {} ({} GiB)", f.per_device_batch, l.value, gib(l.peak_bytes))
            }
            None => format!("  largest seq_len at per_device_batch {}: none (1 token does not fit)", f.per_device_batch),
        },
    ];
    if f.instances.is_empty() {
        lines.push("no instance of the catalog fits the job at this batch or a divisor of it".to_owned());
        return lines;
    }
    lines.push(format!("instances on which the job fits ({}), cheapest job first:", f.instances.len()));
    let mut table_rows = vec![["instance", "GPUs", "GPU peak", "hours", "cost", "change"].map(str::to_owned).to_vec()];
    for i in &f.instances {
        let change = i.change();
        table_rows.push(vec![
            format!("{} x {}", i.instance, i.count),
            format!("{} x {}", i.gpus, i.gpu),
            format!("{} of {} GiB", gib(i.peak_bytes), gib(i.capacity_bytes)),
            i.hours.map_or("—".to_owned(), |h| format!("{h:.2}")),
            i.usd.map_or("—".to_owned(), |u| format!("${u:.2}")),
            if change.is_empty() { "as declared".to_owned() } else { change },
        ]);
    }
    lines.extend(table(&table_rows, &[3, 4]));
    lines
}

/// Rows as a table for people: each column as wide as its widest cell, the columns in
/// `right_aligned` (numbers) aligned right, two spaces between columns, each line indented by two.
pub fn table(rows: &[Vec<String>], right_aligned: &[usize]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, &w))| {
                    let pad = " ".repeat(w - cell.chars().count());
                    if right_aligned.contains(&c) {
                        format!("{pad}{cell}")
                    } else {
                        format!("{cell}{pad}")
                    }
                })
                .collect();
            format!("  {}", cells.join("  ").trim_end())
        })
        .collect()
}

/// The fit search as JSON (version 1).
pub fn fit_json(f: &crate::estimate::fit::Fit) -> Json {
    let limit = |l: &Option<crate::estimate::fit::Limit>| {
        l.as_ref().map(|l| json!({"value": l.value, "peak_bytes": l.peak_bytes}))
    };
    json!({
        "version": 1,
        "node": f.node,
        "instance": f.instance,
        "instance_count": f.count,
        "gpu": f.gpu,
        "gpu_capacity_bytes": f.capacity_bytes,
        "host_capacity_bytes": f.host_capacity_bytes,
        "per_device_batch": f.per_device_batch,
        "seq_len": f.seq_len,
        "gpu_peak_bytes": f.peak_bytes,
        "host_peak_bytes": f.host_peak_bytes,
        "fits": f.fits(),
        "max_per_device_batch": limit(&f.max_batch),
        "max_seq_len": limit(&f.max_seq_len),
        "max_position_embeddings": f.max_position_embeddings,
        "instances": f.instances.iter().map(|i| json!({
            "instance": i.instance,
            "instance_count": i.count,
            "gpu": i.gpu,
            "gpus": i.gpus,
            "gpu_capacity_bytes": i.capacity_bytes,
            "per_device_batch": i.per_device_batch,
            "grad_accum_factor": i.grad_accum_factor,
            "gpu_peak_bytes": i.peak_bytes,
            "hours": i.hours,
            "usd": i.usd,
            "declared": i.declared,
            "change": i.change(),
        })).collect::<Vec<_>>(),
    })
}

/// One node's estimate as JSON.
pub fn estimate_json(e: &crate::estimate::NodeEstimate) -> Json {
    let terms = |terms: &[crate::estimate::memory::Term]| -> Json {
        Json::Object(terms.iter().map(|t| (t.name.to_owned(), json!(t.bytes))).collect())
    };
    json!({
        "instance": e.instance,
        "instance_count": e.instance_count,
        "gpu_peak_bytes": e.gpu_peak_bytes,
        "gpu_capacity_bytes": e.gpu_capacity_bytes,
        "gpu_terms": terms(&e.gpu_terms),
        "host_peak_bytes": e.host_peak_bytes,
        "host_capacity_bytes": e.host_capacity_bytes,
        "host_terms": terms(&e.host_terms),
        "disk_bytes": e.disk_bytes,
        "disk_terms": terms(&e.disk_terms),
        "tokens": e.tokens,
        "trained_tokens": e.trained_tokens,
        "token_source": e.token_source.map(|s| s.as_str()),
        "hours": e.hours,
        "usd": e.usd,
        "spot": e.spot,
        "padding_factor": e.padding_factor,
        "packing_saves_hours": e.packing_saves.map(|(hours, _)| hours),
        "packing_saves_usd": e.packing_saves.and_then(|(_, usd)| usd),
        "calibration": e.calibration.as_ref().map(|c| json!({
            "gpu": c.gpu,
            "family": c.family,
            "memory_factor": c.memory.as_ref().map(|f| f.factor),
            "hours_factor": c.hours.as_ref().map(|f| f.factor),
        })),
    })
}
