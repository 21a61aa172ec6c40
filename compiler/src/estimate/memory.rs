//! The per-GPU and host memory model of a training step.
//!
//! Input is a [`TrainSetup`]: the architecture, the method, the parallel layout and the batch.
//! Output is a list of named terms (bytes) whose sum is the estimated peak, so a user can see
//! which term does not fit. The terms and their sources are in docs/estimator.md §2:
//!
//! - **weights**: quantized linears at 4.127 bit/param (NF4 with double quantization; 4.5 without)
//!   or 1 B (int8); everything bitsandbytes does not quantize (embeddings, `lm_head`, norms,
//!   biases, fused expert parameters, a vision tower) in bf16; unquantized models at the training
//!   dtype (fp32 shards for full fine-tuning under FSDP, which accelerate upcasts). A
//!   mixture-of-experts model keeps every expert resident: they are their own term, `expert
//!   weights`. FSDP shards them over the sharding group; CPU offload moves the shards to host
//!   RAM; bitsandbytes' quantization constants live in the modules, so FSDP leaves them whole on
//!   every GPU (`quantization constants`). QLoRA without FSDP casts the parameters left in 16
//!   bits to fp32 (k-bit preparation), which makes the residual stream fp32 and adds autocast's
//!   bf16 copy of `lm_head` (`lm_head bf16 copy`).
//! - **gathered units**: with FULL_SHARD (FSDP1, transformer auto-wrap) the root unit (embeddings,
//!   `lm_head`, final norm) stays gathered for the whole step, plus the decoder layer being
//!   computed and the one being prefetched (the largest layer: with its experts, for MoE), each
//!   in a full-size buffer beside the local shard. Full fine-tuning adds the unsharded gradients
//!   of one layer and of `lm_head` before their reduce-scatter.
//! - **trainable state**: LoRA matrices r·(d_in + d_out) per targeted linear, upcast to fp32 by
//!   PEFT, their fp32 gradients and the optimizer state (AdamW: 2 fp32 states; 8-bit optimizers: 2
//!   bytes; SGD: none); full fine-tuning keeps weights, gradients and AdamW state in the training
//!   dtype (train.py loads the model in that dtype, so there is no fp32 master copy). FSDP shards
//!   them; offload moves them to host RAM. Under FSDP, accelerate keeps the trainable shards in
//!   fp32 (4 + 4 + 8 B per parameter with AdamW). With `use_orig_params`, FSDP allocates
//!   gradients for the frozen weights of mixed units as well.
//! - **activations**: per layer s·b·(6h + 4d_q + 2(d_k + d_v)) bytes of attention with fused/flash
//!   kernels (10h + 4h_kv for Llama, where d_q = h), plus 8i for a dense gated MLP or, in a MoE
//!   layer, 8i per routed expert of each token (top-k of them; all of them where the
//!   implementation runs every expert) plus the shared expert and the routing buffers (fp32 router
//!   logits and probabilities, each token's gathered input and weighted output per expert), plus
//!   4·b·heads·s² for eager attention's scores, plus bf16+mask copies of each targeted module's
//!   input when LoRA dropout is on, plus HF RMSNorm's fp32 upcast (8·s·b·h). With gradient
//!   checkpointing only each layer's input (2·s·b·h) is kept and one layer (the largest) is
//!   recomputed at a time.
//! - **transient**: the larger of the loss's peak and the recompute of one layer under gradient
//!   checkpointing. The loss reserves b·s·vocab elements at 14 B (the bf16 logits, the fp32
//!   upcast, the log-softmax and its gradient: the caching allocator keeps each block), and under
//!   checkpointing the blocks a layer's MLP forward left cached (8i per token with LoRA on the
//!   MLP, 6i without), which the loss's larger tensors cannot reuse. The loss and the recompute
//!   never coexist: the loss backward finishes before the first layer is recomputed.
//! - **runtime**: CUDA context and cuBLAS workspaces (750 MiB), NCCL buffers when more than one
//!   GPU takes part (400 MiB), and allocator slack (10 % of everything above), which is what makes
//!   the estimate comparable to `max_memory_reserved` rather than `max_memory_allocated`.
//!
//! Deliberate limitations: no packing-aware attention masks, no tensor or pipeline parallelism, no
//! activation offloading; sequences are taken at their maximum length (the collator pads to the
//! longest in a micro-batch, and the peak is set by the longest).

use crate::catalog::architecture::{self, AttentionKind, ExpertCompute, Group, MoeKind, Targets};
use crate::catalog::ModelFacts;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// CUDA context (~300-500 MiB with lazy module loading) plus cuBLAS/cuDNN workspaces and loaded
/// kernels.
pub const CUDA_CONTEXT: u64 = 750 * MIB;
/// What PyTorch's caching allocator reserves beyond what tensors occupy (fragmentation, rounding
/// to block sizes): Answer.AI saw 10.22 GiB reserved for 9.16 GiB allocated, 11.6 %, of which a
/// layer's cached MLP buffers, now a term of their own, explain 1.8 points (docs/estimator.md §2.4).
pub const ALLOCATOR_SLACK_PERCENT: u64 = 10;
/// Bytes per logits element at the loss's reserved peak: the bf16 logits, the fp32 upcast, the
/// log-softmax and its gradient (docs/estimator.md §2.4).
const LOGITS_BYTES: f64 = 14.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Lora,
    Qlora,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    None,
    /// NF4 or FP4, with or without double quantization.
    FourBit {
        double_quant: bool,
    },
    Int8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharding {
    FullShard,
    ShardGradOp,
    HybridShard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fsdp {
    pub sharding: Sharding,
    pub offload: bool,
    pub use_orig_params: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    /// SDPA or FlashAttention-2: no s² term is stored.
    Fused,
    Eager,
}

/// Everything the memory model needs about one training node.
#[derive(Clone, Debug)]
pub struct TrainSetup<'a> {
    pub model: &'a ModelFacts,
    pub method: Method,
    pub quant: Quant,
    pub lora_r: u64,
    /// `None` is `all_linear`.
    pub targets: Option<Vec<String>>,
    pub lora_dropout: bool,
    pub modules_to_save: Vec<String>,
    /// Bytes per element of the training dtype (bf16/fp16: 2, fp32: 4).
    pub dtype_bytes: u64,
    pub fsdp: Option<Fsdp>,
    pub gpus_per_node: u64,
    pub nodes: u64,
    pub micro_batch: u64,
    pub seq_len: u64,
    pub gradient_checkpointing: bool,
    pub attention: Attention,
    pub optimizer: String,
    /// FSDP loads the checkpoint on rank 0 only and broadcasts it.
    pub cpu_ram_efficient_loading: bool,
    /// The entry script prepares a quantized base as PEFT's `prepare_model_for_kbit_training`
    /// does, casting every 16-bit parameter bitsandbytes left alone (fused experts excepted) to
    /// fp32. tunec's train.py does so for QLoRA without FSDP; it applies only then.
    pub kbit_prepare: bool,
}

/// One named memory term.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub name: &'static str,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Memory {
    /// Per GPU; they sum to `gpu_peak`.
    pub gpu_terms: Vec<Term>,
    pub gpu_peak: u64,
    /// Per instance; they sum to `host_peak`.
    pub host_terms: Vec<Term>,
    pub host_peak: u64,
    /// Trainable parameters (LoRA matrices, saved modules, or the whole model).
    pub trainable_params: u64,
}

/// Parameters in the linear layers of the decoder that bitsandbytes quantizes (nn.Linear, fused
/// experts excluded).
pub fn linear_params(model: &ModelFacts) -> u64 {
    model.counts().quantizable
}

/// The root FSDP unit: embeddings, the untied `lm_head` and the final norm.
pub fn root_params(model: &ModelFacts) -> u64 {
    model.counts().root
}

/// LoRA parameters for rank `r` on the targeted modules of every layer (`None` is `all_linear`).
pub fn lora_params(model: &ModelFacts, r: u64, targets: Option<&[String]>) -> u64 {
    architecture::lora_params(model, r, &Targets::new(targets))
}

/// Activation bytes per token of one decoder layer with fused attention, without norms' upcast:
/// (attention, dense layer's MLP, MoE layer's MLP and routing).
fn layer_activation_per_token(m: &ModelFacts) -> (f64, f64, f64) {
    let h = m.hidden_size as f64;
    let heads = m.num_heads as f64;
    let (d_q, d_k, d_v, latent) = match (m.arch.attention, m.mla) {
        (AttentionKind::Mla, Some(mla)) => {
            let qk = (mla.qk_nope_head_dim + mla.qk_rope_head_dim) as f64;
            let latent = (mla.q_lora_rank + mla.kv_lora_rank + mla.qk_rope_head_dim) as f64;
            (heads * qk, heads * qk, heads * mla.v_head_dim as f64, latent)
        }
        _ => {
            let kv = (m.num_kv_heads * m.head_dim) as f64;
            (heads * m.head_dim as f64, kv, kv, 0.0)
        }
    };
    let attention = 6.0 * h + 4.0 * d_q + 2.0 * (d_k + d_v) + 2.0 * latent;
    let dense = 8.0 * m.intermediate_size as f64;
    let moe = match m.moe.filter(|_| m.arch.is_moe()) {
        Some(moe) => {
            let (e, k, i) = (moe.experts as f64, moe.top_k as f64, moe.intermediate_size as f64);
            let shared = 8.0 * moe.shared_intermediate_size as f64;
            let router = 8.0 * e;
            match m.arch.expert_compute {
                // Each token's gathered input and weighted output per routed expert (bf16), its
                // routing weight (fp32) and index (int64).
                ExpertCompute::Routed => k * 8.0 * i + shared + router + k * (4.0 * h + 12.0),
                // Every token repeated for every expert, and every expert's activations.
                ExpertCompute::All => e * (2.0 * h + 8.0 * i) + shared + router,
            }
        }
        None => dense,
    };
    (attention, dense, moe)
}

/// Bytes per trainable parameter of optimizer state.
fn optimizer_bytes(optimizer: &str, param_bytes: u64) -> u64 {
    match optimizer {
        "sgd" => 0,
        // Factored second moments: O(rows + cols), negligible next to the parameters.
        "adafactor" => 0,
        o if o.contains("8bit") => 2,
        // AdamW keeps two states in the parameter's dtype.
        _ => 2 * param_bytes,
    }
}

fn frac(bytes: u64, divisor: u64) -> u64 {
    bytes.div_ceil(divisor.max(1))
}

/// The memory of one training step.
pub fn train_memory(s: &TrainSetup<'_>) -> Memory {
    let m = s.model;
    let world = (s.gpus_per_node * s.nodes).max(1);
    let counts = m.counts();
    let total = m.params;
    let lin = counts.quantizable.min(total);
    let root = counts.root.min(total);
    let layer_params = counts.max_layer.min(total - root);
    let layer_lin = counts.max_layer_quantizable.min(layer_params);
    let experts = counts.experts.min(total);
    let experts_lin = counts.experts_quantizable.min(experts);
    // Full fine-tuning under FSDP with a 16-bit training dtype: fp32 shards, gradients and state.
    let fp32_master = s.method == Method::Full && s.fsdp.is_some() && s.dtype_bytes < 4;
    let master_bytes = if fp32_master { 4 } else { s.dtype_bytes };

    // Weights, as loaded; the experts of a MoE model apart.
    let (weight_bytes, layer_bytes, root_bytes, expert_bytes) = match s.quant {
        Quant::FourBit { double_quant } => {
            let bits = if double_quant { 4.127 } else { 4.5 };
            let q = |n: u64| (n as f64 * bits / 8.0).ceil() as u64;
            (
                q(lin) + (total - lin) * 2,
                q(layer_lin) + (layer_params - layer_lin) * 2,
                root * 2,
                q(experts_lin) + (experts - experts_lin) * 2,
            )
        }
        Quant::Int8 => (
            lin + (total - lin) * 2,
            layer_lin + (layer_params - layer_lin) * 2,
            root * 2,
            experts_lin + (experts - experts_lin) * 2,
        ),
        Quant::None => {
            // accelerate keeps FSDP's trainable flat parameters in fp32 under bf16/fp16 mixed
            // precision (its `prepare_model`); FSDP gathers them in the compute dtype.
            let stored = if fp32_master { 4 } else { s.dtype_bytes };
            (total * stored, layer_params * s.dtype_bytes, root * s.dtype_bytes, experts * stored)
        }
    };

    // Trainable state.
    let saved: u64 = s
        .modules_to_save
        .iter()
        .map(|name| match name.as_str() {
            "embed_tokens" => m.vocab_size * m.hidden_size,
            "lm_head" => m.vocab_size * m.hidden_size,
            _ => 0,
        })
        .sum();
    let (trainable, param_state_bytes) = match s.method {
        Method::Full => (total, 0),
        Method::Lora | Method::Qlora => {
            let lora = lora_params(m, s.lora_r, s.targets.as_deref());
            // PEFT upcasts adapters to fp32; saved modules keep the training dtype.
            (lora + saved, lora * 4 + saved * s.dtype_bytes)
        }
    };
    let (grad_bytes, opt_bytes) = match s.method {
        Method::Full => (total * master_bytes, total * optimizer_bytes(&s.optimizer, master_bytes)),
        Method::Lora | Method::Qlora => {
            let lora = trainable - saved;
            (
                lora * 4 + saved * s.dtype_bytes,
                lora * optimizer_bytes(&s.optimizer, 4) + saved * optimizer_bytes(&s.optimizer, s.dtype_bytes),
            )
        }
    };

    let (param_shards, state_shards) = match s.fsdp.map(|f| f.sharding) {
        Some(Sharding::FullShard) => (world, world),
        Some(Sharding::HybridShard) => (s.gpus_per_node.max(1), s.gpus_per_node.max(1)),
        Some(Sharding::ShardGradOp) => (1, world),
        None => (1, 1),
    };
    let offload = s.fsdp.is_some_and(|f| f.offload);
    let mut gpu: Vec<Term> = Vec::new();
    let mut host: Vec<Term> = Vec::new();

    // PEFT-style k-bit preparation (no FSDP): the parameters left in 16 bits become fp32, so the
    // embedding output and with it the residual stream are fp32 (derivation Q1).
    let upcast = s.kbit_prepare && s.quant != Quant::None && s.fsdp.is_none();
    let fused_16bit = if m.arch.moe == MoeKind::Fused { experts - experts_lin } else { 0 };
    let upcast_params = if upcast { (total - lin).saturating_sub(fused_16bit) } else { 0 };
    let weight_bytes = weight_bytes + 2 * upcast_params;

    // bitsandbytes keeps a 4-bit weight's quantization constants (absmax, nested absmax) in its
    // module's `quant_state`, not in the parameter: FSDP neither shards nor offloads them.
    let sharded = param_shards > 1 || offload;
    let (constants, expert_constants) = match s.quant {
        Quant::FourBit { double_quant } if sharded => {
            let bits = if double_quant { 0.127 } else { 0.5 };
            let c = |n: u64| (n as f64 * bits / 8.0).ceil() as u64;
            (c(lin), c(experts_lin))
        }
        _ => (0, 0),
    };
    let (weight_bytes, expert_bytes) = (weight_bytes - constants, expert_bytes - expert_constants);

    // The model's weights: frozen under LoRA/QLoRA, trained under full fine-tuning.
    let expert_name = if s.quant != Quant::None && m.arch.moe == MoeKind::Fused && experts > 0 {
        "expert weights (bf16: not quantizable)"
    } else {
        "expert weights"
    };
    if offload {
        host.push(Term { name: "weights (offloaded shards)", bytes: weight_bytes - expert_bytes });
        if expert_bytes > 0 {
            host.push(Term { name: "expert weights (offloaded shards)", bytes: expert_bytes });
        }
    } else {
        gpu.push(Term { name: "weights", bytes: frac(weight_bytes - expert_bytes, param_shards) });
        if expert_bytes > 0 {
            gpu.push(Term { name: expert_name, bytes: frac(expert_bytes, param_shards) });
        }
    }
    if constants > 0 {
        gpu.push(Term { name: "quantization constants", bytes: constants });
    }
    if sharded {
        // The root unit stays gathered for the step; one layer is computed, one prefetched. FSDP1
        // all-gathers into a separate padded buffer of the unit's full size: the local shard stays
        // allocated beside it, so none of the gathered bytes is already counted in `weights`.
        gpu.push(Term { name: "gathered units", bytes: root_bytes + 2 * layer_bytes });
    }

    let trainable_state = param_state_bytes + grad_bytes + opt_bytes;
    let trainable_name = if s.method == Method::Full { "gradients + optimizer" } else { "adapter + grads + optimizer" };
    let trainable_gpu = if s.method == Method::Full { grad_bytes + opt_bytes } else { trainable_state };
    if offload {
        host.push(Term { name: trainable_name, bytes: trainable_gpu });
    } else {
        gpu.push(Term { name: trainable_name, bytes: frac(trainable_gpu, state_shards) });
    }
    if s.method == Method::Full && s.fsdp.is_some() {
        // FSDP reduce-scatters a unit's gradient once all of it is computed: the unsharded
        // gradient of the layer in backward is alive at the recompute, and the root unit's, whose
        // last part (the embeddings) comes at the very end, holds `lm_head`'s gradient through the
        // whole backward.
        let head = m.vocab_size * m.hidden_size * s.dtype_bytes;
        gpu.push(Term { name: "unsharded gradients", bytes: layer_bytes + head });
    }
    if s.method != Method::Full && s.fsdp.is_some_and(|f| f.use_orig_params) && !offload {
        gpu.push(Term { name: "frozen grads (use_orig_params)", bytes: frac(weight_bytes, state_shards) });
    }

    // Activations.
    // Activation sizes grow with batch x sequence (x sequence, for eager attention): computed in
    // f64 so that no input can overflow, then cast back (saturating).
    let h = m.hidden_size as f64;
    let tokens = s.micro_batch as f64 * s.seq_len as f64;
    let (attention, dense_mlp, moe_mlp) = layer_activation_per_token(m);
    let mut common = tokens * (attention + 8.0 * h);
    if s.attention == Attention::Eager {
        common += 4.0 * s.micro_batch as f64 * m.num_heads as f64 * (s.seq_len as f64).powi(2);
    }
    if s.method != Method::Full && s.lora_dropout {
        // Each targeted module keeps a dropped-out copy of its input; an expert sees the tokens
        // routed to it, top_k / experts of them.
        let targets = Targets::new(s.targets.as_deref());
        let layers = m.num_layers.max(1) as f64;
        let routed = m.moe.map_or(1.0, |e| e.top_k as f64 / e.experts.max(1) as f64);
        let inputs: f64 = architecture::linears(m)
            .iter()
            .filter(|l| targets.selects(&m.arch, l))
            .map(|l| l.d_in as f64 * l.count as f64 / layers * if l.group == Group::Expert { routed } else { 1.0 })
            .sum();
        common += 3.0 * tokens * inputs;
    }
    let dense_layers = m.moe.filter(|_| m.arch.is_moe()).map_or(m.num_layers, |e| e.dense_layers.min(m.num_layers));
    let moe_layers = (m.num_layers - dense_layers) as f64;
    let (dense_layer, moe_layer) = (common + tokens * dense_mlp, common + tokens * moe_mlp);
    let layers = m.num_layers as f64;
    let head_input = 2.0 * tokens * h;
    // Checkpointed layer inputs: bf16, or fp32 when the residual stream is (k-bit preparation).
    let layer_input = if upcast { 4.0 } else { 2.0 };
    let logits = (LOGITS_BYTES * tokens * m.vocab_size as f64) as u64;
    let largest = if moe_layers > 0.0 { dense_layer.max(moe_layer) } else { dense_layer };
    let (stored, recompute, cached) = if s.gradient_checkpointing {
        // The forward of a checkpointed layer frees its intermediates, but the caching allocator
        // keeps their blocks; the loss's larger tensors cannot be carved from them. The MLP's
        // forward is the largest: three of its four 2i-per-token tensors at once, all four when
        // LoRA on its projections adds the scaled adapter output and the sum beside the base's.
        let mlp = if moe_layers > 0.0 && dense_layers == 0 { moe_mlp } else { dense_mlp.max(moe_mlp) };
        let targets = Targets::new(s.targets.as_deref());
        let lora_on_mlp = s.method != Method::Full
            && architecture::linears(m).iter().any(|l| l.group != Group::Attention && targets.selects(&m.arch, l));
        let share = if lora_on_mlp { 1.0 } else { 0.75 };
        let width = if upcast { 2.0 } else { 1.0 };
        ((layer_input * tokens * h * layers + head_input) as u64, largest as u64, (width * share * tokens * mlp) as u64)
    } else {
        let inputs = (layer_input - 2.0) * tokens * h * layers;
        ((dense_layer * dense_layers as f64 + moe_layer * moe_layers + inputs + head_input) as u64, 0, 0)
    };
    gpu.push(Term { name: "activations", bytes: stored });
    if upcast {
        // Autocast casts the fp32 lm_head to bf16 for its matmul on every forward; the copy is
        // saved for the backward (a frozen weight's cast is not cached).
        gpu.push(Term { name: "lm_head bf16 copy", bytes: m.vocab_size * m.hidden_size * 2 });
    }
    if logits.saturating_add(cached) >= recompute {
        gpu.push(Term { name: "logits + cross-entropy", bytes: logits });
        if cached > 0 {
            gpu.push(Term { name: "cached layer buffers", bytes: cached });
        }
    } else {
        gpu.push(Term { name: "layer recompute", bytes: recompute });
    }

    gpu.push(Term { name: "CUDA context", bytes: CUDA_CONTEXT });
    if world > 1 {
        gpu.push(Term { name: "NCCL buffers", bytes: 400 * MIB });
    }
    let subtotal: u64 = gpu.iter().fold(0u64, |a, t| a.saturating_add(t.bytes));
    gpu.push(Term { name: "allocator slack", bytes: subtotal * ALLOCATOR_SLACK_PERCENT / 100 });

    // Host: each process holds its share of offloaded state; loading with cpu_ram_efficient_loading
    // reads the checkpoint once (rank 0), otherwise once per process.
    let per_node = s.gpus_per_node.max(1);
    let efficient = s.fsdp.is_some() && s.cpu_ram_efficient_loading;
    let loading = if efficient { weight_bytes.max(total * 2) } else { total * 2 * per_node };
    host.push(Term { name: "model loading", bytes: loading });
    host.push(Term { name: "processes and dataloaders", bytes: per_node * 3 * GIB });
    let host_terms: Vec<Term> = host
        .into_iter()
        .map(|t| {
            if t.name.ends_with("(offloaded shards)") || t.name == trainable_name {
                // Offloaded state is spread over the nodes, each GPU's shard in its host's RAM.
                Term { name: t.name, bytes: frac(t.bytes, s.nodes.max(1)) }
            } else {
                t
            }
        })
        .collect();
    Memory {
        gpu_peak: gpu.iter().fold(0u64, |a, t| a.saturating_add(t.bytes)),
        gpu_terms: gpu,
        host_peak: host_terms.iter().map(|t| t.bytes).sum(),
        host_terms,
        trainable_params: trainable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn llama8b() -> &'static ModelFacts {
        Catalog::builtin().model("meta-llama/Llama-3.1-8B-Instruct").expect("in the catalog")
    }

    #[test]
    fn lora_parameter_counts_match_the_published_architecture() {
        // Llama-3.1-8B's published shape: r=16 all-linear 41.9M; q,v only 6.8M.
        let m = llama8b();
        assert_eq!(lora_params(m, 16, None), 41_943_040);
        let qv = ["q_proj".to_owned(), "v_proj".to_owned()];
        assert_eq!(lora_params(m, 16, Some(&qv)), 6_815_744);
    }

    #[test]
    fn nf4_weights_follow_the_bit_budget() {
        let m = llama8b();
        let lin = linear_params(m);
        assert_eq!(lin, 6_979_321_856, "the 8B model's quantized linears (6.979B)");
        let mut setup = qlora(m);
        setup.seq_len = 1;
        let mem = train_memory(&setup);
        let weights = mem.gpu_terms.iter().find(|t| t.name == "weights").expect("weights term").bytes;
        // 6.979e9 x 4.127 / 8 = 3.600e9 B of NF4, plus 1.051e9 params in bf16.
        let expected = (lin as f64 * 4.127 / 8.0).ceil() as u64 + (m.params - lin) * 2;
        assert_eq!(weights, expected);
        assert_eq!(mem.gpu_peak, mem.gpu_terms.iter().map(|t| t.bytes).sum::<u64>());
    }

    fn qlora(model: &'static ModelFacts) -> TrainSetup<'static> {
        TrainSetup {
            model,
            method: Method::Qlora,
            quant: Quant::FourBit { double_quant: true },
            lora_r: 16,
            targets: None,
            lora_dropout: false,
            modules_to_save: Vec::new(),
            dtype_bytes: 2,
            fsdp: None,
            gpus_per_node: 1,
            nodes: 1,
            micro_batch: 1,
            seq_len: 1024,
            gradient_checkpointing: true,
            attention: Attention::Fused,
            optimizer: "adamw_torch".into(),
            cpu_ram_efficient_loading: true,
            kbit_prepare: false,
        }
    }

    fn term(mem: &Memory, prefix: &str) -> u64 {
        mem.gpu_terms.iter().find(|t| t.name.starts_with(prefix)).map_or(0, |t| t.bytes)
    }

    /// 4-bit quantization reaches experts that are nn.Linear (Qwen3-MoE) and leaves fused expert
    /// parameters (Llama 4) in bf16, each expert resident either way.
    #[test]
    fn quantization_reaches_module_experts_only() {
        let catalog = Catalog::builtin();
        let qwen = catalog.model("Qwen/Qwen3-30B-A3B").expect("in the catalog");
        let experts = qwen.counts().experts;
        let mem = train_memory(&qlora(qwen));
        assert_eq!(term(&mem, "expert weights"), (experts as f64 * 4.127 / 8.0).ceil() as u64);
        let scout = catalog.model("meta-llama/Llama-4-Scout-17B-16E-Instruct").expect("in the catalog");
        let mem = train_memory(&qlora(scout));
        let fused = mem.gpu_terms.iter().find(|t| t.name == "expert weights (bf16: not quantizable)").expect("term");
        assert_eq!(fused.bytes, scout.counts().experts * 2);
    }

    /// A MoE layer's activations follow the experts a token is routed to, not all of them; Llama 4,
    /// which runs every expert, keeps far more than a dense model of its width.
    #[test]
    fn moe_activations_follow_the_routing() {
        let catalog = Catalog::builtin();
        let setup = |id: &str| {
            let mut s = qlora(catalog.model(id).expect("in the catalog"));
            s.gradient_checkpointing = false;
            s
        };
        let stored = |id: &str| term(&train_memory(&setup(id)), "activations");
        // Qwen3-30B-A3B: 8 of 128 experts of 768 per token, against Qwen3-8B's dense 12288.
        assert!(stored("Qwen/Qwen3-30B-A3B") < stored("Qwen/Qwen3-14B"));
        let (attention, dense, moe) = layer_activation_per_token(catalog.model("Qwen/Qwen3-30B-A3B").expect("row"));
        assert!(attention > 0.0 && dense > 0.0);
        assert_eq!(moe, 8.0 * 8.0 * 768.0 + 8.0 * 128.0 + 8.0 * (4.0 * 2048.0 + 12.0));
        let (_, _, scout) =
            layer_activation_per_token(catalog.model("meta-llama/Llama-4-Scout-17B-16E-Instruct").expect("row"));
        assert_eq!(scout, 16.0 * (2.0 * 5120.0 + 8.0 * 8192.0) + 8.0 * 8192.0 + 8.0 * 16.0);
    }

    fn fsdp(offload: bool) -> Option<Fsdp> {
        Some(Fsdp { sharding: Sharding::FullShard, offload, use_orig_params: false })
    }

    /// FSDP1 all-gathers into a buffer of the unit's full size beside the local shard, and
    /// bitsandbytes' quantization constants stay whole on every GPU, offloaded or not.
    #[test]
    fn fsdp_gathers_whole_units_and_leaves_the_quantization_constants_unsharded() {
        let m = llama8b();
        let counts = m.counts();
        let mut s = qlora(m);
        s.fsdp = fsdp(false);
        s.gpus_per_node = 8;
        let mem = train_memory(&s);
        let layer = (counts.max_layer_quantizable as f64 * 4.127 / 8.0).ceil() as u64
            + (counts.max_layer - counts.max_layer_quantizable) * 2;
        assert_eq!(term(&mem, "gathered units"), counts.root * 2 + 2 * layer);
        let constants = (counts.quantizable as f64 * 0.127 / 8.0).ceil() as u64;
        assert_eq!(term(&mem, "quantization constants"), constants);
        s.fsdp = fsdp(true);
        let offloaded = train_memory(&s);
        assert_eq!(term(&offloaded, "quantization constants"), constants);
        assert_eq!(term(&offloaded, "weights"), 0);
        // Without FSDP the constants are part of the weights, as loaded.
        assert_eq!(term(&train_memory(&qlora(m)), "quantization constants"), 0);
    }

    /// Full fine-tuning under FSDP with bf16: accelerate keeps the shards in fp32, so weights,
    /// gradients and AdamW state are 4 + 4 + 8 B per parameter, sharded; the gathered units stay
    /// bf16, and one layer's unsharded gradient and lm_head's are alive in backward.
    #[test]
    fn full_fine_tuning_under_fsdp_keeps_fp32_shards() {
        let m = llama8b();
        let mut s = qlora(m);
        (s.method, s.quant, s.fsdp, s.gpus_per_node) = (Method::Full, Quant::None, fsdp(false), 8);
        let mem = train_memory(&s);
        assert_eq!(term(&mem, "weights"), (m.params * 4).div_ceil(8));
        assert_eq!(term(&mem, "gradients + optimizer"), (m.params * 12).div_ceil(8));
        let counts = m.counts();
        assert_eq!(term(&mem, "gathered units"), (counts.root + 2 * counts.max_layer) * 2);
        assert_eq!(term(&mem, "unsharded gradients"), (counts.max_layer + m.vocab_size * m.hidden_size) * 2);
        // On one GPU without FSDP the model is trained in its loaded bf16.
        (s.fsdp, s.gpus_per_node) = (None, 1);
        let single = train_memory(&s);
        assert_eq!(term(&single, "weights"), m.params * 2);
        assert_eq!(term(&single, "gradients + optimizer"), m.params * 6);
        assert_eq!(term(&single, "unsharded gradients"), 0);
    }

    /// At the loss, 14 B per logits element (bf16 logits, fp32 upcast, log-softmax, its gradient)
    /// and, under checkpointing, the cached blocks of one layer's MLP forward: 8i per token with
    /// LoRA on the MLP, 6i without.
    #[test]
    fn the_loss_peak_counts_the_reserved_logits_blocks_and_the_cached_mlp_buffers() {
        let m = llama8b();
        let mut s = qlora(m);
        s.seq_len = 4096;
        let mem = train_memory(&s);
        assert_eq!(term(&mem, "logits + cross-entropy"), 14 * 4096 * m.vocab_size);
        assert_eq!(term(&mem, "cached layer buffers"), 8 * 4096 * m.intermediate_size);
        s.targets = Some(vec!["q_proj".into(), "v_proj".into()]);
        assert_eq!(term(&train_memory(&s), "cached layer buffers"), 6 * 4096 * m.intermediate_size);
        s.gradient_checkpointing = false;
        assert_eq!(term(&train_memory(&s), "cached layer buffers"), 0);
    }

    /// tunec's train.py prepares a QLoRA base without FSDP as PEFT does: the 16-bit parameters
    /// (embeddings, lm_head, norms) become fp32, the residual stream with them, and autocast makes
    /// a bf16 copy of lm_head for its matmul. Under FSDP nothing is upcast.
    #[test]
    fn kbit_preparation_upcasts_the_unquantized_parameters_and_the_residual_stream() {
        let m = llama8b();
        let lin = linear_params(m);
        let mut s = qlora(m);
        s.seq_len = 2048;
        let plain = train_memory(&s);
        s.kbit_prepare = true;
        let prepared = train_memory(&s);
        assert_eq!(term(&prepared, "weights") - term(&plain, "weights"), 2 * (m.params - lin));
        let tokens = 2048;
        assert_eq!(
            term(&prepared, "activations") - term(&plain, "activations"),
            2 * tokens * m.hidden_size * m.num_layers
        );
        assert_eq!(term(&prepared, "cached layer buffers"), 2 * term(&plain, "cached layer buffers"));
        assert_eq!(term(&prepared, "lm_head bf16 copy"), m.vocab_size * m.hidden_size * 2);
        assert_eq!(term(&prepared, "logits + cross-entropy"), term(&plain, "logits + cross-entropy"));
        s.fsdp = fsdp(false);
        s.gpus_per_node = 2;
        let sharded = train_memory(&s);
        assert_eq!(term(&sharded, "lm_head bf16 copy"), 0);
        s.kbit_prepare = false;
        assert_eq!(train_memory(&s), sharded);
    }
}
