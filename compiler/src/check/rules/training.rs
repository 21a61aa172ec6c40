//! Rules about the training loop itself: use_cache, warm-up, LoRA target modules and packing.

use super::Report;
use crate::catalog::architecture::{ALL_LINEAR, EXPERTS};
use crate::check::Val;
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::NodeKind;

pub(super) fn run(r: &mut Report<'_>) {
    let program = r.program;
    for node in program.nodes.iter().filter(|n| n.kind == NodeKind::Train) {
        if node.fields.bool("use_cache") == Some(true) && node.fields.bool("gradient_checkpointing") == Some(true) {
            r.emit(
                Code::UseCacheTraining,
                node.span_of("use_cache"),
                "`use_cache` is on while training with gradient checkpointing".into(),
                "the KV cache is incompatible with recomputed activations".into(),
                "set `use_cache = false`; tunec turns it back on in the merged model's config".into(),
            );
        }
        if node.fields.get("warmup_steps").is_some() && node.fields.get("warmup_ratio").is_some() {
            r.emit(
                Code::WarmupConflict,
                node.span_of("warmup_ratio"),
                "`warmup_steps` and `warmup_ratio` are both set".into(),
                "one of them would be ignored".into(),
                "keep one of the two".into(),
            )
            .secondary
            .push(Label::new(node.span_of("warmup_steps"), "also set here"));
        }
        if let Some(facts) = node.fields.reference("model").and_then(|m| program.model_facts(&m.node)) {
            if let Some(Val::Targets(Some(targets))) = node.fields.path("method.targets").map(|f| &f.val) {
                let known = facts.arch.target_names();
                for (name, span) in targets {
                    if name == "lm_head" || name == ALL_LINEAR || known.contains(&name.as_str()) {
                        continue;
                    }
                    let help = if name == EXPERTS {
                        format!("{} has no experts; its modules are {}", facts.architecture, quoted(&known))
                    } else {
                        match crate::check::suggest::closest(name, known.iter().copied()) {
                            Some(best) => format!("did you mean `{best}`? or use `targets = all_linear`"),
                            None => format!("{} has {}", facts.architecture, quoted(&known)),
                        }
                    };
                    r.emit(
                        Code::UnknownTargetModule,
                        *span,
                        format!("`{name}` is not a module of {}", facts.architecture),
                        "no such linear layer".into(),
                        help,
                    );
                }
            }
        }
        if node.fields.bool("packing") == Some(true) && node.fields.word("attention") != Some("flash_attention_2") {
            r.emit(
                Code::PackingAttention,
                node.span_of("packing"),
                "packing without `flash_attention_2`".into(),
                "packed conversations would attend to each other".into(),
                "set `attention = flash_attention_2` (Ampere or newer), or `packing = false`".into(),
            )
            .secondary
            .push(Label::new(node.span_of("attention"), node.describe("attention")));
        }
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
}
