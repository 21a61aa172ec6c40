//! The `tunec` binary, driven as a user drives it: arguments in; stdout, stderr and the exit code
//! out. Exit codes are part of the interface (0 clean or warnings only, 1 errors, 2 usage or IO).

use std::path::{Path, PathBuf};
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tunec(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_tunec"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "80")
        .output()
        .expect("the tunec binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
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
    assert_eq!(d["span"]["column"], 23);
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
}

#[test]
fn later_subcommands_say_so_and_exit_2() {
    for args in [
        &["plan", "examples/medreason/medreason.tune"][..],
        &["build", "examples/medreason/medreason.tune", "-o", "out"],
        &["run", "examples/medreason/medreason.tune"],
        &["status"],
        &["graph", "examples/medreason/medreason.tune"],
        &["fmt", "examples/medreason/medreason.tune"],
    ] {
        let run = tunec(args);
        assert_eq!(run.code, 2, "{args:?}");
        assert!(run.stdout.is_empty(), "{args:?} printed output: {}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: one line");
        assert!(run.stderr.contains("not available yet"), "{args:?}: {}", run.stderr);
    }
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
    let elsewhere = std::env::temp_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_tunec"))
        .args(["check", &root().join("tests/cases/local_model_ok.tune").display().to_string()])
        .current_dir(elsewhere)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
