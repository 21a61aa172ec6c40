//! The fit search: for a train node, the largest `per_device_batch` and `seq_len` whose training
//! step fits the node's instance, and the catalog's instances on which the job fits, ranked by the
//! estimated cost of the whole job, each with the change that makes it fit.
//!
//! Every figure comes from the memory and time models of this estimator, run again on the changed
//! setup: nothing is extrapolated. A step fits when its per-GPU peak is at most the GPU's memory
//! and its host peak at most the instance's (section 4 of docs/estimator.md). The memory model
//! grows with the batch and the sequence length, so the largest values are found by bisection.
//! On another instance the node keeps its instance count; when its micro-batch does not fit there,
//! the largest divisor of it that does is taken, with `grad_accum` multiplied by the quotient so
//! that the global batch per GPU stays the same. `tunec check --fit NODE` prints the result, and
//! the `gpu_memory` error's help is built from it.

use super::memory::{self, TrainSetup, GIB};
use super::Ctx;
use crate::catalog::{Accelerator, Instance};
use crate::check::{FieldVal, Origin, TypedNode, Val};
use crate::syntax::ast::NodeKind;

/// The largest value of a setting that fits, and the peak it gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub value: u64,
    pub peak_bytes: u64,
}

/// One instance of the catalog on which the job fits.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceFit {
    pub instance: String,
    pub count: u64,
    pub gpu: String,
    pub gpus: u64,
    pub capacity_bytes: u64,
    /// The micro-batch it runs at: the node's own, or the largest divisor of it that fits.
    pub per_device_batch: u64,
    /// The factor `grad_accum` is multiplied by (1: unchanged).
    pub grad_accum_factor: u64,
    pub peak_bytes: u64,
    pub hours: Option<f64>,
    pub usd: Option<f64>,
    /// It is the node's own instance.
    pub declared: bool,
}

impl InstanceFit {
    /// The change to the node that makes it run here; empty for the node as it is.
    pub fn change(&self) -> String {
        let mut parts = Vec::new();
        if !self.declared {
            parts.push(format!("compute = \"{}\" x {}", self.instance, self.count));
        }
        if self.grad_accum_factor > 1 {
            parts.push(format!(
                "per_device_batch = {} with {}x grad_accum",
                self.per_device_batch, self.grad_accum_factor
            ));
        }
        parts.join(", ")
    }
}

/// What the search found for one train node.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub node: String,
    pub instance: String,
    pub count: u64,
    pub gpu: String,
    pub capacity_bytes: u64,
    pub host_capacity_bytes: u64,
    pub per_device_batch: u64,
    pub seq_len: u64,
    /// The node's step as declared.
    pub peak_bytes: u64,
    pub host_peak_bytes: u64,
    /// The largest `per_device_batch` at the declared `seq_len`; `None` when not even 1 fits.
    pub max_batch: Option<Limit>,
    /// The largest `seq_len` at the declared `per_device_batch`, up to the model's
    /// `max_position_embeddings`; `None` when not even 1 token fits.
    pub max_seq_len: Option<Limit>,
    /// The model's context length, the search's upper bound for `seq_len`.
    pub max_position_embeddings: u64,
    /// The instances on which the job fits, cheapest job first (those without a price last).
    pub instances: Vec<InstanceFit>,
}

impl Fit {
    pub fn fits(&self) -> bool {
        self.peak_bytes <= self.capacity_bytes && self.host_peak_bytes <= self.host_capacity_bytes
    }
}

/// Why there is no search for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FitError {
    /// No node of that name; the train nodes there are.
    Unknown { node: String, train_nodes: Vec<String> },
    /// The node is not a train node.
    NotTrain { node: String, kind: &'static str },
    /// Its instance or model is not known (or not a CUDA instance), so nothing is estimated.
    NotEstimated { node: String },
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::Unknown { node, train_nodes } if train_nodes.is_empty() => {
                write!(f, "there is no node `{node}`, and the pipeline has no train node to fit")
            }
            FitError::Unknown { node, train_nodes } => {
                write!(f, "there is no node `{node}`; the train nodes are {}", quoted(train_nodes))
            }
            FitError::NotTrain { node, kind } => {
                write!(f, "`{node}` is a {kind} node; --fit searches the batch and sequence length of a train node")
            }
            FitError::NotEstimated { node } => write!(
                f,
                "`{node}` has no memory estimate: give it a CUDA instance from the catalog (`compute = \"ml.g5.2xlarge\" x 1`) and a model the catalog or its config.json describes"
            ),
        }
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Whether a step of `setup` fits `instance`; its GPU peak when it does.
fn fits_on(setup: &TrainSetup<'_>, instance: &Instance) -> Option<u64> {
    let m = memory::train_memory(setup);
    (m.gpu_peak <= instance.gpu_memory_mib * memory::MIB && m.host_peak <= instance.memory_gib * GIB)
        .then_some(m.gpu_peak)
}

/// The largest `v` in `1..=upper` for which `peak(v)` is `Some`, assuming that once a value does
/// not fit no larger one does; `None` when 1 does not fit.
fn largest(upper: u64, peak: impl Fn(u64) -> Option<u64>) -> Option<Limit> {
    let mut best = Limit { value: 1, peak_bytes: peak(1)? };
    let (mut lo, mut hi) = (1, upper.max(1));
    // Invariant: lo fits; every value above hi does not.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match peak(mid) {
            Some(p) => {
                best = Limit { value: mid, peak_bytes: p };
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    Some(best)
}

/// The most a micro-batch is searched up to.
const MAX_BATCH: u64 = 4096;

impl Ctx<'_> {
    /// The fit search for train node `node`, which this context has estimated.
    pub(super) fn fit(&self, node: &TypedNode) -> Option<Fit> {
        let (instance, count, facts) = self.train_target(node)?;
        let setup = self.setup(node, &facts, instance, count);
        let declared = memory::train_memory(&setup);
        let max_batch = largest(MAX_BATCH, |b| fits_on(&TrainSetup { micro_batch: b, ..setup.clone() }, instance));
        let max_seq_len = largest(facts.max_position_embeddings.max(1), |s| {
            fits_on(&TrainSetup { seq_len: s, ..setup.clone() }, instance)
        });
        let instances = self.instance_fits(node, &setup, instance, count);
        Some(Fit {
            node: node.name.clone(),
            instance: instance.name.clone(),
            count,
            gpu: instance.gpu.clone(),
            capacity_bytes: instance.gpu_memory_mib * memory::MIB,
            host_capacity_bytes: instance.memory_gib * GIB,
            per_device_batch: setup.micro_batch,
            seq_len: setup.seq_len,
            peak_bytes: declared.gpu_peak,
            host_peak_bytes: declared.host_peak,
            max_batch,
            max_seq_len,
            max_position_embeddings: facts.max_position_embeddings,
            instances,
        })
    }

    /// Every CUDA instance with a price (bf16-capable when the node's is) on which the job fits,
    /// at its micro-batch or the largest divisor of it that fits, cheapest job first.
    fn instance_fits(
        &self,
        node: &TypedNode,
        setup: &TrainSetup<'_>,
        current: &Instance,
        count: u64,
    ) -> Vec<InstanceFit> {
        let mut found: Vec<InstanceFit> = self
            .catalog
            .instances
            .iter()
            .filter(|i| i.accelerator == Accelerator::Cuda && (i.price_usd_per_hour > 0.0 || i.name == current.name))
            .filter(|i| i.bf16 || !current.bf16)
            .filter_map(|candidate| {
                let on = |b: u64| {
                    let s = TrainSetup { gpus_per_node: candidate.gpu_count.max(1), micro_batch: b, ..setup.clone() };
                    fits_on(&s, candidate)
                };
                let batch = setup.micro_batch.max(1);
                let (b, peak) =
                    (1..=batch).rev().filter(|b| batch.is_multiple_of(*b)).find_map(|b| on(b).map(|p| (b, p)))?;
                let grad_accum_factor = batch / b;
                let (hours, usd) = self.job_cost(node, candidate, count, b, grad_accum_factor);
                Some(InstanceFit {
                    instance: candidate.name.clone(),
                    count,
                    gpu: candidate.gpu.clone(),
                    gpus: candidate.gpu_count.max(1),
                    capacity_bytes: candidate.gpu_memory_mib * memory::MIB,
                    per_device_batch: b,
                    grad_accum_factor,
                    peak_bytes: peak,
                    hours,
                    usd,
                    declared: candidate.name == current.name,
                })
            })
            .collect();
        found.sort_by(|a, b| {
            let cost = |f: &InstanceFit| f.usd.unwrap_or(f64::INFINITY);
            cost(a).total_cmp(&cost(b)).then(a.instance.cmp(&b.instance))
        });
        found
    }

    /// Hours and dollars of the job of `node` changed to run on `instance` x `count` at
    /// micro-batch `batch` with `grad_accum` multiplied by `factor`: the node's estimate, made
    /// again on a copy (whose step is known to fit, so no suggestion is searched).
    fn job_cost(
        &self,
        node: &TypedNode,
        instance: &Instance,
        count: u64,
        batch: u64,
        factor: u64,
    ) -> (Option<f64>, Option<f64>) {
        let mut changed = node.clone();
        if let Some(compute) = &mut changed.compute {
            compute.instance.clone_from(&instance.name);
            compute.count = count;
        }
        let accum = node.fields.int("grad_accum").unwrap_or(1).max(1);
        set_int(&mut changed, "per_device_batch", i64::try_from(batch).unwrap_or(i64::MAX));
        set_int(&mut changed, "grad_accum", accum.saturating_mul(i64::try_from(factor).unwrap_or(1)));
        let mut scratch = Ctx {
            program: self.program,
            catalog: self.catalog,
            profiles: self.profiles,
            diagnostics: Vec::new(),
            unknown_reported: true,
            searching: true,
            calibration: None,
        };
        scratch.train(&changed).map_or((None, None), |e| (e.hours, e.usd))
    }
}

/// Sets an integer field of a node's copy.
fn set_int(node: &mut TypedNode, name: &str, value: i64) {
    let span = node.name_span;
    let entry = node.fields.0.entry(name.to_owned()).or_insert_with(|| FieldVal {
        val: Val::Int(value),
        span,
        key_span: span,
        origin: Origin::Family,
    });
    entry.val = Val::Int(value);
}

/// The fit search for train node `name` of `program`.
pub fn search(
    program: &crate::check::Program,
    catalog: &crate::catalog::Catalog,
    profiles: &super::Profiles<'_>,
    name: &str,
) -> Result<Fit, FitError> {
    let Some(node) = program.node(name) else {
        let train_nodes = program.nodes.iter().filter(|n| n.kind == NodeKind::Train).map(|n| n.name.clone()).collect();
        return Err(FitError::Unknown { node: name.to_owned(), train_nodes });
    };
    if node.kind != NodeKind::Train {
        return Err(FitError::NotTrain { node: name.to_owned(), kind: node.kind.as_str() });
    }
    let ctx = Ctx {
        program,
        catalog,
        profiles,
        diagnostics: Vec::new(),
        unknown_reported: true,
        searching: true,
        calibration: None,
    };
    ctx.fit(node).ok_or_else(|| FitError::NotEstimated { node: name.to_owned() })
}
