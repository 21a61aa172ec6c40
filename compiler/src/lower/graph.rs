//! The job graph drawn as Graphviz DOT or a Mermaid flowchart, for docs and reviews.

use super::{Execution, JobGraph};

fn label(node: &super::JobNode) -> String {
    let how = match &node.execution {
        Execution::SageMakerJob { instance_type, instance_count, .. } => format!("{instance_type} x {instance_count}"),
        other => other.describe().to_owned(),
    };
    format!("{} {}\\n{}\\n{}", node.kind, node.name, how, &node.key[..node.key.len().min(12)])
}

fn shape(node: &super::JobNode) -> (&'static str, (&'static str, &'static str)) {
    match node.execution {
        Execution::Model { .. } => ("cylinder", ("[(", ")]")),
        Execution::Data { .. } => ("box", ("[", "]")),
        _ => ("box3d", ("[[", "]]")),
    }
}

/// Graphviz DOT.
pub fn dot(graph: &JobGraph) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n", graph.pipeline);
    for node in &graph.nodes {
        out.push_str(&format!("  \"{}\" [shape={}, label=\"{}\"];\n", node.name, shape(node).0, label(node)));
    }
    for node in &graph.nodes {
        for dep in &node.deps {
            out.push_str(&format!("  \"{dep}\" -> \"{}\";\n", node.name));
        }
    }
    out.push_str("}\n");
    out
}

/// A Mermaid flowchart.
pub fn mermaid(graph: &JobGraph) -> String {
    let mut out = "flowchart LR\n".to_owned();
    for node in &graph.nodes {
        let (open, close) = shape(node).1;
        out.push_str(&format!("  {}{open}\"{}\"{close}\n", node.name, label(node).replace("\\n", "<br/>")));
    }
    for node in &graph.nodes {
        for dep in &node.deps {
            out.push_str(&format!("  {dep} --> {}\n", node.name));
        }
    }
    out
}
