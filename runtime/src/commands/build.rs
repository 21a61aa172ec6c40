//! `tunec build`: writes the lowered pipeline as files a reviewer (or another tool) can read.
//!
//! ```text
//! DIR/manifest.json        what was built: pipeline and its file, bundle digest, nodes with keys and files
//! DIR/job_graph.json       the whole JobGraph (schema-versioned)
//! DIR/code/                the script bundle (stdlib entry scripts, launch.sh, requirements.txt)
//! DIR/<node>/request.json  the CreateTrainingJob request, as it goes on the wire (SageMaker target)
//! DIR/<node>/args.yaml     the job's configuration
//! DIR/pipeline.json        a SageMaker Pipelines definition (--emit sagemaker-pipeline)
//! ```
//!
//! Values from `env()` stay `${env:NAME}` placeholders in every file.

use super::check::compiled;
use super::{usage_error, Input};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use tunec_compiler::lower::sagemaker::pipeline;
use tunec_compiler::lower::Execution;
use tunec_compiler::target::Target;
use tunec_runtime::bundle;

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// `file` as a path relative to the folder `from`, so that a build folder keeps pointing at its
/// pipeline when both move together.
fn relative(from: &Path, file: &Path) -> std::io::Result<PathBuf> {
    let (from, file) = (std::path::absolute(from)?, std::path::absolute(file)?);
    let (from, file): (Vec<Component>, Vec<Component>) =
        (from.components().filter(|c| *c != Component::CurDir).collect(), file.components().collect());
    let common = from.iter().zip(&file).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    path.extend(&file[common..]);
    Ok(path)
}

fn pretty(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

pub(crate) fn build(input: &Input, out: &Path, emit_pipeline: bool) -> ExitCode {
    let (_, graph) = match compiled(input) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if emit_pipeline && graph.target != Target::SageMaker {
        return usage_error(
            "a SageMaker Pipelines definition needs `target sagemaker { ... }`; this pipeline's target is local",
        );
    }
    let result = (|| -> std::io::Result<serde_json::Value> {
        let code_files = bundle::write(&out.join("code"))?;
        let mut nodes = Vec::new();
        for node in &graph.nodes {
            let mut files = Vec::new();
            match &node.execution {
                Execution::SageMakerJob { request, args_yaml, .. } => {
                    write(&out.join(&node.name).join("request.json"), &pretty(request))?;
                    write(&out.join(&node.name).join("args.yaml"), args_yaml)?;
                    files.extend([format!("{}/request.json", node.name), format!("{}/args.yaml", node.name)]);
                }
                Execution::LocalScript { args_yaml, .. } => {
                    write(&out.join(&node.name).join("args.yaml"), args_yaml)?;
                    files.push(format!("{}/args.yaml", node.name));
                }
                _ => {}
            }
            nodes.push(serde_json::json!({
                "name": node.name,
                "kind": node.kind,
                "key": node.key,
                "deps": node.deps,
                "execution": node.execution.describe(),
                "job_name": match &node.execution { Execution::SageMakerJob { job_name, .. } => Some(job_name), _ => None },
                "files": files,
            }));
        }
        write(&out.join("job_graph.json"), &pretty(&graph))?;
        let mut extra = Vec::new();
        if emit_pipeline {
            write(&out.join("pipeline.json"), &pretty(&pipeline::definition(&graph)))?;
            extra.push("pipeline.json");
        }
        Ok(serde_json::json!({
            "version": graph.version,
            "pipeline": graph.pipeline,
            "pipeline_file": relative(out, &input.file)?.display().to_string(),
            "target": graph.target,
            "bundle_digest": graph.bundle_digest,
            "env": graph.env,
            "code": code_files,
            "nodes": nodes,
            "extra": extra,
        }))
    })();
    match result.and_then(|manifest| write(&out.join("manifest.json"), &pretty(&manifest)).map(|()| manifest)) {
        Ok(manifest) => {
            let jobs = manifest["nodes"]
                .as_array()
                .map_or(0, |n| n.iter().filter(|n| !n["files"].as_array().is_none_or(Vec::is_empty)).count());
            out!("wrote manifest.json ({} nodes, {jobs} jobs) to {}", graph.nodes.len(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(&format!("cannot write to `{}`: {e}", out.display())),
    }
}
