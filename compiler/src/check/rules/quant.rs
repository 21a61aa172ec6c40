//! Rules about quantization and merging: the FSDP+QLoRA storage dtype, bitsandbytes' poor
//! defaults, quantization without an adapter, and merging into a quantized or foreign base (a
//! `dtype` that re-quantizes, or a checkpoint stored quantized).

use super::{four_bit, precision, Report};
use crate::check::{NodeType, TypedNode};
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::NodeKind;

pub(super) fn run(r: &mut Report<'_>) {
    let program = r.program;
    for node in r.program.nodes.iter().filter(|n| n.kind == NodeKind::Train) {
        let method = node.fields.word("method");
        let quant = node.fields.word("quant");
        if method == Some("qlora") && quant.is_none() {
            r.emit(
                Code::MissingField,
                node.span_of("method"),
                "`qlora` needs a `quant` setting".into(),
                "QLoRA trains on a quantized base".into(),
                "add `quant = nf4 { double_quant = true, compute = bf16, storage = bf16 }`, or use `method = lora`"
                    .into(),
            );
        }
        if quant.is_some() && method == Some("full") {
            r.emit(
                Code::QuantWithoutAdapter,
                node.span_of("quant"),
                "quantized weights cannot be fine-tuned in full".into(),
                "4/8-bit weights are frozen".into(),
                "train an adapter on the quantized base (`method = qlora { ... }`), or remove `quant` for full fine-tuning".into(),
            )
            .secondary
            .push(Label::new(node.span_of("method"), "full fine-tuning chosen here"));
        }
        if quant.is_some() && method == Some("lora") {
            r.emit(
                Code::QuantWithoutAdapter,
                node.span_of("method"),
                "`lora` with a quantized base is QLoRA".into(),
                "`quant` is set, so the base is loaded quantized".into(),
                "write `method = qlora { ... }` to say so, or remove `quant` to train LoRA on a bf16 base".into(),
            )
            .severity = crate::diagnostics::Severity::Warning;
        }
        if four_bit(node) {
            let dtype = precision(node);
            let storage = node.fields.word("quant.storage").unwrap_or("uint8");
            // FSDP flattens one float dtype: the storage must be the training dtype, or fp32 with fp16
            // mixed precision (PEFT's recommendation).
            let compatible = storage == dtype || (dtype == "fp16" && storage == "fp32");
            if node.fields.get("fsdp").is_some() && !compatible {
                let help = if dtype == "fp16" {
                    "with fp16 training, store 4-bit weights in fp32: `quant = nf4 { storage = fp32 }`, or train in bf16".to_owned()
                } else {
                    format!("set `storage = {dtype}` in `quant`, so FSDP sees one float dtype")
                };
                let storage_desc = node.describe("quant.storage");
                let precision_desc = node.describe("precision");
                r.emit(
                    Code::FsdpQloraStorage,
                    node.span_of("quant.storage"),
                    format!("FSDP cannot shard 4-bit weights stored as `{storage}` in a `{dtype}` model"),
                    storage_desc,
                    help,
                )
                .secondary
                .extend([
                    Label::new(node.span_of("precision"), precision_desc),
                    Label::new(node.span_of("fsdp"), "FSDP enabled here"),
                ]);
            }
            if quant == Some("fp4") {
                r.emit(
                    Code::BnbDefaults,
                    node.span_of("quant"),
                    "`fp4` is bitsandbytes' default, not QLoRA's".into(),
                    "4-bit float fits normally distributed weights worse than NF4".into(),
                    "use `quant = nf4 { ... }`, the data type QLoRA was published with".into(),
                );
            }
            if node.fields.word("quant.compute") == Some("fp32") {
                r.emit(
                    Code::BnbDefaults,
                    node.span_of("quant.compute"),
                    "4-bit compute in fp32 is bitsandbytes' default and slow".into(),
                    "every dequantized matmul runs in fp32".into(),
                    format!(
                        "set `compute = {}` to match the training precision",
                        if precision(node) == "fp32" { "bf16" } else { precision(node) }
                    ),
                );
            }
            if node.fields.bool("quant.double_quant") == Some(false) {
                r.emit(
                    Code::BnbDefaults,
                    node.span_of("quant.double_quant"),
                    "double quantization is off".into(),
                    "costs 0.37 bit per parameter more (4.5 instead of 4.127)".into(),
                    "set `double_quant = true` unless you are reproducing a run without it".into(),
                );
            }
        }
    }
    for node in r.program.nodes.iter().filter(|n| n.kind == NodeKind::Merge) {
        let dtype = node.fields.word("dtype").unwrap_or("bf16");
        if matches!(dtype, "nf4" | "int8") {
            r.emit(
                Code::MergeQuantizedBase,
                node.span_of("dtype"),
                format!("merging into a `{dtype}` base"),
                "the adapter's update is rounded away when re-quantized".into(),
                "merge into the 16-bit base (`dtype = bf16`) and quantize the merged model afterwards if you need to"
                    .into(),
            );
        }
        let Some(adapter) = node.fields.reference("adapter").and_then(|a| program.node(&a.node)) else { continue };
        let NodeType::Adapter { base } = &adapter.ty else { continue };
        stored_quantized(r, node, base);
        if let Some(explicit) = node.fields.reference("base") {
            if &explicit.node != base {
                r.emit(
                    Code::AdapterBase,
                    node.span_of("base"),
                    format!("`{}` was trained on `{base}`, not `{}`", adapter.name, explicit.node),
                    format!("merging into `{}`", explicit.node),
                    format!("merge into the base it was trained on: `base = {base}` (or leave `base` out)"),
                )
                .secondary
                .push(Label::new(adapter.span_of("model"), format!("trained on `{base}` here")));
            }
        }
        let trained = precision(adapter);
        if matches!(dtype, "bf16" | "fp16" | "fp32") && dtype != trained && !(trained == "fp32" && dtype == "bf16") {
            r.emit(
                Code::MergeDtype,
                node.span_of("dtype"),
                format!("merging in `{dtype}` an adapter trained in `{trained}`"),
                format!("{trained} → {dtype} changes the precision or range of the weights"),
                format!("merge in the training precision: `dtype = {trained}`"),
            );
        }
    }
    for node in r.program.nodes.iter().filter(|n| n.kind == NodeKind::Evaluate) {
        let Some(model_ref) = node.fields.reference("model") else { continue };
        let Some(model) = program.node(&model_ref.node) else { continue };
        let Some(data_ref) = node.fields.reference("data") else { continue };
        let tokenizer = match program.node(&data_ref.node).map(|n| &n.ty) {
            Some(NodeType::Splits { tokenizer, .. } | NodeType::Chat { tokenizer, .. }) => tokenizer.clone(),
            _ => continue,
        };
        let base = match &model.ty {
            NodeType::Model { base } | NodeType::Adapter { base } => base.clone(),
            _ => continue,
        };
        if !base.is_empty() && !tokenizer.is_empty() && base != tokenizer {
            r.emit(
                Code::AdapterBase,
                node.span_of("data"),
                format!("`{}` derives from `{base}` but the data was templated for `{tokenizer}`", model.name),
                "tokenized for another model".into(),
                format!("evaluate on conversations rendered with `{base}`'s tokenizer"),
            );
        }
    }
}

/// A merge into a checkpoint stored quantized (FP8, or pre-quantized by bitsandbytes, GPTQ, AWQ, ...):
/// merge.py adds the adapter to 16-bit weights only and refuses any `quantization_config` but
/// MXFP4's, which it dequantizes, so the pipeline would fail at the merge, after the training.
fn stored_quantized(r: &mut Report<'_>, node: &TypedNode, base: &str) {
    // Through merged and trained models to the checkpoint they started from.
    let Some(model) = r.program.checkpoint(base) else { return };
    let Some(facts) = &model.model else { return };
    if facts.weights.is_empty() || facts.weights == "mxfp4" {
        return;
    }
    let (format, how, help) = if facts.weights == "fp8" {
        (
            "FP8".to_owned(),
            "stored in FP8".to_owned(),
            "train and merge from a 16-bit (bf16) copy of the weights: a `local_model` folder of the dequantized checkpoint".to_owned(),
        )
    } else {
        (
            format!("`{}`", facts.weights),
            format!("quantized by `{}`", facts.weights),
            "train from the 16-bit checkpoint it was quantized from: QLoRA (`method = qlora { ... }` with `quant = nf4`) quantizes it as training loads it, and the merge adds the adapter to the 16-bit weights".to_owned(),
        )
    };
    let key = if model.fields.get("path").is_some() { "path" } else { "id" };
    let diagnostic = r.emit(
        Code::MergeQuantizedBase,
        node.span_of("adapter"),
        format!("merging into `{}`, whose checkpoint is stored quantized ({format})", facts.id),
        format!("`{}` was trained on `{}`, {how}", adapter_name(node), model.name),
        help,
    );
    diagnostic
        .secondary
        .push(Label::new(model.span_of(key), format!("{how}: merge.py merges into 16-bit weights only")));
}

fn adapter_name(node: &TypedNode) -> String {
    node.fields.reference("adapter").map(|a| a.node.clone()).unwrap_or_default()
}
