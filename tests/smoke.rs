//! `tunec run --smoke` through the real binary, on the CPU.
//!
//! The MedReason-shaped pipeline (`tests/data/smoke-medreason.tune.in`: QLoRA + FSDP on one
//! ml.p4d.24xlarge behind a SageMaker target, merge, evaluate) runs in miniature: the real Llama 3.1
//! tokenizer (`TUNEC_FIXTURES`, `.ci/fixtures.sh`), Llama 3.1 8B Instruct's config.json
//! (`tests/data/llama3_1_8b_instruct_config.json`, the published values of
//! huggingface.co/meta-llama/Llama-3.1-8B-Instruct), `tests/data/medreason.jsonl`, and the entry
//! scripts run by `TUNEC_TEST_PYTHON`. No AWS credentials are set, and every AWS endpoint points at
//! a closed port: a smoke run that called AWS would fail.
//!
//! Then the mistakes a real run would hit late, each with the node, the reason and the place in
//! the `.tune` file: some are caught by `tunec check` already (the smoke run stops there, as
//! `tunec run` does), the others by the smoke run's data steps and jobs.

// The MedReason inputs; its pipeline template is for the local runs of other tests.
#[path = "support/fake_hub.rs"]
mod fake_hub;
#[allow(dead_code)]
#[path = "support/medreason.rs"]
mod medreason;
mod support;
#[path = "support/tiny.rs"]
mod tiny;

use fake_hub::FakeHub;
use std::path::{Path, PathBuf};
use support::{root, Run};
use tiny::test_python;

/// A fresh folder with the pipeline's inputs: `model/` (the Llama 3.1 tokenizer and chat template,
/// Llama 3.1 8B Instruct's config.json, no weights) and `medreason.jsonl`.
fn setup(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tunec-smoke-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    medreason::model_and_rows(&dir);
    std::fs::copy(root().join("tests/data/llama3_1_8b_instruct_config.json"), dir.join("model/config.json"))
        .expect("config.json");
    dir
}

/// The MedReason-shaped pipeline with each `(from, to)` replaced, written to `dir/p.tune`.
fn pipeline(dir: &Path, changes: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(root().join("tests/data/smoke-medreason.tune.in")).expect("pipeline");
    for (from, to) in changes {
        assert!(text.contains(from), "`{from}` is not in the pipeline");
        text = text.replace(from, to);
    }
    let file = dir.join("p.tune");
    std::fs::write(&file, text).expect("write");
    file.display().to_string()
}

/// `tunec run --smoke FILE` with the test Python, no CUDA device, no AWS credentials and every AWS
/// endpoint unreachable.
fn smoke(file: &str, extra: &[&str]) -> Run {
    smoke_env(file, extra, &[])
}

/// [`smoke`] with more environment variables.
fn smoke_env(file: &str, extra: &[&str], env: &[(&str, String)]) -> Run {
    let python = test_python();
    let mut args = vec!["run", "--smoke", file, "--progress", "plain"];
    args.extend_from_slice(extra);
    support::tunec_with(&args, |command| {
        command
            .env("TUNEC_PYTHON", &python)
            .env("CUDA_VISIBLE_DEVICES", "")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("TUNEC_HOME", std::env::temp_dir().join(format!("tunec-smoke-home-{}", std::process::id())));
        for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"] {
            command.env_remove(var);
        }
        for var in ["TUNEC_SAGEMAKER_ROLE", "TUNEC_BUCKET", "TUNEC_MANAGED_REQUIREMENTS"] {
            command.env_remove(var);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
    })
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// The smoke report a run wrote.
fn report(dir: &Path) -> serde_json::Value {
    json(&dir.join(".tunec/p/smoke/report.json"))
}

/// The report's record of `node`.
fn node<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    report["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node"] == name)).unwrap_or_else(|| panic!("{report}"))
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("`{needle}` is not in the pipeline")) + 1
}

/// Asserts that the smoke run failed at `name`, in the report and on stderr, at `needle`'s line, with
/// a reason containing `reason`; the nodes after it did not run.
fn failed_at(dir: &Path, run: &Run, name: &str, needle: &str, reason: &str) {
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let report = report(dir);
    assert_eq!(report["passed"], false, "{report}");
    let record = node(&report, name);
    assert_eq!(record["outcome"], "failed", "{report}");
    let text = std::fs::read_to_string(dir.join("p.tune")).expect("pipeline");
    let location = record["location"].as_str().unwrap_or_default();
    assert!(location.contains(&format!("p.tune:{}:", line_of(&text, needle))), "{location}: {report}");
    let error = record["error"].as_str().unwrap_or_default();
    assert!(error.contains(reason), "`{reason}` not in: {error}");
    assert!(run.stdout.contains(&format!("failed at {location}")), "{}", run.stdout);
    assert!(run.stderr.contains(reason), "{}", run.stderr);
}

#[test]
fn a_medreason_shaped_qlora_fsdp_pipeline_on_p4d_passes_in_miniature_on_the_cpu() {
    let dir = setup("medreason");
    let file = pipeline(&dir, &[]);
    let run = smoke(&file, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // Each substitution is printed, and nothing else about the jobs changed.
    for said in [
        "sft: a SageMaker training job on 1 x ml.p4d.24xlarge → a local process on this machine",
        "sft: QLoRA (nf4 base weights) → LoRA with the same targets (all-linear)",
        "sft: FSDP (`full_shard auto_wrap offload`) → one process",
        "llama: `model` → a miniature of the same architecture",
        "raw: every record → the first 32 records",
        "sft: 2 epoch(s) at learning rate 0.0002, 4 step(s) of accumulation → the overfit check",
    ] {
        assert!(run.stdout.contains(said), "`{said}` not printed: {}", run.stdout);
    }
    assert!(run.stdout.contains("smoke run of `p`: passed"), "{}", run.stdout);

    // The report: every node, the data's figures, the overfit check, the real run's estimate.
    let report = report(&dir);
    assert_eq!(report["passed"], true, "{report}");
    for name in ["llama", "raw", "convo", "parts", "sft", "merged", "report"] {
        assert_eq!(node(&report, name)["outcome"], "succeeded", "{name}: {report}");
    }
    let data = &report["data"][0];
    assert_eq!((data["read"].as_u64(), data["kept"].as_u64()), (Some(31), Some(28)), "{data}");
    assert_eq!(data["skipped"], 2, "{data}");
    let labelled = data["labelled_token_share"].as_f64().expect("labelled share");
    assert!((0.05..0.95).contains(&labelled), "{labelled}");
    let train = &report["train"][0];
    assert_eq!((train["per_device_batch"].as_u64(), train["seq_len"].as_u64()), (Some(4), Some(1024)), "{train}");
    let pad = train["padding_to_longest_mean"].as_f64().expect("padding");
    let to_seq_len = train["padding_to_seq_len"].as_f64().expect("padding to seq_len");
    assert!(0.0 < pad && pad < to_seq_len && to_seq_len < 1.0, "{train}");
    let (first, last) = (train["overfit_first_loss"].as_f64(), train["overfit_last_loss"].as_f64());
    assert!(last.expect("last") < first.expect("first"), "{train}");
    assert!(train["host_peak_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{train}");
    let estimate = &report["real_estimate"]["nodes"][0];
    assert_eq!((&estimate["node"], &estimate["instance"]), (&"sft".into(), &"1 x ml.p4d.24xlarge".into()));
    // An 8B model in nf4 with FSDP on 8 GPUs: gigabytes per GPU, not the miniature's megabytes.
    assert!(estimate["gpu_peak_bytes"].as_u64().is_some_and(|b| b > 1 << 30), "{estimate}");

    // The job ran the miniature: LoRA (not QLoRA) on all the linear layers of a 2-layer Llama.
    let jobs = dir.join(".tunec/p/smoke/jobs");
    let adapter = one(&jobs.join("sft")).join("model/adapter_config.json");
    let adapter = json(&adapter);
    assert_eq!(adapter["peft_type"], "LORA", "{adapter}");
    let mut targets: Vec<&str> =
        adapter["target_modules"].as_array().expect("targets").iter().filter_map(|t| t.as_str()).collect();
    targets.sort_unstable();
    assert_eq!(targets, ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]);
    let miniature = json(&dir.join(".tunec/p/smoke/models/llama/config.json"));
    assert_eq!((miniature["num_hidden_layers"].as_u64(), miniature["vocab_size"].as_u64()), (Some(2), Some(128256)));
    let evaluation = json(&one(&jobs.join("report")).join("output/data/report.json"));
    assert_eq!(evaluation["num_examples"], 8, "{evaluation}");

    // A smoke run keeps apart: no real journal, no real outputs.
    assert!(!dir.join(".tunec/p/state.json").exists(), "a smoke run wrote the real journal");
    assert!(!dir.join(".tunec/p/jobs").exists() && !dir.join(".tunec/p/data").exists());
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The one folder under `dir` (a job's key).
fn one(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("read").flatten().map(|e| e.path()).collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn a_template_field_the_rows_lack_stops_the_data_step_and_a_misspelled_one_stops_the_check() {
    // Declared, so the checker accepts it, but not in the rows: the data step refuses the first row.
    let dir = setup("field");
    let file = pipeline(
        &dir,
        &[
            ("reasoning: string }", "reasoning: string, explanation: string }"),
            ("    on_bad_row = skip\n", ""),
            ("{answer}\"", "{answer}\\n{explanation}\""),
        ],
    );
    let run = smoke(&file, &[]);
    failed_at(&dir, &run, "parts", "split parts", "explanation");
    assert_eq!(node(&report(&dir), "sft")["outcome"], "not run");

    // Not declared: `tunec check`'s error, and nothing runs.
    let file = pipeline(&dir, &[("user        = \"{question}\"", "user        = \"{questoin}\"")]);
    let run = smoke(&file, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("`{questoin}` names no column"), "{}", run.stderr);
    assert!(run.stderr.contains("p.tune:23:"), "{}", run.stderr);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn labels_that_mask_everything_stop_the_split() {
    // At 48 tokens the system and user turns fill every row: no answer would carry a label.
    let dir = setup("labels");
    let file =
        pipeline(&dir, &[("seq_len     = 1024", "seq_len     = 48"), ("overflow    = drop", "overflow    = truncate")]);
    let run = smoke(&file, &[]);
    failed_at(&dir, &run, "parts", "split parts", "`parts.train` has no rows");
    // `--format json`: the report on stdout, progress on stderr.
    let run = smoke(&file, &["--format", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).expect("the report as JSON");
    assert_eq!(printed, report(&dir));
    assert!(run.stderr.contains("sft: QLoRA (nf4 base weights) → LoRA"), "{}", run.stderr);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn check_time_mistakes_stop_before_anything_runs() {
    let dir = setup("check");
    for (from, to, said, line) in [
        ("targets = all_linear", "targets = [q_proj, wqkv]", "`wqkv` is not a module of LlamaForCausalLM", 33),
        ("<|reserved_special_token_2|>", "<|eot_id|>", "the pad token is the end-of-turn token `<|eot_id|>`", 13),
        ("merge merged = merge(sft)", "merge merged = merge(sft) { dtype = nf4 }", "merging into a `nf4` base", 47),
    ] {
        let file = pipeline(&dir, &[(from, to)]);
        let run = smoke(&file, &[]);
        assert_eq!(run.code, 1, "{to}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(said), "{to}: {}", run.stderr);
        assert!(run.stderr.contains(&format!("p.tune:{line}:")), "{to}: {}", run.stderr);
        assert!(!dir.join(".tunec/p/smoke").exists(), "{to}: a pipeline with errors ran");
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_merge_into_a_checkpoint_stored_quantized_stops_at_the_check() {
    // A pre-quantized download (a `*-bnb-4bit` repository): QLoRA trains on it, and merge.py, which
    // merges into 16-bit weights only, refuses it. The miniature has plain weights, so the smoke
    // run's merge would pass: `tunec check` refuses it, at the merge and at the model.
    let dir = setup("quantized");
    let config = dir.join("model/config.json");
    let mut values = json(&config);
    values["quantization_config"] = serde_json::json!({
        "quant_method": "bitsandbytes",
        "load_in_4bit": true,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": true,
        "bnb_4bit_compute_dtype": "bfloat16"
    });
    std::fs::write(&config, values.to_string()).expect("write");
    let file = pipeline(&dir, &[]);
    let run = smoke(&file, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let text = std::fs::read_to_string(&file).expect("pipeline");
    for said in [
        "merge_quantized_base",
        "whose checkpoint is stored",
        "`sft` was trained on `llama`, quantized by `bitsandbytes`",
        &format!("p.tune:{}:", line_of(&text, "merge merged")),
        &format!("p.tune:{}:", line_of(&text, "local_model(\"model\")")),
    ] {
        assert!(run.stderr.contains(said), "`{said}` not in: {}", run.stderr);
    }
    assert!(!dir.join(".tunec/p/smoke").exists(), "a pipeline with errors ran");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_base_whose_generation_config_transformers_refuses_to_save_merges_in_miniature() {
    // Sampling flags without `do_sample`, as published generation_config.json files have held:
    // transformers 4.56.2 loads the file but refuses to save it, which failed the merge after the
    // training. The miniature keeps the file; merge.py now saves it with `do_sample` true.
    let dir = setup("generation");
    let generation =
        r#"{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9}"#;
    std::fs::write(dir.join("model/generation_config.json"), generation).expect("write");
    let file = pipeline(&dir, &[]);
    let run = smoke(&file, &["--until", "merged", "--smoke-rows", "24"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let report = report(&dir);
    assert_eq!(node(&report, "merged")["outcome"], "succeeded", "{report}");
    let miniature = json(&dir.join(".tunec/p/smoke/models/llama/generation_config.json"));
    assert_eq!(miniature["temperature"], 0.6, "the miniature keeps the base's file: {miniature}");
    let saved = json(&one(&dir.join(".tunec/p/smoke/jobs/merged")).join("model/generation_config.json"));
    assert_eq!((&saved["do_sample"], &saved["temperature"], &saved["top_p"]), (&true.into(), &0.6.into(), &0.9.into()));
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_merge_option_merge_py_does_not_implement_fails_the_merge_job() {
    // `base_weights = nf4_roundtrip` passes `tunec check`, but merge.py implements only `pristine`
    // (docs/entry-scripts.md §10): a real run would train, then fail when the merge job starts.
    let dir = setup("roundtrip");
    let file =
        pipeline(&dir, &[("merge merged = merge(sft)", "merge merged = merge(sft) { base_weights = nf4_roundtrip }")]);
    let run = smoke(&file, &["--smoke-rows", "24"]);
    failed_at(&dir, &run, "merged", "merge merged", "`base_weights` 'nf4_roundtrip' is not supported by merge.py");
    let report = report(&dir);
    assert_eq!(node(&report, "sft")["outcome"], "succeeded", "{report}");
    assert_eq!(node(&report, "report")["outcome"], "not run", "{report}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn a_pad_token_the_tokenizer_lacks_fails_the_train_job() {
    // Llama 3.1's name for id 128004; this tokenizer.json calls it <|reserved_special_token_2|>.
    let dir = setup("pad");
    let file = pipeline(&dir, &[("<|reserved_special_token_2|>", "<|finetune_right_pad_id|>")]);
    let run = smoke(&file, &[]);
    failed_at(&dir, &run, "sft", "train sft", "is not a single token of the tokenizer");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn an_evaluation_that_cannot_score_its_answers_fails_the_evaluate_job() {
    // choice_accuracy scores multiple-choice options, and MedReason's rows have none.
    let dir = setup("metric");
    let file = pipeline(&dir, &[("metrics = [exact_match, rouge_l]", "metrics = [choice_accuracy]")]);
    let run = smoke(&file, &[]);
    failed_at(&dir, &run, "report", "evaluate report", "no test row has `options`");
    let report = report(&dir);
    assert_eq!(node(&report, "merged")["outcome"], "succeeded", "{report}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// The fake Hub of `tests/hub/fake_hub.py` serving `meta-llama/Llama-3.1-8B-Instruct`'s tokenizer,
/// chat template and config.json (no weights); stopped when dropped.
fn fake_hub(dir: &Path) -> FakeHub {
    let files = dir.join("hub/models/meta-llama/Llama-3.1-8B-Instruct/main");
    std::fs::create_dir_all(&files).expect("mkdir");
    // The fixture names ids 128004 and 128008 as Llama 3 did; Llama 3.1's tokenizer, whose stop and
    // pad tokens the catalog lists, calls them <|finetune_right_pad_id|> and <|eom_id|>.
    for file in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"] {
        let text = std::fs::read_to_string(dir.join("model").join(file)).expect("read");
        let text = text
            .replace("<|reserved_special_token_2|>", "<|finetune_right_pad_id|>")
            .replace("<|reserved_special_token_4|>", "<|eom_id|>");
        std::fs::write(files.join(file), text).expect("write");
    }
    FakeHub::start(&test_python(), &dir.join("hub"), &dir.join("requests.jsonl"))
}

#[test]
fn an_hf_model_gets_its_miniature_from_the_config_json_of_its_hub_copy() {
    let dir = setup("hub");
    let hub = fake_hub(&dir);
    let file = pipeline(
        &dir,
        &[
            ("local_model(\"model\")", "hf_model(\"meta-llama/Llama-3.1-8B-Instruct\")"),
            ("<|reserved_special_token_2|>", "<|finetune_right_pad_id|>"),
        ],
    );
    std::fs::remove_dir_all(dir.join("model")).expect("the local copy goes");
    let env = [("HF_ENDPOINT", hub.endpoint.clone()), ("HF_HOME", dir.join("hf-home").display().to_string())];
    let run = smoke_env(&file, &["--until", "sft", "--smoke-rows", "24"], &env);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("llama: `meta-llama/Llama-3.1-8B-Instruct` → a miniature"), "{}", run.stdout);
    let miniature = json(&dir.join(".tunec/p/smoke/models/llama/config.json"));
    assert_eq!(miniature["architectures"][0], "LlamaForCausalLM", "{miniature}");
    assert_eq!((miniature["num_hidden_layers"].as_u64(), miniature["vocab_size"].as_u64()), (Some(2), Some(128256)));
    let report = report(&dir);
    assert_eq!(node(&report, "sft")["outcome"], "succeeded", "{report}");
    assert_eq!(node(&report, "merged")["outcome"], "not run", "{report}");
    // `--smoke-rows 24`: the first 24 of the file's 31 records.
    assert_eq!(report["data"][0]["read"], 24, "{report}");
    assert!(run.stdout.contains("raw: every record → the first 24 records (`train[:24]`)"), "{}", run.stdout);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Serves `meta-llama/Llama-3.1-8B` from `hub`'s folder too, with the Instruct copy's files (its
/// config.json has the base's shape and RoPE scaling).
fn serve_the_base(dir: &Path) {
    let instruct = dir.join("hub/models/meta-llama/Llama-3.1-8B-Instruct/main");
    let base = dir.join("hub/models/meta-llama/Llama-3.1-8B/main");
    std::fs::create_dir_all(&base).expect("mkdir");
    for file in ["tokenizer.json", "tokenizer_config.json", "config.json"] {
        std::fs::copy(instruct.join(file), base.join(file)).expect("copy");
    }
}

#[test]
fn a_base_model_no_chat_node_fetches_is_built_from_its_hub_copy_or_else_from_the_catalogs_facts() {
    // A base model trained on conversations templated with its instruct sibling's tokenizer. The data step fetches the Instruct model's files; nothing fetches the base's.
    let dir = setup("base");
    let hub = fake_hub(&dir);
    let file = pipeline(
        &dir,
        &[
            ("local_model(\"model\")", "hf_model(\"meta-llama/Llama-3.1-8B-Instruct\")"),
            ("<|reserved_special_token_2|>", "<|finetune_right_pad_id|>"),
            ("  dataset raw = file(", "  model base = hf_model(\"meta-llama/Llama-3.1-8B\")\n\n  dataset raw = file("),
            ("sft(llama,", "sft(base,"),
            // Evaluating the base's descendant on the Instruct's conversations is `adapter_base`.
            ("evaluate(merged, parts.test) {", "evaluate(llama, parts.test) {\n    compute = \"ml.g5.2xlarge\" x 1"),
        ],
    );
    std::fs::remove_dir_all(dir.join("model")).expect("the local copy goes");
    let env = [("HF_ENDPOINT", hub.endpoint.clone()), ("HF_HOME", dir.join("hf-home").display().to_string())];
    let args = ["--until", "sft", "--smoke-rows", "24"];

    // The Hub has no copy of the base: its config.json comes from the catalog's facts, its
    // tokenizer from the chat node's model, and the run says so.
    let run = smoke_env(&file, &args, &env);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let said = "base: the config.json of `meta-llama/Llama-3.1-8B` → a config.json from tunec's catalog facts for \
                `meta-llama/Llama-3.1-8B` and the tokenizer of `llama`, which templated the job's data (no copy of \
                `meta-llama/Llama-3.1-8B` is here: hf_model(\"meta-llama/Llama-3.1-8B\"): the Hub has no such \
                repository;";
    assert!(run.stdout.contains(said), "{}", run.stdout);
    let report_text = report(&dir).to_string();
    assert!(report_text.contains("a config.json from tunec's catalog facts"), "{report_text}");
    assert_eq!(node(&report(&dir), "sft")["outcome"], "succeeded", "{report_text}");
    let miniature = json(&dir.join(".tunec/p/smoke/models/base/config.json"));
    assert_eq!(miniature["architectures"][0], "LlamaForCausalLM", "{miniature}");
    assert_eq!((miniature["num_hidden_layers"].as_u64(), miniature["vocab_size"].as_u64()), (Some(2), Some(128256)));
    assert_eq!(miniature["bos_token_id"], 128000, "{miniature}");
    // The catalog's end-of-sequence token, <|end_of_text|>, numbered by the tokenizer beside.
    let eos = &miniature["eos_token_id"];
    assert!(eos == 128001 || eos.as_array().is_some_and(|ids| ids.contains(&128001.into())), "{miniature}");
    // What the catalog does not record is the config class's default: no Llama 3.1 RoPE scaling.
    assert!(miniature["rope_scaling"].is_null(), "{miniature}");
    assert!(dir.join(".tunec/p/smoke/models/base/tokenizer.json").is_file());

    // With the base on the Hub, the smoke run fetches its files as the data step would for a
    // tokenizer, and the miniature is built from the published config.json.
    serve_the_base(&dir);
    std::fs::remove_dir_all(dir.join(".tunec")).expect("a fresh start");
    let run = smoke_env(&file, &args, &env);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("base: hf://meta-llama/Llama-3.1-8B: downloaded 3 files"), "{}", run.stdout);
    assert!(!run.stdout.contains("catalog facts"), "{}", run.stdout);
    let miniature = json(&dir.join(".tunec/p/smoke/models/base/config.json"));
    assert_eq!(miniature["rope_scaling"]["rope_type"], "llama3", "{miniature}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}
