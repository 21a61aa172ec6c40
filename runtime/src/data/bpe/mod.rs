//! A fast, exact encoder for byte-level BPE tokenizers (Llama 3, Qwen2/2.5/3, DeepSeek V3,
//! gpt-oss, Mistral Nemo, GPT-2's pre-tokenizer, and the families that share these
//! `tokenizer.json` shapes: SmolLM2 and 3, OLMo 2, ...).
//!
//! It gives the ids and offsets that `tokenizers`' `Tokenizer::encode(text, false)` gives, and
//! takes a tokenizer only when it can: [`ByteLevelBpe::new`] reads the loaded `tokenizers`
//! tokenizer and refuses, with the reason, anything it does not reproduce exactly. What it does:
//!
//! 1. **Added tokens** are cut out first, as `tokenizers`' added vocabulary does: the tokens that
//!    are not normalized on the raw text, then the normalized ones on each normalized remainder,
//!    both leftmost-longest (aho-corasick). Tokens with `single_word`, `lstrip` or `rstrip` are
//!    refused.
//! 2. **Normalizer**: none, an empty sequence, or NFC. Under NFC a text whose remainders are not
//!    already NFC (checked with the normalization crate `tokenizers` uses) is not encoded here;
//!    [`ByteLevelBpe::encode`] says so and the caller encodes that text with `tokenizers`.
//! 3. **Pre-tokenizer**: a sequence of `Split`s (`Isolated`, not inverted) whose regexes have a
//!    matcher in [`split`], then `ByteLevel` without prefix space (with its own regex, GPT-2's,
//!    or without).
//! 4. **Model**: BPE over bytes ([`merge`]): every byte in the vocabulary, no dropout, no
//!    continuing-subword prefix or end-of-word suffix, `ignore_merges` as the file says.
//! 5. **Post-processor**: with `add_special_tokens = false` none adds tokens; one that would trim
//!    offsets (`ByteLevel` with `trim_offsets`) is refused so that offsets stay identical too.
//!    Truncation and padding must be off.
//!
//! Offsets are byte ranges in the text, as `tokenizers` reports them: an added token's match, and
//! for a BPE token the characters its bytes belong to (two tokens that split one character both
//! cover all of it).
//!
//! Why not a crate: the `bpe` crate of github/rust-gems defines BPE by token rank (tiktoken's
//! rule: merge the adjacent pair whose concatenation has the lowest id), while `tokenizers` ranks
//! the merge rules of `tokenizer.json` and has `ignore_merges`; the two agree only when a
//! vocabulary's ids follow its merges, which the files do not promise. And on real text the
//! merge loop is rarely the cost once pieces are cached: the regex and `tokenizers`' per-token
//! bookkeeping are ([`split`], docs/performance.md).

mod classes;
mod merge;
mod split;

use std::borrow::Cow;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;
use serde_json::Value;
use tokenizers::models::ModelWrapper;
use tokenizers::Tokenizer;

use merge::Model;
use split::Pattern;

/// The normalizers the engine reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Normalizer {
    Identity,
    Nfc,
}

/// A set of added tokens and the automaton that finds them.
struct Added {
    automaton: AhoCorasick,
    ids: Vec<u32>,
}

impl Added {
    fn new(tokens: Vec<(String, u32)>) -> Result<Option<Added>, String> {
        if tokens.is_empty() {
            return Ok(None);
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(tokens.iter().map(|(content, _)| content))
            .map_err(|e| format!("the added tokens do not build a matcher: {e}"))?;
        Ok(Some(Added { automaton, ids: tokens.into_iter().map(|(_, id)| id).collect() }))
    }
}

/// The byte-level BPE engine for one tokenizer.
pub struct ByteLevelBpe {
    raw_added: Option<Added>,
    normalized_added: Option<Added>,
    normalizer: Normalizer,
    splits: Vec<Pattern>,
    model: Model,
    /// What the engine runs, in words.
    description: String,
}

/// The fields of `tokenizers`' serialized BPE model that the engine reads, borrowed from the JSON
/// where they can be (a byte-level vocabulary has few escapes).
#[derive(Deserialize)]
struct BpeFields<'a> {
    dropout: Option<f32>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    #[serde(default)]
    ignore_merges: bool,
    #[serde(borrow)]
    vocab: HashMap<Text<'a>, u32>,
    #[serde(borrow)]
    merges: Vec<(Text<'a>, Text<'a>)>,
}

/// A string of the serialized model, borrowed unless it has escapes (serde borrows a `Cow` only
/// as a field of its own, not inside a collection).
#[derive(Deserialize, PartialEq, Eq, Hash)]
pub(super) struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The `type` of a serialized component.
fn kind(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

impl ByteLevelBpe {
    /// The engine for `tokenizer`, or why it cannot reproduce it exactly.
    pub fn new(tokenizer: &Tokenizer) -> Result<ByteLevelBpe, String> {
        if tokenizer.get_truncation().is_some() || tokenizer.get_padding().is_some() {
            return Err("truncation or padding is set in tokenizer.json".into());
        }
        if tokenizer.get_encode_special_tokens() {
            return Err("special tokens are encoded as text".into());
        }
        let normalizer = normalizer(tokenizer)?;
        let splits = pre_tokenizer(tokenizer)?;
        post_processor(tokenizer)?;
        let ModelWrapper::BPE(bpe) = tokenizer.get_model() else {
            return Err("the model is not BPE".into());
        };
        // The merges are only reachable through the model's serialization (in rank order, with the
        // vocabulary).
        let json = serde_json::to_vec(bpe).map_err(|e| format!("the BPE model does not serialize: {e}"))?;
        let fields: BpeFields =
            serde_json::from_slice(&json).map_err(|e| format!("the BPE model does not serialize as expected: {e}"))?;
        if fields.dropout.is_some_and(|p| p > 0.0) {
            return Err("BPE dropout is set".into());
        }
        if fields.continuing_subword_prefix.is_some_and(|p| !p.is_empty())
            || fields.end_of_word_suffix.is_some_and(|s| !s.is_empty())
        {
            return Err("the BPE model has a continuing-subword prefix or an end-of-word suffix".into());
        }
        let model = Model::new(&fields.vocab, &fields.merges, fields.ignore_merges)?;
        let (raw_added, normalized_added) = added_tokens(tokenizer)?;
        let shape = splits.iter().map(|p| p.name()).collect::<Vec<_>>().join(" + ");
        let description = format!(
            "byte-level BPE ({shape} split{}, {} merges{})",
            if normalizer == Normalizer::Nfc { ", NFC" } else { "" },
            model.merges(),
            if fields.ignore_merges { ", ignore_merges" } else { "" }
        );
        Ok(ByteLevelBpe { raw_added, normalized_added, normalizer, splits, model, description })
    }

    /// What the engine runs, in words (for the run's output).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Appends the ids and offsets of `text` (as `tokenizer.encode(text, false)`), or returns
    /// `false`, having appended nothing, when this text needs `tokenizers` (a remainder that NFC
    /// would change).
    pub fn encode(&self, text: &str, ids: &mut Vec<u32>, offsets: &mut Vec<(usize, usize)>) -> bool {
        let (start_ids, start_offsets) = (ids.len(), offsets.len());
        let complete = self.segments(text, &mut |segment| match segment {
            Segment::Added { id, start, end } => {
                ids.push(id);
                offsets.push((start, end));
                true
            }
            Segment::Text { start, end } => {
                if self.normalizer == Normalizer::Nfc && !is_nfc(&text[start..end]) {
                    return false;
                }
                match &self.normalized_added {
                    Some(added) => {
                        let mut at = start;
                        for m in added.automaton.find_iter(&text[start..end]) {
                            self.encode_plain(text, at, start + m.start(), ids, offsets);
                            ids.push(added.ids[m.pattern().as_usize()]);
                            offsets.push((start + m.start(), start + m.end()));
                            at = start + m.end();
                        }
                        self.encode_plain(text, at, end, ids, offsets);
                    }
                    None => self.encode_plain(text, start, end, ids, offsets),
                }
                true
            }
        });
        if !complete {
            ids.truncate(start_ids);
            offsets.truncate(start_offsets);
        }
        complete
    }

    /// Cuts `text` at the raw added tokens and calls `each` in order; stops when it returns false.
    fn segments(&self, text: &str, each: &mut impl FnMut(Segment) -> bool) -> bool {
        let mut at = 0;
        if let Some(added) = &self.raw_added {
            for m in added.automaton.find_iter(text) {
                if m.start() > at && !each(Segment::Text { start: at, end: m.start() }) {
                    return false;
                }
                if !each(Segment::Added { id: added.ids[m.pattern().as_usize()], start: m.start(), end: m.end() }) {
                    return false;
                }
                at = m.end();
            }
        }
        at >= text.len() || each(Segment::Text { start: at, end: text.len() })
    }

    /// Pre-tokenizes and merges `text[start..end]`, which holds no added token.
    fn encode_plain(
        &self,
        text: &str,
        start: usize,
        end: usize,
        ids: &mut Vec<u32>,
        offsets: &mut Vec<(usize, usize)>,
    ) {
        if start >= end {
            return;
        }
        let mut piece = |s: usize, e: usize| {
            let from = ids.len();
            self.model.encode(&text.as_bytes()[s..e], ids);
            let mut at = s;
            for &id in &ids[from..] {
                let next = at + self.model.length(id);
                offsets.push((char_start(text, at), char_end(text, next)));
                at = next;
            }
        };
        split_all(&self.splits, text, start, end, &mut piece);
    }
}

/// Applies the splits in order, each to the pieces of the one before, and calls `piece` with the
/// byte range (in `text`) of each final piece.
fn split_all(splits: &[Pattern], text: &str, start: usize, end: usize, piece: &mut impl FnMut(usize, usize)) {
    match splits {
        [] => piece(start, end),
        [first, rest @ ..] => first.split(&text[start..end], |s, e| split_all(rest, text, start + s, start + e, piece)),
    }
}

/// A part of the text: an added token, or text between them.
enum Segment {
    Added { id: u32, start: usize, end: usize },
    Text { start: usize, end: usize },
}

/// The start of the character that byte `i` belongs to.
fn char_start(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The end of the character that byte `i - 1` belongs to.
fn char_end(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Whether NFC leaves `text` as it is. Text below U+0300 (where the combining marks begin) is
/// always NFC; the rest is asked of the normalization crate `tokenizers` itself normalizes with.
fn is_nfc(text: &str) -> bool {
    text.chars().all(|c| c < '\u{300}') || unicode_normalization_alignments::is_nfc(text)
}

fn normalizer(tokenizer: &Tokenizer) -> Result<Normalizer, String> {
    let Some(n) = tokenizer.get_normalizer() else { return Ok(Normalizer::Identity) };
    let v = serde_json::to_value(n).map_err(|e| e.to_string())?;
    match kind(&v) {
        "NFC" => Ok(Normalizer::Nfc),
        "Sequence" if v.get("normalizers").and_then(Value::as_array).is_some_and(Vec::is_empty) => {
            Ok(Normalizer::Identity)
        }
        other => Err(format!("the normalizer `{other}` is not reproduced")),
    }
}

fn pre_tokenizer(tokenizer: &Tokenizer) -> Result<Vec<Pattern>, String> {
    let Some(p) = tokenizer.get_pre_tokenizer() else {
        return Err("there is no pre-tokenizer".into());
    };
    let v = serde_json::to_value(p).map_err(|e| e.to_string())?;
    let steps = match kind(&v) {
        "Sequence" => v.get("pretokenizers").and_then(Value::as_array).cloned().unwrap_or_default(),
        _ => vec![v],
    };
    let Some((byte_level, splits)) = steps.split_last() else {
        return Err("the pre-tokenizer sequence is empty".into());
    };
    let flag = |v: &Value, name: &str| v.get(name).and_then(Value::as_bool);
    if kind(byte_level) != "ByteLevel" || flag(byte_level, "add_prefix_space") != Some(false) {
        return Err("the pre-tokenizer does not end with ByteLevel without a prefix space".into());
    }
    let mut patterns = Vec::with_capacity(splits.len());
    for split in splits {
        let regex = split.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str);
        if kind(split) != "Split"
            || split.get("behavior").and_then(Value::as_str) != Some("Isolated")
            || flag(split, "invert") != Some(false)
        {
            return Err(format!("the pre-tokenizer step `{}` is not an isolating regex split", kind(split)));
        }
        let pattern = regex.and_then(Pattern::for_regex).ok_or_else(|| {
            format!("the split pattern {} has no matcher", regex.map_or("(a string)".to_string(), |r| format!("`{r}`")))
        })?;
        patterns.push(pattern);
    }
    // `use_regex`: the ByteLevel step splits with GPT-2's pattern itself.
    if flag(byte_level, "use_regex") != Some(false) {
        patterns.extend(Pattern::for_regex(split::GPT2));
    }
    if patterns.is_empty() {
        return Err("the pre-tokenizer has no split".into());
    }
    Ok(patterns)
}

fn post_processor(tokenizer: &Tokenizer) -> Result<(), String> {
    let Some(p) = tokenizer.get_post_processor() else { return Ok(()) };
    let v = serde_json::to_value(p).map_err(|e| e.to_string())?;
    fn check(v: &Value) -> Result<(), String> {
        match kind(v) {
            "TemplateProcessing" => Ok(()),
            "ByteLevel" if v.get("trim_offsets").and_then(Value::as_bool) == Some(false) => Ok(()),
            "Sequence" => v.get("processors").and_then(Value::as_array).into_iter().flatten().try_for_each(check),
            other => Err(format!("the post-processor `{other}` is not reproduced")),
        }
    }
    check(&v)
}

/// The added tokens, raw and normalized (their text normalized as `tokenizers` does).
fn added_tokens(tokenizer: &Tokenizer) -> Result<(Option<Added>, Option<Added>), String> {
    let mut tokens: Vec<_> = tokenizer.get_added_tokens_decoder().into_iter().collect();
    tokens.sort_by_key(|(id, _)| *id);
    let (mut raw, mut normalized) = (Vec::new(), Vec::new());
    for (_, token) in tokens {
        if token.single_word || token.lstrip || token.rstrip {
            return Err(format!("the added token `{}` strips spaces or must be a single word", token.content));
        }
        if token.content.is_empty() {
            return Err("an added token is empty".into());
        }
        let id = tokenizer.token_to_id(&token.content).ok_or_else(|| format!("no id for `{}`", token.content))?;
        if token.normalized {
            let content = match tokenizer.get_normalizer() {
                Some(n) => {
                    let mut s = tokenizers::NormalizedString::from(token.content.as_str());
                    tokenizers::Normalizer::normalize(n, &mut s).map_err(|e| e.to_string())?;
                    s.get().to_string()
                }
                None => token.content.clone(),
            };
            normalized.push((content, id));
        } else {
            raw.push((token.content, id));
        }
    }
    Ok((Added::new(raw)?, Added::new(normalized)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_boundaries_of_token_offsets() {
        let text = "aé👍";
        assert_eq!(char_start(text, 2), 1);
        assert_eq!(char_end(text, 2), 3);
        assert_eq!(char_end(text, 5), 7);
        assert_eq!(char_start(text, 3), 3);
    }

    #[test]
    fn nfc_check() {
        assert!(is_nfc("plain ascii, ü, ß"));
        assert!(is_nfc("\u{e9}"));
        assert!(!is_nfc("e\u{301}"));
        assert!(!is_nfc("\u{212b}"));
    }
}
