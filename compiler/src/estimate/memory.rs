//! The per-GPU and host memory model of a training step.
//!
//! Input is a [`TrainSetup`]: the architecture, the method, the parallel layout and the batch.
//! Output is a list of named terms (bytes) whose sum is the estimated peak, so a user can see
//! which term does not fit. The model follows research/anchors-memory-cost.md §1:
//!
//! - **weights**: quantized linears at 4.127 bit/param (NF4 with double quantization; 4.5 without)
//!   or 1 B (int8); everything bitsandbytes does not quantize (embeddings, `lm_head`, norms,
//!   biases) in bf16; unquantized models at the training dtype. FSDP shards them over the sharding
//!   group; CPU offload moves the shards to host RAM.
//! - **gathered units**: with FULL_SHARD (FSDP1, transformer auto-wrap) the root unit (embeddings,
//!   `lm_head`, final norm) stays gathered for the whole step, plus the decoder layer being
//!   computed and the one being prefetched.
//! - **trainable state**: LoRA matrices r·(d_in + d_out) per targeted linear, upcast to fp32 by
//!   PEFT, their fp32 gradients and the optimizer state (AdamW: 2 fp32 states; 8-bit optimizers: 2
//!   bytes; SGD: none); full fine-tuning keeps weights, gradients and AdamW state in the training
//!   dtype (train.py loads the model in that dtype, so there is no fp32 master copy). FSDP shards
//!   them; offload moves them to host RAM. With `use_orig_params`, FSDP allocates gradients for
//!   the frozen weights of mixed units as well.
//! - **activations**: per Llama-style layer s·b·(10h + 4h_kv + 8i) bytes with fused/flash
//!   attention, plus 4·b·heads·s² for eager attention's scores, plus bf16+mask copies of each
//!   targeted module's input when LoRA dropout is on, plus HF RMSNorm's fp32 upcast (8·s·b·h). With
//!   gradient checkpointing only each layer's input (2·s·b·h) is kept and one layer is recomputed
//!   at a time.
//! - **transient**: the larger of the logits/cross-entropy peak (b·s·vocab elements at 12 B: the
//!   bf16 logits, their fp32 upcast's log-softmax and its gradient, and the bf16 gradient) and the
//!   recompute of one layer under gradient checkpointing. The two never coexist: the loss backward
//!   finishes before the first layer is recomputed.
//! - **runtime**: CUDA context and cuBLAS workspaces (750 MiB), NCCL buffers when more than one
//!   GPU takes part (400 MiB), and allocator slack (12 % of everything above), which is what makes
//!   the estimate comparable to `max_memory_reserved` rather than `max_memory_allocated`.
//!
//! Deliberate limitations: no packing-aware attention masks, no tensor or pipeline parallelism, no
//! activation offloading; sequences are taken at their maximum length (the collator pads to the
//! longest in a micro-batch, and the peak is set by the longest).

use crate::catalog::ModelFacts;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// CUDA context (~300-500 MiB with lazy module loading) plus cuBLAS/cuDNN workspaces and loaded
/// kernels.
pub const CUDA_CONTEXT: u64 = 750 * MIB;
/// What PyTorch's caching allocator reserves beyond what tensors occupy (fragmentation, rounding
/// to block sizes): Answer.AI saw 10.22 GiB reserved for 9.16 GiB allocated, 11.6 %.
pub const ALLOCATOR_SLACK_PERCENT: u64 = 12;

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

/// (d_in, d_out) of a linear module of a decoder layer.
pub fn module_shape(model: &ModelFacts, name: &str) -> Option<(u64, u64)> {
    let h = model.hidden_size;
    let q = model.num_heads * model.head_dim;
    let kv = model.num_kv_heads * model.head_dim;
    let i = model.intermediate_size;
    Some(match name {
        "q_proj" => (h, q),
        "k_proj" | "v_proj" => (h, kv),
        "o_proj" => (q, h),
        "gate_proj" | "up_proj" => (h, i),
        "down_proj" => (i, h),
        "qkv_proj" => (h, q + 2 * kv),
        "gate_up_proj" => (h, 2 * i),
        _ => return None,
    })
}

/// Parameters in the linear layers of all decoder layers (what bitsandbytes quantizes).
pub fn linear_params(model: &ModelFacts) -> u64 {
    let per_layer: u64 = model.linear_modules.iter().filter_map(|m| module_shape(model, m)).map(|(i, o)| i * o).sum();
    per_layer * model.num_layers
}

/// The root FSDP unit: embeddings, the untied `lm_head` and the final norm.
pub fn root_params(model: &ModelFacts) -> u64 {
    let embed = model.vocab_size * model.hidden_size;
    embed + if model.tied_embeddings { 0 } else { embed } + model.hidden_size
}

/// LoRA parameters for rank `r` on the targeted modules of every layer.
pub fn lora_params(model: &ModelFacts, r: u64, targets: Option<&[String]>) -> u64 {
    let modules: Vec<&str> = match targets {
        None => model.linear_modules.iter().map(String::as_str).collect(),
        Some(list) => list.iter().map(String::as_str).filter(|m| *m != "lm_head").collect(),
    };
    let per_layer: u64 = modules.iter().filter_map(|m| module_shape(model, m)).map(|(i, o)| r * (i + o)).sum();
    let head = match targets {
        Some(list) if list.iter().any(|m| m == "lm_head") => r * (model.hidden_size + model.vocab_size),
        _ => 0,
    };
    per_layer * model.num_layers + head
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
    let total = m.params;
    let lin = linear_params(m).min(total);
    let root = root_params(m).min(total);
    let layer_params = (total - root) / m.num_layers.max(1);
    let layer_lin = lin / m.num_layers.max(1);

    // Weights, as loaded.
    let (weight_bytes, layer_bytes, root_bytes) = match s.quant {
        Quant::FourBit { double_quant } => {
            let bits = if double_quant { 4.127 } else { 4.5 };
            let q = |n: u64| (n as f64 * bits / 8.0).ceil() as u64;
            (q(lin) + (total - lin) * 2, q(layer_lin) + (layer_params - layer_lin) * 2, root * 2)
        }
        Quant::Int8 => (lin + (total - lin) * 2, layer_lin + (layer_params - layer_lin) * 2, root * 2),
        Quant::None => (total * s.dtype_bytes, layer_params * s.dtype_bytes, root * s.dtype_bytes),
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
        Method::Full => (total * s.dtype_bytes, total * optimizer_bytes(&s.optimizer, s.dtype_bytes)),
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

    // The model's weights: frozen under LoRA/QLoRA, trained under full fine-tuning.
    let weight_shard = frac(weight_bytes, param_shards);
    if offload {
        host.push(Term { name: "weights (offloaded shards)", bytes: weight_bytes });
    } else {
        gpu.push(Term { name: "weights", bytes: weight_shard });
    }
    if param_shards > 1 || offload {
        // The root unit stays gathered for the step; one layer is computed, one prefetched.
        let gathered_full = root_bytes + 2 * layer_bytes;
        let already_local = if offload { 0 } else { frac(gathered_full, param_shards) };
        gpu.push(Term { name: "gathered units", bytes: gathered_full - already_local });
    }

    let trainable_state = param_state_bytes + grad_bytes + opt_bytes;
    let trainable_name = if s.method == Method::Full { "gradients + optimizer" } else { "adapter + grads + optimizer" };
    let trainable_gpu = if s.method == Method::Full { grad_bytes + opt_bytes } else { trainable_state };
    if offload {
        host.push(Term { name: trainable_name, bytes: trainable_gpu });
    } else {
        gpu.push(Term { name: trainable_name, bytes: frac(trainable_gpu, state_shards) });
    }
    if s.method != Method::Full && s.fsdp.is_some_and(|f| f.use_orig_params) && !offload {
        gpu.push(Term { name: "frozen grads (use_orig_params)", bytes: frac(weight_bytes, state_shards) });
    }

    // Activations.
    // Activation sizes grow with batch x sequence (x sequence, for eager attention): computed in
    // f64 so that no input can overflow, then cast back (saturating).
    let h = m.hidden_size as f64;
    let h_kv = (m.num_kv_heads * m.head_dim) as f64;
    let tokens = s.micro_batch as f64 * s.seq_len as f64;
    let mut per_layer = tokens * (10.0 * h + 4.0 * h_kv + 8.0 * m.intermediate_size as f64) + tokens * 8.0 * h;
    if s.attention == Attention::Eager {
        per_layer += 4.0 * s.micro_batch as f64 * m.num_heads as f64 * (s.seq_len as f64).powi(2);
    }
    if s.method != Method::Full && s.lora_dropout {
        let modules: Vec<&str> = match &s.targets {
            None => m.linear_modules.iter().map(String::as_str).collect(),
            Some(list) => list.iter().map(String::as_str).collect(),
        };
        let inputs: u64 = modules.iter().filter_map(|name| module_shape(m, name)).map(|(d_in, _)| d_in).sum();
        per_layer += 3.0 * tokens * inputs as f64;
    }
    let layers = m.num_layers as f64;
    let head_input = 2.0 * tokens * h;
    let logits = (12.0 * tokens * m.vocab_size as f64) as u64;
    let (stored, recompute) = if s.gradient_checkpointing {
        ((2.0 * tokens * h * layers + head_input) as u64, per_layer as u64)
    } else {
        ((per_layer * layers + head_input) as u64, 0)
    };
    gpu.push(Term { name: "activations", bytes: stored });
    if logits >= recompute {
        gpu.push(Term { name: "logits + cross-entropy", bytes: logits });
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
            if t.name.starts_with("weights") || t.name == trainable_name {
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
    fn lora_parameter_counts_match_the_research_table() {
        // anchors-memory-cost.md §6: r=16 all-linear 41.9M; q,v only 6.8M.
        let m = llama8b();
        assert_eq!(lora_params(m, 16, None), 41_943_040);
        let qv = ["q_proj".to_owned(), "v_proj".to_owned()];
        assert_eq!(lora_params(m, 16, Some(&qv)), 6_815_744);
    }

    #[test]
    fn nf4_weights_follow_the_bit_budget() {
        let m = llama8b();
        let lin = linear_params(m);
        assert_eq!(lin, 6_979_321_856, "the 8B model's quantized linears (§7 of the notes: 6.979B)");
        let setup = TrainSetup {
            model: m,
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
            seq_len: 1,
            gradient_checkpointing: true,
            attention: Attention::Fused,
            optimizer: "adamw_torch".into(),
            cpu_ram_efficient_loading: true,
        };
        let mem = train_memory(&setup);
        let weights = mem.gpu_terms.iter().find(|t| t.name == "weights").expect("weights term").bytes;
        // 6.979e9 x 4.127 / 8 = 3.600e9 B of NF4, plus 1.051e9 params in bf16.
        let expected = (lin as f64 * 4.127 / 8.0).ceil() as u64 + (m.params - lin) * 2;
        assert_eq!(weights, expected);
        assert_eq!(mem.gpu_peak, mem.gpu_terms.iter().map(|t| t.bytes).sum::<u64>());
    }
}
