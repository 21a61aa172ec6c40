//! `tunec run` with Hugging Face Hub sources (`runtime/src/run/hub.rs`), against the Hub API of
//! `tests/hub/fake_hub.py` (one per test, `HF_ENDPOINT`), which serves a gated copy of
//! `meta-llama/Llama-3.1-8B-Instruct`'s tokenizer files (the real Llama 3.1 tokenizer from
//! `TUNEC_FIXTURES`) and a MedReason-shaped dataset's Parquet conversion in three shards (three
//! codecs, one shard with a column the pipeline does not declare).
//!
//! The same pipeline over `local_model` and a JSONL file of the same rows is the reference: the
//! Hub pipeline's split files must be byte-identical to it. Also covered: the token is sent and
//! never written; a rerun downloads nothing; an unreachable Hub or `HF_HUB_OFFLINE` falls back to
//! the copy with a line that says so; a changed shard is downloaded again and reruns the split; and
//! the errors for no copy offline, a gated model without a token, a dataset with no Parquet copy,
//! several subsets and an unknown split, each with its remedy; a 503 retried; a SageMaker
//! pipeline run `--until` its split without the target's settings; and a token kept in AWS Secrets
//! Manager (moto's), read with the AWS credentials through `AWS_ENDPOINT_URL_SECRETS_MANAGER` or
//! `--endpoint-url`, plain or as JSON, and a secret that cannot be read named with its remedy.

#[path = "support/fake_hub.rs"]
mod fake_hub;
#[path = "support/medreason.rs"]
#[allow(dead_code)]
mod medreason;
#[path = "support/moto.rs"]
#[allow(dead_code)] // the recording server is for other tests
mod moto;
#[path = "support/parquet.rs"]
mod parquet_file;
mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use fake_hub::FakeHub;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use serde_json::{json, Map, Value};
use support::{root, Run};

const TOKEN: &str = "hf_testtoken_5f1e0c9a";
const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";
const DATASET: &str = "tunec-tests/medreason";
const COLUMNS: [&str; 3] = ["question", "answer", "reasoning"];

/// The fake Hub of one test, its folder and its log; the server stops when this is dropped.
struct Hub {
    dir: PathBuf,
    server: FakeHub,
}

fn python() -> String {
    std::env::var("TUNEC_TEST_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// The good records of `tests/data/medreason.jsonl` (the ones with all three columns).
fn good_rows() -> Vec<Map<String, Value>> {
    let text = std::fs::read_to_string(root().join("tests/data/medreason.jsonl")).expect("fixture");
    text.lines()
        .filter_map(|line| serde_json::from_str::<Map<String, Value>>(line).ok())
        .filter(|row| COLUMNS.iter().all(|c| row.get(*c).is_some_and(Value::is_string)))
        .collect()
}

/// The dataset's Parquet conversion in `subset/train`: three shards with three codecs; the last
/// one also has a `source` column.
fn write_shards(dir: &Path, rows: &[Map<String, Value>]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut tagged: Vec<Map<String, Value>> = rows[20..].to_vec();
    for row in &mut tagged {
        row.insert("source".into(), json!("pubmed"));
    }
    parquet_file::write_parquet(&dir.join("0000.parquet"), &rows[..8], &COLUMNS, Compression::SNAPPY);
    parquet_file::write_parquet(
        &dir.join("0001.parquet"),
        &rows[8..20],
        &COLUMNS,
        Compression::ZSTD(ZstdLevel::default()),
    );
    parquet_file::write_parquet(
        &dir.join("0002.parquet"),
        &tagged,
        &["source", "question", "answer", "reasoning"],
        Compression::GZIP(GzipLevel::default()),
    );
}

impl Hub {
    /// Starts a fake Hub serving the gated model and the dataset (one subset, `default`).
    fn start(name: &str) -> Hub {
        let dir = std::env::temp_dir().join(format!("tunec-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The reference pipeline's inputs: model/ and the rows as JSONL.
        medreason::model_and_rows(&dir.join("local"));
        let rows = good_rows();
        let jsonl: Vec<String> = rows.iter().map(|r| serde_json::to_string(r).expect("JSON")).collect();
        std::fs::write(dir.join("local/rows.jsonl"), jsonl.join("\n") + "\n").expect("write");
        // The Hub's side.
        let model = dir.join("hub/models").join(MODEL);
        std::fs::create_dir_all(model.join("main")).expect("mkdir");
        for file in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"] {
            std::fs::copy(dir.join("local/model").join(file), model.join("main").join(file)).expect("copy");
        }
        std::fs::write(model.join(".token"), TOKEN).expect("write");
        let parquet = dir.join("hub/datasets").join(DATASET).join("refs%2Fconvert%2Fparquet");
        write_shards(&parquet.join("default/train"), &rows);

        let server = FakeHub::start(&python(), &dir.join("hub"), &dir.join("requests.jsonl"));
        Hub { dir, server }
    }

    /// A pipeline folder `name` with the Hub pipeline (`dataset` is the dataset node's call).
    fn pipeline(&self, name: &str, dataset: &str) -> PathBuf {
        let folder = self.dir.join(name);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let model = format!("hf_model(\"{MODEL}\") {{\n    token = env(\"HF_TOKEN\")\n    pad_token = \"<|finetune_right_pad_id|>\"\n  }}");
        std::fs::write(folder.join("p.tune"), pipeline_text(&model, dataset)).expect("write");
        folder
    }

    /// The requests the fake Hub has answered, in order.
    fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("requests.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("log line")).collect()
    }

    /// `tunec run p.tune --until parts` in `folder`, with the Hub's endpoint and token unless
    /// `configure` changes them. No token file is found: HF_HOME is the test's folder.
    fn run(&self, folder: &Path, configure: impl FnOnce(&mut Command)) -> Run {
        support::tunec_with(&["run", "p.tune", "--until", "parts", "--progress", "plain"], |command| {
            command
                .current_dir(folder)
                .env("HF_ENDPOINT", &self.server.endpoint)
                .env("HF_TOKEN", TOKEN)
                .env("HF_HOME", self.dir.join("hf-home"))
                .env_remove("HF_HUB_OFFLINE")
                .env_remove("HF_TOKEN_PATH");
            configure(command);
        })
    }
}

fn pipeline_text(model: &str, dataset: &str) -> String {
    pipeline_on("", model, dataset)
}

/// The pipeline with a target block (`target` is empty for the local target).
fn pipeline_on(target: &str, model: &str, dataset: &str) -> String {
    format!(
        r#"pipeline p {{
{target}
  model llama = {model}
  dataset raw = {dataset}
  chat convo = chat_template(raw, tokenizer = llama) {{
    system = "You are a deep-thinking AI assistant."
    user = "{{question}}"
    assistant = "<think>\n{{reasoning}}\n</think>\n\n{{answer}}"
    seq_len = 160
    overflow = drop
    date_string = "26 Jul 2024"
  }}
  split parts = split(convo, train = 0.6, val = 0.2, test = 0.2)
}}
"#
    )
}

fn hub_dataset(extra: &str) -> String {
    format!("hf_dataset(\"{DATASET}\", split = \"train[10%:]\") {{\n    columns = {{ question: string, answer: string, reasoning: string }}\n{extra}  }}")
}

/// The split's three JSONL files, by name.
fn split_files(folder: &Path) -> Vec<(String, Vec<u8>)> {
    let parts = folder.join(".tunec/p/data/parts");
    let keys: Vec<PathBuf> =
        std::fs::read_dir(&parts).expect("split outputs").map(|e| e.expect("entry").path()).collect();
    let newest =
        keys.iter().max_by_key(|k| k.metadata().and_then(|m| m.modified()).expect("mtime")).expect("a key folder");
    ["train", "val", "test"]
        .iter()
        .map(|s| (s.to_string(), std::fs::read(newest.join(s).join(format!("{s}.jsonl"))).expect("split file")))
        .collect()
}

fn resolves(requests: &[Value]) -> usize {
    requests.iter().filter(|r| r["path"].as_str().is_some_and(|p| p.contains("/resolve/"))).count()
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

#[test]
fn hub_sources_read_like_local_files() {
    let hub = Hub::start("same");
    // The reference: local_model and the same rows as JSONL.
    let local = hub.dir.join("local");
    let model = "local_model(\"model\") {\n    pad_token = \"<|finetune_right_pad_id|>\"\n  }";
    let dataset = "file(\"rows.jsonl\", split = \"train[10%:]\") {\n    columns = { question: string, answer: string, reasoning: string }\n  }";
    std::fs::write(local.join("p.tune"), pipeline_text(model, dataset)).expect("write");
    let reference = hub.run(&local, |_| {});
    assert_eq!(reference.code, 0, "{}{}", reference.stdout, reference.stderr);

    let folder = hub.pipeline("hub-run", &hub_dataset(""));
    // The Hub's first answer is a 503, which is retried.
    std::fs::write(hub.dir.join("hub/.flaky"), "1").expect("write");
    let first = hub.run(&folder, |_| {});
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let requests = hub.requests();
    let failed = requests.iter().position(|r| r["answered"] == 503).expect("a 503 was answered");
    let path = &requests[failed]["path"];
    assert!(
        requests[failed + 1..].iter().any(|r| &r["path"] == path && r.get("answered").is_none()),
        "{path} was not retried"
    );
    assert!(first.stdout.contains("raw: downloading default/train/0001.parquet ("), "{}", first.stdout);
    assert!(first.stdout.contains("raw: hf://datasets/tunec-tests/medreason: downloaded 3 files"), "{}", first.stdout);
    assert!(
        first.stdout.contains("llama: hf://meta-llama/Llama-3.1-8B-Instruct: downloaded 4 files"),
        "{}",
        first.stdout
    );
    assert!(split_files(&folder) == split_files(&local), "the Hub pipeline's splits differ from the local one's");

    // The token went to the Hub for the gated model and was written nowhere.
    let downloads: Vec<&Value> = requests
        .iter()
        .filter(|r| r.get("method").is_some() && r["path"].as_str().is_some_and(|p| p.starts_with("/meta-llama")))
        .collect();
    assert_eq!(downloads.len(), 4, "{requests:?}");
    assert!(downloads.iter().all(|r| r["token"] == true), "{downloads:?}");
    assert!(
        !requests.iter().any(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/cdn/")) && r["token"] == true),
        "the token followed a redirect"
    );
    for file in support::files_under(&folder.join(".tunec")) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token is in {}", file.display());
    }
    assert!(!first.stdout.contains(TOKEN) && !first.stderr.contains(TOKEN));

    // The plan says that the sources will be looked at, and what depends on them may run.
    let plan = support::tunec_with(&["plan", "p.tune"], |c| {
        c.current_dir(&folder);
    });
    assert!(
        plan.stdout.contains("checked: its source hf://datasets/tunec-tests/medreason is looked at for changes"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("may run: its input `raw` runs again"), "{}", plan.stdout);

    // A rerun asks the Hub for its listings and downloads nothing.
    let before = resolves(&hub.requests());
    let again = hub.run(&folder, |_| {});
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains("raw: hf://datasets/tunec-tests/medreason unchanged since the last download"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("reuse parts"), "{}", again.stdout);
    assert_eq!(resolves(&hub.requests()), before, "a rerun downloaded files");

    // Offline, the copy is used and the run says why.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let unreachable = hub.run(&folder, |c| {
        c.env("HF_ENDPOINT", &dead);
    });
    assert_eq!(unreachable.code, 0, "{}{}", unreachable.stdout, unreachable.stderr);
    assert!(
        unreachable.stdout.contains(&format!("raw: hf://datasets/tunec-tests/medreason: cannot reach {dead}")),
        "{}",
        unreachable.stdout
    );
    assert!(unreachable.stdout.contains("using the copy downloaded earlier"), "{}", unreachable.stdout);
    assert!(unreachable.stdout.contains("reuse parts"), "{}", unreachable.stdout);
    let offline = hub.run(&folder, |c| {
        c.env("HF_HUB_OFFLINE", "1");
    });
    assert_eq!(offline.code, 0, "{}{}", offline.stdout, offline.stderr);
    assert!(offline.stdout.contains("HF_HUB_OFFLINE is set; using the copy downloaded earlier"), "{}", offline.stdout);

    // A local shard changed by hand is downloaded again; the split's inputs are then as before.
    let local_shard = folder.join(".tunec/p/sources/hf/datasets/tunec-tests/medreason/-/train/0002.parquet");
    std::fs::write(&local_shard, b"not parquet").expect("write");
    let repaired = hub.run(&folder, |_| {});
    assert_eq!(repaired.code, 0, "{}{}", repaired.stdout, repaired.stderr);
    assert!(
        repaired.stdout.contains(
            "run raw: its output `.tunec/p/sources/hf/datasets/tunec-tests/medreason/-/train/0002.parquet` changed"
        ),
        "{}",
        repaired.stdout
    );
    assert!(
        repaired.stdout.contains("raw: hf://datasets/tunec-tests/medreason: downloaded 1 file\n"),
        "{}",
        repaired.stdout
    );
    assert!(repaired.stdout.contains("reuse convo"), "{}", repaired.stdout);

    // A changed shard on the Hub: downloaded again (that one only), and the split runs again.
    let before = split_files(&folder);
    let mut rows = good_rows();
    // Row 6 is in the first shard and inside the slice (which leaves out the first 10%).
    rows[5].insert("answer".into(), json!("A different answer."));
    let shard = hub.dir.join("hub/datasets").join(DATASET).join("refs%2Fconvert%2Fparquet/default/train/0000.parquet");
    parquet_file::write_parquet(&shard, &rows[..8], &COLUMNS, Compression::SNAPPY);
    let changed = hub.run(&folder, |_| {});
    assert_eq!(changed.code, 0, "{}{}", changed.stdout, changed.stderr);
    assert!(
        changed.stdout.contains("raw: hf://datasets/tunec-tests/medreason: downloaded 1 file\n"),
        "{}",
        changed.stdout
    );
    assert!(changed.stdout.contains("run parts"), "{}", changed.stdout);
    assert!(split_files(&folder) != before, "the split's files did not change");
}

#[test]
fn hub_errors_name_the_remedy() {
    let hub = Hub::start("errors");
    let combined = |run: &Run| format!("{}{}", run.stdout, run.stderr);

    // No copy, and the Hub out of reach.
    let folder = hub.pipeline("unreachable", &hub_dataset(""));
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let run = hub.run(&folder, |c| {
        c.env("HF_ENDPOINT", &dead);
    });
    assert_ne!(run.code, 0);
    let text = combined(&run);
    assert!(text.contains(&format!("cannot reach the Hugging Face Hub at {dead}")), "{text}");
    assert!(text.contains("HTTPS_PROXY") && text.contains("HF_ENDPOINT"), "{text}");
    let run = hub.run(&folder, |c| {
        c.env("HF_HUB_OFFLINE", "1");
    });
    assert_ne!(run.code, 0);
    assert!(
        combined(&run).contains("HF_HUB_OFFLINE is set and there is no complete copy from an earlier run"),
        "{}",
        combined(&run)
    );

    // The gated model without a token: HF_TOKEN unset, no token file.
    let run = hub.run(&folder, |c| {
        c.env_remove("HF_TOKEN");
    });
    assert_ne!(run.code, 0);
    let text = combined(&run);
    assert!(text.contains("the environment variable HF_TOKEN (the node's `token`) is not set; set it"), "{text}");
    let no_token = hub.dir.join("no-token");
    std::fs::create_dir_all(&no_token).expect("mkdir");
    let model = format!("hf_model(\"{MODEL}\") {{\n    pad_token = \"<|finetune_right_pad_id|>\"\n  }}");
    std::fs::write(no_token.join("p.tune"), pipeline_text(&model, &hub_dataset(""))).expect("write");
    let run = hub.run(&no_token, |c| {
        c.env_remove("HF_TOKEN");
    });
    assert_ne!(run.code, 0);
    let text = combined(&run);
    assert!(
        text.contains(&format!("the repository is gated; accept its conditions at {}/{MODEL}", hub.server.endpoint)),
        "{text}"
    );
    assert!(text.contains("no token was sent: set HF_TOKEN"), "{text}");

    // A dataset that the Hub has not converted to Parquet.
    std::fs::create_dir_all(hub.dir.join("hub/datasets/tunec-tests/raw-only/main")).expect("mkdir");
    std::fs::write(hub.dir.join("hub/datasets/tunec-tests/raw-only/main/data.jsonl"), "{}\n").expect("write");
    let dataset = "hf_dataset(\"tunec-tests/raw-only\") {\n    columns = { question: string, answer: string, reasoning: string }\n  }";
    let run = hub.run(&hub.pipeline("raw-only", dataset), |_| {});
    let text = combined(&run);
    assert!(
        text.contains("hf_dataset(\"tunec-tests/raw-only\") has no Parquet copy on the Hub (refs/convert/parquet)"),
        "{text}"
    );
    assert!(text.contains("download its files and use `file(...)`"), "{text}");

    // Two subsets and none chosen; then an unknown split.
    let parquet = hub.dir.join("hub/datasets").join(DATASET).join("refs%2Fconvert%2Fparquet");
    write_shards(&parquet.join("pqa/train"), &good_rows());
    let run = hub.run(&hub.pipeline("subsets", &hub_dataset("")), |_| {});
    let text = combined(&run);
    assert!(text.contains("has several subsets (it has: default, pqa); choose one with `subset = \"...\"`"), "{text}");
    let dataset = format!(
        "hf_dataset(\"{DATASET}\", split = \"validation\") {{\n    subset = \"pqa\"\n    columns = {{ question: string, answer: string, reasoning: string }}\n  }}"
    );
    let run = hub.run(&hub.pipeline("split", &dataset), |_| {});
    let text = combined(&run);
    assert!(text.contains("(subset `pqa`) has no split `validation` (it has: train); check `split`"), "{text}");
}

/// A SageMaker pipeline run `--until` its split creates no job, so it needs neither the target's
/// role nor its bucket: its data nodes run here, Hub sources included.
#[test]
fn the_data_step_of_a_sagemaker_pipeline_needs_no_target_settings() {
    let hub = Hub::start("sagemaker");
    let folder = hub.dir.join("sagemaker");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let target = "  target sagemaker {\n    region = \"us-east-1\"\n    role = env(\"TUNEC_SAGEMAKER_ROLE\")\n    bucket = env(\"TUNEC_BUCKET\")\n  }";
    let model = format!(
        "hf_model(\"{MODEL}\") {{\n    token = env(\"HF_TOKEN\")\n    pad_token = \"<|finetune_right_pad_id|>\"\n  }}"
    );
    std::fs::write(folder.join("p.tune"), pipeline_on(target, &model, &hub_dataset(""))).expect("write");
    let run = hub.run(&folder, |c| {
        c.env_remove("TUNEC_SAGEMAKER_ROLE").env_remove("TUNEC_BUCKET");
    });
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("run parts: no previous run"), "{}", run.stdout);
}

/// `token = secret("ARN")` on the local target: `tunec run` reads the token from Secrets Manager
/// (moto) with the AWS credential chain, and the gated downloads succeed only with it; the value is
/// sent to the Hub and written nowhere.
#[test]
fn a_token_kept_in_secrets_manager_is_read_with_the_aws_credentials() {
    let hub = Hub::start("secret");
    let moto = moto::Moto::shared(&python());
    let name = format!("tunec-hub-token-{}", std::process::id());
    let plain = moto.create_secret(&python(), &name, TOKEN);
    let json = moto.create_secret(&python(), &format!("{name}-json"), &json!({ "HF_TOKEN": TOKEN }).to_string());
    let folder = hub.dir.join("secret");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let write = |arn: &str| {
        let model = format!(
            "hf_model(\"{MODEL}\") {{\n    token = secret(\"{arn}\")\n    pad_token = \"<|finetune_right_pad_id|>\"\n  }}"
        );
        std::fs::write(folder.join("p.tune"), pipeline_text(&model, &hub_dataset(""))).expect("write");
    };
    let aws = |c: &mut Command| {
        moto::test_credentials(c);
        c.env_remove("HF_TOKEN").env_remove("AWS_REGION");
    };
    let gated = |requests: &[Value]| -> Vec<Value> {
        requests
            .iter()
            .filter(|r| r.get("method").is_some() && r["path"].as_str().is_some_and(|p| p.contains("/meta-llama/")))
            .cloned()
            .collect()
    };

    // The plain secret, with the SDK's per-service endpoint variable.
    write(&plain);
    let first = hub.run(&folder, |c| {
        aws(c);
        c.env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto.url);
    });
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("llama: hf://meta-llama/Llama-3.1-8B-Instruct: downloaded 4 files"),
        "{}",
        first.stdout
    );
    let seen = gated(&hub.requests());
    assert!(!seen.is_empty() && seen.iter().all(|r| r["token"] == true), "{seen:?}");
    for file in support::files_under(&folder.join(".tunec")) {
        let bytes = std::fs::read(&file).expect("read");
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token is in {}", file.display());
    }
    assert!(!first.stdout.contains(TOKEN) && !first.stderr.contains(TOKEN));

    // The JSON form, through --endpoint-url: the rerun asks the gated listing again with it.
    write(&json);
    let before = gated(&hub.requests()).len();
    let second = hub.run(&folder, |c| {
        aws(c);
        c.env_remove("AWS_ENDPOINT_URL_SECRETS_MANAGER").args(["--endpoint-url", &moto.url]);
    });
    assert_eq!(second.code, 0, "{}{}", second.stdout, second.stderr);
    let seen = gated(&hub.requests());
    assert!(seen.len() > before && seen[before..].iter().all(|r| r["token"] == true), "{seen:?}");

    // A secret that does not exist: the error names it and what to check, before any download.
    let missing = plain.replace(&name, &format!("{name}-missing"));
    write(&missing);
    let failed = hub.run(&folder, |c| {
        aws(c);
        c.env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto.url);
    });
    assert_eq!(failed.code, 1, "{}{}", failed.stdout, failed.stderr);
    let text = format!("{}{}", failed.stdout, failed.stderr);
    assert!(
        text.contains(&format!(
            "cannot read the Hub token from Secrets Manager ({missing}): ResourceNotFoundException"
        )),
        "{text}"
    );
    assert!(text.contains("check the ARN and the region in it"), "{text}");
}
