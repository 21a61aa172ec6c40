//! `tunec run --smoke`: the pipeline's own graph, run in miniature on this machine before the paid
//! job starts.
//!
//! A smoke run is the local target with substitutions, not another way through the executor:
//! [`substitute`] rewrites the lowered [`JobGraph`] (the one `tunec run` would execute) into a
//! local graph of its own, and [`target::SmokeTarget`] wraps the local target to put a miniature of
//! each model in its place. What stays is what a real run would hit late: the real tokenizer, chat
//! template and data (the first `--smoke-rows` records of each dataset), the same entry scripts and
//! args.yaml, the model's architecture (same config class, vocabulary and special tokens, 2 layers
//! of toy size, random weights, built by `tunec_entry.miniature` from its `config.json`). What
//! changes is only what cannot run here, each change returned as a [`Substitution`] and printed:
//!
//! - the instance becomes this machine (`target local`), and SageMaker is never called;
//! - QLoRA becomes LoRA with the same targets when there is no CUDA device;
//! - FSDP becomes one process when fewer than two CUDA devices are here;
//! - bf16 becomes fp32 when neither a CUDA device nor the CPU computes in bf16;
//! - training is the overfit check: a few steps (`OVERFIT_STEPS`) on the handful of rows at a high
//!   learning rate, one optimizer step per batch, the loss logged at every step; its loss must fall
//!   ([`target`] checks it), or the labels teach nothing;
//! - an evaluation generates at most `EVAL_NEW_TOKENS` tokens per answer.
//!
//! The smoke graph's pipeline is `<pipeline>/smoke`, so its journal, data, jobs and logs live under
//! `.tunec/<pipeline>/smoke/` and its keys are the real keys hashed with the smoke settings: a real
//! run never reuses them, nor a smoke run a real run's outputs.

pub mod model_source;
pub mod report;
pub mod target;

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};
use tunec_compiler::check::slice::{Bound, SplitSlice};
use tunec_compiler::lower::{sha256_hex, ChannelSource, Execution, JobGraph, JobNode};
use tunec_compiler::target::Target;

/// Records of each dataset a smoke run reads when `--smoke-rows` is not given: enough for a split
/// to give every part rows and a train part a batch, few enough to finish in about two minutes.
pub const DEFAULT_ROWS: u64 = 32;

/// Optimizer steps of the overfit check.
pub const OVERFIT_STEPS: u64 = 10;

/// The overfit check's learning rate, when the real one is lower.
pub const OVERFIT_LEARNING_RATE: f64 = 1e-2;

/// Tokens an evaluation generates per answer in a smoke run, at most.
pub const EVAL_NEW_TOKENS: u64 = 16;

/// What this machine can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardware {
    /// NVIDIA devices.
    pub cuda_devices: usize,
    /// Whether the CPU computes in bf16 natively (AVX-512 BF16 or AMX).
    pub cpu_bf16: bool,
    /// CPU cores, for the messages.
    pub cores: usize,
}

impl Hardware {
    /// This machine's.
    pub fn detect() -> Hardware {
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_bf16 = flags
            .lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16"));
        Hardware {
            cuda_devices: crate::run::target::local::num_gpus(),
            cpu_bf16,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    fn describe(&self) -> String {
        match self.cuda_devices {
            0 => format!("this machine ({} CPU cores, no CUDA device)", self.cores),
            n => format!("this machine ({n} CUDA device{})", if n == 1 { "" } else { "s" }),
        }
    }
}

/// One thing a smoke run does differently from the real run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution {
    /// The node it applies to.
    pub node: String,
    /// What the real run does.
    pub real: String,
    /// What the smoke run does instead.
    pub smoke: String,
    /// Why.
    pub reason: String,
}

impl Substitution {
    fn new(node: &str, real: impl Into<String>, smoke: impl Into<String>, reason: impl Into<String>) -> Substitution {
        Substitution { node: node.to_owned(), real: real.into(), smoke: smoke.into(), reason: reason.into() }
    }

    /// `sft: QLoRA (nf4) → LoRA with the same targets (no CUDA device here)`.
    pub fn line(&self) -> String {
        format!("{}: {} → {} ({})", self.node, self.real, self.smoke, self.reason)
    }

    pub fn json(&self) -> Json {
        json!({ "node": self.node, "real": self.real, "smoke": self.smoke, "reason": self.reason })
    }
}

/// The name of a smoke run's pipeline: its files live under `.tunec/<pipeline>/smoke/`.
pub fn pipeline_name(pipeline: &str) -> String {
    format!("{pipeline}/smoke")
}

/// The smoke graph of `graph` on `hardware`, reading at most `rows` records of each dataset, and
/// what it substitutes. Model nodes are left as they are: [`target::SmokeTarget`] gives the jobs a
/// miniature of each.
pub fn substitute(graph: &JobGraph, rows: u64, hardware: &Hardware) -> (JobGraph, Vec<Substitution>) {
    let mut smoke = graph.clone();
    let mut subs = Vec::new();
    smoke.pipeline = pipeline_name(&graph.pipeline);
    if graph.target != Target::Local {
        smoke.target = Target::Local;
        smoke.target_config = json!({});
    }
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for node in &mut smoke.nodes {
        let name = node.name.clone();
        match node.kind.as_str() {
            "model" => subs.push(Substitution::new(
                &name,
                format!("`{}`", node.fields().str("id").or_else(|| node.fields().str("path")).unwrap_or_default()),
                "a miniature of the same architecture (2 layers, random weights, the real vocabulary)",
                "no weights are downloaded or read",
            )),
            "dataset" => limit_rows(node, rows, &mut subs),
            "train" => {
                if let Some(config) = node.config.as_object_mut() {
                    // The split's check that the train part fills one optimizer step reads these.
                    config.insert("grad_accum".into(), json!(1));
                    config.remove("max_steps");
                }
            }
            _ => {}
        }
        let job = match &node.execution {
            Execution::SageMakerJob { script, args_yaml, channels, instance_type, instance_count, .. } => {
                subs.push(Substitution::new(
                    &name,
                    format!("a SageMaker training job on {instance_count} x {instance_type}"),
                    format!("a local process on {}", hardware.describe()),
                    "a smoke run never calls AWS",
                ));
                Some((script.clone(), args_yaml.clone(), channels.clone()))
            }
            Execution::LocalScript { script, args_yaml, channels } => {
                Some((script.clone(), args_yaml.clone(), channels.clone()))
            }
            _ => None,
        };
        if let Some((script, args_yaml, channels)) = job {
            let mut args_yaml = args(&name, &node.kind, &args_yaml, hardware, &mut subs);
            // A Hub model is no channel on SageMaker (the job downloads it by its id); here its
            // miniature is one, like a local model's folder.
            for channel in &channels {
                if let ChannelSource::Hub { .. } = channel.source {
                    let mut lines: Vec<String> = args_yaml.lines().map(str::to_owned).collect();
                    set(&mut lines, "model_name_or_path", &format!("\"/opt/ml/input/data/{}\"", channel.name));
                    args_yaml = lines.join("\n") + "\n";
                }
            }
            node.execution = Execution::LocalScript { script, args_yaml, channels };
        }
        // The real key, the smoke settings, what the job runs and the smoke keys of its inputs.
        let mut semantic = json!({
            "real": node.key,
            "rows": rows,
            "config": node.config,
            "deps": node.deps.iter().map(|d| keys.get(d)).collect::<Vec<_>>(),
        });
        if let Execution::LocalScript { args_yaml, .. } = &node.execution {
            semantic["args_yaml"] = json!(args_yaml);
        }
        node.key = sha256_hex(semantic.to_string().as_bytes());
        keys.insert(name, node.key.clone());
    }
    (smoke, subs)
}

/// Reads the first `rows` records of a dataset (of its slice, where it has one).
fn limit_rows(node: &mut JobNode, rows: u64, subs: &mut Vec<Substitution>) {
    let declared = node.fields().str("split").map(str::to_owned);
    let slice = declared.as_deref().and_then(|s| SplitSlice::parse(s).ok());
    let limited = match &slice {
        None => format!("train[:{rows}]"),
        Some(s) => match (s.from, s.to) {
            (None | Some(Bound::Rows(0..)), None | Some(Bound::Rows(0..))) => {
                let from = match s.from {
                    Some(Bound::Rows(a)) => u64::try_from(a).unwrap_or(0),
                    _ => 0,
                };
                let end = from.saturating_add(rows);
                let to = match s.to {
                    Some(Bound::Rows(b)) => end.min(u64::try_from(b).unwrap_or(0)),
                    _ => end,
                };
                if from == 0 {
                    format!("{}[:{to}]", s.split)
                } else {
                    format!("{}[{from}:{to}]", s.split)
                }
            }
            // A slice in percent or from the end needs the split's size: the first rows of the split.
            _ => format!("{}[:{rows}]", s.split),
        },
    };
    let real = match &declared {
        Some(split) => format!("`{split}`"),
        None => "every record".to_owned(),
    };
    subs.push(Substitution::new(&node.name, real, format!("the first {rows} records (`{limited}`)"), "--smoke-rows"));
    if let Some(config) = node.config.as_object_mut() {
        config.insert("split".into(), json!(limited));
        // Declared sizes describe the whole dataset, which the smoke run does not read.
        config.remove("rows");
        config.remove("mean_tokens");
    }
}

/// One `key: value` line of an args.yaml (values are JSON).
fn value<'a>(lines: &'a [String], key: &str) -> Option<&'a str> {
    let prefix = format!("{key}: ");
    lines.iter().find_map(|l| l.strip_prefix(&prefix))
}

fn set(lines: &mut Vec<String>, key: &str, new: &str) {
    let prefix = format!("{key}: ");
    match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
        Some(line) => *line = format!("{prefix}{new}"),
        None => lines.push(format!("{prefix}{new}")),
    }
}

fn remove(lines: &mut Vec<String>, key: &str) {
    let prefix = format!("{key}: ");
    lines.retain(|l| !l.starts_with(&prefix));
}

/// The args.yaml of a job in a smoke run: the lowered one with only what cannot run here changed.
fn args(node: &str, kind: &str, text: &str, hw: &Hardware, subs: &mut Vec<Substitution>) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let cuda = hw.cuda_devices > 0;
    if !cuda && (value(&lines, "load_in_4bit") == Some("true") || value(&lines, "load_in_8bit") == Some("true")) {
        let quant = if value(&lines, "load_in_4bit") == Some("true") {
            value(&lines, "bnb_4bit_quant_type").map_or("4-bit".to_owned(), |q| q.trim_matches('"').to_owned())
        } else {
            "int8".to_owned()
        };
        let targets = value(&lines, "lora_target_modules").unwrap_or("\"all-linear\"").trim_matches('"').to_owned();
        set(&mut lines, "method", "\"lora\"");
        set(&mut lines, "load_in_4bit", "false");
        set(&mut lines, "load_in_8bit", "false");
        for key in ["bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"] {
            remove(&mut lines, key);
        }
        subs.push(Substitution::new(
            node,
            format!("QLoRA ({quant} base weights)"),
            format!("LoRA with the same targets ({targets})"),
            "bitsandbytes quantizes on CUDA devices only, and there is none here",
        ));
    }
    if let Some(fsdp) = value(&lines, "fsdp").map(|f| f.trim_matches('"').to_owned()) {
        if hw.cuda_devices < 2 {
            remove(&mut lines, "fsdp");
            remove(&mut lines, "fsdp_config");
            subs.push(Substitution::new(
                node,
                format!("FSDP (`{fsdp}`)"),
                "one process",
                format!("FSDP shards over two or more CUDA devices, and {} here", hw.cuda_devices),
            ));
        }
    }
    let bf16 = value(&lines, "bf16") == Some("true") || value(&lines, "torch_dtype") == Some("\"bfloat16\"");
    if bf16 && !cuda && !hw.cpu_bf16 {
        if value(&lines, "bf16").is_some() {
            set(&mut lines, "bf16", "false");
        }
        if value(&lines, "torch_dtype").is_some() {
            set(&mut lines, "torch_dtype", "\"float32\"");
        }
        subs.push(Substitution::new(node, "bf16", "fp32", "this CPU has no bf16 instructions (AVX-512 BF16, AMX)"));
    }
    match kind {
        "train" => {
            let lr = value(&lines, "learning_rate").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let learning_rate = lr.max(OVERFIT_LEARNING_RATE);
            let real = format!(
                "{} at learning rate {lr}, {} step(s) of accumulation",
                match value(&lines, "max_steps") {
                    Some(s) if s != "-1" => format!("{s} steps"),
                    _ => format!("{} epoch(s)", value(&lines, "num_train_epochs").unwrap_or("1")),
                },
                value(&lines, "gradient_accumulation_steps").unwrap_or("1")
            );
            for (key, new) in [
                ("max_steps", OVERFIT_STEPS.to_string()),
                ("num_train_epochs", "1".to_owned()),
                ("learning_rate", format!("{learning_rate:?}")),
                ("gradient_accumulation_steps", "1".to_owned()),
                ("warmup_steps", "0".to_owned()),
                ("warmup_ratio", "0.0".to_owned()),
                ("lr_scheduler_type", "\"constant\"".to_owned()),
                ("logging_steps", "1".to_owned()),
                ("save_steps", OVERFIT_STEPS.to_string()),
                ("eval_steps", OVERFIT_STEPS.to_string()),
                ("lora_dropout", "0.0".to_owned()),
            ] {
                if key == "lora_dropout" && value(&lines, key).is_none() {
                    continue;
                }
                set(&mut lines, key, &new);
            }
            subs.push(Substitution::new(
                node,
                real,
                format!(
                    "the overfit check: {OVERFIT_STEPS} steps at learning rate {learning_rate}, no accumulation, \
                     no dropout, the loss logged every step"
                ),
                "the loss must fall on a handful of rows, or the labels teach nothing",
            ));
        }
        "evaluate" => {
            let real = value(&lines, "max_new_tokens").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            if real > EVAL_NEW_TOKENS {
                set(&mut lines, "max_new_tokens", &EVAL_NEW_TOKENS.to_string());
                subs.push(Substitution::new(
                    node,
                    format!("{real} new tokens per answer"),
                    format!("{EVAL_NEW_TOKENS}"),
                    "a miniature's answers are noise; the check is that each one is generated and scored",
                ));
            }
        }
        _ => {}
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const QLORA_FSDP: &str = "method: \"qlora\"\ntorch_dtype: \"bfloat16\"\nbf16: true\nmax_steps: -1\n\
        num_train_epochs: 2\nlearning_rate: 0.0002\ngradient_accumulation_steps: 4\nlora_dropout: 0.05\n\
        lora_target_modules: \"all-linear\"\nload_in_4bit: true\nload_in_8bit: false\nbnb_4bit_quant_type: \"nf4\"\n\
        bnb_4bit_compute_dtype: \"bfloat16\"\nfsdp: \"full_shard auto_wrap\"\nfsdp_config: {\"a\":1}\n";

    fn hw(cuda_devices: usize, cpu_bf16: bool) -> Hardware {
        Hardware { cuda_devices, cpu_bf16, cores: 2 }
    }

    #[test]
    fn a_cpu_without_bf16_trains_lora_in_one_process_in_fp32_and_says_so() {
        let mut subs = Vec::new();
        let out = args("sft", "train", QLORA_FSDP, &hw(0, false), &mut subs);
        for line in
            ["method: \"lora\"", "load_in_4bit: false", "bf16: false", "torch_dtype: \"float32\"", "max_steps: 10"]
        {
            assert!(out.lines().any(|l| l == line), "{line}: {out}");
        }
        for gone in ["fsdp:", "fsdp_config:", "bnb_4bit_quant_type:"] {
            assert!(!out.contains(gone), "{gone}: {out}");
        }
        assert!(out.contains("lora_target_modules: \"all-linear\""), "{out}");
        let said: Vec<&str> = subs.iter().map(|s| s.real.as_str()).collect();
        assert_eq!(said[..3], ["QLoRA (nf4 base weights)", "FSDP (`full_shard auto_wrap`)", "bf16"], "{subs:?}");
    }

    #[test]
    fn what_the_machine_runs_is_kept() {
        let mut subs = Vec::new();
        let out = args("sft", "train", QLORA_FSDP, &hw(2, false), &mut subs);
        for line in ["method: \"qlora\"", "load_in_4bit: true", "bf16: true", "fsdp: \"full_shard auto_wrap\""] {
            assert!(out.lines().any(|l| l == line), "{line}: {out}");
        }
        assert_eq!(subs.len(), 1, "only the overfit check: {subs:?}");
        let mut subs = Vec::new();
        let out = args("merged", "merge", "torch_dtype: \"bfloat16\"\n", &hw(0, true), &mut subs);
        assert_eq!(out, "torch_dtype: \"bfloat16\"\n");
        assert!(subs.is_empty(), "{subs:?}");
    }

    #[test]
    fn a_dataset_reads_its_first_rows_within_its_own_slice() {
        let node = |split: Option<&str>| JobNode {
            name: "raw".into(),
            kind: "dataset".into(),
            function: "hf_dataset".into(),
            key: String::new(),
            deps: vec![],
            config: match split {
                Some(s) => json!({ "split": s, "rows": 10000 }),
                None => json!({}),
            },
            execution: Execution::Data { operation: "hf_dataset".into() },
        };
        for (declared, limited) in [
            (None, "train[:32]"),
            (Some("train[:10000]"), "train[:32]"),
            (Some("train[100:110]"), "train[100:110]"),
            (Some("validation[5:]"), "validation[5:37]"),
            (Some("train[10%:]"), "train[:32]"),
        ] {
            let mut n = node(declared);
            limit_rows(&mut n, 32, &mut Vec::new());
            assert_eq!(n.config["split"], limited, "{declared:?}");
            assert!(n.config.get("rows").is_none());
        }
    }
}
