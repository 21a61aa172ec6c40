//! Throughput of the data step (render, tokenize, fit, dedup, split, write) on synthetic
//! MedReason-shaped rows, with the real Llama 3.1 tokenizer, on one thread and on all cores.
//!
//!     TUNEC_FIXTURES=~/.cache/tunec/fixtures cargo bench -p tunec-runtime --bench prepare -- [ROWS]
//!
//! `.ci/fixtures.sh` fills TUNEC_FIXTURES. This is a measurement, not a check; docs/performance.md
//! records its figures with the machine. The comparison with the seed's Python is still to come.

use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use tunec_runtime::data::conversation::ChatSpec;
use tunec_runtime::data::prepare::{prepare, PrepareConfig, SplitFractions};
use tunec_runtime::data::source::{BadRowPolicy, ColumnType, Schema, SourceSpec};
use tunec_runtime::data::template::ChatTemplate;
use tunec_runtime::data::tokenize::{ChatTokenizer, OverflowPolicy};

/// The allocator of the `tunec` binary, so that the figures are the step's as users run it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let rows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let Some(fixtures) = std::env::var_os("TUNEC_FIXTURES") else {
        eprintln!("set TUNEC_FIXTURES to the folder .ci/fixtures.sh fills");
        std::process::exit(2);
    };
    let dir = PathBuf::from(fixtures).join("llama3_1");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = ChatTokenizer::from_files(&dir).expect("the Llama 3.1 tokenizer fixture");
    let config_json = std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("tokenizer_config.json");
    let jinja = std::fs::read_to_string(root.join("tests/data/llama3_1_instruct.jinja")).expect("template");
    let tokenizer = base.with_template(ChatTemplate::from_config(&config_json, Some(&jinja)).expect("template"));

    let work = std::env::temp_dir().join(format!("tunec-bench-prepare-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("mkdir");
    let input = work.join("input.jsonl");
    let reasoning = "The patient presents with fatigue, pallor and glossitis; the smear shows macrocytes and \
                     hypersegmented neutrophils, which point to a megaloblastic anemia. "
        .repeat(12);
    let lines: Vec<String> = (0..rows)
        .map(|i| {
            json!({"question": format!("Case {i}: what is the most likely deficiency?"),
                   "answer": format!("B12 ({i})"), "reasoning": format!("{reasoning} Case {i}.")})
            .to_string()
        })
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");

    let schema = Schema::new(&[
        ("question", ColumnType::String),
        ("answer", ColumnType::String),
        ("reasoning", ColumnType::String),
    ]);
    let source = SourceSpec { on_bad_row: BadRowPolicy::Skip, ..SourceSpec::file(&input, schema.clone()) };
    let chat = ChatSpec::new(
        Some("You are a deep-thinking AI assistant."),
        "{question}",
        "<think>\n{reasoning}\n</think>\n\n{answer}",
        &schema,
    )
    .expect("chat spec");
    let mut config = PrepareConfig::new(
        chat,
        4096,
        OverflowPolicy::Truncate,
        SplitFractions { train: 0.9, val: 0.05, test: 0.05, seed: 42 },
    );
    config.template_vars.insert("date_string".into(), json!("26 Jul 2024"));
    for threads in [1, 0] {
        config.threads = threads;
        let out = work.join(format!("out-{threads}"));
        let start = Instant::now();
        let profile = prepare(&source, &tokenizer, &config, &out).expect("prepare");
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "threads {}: {} rows, mean {:.0} tokens, {seconds:.2} s, {:.0} rows/s, {:.0} tokens/s",
            if threads == 0 { "all".to_owned() } else { threads.to_string() },
            profile.rows,
            profile.mean_tokens,
            profile.rows as f64 / seconds,
            profile.rows as f64 * profile.mean_tokens / seconds
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
