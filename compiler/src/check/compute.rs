//! The instance each job node runs on, worked out once, after the nodes are checked: its own
//! `compute`, or else that of the job it reads its model from (a merge runs where its adapter
//! was trained, an evaluation where its model was made), following adapters and models upstream.
//!
//! The hardware rules, the estimator and the lowering all read [`TypedNode::compute`], so they
//! agree on the instance by construction.

use super::{Compute, TypedNode, Val};
use crate::syntax::ast::NodeKind;
use std::collections::BTreeMap;

fn own(node: &TypedNode) -> Option<(String, u64)> {
    match node.fields.get("compute").map(|f| &f.val) {
        Some(Val::Instance { name, count }) => Some((name.clone(), u64::try_from(*count).unwrap_or(1).max(1))),
        _ => None,
    }
}

/// Fills in `compute` for every train, merge and evaluate node of `nodes`.
pub(super) fn resolve(nodes: &mut [TypedNode]) {
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    let mut found = Vec::with_capacity(nodes.len());
    for node in nodes.iter() {
        if !matches!(node.kind, NodeKind::Train | NodeKind::Merge | NodeKind::Evaluate) {
            found.push(None);
            continue;
        }
        let mut current = Some(node);
        let mut compute = None;
        // At most one step per node: a cycle (reported by the checker) cannot loop.
        for _ in 0..nodes.len() {
            let Some(n) = current else { break };
            if let Some((instance, count)) = own(n) {
                compute = Some(Compute { instance, count, from: n.name.clone() });
                break;
            }
            current = ["adapter", "model"]
                .iter()
                .find_map(|f| n.fields.reference(f))
                .and_then(|r| index.get(r.node.as_str()))
                .map(|&i| &nodes[i]);
        }
        found.push(compute);
    }
    for (node, compute) in nodes.iter_mut().zip(found) {
        node.compute = compute;
    }
}
