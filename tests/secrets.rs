//! The promise that what `env()` reads stays in the environment: with marker values in
//! `HF_TOKEN`, `TUNEC_SAGEMAKER_ROLE` and `TUNEC_BUCKET`, no command prints one and no run writes
//! one.
//!
//! - `check` (text and JSON), `plan` (text and JSON), `graph` (DOT and Mermaid) and `status` on the
//!   reference pipeline print none of the three. `iam-policy` names the bucket and the role, which
//!   are what its policies are about, and never the token.
//! - A SageMaker pipeline run `--until parts` on this machine (its data step; the MedReason-shaped
//!   rows and the real Llama 3.1 tokenizer from `TUNEC_FIXTURES`), once to success and once to a
//!   failure (a bad row under `on_bad_row = fail`), writes none of them under `.tunec/`, and none
//!   is in what it, `status` (text and JSON) and `plan` print.
//!
//! - A Hub token kept in AWS Secrets Manager (`token = secret(env("TUNEC_HF_TOKEN_SECRET"))`, a
//!   marker value in moto's Secrets Manager) on a SageMaker pipeline whose model is gated on a
//!   fake Hub (`tests/hub/fake_hub.py`, which answers only that token) and whose jobs run on the
//!   scripted SageMaker server (`tests/aws/fake_sagemaker.py`) with S3 on moto: run to a failure,
//!   to a Ctrl-C and to completion. `tunec run` read the secret (the gated downloads succeeded),
//!   every job request carries the secret's ARN and never the value, and the value is in no file
//!   under `.tunec/`, no uploaded object, no request moto, the scripted server or the Hub logged
//!   (moto records every request after the secret was made), nothing tunec printed, and no output
//!   of `check --format json`, `plan`, `graph`, `status` or `iam-policy`; the policies grant
//!   `secretsmanager:GetSecretValue` on the ARN to the role and to the caller.
//! - The same whole run with `token = env("HF_TOKEN")`: `check` warns (`token_in_job`), every job
//!   request carries the value (which is what the warning is about), and still no file under
//!   `.tunec/`, uploaded object, recorded S3 request, server log or printed output holds it.
//!
//! The SageMaker jobs themselves are covered by `tests/sagemaker.rs` (the role is in no journal;
//! on moto's SageMaker, a job's record holds the secret's ARN only) and the Hub token by
//! `tests/hub.rs` (sent to the endpoint only, in no file under `.tunec/`; from Secrets Manager on
//! the local target). The entry scripts' side is `tests/python/test_secrets.py`.

#[path = "support/medreason.rs"]
mod medreason;
#[path = "support/moto.rs"]
#[allow(dead_code)] // the shared server is for other tests
mod moto;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moto::Moto;
use serde_json::Value;
use support::{root, Run};

const TOKEN: &str = "hf_MarkerTokenValue0123456789abcdef";
const ROLE: &str = "arn:aws:iam::210987654321:role/MarkerRoleName";
const BUCKET: &str = "s3://marker-bucket-name/marker-prefix";

/// The markers, as they would appear in any output (the bucket also without its scheme, as in an
/// ARN, and the role by its name alone).
const MARKERS: [&str; 5] = [TOKEN, ROLE, "MarkerRoleName", "marker-bucket-name", "marker-prefix"];

fn tunec(args: &[&str]) -> Run {
    support::tunec_with(args, |command| {
        command.env("HF_TOKEN", TOKEN).env("TUNEC_SAGEMAKER_ROLE", ROLE).env("TUNEC_BUCKET", BUCKET);
    })
}

/// The reference pipeline with its Hub token from the environment, as before secrets could be
/// kept in Secrets Manager: no command prints the value either (`token_in_job` warns).
fn medreason_with_env_token(dir: &Path) -> String {
    let text = std::fs::read_to_string(root().join("examples/medreason/medreason.tune")).expect("example");
    let text = text.replace("secret(env(\"TUNEC_HF_TOKEN_SECRET\"))", "env(\"HF_TOKEN\")");
    assert!(text.contains("token     = env(\"HF_TOKEN\")"), "the example's token line changed");
    std::fs::create_dir_all(dir).expect("mkdir");
    let file = dir.join("medreason.tune");
    std::fs::write(&file, text).expect("write");
    file.display().to_string()
}

/// Fails naming the marker and where it was found.
fn assert_no_marker(text: &str, markers: &[&str], where_: &str) {
    for marker in markers {
        assert!(!text.contains(marker), "{where_} holds `{marker}`:\n{text}");
    }
}

#[test]
fn no_command_prints_an_environment_value() {
    let dir = std::env::temp_dir().join(format!("tunec-secrets-env-{}", std::process::id()));
    let env_file = medreason_with_env_token(&dir);
    let file = "examples/medreason/medreason.tune";
    for args in [
        vec!["check", file],
        vec!["check", file, "--format", "json"],
        vec!["plan", file],
        vec!["plan", file, "--format", "json"],
        vec!["graph", file],
        vec!["graph", file, "--format", "mermaid"],
        vec!["status", file],
        vec!["status", file, "--format", "json"],
    ] {
        for args in [args.clone(), args.iter().map(|a| if *a == file { env_file.as_str() } else { a }).collect()] {
            let run = tunec(&args);
            assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
            let printed = format!("{}{}", run.stdout, run.stderr);
            assert_no_marker(&printed, &MARKERS, &format!("`tunec {}`", args.join(" ")));
        }
    }
    let warned = tunec(&["check", &env_file]);
    assert!(warned.stderr.contains("tunec::check::token_in_job"), "{}", warned.stderr);
    // The plan still says which variables it reads.
    let plan = tunec(&["plan", file]);
    assert!(
        plan.stdout.contains("reads at run time: TUNEC_BUCKET, TUNEC_HF_TOKEN_SECRET, TUNEC_SAGEMAKER_ROLE"),
        "{}",
        plan.stdout
    );

    let policy = tunec(&["iam-policy", file]);
    assert_eq!(policy.code, 0, "{}", policy.stderr);
    assert_no_marker(&format!("{}{}", policy.stdout, policy.stderr), &[TOKEN], "`tunec iam-policy`");
    assert!(policy.stdout.contains("arn:aws:s3:::marker-bucket-name/marker-prefix/medreason/"), "{}", policy.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The MedReason-shaped pipeline on the SageMaker target, with `after_train` after its train node.
fn sagemaker_pipeline(after_train: &str) -> String {
    medreason::pipeline(&medreason::Shape {
        target: "  target sagemaker {\n    region = \"us-east-1\"\n    role   = env(\"TUNEC_SAGEMAKER_ROLE\")\n    bucket = env(\"TUNEC_BUCKET\")\n  }",
        seq_len: 160,
        overflow: "drop",
        instance: "ml.g5.2xlarge",
        train_extra: "",
        after_train,
    })
}

#[test]
fn a_run_writes_no_environment_value_whether_it_succeeds_or_fails() {
    let dir = std::env::temp_dir().join(format!("tunec-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    medreason::model_and_rows(&dir);
    let pipeline = sagemaker_pipeline("");
    let file = dir.join("p.tune").display().to_string();
    let scan = |what: &str, printed: &[&Run]| {
        for run in printed {
            assert_no_marker(&format!("{}{}", run.stdout, run.stderr), &MARKERS, &format!("what {what} printed"));
        }
        for path in support::files_under(&dir.join(".tunec")) {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_no_marker(&String::from_utf8_lossy(&bytes), &MARKERS, &format!("{} ({what})", path.display()));
        }
    };

    std::fs::write(&file, &pipeline).expect("write");
    let run = tunec(&["run", &file, "--until", "parts", "--progress", "plain"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let (status, status_json, plan) = (
        tunec(&["status", &file]),
        tunec(&["status", &file, "--format", "json"]),
        tunec(&["plan", &file, "--format", "json"]),
    );
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
    scan("a run that succeeded", &[&run, &status, &status_json, &plan]);

    // A bad row stops the data step: the failure's message and record hold no value either.
    std::fs::write(&file, pipeline.replace("on_bad_row = skip", "on_bad_row = fail")).expect("write");
    let failed = tunec(&["run", &file, "--until", "parts", "--progress", "plain"]);
    assert_eq!(failed.code, 1, "{}{}", failed.stdout, failed.stderr);
    let status = tunec(&["status", &file, "--format", "json"]);
    assert!(status.stdout.contains("\"failed\""), "{}", status.stdout);
    scan("a run that failed", &[&failed, &status]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_secret_arn_from_the_environment_is_checked_before_anything_runs() {
    let file = root().join("examples/medreason/medreason.tune").display().to_string();
    let run = support::tunec_with(&["run", &file], |command| {
        command
            .env("TUNEC_SAGEMAKER_ROLE", ROLE)
            .env("TUNEC_BUCKET", BUCKET)
            .env("TUNEC_HF_TOKEN_SECRET", "arn:aws:ssm:us-east-1:111122223333:parameter/hf-token");
    });
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("the Hub token's secret of `sft` is not the ARN of a Secrets Manager secret (an ARN of `ssm`"),
        "{}",
        run.stderr
    );
    assert!(!root().join("examples/medreason/.tunec").exists(), "nothing runs, and no journal");
}

/// The Hub token kept in moto's Secrets Manager: a marker no output, file, upload or logged
/// request may hold.
const SECRET_VALUE: &str = "hf_SecretsManagerMarker0123456789ab";
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";

fn python() -> String {
    match std::env::var("TUNEC_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("TUNEC_TEST_PYTHON is not set: this test runs moto, the scripted SageMaker server and a fake Hub"),
    }
}

/// Runs a Python snippet (boto3 against moto: `kw` are the client's arguments, `sys.argv[1]` is
/// moto's URL) and returns its stdout.
fn py(snippet: &str, args: &[&str]) -> String {
    let script = format!(
        "import base64, boto3, json, sys\nkw = dict(endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n{snippet}"
    );
    let out = Command::new(python()).args(["-c", &script]).args(args).output().expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `program` (a Python server) with `args` and waits for the port it writes to `port_file`.
fn start_server(children: &mut Vec<Child>, args: &[&str], port_file: &Path, log: &Path) -> String {
    let child = Command::new(python())
        .args(args)
        .arg("--port-file")
        .arg(port_file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("the server starts");
    children.push(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = std::fs::read_to_string(port_file).ok().and_then(|t| t.trim().parse::<u16>().ok()) {
            return format!("http://127.0.0.1:{port}");
        }
        assert!(Instant::now() < deadline, "{args:?} wrote no port file");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The servers of the secret test; they stop when this is dropped.
struct Servers {
    children: Vec<Child>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the marker is, among everything the servers hold or logged: the keys of S3 objects
/// holding it, and the moto requests (recorded after the secret was made) that carried it.
fn marker_on_servers(moto: &str, bucket: &str, recording: &Path) -> String {
    py(
        "s3 = boto3.client('s3', **kw)\nmarker = sys.argv[4].encode()\nfor page in s3.get_paginator('list_objects_v2').paginate(Bucket=sys.argv[2]):\n    for o in page.get('Contents', []):\n        if marker in s3.get_object(Bucket=sys.argv[2], Key=o['Key'])['Body'].read():\n            print('object', o['Key'])\ntry:\n    lines = open(sys.argv[3]).read().splitlines()\nexcept FileNotFoundError:\n    lines = []\nfor line in lines:\n    e = json.loads(line)\n    body = base64.b64decode(e['body']) if e.get('body_encoded') else (e.get('body') or '').encode()\n    if marker in body or marker.decode() in json.dumps(e):\n        print('request', e.get('url'))",
        &[moto, bucket, &recording.display().to_string(), SECRET_VALUE],
    )
}

/// Where the Hub token of [`hub_token_through_a_whole_sagemaker_run`]'s pipeline comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TokenFrom {
    /// `token = secret(env("TUNEC_HF_TOKEN_SECRET"))`: the jobs get the ARN only.
    SecretsManager,
    /// `token = env("HF_TOKEN")`: the jobs get the value in their Environment, as the
    /// `token_in_job` warning says; it must still be in nothing tunec writes, uploads or prints.
    Environment,
}

#[test]
fn a_token_in_secrets_manager_is_read_where_needed_and_written_nowhere() {
    hub_token_through_a_whole_sagemaker_run(TokenFrom::SecretsManager);
}

#[test]
fn a_token_from_the_environment_reaches_the_jobs_and_nothing_tunec_writes() {
    hub_token_through_a_whole_sagemaker_run(TokenFrom::Environment);
}

fn hub_token_through_a_whole_sagemaker_run(from: TokenFrom) {
    let form = if from == TokenFrom::SecretsManager { "sm" } else { "env" };
    let dir = std::env::temp_dir().join(format!("tunec-secrets-{form}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    medreason::model_and_rows(&dir);
    let mut servers = Servers { children: Vec::new() };

    // moto, for S3 and Secrets Manager, recording every request once the secret exists.
    let recording = dir.join("moto-recording.jsonl");
    let moto_server = Moto::own(&python(), Some(&recording));
    let moto = moto_server.url.clone();
    let bucket = format!("tunec-secrets-{}", std::process::id());
    let arn = moto_server.create_secret(&python(), "hub/token", SECRET_VALUE);
    py(
        "boto3.client('s3', **kw).create_bucket(Bucket=sys.argv[2])\nimport urllib.request\nurllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/recorder/reset-recording', method='POST')).read()",
        &[&moto, &bucket],
    );
    let arn = arn.trim().to_owned();
    assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:") && arn.contains(":secret:hub/token-"), "{arn}");

    // The Hub: the gated model, answering only the secret's value.
    let repo = dir.join("hub/models").join(MODEL);
    std::fs::create_dir_all(repo.join("main")).expect("mkdir");
    for file in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"] {
        std::fs::copy(dir.join("model").join(file), repo.join("main").join(file)).expect("copy");
    }
    std::fs::write(repo.join(".token"), SECRET_VALUE).expect("write");
    let hub_log = dir.join("hub-requests.jsonl");
    let hub = start_server(
        &mut servers.children,
        &[
            &root().join("tests/hub/fake_hub.py").display().to_string(),
            &dir.join("hub").display().to_string(),
            "--log",
            &hub_log.display().to_string(),
        ],
        &dir.join("hub-port"),
        &dir.join("hub.log"),
    );

    // SageMaker: sft fails once (a script error, not retried), then runs long enough to be
    // interrupted, then completes.
    std::fs::write(
        dir.join("script.json"),
        r#"{"default": {"polls": 30, "end": "Completed"},
      "jobs": [{"match": "-sft-", "attempts": [{"polls": 1, "end": "Failed", "failure_reason": "AlgorithmError: scripted"}]}]}"#,
    )
    .expect("write");
    let calls = dir.join("calls.jsonl");
    let sagemaker = start_server(
        &mut servers.children,
        &[
            &root().join("tests/aws/fake_sagemaker.py").display().to_string(),
            "--port",
            "0",
            "--script",
            &dir.join("script.json").display().to_string(),
            "--calls-log",
            &calls.display().to_string(),
            "--s3-endpoint",
            &moto,
        ],
        &dir.join("sagemaker-port"),
        &dir.join("sagemaker.log"),
    );

    let pipeline = sagemaker_pipeline(
        "  merge merged = merge(sft)\n  evaluate report = evaluate(merged, parts.test) { metrics = [exact_match, rouge_l] }",
    );
    let local = "model llama = local_model(\"model\") {";
    assert!(pipeline.contains(local));
    let token = match from {
        TokenFrom::SecretsManager => "secret(env(\"TUNEC_HF_TOKEN_SECRET\"))",
        TokenFrom::Environment => "env(\"HF_TOKEN\")",
    };
    let pipeline = pipeline.replace(local, &format!("model llama = hf_model(\"{MODEL}\") {{\n    token = {token}"));
    let file = dir.join("p.tune").display().to_string();
    std::fs::write(&file, &pipeline).expect("write");

    let configure = |command: &mut Command| {
        moto::test_credentials(command);
        command
            .env("AWS_ENDPOINT_URL_S3", &moto)
            .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto)
            .env("AWS_ENDPOINT_URL_SAGEMAKER", &sagemaker)
            .env("TUNEC_SAGEMAKER_POLL_SECONDS", "0.05")
            .env("TUNEC_SAGEMAKER_ROLE", "arn:aws:iam::123456789012:role/tunec-test")
            .env("TUNEC_BUCKET", format!("s3://{bucket}/team"))
            .env("TUNEC_HF_TOKEN_SECRET", &arn)
            .env("HF_ENDPOINT", &hub)
            .env("HF_HOME", dir.join("hf-home"))
            .env_remove("HF_TOKEN_PATH")
            .env_remove("HF_HUB_OFFLINE");
        match from {
            TokenFrom::SecretsManager => command.env_remove("HF_TOKEN"),
            TokenFrom::Environment => command.env("HF_TOKEN", SECRET_VALUE),
        };
    };
    let tunec = |args: &[&str]| support::tunec_with(args, configure);
    let scan = |what: &str, printed: &str| {
        assert!(!printed.contains(SECRET_VALUE), "{what}: printed:\n{printed}");
        for path in support::files_under(&dir.join(".tunec")) {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!String::from_utf8_lossy(&bytes).contains(SECRET_VALUE), "{what}: {}", path.display());
        }
        for log in [&calls, &hub_log, &dir.join("sagemaker.log"), &dir.join("hub.log")] {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(!text.contains(SECRET_VALUE), "{what}: {}", log.display());
        }
        assert_eq!(marker_on_servers(&moto, &bucket, &recording), "", "{what}: on moto");
    };

    // A failed run: the data step read the secret for the gated tokenizer, the sft job failed.
    let failed = tunec(&["run", &file, "--progress", "plain"]);
    assert_eq!(failed.code, 1, "{}{}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains(&format!("llama: hf://{MODEL}: downloaded 4 files")), "{}", failed.stdout);
    let hub_requests = std::fs::read_to_string(&hub_log).expect("the Hub's log");
    assert!(hub_requests.lines().any(|l| l.contains("\"token\": true")), "{hub_requests}");
    // moto recorded tunec's read of the secret (the recording is what the scan below searches);
    // with a token from the environment, tunec read none, and `check` warned where it goes.
    let recorded = std::fs::read_to_string(&recording).expect("moto's recording");
    assert_eq!(
        recorded.contains("secretsmanager.GetSecretValue"),
        from == TokenFrom::SecretsManager,
        "moto's recording of GetSecretValue"
    );
    if from == TokenFrom::Environment {
        let check = tunec(&["check", &file]);
        assert!(check.stdout.contains("token_in_job") || check.stderr.contains("token_in_job"), "{}", check.stdout);
    }
    scan("a failed run", &format!("{}{}", failed.stdout, failed.stderr));

    // An interrupted run: Ctrl-C while the second sft attempt runs.
    let created = || -> Vec<String> {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|c| c["operation"] == "CreateTrainingJob" && c["outcome"] == "ok")
            .filter_map(|c| c["job"].as_str().map(str::to_owned))
            .collect()
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_tunec"));
    command.args(["run", &file, "--progress", "plain"]).current_dir(root()).env("NO_COLOR", "1");
    configure(&mut command);
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !created().iter().any(|n| n.starts_with("p-sft-") && n.ends_with("-a2")) {
        assert!(Instant::now() < deadline, "no second sft attempt was created");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(130));
    scan(
        "an interrupted run",
        &format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    );

    // A completed run; then every command that prints the pipeline.
    let done = tunec(&["run", &file, "--progress", "plain"]);
    assert_eq!(done.code, 0, "{}{}", done.stdout, done.stderr);
    scan("a completed run", &format!("{}{}", done.stdout, done.stderr));
    let mut printed = String::new();
    for args in [
        vec!["check", &file, "--format", "json"],
        vec!["plan", &file],
        vec!["plan", &file, "--format", "json"],
        vec!["graph", &file],
        vec!["graph", &file, "--format", "mermaid"],
        vec!["status", &file],
        vec!["status", &file, "--format", "json"],
        vec!["iam-policy", &file],
    ] {
        let run = tunec(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        printed.push_str(&run.stdout);
        printed.push_str(&run.stderr);
    }
    scan("the commands that print the pipeline", &printed);

    // Each job received the secret's ARN, and no token; the policies grant exactly that read. With a
    // token from the environment, each job received the value, which is what the warning is about.
    let jobs: Value = serde_json::from_str(&py(
        "import urllib.request\nprint(urllib.request.urlopen(sys.argv[2] + '/_control/jobs').read().decode())",
        &[&moto, &sagemaker],
    ))
    .expect("jobs JSON");
    let jobs = jobs.as_array().or_else(|| jobs["jobs"].as_array()).expect("jobs").clone();
    assert!(jobs.len() >= 4, "{jobs:?}");
    for job in &jobs {
        let environment = &job["request"]["Environment"];
        if from == TokenFrom::Environment {
            assert_eq!(environment["HF_TOKEN"], SECRET_VALUE, "{environment}");
            assert!(environment.get("TUNEC_HF_TOKEN_SECRET").is_none(), "{environment}");
            continue;
        }
        assert_eq!(environment["TUNEC_HF_TOKEN_SECRET"], arn.as_str(), "{environment}");
        assert!(environment.get("HF_TOKEN").is_none(), "{environment}");
    }
    if from == TokenFrom::Environment {
        drop(servers);
        drop(moto_server);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let policies = tunec(&["iam-policy", &file]);
    let policies: Value = serde_json::from_str(&policies.stdout).expect("policies JSON");
    for who in ["execution_role", "caller"] {
        let reads: Vec<&Value> = policies[who]["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .filter(|s| s["Action"].as_array().is_some_and(|a| a.iter().any(|x| x == "secretsmanager:GetSecretValue")))
            .collect();
        assert_eq!(reads.len(), 1, "{who}: {reads:?}");
        assert_eq!(reads[0]["Action"], serde_json::json!(["secretsmanager:GetSecretValue"]), "{who}");
        assert_eq!(reads[0]["Resource"], serde_json::json!([arn]), "{who}");
    }
    drop(servers);
    drop(moto_server);
    let _ = std::fs::remove_dir_all(&dir);
}
