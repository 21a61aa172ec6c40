//! The estimator: per-GPU memory, host memory, disk, tokens, hours and dollars for every node that
//! runs as a job (train, merge, evaluate), and a pipeline total.
//!
//! `memory.rs` models one training step term by term, `time.rs` turns tokens into FLOPs and hours.
//! This module builds their inputs from the checked program, models merge and evaluate jobs, and
//! reports what does not fit (GPU, host RAM, disk, budget) as diagnostics. An out-of-memory error
//! proposes changes that fit, each one re-estimated with the same model, so a suggestion is never
//! a guess. docs/estimator.md explains every term and validates the model against published
//! measurements.

pub mod calibration;
pub mod fit;
pub mod memory;
pub mod padding;
pub mod time;

use crate::catalog::{Accelerator, Catalog, GpuFacts, Instance, ModelFacts};
use crate::check::{NodeType, Program, TypedNode, Val};
use crate::diagnostics::{Code, Diagnostic, Label};
use crate::syntax::ast::NodeKind;
use calibration::Calibration;
use memory::{Attention, Fsdp, Memory, Method, Quant, Sharding, Term, TrainSetup, GIB};
use serde::Deserialize;
use time::TokenSource;

/// What the runtime's data engine measured for a chat node (`.tunec/<pipeline>/profiles/<node>.json`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct DataProfile {
    /// Conversations kept after column checks, deduplication and the overflow policy.
    pub rows: u64,
    /// Mean tokens per kept conversation.
    pub mean_tokens: f64,
    #[serde(default)]
    pub max_tokens: u64,
    /// Tokens that carry loss (assistant turns) and tokens that do not, over all kept rows; absent
    /// from profiles written before they were counted.
    #[serde(default)]
    pub trained_tokens: Option<u64>,
    #[serde(default)]
    pub masked_tokens: Option<u64>,
    /// The mean tokens of a row's final assistant turn: what an evaluation generates.
    #[serde(default)]
    pub mean_answer_tokens: Option<f64>,
    /// Rows by length, in power-of-two buckets ([`padding`]); empty in profiles written before.
    #[serde(default)]
    pub histogram: Vec<padding::Bucket>,
}

impl DataProfile {
    /// The share of tokens that carry loss, when the profile counted them.
    pub fn trained_fraction(&self) -> Option<f64> {
        let (trained, masked) = (self.trained_tokens?, self.masked_tokens?);
        (trained + masked > 0).then(|| trained as f64 / (trained + masked) as f64)
    }
    /// Parses a profile file; `None` when it is not one.
    pub fn parse(text: &str) -> Option<DataProfile> {
        serde_json::from_str(text).ok()
    }
}

/// The estimate of one job node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeEstimate {
    pub node: String,
    pub instance: String,
    pub instance_count: u64,
    pub gpu_peak_bytes: u64,
    pub gpu_capacity_bytes: u64,
    pub gpu_terms: Vec<Term>,
    pub host_peak_bytes: u64,
    pub host_capacity_bytes: u64,
    pub host_terms: Vec<Term>,
    pub disk_bytes: u64,
    pub disk_terms: Vec<Term>,
    /// Tokens processed (trained, generated) and where the count came from.
    pub tokens: Option<u64>,
    /// Of a training job's tokens, those that carry loss (assistant turns), when the data profile
    /// counted them.
    pub trained_tokens: Option<u64>,
    pub token_source: Option<TokenSource>,
    pub hours: Option<f64>,
    pub usd: Option<f64>,
    pub spot: bool,
    /// A train job without packing: token positions computed per real token, the padding of its
    /// micro-batches as the data profile's lengths imply ([`padding`]).
    pub padding_factor: Option<f64>,
    /// What `packing = true` would take off the hours and the cost (no padding computed).
    pub packing_saves: Option<(f64, Option<f64>)>,
    /// The team's calibration entry applied to a train job ([`calibration`]).
    pub calibration: Option<calibration::Entry>,
}

/// Estimates for a whole program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimates {
    pub nodes: Vec<NodeEstimate>,
    pub total_hours: f64,
    pub total_usd: f64,
    /// False when some job's time or cost could not be estimated.
    pub complete: bool,
    /// Node name → index into `nodes`.
    index: std::collections::BTreeMap<String, usize>,
}

impl Estimates {
    pub fn node(&self, name: &str) -> Option<&NodeEstimate> {
        self.index.get(name).and_then(|&i| self.nodes.get(i))
    }
}

/// Looks up per-node data profiles; the runtime's journal provides them.
pub type Profiles<'a> = dyn Fn(&str) -> Option<DataProfile> + 'a;

/// Estimates every job node and reports what does not fit.
pub fn estimate(program: &Program, catalog: &Catalog, profiles: &Profiles<'_>) -> (Estimates, Vec<Diagnostic>) {
    estimate_with(program, catalog, profiles, None)
}

/// [`estimate`] with a team's calibration applied to the train jobs it has factors for.
pub fn estimate_with(
    program: &Program,
    catalog: &Catalog,
    profiles: &Profiles<'_>,
    calibration: Option<&Calibration>,
) -> (Estimates, Vec<Diagnostic>) {
    let mut ctx = Ctx {
        program,
        catalog,
        profiles,
        diagnostics: Vec::new(),
        unknown_reported: false,
        searching: false,
        calibration,
    };
    let mut nodes = Vec::new();
    for &i in &program.order {
        let node = &program.nodes[i];
        let est = match node.kind {
            NodeKind::Train => ctx.train(node),
            NodeKind::Merge => ctx.merge(node),
            NodeKind::Evaluate => ctx.evaluate(node),
            _ => None,
        };
        nodes.extend(est);
    }
    let complete = nodes.iter().all(|n| n.usd.is_some());
    let total_hours = nodes.iter().filter_map(|n| n.hours).sum();
    let total_usd = nodes.iter().filter_map(|n| n.usd).sum();
    let index = nodes.iter().enumerate().map(|(i, n)| (n.node.clone(), i)).collect();
    let estimates = Estimates { nodes, total_hours, total_usd, complete, index };
    if let Some((budget, span)) = program.budget {
        if total_usd > budget {
            let mut d = Diagnostic::new(
                Code::Budget,
                program.file,
                format!("the estimated cost ${total_usd:.2} exceeds the budget ${budget:.2}"),
                Label::new(span, format!("budget ${budget:.2}")),
            )
            .with_help("lower the cost (fewer epochs or rows, spot = true, a cheaper instance) or raise the budget");
            for n in &estimates.nodes {
                if let (Some(usd), Some(node)) = (n.usd, program.node(&n.node)) {
                    d = d.with_label(Label::new(node.name_span, format!("${usd:.2}")));
                }
            }
            ctx.diagnostics.push(d);
        }
    }
    (estimates, ctx.diagnostics)
}

struct Ctx<'a> {
    program: &'a Program,
    catalog: &'a Catalog,
    profiles: &'a Profiles<'a>,
    diagnostics: Vec<Diagnostic>,
    unknown_reported: bool,
    /// Estimating a changed copy of a node for the fit search: no suggestions are searched.
    searching: bool,
    calibration: Option<&'a Calibration>,
}

/// Rows and mean tokens of the conversations a reference reaches.
struct Data {
    rows: Option<u64>,
    mean_tokens: f64,
    seq_len: u64,
    source: TokenSource,
    /// From the data profile: the share of tokens that carry loss, and the mean tokens of the
    /// final answer.
    trained_fraction: Option<f64>,
    answer_tokens: Option<f64>,
    /// The profile's length histogram and longest row, for the padding.
    histogram: Vec<padding::Bucket>,
    max_tokens: u64,
}

/// The instance a job runs on and how many, as the checker resolved them.
fn instance_of(node: &TypedNode) -> Option<(&str, u64)> {
    node.compute.as_ref().map(|c| (c.instance.as_str(), c.count))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

impl<'a> Ctx<'a> {
    fn gpu(&self, instance: &Instance) -> Option<&GpuFacts> {
        self.catalog.gpus.iter().find(|g| g.name == instance.gpu)
    }

    /// Rows, mean length and sequence length of a chat reference (`parts.train`, `convo`).
    fn data(&mut self, reference: Option<&crate::check::RefVal>) -> Option<Data> {
        let reference = reference?;
        let program = self.program;
        let referenced = program.node(&reference.node)?;
        let (chat, fraction) = match (&reference.part, referenced.kind) {
            (Some(part), NodeKind::Split) => {
                let chat = referenced.fields.reference("data")?.node.clone();
                (program.node(&chat)?, referenced.fields.float(part).unwrap_or(1.0))
            }
            _ => (referenced, 1.0),
        };
        let seq_len = u64::try_from(chat.fields.int("seq_len").unwrap_or(2048)).unwrap_or(2048);
        if let Some(profile) = (self.profiles)(&chat.name) {
            return Some(Data {
                rows: Some((profile.rows as f64 * fraction).round() as u64),
                mean_tokens: profile.mean_tokens,
                seq_len,
                source: TokenSource::Profile,
                trained_fraction: profile.trained_fraction(),
                answer_tokens: profile.mean_answer_tokens.filter(|t| *t > 0.0),
                histogram: profile.histogram.clone(),
                max_tokens: profile.max_tokens,
            });
        }
        let dataset = chat.fields.reference("data").and_then(|d| program.node(&d.node))?;
        let declared_rows = dataset
            .fields
            .int("rows")
            .and_then(|r| u64::try_from(r).ok())
            .or_else(|| dataset.fields.str("split").and_then(slice_rows));
        let (mean_tokens, source) = match dataset.fields.int("mean_tokens") {
            Some(m) => (m as f64, TokenSource::Declared),
            None => (seq_len as f64 / 4.0, TokenSource::DefaultLength),
        };
        if declared_rows.is_none() && !self.unknown_reported {
            self.unknown_reported = true;
            self.diagnostics.push(
                Diagnostic::new(
                    Code::UnknownSize,
                    program.file,
                    format!("the size of `{}` is unknown, so time and cost are not estimated", dataset.name),
                    Label::new(dataset.name_span, "no row count"),
                )
                .with_help("declare `rows = N` (and `mean_tokens = M`) on the dataset, or slice it (`split = \"train[:10000]\"`)"),
            );
        }
        Some(Data {
            rows: declared_rows.map(|r| (r as f64 * fraction).round() as u64),
            mean_tokens,
            seq_len,
            source,
            trained_fraction: None,
            answer_tokens: None,
            histogram: Vec::new(),
            max_tokens: 0,
        })
    }

    fn setup<'m>(&self, node: &TypedNode, facts: &'m ModelFacts, instance: &Instance, count: u64) -> TrainSetup<'m> {
        let f = &node.fields;
        let method = match f.word("method") {
            Some("qlora") => Method::Qlora,
            Some("full") => Method::Full,
            _ => Method::Lora,
        };
        let quant = match f.word("quant") {
            Some("nf4" | "fp4") => Quant::FourBit { double_quant: f.bool("quant.double_quant").unwrap_or(true) },
            Some("int8") => Quant::Int8,
            _ => Quant::None,
        };
        let targets = match f.path("method.targets").map(|v| &v.val) {
            Some(Val::Targets(Some(list))) => Some(list.iter().map(|(n, _)| n.clone()).collect()),
            _ => None,
        };
        let modules_to_save = f.strings("method.modules_to_save");
        let fsdp = f.word("fsdp").map(|w| Fsdp {
            sharding: match w {
                "shard_grad_op" => Sharding::ShardGradOp,
                "hybrid_shard" => Sharding::HybridShard,
                _ => Sharding::FullShard,
            },
            offload: f.bool("fsdp.offload").unwrap_or(false),
            use_orig_params: f.bool("fsdp.use_orig_params").unwrap_or(false),
        });
        let seq_len = self
            .program
            .node(f.reference("data").map_or("", |d| d.node.as_str()))
            .and_then(|n| match (&n.ty, n.fields.int("seq_len")) {
                (_, Some(s)) => Some(s),
                (NodeType::Splits { .. }, None) => n
                    .fields
                    .reference("data")
                    .and_then(|c| self.program.node(&c.node))
                    .and_then(|c| c.fields.int("seq_len")),
                _ => None,
            })
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(2048);
        TrainSetup {
            model: facts,
            method,
            quant,
            lora_r: u64::try_from(f.int("method.r").unwrap_or(16)).unwrap_or(16),
            targets,
            lora_dropout: f.float("method.dropout").unwrap_or(0.0) > 0.0,
            modules_to_save,
            dtype_bytes: if f.word("precision") == Some("fp32") { 4 } else { 2 },
            fsdp,
            gpus_per_node: instance.gpu_count.max(1),
            nodes: count,
            micro_batch: u64::try_from(f.int("per_device_batch").unwrap_or(1)).unwrap_or(1),
            seq_len,
            gradient_checkpointing: f.bool("gradient_checkpointing").unwrap_or(true),
            attention: if facts.attention(f.word("attention")) == "eager" {
                Attention::Eager
            } else {
                Attention::Fused
            },
            optimizer: f.word("optimizer").unwrap_or("adamw_torch").to_owned(),
            cpu_ram_efficient_loading: f.bool("fsdp.cpu_ram_efficient_loading").unwrap_or(true),
            kbit_prepare: true,
        }
    }

    /// A train node's CUDA instance, instance count and model, when all are known.
    fn train_target(&self, node: &TypedNode) -> Option<(&'a Instance, u64, ModelFacts)> {
        let (instance_name, count) = instance_of(node)?;
        let instance = self.catalog.instance(instance_name)?;
        if instance.accelerator != Accelerator::Cuda {
            return None;
        }
        let facts = self.program.model_facts(&node.fields.reference("model")?.node)?.clone();
        Some((instance, count, facts))
    }

    fn train(&mut self, node: &TypedNode) -> Option<NodeEstimate> {
        let (instance, count, facts) = self.train_target(node)?;
        let instance_name = instance.name.as_str();
        let setup = self.setup(node, &facts, instance, count);
        let mut mem = memory::train_memory(&setup);
        let calibrated = self.calibration.and_then(|c| c.entry(&instance.gpu, &facts.family));
        if let Some(f) = calibrated.and_then(|e| e.memory.as_ref()).filter(|f| f.factor > 1.0) {
            // The runs this team recorded on this GPU and family used more than estimated.
            let bytes = (mem.gpu_peak as f64 * (f.factor - 1.0)).ceil() as u64;
            mem.gpu_terms.push(Term { name: "calibration", bytes });
            mem.gpu_peak = mem.gpu_peak.saturating_add(bytes);
        }
        let capacity = instance.gpu_memory_mib * memory::MIB;
        if mem.gpu_peak > capacity && !self.searching {
            let help = self.fixes(node, &setup, instance);
            let terms: Vec<String> =
                largest(&mem.gpu_terms, 3).iter().map(|t| format!("{} {}", t.name, gib(t.bytes))).collect();
            self.diagnostics.push(
                Diagnostic::new(
                    Code::GpuMemory,
                    self.program.file,
                    format!(
                        "`{}` needs an estimated {} per GPU; each {} has {}",
                        node.name,
                        gib(mem.gpu_peak),
                        instance.gpu,
                        gib(capacity)
                    ),
                    Label::new(node.span_of("compute"), format!("largest terms: {}", terms.join(", "))),
                )
                .with_label(Label::new(node.name_span, format!("peak {} of {}", gib(mem.gpu_peak), gib(capacity))))
                .with_help(help),
            );
        }
        let host_capacity = instance.memory_gib * GIB;
        if mem.host_peak > host_capacity {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::HostMemory,
                    self.program.file,
                    format!(
                        "`{}` needs an estimated {} of host RAM; `{instance_name}` has {}",
                        node.name,
                        gib(mem.host_peak),
                        gib(host_capacity)
                    ),
                    Label::new(node.span_of("compute"), "not enough host RAM"),
                )
                .with_help(if setup.fsdp.is_some_and(|f| f.offload) {
                    "offload keeps the model's shards in host RAM: turn `offload` off, use more instances, or an instance with more memory"
                } else {
                    "use an instance with more memory, or more instances to spread the loading"
                }),
            );
        }

        // Tokens, time, cost.
        let data = self.data(node.fields.reference("data"));
        let eval = self.data(node.fields.reference("eval"));
        let world = instance.gpu_count.max(1) * count;
        let epochs = node.fields.int("epochs").unwrap_or(1).max(1) as f64;
        let global_batch =
            (setup.micro_batch * u64::try_from(node.fields.int("grad_accum").unwrap_or(1)).unwrap_or(1) * world) as f64;
        let (tokens, steps, source) = match &data {
            Some(Data { rows: Some(rows), mean_tokens, source, .. }) => {
                let (sequences, steps) = match node.fields.int("max_steps") {
                    Some(max_steps) => (max_steps as f64 * global_batch, max_steps as f64),
                    None => (*rows as f64 * epochs, (*rows as f64 * epochs / global_batch).ceil()),
                };
                (Some(sequences * mean_tokens), steps, Some(*source))
            }
            _ => (None, 0.0, data.as_ref().map(|d| d.source)),
        };
        let full = setup.method == Method::Full;
        let mean = data.as_ref().map_or(0.0, |d| d.mean_tokens);
        let counts = facts.counts();
        let attention = time::attention_forward_per_token(facts.num_layers, attention_width(&facts), mean);
        // A token's FLOPs run through the parameters it uses: with experts, only its top-k.
        let flops_per_token = time::train_flops_per_token(counts.active, full, setup.gradient_checkpointing, attention);
        let utilization = node.fields.float("utilization").or_else(|| {
            self.gpu(instance).map(|g| match setup.method {
                Method::Lora => g.utilization_lora,
                Method::Qlora => g.utilization_qlora,
                Method::Full => g.utilization_full,
            })
        });
        let offload_factor = if setup.fsdp.is_some_and(|f| f.offload) { time::OFFLOAD_FACTOR } else { 1.0 };
        let throughput =
            self.gpu(instance).zip(utilization).map(|(g, u)| world as f64 * g.bf16_tflops * 1e12 * u * offload_factor);
        let eval_seconds = match (&eval, throughput) {
            (Some(Data { rows: Some(rows), mean_tokens, .. }), Some(tp)) => {
                let every = node
                    .fields
                    .int("eval_steps")
                    .or_else(|| node.fields.int("save_steps"))
                    .map_or(steps.max(1.0), |e| e as f64);
                let passes = (steps / every.max(1.0)).floor().max(1.0);
                passes * *rows as f64 * mean_tokens * 2.0 * counts.active as f64 / tp
            }
            _ => 0.0,
        };
        // Without packing, each micro-batch is padded to its longest row: those positions are
        // computed too.
        let packing = node.fields.bool("packing").unwrap_or(false);
        let padding_factor = data
            .as_ref()
            .filter(|_| !packing)
            .and_then(|d| padding::factor(&d.histogram, d.max_tokens, setup.micro_batch));
        let padded = padding_factor.unwrap_or(1.0);
        let hours_factor = calibrated.and_then(|e| e.hours.as_ref()).map_or(1.0, |f| f.factor);
        let hours = tokens.zip(throughput).map(|(t, tp)| {
            hours_factor
                * ((t * padded * flops_per_token / tp + eval_seconds) / 3600.0
                    + time::overhead_hours(checkpoint_bytes(&facts)))
        });
        let spot = node.fields.bool("spot").unwrap_or(false);
        let usd = hours.and_then(|h| cost(h, instance, count, spot));
        let packing_saves = tokens.zip(throughput).zip(padding_factor).map(|((t, tp), factor)| {
            let saved = hours_factor * t * (factor - 1.0) * flops_per_token / tp / 3600.0;
            (saved, cost(saved, instance, count, spot))
        });
        if let (Some(h), Some(Val::Duration(limit))) = (hours, node.fields.get("max_runtime").map(|f| &f.val)) {
            let limit_h = *limit as f64 / 3600.0;
            if h > limit_h {
                self.diagnostics.push(
                    Diagnostic::new(
                        Code::TimeLimit,
                        self.program.file,
                        format!("`{}` is estimated at {h:.1} h, longer than its `max_runtime` of {limit_h:.1} h", node.name),
                        Label::new(node.span_of("max_runtime"), node.describe("max_runtime")),
                    )
                    .with_help(format!(
                        "raise `max_runtime` to at least {}h, or train on fewer tokens (rows, epochs, max_steps); SageMaker stops the job at the limit",
                        (h * 1.2).ceil() as u64
                    )),
                );
            }
        }

        // Disk: the downloaded base, the data, two checkpoints, the output.
        let trainable_bytes = if full { facts.params * setup.dtype_bytes } else { mem.trainable_params * 4 };
        let optimizer_state = if full { facts.params * 2 * setup.dtype_bytes } else { mem.trainable_params * 8 };
        let dataset_bytes = tokens.map_or(0, |t| (t / epochs * 20.0) as u64);
        let disk_terms = vec![
            Term { name: "base model", bytes: checkpoint_bytes(&facts) },
            Term { name: "dataset", bytes: dataset_bytes },
            Term { name: "checkpoints (2 kept)", bytes: 2 * (trainable_bytes + optimizer_state) },
            Term { name: "output", bytes: trainable_bytes },
        ];
        let disk = self.disk(node, &disk_terms, instance);
        Some(NodeEstimate {
            node: node.name.clone(),
            instance: instance_name.to_owned(),
            instance_count: count,
            gpu_peak_bytes: mem.gpu_peak,
            gpu_capacity_bytes: capacity,
            gpu_terms: mem.gpu_terms,
            host_peak_bytes: mem.host_peak,
            host_capacity_bytes: host_capacity,
            host_terms: mem.host_terms,
            disk_bytes: disk,
            disk_terms,
            tokens: tokens.map(|t| t.round() as u64),
            trained_tokens: tokens
                .zip(data.as_ref().and_then(|d| d.trained_fraction))
                .map(|(t, share)| (t * share).round() as u64),
            token_source: source,
            hours,
            usd,
            spot,
            padding_factor,
            packing_saves,
            calibration: calibrated.cloned(),
        })
    }

    fn disk(&mut self, node: &TypedNode, terms: &[Term], instance: &Instance) -> u64 {
        let total: u64 = terms.iter().map(|t| t.bytes).sum();
        // Instances with local NVMe use it for /opt/ml; others get an EBS volume of at most 16 TB
        // (the lowering sizes it from this figure).
        let capacity = if instance.local_storage_gb > 0 {
            instance.local_storage_gb * 1_000_000_000
        } else {
            crate::target::sagemaker::MAX_VOLUME_GB * 1_000_000_000
        };
        if total > capacity {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::DiskSpace,
                    self.program.file,
                    format!(
                        "`{}` needs an estimated {:.0} GB of disk; `{}` has {:.0} GB",
                        node.name,
                        total as f64 / 1e9,
                        instance.name,
                        capacity as f64 / 1e9
                    ),
                    Label::new(node.span_of("compute"), "not enough storage"),
                )
                .with_help("save fewer checkpoints (raise save_steps) or use an instance with more storage"),
            );
        }
        total
    }

    /// Changes that make a training step fit, each re-estimated: a smaller micro-batch, gradient
    /// checkpointing, CPU offload, a shorter sequence, and the instance of the cheapest job that
    /// fits (the fit search's).
    fn fixes(&self, node: &TypedNode, setup: &TrainSetup<'_>, instance: &Instance) -> String {
        let mut found: Vec<String> = Vec::new();
        let capacity = instance.gpu_memory_mib * memory::MIB;
        let host = instance.memory_gib * GIB;
        let fits = |s: &TrainSetup<'_>| {
            let m = memory::train_memory(s);
            (m.gpu_peak <= capacity && m.host_peak <= host).then_some(m.gpu_peak)
        };
        let search = self.fit(node);
        let here = search.as_ref().and_then(|f| f.instances.iter().find(|i| i.declared));
        if let Some(here) = here.filter(|h| h.grad_accum_factor > 1) {
            found.push(format!(
                "`per_device_batch = {}` with {}x `grad_accum` ({})",
                here.per_device_batch,
                here.grad_accum_factor,
                gib(here.peak_bytes)
            ));
        }
        if !setup.gradient_checkpointing {
            let s = TrainSetup { gradient_checkpointing: true, ..setup.clone() };
            if let Some(peak) = fits(&s) {
                found.push(format!("`gradient_checkpointing = true` ({})", gib(peak)));
            }
        }
        if let Some(f) = setup.fsdp.filter(|f| !f.offload) {
            let s = TrainSetup { fsdp: Some(Fsdp { offload: true, ..f }), ..setup.clone() };
            if let Some(peak) = fits(&s) {
                found.push(format!("`offload = true` in `fsdp` ({})", gib(peak)));
            }
        }
        if let Some(limit) = search.as_ref().and_then(|f| f.max_seq_len.as_ref()).filter(|l| l.value < setup.seq_len) {
            found.push(format!(
                "`seq_len = {}` or less, the longest that fits at this batch ({})",
                limit.value,
                gib(limit.peak_bytes)
            ));
        }
        if let Some(other) = search.as_ref().and_then(|f| f.instances.iter().find(|i| !i.declared)) {
            let batch = if other.grad_accum_factor > 1 {
                format!(
                    " with `per_device_batch = {}` and {}x `grad_accum`",
                    other.per_device_batch, other.grad_accum_factor
                )
            } else {
                String::new()
            };
            let cost = other.usd.map(|usd| format!(", ${usd:.2} for the job")).unwrap_or_default();
            found.push(format!(
                "`compute = \"{}\" x {}`{batch} ({} of {}{cost}, the cheapest job that fits)",
                other.instance,
                other.count,
                gib(other.peak_bytes),
                gib(other.capacity_bytes)
            ));
        }
        if found.is_empty() {
            "no single change fits: combine a smaller batch, gradient checkpointing, FSDP with offload and a larger instance".to_owned()
        } else {
            format!(
                "it fits with {}; `tunec check --fit {}` lists every instance that fits",
                found.join("; or "),
                node.name
            )
        }
    }

    fn merge(&mut self, node: &TypedNode) -> Option<NodeEstimate> {
        let adapter = self.program.node(&node.fields.reference("adapter")?.node)?;
        let (instance_name, count) = instance_of(node)?;
        let instance = self.catalog.instance(instance_name)?;
        let base = match &adapter.ty {
            NodeType::Adapter { base } | NodeType::Model { base } => base.clone(),
            _ => return None,
        };
        let facts = self.program.model_facts(&base)?.clone();
        let dtype_bytes = if node.fields.word("dtype") == Some("fp32") { 4 } else { 2 };
        let weights = facts.params * dtype_bytes;
        let gpus = instance.gpu_count.max(1);
        // merge.py loads the base on the CPU (low_cpu_mem_usage) and merges there; the smoke
        // generation then runs on the GPUs with the weights spread over them.
        let gpu_terms = vec![
            Term { name: "weights (spread over GPUs)", bytes: weights.div_ceil(gpus) },
            Term { name: "CUDA context", bytes: memory::CUDA_CONTEXT },
        ];
        let host_terms =
            vec![Term { name: "base model", bytes: weights }, Term { name: "adapter and runtime", bytes: 2 * GIB }];
        let gpu_peak: u64 = gpu_terms.iter().map(|t| t.bytes).sum();
        let capacity = instance.gpu_memory_mib * memory::MIB;
        if gpu_peak > capacity && instance.accelerator == Accelerator::Cuda {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::GpuMemory,
                    self.program.file,
                    format!(
                        "`{}` needs an estimated {} per GPU for its smoke generation; each {} has {}",
                        node.name,
                        gib(gpu_peak),
                        instance.gpu,
                        gib(capacity)
                    ),
                    Label::new(node.name_span, "the merged weights do not fit the GPUs"),
                )
                .with_help("set `compute` to an instance with more GPU memory in total"),
            );
        }
        let disk_terms = vec![
            Term { name: "base model", bytes: checkpoint_bytes(&facts) },
            Term { name: "merged model", bytes: weights },
        ];
        let hours = time::overhead_hours(checkpoint_bytes(&facts)) + weights as f64 / time::SAVE_BYTES_PER_SEC / 3600.0;
        // Merge jobs run on demand: their request never asks for spot capacity.
        let est = self.job(node, instance, count, gpu_terms, host_terms, disk_terms, None, None, Some(hours), false);
        Some(est)
    }

    fn evaluate(&mut self, node: &TypedNode) -> Option<NodeEstimate> {
        let model = self.program.node(&node.fields.reference("model")?.node)?;
        let (instance_name, count) = instance_of(node)?;
        let instance = self.catalog.instance(instance_name)?;
        let base = match &model.ty {
            NodeType::Adapter { base } | NodeType::Model { base } => base.clone(),
            _ => return None,
        };
        let facts = self.program.model_facts(&base)?.clone();
        let data = self.data(node.fields.reference("data"));
        let batch = u64::try_from(node.fields.int("batch_size").unwrap_or(8)).unwrap_or(8).max(1);
        let max_new = u64::try_from(node.fields.int("max_new_tokens").unwrap_or(512)).unwrap_or(512);
        let seq = data.as_ref().map_or(2048, |d| d.seq_len) + max_new;
        let weights = facts.params * 2;
        let gpus = instance.gpu_count.max(1);
        // K and V in bf16 for every layer; transformers caches latent attention's keys and values
        // expanded, per head.
        let kv_width = match facts.mla {
            Some(mla) => facts.num_heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim + mla.v_head_dim),
            None => 2 * facts.num_kv_heads * facts.head_dim,
        };
        let kv = (batch as f64 * seq as f64 * (facts.num_layers * kv_width * 2) as f64) as u64;
        let gpu_terms = vec![
            Term { name: "weights (spread over GPUs)", bytes: weights.div_ceil(gpus) },
            Term { name: "KV cache", bytes: kv.div_ceil(gpus) },
            Term { name: "logits", bytes: batch * facts.vocab_size * 4 },
            Term { name: "CUDA context", bytes: memory::CUDA_CONTEXT },
        ];
        let capacity = instance.gpu_memory_mib * memory::MIB;
        let peak: u64 = gpu_terms.iter().fold(0u64, |a, t| a.saturating_add(t.bytes));
        if peak > capacity && instance.accelerator == Accelerator::Cuda {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::GpuMemory,
                    self.program.file,
                    format!(
                        "`{}` needs an estimated {} per GPU for generation; each {} has {}",
                        node.name,
                        gib(peak),
                        instance.gpu,
                        gib(capacity)
                    ),
                    Label::new(node.name_span, "weights + KV cache do not fit"),
                )
                .with_help(
                    "lower `batch_size` or `max_new_tokens`, or set `compute` to an instance with more GPU memory",
                ),
            );
        }
        let host_terms = vec![Term { name: "model loading", bytes: weights }, Term { name: "runtime", bytes: 2 * GIB }];
        let disk_terms = vec![Term { name: "model", bytes: weights }];
        let (tokens, source, hours) = match (&data, self.gpu(instance)) {
            (Some(Data { rows: Some(rows), mean_tokens, source, answer_tokens, .. }), Some(gpu)) => {
                // Answers are as long as the data's final answers when the profile measured them, else
                // half a training conversation; capped at max_new_tokens.
                let new_tokens = answer_tokens.unwrap_or(mean_tokens / 2.0).min(max_new as f64);
                let steps = (*rows as f64 / batch as f64).ceil() * new_tokens;
                let step_seconds = weights as f64 / (gpu.memory_bandwidth_gbps * 1e9 * time::DECODE_BANDWIDTH_FRACTION);
                let hours = steps * step_seconds / 3600.0 + time::overhead_hours(weights);
                (Some((*rows as f64 * new_tokens) as u64), Some(*source), Some(hours))
            }
            _ => (None, data.as_ref().map(|d| d.source), None),
        };
        let mut est = self.job(node, instance, count, gpu_terms, host_terms, disk_terms, tokens, source, hours, false);
        est.gpu_capacity_bytes = capacity;
        Some(est)
    }

    #[allow(clippy::too_many_arguments)]
    fn job(
        &mut self,
        node: &TypedNode,
        instance: &Instance,
        count: u64,
        gpu_terms: Vec<Term>,
        host_terms: Vec<Term>,
        disk_terms: Vec<Term>,
        tokens: Option<u64>,
        token_source: Option<TokenSource>,
        hours: Option<f64>,
        spot: bool,
    ) -> NodeEstimate {
        let host_capacity = instance.memory_gib * GIB;
        let host_peak: u64 = host_terms.iter().map(|t| t.bytes).sum();
        if host_peak > host_capacity {
            self.diagnostics.push(
                Diagnostic::new(
                    Code::HostMemory,
                    self.program.file,
                    format!(
                        "`{}` needs an estimated {} of host RAM; `{}` has {}",
                        node.name,
                        gib(host_peak),
                        instance.name,
                        gib(host_capacity)
                    ),
                    Label::new(node.name_span, "not enough host RAM"),
                )
                .with_help(format!("set `compute` to an instance with at least {} of memory", gib(host_peak))),
            );
        }
        let disk = self.disk(node, &disk_terms, instance);
        NodeEstimate {
            node: node.name.clone(),
            instance: instance.name.clone(),
            instance_count: count,
            gpu_peak_bytes: gpu_terms.iter().map(|t| t.bytes).sum(),
            gpu_capacity_bytes: instance.gpu_memory_mib * memory::MIB,
            gpu_terms,
            host_peak_bytes: host_peak,
            host_capacity_bytes: host_capacity,
            host_terms,
            disk_bytes: disk,
            disk_terms,
            tokens,
            trained_tokens: None,
            token_source,
            hours,
            usd: hours.and_then(|h| cost(h, instance, count, spot)),
            spot,
            padding_factor: None,
            packing_saves: None,
            calibration: None,
        }
    }
}

fn cost(hours: f64, instance: &Instance, count: u64, spot: bool) -> Option<f64> {
    (instance.price_usd_per_hour > 0.0).then(|| {
        let rate = if spot { instance.price_usd_per_hour * time::SPOT_FRACTION } else { instance.price_usd_per_hour };
        hours * rate * count as f64
    })
}

fn largest(terms: &[Term], n: usize) -> Vec<&Term> {
    let mut sorted: Vec<&Term> = terms.iter().collect();
    sorted.sort_by_key(|t| std::cmp::Reverse(t.bytes));
    sorted.truncate(n);
    sorted
}

/// Bytes of the checkpoint as published, which a job downloads: 16-bit weights, MXFP4 experts
/// (4.25 bits per weight: 4-bit values and one 8-bit scale per 32) or FP8 linear layers (1 byte;
/// the block scales are negligible).
pub fn checkpoint_bytes(m: &ModelFacts) -> u64 {
    let c = m.counts();
    let total = m.params;
    match m.weights.as_str() {
        "mxfp4" => {
            let experts = c.experts.min(total);
            (experts as f64 * 4.25 / 8.0).ceil() as u64 + (total - experts) * 2
        }
        "fp8" => {
            let linear = c.quantizable.min(total);
            linear + (total - linear) * 2
        }
        _ => total * 2,
    }
}

/// The query width attention's FLOPs scale with: heads x head_dim, or for latent attention the
/// mean of the query-key and value head widths.
fn attention_width(m: &ModelFacts) -> u64 {
    match m.mla {
        Some(mla) => m.num_heads * (mla.qk_nope_head_dim + mla.qk_rope_head_dim + mla.v_head_dim) / 2,
        None => m.num_heads * m.head_dim,
    }
}

/// The rows a `train[:N]` or `train[M:N]` slice selects, when that is known without the data.
fn slice_rows(split: &str) -> Option<u64> {
    let slice = crate::check::slice::SplitSlice::parse(split).ok()?;
    if slice.needs_count() {
        return None;
    }
    let (from, to) = slice.range(None);
    to.map(|to| to - from)
}

/// Memory of a train setup: re-exported for calibration.
pub fn train_memory(setup: &TrainSetup<'_>) -> Memory {
    memory::train_memory(setup)
}
