//! Rules about the instance a node runs on: that it exists, has the right accelerator and dtype
//! support, and that its time limits are ones SageMaker accepts.

use super::Report;
use crate::catalog::{Accelerator, Catalog};
use crate::check::suggest;
use crate::check::Val;
use crate::diagnostics::{Code, Label};
use crate::syntax::ast::NodeKind;
use crate::target::sagemaker::MAX_RUNTIME_SECS;
use crate::target::Target;

/// The nodes that run as jobs: train, merge and evaluate.
fn job_nodes(program: &crate::check::Program) -> impl Iterator<Item = &crate::check::TypedNode> {
    program.nodes.iter().filter(|n| matches!(n.kind, NodeKind::Train | NodeKind::Merge | NodeKind::Evaluate))
}

pub(super) fn run(r: &mut Report<'_>, catalog: &Catalog) {
    if r.program.target.kind == Target::SageMaker {
        let jobs: Vec<_> = job_nodes(r.program)
            .filter(|n| n.compute.is_none())
            // A job that would inherit from an upstream job is covered by that job's report.
            .filter(|n| {
                !["adapter", "model"].iter().filter_map(|f| n.fields.reference(f)).any(|upstream| {
                    r.program.node(&upstream.node).is_some_and(|u| matches!(u.kind, NodeKind::Train | NodeKind::Merge))
                })
            })
            .collect();
        for node in jobs {
            let what = if node.kind == NodeKind::Train { "" } else { " (or on the job it reads from)" };
            r.emit(
                Code::MissingField,
                node.name_span,
                format!("`{}` runs as a SageMaker job but names no instance", node.name),
                format!("`compute` is not set here{what}"),
                "add `compute = \"ml.g5.2xlarge\" x 1` (or the instance the estimate suggests)".into(),
            );
        }
    }
    let nodes: Vec<_> = job_nodes(r.program).collect();
    for node in nodes {
        let Some(fv) = node.fields.get("compute") else { continue };
        let Val::Instance { name, count } = &fv.val else { continue };
        let Some(instance) = catalog.instance(name) else {
            let help = match suggest::closest(name, catalog.instances.iter().map(|i| i.name.as_str())) {
                Some(best) => format!("did you mean `{best}`?"),
                None if !name.starts_with("ml.") => format!("SageMaker instance types start with `ml.`: `ml.{name}`"),
                None => "`tunec explain unknown_instance` lists the catalog's training instances".to_owned(),
            };
            r.emit(
                Code::UnknownInstance,
                fv.span,
                format!("unknown instance type `{name}`"),
                "not a SageMaker training instance in the catalog".into(),
                help,
            );
            continue;
        };
        if node.kind != NodeKind::Train {
            continue;
        }
        let quantized = super::four_bit(node) || node.fields.word("quant") == Some("int8");
        if instance.accelerator != Accelerator::Cuda {
            let what = match instance.accelerator {
                Accelerator::Neuron => "Trainium (Neuron) accelerators",
                _ => "no GPU",
            };
            let why = if quantized {
                "bitsandbytes quantization needs a CUDA GPU"
            } else {
                "the Hugging Face training image needs a CUDA GPU"
            };
            r.emit(
                Code::NoCudaGpu,
                fv.span,
                format!("`{name}` has {what}"),
                why.into(),
                "pick a GPU instance such as `\"ml.g5.2xlarge\" x 1` or `\"ml.p4d.24xlarge\" x 1`".into(),
            );
            continue;
        }
        let dtype = super::precision(node);
        let compute_dtype = node.fields.word("quant.compute");
        if !instance.bf16 && (dtype == "bf16" || compute_dtype == Some("bf16")) {
            let at = if dtype == "bf16" { node.span_of("precision") } else { node.span_of("quant.compute") };
            r.emit(
                Code::Bf16Unsupported,
                fv.span,
                format!("`{name}` ({}) has no bf16 support", instance.gpu),
                format!("{} GPUs cannot run bf16", instance.gpu),
                "use an Ampere or newer GPU (g5, g6, p4d, p5), or train in `fp16` with fp32 quant storage".into(),
            )
            .secondary
            .push(Label::new(at, "bf16 requested here"));
        }
        let _ = count;
    }
    for node in r.program.nodes.iter().filter(|n| n.kind == NodeKind::Train).collect::<Vec<_>>() {
        for field in ["max_runtime", "max_wait"] {
            if let Some(Val::Duration(secs)) = node.fields.get(field).map(|f| &f.val) {
                if *secs == 0 || *secs > MAX_RUNTIME_SECS {
                    r.emit(
                        Code::MaxRuntimeLimit,
                        node.span_of(field),
                        format!("`{field}` must be between 1 s and 28 days"),
                        format!("{secs} s is outside SageMaker's limits"),
                        "SageMaker stops a training job after at most 28 days (2,419,200 s); split longer training with checkpoints".into(),
                    );
                }
            }
        }
        let spot = node.fields.bool("spot").unwrap_or(false);
        if let (Some(Val::Duration(run)), Some(Val::Duration(wait))) =
            (node.fields.get("max_runtime").map(|f| &f.val), node.fields.get("max_wait").map(|f| &f.val))
        {
            if spot && wait < run {
                r.emit(
                    Code::MaxRuntimeLimit,
                    node.span_of("max_wait"),
                    "`max_wait` is shorter than `max_runtime`".into(),
                    "SageMaker rejects a wait shorter than the runtime".into(),
                    format!("set `max_wait` to at least `max_runtime` ({run} s), e.g. twice it"),
                );
            }
        }
        if !spot && node.fields.get("max_wait").is_some() {
            r.emit(
                Code::MaxRuntimeLimit,
                node.span_of("max_wait"),
                "`max_wait` without `spot = true`".into(),
                "SageMaker only accepts a wait time for managed spot training".into(),
                "remove `max_wait`, or set `spot = true`".into(),
            );
        }
        if spot && node.fields.get("save_steps").is_none() {
            r.emit(
                Code::SpotWithoutCheckpoints,
                node.span_of("spot"),
                "spot training without checkpoints".into(),
                "an interrupted spot job will restart from step 0".into(),
                "add `save_steps = 100` so an interruption resumes from the newest checkpoint".into(),
            );
        }
    }
}

/// The transformers/PyTorch pair of every job node must name a training image, served in the
/// target's region when the region is written in the pipeline.
pub(super) fn images(r: &mut Report<'_>, catalog: &Catalog) {
    let region = match r.program.target.fields.get("region").map(|f| &f.val) {
        Some(Val::Str(region)) if r.program.target.kind == Target::SageMaker => Some(region.clone()),
        _ => None,
    };
    let nodes: Vec<_> = job_nodes(r.program).collect();
    for node in nodes {
        let (Some(transformers), Some(pytorch)) = (node.fields.str("transformers"), node.fields.str("pytorch")) else {
            continue;
        };
        let Some(image) = catalog.image(transformers, pytorch) else {
            let known: Vec<String> = catalog
                .images
                .iter()
                .map(|i| format!("transformers {} + PyTorch {}", i.transformers, i.pytorch))
                .collect();
            let field = if node.fields.is_user("transformers") { "transformers" } else { "pytorch" };
            r.emit(
                Code::UnknownImage,
                node.span_of(field),
                format!("no training image for transformers {transformers} with PyTorch {pytorch}"),
                "not in stdlib/catalog/images.toml".into(),
                format!("the images are: {}", known.join("; ")),
            );
            continue;
        };
        if let Some(region) = &region {
            if image.uri(region).is_none() {
                let span = r.program.target.fields.get("region").map_or(r.program.target.span, |f| f.span);
                r.emit(
                    Code::UnknownImage,
                    span,
                    format!("the transformers {transformers} image is not published in `{region}`"),
                    format!("`{}` runs in no registry of this region", node.name),
                    "use a region the image is published in, e.g. `us-east-1`, `us-west-2` or `eu-west-1`".into(),
                )
                .secondary
                .push(Label::new(node.name_span, "runs this image"));
                break;
            }
        }
    }
}
