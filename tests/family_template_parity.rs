//! Single-turn parity of the data engine with `transformers` on every real tokenizer the fixtures
//! ship (`.ci/fixtures.sh`): Llama 3.1 and 3.2, Qwen2.5, Qwen3, DeepSeek V3, Mistral Nemo, Gemma 3
//! and cl100k_base (which Phi-4's and OLMo 2's extend; ChatML) with the template of their
//! `tokenizer_config.json`, gpt-oss and Gemma 2 (whose tokenizer files carry none) with TRL's
//! reference templates `gptoss.jinja` and `gemma.jinja`, and Llama 2 (what Granite runs with in
//! tests/families_local.rs) with Mistral Nemo's `[INST]` template, whose markers are plain text in
//! its vocabulary.
//!
//! For each family and each single-turn conversation (with and without a system message, Unicode,
//! surrounding whitespace), the text `runtime/src/data` renders must equal
//! `apply_chat_template(messages, tokenize=False)`, both for the whole conversation and for its
//! prompt with the generation prompt; the ids must equal `tokenizer(text, add_special_tokens=False)`;
//! and the labels must mask exactly the ids of `apply_chat_template(messages[:-1],
//! add_generation_prompt=True, tokenize=True)`, leaving the assistant's answer, and nothing else,
//! to train on; where the prompt's ids are not the start of the conversation's (Mistral Nemo's
//! system message, a newline that merges), ours must refuse the row as TRL does, or train exactly
//! the answer and its end of turn, found in the conversation itself (runtime/src/data/turns.rs). Where
//! transformers' template raises (Gemma 2's on a system message), ours must
//! raise the same message. Multi-turn conversations are in tests/chat_template_parity.rs.
//!
//! It needs `TUNEC_FIXTURES` and `TUNEC_TEST_PYTHON` (transformers 4.56.2), which `.ci/run` sets.

#[path = "support/fixture_templates.rs"]
mod fixture_templates;
#[path = "support/transformers.rs"]
mod transformers_reference;

use std::path::{Path, PathBuf};

use fixture_templates::TemplateSource;
use serde_json::{json, Map, Value};
use transformers_reference::ask_python;
use tunec_runtime::data::template::{ChatTemplate, Message, TemplateError};
use tunec_runtime::data::tokenize::{ChatTokenizer, TokenizeError, IGNORE_INDEX};

/// One family: its folder under `TUNEC_FIXTURES`, and where its template comes from where the
/// tokenizer has none.
const FAMILIES: [(&str, TemplateSource); 11] = [
    ("llama3_1", TemplateSource::Own),
    ("llama3_2", TemplateSource::Own),
    ("qwen2_5", TemplateSource::Own),
    ("qwen3", TemplateSource::Own),
    ("deepseek_v3", TemplateSource::Own),
    ("mistral_nemo", TemplateSource::Own),
    ("gemma3", TemplateSource::Own),
    ("gptoss", TemplateSource::Trl("gptoss.jinja")),
    ("gemma2", TemplateSource::Trl("gemma.jinja")),
    ("gpt4", TemplateSource::Own),
    ("llama2", TemplateSource::Of("mistral_nemo")),
];

/// For each conversation: the whole of it, the ids of its text, and the ids of its prompt.
const PYTHON: &str = r#"
import json, sys
import transformers
from transformers import AutoTokenizer

req = json.load(sys.stdin)
tok = AutoTokenizer.from_pretrained(req["dir"])
kwargs = {} if req["template"] is None else {"chat_template": req["template"]}
out = []
for msgs in req["conversations"]:
    try:
        text = tok.apply_chat_template(msgs, tokenize=False, **kwargs)
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True, **kwargs)
        prompt_ids = tok.apply_chat_template(msgs[:-1], tokenize=True, add_generation_prompt=True, **kwargs)
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
        continue
    out.append({
        "text": text,
        "ids": tok(text, add_special_tokens=False)["input_ids"],
        "prompt": prompt,
        "prompt_ids": list(prompt_ids),
    })
json.dump({"transformers": transformers.__version__, "results": out}, sys.stdout, ensure_ascii=False)
"#;

fn env_path(name: &str) -> PathBuf {
    std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{name} is not set: the parity tests compare with transformers on the real tokenizers; run them \
             through .ci/run (which runs .ci/fixtures.sh and creates the Python venv), or with TUNEC_FIXTURES \
             and TUNEC_TEST_PYTHON exported"
        )
    })
}

/// The single-turn conversations, each ending with the assistant's answer.
fn conversations() -> Vec<Vec<Message>> {
    let m = Message::new;
    vec![
        vec![m("system", "You are a helpful assistant."), m("user", "Hi! What is 2+2?"), m("assistant", "2+2 is 4.")],
        vec![m("user", "Hello"), m("assistant", "Hello! How can I help?")],
        vec![m("user", "Grüße, 世界! Привет 🚀 — ñ café ½"), m("assistant", "こんにちは 👋🏽 ∑ x² ≠ y")],
        vec![
            m("system", "  padded system\t \n"),
            m("user", "   leading and trailing   \n\n"),
            m("assistant", "\n  indented answer\n  second line  \n"),
        ],
    ]
}

/// What transformers made of each conversation, or the message of the error its template raised.
type Theirs = Result<Rendered, String>;

struct Rendered {
    text: String,
    ids: Vec<u32>,
    prompt: String,
    prompt_ids: Vec<u32>,
}

fn transformers(python: &Path, dir: &Path, template: Option<&str>, conversations: &[Vec<Message>]) -> Vec<Theirs> {
    let request = json!({ "dir": dir, "template": template, "conversations": conversations });
    let reply = ask_python(python, &["-c".as_ref(), PYTHON.as_ref()], &request);
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array().expect("ids").iter().map(|id| u32::try_from(id.as_u64().expect("an id")).expect("u32")).collect()
    };
    let text = |v: &Value| v.as_str().expect("text").to_string();
    (reply["results"].as_array().expect("results").iter())
        .map(|r| match r["error"].as_str() {
            Some(error) => Err(error.to_string()),
            None => Ok(Rendered {
                text: text(&r["text"]),
                ids: ids(&r["ids"]),
                prompt: text(&r["prompt"]),
                prompt_ids: ids(&r["prompt_ids"]),
            }),
        })
        .collect()
}

#[test]
fn every_family_renders_tokenizes_and_masks_one_turn_as_transformers() {
    let fixtures = env_path("TUNEC_FIXTURES");
    let python = env_path("TUNEC_TEST_PYTHON");
    let conversations = conversations();
    let none = Map::new();
    let mut failures = Vec::new();
    let mut compared = 0;
    for (family, source) in &FAMILIES {
        let dir = fixtures.join(family);
        let template = source.read(&fixtures);
        let tokenizer = match &template {
            None => ChatTokenizer::from_files(&dir),
            Some(source) => {
                let config = std::fs::read_to_string(dir.join("tokenizer_config.json")).expect("tokenizer_config.json");
                let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json");
                Ok(ChatTokenizer::new(ChatTemplate::from_config(&config, Some(source)).expect("template"), tokenizer))
            }
        }
        .unwrap_or_else(|e| panic!("cannot load {} (run .ci/fixtures.sh): {e}", dir.display()));
        let expected = transformers(&python, &dir, template.as_deref(), &conversations);
        for (i, (messages, theirs)) in conversations.iter().zip(&expected).enumerate() {
            let case = format!("{family}/{i}");
            let text = tokenizer.template().render(messages, false, &none);
            let theirs = match theirs {
                Ok(theirs) => theirs,
                // The template refuses the conversation (Gemma 2's has no system role): ours must too.
                Err(error) => {
                    match text {
                        Err(TemplateError::Raised(message)) if *error == format!("TemplateError: {message}") => {
                            compared += 1
                        }
                        ours => failures.push(format!("{case}: transformers raised {error:?}, ours gave {ours:?}")),
                    }
                    continue;
                }
            };
            let prompt = tokenizer.template().render(&messages[..messages.len() - 1], true, &none);
            if text.as_ref() != Ok(&theirs.text) || prompt.as_ref() != Ok(&theirs.prompt) {
                failures.push(format!(
                    "{case}: rendered\n  ours:         {text:?}\n  transformers: {:?}\n  ours (prompt): {prompt:?}\n  \
                     transformers (prompt): {:?}",
                    theirs.text, theirs.prompt
                ));
                continue;
            }
            let ids = tokenizer.encode_text(&theirs.text).expect("encodes");
            if ids != theirs.ids {
                failures.push(format!("{case}: ids\n  ours:         {ids:?}\n  transformers: {:?}", theirs.ids));
                continue;
            }
            let n = theirs.prompt_ids.len();
            let encoded = tokenizer.encode_conversation(messages, &none);
            if !ids.starts_with(&theirs.prompt_ids) {
                // The prompt's ids are not the conversation's first ids (Mistral Nemo's template writes
                // the system message into the last user turn only, so the conversation has none; a
                // newline after Qwen2.5's generation prompt merges with the answer's): no mask is
                // right, TRL stops on it, and so must ours.
                // The data engine may instead find the turn in the conversation itself, by rendering it
                // again with the answer replaced (runtime/src/data/turns.rs; tests/chat_template_parity.rs
                // compares those masks with transformers' generation markers): then the ids are
                // transformers' and the trained tokens are exactly the answer with its end of turn.
                let answer = messages.last().and_then(|m| m.content()).and_then(|c| c.as_str()).unwrap_or_default();
                // Where the answer's first token is: after the ids of the text before it, when they
                // are the conversation's first ids, or before the ids of the text from it on, when
                // they are its last (not so with a tokenizer that marks the start of its input, as
                // Llama 2's prefix space does).
                let split = theirs.text.rfind(answer).and_then(|at| {
                    let head = tokenizer.encode_text(&theirs.text[..at]).expect("encodes");
                    let tail = tokenizer.encode_text(&theirs.text[at..]).expect("encodes");
                    if ids.starts_with(&head) {
                        Some(head.len())
                    } else {
                        ids.ends_with(&tail).then(|| ids.len() - tail.len())
                    }
                });
                match encoded {
                    Err(TokenizeError::PromptMismatch { prompt_tokens, .. }) if prompt_tokens == n => compared += 1,
                    Ok(example)
                        if example.input_ids == ids
                            && split.is_some_and(|at| {
                                example.labels[..at].iter().all(|&l| l == IGNORE_INDEX)
                                    && example.labels[at..].iter().zip(&ids[at..]).all(|(&l, &id)| l == i64::from(id))
                            }) =>
                    {
                        compared += 1
                    }
                    ours => failures.push(format!("{case}: the prompt is not a prefix, but ours gave {ours:?}")),
                }
                continue;
            }
            let example = match encoded {
                Ok(example) => example,
                Err(e) => {
                    failures.push(format!("{case}: ours cannot encode the conversation: {e}"));
                    continue;
                }
            };
            let labels: Vec<i64> =
                ids.iter().enumerate().map(|(at, &id)| if at < n { IGNORE_INDEX } else { i64::from(id) }).collect();
            if example.input_ids != ids || example.prompt_tokens != n || example.labels != labels {
                failures.push(format!(
                    "{case}: labels: ours mask {} tokens, transformers' prompt has {n}\n  ours: {:?}\n  want: {labels:?}",
                    example.prompt_tokens, example.labels
                ));
                continue;
            }
            compared += 1;
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), FAMILIES.len() * 4, failures.join("\n"));
    assert_eq!(compared, FAMILIES.len() * conversations.len());
}
