//! The architecture table (`stdlib/catalog/architectures.toml`) and the arithmetic of a model's
//! shape: which linear layers a decoder has, how many parameters it holds, which of them are
//! experts, which bitsandbytes quantizes and which LoRA can target.
//!
//! One row per `model_type` says how that family builds a decoder layer (attention kind, norms,
//! dense or mixture-of-experts MLP, fused or per-module experts) and how it is trained (FSDP wrap
//! class, what `all_linear` means, the attention kernel to use, the first transformers release
//! that knows it). A model's own numbers (hidden size, expert count, ...) live in its
//! [`ModelFacts`](super::ModelFacts); this module combines the two. Adding a family is a row in
//! the table, not code, as long as its layers are built from the pieces below.

use super::ModelFacts;
use serde::Deserialize;

/// One row of the architecture table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub model_type: String,
    pub family: String,
    /// The class that loads the checkpoint.
    pub architecture: String,
    /// The decoder-layer class: FSDP's auto-wrap unit.
    pub decoder_layer: String,
    /// The first transformers release that knows the model type.
    pub transformers: String,
    /// For a multimodal checkpoint, the config.json key of the text model's config.
    #[serde(default)]
    pub text_config: String,
    /// The vision tower's parameter formula (`siglip`, `llama4`), empty for a text model.
    #[serde(default)]
    pub vision: String,
    /// `tie_word_embeddings` when config.json leaves it out (the config class's default).
    pub tie_word_embeddings: bool,
    /// The config class's defaults for the integer keys tunec reads, for a config.json that
    /// leaves them out.
    #[serde(default)]
    pub config_defaults: std::collections::BTreeMap<String, u64>,
    pub attention: AttentionKind,
    pub attention_bias: BiasKind,
    pub qk_norm: QkNorm,
    /// Hidden-size norms per decoder layer.
    pub layer_norms: u64,
    #[serde(default)]
    pub sliding_window: bool,
    #[serde(default)]
    pub attention_sinks: bool,
    /// What `targets = all_linear` resolves to: the nn.Linear names of one decoder layer, routers
    /// left out.
    pub linear_modules: Vec<String>,
    #[serde(default)]
    pub moe: MoeKind,
    /// What `experts` in `targets` adds: module names, or parameter names of fused experts.
    #[serde(default)]
    pub experts: Vec<String>,
    #[serde(default)]
    pub expert_bias: bool,
    #[serde(default)]
    pub router: String,
    #[serde(default)]
    pub router_linear: bool,
    #[serde(default)]
    pub router_bias: bool,
    #[serde(default)]
    pub expert_compute: ExpertCompute,
    /// The attention kernel used when a train node leaves `attention` unset.
    pub attn_implementation: String,
    #[serde(default)]
    pub attn_refused: Vec<Refusal>,
    /// How the published checkpoints store their weights (`mxfp4`, `fp8`; empty for 16-bit).
    #[serde(default)]
    pub weights: String,
    pub source: String,
    pub date: String,
    #[serde(default)]
    pub note: String,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKind {
    /// Grouped-query attention (multi-head attention is the case of one group per head).
    #[default]
    Gqa,
    /// DeepSeek's multi-head latent attention: low-rank query and key-value projections.
    Mla,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BiasKind {
    /// q, k, v and o carry a bias when config.json says `attention_bias`.
    #[default]
    Config,
    /// q, k and v always carry a bias, o never (Qwen2).
    Qkv,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QkNorm {
    #[default]
    None,
    /// An RMSNorm of `head_dim` on queries and on keys.
    Head,
    /// An RMSNorm of the whole query and key projections (OLMo 2).
    Full,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MoeKind {
    /// A dense MLP in every layer.
    #[default]
    None,
    /// Experts are a ModuleList of nn.Linear.
    Modules,
    /// Experts are 3-D parameters.
    Fused,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExpertCompute {
    /// Each token runs through its top-k experts.
    #[default]
    Routed,
    /// Every expert runs on every token (the transformers implementation of Llama 4).
    All,
}

/// An attention kernel a family cannot use.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub kernel: String,
    /// `error` or `warning`.
    pub severity: String,
    pub why: String,
}

impl Architecture {
    pub fn is_moe(&self) -> bool {
        self.moe != MoeKind::None
    }

    pub fn multimodal(&self) -> bool {
        !self.text_config.is_empty()
    }

    /// The names `targets` accepts for this family: the linear modules, a router that is an
    /// nn.Linear, and `experts` for a MoE family.
    pub fn target_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.linear_modules.iter().map(String::as_str).collect();
        if self.router_linear {
            names.push(router_name(&self.router));
        }
        if self.is_moe() {
            names.push(EXPERTS);
        }
        names
    }

    /// Why `kernel` does not suit this family, if it does not.
    pub fn refusal(&self, kernel: &str) -> Option<&Refusal> {
        self.attn_refused.iter().find(|r| r.kernel == kernel)
    }
}

/// The mixture-of-experts shape of a model.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Moe {
    /// Routed experts per MoE layer.
    pub experts: u64,
    /// Experts each token is routed to.
    pub top_k: u64,
    /// The intermediate size of one expert.
    pub intermediate_size: u64,
    /// The intermediate size of the shared expert(s), 0 when there are none.
    #[serde(default)]
    pub shared_intermediate_size: u64,
    /// Layers with a dense MLP (of the model's `intermediate_size`) instead of experts.
    #[serde(default)]
    pub dense_layers: u64,
}

/// Multi-head latent attention dimensions (DeepSeek V3).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mla {
    /// The rank of the query down-projection; 0 when queries are projected directly.
    #[serde(default)]
    pub q_lora_rank: u64,
    pub kv_lora_rank: u64,
    pub qk_nope_head_dim: u64,
    pub qk_rope_head_dim: u64,
    pub v_head_dim: u64,
}

/// Where a linear layer sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Attention,
    /// The MLP of a dense layer.
    Dense,
    /// A routed expert.
    Expert,
    /// A shared expert, run on every token.
    Shared,
    Router,
}

/// A kind of linear layer of the decoder: its shape and how many the whole model holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear {
    /// The module name (for fused experts, the parameter name).
    pub name: &'static str,
    pub d_in: u64,
    pub d_out: u64,
    /// Instances in the whole model (layers x experts).
    pub count: u64,
    pub group: Group,
    /// A 3-D parameter rather than an nn.Linear: bitsandbytes leaves it alone, LoRA reaches it
    /// only through `target_parameters`.
    pub fused: bool,
}

impl Linear {
    pub fn params(&self) -> u64 {
        self.d_in * self.d_out * self.count
    }
}

/// The linear layers of a model's decoder, and the layer counts they imply.
pub fn linears(m: &ModelFacts) -> Vec<Linear> {
    let a = &m.arch;
    let h = m.hidden_size;
    let layers = m.num_layers;
    let mut out = Vec::new();
    let mut push = |name, d_in, d_out, count, group, fused| {
        if count > 0 {
            out.push(Linear { name, d_in, d_out, count, group, fused });
        }
    };
    // Attention.
    match (a.attention, m.mla) {
        (AttentionKind::Mla, Some(mla)) => {
            let qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim;
            if mla.q_lora_rank > 0 {
                push("q_a_proj", h, mla.q_lora_rank, layers, Group::Attention, false);
                push("q_b_proj", mla.q_lora_rank, m.num_heads * qk, layers, Group::Attention, false);
            } else {
                push("q_proj", h, m.num_heads * qk, layers, Group::Attention, false);
            }
            push("kv_a_proj_with_mqa", h, mla.kv_lora_rank + mla.qk_rope_head_dim, layers, Group::Attention, false);
            let kv_b = m.num_heads * (mla.qk_nope_head_dim + mla.v_head_dim);
            push("kv_b_proj", mla.kv_lora_rank, kv_b, layers, Group::Attention, false);
            push("o_proj", m.num_heads * mla.v_head_dim, h, layers, Group::Attention, false);
        }
        _ => {
            let q = m.num_heads * m.head_dim;
            let kv = m.num_kv_heads * m.head_dim;
            if a.linear_modules.iter().any(|n| n == "qkv_proj") {
                push("qkv_proj", h, q + 2 * kv, layers, Group::Attention, false);
            } else {
                push("q_proj", h, q, layers, Group::Attention, false);
                push("k_proj", h, kv, layers, Group::Attention, false);
                push("v_proj", h, kv, layers, Group::Attention, false);
            }
            push("o_proj", q, h, layers, Group::Attention, false);
        }
    }
    // MLPs.
    let fused_mlp = a.linear_modules.iter().any(|n| n == "gate_up_proj");
    let (dense_layers, moe) = match m.moe {
        Some(moe) if a.is_moe() => (moe.dense_layers.min(layers), Some(moe)),
        _ => (layers, None),
    };
    let i = m.intermediate_size;
    if fused_mlp {
        push("gate_up_proj", h, 2 * i, dense_layers, Group::Dense, false);
    } else {
        push("gate_proj", h, i, dense_layers, Group::Dense, false);
        push("up_proj", h, i, dense_layers, Group::Dense, false);
    }
    push("down_proj", i, h, dense_layers, Group::Dense, false);
    if let Some(moe) = moe {
        let moe_layers = layers - dense_layers;
        let e = moe.intermediate_size;
        match a.moe {
            MoeKind::Fused => {
                // One parameter per projection holds every expert: as LoRA and bitsandbytes see
                // them, `experts` matrices of (d_in, d_out) each.
                let (gate_up, down) = if a.experts.iter().any(|p| p.contains("input_linear")) {
                    ("input_linear", "output_linear")
                } else {
                    ("gate_up_proj", "down_proj")
                };
                push(gate_up, h, 2 * e, moe_layers * moe.experts, Group::Expert, true);
                push(down, e, h, moe_layers * moe.experts, Group::Expert, true);
            }
            _ => {
                push("gate_proj", h, e, moe_layers * moe.experts, Group::Expert, false);
                push("up_proj", h, e, moe_layers * moe.experts, Group::Expert, false);
                push("down_proj", e, h, moe_layers * moe.experts, Group::Expert, false);
            }
        }
        let s = moe.shared_intermediate_size;
        if s > 0 {
            push("gate_proj", h, s, moe_layers, Group::Shared, false);
            push("up_proj", h, s, moe_layers, Group::Shared, false);
            push("down_proj", s, h, moe_layers, Group::Shared, false);
        }
        push(router_name(&a.router), h, moe.experts, moe_layers, Group::Router, !a.router_linear);
    }
    out
}

/// The module name of a router (the last part of its path), as LoRA targets name it.
fn router_name(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("gate") => "gate",
        Some("layer") => "layer",
        _ => "router",
    }
}

/// A model's parameters, split the ways the estimator needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// Every parameter of the checkpoint, vision tower included.
    pub total: u64,
    /// The text decoder's parameters.
    pub text: u64,
    /// Parameters of the routed experts (weights and biases).
    pub experts: u64,
    /// Of those, the expert weights bitsandbytes quantizes (experts that are nn.Linear).
    pub experts_quantizable: u64,
    /// Parameters one token's forward pass uses (what the FLOPs count): the text decoder less the
    /// experts it is not routed to (none are skipped with `expert_compute = "all"`).
    pub active: u64,
    /// The root FSDP unit: embeddings, an untied `lm_head`, the final norm.
    pub root: u64,
    /// The largest decoder layer, and the part of it in nn.Linear layers.
    pub max_layer: u64,
    pub max_layer_quantizable: u64,
    /// Parameters in the decoder's nn.Linear layers: what bitsandbytes quantizes.
    pub quantizable: u64,
}

/// Counts a model's parameters from its shape and its family's row.
pub fn params(m: &ModelFacts) -> Params {
    let a = &m.arch;
    let h = m.hidden_size;
    let lin = linears(m);
    let sum = |pred: &dyn Fn(&Linear) -> bool| -> u64 { lin.iter().filter(|l| pred(l)).map(Linear::params).sum() };
    let (dense_layers, moe) = match m.moe {
        Some(moe) if a.is_moe() => (moe.dense_layers.min(m.num_layers), moe),
        _ => (m.num_layers, Moe::default()),
    };
    let moe_layers = m.num_layers - dense_layers;
    let per = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);

    // Everything in a layer that is not a linear weight: biases, norms, sinks.
    let (q, kv) = (m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim);
    let mut small = a.layer_norms * h;
    match (a.attention, m.mla) {
        (AttentionKind::Mla, Some(mla)) => small += mla.q_lora_rank + mla.kv_lora_rank,
        _ => {
            small += match a.qk_norm {
                QkNorm::None => 0,
                QkNorm::Head => 2 * m.head_dim,
                QkNorm::Full => q + kv,
            };
            small += match (a.attention_bias, m.attention_bias) {
                (BiasKind::Qkv, _) => q + 2 * kv,
                (BiasKind::Config, true) => q + 2 * kv + h,
                (BiasKind::Config, false) => 0,
            };
        }
    }
    if a.attention_sinks {
        small += m.num_heads;
    }
    let attention_lin = per(sum(&|l| l.group == Group::Attention), m.num_layers);
    let attention = attention_lin + small;
    let dense_mlp = per(sum(&|l| l.group == Group::Dense), dense_layers);
    let expert_weights = sum(&|l| l.group == Group::Expert);
    let experts_quantizable = sum(&|l| l.group == Group::Expert && !l.fused);
    let expert_bias = if a.expert_bias { moe_layers * moe.experts * (2 * moe.intermediate_size + h) } else { 0 };
    let experts = expert_weights + expert_bias;
    let router_bias = if a.router_bias { moe_layers * moe.experts } else { 0 };
    let moe_rest = sum(&|l| matches!(l.group, Group::Shared | Group::Router)) + router_bias;
    let moe_rest_quantizable = sum(&|l| matches!(l.group, Group::Shared | Group::Router) && !l.fused);

    let embed = m.vocab_size * h;
    let root = embed + if m.tied_embeddings { 0 } else { embed } + h;
    let text = root + m.num_layers * attention + dense_layers * dense_mlp + experts + moe_rest;
    let moe_layer = per(experts + moe_rest, moe_layers);
    let (max_layer, max_layer_quantizable) = if moe_layers > 0 && moe_layer >= dense_mlp {
        (attention + moe_layer, attention_lin + per(experts_quantizable + moe_rest_quantizable, moe_layers))
    } else {
        (attention + dense_mlp, attention_lin + dense_mlp)
    };
    let active = match (a.expert_compute, moe.experts) {
        (ExpertCompute::Routed, e) if e > 0 => text - experts + experts / e * moe.top_k.min(e),
        _ => text,
    };
    let quantizable = lin.iter().filter(|l| !l.fused).map(Linear::params).sum();
    Params {
        total: text + m.vision_params,
        text,
        experts,
        experts_quantizable,
        active,
        root,
        max_layer,
        max_layer_quantizable,
        quantizable,
    }
}

/// What `targets` asks LoRA to adapt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// `all_linear`, alone or in a list.
    pub all_linear: bool,
    /// Module names, as PEFT matches them (by the last component of the module's name).
    pub modules: Vec<String>,
    /// `experts`: the experts' modules, or for fused experts their parameters.
    pub experts: bool,
    pub lm_head: bool,
}

/// The words of `targets` with a meaning of their own.
pub const ALL_LINEAR: &str = "all_linear";
pub const EXPERTS: &str = "experts";

impl Targets {
    /// `None` is `targets = all_linear`; a list may mix module names, `all_linear` and `experts`.
    pub fn new(list: Option<&[String]>) -> Targets {
        let Some(list) = list else { return Targets { all_linear: true, ..Targets::default() } };
        let mut t = Targets::default();
        for name in list {
            match name.as_str() {
                ALL_LINEAR => t.all_linear = true,
                EXPERTS => t.experts = true,
                "lm_head" => t.lm_head = true,
                _ => t.modules.push(name.clone()),
            }
        }
        t
    }

    /// Whether LoRA adapts `l` (as PEFT matches module names: the same name in experts, shared
    /// experts and dense layers is one target).
    pub fn selects(&self, arch: &Architecture, l: &Linear) -> bool {
        if l.fused {
            return self.experts && l.group == Group::Expert && arch.moe == MoeKind::Fused;
        }
        let name = |n: &String| n == l.name;
        (self.all_linear && arch.linear_modules.iter().any(name))
            || self.modules.iter().any(name)
            || (self.experts && arch.moe == MoeKind::Modules && arch.experts.iter().any(name))
    }

    /// Whether the experts are targeted through PEFT's `target_parameters`.
    pub fn fused_experts(&self, arch: &Architecture) -> bool {
        self.experts && arch.moe == MoeKind::Fused
    }
}

/// LoRA parameters of rank `r` on the targeted layers (every expert counted: PEFT gives each
/// expert its own pair of matrices, fused experts included).
pub fn lora_params(m: &ModelFacts, r: u64, targets: &Targets) -> u64 {
    let layers: u64 =
        linears(m).iter().filter(|l| targets.selects(&m.arch, l)).map(|l| r * (l.d_in + l.d_out) * l.count).sum();
    layers + if targets.lm_head { r * (m.hidden_size + m.vocab_size) } else { 0 }
}

/// Parameters of a vision tower and its projector, from the `vision_config` of a multimodal
/// config.json, by the family's formula. `None` when a size is missing.
pub fn vision_params(formula: &str, vision: &serde_json::Value, text_hidden: u64) -> Option<u64> {
    let num = |key: &str| vision.get(key).and_then(serde_json::Value::as_u64);
    let d = num("hidden_size")?;
    let i = num("intermediate_size")?;
    let layers = num("num_hidden_layers")?;
    let patch = num("patch_size")?;
    let image = num("image_size")?;
    let channels = num("num_channels").unwrap_or(3);
    let patches = (image / patch.max(1)).pow(2);
    // Attention with biases (4 d x d + 4 d), a two-layer MLP with biases, two LayerNorms.
    let layer = 4 * (d * d + d) + 2 * d * i + i + d + 4 * d;
    match formula {
        // SigLIP (Gemma 3): a patch convolution with bias, learned positions, the layers and a
        // final LayerNorm; the projector maps to the text width after an RMSNorm.
        "siglip" => Some(channels * patch * patch * d + d + patches * d + layers * layer + 2 * d + d * text_hidden + d),
        // Llama 4: an unfold-linear patch embedding without bias, a class token and positions for
        // every patch and it, LayerNorms before and after, the layers, a pixel-shuffle MLP
        // (`intermediate_size` -> `projector_input_dim` -> `projector_output_dim`, GELU, no bias)
        // and a linear projector to the text width.
        "llama4" => {
            let input = num("projector_input_dim")?;
            let output = num("projector_output_dim")?;
            let vision_out = num("vision_output_dim").unwrap_or(output);
            Some(
                channels * patch * patch * d
                    + d
                    + (patches + 1) * d
                    + 4 * d
                    + layers * layer
                    + i * input
                    + input * output
                    + vision_out * text_hidden,
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;

    fn billions(n: u64) -> f64 {
        n as f64 / 1e9
    }

    /// The active parameter counts the model cards publish: Qwen3-30B-A3B "3.3B activated",
    /// DeepSeek-V3 "37B activated", gpt-oss-20b and -120b "3.6B" and "5.1B" active (OpenAI's
    /// count leaves the input embedding out).
    #[test]
    fn active_parameters_match_the_model_cards() {
        let catalog = Catalog::builtin();
        let active = |id: &str| catalog.model(id).expect(id).counts().active;
        let embedding = |id: &str| {
            let m = catalog.model(id).expect(id);
            m.vocab_size * m.hidden_size
        };
        assert!((billions(active("Qwen/Qwen3-30B-A3B")) - 3.3).abs() < 0.1);
        assert!((billions(active("deepseek-ai/DeepSeek-V3")) - 37.0).abs() < 1.0);
        for (id, published) in [("openai/gpt-oss-20b", 3.6), ("openai/gpt-oss-120b", 5.1)] {
            assert!((billions(active(id) - embedding(id)) - published).abs() < 0.1, "{id}");
        }
    }

    /// Llama 4 runs every expert on every token in transformers, so all of its parameters are
    /// active for the FLOPs; the routed count would be the model card's 17 B.
    #[test]
    fn llama4_computes_every_expert() {
        let m = Catalog::builtin().model("meta-llama/Llama-4-Scout-17B-16E-Instruct").expect("in the catalog");
        let c = m.counts();
        assert_eq!(c.active, c.text);
        let moe = m.moe.expect("experts");
        let routed = c.text - c.experts + c.experts / moe.experts * moe.top_k;
        assert!((billions(routed) - 17.0).abs() < 0.3, "{}", billions(routed));
    }

    /// all_linear on Qwen3-30B-A3B adapts every expert: 128 experts x 3 projections per layer.
    #[test]
    fn lora_on_module_experts_counts_every_expert() {
        let m = Catalog::builtin().model("Qwen/Qwen3-30B-A3B").expect("in the catalog");
        let r = 8;
        let (h, e, layers) = (m.hidden_size, m.moe.expect("experts").intermediate_size, m.num_layers);
        let (q, kv) = (m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim);
        let attention = r * ((h + q) + 2 * (h + kv) + (q + h));
        let experts = 128 * 3 * r * (h + e);
        assert_eq!(super::lora_params(m, r, &super::Targets::new(None)), layers * (attention + experts));
        let qv = ["q_proj".to_owned(), "v_proj".to_owned()];
        assert_eq!(super::lora_params(m, r, &super::Targets::new(Some(&qv))), layers * r * ((h + q) + (h + kv)));
    }
}
