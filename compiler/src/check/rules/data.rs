//! Rules about data: split fractions, leakage between training and evaluation data, and the
//! Hub's split-slice syntax.

use super::Report;
use crate::check::{RefVal, Val};
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::NodeKind;

pub(super) fn run(r: &mut Report<'_>) {
    let program = r.program;
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Split) {
        let parts: Vec<(&str, f64)> =
            ["train", "val", "test"].into_iter().filter_map(|p| node.fields.float(p).map(|f| (p, f))).collect();
        if parts.is_empty() {
            r.emit(
                Code::SplitFractions,
                node.name_span,
                "the split has no parts".into(),
                "no fractions given".into(),
                "give fractions, e.g. `split(data, train = 0.9, val = 0.05, test = 0.05)`".into(),
            );
            continue;
        }
        for (part, fraction) in &parts {
            if *fraction <= 0.0 || *fraction >= 1.0 {
                r.emit(
                    Code::SplitFractions,
                    node.span_of(part),
                    format!("`{part}` must be a fraction between 0 and 1"),
                    format!(
                        "{fraction} leaves {} empty",
                        if *fraction <= 0.0 { "this part" } else { "the other parts" }
                    ),
                    "leave an unused part out instead of setting it to 0".into(),
                );
            }
        }
        let sum: f64 = parts.iter().map(|(_, f)| f).sum();
        if sum > 1.0 + 1e-9 {
            let d = r.emit(
                Code::SplitFractions,
                node.name_span,
                format!("split fractions sum to {}", (sum * 1e6).round() / 1e6),
                "more than the whole dataset".into(),
                "make the fractions sum to 1 (or less, to leave rows out)".into(),
            );
            for (part, _) in &parts {
                d.secondary.push(Label::new(node.span_of(part), format!("`{part}`")));
            }
        }
        if node.fields.bool("dedup") == Some(false) {
            r.emit(
                Code::SplitLeakage,
                node.span_of("dedup"),
                "splitting without deduplication".into(),
                "a duplicated row can land in both train and test".into(),
                "set `dedup = true` (the default) so test scores are not inflated by memorised rows".into(),
            )
            .severity = crate::diagnostics::Severity::Warning;
        }
    }
    // Training data must not be evaluated on: two references overlap when they reach the same chat
    // node and at least one of them is all of it, or both are the same part of the same split.
    let rows = |r: &RefVal| -> (String, Option<(String, String)>) {
        match (&r.part, program.node(&r.node)) {
            (Some(part), Some(split)) if split.kind == NodeKind::Split => {
                let chat = split.fields.reference("data").map_or(r.node.clone(), |d| d.node.clone());
                (chat, Some((r.node.clone(), part.clone())))
            }
            _ => (r.node.clone(), None),
        }
    };
    // Training data by the chat node it reaches, so each use looks only at its own chat.
    type Part = Option<(String, String)>;
    let mut trained_on: std::collections::BTreeMap<String, Vec<(Part, &crate::check::TypedNode)>> =
        std::collections::BTreeMap::new();
    for n in program.nodes.iter().filter(|n| n.kind == NodeKind::Train) {
        if let Some(d) = n.fields.reference("data") {
            let (root, part) = rows(d);
            trained_on.entry(root).or_default().push((part, n));
        }
    }
    for node in program.nodes.iter().filter(|n| matches!(n.kind, NodeKind::Train | NodeKind::Evaluate)) {
        let field = if node.kind == NodeKind::Train { "eval" } else { "data" };
        let Some(used) = node.fields.reference(field) else { continue };
        let (root, used_part) = rows(used);
        let Some(trainers) = trained_on.get(&root) else { continue };
        for (train_part, train_node) in trainers {
            let overlaps = train_part.is_none() || used_part.is_none() || *train_part == used_part;
            if overlaps && (node.kind == NodeKind::Evaluate || train_node.name == node.name) {
                r.emit(
                    Code::SplitLeakage,
                    node.span_of(field),
                    format!("`{used}` overlaps the training data of `{}`", train_node.name),
                    "evaluating on training data".into(),
                    "split the data (`split(chat, train = 0.9, test = 0.1)`) and evaluate on a part that is not trained on".into(),
                )
                .secondary
                .push(Label::new(train_node.span_of("data"), "trained on here"));
            }
        }
    }
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Dataset) {
        if let Some(Val::Str(slice)) = node.fields.get("split").map(|f| &f.val) {
            if let Err(why) = check_slice(slice) {
                r.emit(
                    Code::SplitSlice,
                    node.span_of("split"),
                    format!("malformed split `{slice}`"),
                    why,
                    "write a split name with an optional slice: `train`, `train[:10000]`, `train[10%:]`, `test[5:50%]`"
                        .into(),
                );
            }
        }
    }
}

/// Validates a split slice: the shared parser, a split name of letters, digits, `_` and `-`, and a
/// slice that is not empty by construction.
pub(super) fn check_slice(text: &str) -> Result<(), String> {
    use crate::check::slice::{Bound, SplitSlice};
    let slice = SplitSlice::parse(text)?;
    if slice.split.is_empty() || !slice.split.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err("the split name is missing or has characters other than letters, digits, `_` and `-`".into());
    }
    if let (Some(Bound::Rows(s)), Some(Bound::Rows(e))) | (Some(Bound::Percent(s)), Some(Bound::Percent(e))) =
        (slice.from, slice.to)
    {
        if s >= 0 && e >= 0 && e <= s {
            return Err("the slice is empty: its end is not after its start".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_slice;

    #[test]
    fn slices() {
        for ok in ["train", "train[:10000]", "train[10%:]", "test[5:50]", "validation[-10%:]", "train[:]"] {
            assert!(check_slice(ok).is_ok(), "{ok}");
        }
        for bad in ["", "train[", "train[10]", "train[a:]", "train[50:10]", "tr ain", "train[200%:]"] {
            assert!(check_slice(bad).is_err(), "{bad}");
        }
    }
}
