//! Tokenizing rendered conversations into `input_ids` and assistant-only `labels`.
//!
//! The rendered text already holds every special token the template wrote (Llama 3's
//! `<|begin_of_text|>` included), so it is encoded with `add_special_tokens=false`, as
//! `apply_chat_template(tokenize=True)` does; encoding it with the tokenizer's defaults would add a
//! second BOS. The loss covers the final assistant message only: the conversation without it is
//! rendered with `add_generation_prompt=true`, its ids must be a prefix of the whole conversation's
//! ids (TRL fails with "Mismatch between tokenized prompt and the start of tokenized prompt+completion"
//! otherwise), and those prompt positions get the label -100. The rest, the assistant's content and its
//! end-of-turn token, is trained.
//!
//! **Tokenizing once.** Encoding the prompt on its own would cost a quarter more tokenizer work on
//! typical rows, so the prefix check is answered from the conversation's encoding. A tokenizer cuts
//! its input at added tokens (`<|end_header_id|>`, ...) before anything else and encodes the pieces
//! independently, so when the rendered prompt is a prefix of the rendered conversation, and the
//! conversation's encoding has an added token inside that prefix, the prompt's ids up to that token
//! are the conversation's. Only the prompt's tail from its last such token (on Llama 3,
//! `<|end_header_id|>\n\n`) is encoded and compared. When any of this does not hold (no added token,
//! a prompt that is not a textual prefix, a tail that differs) the whole prompt is encoded as before,
//! so the result and the errors are the same as encoding both texts.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use tokenizers::Tokenizer;

use super::encoder::{Engine, EngineChoice, TextEncoder, Tokens as Encoding};
use super::template::{ChatTemplate, Message, TemplateError, Vars};
use super::turns::{self, Mismatch, Renders, Tokens, TurnError};

/// The label of a position that takes no part in the loss (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Why a conversation could not be tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizeError {
    /// The template failed to load or render.
    Template(TemplateError),
    /// `tokenizer.json` failed to load, or encoding failed.
    Tokenizer(String),
    /// Only a conversation that ends with an assistant message has something to train on.
    LastNotAssistant { role: Option<String> },
    /// The prompt's ids are not a prefix of the conversation's ids: the template renders the
    /// generation prompt differently from the assistant turn, or the tokenizer merges across it.
    PromptMismatch { prompt_tokens: usize, conversation_tokens: usize, first_difference: usize },
    /// An assistant turn (the message at `turn`, from 0) cannot be told apart in the rendered text.
    TurnNotFound { turn: usize, reason: String },
}

impl std::fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenizeError::Template(e) => e.fmt(f),
            TokenizeError::Tokenizer(message) => write!(f, "tokenizer: {message}"),
            TokenizeError::LastNotAssistant { role: Some(role) } => {
                write!(f, "the last message is from `{role}`; assistant-only labels need a final assistant message")
            }
            TokenizeError::LastNotAssistant { role: None } => {
                write!(f, "the conversation has no messages")
            }
            TokenizeError::PromptMismatch { prompt_tokens, conversation_tokens, first_difference } => write!(
                f,
                "mismatch between the tokenized prompt ({prompt_tokens} tokens) and the start of the \
                 tokenized conversation ({conversation_tokens} tokens): they differ at token \
                 {first_difference}"
            ),
            TokenizeError::TurnNotFound { turn, reason } => write!(
                f,
                "cannot tell where assistant message {} ends in the rendered conversation: {reason}; \
                 exact per-turn labels are impossible with this template (set `train_on = last_assistant` or `all`)",
                turn + 1
            ),
        }
    }
}

impl std::error::Error for TokenizeError {}

impl From<TemplateError> for TokenizeError {
    fn from(e: TemplateError) -> Self {
        TokenizeError::Template(e)
    }
}

impl From<TurnError> for TokenizeError {
    fn from(e: TurnError) -> Self {
        match e {
            TurnError::Template(e) => TokenizeError::Template(e),
            TurnError::Tokenizer(message) => TokenizeError::Tokenizer(message),
            TurnError::Boundary { prompt_tokens, conversation_tokens, first_difference, .. } => {
                TokenizeError::PromptMismatch { prompt_tokens, conversation_tokens, first_difference }
            }
            TurnError::NotFound { turn, reason } => TokenizeError::TurnNotFound { turn, reason },
        }
    }
}

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub input_ids: Vec<u32>,
    /// Same length as `input_ids`: [`IGNORE_INDEX`] on the prompt, the id itself after it.
    pub labels: Vec<i64>,
    /// How many leading tokens are the prompt of the final assistant turn.
    pub prompt_tokens: usize,
    /// The token ranges of the trained assistant turns, in order (empty when every token is
    /// trained).
    pub turns: Vec<Range<usize>>,
}

/// What to do with an example longer than `seq_len`, as the pipeline declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Leave the example out.
    Drop,
    /// Keep the first `seq_len` tokens.
    Truncate,
    /// Fail the data step.
    Error,
}

/// What happened to one example under a `seq_len` and an [`OverflowPolicy`]; the caller counts them
/// for the data profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// The example fits.
    Kept(Example),
    /// The example was cut to at most `seq_len` tokens; it had `tokens`, and `turns_lost` of its
    /// trained assistant turns are gone (the one cut in the middle included).
    Truncated { example: Example, tokens: usize, turns_lost: usize },
    /// The example, of `tokens` tokens, was left out: too long under `overflow = drop`, or with
    /// nothing left to train on once cut.
    Dropped { tokens: usize },
    /// The example has `tokens` tokens and the policy is `error`.
    TooLong { tokens: usize },
}

/// Applies `policy` to an example for sequences of `seq_len` tokens.
///
/// `truncate` cuts at the end of the last assistant turn that fits, so that the example ends on a
/// turn boundary and no turn is half trained. When not even the first trained turn fits, the cut
/// falls inside it at `seq_len` (its start fits), or the example is dropped: a prompt that fills
/// `seq_len` leaves nothing to train on. An example trained on every token (`train_on = all`) is cut
/// at `seq_len`.
pub fn fit(example: Example, seq_len: usize, policy: OverflowPolicy) -> Fit {
    let tokens = example.input_ids.len();
    if tokens <= seq_len {
        return Fit::Kept(example);
    }
    match policy {
        OverflowPolicy::Drop => Fit::Dropped { tokens },
        OverflowPolicy::Error => Fit::TooLong { tokens },
        OverflowPolicy::Truncate => {
            let whole = example.turns.iter().take_while(|turn| turn.end <= seq_len).count();
            let (cut, kept_turns) = match example.turns.get(whole) {
                _ if example.turns.is_empty() => (seq_len, 0),
                _ if whole > 0 => (example.turns[whole - 1].end, whole),
                Some(first) if first.start < seq_len => (seq_len, 1),
                _ => return Fit::Dropped { tokens },
            };
            let turns_lost = example.turns.len().saturating_sub(whole);
            let mut example = example;
            example.input_ids.truncate(cut);
            example.labels.truncate(cut);
            example.prompt_tokens = example.prompt_tokens.min(cut);
            example.turns.truncate(kept_turns);
            if let Some(last) = example.turns.last_mut() {
                last.end = last.end.min(cut);
            }
            Fit::Truncated { example, tokens, turns_lost }
        }
    }
}

/// Which tokens of a conversation carry loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trained {
    /// Every token.
    All,
    /// The assistant messages at these indices (increasing), each with its end-of-turn token.
    Turns(Vec<usize>),
}

/// A chat template and the tokenizer of the same model.
#[derive(Debug)]
pub struct ChatTokenizer {
    template: ChatTemplate,
    encoder: Arc<TextEncoder>,
    /// The text of each added token by id: the tokens the tokenizer cuts its input at.
    added: HashMap<u32, String>,
    /// The ids of the added tokens marked special (end-of-turn tokens are).
    special: std::collections::HashSet<u32>,
}

impl ChatTokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json` and an optional `chat_template.jinja` from a
    /// model or tokenizer directory; the encoding engine follows `TUNEC_TOKENIZER`
    /// ([`EngineChoice::from_env`]).
    pub fn from_files(dir: &Path) -> Result<ChatTokenizer, TokenizeError> {
        let template = ChatTemplate::from_files(dir)?;
        let choice = EngineChoice::from_env().map_err(TokenizeError::Tokenizer)?;
        let encoder = TextEncoder::from_file(&dir.join("tokenizer.json"), choice).map_err(TokenizeError::Tokenizer)?;
        Ok(ChatTokenizer::with_encoder(template, Arc::new(encoder)))
    }

    /// A template and a tokenizer, encoded by the fast engine where it is exact.
    pub fn new(template: ChatTemplate, tokenizer: Tokenizer) -> ChatTokenizer {
        ChatTokenizer::with_encoder(template, Arc::new(TextEncoder::new(tokenizer, EngineChoice::Auto)))
    }

    pub fn with_encoder(template: ChatTemplate, encoder: Arc<TextEncoder>) -> ChatTokenizer {
        let decoder = encoder.tokenizer().get_added_tokens_decoder();
        let special = decoder.iter().filter(|(_, token)| token.special).map(|(&id, _)| id).collect();
        let added = decoder.into_iter().map(|(id, token)| (id, token.content)).collect();
        ChatTokenizer { template, encoder, added, special }
    }

    /// The same tokenizer with another template (a pipeline's own `chat_template`).
    pub fn with_template(&self, template: ChatTemplate) -> ChatTokenizer {
        ChatTokenizer::with_encoder(template, self.encoder.clone())
    }

    /// The engine that encodes the rendered texts.
    pub fn engine(&self) -> &Engine {
        self.encoder.engine()
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// The ids of already rendered text, without adding special tokens (as
    /// `tokenizer(text, add_special_tokens=False)["input_ids"]`).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizeError> {
        Ok(self.encoder.encode(text).map_err(TokenizeError::Tokenizer)?.ids)
    }

    /// Renders and tokenizes a conversation that ends with an assistant message, with labels on
    /// that message only. `extra` holds further template variables (`date_string`, ...).
    pub fn encode_conversation(
        &self,
        messages: &[Message],
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Example, TokenizeError> {
        self.encode_rendered(messages, extra, true).map(|e| e.example)
    }

    /// [`encode_conversation`](Self::encode_conversation), keeping the rendered texts. With
    /// `mask_prompt` the labels cover the final assistant message only, and the rendered prompt's ids
    /// must be a prefix of the conversation's (TRL's check); without it every token is trained.
    pub fn encode_rendered(
        &self,
        messages: &[Message],
        extra: &serde_json::Map<String, serde_json::Value>,
        mask_prompt: bool,
    ) -> Result<Encoded, TokenizeError> {
        let trained = if mask_prompt { Trained::Turns(vec![messages.len().saturating_sub(1)]) } else { Trained::All };
        self.encode_turns(messages, &Vars { extra, tools: None }, &trained)
    }

    /// Renders and tokenizes a conversation that ends with an assistant message, with labels on the
    /// `trained` tokens: the assistant turns at the given indices (found as `runtime/src/data/turns.rs`
    /// describes), or every token.
    pub fn encode_turns(
        &self,
        messages: &[Message],
        vars: &Vars<'_>,
        trained: &Trained,
    ) -> Result<Encoded, TokenizeError> {
        let Some(last) = messages.last() else {
            return Err(TokenizeError::LastNotAssistant { role: None });
        };
        if last.role() != "assistant" {
            return Err(TokenizeError::LastNotAssistant { role: Some(last.role().to_string()) });
        }
        let values: Vec<minijinja::Value> = messages.iter().map(Message::to_value).collect();
        let final_turn = messages.len() - 1;
        let prompt = self.template.render_values(&values[..final_turn], true, vars)?;
        let text = self.template.render_values(&values, false, vars)?;
        let encoding = self.encoder.encode(&text).map_err(TokenizeError::Tokenizer)?;
        let input_ids = encoding.ids.clone();
        let (labels, prompt_tokens, turns) = match trained {
            Trained::All => {
                let prompt_tokens = match self.prompt_tokens_from(&prompt, &text, &encoding)? {
                    Some(n) => n,
                    None => self.encode_text(&prompt)?.len(),
                };
                (input_ids.iter().map(|&id| i64::from(id)).collect(), prompt_tokens, Vec::new())
            }
            Trained::Turns(indices) => {
                let spans = self.turn_spans(messages, &values, vars, &text, &prompt, &encoding, indices)?;
                let mut labels = vec![IGNORE_INDEX; input_ids.len()];
                for span in &spans {
                    for i in span.clone() {
                        labels[i] = i64::from(input_ids[i]);
                    }
                }
                let prompt_tokens = match (indices.last(), spans.last()) {
                    (Some(&turn), Some(span)) if turn == final_turn => span.start,
                    _ => self.prompt_tokens_from(&prompt, &text, &encoding)?.unwrap_or(0),
                };
                (labels, prompt_tokens, spans)
            }
        };
        let example = Example { input_ids, labels, prompt_tokens, turns };
        Ok(Encoded { text, prompt, example })
    }

    /// The token ranges of the assistant turns at `indices` (see `turns.rs`).
    #[allow(clippy::too_many_arguments)]
    fn turn_spans(
        &self,
        messages: &[Message],
        values: &[minijinja::Value],
        vars: &Vars<'_>,
        text: &str,
        final_prompt: &str,
        encoding: &Encoding,
        indices: &[usize],
    ) -> Result<Vec<Range<usize>>, TokenizeError> {
        let render = |values: &[minijinja::Value], agp: bool| self.template.render_values(values, agp, vars);
        let renders = Renders { messages, values, render: &render };
        let is_added = |id: u32| self.added.contains_key(&id);
        let is_special = |id: u32| self.special.contains(&id);
        let prefix_tokens = |prefix: &str| self.prefix_ids(prefix, text, encoding).map_err(|e| e.to_string());
        let encode = |fragment: &str| {
            let encoding = self.encoder.encode(fragment)?;
            Ok((encoding.ids, encoding.offsets))
        };
        let tokens = Tokens {
            ids: &encoding.ids,
            offsets: &encoding.offsets,
            is_added: &is_added,
            is_special: &is_special,
            prefix_tokens: &prefix_tokens,
            encode: &encode,
        };
        let final_turn = messages.len() - 1;
        let mut prompts = |turn: usize| {
            if turn == final_turn {
                Ok(final_prompt.to_string())
            } else {
                self.template.render_values(&values[..turn], true, vars)
            }
        };
        Ok(turns::locate(&renders, text, &tokens, indices, &mut prompts)?)
    }

    /// How many of `text`'s ids the rendered prefix `prefix` tokenizes to, when its own ids are the
    /// first ids of `text`; otherwise its token count and where they first differ.
    fn prefix_ids(
        &self,
        prefix: &str,
        text: &str,
        encoding: &Encoding,
    ) -> Result<Result<usize, Mismatch>, TokenizeError> {
        if let Some(n) = self.prompt_tokens_from(prefix, text, encoding)? {
            return Ok(Ok(n));
        }
        let prefix_ids = self.encode_text(prefix)?;
        let input_ids = &encoding.ids;
        if input_ids.starts_with(&prefix_ids) {
            return Ok(Ok(prefix_ids.len()));
        }
        let first_difference =
            prefix_ids.iter().zip(input_ids).position(|(a, b)| a != b).unwrap_or(prefix_ids.len().min(input_ids.len()));
        Ok(Err(Mismatch { prefix_tokens: prefix_ids.len(), first_difference }))
    }

    /// The number of the prompt's tokens when the conversation's encoding shows that the prompt's
    /// ids are a prefix of it (see the module docs), without encoding the whole prompt; `None` when
    /// that cannot be shown this way.
    fn prompt_tokens_from(
        &self,
        prompt: &str,
        text: &str,
        encoding: &Encoding,
    ) -> Result<Option<usize>, TokenizeError> {
        if !text.starts_with(prompt) {
            return Ok(None);
        }
        let (ids, offsets) = (&encoding.ids, &encoding.offsets);
        // The last added token that ends inside the prompt, found where its text is.
        let inside = offsets.partition_point(|&(_, end)| end <= prompt.len());
        let anchor = (0..inside).rev().find_map(|i| {
            let content = self.added.get(&ids[i])?;
            let (start, end) = offsets[i];
            (end <= prompt.len() && text.get(start..end) == Some(content.as_str())).then_some((i, start))
        });
        let Some((index, tail)) = anchor.and_then(|(index, start)| Some((index, prompt.get(start..)?))) else {
            return Ok(None);
        };
        let tail = self.encode_text(tail)?;
        Ok(ids[index..].starts_with(&tail).then_some(index + tail.len()))
    }
}

impl ChatTokenizer {
    /// The most bytes of rendered text that one token can stand for, with a margin of 4 for
    /// normalizers that compose characters (NFC, NFKC); `None` when no such bound holds for this
    /// tokenizer. A text longer than `seq_len` times this has more than `seq_len` tokens, which
    /// the data step can then tell without encoding it (a 50 MB row under `overflow = drop`).
    ///
    /// The bound holds for a BPE model that never needs an unknown token (a byte-level
    /// pre-tokenizer, or byte fallback): every token's text is then at least as long in UTF-8 as
    /// the bytes it covers, and an added token covers its own content. It does not hold when a
    /// normalizer may delete or collapse text (Strip, a Replace that shortens, NMT or precompiled
    /// SentencePiece rules), nor when an unknown token may cover any length (WordLevel,
    /// WordPiece, Unigram).
    pub fn max_bytes_per_token(&self) -> Option<usize> {
        let tokenizer = self.encoder.tokenizer();
        let tokenizers::models::ModelWrapper::BPE(bpe) = tokenizer.get_model() else { return None };
        let pre = tokenizer.get_pre_tokenizer().and_then(|p| serde_json::to_string(p).ok()).unwrap_or_default();
        if !bpe.byte_fallback && !pre.contains(r#""type":"ByteLevel""#) {
            return None;
        }
        if let Some(normalizer) = tokenizer.get_normalizer() {
            if !never_shrinks_much(&serde_json::to_value(normalizer).ok()?) {
                return None;
            }
        }
        let longest = tokenizer.get_vocab(true).keys().map(String::len).max()?;
        Some(longest.max(1) * 4)
    }
}

/// Whether a normalizer (as its tokenizer.json object) shortens a text by at most a factor of 4.
fn never_shrinks_much(normalizer: &serde_json::Value) -> bool {
    match normalizer["type"].as_str() {
        Some("NFC" | "NFD" | "NFKC" | "NFKD" | "Lowercase" | "Prepend" | "ByteLevel") => true,
        Some("Sequence") => normalizer["normalizers"].as_array().is_some_and(|n| n.iter().all(never_shrinks_much)),
        Some("Replace") => match (normalizer["pattern"]["String"].as_str(), normalizer["content"].as_str()) {
            (Some(pattern), Some(content)) => !pattern.is_empty() && content.len() >= pattern.len(),
            _ => false,
        },
        _ => false,
    }
}

/// A conversation rendered and tokenized: the texts the output rows carry, and the example.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// The whole conversation, rendered.
    pub text: String,
    /// The conversation without its last message, rendered with the generation prompt.
    pub prompt: String,
    pub example: Example,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;

    /// A word-level tokenizer whose post-processor adds `<s>`, as Llama 3's adds BOS.
    const TOKENIZER: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [
        {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 1, "content": "<eot>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 2, "content": "<user>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
        {"id": 3, "content": "<asst>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}
      },
      "decoder": null,
      "model": {"type": "WordLevel", "unk_token": "[UNK]",
        "vocab": {"<s>": 0, "<eot>": 1, "<user>": 2, "<asst>": 3, "hi": 4, "hello": 5, "there": 6, "[UNK]": 7}}
    }"#;

    fn chat_tokenizer(generation_prompt: &str) -> ChatTokenizer {
        let source = format!(
            "{{{{ bos_token }}}}{{% for m in messages %}}{{% if m.role == 'user' %}}<user>{{% else %}}<asst>\
             {{% endif %}} {{{{ m.content }}}} <eot>{{% endfor %}}{{% if add_generation_prompt %}}{generation_prompt}{{% endif %}}"
        );
        let config = serde_json::json!({"chat_template": source, "bos_token": "<s>"});
        let template = ChatTemplate::from_config(&config.to_string(), None).expect("template");
        let tokenizer = Tokenizer::from_str(TOKENIZER).expect("tokenizer");
        ChatTokenizer::new(template, tokenizer)
    }

    fn conversation() -> Vec<Message> {
        vec![Message::new("user", "hi"), Message::new("assistant", "hello there")]
    }

    #[test]
    fn labels_cover_the_assistant_turn_only() {
        let tok = chat_tokenizer("<asst>");
        let example = tok.encode_conversation(&conversation(), &serde_json::Map::new()).expect("encodes");
        // <s> <user> hi <eot> | <asst> hello there <eot>: the assistant header is part of the prompt.
        assert_eq!(example.input_ids, vec![0, 2, 4, 1, 3, 5, 6, 1]);
        assert_eq!(example.prompt_tokens, 5);
        assert_eq!(example.labels, vec![-100, -100, -100, -100, -100, 5, 6, 1]);
        // Rendered text already has its BOS; encoding must not add another.
        assert_eq!(example.input_ids.iter().filter(|&&id| id == 0).count(), 1);
        let rendered = tok.template().render(&conversation(), false, &serde_json::Map::new()).expect("renders");
        assert_eq!(tok.encode_text(&rendered).expect("encodes"), example.input_ids);
    }

    #[test]
    fn a_prompt_that_is_not_a_textual_prefix_is_found_by_probes() {
        // The template prompts with something the assistant turn does not begin with: the turn is
        // its text and end-of-turn token, the template's own header masked.
        for generation_prompt in ["<user>", " x"] {
            let tok = chat_tokenizer(generation_prompt);
            let example = tok.encode_conversation(&conversation(), &serde_json::Map::new()).expect("encodes");
            assert_eq!(example.labels, vec![-100, -100, -100, -100, -100, 5, 6, 1], "{generation_prompt:?}");
            assert_eq!(example.turns, [Range { start: 5, end: 8 }]);
        }
        let tok = chat_tokenizer("<asst>");
        let user_last = [Message::new("user", "hi")];
        assert!(matches!(
            tok.encode_conversation(&user_last, &serde_json::Map::new()),
            Err(TokenizeError::LastNotAssistant { role: Some(r) }) if r == "user"
        ));
        assert!(matches!(
            tok.encode_conversation(&[], &serde_json::Map::new()),
            Err(TokenizeError::LastNotAssistant { role: None })
        ));
    }

    #[test]
    fn every_assistant_turn_is_trained() {
        let tok = chat_tokenizer("<asst>");
        let messages = [
            Message::new("user", "hi"),
            Message::new("assistant", "hello"),
            Message::new("user", "there"),
            Message::new("assistant", "hi there"),
        ];
        let vars = Vars { extra: &serde_json::Map::new(), tools: None };
        // <s> <user> hi <eot> <asst> hello <eot> <user> there <eot> <asst> hi there <eot>
        let all = tok.encode_turns(&messages, &vars, &Trained::Turns(vec![1, 3])).expect("encodes");
        assert_eq!(all.example.input_ids, vec![0, 2, 4, 1, 3, 5, 1, 2, 6, 1, 3, 4, 6, 1]);
        assert_eq!(all.example.turns, vec![5..7, 11..14]);
        let masked = |keep: &[usize]| -> Vec<i64> {
            (all.example.input_ids.iter().enumerate())
                .map(|(i, &id)| if keep.contains(&i) { i64::from(id) } else { IGNORE_INDEX })
                .collect()
        };
        assert_eq!(all.example.labels, masked(&[5, 6, 11, 12, 13]));
        assert_eq!(all.example.prompt_tokens, 11);
        let last = tok.encode_turns(&messages, &vars, &Trained::Turns(vec![3])).expect("encodes");
        assert_eq!(last.example.labels, masked(&[11, 12, 13]));
        // Truncation keeps whole turns: 12 tokens fit the first turn, not the second.
        let Fit::Truncated { example, turns_lost, .. } = fit(all.example.clone(), 12, OverflowPolicy::Truncate) else {
            panic!("expected a truncated example");
        };
        assert_eq!((example.input_ids.len(), turns_lost), (7, 1));
        assert_eq!(example.turns, [Range { start: 5, end: 7 }]);
        // When not even the first turn fits, it is cut inside; when its start does not fit, dropped.
        let Fit::Truncated { example, .. } = fit(last.example.clone(), 12, OverflowPolicy::Truncate) else {
            panic!("expected a truncated example");
        };
        assert_eq!(example.labels, masked(&[11])[..12]);
        assert_eq!(fit(last.example, 11, OverflowPolicy::Truncate), Fit::Dropped { tokens: 14 });
    }

    /// What encoding the prompt and the conversation separately gives: the prompt's length, or the
    /// mismatch.
    fn encode_both(tok: &ChatTokenizer, messages: &[Message]) -> Result<usize, TokenizeError> {
        let extra = serde_json::Map::new();
        let prompt = tok.template().render(&messages[..messages.len() - 1], true, &extra).expect("renders");
        let text = tok.template().render(messages, false, &extra).expect("renders");
        let (prompt_ids, input_ids) = (tok.encode_text(&prompt)?, tok.encode_text(&text)?);
        match prompt_ids.iter().zip(&input_ids).position(|(a, b)| a != b) {
            None if prompt_ids.len() <= input_ids.len() => Ok(prompt_ids.len()),
            first_difference => Err(TokenizeError::PromptMismatch {
                prompt_tokens: prompt_ids.len(),
                conversation_tokens: input_ids.len(),
                first_difference: first_difference.unwrap_or(input_ids.len()),
            }),
        }
    }

    #[test]
    fn one_encoding_agrees_with_encoding_both_texts() {
        // Generation prompts that end on an added token, on text that continues into the answer
        // ("<asst> hello"), on a textual prefix that tokenizes differently ("<asst> hel" is [UNK],
        // TRL's mismatch), and an empty one.
        for generation_prompt in ["<asst>", "<asst> hello", "<asst> hel", "<asst> hello there <eot>", ""] {
            let tok = chat_tokenizer(generation_prompt);
            let got = tok.encode_conversation(&conversation(), &serde_json::Map::new()).map(|e| e.prompt_tokens);
            assert_eq!(got, encode_both(&tok, &conversation()), "generation prompt {generation_prompt:?}");
        }
        let got = chat_tokenizer("<asst> hello").encode_conversation(&conversation(), &serde_json::Map::new());
        assert_eq!(got.expect("encodes").labels, vec![-100, -100, -100, -100, -100, -100, 6, 1]);
    }

    #[test]
    fn overflow_policies() {
        let tok = chat_tokenizer("<asst>");
        let example = tok.encode_conversation(&conversation(), &serde_json::Map::new()).expect("encodes");
        assert_eq!(fit(example.clone(), 8, OverflowPolicy::Error), Fit::Kept(example.clone()));
        assert_eq!(fit(example.clone(), 4, OverflowPolicy::Drop), Fit::Dropped { tokens: 8 });
        assert_eq!(fit(example.clone(), 4, OverflowPolicy::Error), Fit::TooLong { tokens: 8 });
        let Fit::Truncated { example: cut, tokens, turns_lost } = fit(example, 6, OverflowPolicy::Truncate) else {
            panic!("expected a truncated example");
        };
        assert_eq!((tokens, turns_lost), (8, 1));
        assert_eq!(cut.input_ids, vec![0, 2, 4, 1, 3, 5]);
        assert_eq!(cut.labels, vec![-100, -100, -100, -100, -100, 5]);
        assert_eq!(cut.prompt_tokens, 5);
    }
}
