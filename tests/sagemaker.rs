//! `tunec run` on the SageMaker target against real local AWS API servers: moto for S3 (started by
//! `.ci/run` as `TUNEC_TEST_MOTO_URL`, or here when that is unset) and the scripted SageMaker server
//! of `tests/aws/fake_sagemaker.py` (one per test), which moves each training job one step per
//! DescribeTrainingJob along a lifecycle the test scripts, and logs every call.
//!
//! The pipeline is the reference workflow's shape with local inputs (MedReason-shaped rows, the
//! real Llama 3.1 tokenizer from `TUNEC_FIXTURES`): the data engine runs locally, its splits, the
//! model directory, each job's args.yaml and the script bundle are uploaded to moto, and the three
//! jobs are created, watched and chained through their outputs. Covered: the whole run and a rerun
//! that reuses everything with no call; SIGKILL at random moments with zero duplicate
//! CreateTrainingJob calls; a capacity error retried as a new attempt whose output the merge then
//! reads; a script error not retried and reported with its place in the file; a spot interruption
//! resumed from the same checkpoint prefix; throttled calls; Ctrl-C that detaches (and a rerun
//! re-attaches) and a second Ctrl-C that stops the job; a create whose reply is lost (watched, not
//! made again) and SIGKILL while a create's reply is on its way (the rerun re-attaches); every
//! request as the server received it equals the `request.json` of `tunec build`; the policies of
//! `tunec iam-policy`, evaluated, allow every SageMaker call and every S3 request of the run (from
//! the servers' logs) and each job's reads and writes; the role's value is in no file, upload or
//! output of a run that fails, is interrupted or completes; and on moto's SageMaker, a Hub token
//! kept in moto's Secrets Manager reaches the jobs as the secret's ARN only, unread by tunec
//! (`tests/secrets.rs` has the whole secret path).

#[path = "support/medreason.rs"]
mod medreason;
#[path = "support/moto.rs"]
#[allow(dead_code)] // this suite starts its own servers
mod moto;
#[path = "support/process.rs"]
mod process;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use process::{kill_after, stdout_lines, Lcg};
use serde_json::Value;
use support::{root, Run};

fn python() -> String {
    match std::env::var("TUNEC_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("TUNEC_TEST_PYTHON is not set: these tests run moto and the scripted SageMaker server (.ci/run)"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The servers of one test, its folder and its bucket; the servers it started stop when it is
/// dropped. SageMaker is the scripted server, or moto's own (`recording` then holds what moto's
/// recorder saw: every request it received).
struct Aws {
    dir: PathBuf,
    moto: String,
    /// Where SageMaker calls go: the scripted server, or moto.
    fake: String,
    calls: PathBuf,
    recording: Option<PathBuf>,
    /// Moto's recording of every S3 request, when the test started a moto of its own to log them.
    s3_recording: Option<PathBuf>,
    bucket: String,
    children: Vec<Child>,
}

/// Starts a moto server of this test's own on a free port; `env` is its environment.
fn start_moto(children: &mut Vec<Child>, env: &[(&str, &Path)]) -> String {
    let port = free_port();
    let server = Path::new(&python()).with_file_name("moto_server");
    let mut command = Command::new(server);
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    children.push(command.spawn().expect("moto_server starts (it is in the test virtualenv)"));
    wait_for_port(port);
    format!("http://127.0.0.1:{port}")
}

/// Makes `bucket` on the S3 server at `url`.
fn make_bucket(url: &str, bucket: &str) {
    let made = Command::new(python())
        .args(["-c", "import boto3, sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket=sys.argv[2])"])
        .args([url, bucket])
        .output()
        .expect("python runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
}

impl Drop for Aws {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Aws {
    /// Starts the scripted server with `script`, and moto unless one runs; makes the bucket and the
    /// pipeline folder (the pipeline of [`pipeline`] with `train_extra` in the train node).
    fn start(name: &str, script: &str, train_extra: &str) -> Aws {
        Self::start_with(name, script, train_extra, false)
    }

    /// [`Aws::start`], with a moto of the test's own that records every S3 request when `record`.
    fn start_with(name: &str, script: &str, train_extra: &str, record: bool) -> Aws {
        let dir = std::env::temp_dir().join(format!("tunec-sm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("model")).expect("mkdir");
        let mut children = Vec::new();
        let s3_recording = record.then(|| dir.join("s3-recording.jsonl"));
        let moto = match (&s3_recording, std::env::var("TUNEC_TEST_MOTO_URL")) {
            (Some(recording), _) => start_moto(
                &mut children,
                &[("MOTO_ENABLE_RECORDING", Path::new("true")), ("MOTO_RECORDER_FILEPATH", recording)],
            ),
            (None, Ok(url)) if !url.is_empty() => url,
            (None, _) => start_moto(&mut children, &[]),
        };
        std::fs::write(dir.join("script.json"), script).expect("write");
        let port_file = dir.join("port");
        let calls = dir.join("calls.jsonl");
        let child = Command::new(python())
            .arg(root().join("tests/aws/fake_sagemaker.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--port-file"])
            .arg(&port_file)
            .arg("--script")
            .arg(dir.join("script.json"))
            .arg("--calls-log")
            .arg(&calls)
            .args(["--s3-endpoint", &moto])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("fake.log")).expect("log"))
            .spawn()
            .expect("the scripted server starts");
        children.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Ok(port) = text.trim().parse::<u16>() {
                    break port;
                }
            }
            assert!(Instant::now() < deadline, "the scripted server wrote no port file");
            std::thread::sleep(Duration::from_millis(50));
        };
        let bucket = format!("tunec-{}-{}", name.replace('_', "-"), std::process::id());
        make_bucket(&moto, &bucket);
        setup_pipeline(&dir, train_extra);
        let fake = format!("http://127.0.0.1:{port}");
        Aws { dir, moto, fake, calls, recording: None, s3_recording, bucket, children }
    }

    /// Starts a moto server of the test's own, with its recorder on, for S3 and SageMaker both;
    /// makes the bucket and the pipeline folder.
    fn moto(name: &str) -> Aws {
        let dir = std::env::temp_dir().join(format!("tunec-sm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let recording = dir.join("moto-recording.jsonl");
        let mut children = Vec::new();
        let moto = start_moto(
            &mut children,
            &[("MOTO_ENABLE_RECORDING", Path::new("true")), ("MOTO_RECORDER_FILEPATH", &recording)],
        );
        let bucket = format!("tunec-{}-{}", name.replace('_', "-"), std::process::id());
        make_bucket(&moto, &bucket);
        setup_pipeline(&dir, "");
        let calls = dir.join("calls.jsonl");
        Aws { dir, fake: moto.clone(), moto, calls, recording: Some(recording), s3_recording: None, bucket, children }
    }

    /// The SageMaker requests moto received, in order: (operation, training job name).
    fn moto_calls(&self) -> Vec<(String, String)> {
        let recording = self.recording.as_ref().expect("a moto SageMaker");
        if !recording.exists() {
            return Vec::new();
        }
        // The recorder keeps each request with its body in base64.
        let script = "import base64, json, sys\nfor line in open(sys.argv[1]):\n    try:\n        e = json.loads(line)\n    except ValueError:\n        continue\n    target = {k.lower(): v for k, v in e['headers'].items()}.get('x-amz-target', '')\n    if not target.startswith('SageMaker.'):\n        continue\n    body = base64.b64decode(e['body']) if e['body_encoded'] else e['body']\n    print(json.dumps([target[len('SageMaker.'):], json.loads(body or '{}').get('TrainingJobName', '')]))";
        let out = Command::new(python()).args(["-c", script]).arg(recording).output().expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<(String, String)>(l).expect("a JSON pair"))
            .collect()
    }

    /// The S3 requests tunec itself made (the AWS SDK for Rust's user agent; the scripted server
    /// and the test's own calls are boto3's), as moto recorded them: method, decoded path, and the
    /// query's parameters.
    fn s3_requests_by_tunec(&self) -> Vec<(String, String, BTreeMap<String, String>)> {
        let recording = self.s3_recording.as_ref().expect("a moto that records S3");
        let script = "import json, sys, urllib.parse\nfor line in open(sys.argv[1]):\n    try:\n        e = json.loads(line)\n    except ValueError:\n        continue\n    agent = {k.lower(): v for k, v in e['headers'].items()}.get('user-agent', '')\n    if 'aws-sdk-rust' not in agent:\n        continue\n    url = urllib.parse.urlsplit(e['url'])\n    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))\n    print(json.dumps([e['method'], urllib.parse.unquote(url.path), query]))";
        let out = Command::new(python()).args(["-c", script]).arg(recording).output().expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON triple")).collect()
    }

    fn file(&self) -> String {
        self.dir.join("p.tune").display().to_string()
    }

    /// The environment of every tunec run of this test: the local servers and test credentials.
    fn configure(&self, command: &mut Command) {
        moto::test_credentials(command);
        command
            .env("AWS_ENDPOINT_URL_S3", &self.moto)
            .env("AWS_ENDPOINT_URL_SAGEMAKER", &self.fake)
            .env("TUNEC_SAGEMAKER_POLL_SECONDS", "0.05")
            .env("TUNEC_SAGEMAKER_ROLE", "arn:aws:iam::123456789012:role/tunec-test")
            .env("TUNEC_BUCKET", format!("s3://{}/team", self.bucket));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tunec"));
        command.args(args).current_dir(root()).env("NO_COLOR", "1");
        self.configure(&mut command);
        command
    }

    /// `tunec run` in the background, its output discarded (a run the test will kill).
    fn spawn_run(&self) -> Child {
        let mut command = self.command(&["run", &self.file(), "--progress", "plain"]);
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn")
    }

    fn tunec(&self, args: &[&str]) -> Run {
        support::tunec_with(args, |command| self.configure(command))
    }

    fn run(&self) -> Run {
        self.tunec(&["run", &self.file(), "--progress", "plain"])
    }

    /// The scripted server's call log.
    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Successful CreateTrainingJob calls, by job name; on moto (which accepts a name twice), every
    /// CreateTrainingJob it received.
    fn created(&self) -> Vec<String> {
        if self.recording.is_some() {
            return self
                .moto_calls()
                .into_iter()
                .filter(|(operation, _)| operation == "CreateTrainingJob")
                .map(|(_, job)| job)
                .collect();
        }
        self.calls()
            .iter()
            .filter(|c| c["operation"] == "CreateTrainingJob" && c["outcome"] == "ok")
            .map(|c| c["job"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every job as the server holds it (with the request as received).
    fn jobs(&self) -> Value {
        let out = Command::new(python())
            .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + '/_control/jobs').read().decode())"])
            .arg(&self.fake)
            .output()
            .expect("python runs");
        serde_json::from_slice(&out.stdout).expect("jobs JSON")
    }

    /// The keys under the bucket.
    fn objects(&self) -> Vec<String> {
        let out = Command::new(python())
            .args(["-c", "import boto3, sys\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\nfor page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[2]):\n    for o in page.get('Contents', []):\n        print(o['Key'])"])
            .args([&self.moto, &self.bucket])
            .output()
            .expect("python runs");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Each job node's lowered job name, from `tunec plan`.
    fn job_names(&self) -> std::collections::BTreeMap<String, String> {
        let plan = self.tunec(&["plan", &self.file(), "--format", "json"]);
        assert_eq!(plan.code, 0, "{}", plan.stderr);
        let plan: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
        plan["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| Some((n["name"].as_str()?.to_owned(), n["job_name"].as_str()?.to_owned())))
            .collect()
    }

    /// Runs a Python snippet with boto3 against moto: `sys.argv[1]` is moto's URL, `sys.argv[2]`
    /// the bucket, then `args`; returns its stdout.
    fn boto3(&self, snippet: &str, args: &[&str]) -> String {
        let script = format!(
            "import boto3, json, sys\nkw = dict(endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{snippet}"
        );
        let out = Command::new(python())
            .args(["-c", &script])
            .args([&self.moto, &self.bucket])
            .args(args)
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join(".tunec/p/state.json")).expect("state"))
            .expect("json")
    }
}

/// The request the server received for a job, by the node it belongs to and its attempt order.
fn requests_of(jobs: &Value, node: &str) -> Vec<Value> {
    let mut found: Vec<Value> = jobs
        .as_array()
        .or_else(|| jobs["jobs"].as_array())
        .into_iter()
        .flatten()
        .filter(|j| j["request"]["Environment"]["TUNEC_NODE"] == node)
        .map(|j| j["request"].clone())
        .collect();
    found.sort_by_key(|r| r["TrainingJobName"].as_str().map(|n| (n.len(), n.to_owned())));
    found
}

fn channel_uri(request: &Value, channel: &str) -> String {
    request["InputDataConfig"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["ChannelName"] == channel))
        .and_then(|c| c.pointer("/DataSource/S3DataSource/S3Uri"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn setup_pipeline(dir: &Path, train_extra: &str) {
    medreason::model_and_rows(dir);
    let pipeline = medreason::pipeline(&medreason::Shape {
        target: "  target sagemaker {\n    region = \"us-east-1\"\n    role   = env(\"TUNEC_SAGEMAKER_ROLE\")\n    bucket = env(\"TUNEC_BUCKET\")\n  }",
        seq_len: 160,
        overflow: "drop",
        instance: "ml.g5.2xlarge",
        train_extra: &format!("    {train_extra}"),
        after_train: "  merge merged = merge(sft)\n  evaluate report = evaluate(merged, parts.test) { metrics = [exact_match, rouge_l] }",
    });
    std::fs::write(dir.join("p.tune"), pipeline).expect("write");
}

const DEFAULT: &str = r#"{"default": {"polls": 3, "end": "Completed"}}"#;

/// [`DEFAULT`], with what the train and evaluation scripts leave in `/opt/ml/output/data`.
const WITH_OUTPUT_DATA: &str = r#"{"default": {"polls": 3, "end": "Completed"}, "jobs": [
  {"match": "-sft-", "attempts": [{"polls": 3, "output_data": {"metrics.json": "{\"train_runtime_s\": 12.5}"}}]},
  {"match": "-report-", "attempts": [{"polls": 3, "output_data": {
    "report.json": "{\"metrics\": {\"exact_match\": 0.5, \"rouge_l\": 0.625}, \"num_examples\": 4}",
    "predictions.jsonl": "{\"id\": 0}\n"}}]}]}"#;

#[test]
fn the_pipeline_runs_its_data_locally_and_its_jobs_on_sagemaker() {
    let aws = Aws::start("whole", WITH_OUTPUT_DATA, "");
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for node in ["llama", "raw", "convo", "parts", "sft", "merged", "report"] {
        assert!(run.stdout.contains(&format!("run {node}: no previous run")), "{}", run.stdout);
    }
    let state = aws.state();
    let created = aws.created();
    assert_eq!(created.len(), 3, "one job per job node: {created:?}");
    for node in ["sft", "merged", "report"] {
        let record = &state["nodes"][node];
        assert_eq!(record["status"], "succeeded", "{record}");
        let name = record["job_name"].as_str().expect("a job name");
        assert!(name.starts_with(&format!("p-{node}-")) && created.contains(&name.to_owned()), "{name}");
        assert!(run.stdout.contains(&format!("  {node} done: {name} completed")), "{}", run.stdout);
        let outputs: Vec<&str> =
            record["outputs"].as_array().expect("outputs").iter().filter_map(|o| o["path"].as_str()).collect();
        assert!(outputs.iter().any(|o| o.ends_with(&format!("/{name}/output/model/"))), "{outputs:?}");
    }
    // The summary says where the models are (the jobs' artifacts on S3) and where the report is: the
    // evaluation's output data, downloaded and unpacked into its node's folder, with its metrics.
    for (node, what) in [("sft", "adapter"), ("merged", "merged model")] {
        let name = state["nodes"][node]["job_name"].as_str().expect("name");
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{what} ({node}): s3://"))
                    && l.ends_with(&format!("/{name}/output/model/"))),
            "{}",
            run.stdout
        );
    }
    let report_key = state["nodes"]["report"]["key"].as_str().expect("key");
    let report_dir = aws.dir.join(format!(".tunec/p/jobs/report/{report_key}/output/data"));
    let report_file = report_dir.join("report.json");
    assert!(run.stdout.contains(&format!("report (report): {}", report_file.display())), "{}", run.stdout);
    let summary: Vec<&str> =
        run.stdout.lines().skip_while(|l| !l.starts_with("metrics (report, 4 test rows)")).collect();
    assert!(summary.len() >= 3, "{}", run.stdout);
    assert!(summary[1].contains("exact_match") && summary[1].contains("0.5"), "{}", run.stdout);
    assert!(summary[2].contains("rouge_l") && summary[2].contains("0.625"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(report_dir.join("predictions.jsonl")).expect("predictions"), "{\"id\": 0}\n");
    let sft_key = state["nodes"]["sft"]["key"].as_str().expect("key");
    let metrics = aws.dir.join(format!(".tunec/p/jobs/sft/{sft_key}/output/data/metrics.json"));
    assert_eq!(std::fs::read_to_string(metrics).expect("the train job's metrics"), "{\"train_runtime_s\": 12.5}");
    // They are copies, not the node's outputs (no rerun when they go), and no archive is left.
    let recorded = state["nodes"]["report"]["outputs"].to_string();
    assert!(!recorded.contains("output/data"), "{recorded}");
    assert!(!report_dir.with_file_name("output.tar.gz").exists());
    // What the jobs read was uploaded where their requests say.
    let objects = aws.objects();
    let parts_key = state["nodes"]["parts"]["key"].as_str().expect("key");
    for part in ["train/train.jsonl", "val/val.jsonl", "test/test.jsonl"] {
        assert!(objects.contains(&format!("team/p/data/parts/{parts_key}/{part}")), "{part}: {objects:?}");
    }
    assert!(objects.contains(&format!("team/p/config/sft/{sft_key}/args.yaml")), "{objects:?}");
    assert!(objects.iter().any(|o| o.starts_with("team/p/code/") && o.ends_with("/train.py")), "{objects:?}");
    let llama_key = state["nodes"]["llama"]["key"].as_str().expect("key");
    assert!(objects.contains(&format!("team/p/models/llama/{llama_key}/tokenizer.json")), "{objects:?}");
    // The merge reads the adapter the train job wrote, under its job name.
    let jobs = aws.jobs();
    let merge = &requests_of(&jobs, "merged")[0];
    let sft_name = state["nodes"]["sft"]["job_name"].as_str().expect("name");
    assert!(
        channel_uri(merge, "adapter").ends_with(&format!("/team/p/output/sft/{sft_name}/output/model/")),
        "{merge}"
    );
    assert_eq!(requests_of(&jobs, "sft")[0]["RoleArn"], "arn:aws:iam::123456789012:role/tunec-test");
    // Nothing the environment holds is written by tunec, except the bucket's name in output URIs.
    let journal = std::fs::read_to_string(aws.dir.join(".tunec/p/state.json")).expect("state");
    assert!(!journal.contains("role/tunec-test") && !journal.contains("${env:"), "{journal}");

    // A second run reuses everything and calls nothing, with the local copies gone.
    std::fs::remove_dir_all(aws.dir.join(".tunec/p/jobs")).expect("the copies are there");
    let before = aws.calls().len();
    let again = aws.run();
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let decisions = again.stdout.lines().take_while(|l| !l.starts_with("summary: "));
    assert!(decisions.clone().all(|l| l.starts_with("reuse ")) && decisions.count() == 7, "{}", again.stdout);
    assert_eq!(aws.calls().len(), before, "no SageMaker call for a reused pipeline");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

/// The runs [`kill_at_random_until_done`] killed, and where the kills landed: while a job existed
/// on SageMaker (its node running, its job created), or elsewhere (the data steps, uploads,
/// between nodes).
#[derive(Debug, Default)]
struct Kills {
    total: u32,
    during_a_job: u32,
    elsewhere: u32,
}

/// Runs the pipeline again and again, killing each run with SIGKILL after a random delay in
/// `delays` (seconds, from `seed`), until the journal records all seven nodes as succeeded; a run
/// that ends before its kill must succeed. A run killed before it got anywhere (no node newly
/// succeeded, no job newly created) makes the next delays half as long again, so that a loaded
/// machine, slower to reach the jobs, still has runs killed while one exists. Returns the kills and
/// where they landed.
fn kill_at_random_until_done(aws: &Aws, seed: u64, delays: (f64, f64)) -> Kills {
    let mut rng = Lcg(seed);
    let mut kills = Kills::default();
    let mut stretch = 1.0;
    let progress = || {
        let state = std::fs::read_to_string(aws.dir.join(".tunec/p/state.json")).unwrap_or_default();
        (state.matches("\"succeeded\"").count(), aws.created().len())
    };
    for attempt in 0..60 {
        let before = progress();
        if before.0 == 7 {
            break;
        }
        let delay = Duration::from_secs_f64(stretch * (delays.0 + (delays.1 - delays.0) * rng.next_f64()));
        let mut child = aws.spawn_run();
        match kill_after(&mut child, delay) {
            Some(status) => assert!(status.success(), "attempt {attempt} (seed {seed:#x}) failed"),
            None => {
                kills.total += 1;
                // No journal yet: killed before the first node started.
                let state = if aws.dir.join(".tunec/p/state.json").exists() { aws.state() } else { Value::Null };
                let created = aws.created();
                let in_job = ["sft", "merged", "report"].iter().any(|node| {
                    let record = &state["nodes"][node];
                    record["status"] == "running"
                        && record["job_name"].as_str().is_some_and(|name| created.iter().any(|c| c == name))
                });
                if in_job {
                    kills.during_a_job += 1;
                } else {
                    kills.elsewhere += 1;
                }
                if progress() == before {
                    stretch *= 1.5;
                }
            }
        }
    }
    kills
}

#[test]
fn sigkill_at_random_moments_never_creates_a_job_twice() {
    let aws = Aws::start("kill", r#"{"default": {"polls": 30, "end": "Completed"}}"#, "");
    let seed = 0x5a6e_0011_u64;
    let kills = kill_at_random_until_done(&aws, seed, (0.2, 2.5));
    // 30 polls per job (the interval backing off from 0.05 s to 0.3 s) outlast any one attempt.
    assert!(kills.total >= 3, "only {kills:?}");
    assert!(kills.during_a_job >= 1, "no kill landed while a job ran (seed {seed:#x}): {kills:?}");
    let last = aws.run();
    assert_eq!(last.code, 0, "{}{}", last.stdout, last.stderr);
    let created = aws.created();
    assert_eq!(created.len(), 3, "one CreateTrainingJob per job, whatever the kills (seed {seed:#x}): {created:?}");
    let duplicates: Vec<Value> =
        aws.calls().into_iter().filter(|c| c["operation"] == "CreateTrainingJob" && c["outcome"] != "ok").collect();
    assert!(duplicates.is_empty(), "no refused create either: {duplicates:?}");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn a_capacity_error_is_retried_as_a_new_attempt_whose_output_the_merge_reads() {
    let script = r#"{"default": {"polls": 2, "end": "Completed"},
      "jobs": [{"match": "-sft-", "attempts": [
        {"polls": 1, "end": "Failed", "failure_reason": "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type."},
        {"polls": 2, "end": "Completed"}]}],
      "throttle": {"CreateTrainingJob": 1}}"#;
    let aws = Aws::start("capacity", script, "");
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let state = aws.state();
    let first = aws.created().into_iter().find(|n| n.starts_with("p-sft-")).expect("sft");
    let second = state["nodes"]["sft"]["job_name"].as_str().expect("name");
    assert_eq!(second, format!("{first}-a2"));
    assert_eq!(state["nodes"]["sft"]["attempt"], 2);
    assert!(run.stdout.contains(&format!("  sft: {first} ended Failed (capacity: CapacityError")), "{}", run.stdout);
    let merge = &requests_of(&aws.jobs(), "merged")[0];
    assert!(channel_uri(merge, "adapter").ends_with(&format!("/output/sft/{second}/output/model/")), "{merge}");
    // The throttled first create was retried by the SDK or by tunec, and created nothing twice.
    assert_eq!(aws.created().len(), 4, "{:?}", aws.created());
    assert!(aws.calls().iter().any(|c| c["outcome"] == "ThrottlingException"));
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn a_script_error_is_not_retried_and_is_reported_at_the_node() {
    let script = r#"{"jobs": [{"match": "-sft-", "attempts": [
        {"polls": 1, "end": "Failed", "failure_reason": "AlgorithmError: input channel `train` has a row without labels"}]}]}"#;
    let aws = Aws::start("script", script, "");
    let run = aws.run();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(aws.created().len(), 1, "{:?}", aws.created());
    let stderr = &run.stderr;
    assert!(
        stderr.contains("script error: AlgorithmError: input channel `train` has a row without labels"),
        "{stderr}"
    );
    assert!(stderr.contains("p.tune:") && stderr.contains("(train sft)"), "{stderr}");
    assert!(stderr.contains("the entry script failed"), "{stderr}");
    assert_eq!(aws.state()["nodes"]["sft"]["status"], "failed");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn a_spot_interruption_resumes_from_the_same_checkpoints() {
    let script = r#"{"default": {"polls": 2, "end": "Completed"},
      "jobs": [{"match": "-sft-", "attempts": [{"polls": 2, "end": "Interrupted"}, {"polls": 2, "end": "Completed"}]}]}"#;
    let aws = Aws::start("spot", script, "spot = true\n    max_runtime = 2h\n    max_wait = 4h\n    save_steps = 100");
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let sft = requests_of(&aws.jobs(), "sft");
    assert_eq!(sft.len(), 2, "{sft:?}");
    assert!(run.stdout.contains("spot interruption"), "{}", run.stdout);
    let checkpoints: Vec<&Value> = sft.iter().map(|r| &r["CheckpointConfig"]["S3Uri"]).collect();
    assert!(checkpoints[0].as_str().is_some_and(|u| u.contains("/team/p/checkpoints/sft/")), "{checkpoints:?}");
    assert_eq!(checkpoints[0], checkpoints[1], "the new attempt restores the same checkpoints");
    assert_eq!(sft[1]["EnableManagedSpotTraining"], true);
    let _ = std::fs::remove_dir_all(&aws.dir);
}

/// The members of two JSON values that differ, by JSON pointer.
fn differences(pointer: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (left, right) = (x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null));
                differences(&format!("{pointer}/{key}"), left, right, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (left, right)) in x.iter().zip(y).enumerate() {
                differences(&format!("{pointer}/{i}"), left, right, out);
            }
        }
        _ if a != b => out.push(format!("{pointer}: {a} != {b}")),
        _ => {}
    }
}

#[test]
fn every_request_the_server_received_is_the_one_tunec_build_wrote() {
    let aws = Aws::start("as-built", DEFAULT, "");
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let out = aws.dir.join("build");
    let build = aws.tunec(&["build", &aws.file(), "-o", &out.display().to_string()]);
    assert_eq!(build.code, 0, "{}", build.stderr);
    let jobs = aws.jobs();
    for node in ["sft", "merged", "report"] {
        // The placeholders filled as the run's environment fills them.
        let text = std::fs::read_to_string(out.join(node).join("request.json")).expect("request.json");
        let filled = text
            .replace("${env:TUNEC_SAGEMAKER_ROLE}", "arn:aws:iam::123456789012:role/tunec-test")
            .replace("${env:TUNEC_BUCKET}", &format!("s3://{}/team", aws.bucket));
        assert!(!filled.contains("${"), "{node}: a placeholder the test does not fill: {filled}");
        let built: Value = serde_json::from_str(&filled).expect("request.json is JSON");
        let received = requests_of(&jobs, node);
        assert_eq!(received.len(), 1, "{node}: {received:?}");
        let mut differ = Vec::new();
        differences("", &built, &received[0], &mut differ);
        assert!(
            differ.is_empty(),
            "{node}: what the server received is not what build wrote (built != received):\n{}",
            differ.join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&aws.dir);
}

/// `pattern` with IAM's wildcards (`*` any run of characters, `?` one) matches `text`.
fn iam_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Positions in `text` the pattern so far can end at.
    let mut ends = vec![false; t.len() + 1];
    ends[0] = true;
    for c in p {
        ends = match c {
            '*' => {
                let first = ends.iter().position(|&e| e).unwrap_or(t.len() + 1);
                (0..=t.len()).map(|i| i >= first).collect()
            }
            _ => (0..=t.len()).map(|i| i > 0 && ends[i - 1] && (c == '?' || t[i - 1] == c)).collect(),
        };
    }
    ends[t.len()]
}

/// One value or a list of them, as IAM writes `Action`, `Resource` and condition values.
fn iam_list(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `policy` allows `action` on `resource` with the request's condition keys `context`:
/// an Allow statement whose action, resource and every condition (StringEquals, StringLike; a key
/// the request lacks fails) match, and no Deny statement that matches.
fn iam_allows(policy: &Value, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
    let applies = |statement: &Value| {
        iam_list(&statement["Action"]).iter().any(|a| iam_matches(&a.to_lowercase(), &action.to_lowercase()))
            && iam_list(&statement["Resource"]).iter().any(|r| iam_matches(r, resource))
            && statement["Condition"].as_object().is_none_or(|operators| {
                operators.iter().all(|(operator, keys)| {
                    keys.as_object().is_some_and(|keys| {
                        keys.iter().all(|(key, allowed)| {
                            let Some((_, value)) = context.iter().find(|(k, _)| k == key) else { return false };
                            iam_list(allowed).iter().any(|a| match operator.as_str() {
                                "StringEquals" => a == value,
                                "StringLike" => iam_matches(a, value),
                                other => panic!("a condition operator the test does not evaluate: {other}"),
                            })
                        })
                    })
                })
            })
    };
    let statements = policy["Statement"].as_array().expect("statements");
    let matching = |effect: &str| statements.iter().any(|s| s["Effect"] == effect && applies(s));
    matching("Allow") && !matching("Deny")
}

#[test]
fn the_policies_iam_policy_writes_allow_what_a_run_and_its_jobs_do() {
    let aws = Aws::start_with("iam", DEFAULT, "", true);
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let policies = aws.tunec(&["iam-policy", &aws.file()]);
    assert_eq!(policies.code, 0, "{}", policies.stderr);
    let policies: Value = serde_json::from_str(&policies.stdout).expect("JSON");
    let (caller, role) = (&policies["caller"], &policies["execution_role"]);
    let mut checked = 0;
    let mut allowed = |policy: &Value, action: &str, resource: &str, context: &[(&str, &str)]| {
        checked += 1;
        assert!(
            iam_allows(policy, action, resource, context),
            "{action} on {resource} ({context:?}) is not allowed by {policy:#}"
        );
    };
    // Every SageMaker call the run made, on its job's ARN, and the role passed with each create.
    let calls = aws.calls();
    assert!(calls.len() >= 6, "{calls:?}");
    for call in &calls {
        let (operation, job) = (call["operation"].as_str().expect("operation"), call["job"].as_str().expect("job"));
        let arn = format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{}", job.to_lowercase());
        allowed(caller, &format!("sagemaker:{operation}"), &arn, &[]);
        if operation == "CreateTrainingJob" {
            let passed = [("iam:PassedToService", "sagemaker.amazonaws.com")];
            allowed(caller, "iam:PassRole", "arn:aws:iam::123456789012:role/tunec-test", &passed);
        }
    }
    // Every S3 request tunec made, as moto logged it, under the action IAM authorises it by: the
    // SDK names the operation (`x-id`); a multipart upload's calls are all s3:PutObject, a HEAD of an
    // object s3:GetObject, a listing s3:ListBucket with its prefix.
    let requests = aws.s3_requests_by_tunec();
    let mut written = BTreeSet::new();
    for (method, path, query) in &requests {
        let call = format!("{method} {path} {query:?}");
        let (bucket, key) = path.trim_start_matches('/').split_once('/').unwrap_or((path.trim_start_matches('/'), ""));
        assert_eq!(bucket, aws.bucket, "{call}");
        let object = format!("arn:aws:s3:::{bucket}/{key}");
        match (method.as_str(), key.is_empty()) {
            ("GET", true) if query.get("list-type").is_some_and(|v| v == "2") => {
                let prefix = query.get("prefix").map_or("", String::as_str);
                allowed(caller, "s3:ListBucket", &format!("arn:aws:s3:::{bucket}"), &[("s3:prefix", prefix)]);
            }
            ("HEAD", true) => allowed(caller, "s3:ListBucket", &format!("arn:aws:s3:::{bucket}"), &[]),
            ("PUT" | "POST", false) => {
                allowed(caller, "s3:PutObject", &object, &[]);
                written.insert(key.to_owned());
            }
            ("GET" | "HEAD", false) => allowed(caller, "s3:GetObject", &object, &[]),
            ("DELETE", false) if query.contains_key("uploadId") => {
                allowed(caller, "s3:AbortMultipartUpload", &object, &[])
            }
            ("DELETE", false) => allowed(caller, "s3:DeleteObject", &object, &[]),
            _ => panic!("an S3 request this test does not map to an IAM action: {call}"),
        }
    }
    // The log is complete: every object tunec left in the bucket (all but the jobs' outputs) was
    // written by a logged request.
    let objects = aws.objects();
    let uploaded: Vec<&String> = objects.iter().filter(|o| !o.starts_with("team/p/output/")).collect();
    assert!(uploaded.len() >= 10, "{objects:?}");
    for key in &uploaded {
        assert!(written.contains(key.as_str()), "{key} is in the bucket, and no logged request of tunec wrote it");
    }
    // What each job read (every object under each of its channels, and the listing of each
    // channel's prefix) and where it wrote (its output path and its checkpoints).
    let jobs = aws.jobs();
    for node in ["sft", "merged", "report"] {
        let request = &requests_of(&jobs, node)[0];
        for channel in request["InputDataConfig"].as_array().expect("channels") {
            let uri = channel.pointer("/DataSource/S3DataSource/S3Uri").and_then(Value::as_str).expect("a channel URI");
            let prefix = uri.strip_prefix(&format!("s3://{}/", aws.bucket)).expect("in the bucket");
            allowed(role, "s3:ListBucket", &format!("arn:aws:s3:::{}", aws.bucket), &[("s3:prefix", prefix)]);
            let read: Vec<&String> = objects.iter().filter(|o| o.starts_with(prefix)).collect();
            assert!(!read.is_empty(), "{node} reads {uri}, where nothing is");
            for key in read {
                allowed(role, "s3:GetObject", &format!("arn:aws:s3:::{}/{key}", aws.bucket), &[]);
            }
        }
        let name = request["TrainingJobName"].as_str().expect("name");
        let output = request["OutputDataConfig"]["S3OutputPath"].as_str().expect("output path");
        let output = output.strip_prefix("s3://").expect("s3").trim_end_matches('/');
        allowed(role, "s3:PutObject", &format!("arn:aws:s3:::{output}/{name}/output/model.tar.gz"), &[]);
        if let Some(checkpoints) = request["CheckpointConfig"]["S3Uri"].as_str() {
            let checkpoints = checkpoints.strip_prefix("s3://").expect("s3").trim_end_matches('/');
            allowed(
                role,
                "s3:PutObject",
                &format!("arn:aws:s3:::{checkpoints}/checkpoint-10/adapter_model.safetensors"),
                &[],
            );
            allowed(
                role,
                "s3:GetObject",
                &format!("arn:aws:s3:::{checkpoints}/checkpoint-10/adapter_model.safetensors"),
                &[],
            );
        }
        let image = request["AlgorithmSpecification"]["TrainingImage"].as_str().expect("image");
        let (registry, repository) = image.split_once('/').expect("a registry and a repository");
        let account = registry.split('.').next().expect("an account");
        let repository = repository.split(':').next().expect("a repository");
        allowed(role, "ecr:BatchGetImage", &format!("arn:aws:ecr:us-east-1:{account}:repository/{repository}"), &[]);
    }
    // And the evaluation refuses what the policies do not grant.
    assert!(!iam_allows(
        caller,
        "sagemaker:CreateTrainingJob",
        "arn:aws:sagemaker:us-east-1:123456789012:training-job/other-sft-1",
        &[]
    ));
    assert!(!iam_allows(caller, "iam:PassRole", "arn:aws:iam::123456789012:role/tunec-test", &[]));
    assert!(!iam_allows(role, "s3:PutObject", &format!("arn:aws:s3:::{}/team/p/data/x", aws.bucket), &[]));
    assert!(!iam_allows(
        role,
        "s3:ListBucket",
        &format!("arn:aws:s3:::{}", aws.bucket),
        &[("s3:prefix", "elsewhere/")]
    ));
    assert!(checked > 40, "{checked} checks");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn the_role_is_in_no_upload_log_or_journal_whether_a_run_fails_is_interrupted_or_completes() {
    const ROLE: &str = "arn:aws:iam::123456789012:role/MarkerRoleValue";
    // sft fails once (a script error, not retried), then runs long enough to be interrupted.
    let script = r#"{"default": {"polls": 30, "end": "Completed"},
      "jobs": [{"match": "-sft-", "attempts": [{"polls": 1, "end": "Failed", "failure_reason": "AlgorithmError: scripted"}]}]}"#;
    let aws = Aws::start("role-marker", script, "");
    let run = || {
        support::tunec_with(&["run", &aws.file(), "--progress", "plain"], |command| {
            aws.configure(command);
            command.env("TUNEC_SAGEMAKER_ROLE", ROLE);
        })
    };
    let scan = |what: &str, printed: &str| {
        assert!(!printed.contains("MarkerRoleValue"), "{what}: printed:\n{printed}");
        for path in support::files_under(&aws.dir.join(".tunec")) {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!String::from_utf8_lossy(&bytes).contains("MarkerRoleValue"), "{what}: {}", path.display());
        }
        let holding = Command::new(python())
            .args(["-c", "import boto3, sys\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\nfor page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[2]):\n    for o in page.get('Contents', []):\n        if b'MarkerRoleValue' in s3.get_object(Bucket=sys.argv[2], Key=o['Key'])['Body'].read():\n            print(o['Key'])"])
            .args([&aws.moto, &aws.bucket])
            .output()
            .expect("python runs");
        assert!(holding.status.success(), "{}", String::from_utf8_lossy(&holding.stderr));
        assert_eq!(String::from_utf8_lossy(&holding.stdout), "", "{what}: uploaded objects hold the role");
    };

    let failed = run();
    assert_eq!(failed.code, 1, "{}{}", failed.stdout, failed.stderr);
    scan("a failed run", &format!("{}{}", failed.stdout, failed.stderr));

    let child = aws
        .command(&["run", &aws.file(), "--progress", "plain"])
        .env("TUNEC_SAGEMAKER_ROLE", ROLE)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !aws.created().iter().any(|n| n.starts_with("p-sft-") && n.ends_with("-a2")) {
        assert!(Instant::now() < deadline, "no second sft attempt was created");
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    scan(
        "an interrupted run",
        &format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    );

    let done = run();
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    scan("a completed run", &format!("{}{}", done.stdout, done.stderr));
    // The role reached the one place it must: each request.
    assert!(requests_of(&aws.jobs(), "sft").iter().all(|r| r["RoleArn"] == ROLE));
    let _ = std::fs::remove_dir_all(&aws.dir);
}

/// The CreateTrainingJob calls for `node`'s jobs, in order: (job name, outcome, the scripted reply
/// fault or null).
fn creates_of(aws: &Aws, node: &str) -> Vec<(String, String, Value)> {
    aws.calls()
        .into_iter()
        .filter(|c| {
            c["operation"] == "CreateTrainingJob"
                && c["job"].as_str().is_some_and(|j| j.starts_with(&format!("p-{node}-")))
        })
        .map(|c| {
            (
                c["job"].as_str().unwrap_or_default().to_owned(),
                c["outcome"].as_str().unwrap_or_default().to_owned(),
                c["fault"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_create_whose_reply_is_lost_is_watched_and_not_created_again() {
    // The server creates the sft job, then resets the connection instead of answering.
    let script = r#"{"default": {"polls": 2, "end": "Completed"},
      "replies": [{"operation": "CreateTrainingJob", "match": "-sft-", "fault": "drop"}]}"#;
    let aws = Aws::start("lost-reply", script, "");
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let creates = creates_of(&aws, "sft");
    let name = aws.state()["nodes"]["sft"]["job_name"].as_str().expect("name").to_owned();
    // The lost reply, then a retry that found the name in use: the job was watched, not made again.
    assert_eq!(creates[0], (name.clone(), "ok".to_owned(), Value::from("drop")), "{creates:?}");
    assert!(
        creates.len() >= 2 && creates[1..].iter().all(|(job, outcome, _)| job == &name && outcome == "ResourceInUse"),
        "{creates:?}"
    );
    assert_eq!(aws.created().len(), 3, "one job per job node: {:?}", aws.created());
    assert_eq!(aws.state()["nodes"]["sft"]["attempt"], 1);
    let merge = &requests_of(&aws.jobs(), "merged")[0];
    assert!(channel_uri(merge, "adapter").ends_with(&format!("/output/sft/{name}/output/model/")), "{merge}");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn sigkill_while_the_create_reply_is_on_its_way_reattaches_and_creates_nothing_again() {
    // The server creates the sft job and holds its reply for two minutes: tunec is killed in the
    // window where the job exists and tunec cannot know it.
    let script = r#"{"default": {"polls": 3, "end": "Completed"},
      "replies": [{"operation": "CreateTrainingJob", "match": "-sft-", "fault": "hold", "seconds": 120}]}"#;
    let aws = Aws::start("held-reply", script, "");
    let mut child = aws.spawn_run();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !creates_of(&aws, "sft").iter().any(|(_, _, fault)| fault == "hold") {
        assert!(child.try_wait().expect("wait").is_none(), "tunec ended before it created the sft job");
        assert!(Instant::now() < deadline, "no sft job was created: {:?}", aws.calls());
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    // Where the kill landed: tunec was still waiting for the reply (it would otherwise have gone on,
    // not been killed), and the journal already named the job.
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let (name, _, _) = creates_of(&aws, "sft").remove(0);
    let state = aws.state();
    assert_eq!(state["nodes"]["sft"]["status"], "running", "{state}");
    assert_eq!(state["nodes"]["sft"]["job_name"], name.as_str(), "{state}");

    let before = aws.calls().len();
    let again = aws.run();
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let rerun: Vec<Value> = aws.calls().split_off(before);
    let sft: Vec<(&str, &str)> = rerun
        .iter()
        .filter(|c| c["job"] == name.as_str())
        .map(|c| (c["operation"].as_str().unwrap_or_default(), c["outcome"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(sft.first(), Some(&("DescribeTrainingJob", "ok")), "asked about the job first: {sft:?}");
    assert!(sft.iter().all(|(operation, _)| *operation == "DescribeTrainingJob"), "{sft:?}");
    assert_eq!(creates_of(&aws, "sft").len(), 1, "{:?}", creates_of(&aws, "sft"));
    assert_eq!(aws.state()["nodes"]["sft"]["status"], "succeeded");
    assert_eq!(aws.created().len(), 3, "{:?}", aws.created());
    let _ = std::fs::remove_dir_all(&aws.dir);
}

/// Starts `tunec run` and waits until the server has created a job for `node`.
fn start_and_wait_for_job(aws: &Aws, node: &str) -> Child {
    let mut child = aws
        .command(&["run", &aws.file(), "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (rx, _reader) = stdout_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !aws.created().iter().any(|n| n.starts_with(&format!("p-{node}-"))) {
        assert!(Instant::now() < deadline, "no {node} job was created: {:?}", rx.try_iter().collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn interrupt(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
}

#[test]
fn ctrl_c_twice_stops_the_job() {
    let aws = Aws::start("stop", r#"{"default": {"polls": 100000, "end": "Completed"}}"#, "");
    let mut child = start_and_wait_for_job(&aws, "sft");
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let stops: Vec<Value> = aws.calls().into_iter().filter(|c| c["operation"] == "StopTrainingJob").collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert!(stops[0]["job"].as_str().is_some_and(|j| j.starts_with("p-sft-")));
    assert_eq!(aws.state()["nodes"]["sft"]["status"], "interrupted");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn one_ctrl_c_detaches_and_the_next_run_reattaches() {
    let aws = Aws::start("detach", r#"{"default": {"polls": 30, "end": "Completed"}}"#, "");
    let mut child = start_and_wait_for_job(&aws, "sft");
    interrupt(&child);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let state = aws.state();
    assert_eq!(state["nodes"]["sft"]["status"], "running", "left running on SageMaker: {state}");
    let name = state["nodes"]["sft"]["job_name"].as_str().expect("name").to_owned();
    assert!(aws.calls().iter().all(|c| c["operation"] != "StopTrainingJob"));

    let again = aws.run();
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("run sft: the previous run did not finish"), "{}", again.stdout);
    assert!(again.stdout.contains(&format!("{name}: found on SageMaker; watching it")), "{}", again.stdout);
    let sft: Vec<String> = aws.created().into_iter().filter(|n| n.starts_with("p-sft-")).collect();
    assert_eq!(sft, [name], "re-attached, not created again");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn a_job_the_journal_records_as_created_is_never_created_again() {
    let aws = Aws::start("forgotten", r#"{"default": {"polls": 30, "end": "Completed"}}"#, "");
    let mut child = start_and_wait_for_job(&aws, "sft");
    interrupt(&child);
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    let state = aws.state();
    assert_eq!(state["nodes"]["sft"]["job_created"], true, "{state}");
    // The server forgets every job, as another region or account would not know it: the next run
    // must not take "not found" as "never created".
    let out = Command::new(python())
        .args(["-c", "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/_control/reset', method='POST')).read()"])
        .arg(&aws.fake)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = aws.run();
    assert_eq!(again.code, 1, "{}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("was created by an earlier run (the journal records it)"), "{}", again.stderr);
    assert!(again.stderr.contains("ValidationException"), "{}", again.stderr);
    let sft: Vec<String> = aws.created().into_iter().filter(|n| n.starts_with("p-sft-")).collect();
    assert_eq!(sft.len(), 1, "not created again: {sft:?}");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn large_files_go_in_parts_with_checksums_and_nothing_is_sent_twice() {
    use tunec_runtime::run::{aws, s3 as upload};
    let aws_servers = Aws::start("multipart", DEFAULT, "");
    let dir = aws_servers.dir.join("big");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    // 70 MiB of varied bytes (5 parts), and a small file beside it.
    let big: Vec<u8> = (0..70u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.join("sub/weights.bin"), &big).expect("write");
    std::fs::write(dir.join("config.json"), "{}").expect("write");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (first, second) = runtime.block_on(async {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        let client = aws::connect(Some("us-east-1".into()), Some(&aws_servers.moto), None).await.expect("connect");
        let uri = format!("s3://{}/team/models/big/k/", aws_servers.bucket);
        let first = upload::upload_dir(&client, &dir, &uri, &|_| {}).await.expect("upload");
        let second = upload::upload_dir(&client, &dir, &uri, &|_| {}).await.expect("upload again");
        (first, second)
    });
    assert_eq!((first.sent, first.skipped, first.bytes), (2, 0, big.len() as u64 + 2));
    assert_eq!((second.sent, second.skipped), (0, 2), "same SHA-256: nothing sent again");
    // What moto holds is the file, byte for byte.
    let out = Command::new(python())
        .args(["-c", "import boto3, hashlib, sys\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\nbody = s3.get_object(Bucket=sys.argv[2], Key='team/models/big/k/sub/weights.bin')['Body'].read()\nprint(len(body), hashlib.sha256(body).hexdigest())"])
        .args([&aws_servers.moto, &aws_servers.bucket])
        .output()
        .expect("python runs");
    use sha2::Digest as _;
    let digest: String = sha2::Sha256::digest(&big).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} {digest}", big.len()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&aws_servers.dir);
}

#[test]
fn an_s3_dataset_is_downloaded_once_and_checked_again_on_every_run() {
    let aws = Aws::start("s3source", DEFAULT, "");
    let put = |text: &str| {
        std::fs::write(aws.dir.join("upload.jsonl"), text).expect("write");
        let out = Command::new(python())
            .args(["-c", "import boto3, sys\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\ns3.upload_file(sys.argv[3], sys.argv[2], 'in/medreason.jsonl')"])
            .args([&aws.moto, &aws.bucket])
            .arg(aws.dir.join("upload.jsonl"))
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let rows = std::fs::read_to_string(aws.dir.join("medreason.jsonl")).expect("rows");
    put(&rows);
    // The same pipeline on the local target, reading the rows from S3.
    let text = std::fs::read_to_string(aws.dir.join("p.tune")).expect("pipeline");
    let start = text.find("  target sagemaker").expect("target");
    let end = start + text[start..].find("  }\n").expect("end of target") + 4;
    let text = format!("{}  target local {{}}\n{}", &text[..start], &text[end..])
        .replace("file(\"medreason.jsonl\")", &format!("file(\"s3://{}/in/medreason.jsonl\")", aws.bucket));
    std::fs::write(aws.dir.join("p.tune"), text).expect("write");
    let run = |until: &str| {
        support::tunec_with(&["run", &aws.file(), "--until", until, "--progress", "plain"], |command| {
            aws.configure(command);
            command.env("AWS_REGION", "us-east-1");
        })
    };
    let first = run("parts");
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains(&format!("  raw: s3://{}/in/medreason.jsonl downloaded", aws.bucket)),
        "{}",
        first.stdout
    );
    let profile: Value =
        serde_json::from_str(&std::fs::read_to_string(aws.dir.join(".tunec/p/profiles/convo.json")).expect("profile"))
            .expect("json");
    assert_eq!(profile["rows"], 27, "the same rows as the local file give: {profile}");

    let second = run("parts");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(second.stdout.contains("run raw: its source s3://"), "{}", second.stdout);
    assert!(second.stdout.contains("unchanged since the last download"), "{}", second.stdout);
    assert!(second.stdout.contains("reuse parts: same inputs, outputs intact"), "{}", second.stdout);

    // A changed object is downloaded again, and what reads it runs again.
    let fewer: String = rows.lines().take(20).map(|l| format!("{l}\n")).collect();
    put(&fewer);
    let third = run("parts");
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(third.stdout.contains("medreason.jsonl downloaded"), "{}", third.stdout);
    assert!(third.stdout.contains("run parts: its input `convo` ran again with different outputs"), "{}", third.stdout);
    let _ = std::fs::remove_dir_all(&aws.dir);
}

/// Where moto's SageMaker falls short, the test stands in for the service through S3's own API:
/// moto completes a job at once and writes no model, so the model the `sft` job "wrote" is put
/// where SageMaker would have put it (`<S3OutputPath>/<job>/output/model/`, the request asks for
/// no compression) before the run.
fn put_sft_model(aws: &Aws, sft_job: &str) {
    let prefix = format!("team/p/output/sft/{sft_job}/output/model");
    aws.boto3(
        "s3 = boto3.client('s3', **kw)\nfor name in ['adapter_config.json', 'adapter_model.safetensors']:\n    s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3] + '/' + name, Body=b'{}')",
        &[&prefix],
    );
}

/// A training job as moto holds it: the request it was created from, with moto's additions.
fn moto_job(aws: &Aws, name: &str) -> Value {
    let out = aws.boto3(
        "print(json.dumps(boto3.client('sagemaker', **kw).describe_training_job(TrainingJobName=sys.argv[3]), default=str))",
        &[name],
    );
    serde_json::from_str(&out).expect("a job as JSON")
}

#[test]
fn on_motos_sagemaker_the_pipeline_runs_chains_and_reruns_with_no_call() {
    let aws = Aws::moto("moto-whole");
    let names = aws.job_names();
    put_sft_model(&aws, &names["sft"]);
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for node in ["llama", "raw", "convo", "parts", "sft", "merged", "report"] {
        assert!(run.stdout.contains(&format!("run {node}: no previous run")), "{}", run.stdout);
    }
    // Each job was created once, under its lowered name: moto's "not found" (a ValidationException
    // in its own words) was taken as "never created" because the journal agreed.
    let mut created = aws.created();
    created.sort();
    let mut expected: Vec<String> = ["sft", "merged", "report"].iter().map(|n| names[*n].clone()).collect();
    expected.sort();
    assert_eq!(created, expected);
    let state = aws.state();
    for node in ["sft", "merged", "report"] {
        let record = &state["nodes"][node];
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(record["job_name"], names[node].as_str(), "{record}");
        assert_eq!(record["job_created"], true, "{record}");
        // The outputs are what the service says the model is.
        let artifacts = moto_job(&aws, &names[node])["ModelArtifacts"]["S3ModelArtifacts"].clone();
        assert!(record["outputs"].as_array().expect("outputs").iter().any(|o| o["path"] == artifacts), "{record}");
    }
    // What the jobs read was uploaded where their requests say, and the merge reads the model the
    // sft job wrote.
    let objects = aws.objects();
    let parts_key = state["nodes"]["parts"]["key"].as_str().expect("key");
    for part in ["train/train.jsonl", "val/val.jsonl", "test/test.jsonl"] {
        assert!(objects.contains(&format!("team/p/data/parts/{parts_key}/{part}")), "{part}: {objects:?}");
    }
    assert!(objects.iter().any(|o| o.starts_with("team/p/code/") && o.ends_with("/train.py")), "{objects:?}");
    let merge = moto_job(&aws, &names["merged"]);
    let adapter = channel_uri(&merge, "adapter");
    let prefix = format!("s3://{}/", aws.bucket);
    let adapter = adapter.strip_prefix(&prefix).unwrap_or_else(|| panic!("{adapter}"));
    assert!(objects.contains(&format!("{adapter}adapter_config.json")), "{adapter}: {objects:?}");
    assert_eq!(merge["RoleArn"], "arn:aws:iam::123456789012:role/tunec-test");

    // A second run reuses everything and calls nothing.
    let before = aws.moto_calls().len();
    let again = aws.run();
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let decisions: Vec<&str> = again.stdout.lines().take_while(|l| !l.starts_with("summary: ")).collect();
    assert_eq!(decisions.len(), 7, "{}", again.stdout);
    assert!(decisions.iter().all(|l| l.starts_with("reuse ")), "{}", again.stdout);
    assert_eq!(aws.moto_calls().len(), before, "no SageMaker call for a reused pipeline");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn on_motos_sagemaker_sigkill_at_random_moments_never_creates_a_job_twice() {
    let aws = Aws::moto("moto-kill");
    let names = aws.job_names();
    put_sft_model(&aws, &names["sft"]);
    let seed = 0x6d07_0011_u64;
    let kills = kill_at_random_until_done(&aws, seed, (0.1, 2.0));
    assert!(kills.total >= 2, "only {kills:?}");
    let last = aws.run();
    assert_eq!(last.code, 0, "{}{}", last.stdout, last.stderr);
    let created = aws.created();
    for node in ["sft", "merged", "report"] {
        let times = created.iter().filter(|n| **n == names[node]).count();
        assert_eq!(times, 1, "{node}: one CreateTrainingJob whatever the kills (seed {seed:#x}): {created:?}");
    }
    assert_eq!(created.len(), 3, "{created:?}");
    let _ = std::fs::remove_dir_all(&aws.dir);
}

#[test]
fn on_motos_sagemaker_a_token_kept_in_secrets_manager_reaches_the_jobs_as_its_arn_only() {
    const VALUE: &str = "hf_MotoSecretMarker0123456789abcdef";
    let aws = Aws::moto("moto-secret");
    let arn = aws.boto3(
        "print(boto3.client('secretsmanager', **kw).create_secret(Name='hub-token', SecretString=sys.argv[3])['ARN'])",
        &[VALUE],
    );
    let arn = arn.trim();
    // The jobs start from a gated Hub model whose token is the secret; the chat node keeps the
    // local tokenizer, so `tunec run` itself needs no token (and no evaluation reads the splits
    // with another model's template).
    let text = std::fs::read_to_string(aws.file()).expect("pipeline");
    let evaluate = "  evaluate report = evaluate(merged, parts.test) { metrics = [exact_match, rouge_l] }";
    assert!(text.contains(evaluate));
    let text = text
        .replace(evaluate, "")
        .replace(
            "  dataset raw = ",
            &format!("  model base = hf_model(\"meta-llama/Llama-3.1-8B-Instruct\") {{\n    token = secret(\"{arn}\")\n  }}\n  dataset raw = "),
        )
        .replace("sft(llama, data", "sft(base, data");
    std::fs::write(aws.file(), text).expect("write");
    let names = aws.job_names();
    put_sft_model(&aws, &names["sft"]);
    let run = aws.run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // moto keeps no Environment in its job records, so the requests it received are read from its
    // recording: each CreateTrainingJob, by job name.
    let recording = aws.recording.as_ref().expect("recording");
    let requests: Value = serde_json::from_str(&aws.boto3(
        "import base64\nout = {}\nfor line in open(sys.argv[3]):\n    e = json.loads(line)\n    target = {k.lower(): v for k, v in e['headers'].items()}.get('x-amz-target', '')\n    if target == 'SageMaker.CreateTrainingJob':\n        body = base64.b64decode(e['body']) if e['body_encoded'] else e['body']\n        request = json.loads(body)\n        out[request['TrainingJobName']] = request\nprint(json.dumps(out))",
        &[&recording.display().to_string()],
    ))
    .expect("requests JSON");
    for node in ["sft", "merged"] {
        let request = &requests[&names[node]];
        let environment = &request["Environment"];
        assert_eq!(environment["TUNEC_HF_TOKEN_SECRET"], arn, "{node}: {environment}");
        assert!(environment.get("HF_TOKEN").is_none(), "{node}: {environment}");
        assert!(!request.to_string().contains(VALUE), "{node}: the request holds the token");
        assert_eq!(moto_job(&aws, &names[node])["TrainingJobStatus"], "Completed", "{node}");
    }
    // Only the jobs read the secret: tunec asked moto for no secret value.
    let recording = std::fs::read_to_string(aws.recording.as_ref().expect("recording")).expect("recording");
    assert!(!recording.contains("secretsmanager.GetSecretValue"), "tunec read the secret");
    assert!(recording.contains("SageMaker.CreateTrainingJob"), "the recording holds the run");
    let _ = std::fs::remove_dir_all(&aws.dir);
}
