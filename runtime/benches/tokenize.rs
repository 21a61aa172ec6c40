//! Encoding throughput of the two tokenizer engines on every fixture tokenizer, on one thread:
//! `tokenizers`' `Tokenizer::encode(text, false)` (what the data step called before) against the
//! engine the data step picks (`TextEncoder`, the fast byte-level BPE engine where it is exact).
//!
//!     TUNEC_FIXTURES=~/.cache/tunec/fixtures cargo bench -p tunec-runtime --bench tokenize -- ROWS.jsonl [N]
//!
//! ROWS.jsonl holds MedReason-shaped rows (`tests/bench/gen_medreason.py N ROWS.jsonl`); the first
//! N (default 2,000) are encoded as the deep-thinking conversation's text, without a chat
//! template so that every family encodes the same text. The engines run alternately, twice each,
//! and the faster of each pair is reported, with the CPU time of the measuring thread
//! (`/proc/thread-self/schedstat`); both must give the same ids. This is a measurement, not a
//! check; docs/performance.md records its figures with the machine.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use tokenizers::Tokenizer;
use tunec_runtime::data::encoder::{Engine, EngineChoice, TextEncoder};

/// The allocator of the `tunec` binary, so that the figures are the step's as users run it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FAMILIES: [&str; 9] =
    ["llama3_1", "llama3_2", "qwen2_5", "qwen3", "deepseek_v3", "mistral_nemo", "gptoss", "gemma2", "gemma3"];
const SYSTEM: &str = "You are a deep-thinking AI assistant.\n\nFor every user question, first write your thoughts and \
                      reasoning inside <think>...</think> tags, then provide your answer.";

/// CPU seconds of this thread so far.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).map_or(f64::NAN, |ns| ns / 1e9)
}

/// Wall and CPU seconds of `f`, and the number of tokens it encoded.
fn measure(f: impl Fn() -> usize) -> (f64, f64, usize) {
    let (start, cpu) = (Instant::now(), thread_cpu());
    let tokens = f();
    (start.elapsed().as_secs_f64(), thread_cpu() - cpu, tokens)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (Some(rows), Some(fixtures)) = (args.first(), std::env::var_os("TUNEC_FIXTURES")) else {
        eprintln!("usage: TUNEC_FIXTURES=DIR cargo bench -p tunec-runtime --bench tokenize -- ROWS.jsonl [N]");
        std::process::exit(2);
    };
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let texts: Vec<String> = std::fs::read_to_string(rows)
        .expect("the rows file")
        .lines()
        .take(n)
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("a JSON row");
            let field = |k: &str| row[k].as_str().unwrap_or_default().to_string();
            format!(
                "{SYSTEM}\n\n{}\n\n<think>\n{}\n</think>\n\n{}",
                field("question"),
                field("reasoning"),
                field("answer")
            )
        })
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    println!("{} texts, {:.1} MB", texts.len(), bytes as f64 / 1e6);
    println!("family        tokens     tokenizers tok/CPU-s   engine tok/CPU-s   ratio   engine");
    for family in FAMILIES {
        let path = PathBuf::from(&fixtures).join(family).join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&path).expect("the fixture tokenizer");
        let start = Instant::now();
        let encoder = TextEncoder::new(tokenizer.clone(), EngineChoice::Auto);
        let built = start.elapsed().as_secs_f64();
        let hf = || texts.iter().map(|t| tokenizer.encode(t.as_str(), false).expect("encodes").len()).sum::<usize>();
        let ours = || texts.iter().map(|t| encoder.encode(t).expect("encodes").ids.len()).sum::<usize>();
        let (mut best_hf, mut best_ours) = ((f64::MAX, f64::MAX, 0), (f64::MAX, f64::MAX, 0));
        for _ in 0..2 {
            let a = measure(hf);
            let b = measure(ours);
            assert_eq!(a.2, b.2, "{family}: the engines disagree on the token count");
            if a.1 < best_hf.1 {
                best_hf = a;
            }
            if b.1 < best_ours.1 {
                best_ours = b;
            }
        }
        let rate = |(_, cpu, tokens): (f64, f64, usize)| tokens as f64 / cpu;
        let engine = match encoder.engine() {
            Engine::ByteLevelBpe(_) => format!("fast (built in {built:.2} s)"),
            Engine::Tokenizers { .. } => "tokenizers".to_string(),
        };
        println!(
            "{family:<13} {:>9} {:>21.0} {:>18.0} {:>7.2}   {engine}",
            best_hf.2,
            rate(best_hf),
            rate(best_ours),
            rate(best_ours) / rate(best_hf)
        );
    }
}
