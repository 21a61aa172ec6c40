//! Rules about FSDP: the wrap class, sharding over one GPU, RAM-efficient loading, double
//! activation checkpointing and optimizers that break under sharding or offload.

use super::{four_bit, Report};
use crate::catalog::Catalog;
use crate::check::schema::EIGHT_BIT_OPTIMIZERS as EIGHT_BIT;
use crate::check::Val;
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::NodeKind;

pub(super) fn run(r: &mut Report<'_>, catalog: &Catalog) {
    let program = r.program;
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Train) {
        if node.fields.get("fsdp").is_none() {
            continue;
        }
        let facts = node.fields.reference("model").and_then(|m| program.model_facts(&m.node));
        if let (Some(facts), Some(class)) = (facts, node.fields.str("fsdp.wrap_class")) {
            if class != facts.decoder_layer {
                r.emit(
                    Code::FsdpWrapClass,
                    node.span_of("fsdp.wrap_class"),
                    format!("`{class}` is not the decoder layer of `{}`", facts.id),
                    format!("{} wraps `{}`", facts.architecture, facts.decoder_layer),
                    format!("set `wrap_class = \"{}\"`, or leave it out and tunec derives it", facts.decoder_layer),
                );
            }
        }
        if node.fields.bool("fsdp.auto_wrap") == Some(false) {
            r.emit(
                Code::FsdpWrapClass,
                node.span_of("fsdp.auto_wrap"),
                "FSDP without auto wrap puts the whole model in one unit".into(),
                "every rank gathers all weights at once".into(),
                "set `auto_wrap = true` so each decoder layer is its own unit".into(),
            );
        }
        let offload = node.fields.bool("fsdp.offload").unwrap_or(false);
        if let Some(Val::Instance { name, count }) = node.fields.get("compute").map(|f| &f.val) {
            let gpus = catalog.instance(name).map_or(0, |i| i.gpu_count) * u64::try_from(*count).unwrap_or(0);
            if gpus == 1 && !offload {
                r.emit(
                    Code::FsdpSingleGpu,
                    node.span_of("fsdp"),
                    "FSDP on one GPU without offload".into(),
                    format!("`{name}` x {count} has a single GPU to shard over"),
                    "remove `fsdp`, or set `offload = true` to move parameters and optimizer state to host RAM".into(),
                );
            }
        }
        if node.fields.bool("fsdp.cpu_ram_efficient_loading") == Some(true)
            && node.fields.bool("fsdp.sync_module_states") == Some(false)
        {
            r.emit(
                Code::RamEfficientLoading,
                node.span_of("fsdp.sync_module_states"),
                "RAM-efficient loading without syncing module states".into(),
                "ranks other than 0 would keep random weights".into(),
                "set `sync_module_states = true` (or turn `cpu_ram_efficient_loading` off)".into(),
            );
        }
        if node.fields.bool("fsdp.activation_checkpointing") == Some(true)
            && node.fields.bool("gradient_checkpointing") == Some(true)
        {
            r.emit(
                Code::DoubleCheckpointing,
                node.span_of("fsdp.activation_checkpointing"),
                "activation checkpointing is on twice".into(),
                "FSDP checkpointing here".into(),
                "keep one: set `gradient_checkpointing = false` or `activation_checkpointing = false`".into(),
            )
            .secondary
            .push(Label::new(node.span_of("gradient_checkpointing"), node.describe("gradient_checkpointing")));
        }
        let optimizer = node.fields.word("optimizer").unwrap_or("adamw_torch");
        if optimizer == "paged_adamw_8bit" && four_bit(node) {
            r.emit(
                Code::OptimizerFsdp,
                node.span_of("optimizer"),
                "`paged_adamw_8bit` fails to save checkpoints under FSDP with QLoRA".into(),
                "checkpoint saving raises with this optimizer".into(),
                "use `optimizer = adamw_torch` (LoRA optimizer state is small) or `paged_adamw_32bit`".into(),
            );
        } else if EIGHT_BIT.contains(&optimizer) && offload {
            r.emit(
                Code::OptimizerFsdp,
                node.span_of("optimizer"),
                format!("`{optimizer}` cannot run with FSDP CPU offload"),
                "8-bit optimizer state lives on the GPU".into(),
                "use `optimizer = adamw_torch` with offload, or set `offload = false`".into(),
            )
            .secondary
            .push(Label::new(node.span_of("fsdp.offload"), "offload enabled here"));
        }
    }
}
