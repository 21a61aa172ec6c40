//! Rules about model families: what a family's row of the architecture table says a job cannot
//! do. A family newer than the job's transformers, an attention kernel the family cannot use,
//! bitsandbytes on experts it cannot quantize or on MXFP4 weights, LoRA dropout on fused
//! experts, a tokenizer whose ids run past the embedding, and a chat template that refuses a role
//! the conversations have.

use super::{four_bit, Report};
use crate::catalog::architecture::{MoeKind, Targets};
use crate::catalog::{Catalog, ModelFacts};
use crate::check::{Program, TypedNode, Val};
use crate::diagnostics::{Code, Label, Severity};
use crate::syntax::ast::NodeKind;

pub(super) fn run(r: &mut Report<'_>, catalog: &Catalog) {
    let program = r.program;
    for node in &program.nodes {
        if matches!(node.kind, NodeKind::Train | NodeKind::Merge | NodeKind::Evaluate) {
            if let Some(facts) = job_model(program, node) {
                transformers_version(r, catalog, node, facts);
            }
        }
        match node.kind {
            NodeKind::Train => {
                let Some(facts) = node.fields.reference("model").and_then(|m| program.model_facts(&m.node)) else {
                    continue;
                };
                attention(r, node, facts);
                quantized_experts(r, node, facts);
                expert_dropout(r, node, facts);
                tokenizer_rows(r, node, facts);
            }
            NodeKind::Merge => {
                let Some(facts) = job_model(program, node) else { continue };
                if facts.weights == "mxfp4" && matches!(node.fields.word("dtype"), Some("nf4" | "int8")) {
                    let dtype = node.fields.word("dtype").unwrap_or_default();
                    r.emit(
                        Code::Mxfp4Quant,
                        node.span_of("dtype"),
                        format!("`{}` ships MXFP4 weights, which bitsandbytes cannot load as `{dtype}`", facts.id),
                        node.describe("dtype"),
                        "merge in `dtype = bf16`: tunec dequantizes the MXFP4 weights to bf16 and adds the adapter to them".into(),
                    );
                }
            }
            NodeKind::Model => own_tokenizer(r, node),
            NodeKind::Chat => roles(r, node),
            _ => {}
        }
    }
}

/// The model a job loads: a train node's base, a merge's adapter's base, an evaluated model's.
fn job_model<'a>(program: &'a Program, node: &TypedNode) -> Option<&'a ModelFacts> {
    let field = if node.kind == NodeKind::Merge { "adapter" } else { "model" };
    program.model_facts(&node.fields.reference(field)?.node)
}

/// The numeric parts of a dotted version, for comparison.
fn version(text: &str) -> Vec<u64> {
    text.split('.').map(|p| p.trim_start_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0)).collect()
}

fn transformers_version(r: &mut Report<'_>, catalog: &Catalog, node: &TypedNode, facts: &ModelFacts) {
    let Some(have) = node.fields.str("transformers") else { return };
    let need = &facts.arch.transformers;
    if version(have) >= version(need) {
        return;
    }
    let mut newer: Vec<_> = catalog.images.iter().filter(|i| version(&i.transformers) >= version(need)).collect();
    newer.sort_by_key(|i| std::cmp::Reverse(version(&i.transformers)));
    let help = match newer.first() {
        Some(best) => format!(
            "set `transformers = \"{}\"` and `pytorch = \"{}\"`; the catalog's images with transformers {need} or newer: {}",
            best.transformers,
            best.pytorch,
            newer.iter().map(|i| format!("{} (PyTorch {})", i.transformers, i.pytorch)).collect::<Vec<_>>().join(", ")
        ),
        None => format!("no training image in the catalog has transformers {need} or newer"),
    };
    r.emit(
        Code::TransformersVersion,
        node.span_of("transformers"),
        format!(
            "`{}` is a `{}` model, which transformers knows from {need}; `{}` runs {have}",
            facts.id, facts.model_type, node.name
        ),
        format!("transformers {have} cannot load `{}`", facts.model_type),
        help,
    );
}

fn attention(r: &mut Report<'_>, node: &TypedNode, facts: &ModelFacts) {
    // Only a kernel someone chose: the family's own default is never one it refuses.
    let chosen = node.fields.get("attention").filter(|f| f.origin != crate::check::Origin::Family);
    let Some(Val::Enum(kernel)) = chosen.map(|f| &f.val) else { return };
    let Some(refusal) = facts.arch.refusal(kernel) else { return };
    let warning = refusal.severity == "warning";
    let verb = if warning { "should not" } else { "cannot" };
    let d = r.emit(
        Code::AttentionKernel,
        node.span_of("attention"),
        format!("`{}` models {verb} train with `{kernel}` attention", facts.family),
        refusal.why.clone(),
        format!(
            "leave `attention` unset (tunec uses `{}` for `{}`), or choose another kernel",
            facts.arch.attn_implementation, facts.family
        ),
    );
    if warning {
        d.severity = Severity::Warning;
    }
}

/// bitsandbytes on a model whose experts it cannot quantize: refused for MXFP4 checkpoints,
/// counted in bf16 for fused experts.
fn quantized_experts(r: &mut Report<'_>, node: &TypedNode, facts: &ModelFacts) {
    let quant = node.fields.word("quant");
    if quant.is_none() {
        return;
    }
    if facts.weights == "mxfp4" {
        r.emit(
            Code::Mxfp4Quant,
            node.span_of("quant"),
            format!("`{}` ships MXFP4 weights, which must be dequantized to bf16 to train", facts.id),
            format!("{}; bitsandbytes cannot quantize an MXFP4 checkpoint", node.describe("quant")),
            "remove `quant` and train `method = lora { ... }` on the bf16 weights (tunec loads them with `Mxfp4Config(dequantize=True)`); add `fsdp` to shard them if they do not fit".into(),
        );
    } else if facts.arch.moe == MoeKind::Fused && (four_bit(node) || quant == Some("int8")) {
        let experts = facts.counts().experts;
        let shard = if node.fields.get("fsdp").is_some() { "" } else { "; add `fsdp` to shard them over the GPUs" };
        r.emit(
            Code::FusedExpertsQuant,
            node.span_of("quant"),
            format!("the experts of `{}` stay bf16: bitsandbytes quantizes only nn.Linear layers", facts.id),
            format!(
                "{:.1} GiB of fused expert parameters are not quantized",
                experts as f64 * 2.0 / (1u64 << 30) as f64
            ),
            format!("the estimate counts them in bf16, as its `expert weights (bf16: not quantizable)` term{shard}"),
        );
    }
}

fn expert_dropout(r: &mut Report<'_>, node: &TypedNode, facts: &ModelFacts) {
    let list = match node.fields.path("method.targets").map(|f| &f.val) {
        Some(Val::Targets(Some(list))) => list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        _ => return,
    };
    if !Targets::new(Some(&list)).fused_experts(&facts.arch)
        || node.fields.float("method.dropout").unwrap_or(0.0) <= 0.0
    {
        return;
    }
    r.emit(
        Code::ExpertLoraDropout,
        node.span_of("method.dropout"),
        format!("LoRA on the fused experts of `{}` needs `dropout = 0.0`", facts.id),
        node.describe("method.dropout"),
        "set `dropout = 0.0` in `method`: PEFT adapts fused experts through `target_parameters`, whose layer cannot apply dropout (it refuses lora_dropout != 0)".into(),
    );
}

/// The data a train node reads was tokenized by another model's tokenizer whose ids run past this
/// model's embedding rows.
fn tokenizer_rows(r: &mut Report<'_>, node: &TypedNode, facts: &ModelFacts) {
    let program = r.program;
    let Some(data) = node.fields.reference("data") else { return };
    let tokenizer = match program.node(&data.node).map(|n| &n.ty) {
        Some(crate::check::NodeType::Chat { tokenizer, .. } | crate::check::NodeType::Splits { tokenizer, .. }) => {
            tokenizer
        }
        _ => return,
    };
    let model = node.fields.reference("model").map(|m| m.node.as_str()).unwrap_or_default();
    let Some(tok) = program.model_facts(tokenizer) else { return };
    // The same facts are checked once, on the model node.
    if std::ptr::eq(tok, facts) || tokenizer == model {
        return;
    }
    let Some(id) = tok.max_token_id.filter(|id| *id >= facts.vocab_size) else { return };
    r.emit(
        Code::TokenizerVocab,
        node.span_of("data"),
        format!(
            "`{}` was tokenized for `{tokenizer}`, whose tokens reach id {id}; `{}` has {} embedding rows",
            data.node, facts.id, facts.vocab_size
        ),
        format!("token ids from `{}`'s tokenizer", tok.id),
        format!("template the data with this model's tokenizer: `tokenizer = {model}` on the chat node"),
    );
}

/// A local model whose tokenizer does not belong to its config.json.
fn own_tokenizer(r: &mut Report<'_>, node: &TypedNode) {
    let Some(facts) = &node.model else { return };
    let Some(id) = facts.max_token_id.filter(|id| *id >= facts.vocab_size) else { return };
    let field = if node.fields.get("path").is_some() { "path" } else { "id" };
    r.emit(
        Code::TokenizerVocab,
        node.span_of(field),
        format!(
            "the tokenizer of `{}` uses token id {id}, past the model's {} embedding rows",
            facts.id, facts.vocab_size
        ),
        "tokenizer_config.json and config.json disagree".into(),
        "the directory mixes two models: save the checkpoint's own tokenizer beside it, or resize the embeddings to the tokenizer (`model.resize_token_embeddings(len(tokenizer))`) and save the model again".into(),
    );
}

fn roles(r: &mut Report<'_>, node: &TypedNode) {
    let program = r.program;
    if node.fields.get("system").is_none() {
        return;
    }
    let Some(facts) = node.fields.reference("tokenizer").and_then(|t| program.model_facts(&t.node)) else { return };
    let (message, label) = match facts.template_system.as_str() {
        "refused" => ("refuses a system message", "the template raises on the `system` role"),
        "last_user" => (
            "writes a system message into the last user turn only",
            "the prompt would have it and the training conversation, which ends with the answer, would not",
        ),
        _ => return,
    };
    r.emit(
        Code::TemplateRoles,
        node.span_of("system"),
        format!("the chat template of `{}` {message}", facts.id),
        label.into(),
        "remove `system`, or write its text at the start of `user` (`user = \"<instructions>\\n\\n{question}\"`)"
            .into(),
    )
    .secondary
    .push(Label::new(node.span_of("tokenizer"), format!("templated with `{}`", facts.id)));
}
