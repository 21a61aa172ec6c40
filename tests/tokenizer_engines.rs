//! The fast byte-level BPE engine against `tokenizers`, token for token.
//!
//! On every real tokenizer that `.ci/fixtures.sh` fetches (Llama 3.1 and 3.2, Qwen2.5, Qwen3,
//! DeepSeek V3, Mistral Nemo, gpt-oss, cl100k_base, Gemma 2 and 3, Llama 2) and on examples/tiny-local's (GPT-2's
//! pre-tokenizer, a 512-token vocabulary), each text is encoded by
//! `runtime/src/data/bpe` and by the `tokenizers` crate (`encode(text, false)`, the call the data
//! engine replaces): the ids and the offsets must be identical, with no tolerance. The texts are
//! MedReason-shaped conversations rendered with each family's chat template, adversarial text
//! (long runs of spaces and digits, mixed scripts, emoji sequences, the tokenizer's own special
//! tokens inside content, odd Unicode, very long words) and random strings (proptest). The
//! adversarial texts are also compared with `tokenizers`' Python binding, whose regex engine
//! (Oniguruma) is the one training jobs use.
//!
//! The byte-level families must get the fast engine and the Gemma and Llama 2 tokenizers
//! (SentencePiece-style BPE with a normalizer that replaces spaces) must not, nor cl100k_base's as
//! its package writes it (its regex split keeps the matches through `invert` with `Removed`, a
//! form the fast engine does not take). A text the fast engine hands back (under
//! Qwen's NFC normalizer, one that NFC changes) must be one that NFC changes.
//!
//! Needs `TUNEC_FIXTURES` and `TUNEC_TEST_PYTHON`, as `.ci/run` sets them.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;
use tunec_runtime::data::bpe::ByteLevelBpe;
use tunec_runtime::data::encoder::{Engine, EngineChoice, TextEncoder};
use tunec_runtime::data::template::{ChatTemplate, Message};

/// The families whose tokenizers the fast engine must take; `tiny-local` is examples/tiny-local's
/// (GPT-2's pre-tokenizer, trained by `tokenizers` on 512 tokens, so nearly every piece is merged).
const FAST: [&str; 8] =
    ["llama3_1", "llama3_2", "qwen2_5", "qwen3", "deepseek_v3", "mistral_nemo", "gptoss", "tiny-local"];
/// The families it must leave to `tokenizers`.
const FALLBACK: [&str; 4] = ["gemma2", "gemma3", "llama2", "gpt4"];

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "{name} is not set: these tests compare the tokenizer engines on the real tokenizers; run them through \
             .ci/run, or export TUNEC_FIXTURES (the folder .ci/fixtures.sh fills) and TUNEC_TEST_PYTHON"
        ),
    }
}

struct Family {
    name: &'static str,
    dir: PathBuf,
    tokenizer: Tokenizer,
    fast: Option<ByteLevelBpe>,
    /// The text of every added token.
    added: Vec<String>,
}

fn families() -> &'static [Family] {
    static FAMILIES: OnceLock<Vec<Family>> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let fixtures = env_path("TUNEC_FIXTURES");
        FAST.iter()
            .chain(&FALLBACK)
            .map(|&name| {
                let dir = match name {
                    "tiny-local" => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tiny-local/model"),
                    _ => fixtures.join(name),
                };
                let path = dir.join("tokenizer.json");
                let tokenizer = Tokenizer::from_file(&path)
                    .unwrap_or_else(|e| panic!("cannot load {} (run .ci/fixtures.sh): {e}", path.display()));
                let fast = ByteLevelBpe::new(&tokenizer).ok();
                let mut added: Vec<(u32, String)> =
                    tokenizer.get_added_tokens_decoder().into_iter().map(|(id, t)| (id, t.content)).collect();
                added.sort();
                let added = added.into_iter().map(|(_, content)| content).collect();
                Family { name, dir, tokenizer, fast, added }
            })
            .collect()
    })
}

fn fast_families() -> impl Iterator<Item = &'static Family> {
    families().iter().filter(|f| FAST.contains(&f.name))
}

/// Compares the engines on `text`; `Err` describes the first difference. `Ok(false)` when the fast
/// engine handed the text back (and rightly so).
fn compare(family: &Family, text: &str) -> Result<bool, String> {
    let fast = family.fast.as_ref().ok_or_else(|| format!("{}: no fast engine", family.name))?;
    let theirs = family.tokenizer.encode(text, false).map_err(|e| format!("tokenizers failed: {e}"))?;
    let (mut ids, mut offsets) = (Vec::new(), Vec::new());
    if !fast.encode(text, &mut ids, &mut offsets) {
        let normalizer = family.tokenizer.get_normalizer().ok_or("handed back without a normalizer")?;
        let mut normalized = tokenizers::NormalizedString::from(text);
        tokenizers::Normalizer::normalize(normalizer, &mut normalized).map_err(|e| e.to_string())?;
        return if normalized.get() != text {
            Ok(false)
        } else {
            Err(format!("{}: handed back {text:?}, which the normalizer leaves alone", family.name))
        };
    }
    if ids != theirs.get_ids() {
        let at = ids.iter().zip(theirs.get_ids()).position(|(a, b)| a != b).unwrap_or(ids.len().min(theirs.len()));
        return Err(format!(
            "{}: ids differ at token {at} on {:?}\n  fast:       {:?}\n  tokenizers: {:?}",
            family.name,
            shorten(text),
            &ids[at.saturating_sub(3)..(at + 5).min(ids.len())],
            &theirs.get_ids()[at.saturating_sub(3)..(at + 5).min(theirs.len())],
        ));
    }
    if offsets != theirs.get_offsets() {
        let at = offsets.iter().zip(theirs.get_offsets()).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!(
            "{}: offsets differ at token {at} on {:?}: fast {:?}, tokenizers {:?}",
            family.name,
            shorten(text),
            offsets[at],
            theirs.get_offsets()[at]
        ));
    }
    Ok(true)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 120 {
        return text.to_string();
    }
    let head: String = text.chars().take(60).collect();
    let tail: String = text.chars().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}…({} chars)…{tail}", text.chars().count())
}

/// Compares every family on every text and fails with all the differences.
fn compare_all(texts: &[String]) -> (usize, usize) {
    let mut failures = Vec::new();
    let (mut compared, mut handed_back) = (0, 0);
    for family in fast_families() {
        for text in texts {
            match compare(family, text) {
                Ok(true) => compared += 1,
                Ok(false) => handed_back += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
    (compared, handed_back)
}

#[test]
fn byte_level_families_get_the_fast_engine_and_the_others_tokenizers() {
    for family in families() {
        let encoder = TextEncoder::new(family.tokenizer.clone(), EngineChoice::Auto);
        let fast = FAST.contains(&family.name);
        match encoder.engine() {
            Engine::ByteLevelBpe(description) => {
                assert!(fast, "{}: took the fast engine: {description}", family.name);
                assert!(description.starts_with("byte-level BPE ("), "{description}");
            }
            Engine::Tokenizers { why } => assert!(!fast, "{}: the fast engine refused: {why}", family.name),
        }
        let forced = TextEncoder::new(family.tokenizer.clone(), EngineChoice::Tokenizers);
        assert_eq!(forced.engine(), &Engine::Tokenizers { why: "TUNEC_TOKENIZER=tokenizers".into() });
        // Whatever the engine, TextEncoder gives tokenizers' ids.
        let text = format!("Hello {} world  123 ", family.added.first().map_or("", String::as_str));
        let theirs = family.tokenizer.encode(text.as_str(), false).expect("encodes");
        for e in [&encoder, &forced] {
            let ours = e.encode(&text).expect("encodes");
            assert_eq!(ours.ids, theirs.get_ids(), "{}", family.name);
            assert_eq!(ours.offsets, theirs.get_offsets(), "{}", family.name);
        }
    }
    // Every tokenizer in the fixtures is one of the two lists, so a family added to
    // .ci/fixtures.sh is compared (or checked to be refused) here too.
    let fixtures = env_path("TUNEC_FIXTURES");
    let mut unlisted: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", fixtures.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("tokenizer.json").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !FAST.contains(&name.as_str()) && !FALLBACK.contains(&name.as_str()))
        .collect();
    unlisted.sort();
    assert!(unlisted.is_empty(), "fixture tokenizers in neither FAST nor FALLBACK: {unlisted:?}");
    let gemma = families().iter().find(|f| f.name == "gemma3").expect("gemma3");
    let why = ByteLevelBpe::new(&gemma.tokenizer).err().expect("gemma3 is refused");
    assert!(why.contains("normalizer `Replace`"), "{why}");
}

const SYSTEM: &str = "You are a deep-thinking AI assistant.\n\nFor every user question, first write your thoughts and \
                      reasoning inside <think>...</think> tags, then provide your answer.";

/// MedReason-shaped rows: the repository's fixture rows, and a few with the characters clinical
/// text has (units, Greek letters, dashes, inequalities).
fn medreason_rows() -> Vec<(String, String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/medreason.jsonl");
    let mut rows: Vec<(String, String, String)> = std::fs::read_to_string(&path)
        .expect("tests/data/medreason.jsonl")
        .lines()
        // The file also has a blank line and a broken row, for the data step's bad-row tests.
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (field("question"), field("answer"), field("reasoning"))
        })
        .collect();
    assert!(rows.len() >= 30, "{} rows in {}", rows.len(), path.display());
    rows.push((
        "A 54-year-old man has a temperature of 38.9 °C, HbA1c ≥ 6.5 %, and K⁺ 5.9 mmol/L. Next step?".into(),
        "IV calcium gluconate — then insulin + glucose".into(),
        "Hyperkalaemia (K⁺ > 5.5) with ECG changes: stabilise the myocardium first (10 mL of 10 % Ca²⁺), \
         then shift K⁺ with 10 U insulin; β₂-agonists help. Dose ≈ 0.1 U/kg; µg/kg/min for infusions.\n\n\
         Differential: α-thalassaemia vs. β-thalassaemia (HbA₂ 3.5 %)."
            .into(),
    ));
    rows.push((
        "Which drug—aspirin, clopidogrel or ticagrelor—is contraindicated? (Patient: Müller, Zoë; 72 y)".into(),
        "ticagrelor".into(),
        "CrCl = [(140 − age) × weight] / (72 × Cr) ≈ 38 mL/min.\r\nListed as “avoid” in stage 3b; don't use it.".into(),
    ));
    rows
}

/// The conversation as the family's chat template renders it (its own, or TRL's reference
/// template when `tokenizer_config.json` has none), or in Llama 3's layout when neither renders.
fn render(family: &Family, (question, answer, reasoning): &(String, String, String)) -> String {
    let messages = vec![
        Message::new("system", SYSTEM),
        Message::new("user", question),
        Message::new("assistant", &format!("<think>\n{reasoning}\n</think>\n\n{answer}")),
    ];
    let config = std::fs::read_to_string(family.dir.join("tokenizer_config.json")).unwrap_or_default();
    let trl = env_path("TUNEC_FIXTURES")
        .join("trl_chat_templates")
        .join(format!("{}.jinja", family.name.replace("deepseek_v3", "deepseekv3")));
    let rendered = ChatTemplate::from_files(&family.dir)
        .map_err(|e| e.to_string())
        .or_else(|_| {
            let jinja = std::fs::read_to_string(&trl).map_err(|e| e.to_string())?;
            ChatTemplate::from_config(&config, Some(&jinja)).map_err(|e| e.to_string())
        })
        .ok()
        .and_then(|t| t.render(&messages, false, &Map::new()).ok());
    rendered.unwrap_or_else(|| {
        format!(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|><|start_header_id|>user\
             <|end_header_id|>\n\n{question}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<think>\n\
             {reasoning}\n</think>\n\n{answer}<|eot_id|>"
        )
    })
}

#[test]
fn medreason_conversations_encode_alike() {
    let rows = medreason_rows();
    let mut failures = Vec::new();
    let mut compared = 0;
    for family in fast_families() {
        for row in &rows {
            for text in [render(family, row), row.0.clone(), row.2.clone()] {
                match compare(family, &text) {
                    Ok(_) => compared += 1,
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(compared, rows.len() * 3 * FAST.len());
}

/// Text made to find the corners of the split patterns, the added tokens and the merge loop.
fn adversarial() -> Vec<String> {
    let mut texts: Vec<String> = Vec::new();
    let mut add = |s: String| texts.push(s);
    for n in [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 257, 1000, 4096, 20_000] {
        for unit in [" ", "\n", "\t", "\r\n", " \n", "\u{3000}", "\u{a0}", "\u{85}", " \t"] {
            let run = unit.repeat(n);
            add(run.clone());
            add(format!("x{run}"));
            add(format!("{run}x"));
            add(format!("a{run}b"));
            add(format!("a{run}1"));
            add(format!(".{run}!"));
        }
        add("1".repeat(n));
        add(format!("x{}y", "9876543210".repeat(n.min(2000) / 10 + 1)));
        add(format!("{} {}", "１２３".repeat(n.min(500)), "٣".repeat(n.min(500))));
        add("a".repeat(n));
        add("Ab".repeat(n.min(5000)));
        add("!".repeat(n));
        add("-".repeat(n));
        add("👍".repeat(n.min(2000)));
        add("é".repeat(n.min(3000)));
        add("ſ".repeat(n.min(3000)));
    }
    for s in [
        "Hello world! How're you? I'M fine, THEY'LL see; she'd've gone. 'S 'ſ 'Ll 'lL ''s ''' 's",
        "don't DON'T Don'T won’t (curly) it‘s",
        "第1章：概述。日本語のテキストとカタカナ123４５６、한국어 텍스트, русский текст, ελληνικά, עברית, العربية ١٢٣",
        "हिन्दी में लिखा गया पाठ, தமிழ் உரை, ภาษาไทยไม่มีช่องว่าง, ქართული, Ελληνικά",
        "Hello世界123мир!αβγ😀mixed",
        "👍 👍🏽 👨‍👩‍👧‍👦 🇺🇸🇫🇷 ❤️ 🏳️‍🌈 1️⃣ a👍b 🧑🏿‍🚀 🫠",
        "\u{fffd}\u{fffe}\u{ffff}\u{10ffff}\u{e000}\u{f8ff} \u{0378}\u{1ffff} replacement and noncharacters",
        "\u{301} starts with a mark, a\u{301}\u{301}\u{301}, \u{301}\u{302}\u{303}, e\u{301}",
        "\u{200d}\u{200c}\u{feff}\u{202e}reversed\u{202c} zero width and bidi controls",
        "\0\u{1}\u{7f}\u{85}\u{2028}\u{2029}\u{b}\u{c} control and separator characters",
        "\u{1100}\u{1161}\u{11a8} jamo, \u{212b} angstrom, \u{2126} ohm, K kelvin",
        "ⅫⅧ ²³¹ ½ ⁿ ① Roman, superscript and circled numbers",
        "path/to/file.txt, a//b, x///\n/\nhttps://example.com/a/b?c=d&e=f#g",
        "def f(x):\n    return {\"a\": [1, 2, 3]}  # comment\n\n\tif x:\n\t\tpass\r\n",
        ".Hello ,world (a) [B] {cD} <tag attr=\"v\"/> $$$ ((( ))) --- ... ??? +++",
        "CamelCaseWords HTTPServer iPhone ÉCOLE élève ǅungla McDonald'S XMLHttpRequest",
        "µg/kg/min ≥ 38.9 °C — ±2 σ, Na⁺/K⁺-ATPase, 10⁹/L, H₂O, café, naïve, coöperate",
        "",
        "\u{1F600}\u{1F3FD}\u{200D}\u{2640}\u{FE0F}",
    ] {
        add(s.to_string());
    }
    let url = format!("https://example.com/{}", "abcdefghij/".repeat(300));
    add(url);
    add("supercalifragilisticexpialidocious".repeat(300));
    add("QmFzZTY0IGVuY29kZWQgZGF0YQ==".repeat(200));
    texts
}

/// Each family's special tokens inside content: whole, cut short, doubled, nested, between
/// letters and spaces, in another case.
fn special_token_texts(family: &Family) -> Vec<String> {
    let mut texts = Vec::new();
    let tokens: Vec<&String> = family.added.iter().take(40).chain(family.added.iter().rev().take(10)).collect();
    texts.push(tokens.iter().map(|t| t.as_str()).collect::<String>());
    texts.push(tokens.iter().map(|t| format!(" {t} ")).collect::<String>());
    for t in tokens.iter().take(12) {
        let cut: String = t.chars().take(t.chars().count().saturating_sub(1)).collect();
        texts.push(format!("abc{t}def {cut} {t}{t} <{t}> {} x{t}\n\n{}", t.to_uppercase(), &t[1.min(t.len())..]));
        texts.push(format!("{t}{}", " ".repeat(5)));
    }
    texts
}

#[test]
fn adversarial_texts_encode_alike() {
    let mut texts = adversarial();
    for family in families() {
        texts.extend(special_token_texts(family));
    }
    let (compared, handed_back) = compare_all(&texts);
    // Every text was compared on every family, but for the ones NFC changes under Qwen.
    assert_eq!(compared + handed_back, texts.len() * FAST.len());
    assert!(handed_back > 0 && handed_back < texts.len(), "{handed_back} texts handed back");
}

/// Runs `tokenizers`' Python binding (Oniguruma regexes) on every family and text.
const PYTHON: &str = r#"
import json, sys
from tokenizers import Tokenizer
req = json.load(sys.stdin)
out = {}
for name, path in req["tokenizers"].items():
    tok = Tokenizer.from_file(path)
    out[name] = [e.ids for e in tok.encode_batch(req["texts"], add_special_tokens=False)]
json.dump(out, sys.stdout)
"#;

#[test]
fn adversarial_texts_encode_as_the_python_binding_does() {
    let python = env_path("TUNEC_TEST_PYTHON");
    let mut texts = adversarial();
    for family in families() {
        texts.extend(special_token_texts(family));
    }
    let paths: Map<String, Value> =
        fast_families().map(|f| (f.name.to_string(), json!(f.dir.join("tokenizer.json")))).collect();
    let mut child = Command::new(&python)
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let request = json!({"tokenizers": paths, "texts": texts});
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("writes the request");
    let output = child.wait_with_output().expect("python runs");
    assert!(output.status.success(), "the Python binding failed");
    let theirs: Map<String, Value> = serde_json::from_slice(&output.stdout).expect("JSON from Python");
    let mut failures = Vec::new();
    for family in fast_families() {
        let fast = family.fast.as_ref().expect("fast engine");
        let all = theirs[family.name].as_array().expect("a list per family");
        for (text, ids) in texts.iter().zip(all) {
            let theirs: Vec<u32> = serde_json::from_value(ids.clone()).expect("ids");
            let (mut ours, mut offsets) = (Vec::new(), Vec::new());
            if fast.encode(text, &mut ours, &mut offsets) && ours != theirs {
                failures.push(format!("{}: {:?}", family.name, shorten(text)));
            }
        }
    }
    assert!(failures.is_empty(), "{} texts differ from the Python binding:\n{}", failures.len(), failures.join("\n"));
}

/// Characters from every class the split patterns test, weighted toward the corners.
fn any_char() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::char::range(' ', '~').prop_map(String::from),
        2 => proptest::sample::select(vec![" ", "  ", "\n", "\r\n", "\t", "\u{a0}", "\u{3000}", "\u{85}", "\r"])
            .prop_map(String::from),
        2 => proptest::sample::select(vec!["0", "7", "１", "٣", "²", "Ⅻ", "½"]).prop_map(String::from),
        2 => proptest::sample::select(vec![
            "é", "ß", "Ж", "λ", "Σ", "ǅ", "ſ", "İ", "中", "ア", "ー", "한", "ا", "ह", "ि", "\u{301}", "\u{20dd}",
            "'s", "'LL", "'ve", "’",
        ])
        .prop_map(String::from),
        1 => proptest::sample::select(vec!["👍", "🏽", "\u{200d}", "\u{fe0f}", "🇫", "\u{feff}", "\u{fffd}", "\0"])
            .prop_map(String::from),
        1 => proptest::sample::select(vec![
            "<|eot_id|>", "<|im_end|>", "<|end▁of▁sentence|>", "<|return|>", "[INST]", "<|eot_id|",
            "<｜Assistant｜>", "<think>", "</think>",
        ])
        .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ]
}

proptest! {
    // No regression file: a failure prints its input, and a missing TUNEC_FIXTURES is not a case
    // worth saving.
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_strings_encode_alike(parts in proptest::collection::vec(any_char(), 0..120)) {
        let text: String = parts.concat();
        for family in fast_families() {
            if let Err(e) = compare(family, &text) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
