//! The `tunec` binary, driven as a user drives it: arguments in; stdout, stderr and the exit code
//! out. Exit codes are part of the interface (0 clean or warnings only, 1 errors, 2 usage or IO).

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::{root, tunec_with, Run};

fn tunec(args: &[&str]) -> Run {
    tunec_with(args, |_| {})
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("stdout is one JSON document ({e}):\n{}", run.stdout))
}

#[test]
fn check_medreason_is_clean_and_lists_the_graph() {
    let run = tunec(&["check", "examples/medreason/medreason.tune"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("no problems found"), "{}", run.stderr);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn check_reports_errors_with_exit_code_1() {
    let run = tunec(&["check", "tests/cases/fsdp_qlora_storage.tune"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("tunec::check::fsdp_qlora_storage"), "{}", run.stderr);
    assert!(run.stderr.contains("help: set `storage = bf16`"), "{}", run.stderr);
    assert!(run.stderr.trim_end().ends_with("1 error"), "{}", run.stderr);
}

#[test]
fn warnings_alone_exit_0() {
    let run = tunec(&["check", "tests/cases/fsdp_single_gpu.tune"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn json_output_has_the_documented_shape() {
    let run = tunec(&["check", "--format", "json", "tests/cases/template_placeholder.tune"]);
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["pipeline"], "p");
    assert_eq!(doc["summary"]["errors"], 1);
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "tunec::check::template_placeholder");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["file"], "tests/cases/template_placeholder.tune");
    assert_eq!(d["span"]["line"], 8);
    assert_eq!(d["span"]["column"], 28);
    let text = std::fs::read_to_string(root().join("tests/cases/template_placeholder.tune")).expect("fixture");
    let (start, end) =
        (d["span"]["start"].as_u64().expect("start") as usize, d["span"]["end"].as_u64().expect("end") as usize);
    assert_eq!(&text[start..end], "{questoin}");
    assert!(d["help"].as_str().expect("help").contains("did you mean `{question}`"));
    assert_eq!(d["labels"][0]["primary"], true);
    assert_eq!(d["labels"][1]["message"], "columns declared here");
    assert_eq!(d["docs"], "docs/errors/template_placeholder.md");
    let nodes = doc["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 7);
    assert_eq!(nodes[0]["name"], "llama");
    assert_eq!(nodes[0]["kind"], "model");
    let split = nodes.iter().find(|n| n["name"] == "parts").expect("the split node");
    assert_eq!(split["type"], "Splits<train, test>");
    assert_eq!(split["inputs"], serde_json::json!(["convo"]));
}

#[test]
fn json_output_for_a_clean_file() {
    let run = tunec(&["check", "--format", "json", "examples/medreason/medreason.tune"]);
    assert_eq!(run.code, 0);
    let doc = json(&run);
    assert_eq!(doc["diagnostics"], serde_json::json!([]));
    assert_eq!(doc["target"], "sagemaker");
    let kinds: Vec<&str> =
        doc["nodes"].as_array().expect("nodes").iter().map(|n| n["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["model", "dataset", "chat", "split", "train", "merge", "evaluate"]);
}

#[test]
fn syntax_errors_are_json_too() {
    let run = tunec(&["check", "--format", "json", "tests/cases/syntax.tune"]);
    assert_eq!(run.code, 1);
    let doc = json(&run);
    assert_eq!(doc["diagnostics"][0]["code"], "tunec::parse::syntax");
    assert_eq!(doc["nodes"], serde_json::json!([]));
}

#[test]
fn set_overrides_a_param_and_rejects_unknown_ones() {
    let ok = tunec(&["check", "tests/cases/param_override.tune", "--set", "lr=3e-4"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let unknown = tunec(&["check", "tests/cases/param_override.tune", "--set", "learning_rate=3e-4"]);
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("no parameter `learning_rate` to set"), "{}", unknown.stderr);
    let malformed = tunec(&["check", "tests/cases/param_override.tune", "--set", "lr"]);
    assert_eq!(malformed.code, 2);
    assert!(malformed.stderr.contains("is not NAME=VALUE"), "{}", malformed.stderr);
}

#[test]
fn missing_file_is_an_io_error() {
    let run = tunec(&["check", "no/such/file.tune"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("cannot read `no/such/file.tune`"), "{}", run.stderr);
}

#[test]
fn explain_prints_the_page_and_lists_codes() {
    let run = tunec(&["explain", "tunec::check::fsdp_qlora_storage"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("# `tunec::check::fsdp_qlora_storage`"), "{}", run.stdout);
    let short = tunec(&["explain", "fsdp_qlora_storage"]);
    assert_eq!(short.stdout, run.stdout);
    let list = tunec(&["explain"]);
    assert_eq!(list.code, 0);
    assert_eq!(list.stdout.lines().count(), tunec_compiler::diagnostics::Code::ALL.len());
    let unknown = tunec(&["explain", "nope"]);
    assert_eq!(unknown.code, 2);
    assert_eq!(unknown.stderr, "tunec: no diagnostic code `nope` (`tunec explain` lists them all)\n");
    // A typo, a full code with a typo, and a part of a name.
    let typo = tunec(&["explain", "fsdp_qlora_storag"]);
    assert_eq!(typo.code, 2);
    assert!(
        typo.stderr.contains("no diagnostic code `fsdp_qlora_storag`; did you mean `fsdp_qlora_storage`?"),
        "{}",
        typo.stderr
    );
    let full = tunec(&["explain", "tunec::check::split_leakge"]);
    assert!(full.stderr.contains("did you mean `split_leakage`?"), "{}", full.stderr);
    let part = tunec(&["explain", "leakage"]);
    assert!(part.stderr.contains("did you mean `split_leakage`?"), "{}", part.stderr);
}

#[test]
fn the_repositorys_own_pipelines_are_formatted() {
    // As a user's CI runs it: the examples and the fixtures, every file in its canonical layout.
    // The fixtures of parse errors cannot be formatted; they are the only files reported.
    let run = tunec(&["fmt", "--check", "examples", "tests/cases"]);
    assert_eq!(run.stdout, "", "would change (run `tunec fmt examples tests/cases`)");
    let unparsed: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("tunec fmt: ")).collect();
    for line in &unparsed {
        let file = line.trim_start_matches("tunec fmt: `").split('`').next().unwrap_or_default();
        let text = std::fs::read_to_string(root().join(file)).expect("fixture");
        let expect = text.lines().find(|l| l.starts_with("// expect:")).unwrap_or_default();
        assert!(
            ["syntax", "bad_literal"].iter().any(|code| expect.contains(code)),
            "{file} does not parse, and its fixture expects no parse error: {expect}"
        );
    }
    assert_eq!(unparsed.len(), 3, "{}", run.stderr);
    assert_eq!(run.code, 1, "the fixtures of parse errors");
    assert_eq!(tunec(&["fmt", "--check", "examples"]).code, 0);
}

#[test]
fn error_pages_cite_only_what_a_reader_can_open() {
    // Every page as `tunec explain` prints it: a Markdown file it names (outside a URL) must be in
    // the repository, so that a citation is a public source (a URL, a paper, a repository and a
    // path) or a page of these docs, never a note that users do not have.
    let mut docs: Vec<String> = Vec::new();
    for dir in ["docs", "docs/errors"] {
        for entry in std::fs::read_dir(root().join(dir)).expect("docs").flatten() {
            docs.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    for code in tunec_compiler::diagnostics::Code::ALL {
        let page = tunec(&["explain", code.name()]);
        assert_eq!(page.code, 0, "{}", page.stderr);
        let words = page.stdout.split(|c: char| c.is_whitespace() || "()[],;`".contains(c));
        for word in words.filter(|w| !w.contains("://") && !w.starts_with("../") && w.contains(".md")) {
            let name = word.trim_end_matches(['.', ':']).split('#').next().unwrap_or_default();
            let name = name.rsplit('/').next().unwrap_or_default();
            if name.ends_with(".md") {
                assert!(docs.iter().any(|d| d == name), "{}: `{word}` is not in the repository", code.name());
            }
        }
        for link in page.stdout.match_indices("](../").map(|(at, _)| &page.stdout[at + 2..]) {
            let target = &link[..link.find(')').expect("a closed link")];
            let path = target.split('#').next().unwrap_or_default();
            assert!(root().join("docs/errors").join(path).exists(), "{}: link `{target}`", code.name());
        }
    }
}

/// A scratch folder holding `files` (name, text), removed first if it exists.
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tunec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("folder")).expect("folder");
        std::fs::write(path, text).expect("write");
    }
    dir
}

const MESSY: &str = "pipeline p {   budget=$1 // money\n model m = hf_model(\"Qwen/Qwen2.5-0.5B-Instruct\") }";
const TIDY: &str = "pipeline p {\n  budget = $1 // money\n  model m = hf_model(\"Qwen/Qwen2.5-0.5B-Instruct\")\n}\n";

#[test]
fn fmt_rewrites_files_in_place_and_check_lists_what_would_change() {
    let dir =
        scratch("fmt", &[("a.tune", MESSY), ("sub/b.tune", TIDY), (".hidden/c.tune", MESSY), ("notes.txt", MESSY)]);
    let arg = dir.display().to_string();
    let check = tunec(&["fmt", "--check", &arg]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert_eq!(check.stdout.trim(), dir.join("a.tune").display().to_string(), "only a.tune would change");
    assert_eq!(std::fs::read_to_string(dir.join("a.tune")).expect("a"), MESSY, "--check writes nothing");

    let write = tunec(&["fmt", &arg]);
    assert_eq!(write.code, 0, "{}", write.stderr);
    assert!(write.stdout.is_empty(), "{}", write.stdout);
    assert_eq!(std::fs::read_to_string(dir.join("a.tune")).expect("a"), TIDY);
    assert_eq!(std::fs::read_to_string(dir.join(".hidden/c.tune")).expect("c"), MESSY, "hidden folders are skipped");
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).expect("notes"), MESSY, "only .tune files");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "the temporary file is renamed away");

    let again = tunec(&["fmt", "--check", &arg]);
    assert_eq!(again.code, 0, "formatted files pass --check: {}", again.stdout);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fmt_leaves_a_file_that_does_not_parse_untouched() {
    let broken = "pipeline p { model m hf_model(\"x\") }\n";
    let dir = scratch("fmt-broken", &[("broken.tune", broken), ("ok.tune", MESSY)]);
    let run =
        tunec(&["fmt", &dir.join("broken.tune").display().to_string(), &dir.join("ok.tune").display().to_string()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("tunec::parse::syntax"), "{}", run.stderr);
    assert!(run.stderr.contains("does not parse; left as it is"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(dir.join("broken.tune")).expect("broken"), broken);
    assert_eq!(std::fs::read_to_string(dir.join("ok.tune")).expect("ok"), TIDY, "the other files are still formatted");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn fmt_dash_formats_standard_input_to_standard_output() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunec"))
        .args(["fmt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tunec starts");
    child.stdin.take().expect("stdin").write_all(MESSY.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("tunec ends");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), TIDY);
}

#[test]
fn fmt_without_files_and_on_missing_files_is_a_usage_error() {
    let none = tunec(&["fmt"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("`-` for standard input"), "{}", none.stderr);
    let missing = tunec(&["fmt", "no/such/file.tune"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read"), "{}", missing.stderr);
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tunec(&["check"]).code, 2);
    assert_eq!(tunec(&["frobnicate"]).code, 2);
    assert_eq!(tunec(&["--version"]).code, 0);
}

#[test]
fn local_models_resolve_relative_to_the_pipeline() {
    let run = tunec(&["check", "tests/cases/local_model_ok.tune"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let file = root().join("tests/cases/local_model_ok.tune").display().to_string();
    let elsewhere = tunec_with(&["check", &file], |c| {
        c.current_dir(std::env::temp_dir());
    });
    assert_eq!(elsewhere.code, 0, "{}", elsewhere.stderr);
}

#[test]
fn plan_lists_every_node_with_key_execution_and_estimate() {
    let run = tunec(&["plan", "examples/medreason/medreason.tune"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("plan for `medreason` (target sagemaker"), "{}", run.stdout);
    for (kind, name) in [
        ("model", "llama"),
        ("dataset", "raw"),
        ("chat", "convo"),
        ("split", "parts"),
        ("train", "sft"),
        ("merge", "merged"),
        ("evaluate", "report"),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(kind) && l.contains(name) && l.contains("key ")),
            "{kind} {name}:\n{}",
            run.stdout
        );
    }
    assert!(run.stdout.contains("SageMaker training job medreason-sft-"), "{}", run.stdout);
    assert!(run.stdout.contains("GPU: "), "estimate terms are shown");
    assert!(
        run.stdout.contains("reads at run time: TUNEC_BUCKET, TUNEC_HF_TOKEN_SECRET, TUNEC_SAGEMAKER_ROLE"),
        "{}",
        run.stdout
    );
    let doc = json(&tunec(&["plan", "--format", "json", "examples/medreason/medreason.tune"]));
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(7));
    assert_eq!(doc["nodes"][4]["execution"], "SageMaker training job");
    assert!(doc["nodes"][4]["estimate"]["gpu_peak_bytes"].as_u64().is_some());
}

#[test]
fn plan_refuses_a_pipeline_with_errors() {
    let run = tunec(&["plan", "tests/cases/fsdp_qlora_storage.tune"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("fsdp_qlora_storage"), "{}", run.stderr);
}

#[test]
fn build_writes_requests_args_bundle_manifest_and_pipeline() {
    let out = std::env::temp_dir().join(format!("tunec-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let out_str = out.display().to_string();
    let run = tunec(&["build", "examples/medreason/medreason.tune", "-o", &out_str, "--emit", "sagemaker-pipeline"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let manifest: serde_json::Value = serde_json::from_str(&read("manifest.json")).expect("manifest is JSON");
    assert_eq!(manifest["pipeline"], "medreason");
    // The pipeline's file, relative to the build folder, so that both can move together.
    let pipeline_file = out.join(manifest["pipeline_file"].as_str().expect("pipeline_file"));
    assert!(manifest["pipeline_file"].as_str().is_some_and(|p| p.starts_with("..")), "{manifest}");
    assert_eq!(
        pipeline_file.canonicalize().expect("it names the file"),
        root().join("examples/medreason/medreason.tune").canonicalize().expect("the example")
    );
    let request: serde_json::Value = serde_json::from_str(&read("sft/request.json")).expect("request is JSON");
    assert_eq!(request["ResourceConfig"]["InstanceType"], "ml.p4d.24xlarge");
    assert_eq!(request["RoleArn"], "${env:TUNEC_SAGEMAKER_ROLE}");
    assert!(read("sft/args.yaml").contains("bnb_4bit_quant_storage: \"bfloat16\""));
    for job in ["merged", "report"] {
        assert!(out.join(job).join("request.json").exists(), "{job}");
    }
    for file in ["launch.sh", "requirements.txt"] {
        assert!(out.join("code").join(file).exists(), "the bundle has {file}");
    }
    let pipeline: serde_json::Value = serde_json::from_str(&read("pipeline.json")).expect("pipeline is JSON");
    assert_eq!(pipeline["Version"], "2020-12-01");
    let graph: serde_json::Value = serde_json::from_str(&read("job_graph.json")).expect("graph is JSON");
    assert_eq!(graph["version"], tunec_compiler::lower::SCHEMA_VERSION);
    assert_eq!(graph["target"], "sagemaker");
    assert_eq!(graph["target_config"]["role"], serde_json::json!({"env": "TUNEC_SAGEMAKER_ROLE"}));
    let sft = graph["nodes"].as_array().and_then(|n| n.iter().find(|n| n["name"] == "sft")).expect("sft");
    let channels: Vec<(&str, &str)> = sft["execution"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or_default(), c["from"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(channels, [("base_model", "hub"), ("train", "data"), ("val", "data")]);
    std::fs::remove_dir_all(&out).expect("clean up");
    let local = tunec(&["build", "tests/cases/clean.tune", "-o", &out_str, "--emit", "sagemaker-pipeline"]);
    assert_eq!(local.code, 2, "a Pipelines definition needs the SageMaker target");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn build_does_not_inline_environment_values() {
    let out = std::env::temp_dir().join(format!("tunec-build-env-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let build = tunec_with(&["build", "examples/medreason/medreason.tune", "-o", &out.display().to_string()], |c| {
        c.env("HF_TOKEN", "hf_secret_value_that_must_not_leak")
            .env("TUNEC_SAGEMAKER_ROLE", "arn:aws:iam::111122223333:role/secret-role");
    });
    assert_eq!(build.code, 0, "{}", build.stderr);
    for entry in support::files_under(&out) {
        let text = std::fs::read(&entry).expect("readable");
        let text = String::from_utf8_lossy(&text);
        assert!(!text.contains("hf_secret_value_that_must_not_leak"), "{}", entry.display());
        assert!(!text.contains("secret-role"), "{}", entry.display());
    }
    std::fs::remove_dir_all(&out).expect("clean up");
}

#[test]
fn graph_draws_dot_and_mermaid() {
    let dot = tunec(&["graph", "examples/medreason/medreason.tune"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph \"medreason\""));
    assert!(dot.stdout.contains("\"parts\" -> \"sft\";"));
    let mermaid = tunec(&["graph", "--format", "mermaid", "examples/medreason/medreason.tune"]);
    assert!(mermaid.stdout.starts_with("flowchart LR"));
    assert!(mermaid.stdout.contains("sft --> merged"));
}

#[test]
fn iam_policies_name_exact_prefixes() {
    let run = tunec_with(&["iam-policy", "examples/medreason/medreason.tune"], |c| {
        c.env("TUNEC_BUCKET", "s3://acme-ml/tuning")
            .env("TUNEC_SAGEMAKER_ROLE", "arn:aws:iam::111122223333:role/tunec-exec");
    });
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = json(&run);
    let text = doc.to_string();
    assert!(text.contains("arn:aws:s3:::acme-ml/tuning/medreason/data/*"), "{text}");
    assert!(text.contains("arn:aws:sagemaker:us-east-1:*:training-job/medreason-*"), "{text}");
    assert!(text.contains("arn:aws:ecr:us-east-1:763104351884:repository/huggingface-pytorch-training"), "{text}");
    assert!(!text.contains("\"s3:*\"") && !text.contains("\"sagemaker:*\""), "no wildcard actions");
    let pass = doc["caller"]["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Sid"] == "PassExecutionRole")
        .expect("PassRole");
    assert_eq!(pass["Resource"][0], "arn:aws:iam::111122223333:role/tunec-exec");
    assert_eq!(pass["Condition"]["StringEquals"]["iam:PassedToService"], "sagemaker.amazonaws.com");
}

#[test]
fn a_data_profile_replaces_declared_sizes() {
    let dir = std::env::temp_dir().join(format!("tunec-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".tunec/medreason/profiles")).expect("mkdir");
    std::fs::copy(root().join("examples/medreason/medreason.tune"), dir.join("medreason.tune")).expect("copy");
    let file = dir.join("medreason.tune").display().to_string();
    let before = json(&tunec(&["check", "--format", "json", &file]));
    let sft = |doc: &serde_json::Value| {
        doc["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == "sft").expect("sft")["estimate"].clone()
    };
    assert_eq!(sft(&before)["token_source"], "declared rows x default length (seq_len / 4)");
    std::fs::write(
        dir.join(".tunec/medreason/profiles/convo.json"),
        r#"{"rows": 9000, "mean_tokens": 700.0, "max_tokens": 3900}"#,
    )
    .expect("write");
    let after = json(&tunec(&["check", "--format", "json", &file]));
    assert_eq!(sft(&after)["token_source"], "data profile");
    // 9000 rows x 0.9 (train) x 2 epochs x 700 tokens.
    assert_eq!(sft(&after)["tokens"], 11_340_000);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

fn launch(script: &str, hosts: &[&str], current: &str, instance: &str) -> String {
    let dir = std::env::temp_dir().join(format!("tunec-launch-{}-{current}-{}", std::process::id(), hosts.len()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let rc = dir.join("resourceconfig.json");
    let config = serde_json::json!({"current_host": current, "hosts": hosts, "network_interface_name": "eth7", "current_instance_type": instance});
    std::fs::write(&rc, config.to_string()).expect("write");
    let out = Command::new("bash")
        .arg(root().join("stdlib/python/launch.sh"))
        .args([script, "/opt/ml/input/data/config/args.yaml"])
        .env("TUNEC_LAUNCH_DRY_RUN", "1")
        .env("TUNEC_RESOURCE_CONFIG", &rc)
        .env("SM_NUM_GPUS", "8")
        .env("SM_OUTPUT_DIR", &dir)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).expect("clean up");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn launch_runs_train_under_torchrun_with_the_rendezvous_of_resourceconfig() {
    assert_eq!(
        launch("train.py", &["algo-1"], "algo-1", "ml.p4d.24xlarge"),
        "torchrun --nnodes=1 --nproc_per_node=8 train.py --config /opt/ml/input/data/config/args.yaml"
    );
    // On the second of two hosts (listed out of order), the master is the first host, sorted.
    assert_eq!(
        launch("train.py", &["algo-2", "algo-1"], "algo-2", "ml.p4d.24xlarge"),
        "torchrun --nnodes=2 --nproc_per_node=8 --master_addr=algo-1 --master_port=7777 --node_rank=1 train.py --config /opt/ml/input/data/config/args.yaml"
    );
    let merge = launch("merge.py", &["algo-1"], "algo-1", "ml.g5.2xlarge");
    assert!(merge.ends_with("merge.py --config /opt/ml/input/data/config/args.yaml"), "{merge}");
    assert!(!merge.contains("torchrun"));
}

#[test]
fn a_journal_tunec_cannot_trust_is_refused_with_its_remedy() {
    let dir = std::env::temp_dir().join(format!("tunec-journal-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".tunec/medreason")).expect("mkdir");
    std::fs::copy(root().join("examples/medreason/medreason.tune"), dir.join("medreason.tune")).expect("copy");
    let file = dir.join("medreason.tune").display().to_string();
    let state = dir.join(".tunec/medreason/state.json");
    let shown = state.display().to_string();
    let cases: [(&[u8], String); 3] = [
        (
            br#"{"version": 7, "pipeline": "medreason", "nodes": {}, "written_by": "tunec 3"}"#,
            format!(
                "`{shown}` was written by a newer tunec (state version 7; this tunec reads version 1): run that \
                 tunec, or move the file away to start afresh (`mv {shown} {shown}.v7`"
            ),
        ),
        (
            br#"{"version": 1, "pipeline": "tiny", "nodes": {}}"#,
            format!("`{shown}` is the journal of pipeline `tiny`, not of `medreason` (a copied or renamed folder?)"),
        ),
        (&[0x9c, 0x12, 0xff, 0x00, 0xd8, 0x41], format!("`{shown}` is not a tunec state file (")),
    ];
    for (bytes, message) in cases {
        std::fs::write(&state, bytes).expect("write");
        for args in [&["status", &file][..], &["plan", &file], &["run", &file, "--until", "llama"]] {
            let run = tunec(args);
            assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
            assert!(run.stderr.contains(&message), "{args:?}: {}", run.stderr);
        }
    }
    assert!(tunec(&["status", &file])
        .stderr
        .contains(&format!("move it away to start the pipeline's state afresh (`mv {shown} {shown}.bad`")));
    std::fs::remove_file(&state).expect("move it away");
    assert_eq!(tunec(&["status", &file]).code, 0);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn status_and_plan_read_the_journal() {
    use tunec_runtime::journal::{self, Journal, NodeRecord, Output, Status};
    let dir = std::env::temp_dir().join(format!("tunec-journal-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(root().join("examples/medreason/medreason.tune"), dir.join("medreason.tune")).expect("copy");
    let file = dir.join("medreason.tune").display().to_string();

    let none = tunec(&["status", &file]);
    assert_eq!(none.code, 0, "{}", none.stderr);
    assert!(none.stdout.starts_with("no run of `medreason` yet"), "{}", none.stdout);

    // Record the dataset node as done, with the key the plan computes and an output on disk.
    let plan = json(&tunec(&["plan", "--format", "json", &file]));
    let raw_key = plan["nodes"][1]["key"].as_str().expect("key").to_owned();
    std::fs::create_dir_all(dir.join("data")).expect("mkdir");
    std::fs::write(dir.join("data/raw.jsonl"), "{}\n").expect("write");
    let (sha256, bytes) = journal::digest_file(&dir.join("data/raw.jsonl")).expect("digest");
    {
        let mut j = Journal::open(&dir, "medreason").expect("open");
        let record = |key: &str, status| NodeRecord {
            key: key.to_owned(),
            status,
            attempt: 1,
            job_name: None,
            job_created: false,
            outputs: vec![Output { path: "data/raw.jsonl".into(), sha256: sha256.clone(), bytes }],
            started_at: journal::now(),
            finished_at: Some(journal::now()),
            error: None,
        };
        j.record("raw", record(&raw_key, Status::Succeeded)).expect("record");
        j.record("convo", record("0000", Status::Succeeded)).expect("record");
    }
    let plan = json(&tunec(&["plan", "--format", "json", &file]));
    // Intact, but a Hub dataset: its source is looked at again by every run.
    assert_eq!(plan["nodes"][1]["action"], "check", "{}", plan["nodes"][1]);
    assert_eq!(plan["nodes"][2]["action"], "run");
    assert!(plan["nodes"][2]["reason"].as_str().expect("reason").starts_with("its inputs changed"));
    assert_eq!(plan["nodes"][0]["reason"], "no previous run");
    std::fs::write(dir.join("data/raw.jsonl"), "{\"changed\": 1}\n").expect("write");
    let plan = json(&tunec(&["plan", "--format", "json", &file]));
    assert_eq!(plan["nodes"][1]["reason"], "its output `data/raw.jsonl` changed since it was written");

    let status = tunec(&["status", &file]);
    assert!(status.stdout.contains("2 of 7 nodes recorded"), "{}", status.stdout);
    assert!(status.stdout.contains("raw") && status.stdout.contains("succeeded"), "{}", status.stdout);
    assert!(status.stdout.contains("sft") && status.stdout.contains("not run"), "{}", status.stdout);

    // A run's lock is an advisory lock on `.tunec/<p>/lock`: held here by this test, as a live run
    // holds it, `status` names the holder and refuses to clear it; released (the process ended,
    // however it ended), nothing is locked and nothing needs clearing.
    let held = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(".tunec/medreason/lock"))
        .expect("open the lock");
    held.lock().expect("take the lock");
    std::fs::write(dir.join(".tunec/medreason/lock"), r#"{"pid": 4242, "since": "2026-01-01T00:00:00Z"}"#)
        .expect("write");
    let locked = tunec(&["status", &file]);
    assert!(locked.stdout.contains("locked: a run is in progress (pid 4242"), "{}", locked.stdout);
    let refused = tunec(&["status", "--clear-stale-lock", &file]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(refused.stderr.contains("a live run (pid 4242"), "{}", refused.stderr);
    let doc = json(&tunec(&["status", "--format", "json", &file]));
    assert_eq!(doc["locked"], true);
    assert_eq!(doc["lock_holder"]["pid"], 4242);
    drop(held);
    assert!(!tunec(&["status", &file]).stdout.contains("locked"));
    let cleared = tunec(&["status", "--clear-stale-lock", &file]);
    assert_eq!(cleared.code, 0, "{}", cleared.stderr);
    assert!(cleared.stdout.contains("no run holds the lock"), "{}", cleared.stdout);
    std::fs::remove_dir_all(&dir).expect("clean up");
}
