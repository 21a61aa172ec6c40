//! The lowering for the SageMaker target: a job node becomes a training job with a deterministic
//! name (`names.rs`) and its CreateTrainingJob request (`request.rs`); the graph of such jobs can
//! also be written as a SageMaker Pipelines definition (`pipeline.rs`), and `iam.rs` derives the
//! least-privilege policies a run needs.

pub mod iam;
pub mod names;
pub mod pipeline;
pub mod request;

use super::{Execution, LowerInput};
use crate::check::TypedNode;
use std::collections::BTreeMap;

/// What the lowering has worked out for a job node before it knows the target.
pub(crate) struct Job<'a> {
    pub key: &'a str,
    /// The keys of the nodes lowered so far (every input of this one).
    pub keys: &'a BTreeMap<String, String>,
    pub image: Option<String>,
    pub script: String,
    pub args_yaml: String,
    pub channels: Vec<super::JobChannel>,
}

/// The execution of a job node on SageMaker: a training job and its request.
pub(crate) fn job(input: &LowerInput<'_>, node: &TypedNode, job: Job<'_>) -> Execution {
    let program = input.program;
    let job_name = names::job_name(&program.name, &node.name, job.key);
    let (instance_type, instance_count) =
        node.compute.as_ref().map(|c| (c.instance.clone(), c.count)).unwrap_or_default();
    let request = request::create_training_job(&request::RequestInput {
        program,
        node,
        channels: &job.channels,
        job_name: &job_name,
        key: job.key,
        keys: job.keys,
        image: job.image.clone().unwrap_or_default(),
        bundle_digest: input.bundle_digest,
        disk_bytes: input.estimates.and_then(|e| e.node(&node.name)).map(|e| e.disk_bytes),
    });
    Execution::SageMakerJob {
        script: job.script,
        job_name,
        image: job.image.unwrap_or_default(),
        instance_type,
        instance_count,
        request,
        args_yaml: job.args_yaml,
        channels: job.channels,
    }
}
