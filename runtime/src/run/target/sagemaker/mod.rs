//! The SageMaker target: a train, merge or evaluate node becomes a SageMaker training job, created
//! from its lowered request, watched until it ends, retried when the failure is transient, and
//! re-attached to after tunec itself was interrupted or killed.
//!
//! **Names and attempts.** Attempt 1 of a node uses the lowered job name
//! (`<pipeline>-<node>-<key10>`); attempt `n` appends `-a<n>` ([`attempt_name`]). The executor
//! records the job name in the journal *before* anything is created, and that the job exists once
//! its creation is answered. A rerun that finds a node `running` with a job name asks SageMaker
//! about that job first (`DescribeTrainingJob`): a job that exists is re-attached to (watched, or
//! taken as finished). A name it cannot find is created only when the journal does not record it
//! as created; "cannot find" is read from the error's code (`ValidationException`, or
//! `ResourceNotFound`), not its text, which differs between AWS ("Requested resource not found."),
//! moto ("Could not find training job ...") and proxies. A job the journal records as created is
//! never created again: its absence is an error (another region or account). So a run killed at
//! any moment never creates a job twice.
//!
//! **Inputs.** Before `CreateTrainingJob`, what the job reads is uploaded under the prefixes its
//! request names ([`crate::run::s3`]): the split parts the data engine wrote locally, a `local_model`
//! directory, the job's args.yaml and the script bundle; a model another job wrote is read where
//! that job wrote it, under the job name that actually produced it (a retried upstream job has an
//! `-a<n>` name, and the request is rewritten to match). `${env:NAME}` placeholders are resolved
//! in memory at submission ([`request`]).
//!
//! **Watching.** `DescribeTrainingJob` is polled with a backoff (from `TUNEC_SAGEMAKER_POLL_SECONDS`,
//! default 10 s, growing to six times that while nothing changes) and jitter; status and
//! secondary status are shown as progress. A throttled call waits and asks again.
//!
//! **Failures** are classified ([`classify`]): capacity, spot interruption and SageMaker's
//! internal errors are retried as a new attempt after a backoff (a spot job's new attempt restores
//! the same checkpoint prefix, so training resumes); out of memory, script errors, permissions,
//! quotas and `max_runtime` are not. The message names the node's place in the `.tune` file, the
//! class, SageMaker's reason and what to change (for out of memory, the estimate).
//!
//! **Outputs.** A completed job's outputs are its model artifact and checkpoint prefix (what the
//! jobs after it read); the files of its `output.tar.gz` (metrics, an evaluation's report) are
//! downloaded into the node's local folder ([`output_data`]) for the summary and for people, and
//! not recorded, so that deleting them reruns nothing.
//!
//! **Stopping.** On Ctrl-C the job keeps running on SageMaker: tunec says so and waits five seconds
//! for a second Ctrl-C, which stops it (`StopTrainingJob`, then watched until `Stopped`);
//! otherwise it detaches, the node stays `running` with its job name, and the next `tunec run`
//! re-attaches.

pub mod classify;
pub mod output_data;
pub mod request;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_sagemaker::operation::describe_training_job::DescribeTrainingJobOutput;
use aws_sdk_sagemaker::types::TrainingJobStatus;
use serde_json::Value;
use tunec_compiler::lower::{ChannelSource, Execution, JobGraph, JobNode};

use super::{AfterStop, Attempt, BoxFuture, Ended, Failure, Job, JobInput, PrepareError, Target};
use crate::journal::{Output, State, Status};
use crate::run::aws::{self, error_parts, Aws};
use crate::run::progress::Reporter;
use crate::run::target::local::{bundle_dir, job_root};
use crate::run::{jitter, s3, NodeError, Stop, StopLevel};
use classify::{classify_api, classify_job, FailureClass};

/// The name of `attempt` of a job whose lowered (attempt 1) name is `lowered`: `-a<n>` appended,
/// the name cut before its key suffix when it would pass SageMaker's 63 characters.
pub fn attempt_name(lowered: &str, attempt: u32) -> String {
    if attempt <= 1 {
        return lowered.to_owned();
    }
    let suffix = format!("-a{attempt}");
    if lowered.len() + suffix.len() <= 63 {
        return format!("{lowered}{suffix}");
    }
    // `<prefix>-<key10>`: shorten the prefix, keep the key.
    let (head, key) = lowered.rsplit_once('-').unwrap_or(("", lowered));
    let room = 63usize.saturating_sub(key.len() + 1 + suffix.len());
    let head = head[..head.len().min(room)].trim_end_matches('-');
    if head.is_empty() {
        format!("{key}{suffix}")
    } else {
        format!("{head}-{key}{suffix}")
    }
}

/// Where the messages about a node point, and what the estimator said about it.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// `file:line:column` of the node in the `.tune` file.
    pub location: String,
    /// The memory estimate in one line (`34.6 GiB of 40 GiB per GPU`), for out-of-memory advice.
    pub memory: Option<String>,
}

/// How often to poll, and how long to wait before a retry.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub poll: Duration,
    pub poll_max: Duration,
    pub retry: Duration,
}

impl Timing {
    /// From `TUNEC_SAGEMAKER_POLL_SECONDS` (default 10): polls back off to 6× that while nothing
    /// changes, and a retry waits 6× that, doubling with each attempt.
    pub fn from_env() -> Timing {
        let poll = std::env::var("TUNEC_SAGEMAKER_POLL_SECONDS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(10.0);
        let poll = Duration::from_secs_f64(poll);
        Timing { poll, poll_max: poll * 6, retry: poll * 6 }
    }
}

/// What the SageMaker target needs besides the graph.
#[derive(Debug, Clone, Default)]
pub struct SageMakerOptions {
    /// The target's `region` (placeholders resolved; `None` leaves it to the AWS configuration)
    /// and the endpoint override.
    pub aws: aws::Settings,
    /// The target's `kms_key`, placeholders resolved.
    pub kms_key: Option<String>,
    /// Where each node is in the `.tune` file, and its memory estimate, for messages.
    pub contexts: BTreeMap<String, NodeContext>,
}

/// The SageMaker target of one run.
pub struct SageMakerTarget {
    options: SageMakerOptions,
    base: PathBuf,
    reporter: Arc<Reporter>,
    timing: Timing,
    /// The clients, once connected.
    aws: OnceLock<Arc<Aws>>,
}

impl SageMakerTarget {
    pub fn new(base: &Path, reporter: Arc<Reporter>, options: SageMakerOptions) -> SageMakerTarget {
        SageMakerTarget {
            options,
            base: base.to_path_buf(),
            reporter,
            timing: Timing::from_env(),
            aws: OnceLock::new(),
        }
    }
}

impl Target for SageMakerTarget {
    fn describe(&self) -> &'static str {
        "the SageMaker target"
    }

    /// Each job runs on instances of its own.
    fn max_jobs(&self) -> usize {
        usize::MAX
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.aws.get().is_none() {
                let aws = self.options.aws.connect(self.options.kms_key.clone()).await?;
                let _ = self.aws.set(Arc::new(aws));
            }
            Ok(())
        })
    }

    fn prepare<'a>(&'a self, input: JobInput<'a>, _stop: Stop) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>> {
        Box::pin(async move {
            let aws = self
                .aws
                .get()
                .cloned()
                .ok_or_else(|| PrepareError::Setup("the SageMaker target is not connected".into()))?;
            let plan = plan(input.graph, input.node, &self.base, input.state).map_err(PrepareError::Setup)?;
            let job: Box<dyn Job> = Box::new(SageMakerJob {
                context: self.options.contexts.get(&input.node.name).cloned().unwrap_or_default(),
                plan,
                aws,
                reporter: self.reporter.clone(),
                timing: self.timing,
                base: self.base.clone(),
                pipeline: input.graph.pipeline.clone(),
                name: String::new(),
                watch: Watch::default(),
            });
            Ok(job)
        })
    }
}

/// A job node ready to submit: its request and what must be uploaded first.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub node: String,
    /// The node's key, which names its local folder.
    key: String,
    /// The lowered request, placeholders unresolved.
    request: Value,
    lowered_name: String,
    args_yaml: String,
    /// (local folder, S3 prefix) pairs to upload; prefixes unresolved.
    uploads: Vec<(PathBuf, String)>,
    /// (lowered upstream job name, the name that produced its output).
    upstream: Vec<(String, String)>,
}

/// Resolves what a SageMaker job reads, before anything is recorded: a split part the data step
/// has not written, or an upstream job without a recorded name, is an error of the run's order.
pub fn plan(graph: &JobGraph, node: &JobNode, base: &Path, state: &State) -> Result<JobPlan, String> {
    let Execution::SageMakerJob { request, job_name, args_yaml, channels, .. } = &node.execution else {
        return Err(format!("`{}` is not a SageMaker job", node.name));
    };
    let channel_uri = |name: &str| -> Option<String> {
        request["InputDataConfig"]
            .as_array()?
            .iter()
            .find(|c| c["ChannelName"] == name)
            .and_then(|c| c.pointer("/DataSource/S3DataSource/S3Uri").and_then(Value::as_str).map(str::to_owned))
    };
    let key_of = |n: &str| graph.node(n).map(|n| n.key.clone()).ok_or_else(|| format!("no node `{n}`"));
    let mut uploads = Vec::new();
    let mut upstream = Vec::new();
    for channel in channels {
        match &channel.source {
            ChannelSource::Hub { .. } => {}
            ChannelSource::Data { node: split, part: Some(part) } => {
                let local = base.join(format!(".tunec/{}/data/{split}/{}/{part}", graph.pipeline, key_of(split)?));
                let uri = channel_uri(&channel.name).ok_or_else(|| format!("no `{}` channel", channel.name))?;
                uploads.push((local, uri));
            }
            ChannelSource::Data { node: split, part: None } => {
                return Err(format!(
                    "`{}` reads the whole split `{split}`; name the part it reads (`{split}.train`, `.val` or `.test`)",
                    node.name
                ));
            }
            ChannelSource::LocalModel { node: model } => {
                let path = graph.node(model).and_then(|m| m.fields().str("path")).unwrap_or_default();
                let uri = channel_uri(&channel.name).ok_or_else(|| format!("no `{}` channel", channel.name))?;
                uploads.push((base.join(path), uri));
            }
            ChannelSource::JobOutput { node: job } => {
                let lowered = match graph.node(job).map(|n| &n.execution) {
                    Some(Execution::SageMakerJob { job_name, .. }) => job_name.clone(),
                    _ => return Err(format!("`{job}` is not a SageMaker job")),
                };
                let actual = state
                    .nodes
                    .get(job)
                    .filter(|r| r.status == Status::Succeeded)
                    .and_then(|r| r.job_name.clone())
                    .ok_or_else(|| format!("`{job}` has not succeeded, so `{}` cannot read its output", node.name))?;
                upstream.push((lowered, actual));
            }
        }
    }
    Ok(JobPlan {
        node: node.name.clone(),
        key: node.key.clone(),
        request: request.clone(),
        lowered_name: job_name.clone(),
        args_yaml: args_yaml.clone(),
        uploads,
        upstream,
    })
}

impl JobPlan {
    pub fn lowered_name(&self) -> &str {
        &self.lowered_name
    }

    /// The request for the job `name`: placeholders resolved, upstream outputs renamed.
    fn request_for(&self, name: &str) -> Result<Value, String> {
        let mut text = serde_json::to_string(&self.request).map_err(|e| e.to_string())?;
        for (lowered, actual) in &self.upstream {
            text = text.replace(&format!("/{lowered}/"), &format!("/{actual}/"));
        }
        let mut request: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        request["TrainingJobName"] = Value::String(name.to_owned());
        request::resolve_value(&request)
    }
}

/// What watching a job has seen so far, kept across calls of [`Job::wait`].
#[derive(Default)]
struct Watch {
    /// The last status and secondary status shown.
    shown: String,
    /// The wait before the next poll, backing off while nothing changes.
    wait: Option<Duration>,
    throttled: u32,
    /// The description of a job that completed.
    completed: Option<DescribeTrainingJobOutput>,
}

/// A node's SageMaker training job.
struct SageMakerJob {
    plan: JobPlan,
    aws: Arc<Aws>,
    reporter: Arc<Reporter>,
    timing: Timing,
    context: NodeContext,
    /// The pipeline's folder (for the script bundle).
    base: PathBuf,
    pipeline: String,
    /// The name of the attempt started last.
    name: String,
    watch: Watch,
}

/// The error codes with which DescribeTrainingJob says it does not know a job: SageMaker answers
/// `ValidationException` (a name it cannot find is an invalid parameter), other servers
/// `ResourceNotFound`.
const NOT_FOUND: &[&str] = &["ValidationException", "ResourceNotFound", "ResourceNotFoundException"];

/// Whether a DescribeTrainingJob that failed with `code` means the job was never created: the
/// journal does not record it as created (`created`), and the server says it does not know it.
fn never_created(code: &str, created: bool) -> bool {
    !created && NOT_FOUND.contains(&code)
}

impl SageMakerJob {
    fn log(&self, text: &str) {
        self.reporter.log(&self.plan.node, text);
    }

    /// Uploads the job's inputs: split parts, local models, args.yaml, the script bundle.
    async fn upload_inputs(&self, request: &Value) -> Result<(), NodeError> {
        let plan = &self.plan;
        let failed = |e: String| NodeError::Failed(format!("uploading the inputs of `{}`: {e}", plan.node));
        let progress = |text: &str| self.log(text);
        for (local, uri) in &plan.uploads {
            let uri = request::resolve_placeholders(uri).map_err(failed)?;
            if !local.is_dir() {
                return Err(failed(format!("`{}` is not a folder", local.display())));
            }
            s3::upload_dir(&self.aws, local, &uri, &progress).await.map_err(failed)?;
        }
        let channel =
            |name: &str| -> Option<String> {
                request["InputDataConfig"].as_array()?.iter().find(|c| c["ChannelName"] == name).and_then(|c| {
                    c.pointer("/DataSource/S3DataSource/S3Uri").and_then(Value::as_str).map(str::to_owned)
                })
            };
        if let Some(uri) = channel("config") {
            let target = format!("{}/args.yaml", uri.trim_end_matches('/'));
            s3::upload_bytes(&self.aws, plan.args_yaml.as_bytes(), &target).await.map_err(failed)?;
        }
        if let Some(uri) = channel("code") {
            let abs = std::path::absolute(&self.base).map_err(|e| failed(e.to_string()))?;
            let dir = bundle_dir(&abs, &self.pipeline).map_err(|e| failed(e.0))?;
            s3::upload_dir(&self.aws, &dir, &uri, &progress).await.map_err(failed)?;
        }
        Ok(())
    }

    /// Creates the job `name` unless it exists; `created`: the journal records it as created.
    async fn ensure_created(&self, name: &str, created: bool, stop: &mut Stop) -> Result<(), NodeError> {
        let mut throttled = 0u32;
        let mut missing = 0u32;
        loop {
            match self.aws.sagemaker.describe_training_job().training_job_name(name).send().await {
                Ok(_) => {
                    self.log(&format!("{name}: found on SageMaker; watching it"));
                    return Ok(());
                }
                Err(e) => {
                    let (code, message) = error_parts(&e);
                    if never_created(&code, created) {
                        break;
                    }
                    if created && NOT_FOUND.contains(&code.as_str()) {
                        // A job just created may take a moment to be seen; a job that stays away
                        // is in another region or account, and is not created again.
                        missing += 1;
                        if missing >= 4 {
                            return Err(NodeError::Failed(format!(
                                "the job {name} was created by an earlier run (the journal records it), but SageMaker \
                                 does not find it ({code}: {message}); check that the region and the account are \
                                 those of that run (the target's `region`, the AWS credentials): tunec does not \
                                 create it again\n  at {}",
                                self.context.location
                            )));
                        }
                        if stop.wait_or(jitter(self.timing.poll)).await {
                            return Err(NodeError::Interrupted);
                        }
                        continue;
                    }
                    let wait = self.api_retry("DescribeTrainingJob", &code, &message, &mut throttled)?;
                    if stop.wait_or(wait).await {
                        return Err(NodeError::Interrupted);
                    }
                }
            }
        }
        let request =
            self.plan.request_for(name).map_err(|e| NodeError::Failed(format!("`{}`: {e}", self.plan.node)))?;
        self.upload_inputs(&request).await?;
        let input = request::to_input(&request).map_err(NodeError::Failed)?;
        let mut throttled = 0u32;
        loop {
            let call = self
                .aws
                .sagemaker
                .create_training_job()
                .set_training_job_name(input.training_job_name.clone())
                .set_algorithm_specification(input.algorithm_specification.clone())
                .set_role_arn(input.role_arn.clone())
                .set_input_data_config(input.input_data_config.clone())
                .set_output_data_config(input.output_data_config.clone())
                .set_resource_config(input.resource_config.clone())
                .set_stopping_condition(input.stopping_condition.clone())
                .set_enable_managed_spot_training(input.enable_managed_spot_training)
                .set_hyper_parameters(input.hyper_parameters.clone())
                .set_environment(input.environment.clone())
                .set_tags(input.tags.clone())
                .set_checkpoint_config(input.checkpoint_config.clone());
            match call.send().await {
                Ok(_) => {
                    self.log(&format!("{name}: created"));
                    return Ok(());
                }
                Err(e) => {
                    let (code, message) = error_parts(&e);
                    if code == "ResourceInUse" {
                        // Created by an earlier call whose answer was lost: watch it.
                        return Ok(());
                    }
                    let wait = self.api_retry("CreateTrainingJob", &code, &message, &mut throttled)?;
                    if stop.wait_or(wait).await {
                        return Err(NodeError::Interrupted);
                    }
                }
            }
        }
    }

    /// After a failed API call: how long to wait before asking again when it is transient, or the
    /// error.
    fn api_retry(&self, operation: &str, code: &str, message: &str, tries: &mut u32) -> Result<Duration, NodeError> {
        let node = &self.plan.node;
        let class = classify_api(code, message);
        *tries += 1;
        if class.attempts() <= 1 || *tries >= 8 {
            return Err(NodeError::Failed(format!(
                "{operation} for `{node}` failed: {code}: {message} ({}: {})\n  at {}",
                class.as_str(),
                class.advice(),
                self.context.location
            )));
        }
        let wait = jitter(self.timing.poll.mul_f64(f64::from(1u32 << (*tries).min(5))));
        self.log(&format!("{operation}: {code} ({message}); trying again in {:.1} s", wait.as_secs_f64()));
        Ok(wait)
    }

    /// Polls the job until it ends.
    async fn watch(&mut self) -> Result<Ended, NodeError> {
        let name = self.name.clone();
        loop {
            let described = match self.aws.sagemaker.describe_training_job().training_job_name(&name).send().await {
                Ok(d) => d,
                Err(e) => {
                    let (code, message) = error_parts(&e);
                    let mut throttled = self.watch.throttled;
                    let wait = self.api_retry("DescribeTrainingJob", &code, &message, &mut throttled);
                    self.watch.throttled = throttled;
                    tokio::time::sleep(wait?).await;
                    continue;
                }
            };
            self.watch.throttled = 0;
            let status = described.training_job_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
            let secondary = described.secondary_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
            let shown = format!("{name}: {status} / {secondary}");
            let wait = if shown != self.watch.shown {
                self.log(&shown);
                self.watch.shown = shown;
                self.timing.poll
            } else {
                self.watch.wait.unwrap_or(self.timing.poll).mul_f64(1.5).min(self.timing.poll_max)
            };
            self.watch.wait = Some(wait);
            match described.training_job_status() {
                Some(TrainingJobStatus::Completed) => {
                    self.watch.completed = Some(described);
                    return Ok(Ended::Succeeded);
                }
                Some(TrainingJobStatus::Failed) | Some(TrainingJobStatus::Stopped) => {
                    let reason = described.failure_reason().unwrap_or_default().to_owned();
                    return Ok(Ended::Failed(self.failure(
                        classify_job(&status, &secondary, &reason),
                        &status,
                        &secondary,
                        &reason,
                    )));
                }
                _ => {}
            }
            tokio::time::sleep(jitter(wait)).await;
        }
    }

    /// The failure of a job that ended `status` (`secondary`) for `reason`.
    fn failure(&self, class: FailureClass, status: &str, secondary: &str, reason: &str) -> Failure {
        let name = &self.name;
        let mut message = format!(
            "the SageMaker job {name} ended {status} ({secondary}): {}: {}\n  at {}\n  {}",
            class.as_str(),
            if reason.is_empty() { "no reason given" } else { reason },
            self.context.location,
            class.advice()
        );
        if class == FailureClass::OutOfMemory {
            if let Some(memory) = &self.context.memory {
                message.push_str(&format!("\n  the estimate was {memory}"));
            }
        }
        Failure {
            message,
            summary: format!(
                "{name} ended {status} ({}: {})",
                class.as_str(),
                if reason.is_empty() { secondary } else { reason }
            ),
            attempts: class.attempts(),
            backoff: self.timing.retry,
        }
    }

    /// StopTrainingJob; the job is then watched until it has stopped.
    async fn stop_job(&self) -> AfterStop {
        let (node, name) = (&self.plan.node, &self.name);
        self.reporter.line(&format!("  {node}: stopping the job {name} (StopTrainingJob)"));
        match self.aws.sagemaker.stop_training_job().training_job_name(name).send().await {
            Ok(_) => AfterStop::Wait,
            Err(e) => {
                let (code, message) = error_parts(&e);
                AfterStop::Failed(format!("StopTrainingJob {name}: {code}: {message}; stop it in the console"))
            }
        }
    }
}

impl Job for SageMakerJob {
    fn attempt_name(&self, number: u32) -> Option<String> {
        Some(attempt_name(self.plan.lowered_name(), number))
    }

    fn start<'a>(&'a mut self, attempt: &'a Attempt, stop: &'a mut Stop) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(async move {
            self.name = attempt.name.clone().unwrap_or_else(|| attempt_name(self.plan.lowered_name(), attempt.number));
            self.watch = Watch::default();
            let name = self.name.clone();
            self.ensure_created(&name, attempt.created, stop).await
        })
    }

    fn wait(&mut self) -> BoxFuture<'_, Result<Ended, NodeError>> {
        Box::pin(self.watch())
    }

    /// The first Ctrl-C: offer to stop the job, and detach unless asked again within 5 s; the
    /// second stops it.
    fn stop<'a>(&'a mut self, level: StopLevel, stop: &'a mut Stop) -> BoxFuture<'a, AfterStop> {
        Box::pin(async move {
            if level == StopLevel::Now {
                return self.stop_job().await;
            }
            self.reporter.line(&format!(
                "  {}: the job {} keeps running on SageMaker; press Ctrl-C again within 5 s to stop it, or \
                 `tunec run` re-attaches to it later",
                self.plan.node, self.name
            ));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline {
                if stop.level() == StopLevel::Now {
                    return self.stop_job().await;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    _ = stop.next() => {}
                }
            }
            if stop.level() == StopLevel::Now {
                return self.stop_job().await;
            }
            AfterStop::Detached
        })
    }

    /// Where the job's model is: its artifacts, and the checkpoints of a training job.
    fn outputs(&mut self) -> BoxFuture<'_, Result<Vec<Output>, NodeError>> {
        Box::pin(async move {
            let name = &self.name;
            let mut outputs = Vec::new();
            if let Some(described) = &self.watch.completed {
                let artifacts = described
                    .model_artifacts()
                    .and_then(|m| m.s3_model_artifacts())
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
                    .or_else(|| {
                        described
                            .output_data_config()
                            .and_then(|o| o.s3_output_path())
                            .map(|p| format!("{}/{name}/output/model/", p.trim_end_matches('/')))
                    });
                if let Some(path) = artifacts {
                    outputs.push(Output { path, sha256: String::new(), bytes: 0 });
                }
                if let Some(uri) = described.checkpoint_config().and_then(|c| c.s3_uri()) {
                    outputs.push(Output { path: uri.to_owned(), sha256: String::new(), bytes: 0 });
                }
                if let Some(path) = described.output_data_config().and_then(|o| o.s3_output_path()) {
                    let uri = output_data::archive_uri(path, name);
                    let root = job_root(&self.pipeline, &self.plan.node, &self.plan.key);
                    // Copies for people, not recorded: a deleted copy must never rerun a paid job.
                    match output_data::fetch(&self.aws, &uri, &self.base, &root).await {
                        Ok(files) => self.log(&format!("output data: {} files in {root}/output/data", files.len())),
                        Err(e) => self.reporter.line(&format!(
                            "  {}: its output data (metrics, reports) is not on this machine: {e}",
                            self.plan.node
                        )),
                    }
                }
            }
            self.reporter.line(&format!("  {} done: {name} completed", self.plan.node));
            Ok(outputs)
        })
    }
}

/// The `file:line:column` and memory line of every job node, for messages.
pub fn contexts(
    file: &str,
    text: &str,
    program: &tunec_compiler::Program,
    memory: &BTreeMap<String, String>,
) -> BTreeMap<String, NodeContext> {
    let index = tunec_compiler::diagnostics::LineIndex::new(text);
    program
        .nodes
        .iter()
        .map(|n| {
            let (line, column) = index.line_col(text, n.span.start as usize);
            let location = format!("{file}:{line}:{column} ({} {})", n.kind.as_str(), n.name);
            (n.name.clone(), NodeContext { location, memory: memory.get(&n.name).cloned() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_taken_as_never_created_by_the_code_alone_and_only_when_the_journal_agrees() {
        // AWS, moto and a proxy say it in their own words; the code is what counts.
        for code in ["ValidationException", "ResourceNotFound", "ResourceNotFoundException"] {
            assert!(never_created(code, false), "{code}");
            assert!(!never_created(code, true), "{code}: the journal records it as created");
        }
        for code in ["AccessDeniedException", "ThrottlingException", "InternalFailure", "Transport"] {
            assert!(!never_created(code, false), "{code}");
        }
    }

    #[test]
    fn attempt_names_are_distinct_valid_and_keep_the_key() {
        assert_eq!(attempt_name("medreason-sft-860e02665b", 1), "medreason-sft-860e02665b");
        assert_eq!(attempt_name("medreason-sft-860e02665b", 2), "medreason-sft-860e02665b-a2");
        let long = format!("{}-0123456789", "p".repeat(52));
        assert_eq!(long.len(), 63);
        let second = attempt_name(&long, 12);
        assert!(second.len() <= 63 && second.ends_with("-0123456789-a12"), "{second}");
        let pattern = |s: &str| {
            s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !s.starts_with('-')
                && !s.ends_with('-')
                && s.len() <= 63
        };
        for attempt in 1..30 {
            assert!(pattern(&attempt_name(&long, attempt)));
            assert!(pattern(&attempt_name("a-0123456789", attempt)));
        }
    }
}
