//! The job graph as a DAG for the executor: which nodes a run covers and which are ready.
//!
//! Nodes are the graph's indices; an edge goes from a node to each node that reads it. A run covers
//! every node, or with `--until NODE` that node and everything it depends on, nothing else: a node
//! beside it in the file but not upstream of it is left alone. A node is ready when it is covered,
//! not done, not started, and every node it reads is done. Ready nodes come in graph order (the
//! lowering's dependency order), so a run's decisions print in a stable order.

use std::collections::BTreeSet;

use petgraph::graphmap::DiGraphMap;
use petgraph::visit::{Dfs, Reversed};
use petgraph::Direction;
use tunec_compiler::lower::JobGraph;

/// The covered part of a job graph.
#[derive(Debug, Clone)]
pub struct Dag {
    edges: DiGraphMap<usize, ()>,
    covered: BTreeSet<usize>,
}

impl Dag {
    /// The DAG of `graph`, covering `until` and its ancestors (everything when `None` or unknown).
    pub fn new(graph: &JobGraph, until: Option<&str>) -> Dag {
        let mut edges = DiGraphMap::new();
        for (index, node) in graph.nodes.iter().enumerate() {
            edges.add_node(index);
            for dep in &node.deps {
                if let Some(from) = graph.nodes.iter().position(|n| &n.name == dep) {
                    edges.add_edge(from, index, ());
                }
            }
        }
        let covered = match until.and_then(|name| graph.nodes.iter().position(|n| n.name == name)) {
            Some(last) => {
                let reversed = Reversed(&edges);
                let mut dfs = Dfs::new(reversed, last);
                let mut covered = BTreeSet::new();
                while let Some(index) = dfs.next(reversed) {
                    covered.insert(index);
                }
                covered
            }
            None => (0..graph.nodes.len()).collect(),
        };
        Dag { edges, covered }
    }

    /// The nodes `index` reads.
    pub fn deps(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        self.edges.neighbors_directed(index, Direction::Incoming)
    }

    /// Whether the run covers `index`.
    pub fn covers(&self, index: usize) -> bool {
        self.covered.contains(&index)
    }

    /// Covered nodes, not done and not started, whose inputs are all done; in graph order.
    pub fn ready(&self, done: &BTreeSet<usize>, started: &BTreeSet<usize>) -> Vec<usize> {
        self.covered
            .iter()
            .copied()
            .filter(|i| !done.contains(i) && !started.contains(i))
            .filter(|&i| self.deps(i).all(|d| done.contains(&d)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunec_compiler::lower::{Execution, JobNode};

    fn graph(nodes: &[(&str, &[&str])]) -> JobGraph {
        JobGraph {
            version: 1,
            pipeline: "p".into(),
            target: tunec_compiler::target::Target::Local,
            target_config: serde_json::json!({}),
            bundle_digest: String::new(),
            env: Vec::new(),
            nodes: nodes
                .iter()
                .map(|(name, deps)| JobNode {
                    name: (*name).into(),
                    kind: "dataset".into(),
                    function: "file".into(),
                    key: String::new(),
                    deps: deps.iter().map(|d| (*d).to_owned()).collect(),
                    config: serde_json::Value::Null,
                    execution: Execution::Data { operation: "load".into() },
                })
                .collect(),
        }
    }

    /// a → b → d, a → c → d, e alone.
    fn diamond() -> JobGraph {
        graph(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"]), ("e", &[])])
    }

    #[test]
    fn independent_nodes_are_ready_together_and_a_join_waits_for_both() {
        let dag = Dag::new(&diamond(), None);
        let none = BTreeSet::new();
        assert_eq!(dag.ready(&none, &none), vec![0, 4]);
        let done: BTreeSet<usize> = [0].into();
        assert_eq!(dag.ready(&done, &none), vec![1, 2, 4]);
        let started: BTreeSet<usize> = [1, 4].into();
        assert_eq!(dag.ready(&done, &started), vec![2]);
        let done: BTreeSet<usize> = [0, 1].into();
        assert_eq!(dag.ready(&done, &[2, 4].into()), Vec::<usize>::new(), "d waits for c");
        let done: BTreeSet<usize> = [0, 1, 2].into();
        assert_eq!(dag.ready(&done, &[4].into()), vec![3]);
    }

    #[test]
    fn until_covers_the_node_and_its_ancestors_only() {
        let dag = Dag::new(&diamond(), Some("b"));
        assert!(dag.covers(0) && dag.covers(1));
        assert!(!dag.covers(2) && !dag.covers(3) && !dag.covers(4));
        let done: BTreeSet<usize> = [0].into();
        assert_eq!(dag.ready(&done, &BTreeSet::new()), vec![1]);
        let mut deps: Vec<_> = Dag::new(&diamond(), None).deps(3).collect();
        deps.sort_unstable();
        assert_eq!(deps, vec![1, 2]);
    }
}
