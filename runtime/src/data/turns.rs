//! Where the assistant turns are in a rendered conversation: the spans that carry loss.
//!
//! A trained assistant turn is what a model would generate if it were prompted with the
//! conversation before it: everything after the template's generation prompt, up to where the
//! next message begins (the turn's end-of-turn token included, and the whitespace the template
//! writes after it). Headers, system, user and tool messages stay masked. The spans are found from
//! the rendered text alone, with no knowledge of any particular template, in one of two ways:
//!
//! - **Prefixes** (every template that renders a conversation's start the same whatever follows):
//!   the turn starts at the end of `render(messages[..i], add_generation_prompt=True)` and ends at
//!   the end of `render(messages[..=i])`, when both are prefixes of the whole conversation's text.
//!   This is TRL's prompt/completion split applied to every turn, and its check too: the prompt's
//!   own token ids must be the first ids of the conversation, or the row fails.
//! - **Probes** (templates that rewrite a turn depending on what follows it: Qwen3 drops the
//!   reasoning of turns before the last user message, gpt-oss ends only the final turn with
//!   `<|return|>`, Mistral moves the system message into the last user turn): the conversation is
//!   rendered again with the turn's text (content, reasoning, tool-call arguments) replaced by a
//!   marker that occurs nowhere else. Everything before the first difference and after the last one
//!   is the same text, so what differs is the turn's own text in the real render. The span then
//!   extends back over the part of the turn that the template wrote before its text but after the
//!   generation prompt (the longest prefix of the generation prompt found between the previous
//!   message's text and the turn's, at least up to its first added token; with a template that
//!   prompts with nothing, such as Mistral's, from the end of the previous message, past the text
//!   that closes it as the prompt ends with it), and forward to
//!   the first special token after the text (the end-of-turn token) plus the whitespace that follows
//!   it, but never into the next message (found with a probe of its own). A message ends the same
//!   way a turn does.
//!
//! Both ways end on token boundaries or fail: a token that straddles the edge of a turn makes an
//! exact mask impossible, and the row is reported ([`TurnError`]) rather than trained on a guess.
//! `tests/chat_template_parity.rs` compares the spans with transformers' assistant masks on real
//! templates of every family, single- and multi-turn, with tool calls.

use std::ops::Range;

use minijinja::value::Value;

use super::template::{Message, TemplateError};

/// A marker for a turn's text in a probe: private-use characters that no tokenizer merges with its
/// neighbours and no template trims.
const MARK: &str = "\u{E000}\u{E001}";

/// Why a turn's span cannot be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnError {
    Template(TemplateError),
    Tokenizer(String),
    /// The prompt's ids are not the first ids of the conversation (TRL's check), or a turn's end is
    /// not a token boundary: a token straddles the edge of the turn.
    Boundary {
        turn: usize,
        prompt_tokens: usize,
        conversation_tokens: usize,
        first_difference: usize,
    },
    /// The turn's text cannot be told apart in the rendered conversation.
    NotFound {
        turn: usize,
        reason: String,
    },
}

impl From<TemplateError> for TurnError {
    fn from(e: TemplateError) -> Self {
        TurnError::Template(e)
    }
}

/// How many of the conversation's ids a rendered prefix tokenizes to, or how it differs.
pub(crate) type PrefixTokens<'a> = dyn Fn(&str) -> Result<Result<usize, Mismatch>, String> + 'a;
/// The ids of a text and their byte offsets.
pub(crate) type Encode<'a> = dyn Fn(&str) -> Result<(Vec<u32>, Vec<(usize, usize)>), String> + 'a;
/// Renders messages (as template values), with or without the generation prompt.
pub(crate) type Render<'a> = dyn Fn(&[Value], bool) -> Result<String, TemplateError> + 'a;

/// What locating turns needs from the tokenizer: the conversation's encoding and a few queries.
pub(crate) struct Tokens<'a> {
    pub ids: &'a [u32],
    /// Byte offsets of each token in the rendered text.
    pub offsets: &'a [(usize, usize)],
    /// Whether an id is an added token (the tokenizer cuts its input at them).
    pub is_added: &'a dyn Fn(u32) -> bool,
    /// Whether an id is a special added token (end-of-turn markers are).
    pub is_special: &'a dyn Fn(u32) -> bool,
    /// How many of the conversation's ids a rendered prefix of it tokenizes to, when its ids are the
    /// conversation's first ids; `Err` with the prefix's own token count when they are not.
    pub prefix_tokens: &'a PrefixTokens<'a>,
    /// The ids of a short text and their byte offsets.
    pub encode: &'a Encode<'a>,
}

/// A rendered prefix whose ids differ from the conversation's first ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub prefix_tokens: usize,
    pub first_difference: usize,
}

/// A conversation being rendered: its messages as template values, and how to render a list of them.
pub(crate) struct Renders<'a> {
    pub messages: &'a [Message],
    pub values: &'a [Value],
    pub render: &'a Render<'a>,
}

/// The token ranges of the assistant turns at `turns` (indices into the messages, increasing) in
/// `text`, the render of all the messages. `prompts` holds the render of `messages[..i]` with the
/// generation prompt for each turn, when the caller already has it.
pub(crate) fn locate(
    renders: &Renders<'_>,
    text: &str,
    tokens: &Tokens<'_>,
    turns: &[usize],
    prompts: &mut dyn FnMut(usize) -> Result<String, TemplateError>,
) -> Result<Vec<Range<usize>>, TurnError> {
    let mut spans: Vec<Range<usize>> = Vec::with_capacity(turns.len());
    // The end of the previous turn, in bytes.
    let mut floor = 0;
    for &turn in turns {
        let prompt = prompts(turn)?;
        let span = match by_prefixes(renders, text, tokens, turn, &prompt)? {
            Some(span) => span,
            None => by_probes(renders, text, tokens, turn, &prompt, floor)?,
        };
        if let Some(previous) = spans.last() {
            if span.start < previous.end {
                return Err(TurnError::NotFound {
                    turn,
                    reason: "its text overlaps the previous assistant turn's".to_string(),
                });
            }
        }
        floor = tokens.offsets.get(span.end.saturating_sub(1)).map_or(floor, |&(_, end)| end);
        spans.push(span);
    }
    Ok(spans)
}

/// The turn's tokens when the prompt before it and the conversation up to it are prefixes of the
/// whole text; `None` when they are not.
fn by_prefixes(
    renders: &Renders<'_>,
    text: &str,
    tokens: &Tokens<'_>,
    turn: usize,
    prompt: &str,
) -> Result<Option<Range<usize>>, TurnError> {
    if !text.starts_with(prompt) {
        return Ok(None);
    }
    let through = if turn + 1 == renders.messages.len() {
        None
    } else {
        let rendered = (renders.render)(&renders.values[..=turn], false)?;
        if !text.starts_with(&rendered) || rendered.len() < prompt.len() {
            return Ok(None);
        }
        Some(rendered)
    };
    let start = prefix_index(tokens, turn, prompt)?;
    let end = match through {
        Some(rendered) if rendered.len() < text.len() => prefix_index(tokens, turn, &rendered)?,
        _ => tokens.ids.len(),
    };
    Ok(Some(start..end.max(start)))
}

fn prefix_index(tokens: &Tokens<'_>, turn: usize, prefix: &str) -> Result<usize, TurnError> {
    match (tokens.prefix_tokens)(prefix).map_err(TurnError::Tokenizer)? {
        Ok(n) => Ok(n),
        Err(Mismatch { prefix_tokens, first_difference }) => Err(TurnError::Boundary {
            turn,
            prompt_tokens: prefix_tokens,
            conversation_tokens: tokens.ids.len(),
            first_difference,
        }),
    }
}

/// The turn's tokens found by rendering the conversation with its text replaced (module docs).
fn by_probes(
    renders: &Renders<'_>,
    text: &str,
    tokens: &Tokens<'_>,
    turn: usize,
    prompt: &str,
    floor: usize,
) -> Result<Range<usize>, TurnError> {
    let not_found = |reason: &str| TurnError::NotFound { turn, reason: reason.to_string() };
    let (first, last) = differing(renders, text, turn)?
        .ok_or_else(|| not_found("the template renders it the same whatever its text"))?;
    if first < floor {
        return Err(not_found("changing its text changes the rendering of earlier messages"));
    }
    // Back over what the template writes before the text: the generation prompt, or its longest
    // prefix, found after the previous message's text begins (so never in an earlier message).
    let before = (renders.render)(&renders.values[..turn], false)?;
    let generation_prompt = prompt.strip_prefix(before.as_str()).unwrap_or("");
    let previous = match turn.checked_sub(1) {
        Some(previous) => {
            differing(renders, text, previous)?.map(|(start, end)| (start.clamp(floor, first), end.clamp(floor, first)))
        }
        None => None,
    };
    let start = match (generation_prompt.is_empty(), previous) {
        // A template that prompts with nothing: the turn starts where the previous message ends,
        // past the text that closes it when that is plain text rather than a special token
        // (`[/INST]` in Llama 2's vocabulary, Mistral's template): the longest start of what lies
        // between the two that the prompt itself ends with.
        (true, Some((_, previous_end))) => {
            let end = turn_end(tokens, text, previous_end, first).max(floor);
            let gap = text.get(end..first).unwrap_or("");
            let closing = (1..=gap.len()).rev().find(|&k| gap.is_char_boundary(k) && prompt.ends_with(&gap[..k]));
            end + closing.unwrap_or(0)
        }
        (true, None) => floor,
        (false, previous) => {
            header_end(tokens, turn, text, generation_prompt, previous.map_or(floor, |(start, _)| start), first)?
        }
    };
    // Forward to the end-of-turn token, never into the next message.
    let bound = if turn + 1 < renders.messages.len() {
        differing(renders, text, turn + 1)?.map_or(text.len(), |(next, _)| next.max(last))
    } else {
        text.len()
    };
    let end = turn_end(tokens, text, last, bound);
    let first_token = tokens.offsets.iter().position(|&(s, _)| s >= start);
    let start_token = match first_token {
        Some(i) if tokens.offsets[i].0 == start || start == text.len() => i,
        _ if start == text.len() => tokens.ids.len(),
        _ => return Err(boundary(tokens, turn, start)),
    };
    let end_token = tokens.offsets.iter().position(|&(s, _)| s >= end).unwrap_or(tokens.ids.len());
    if end_token > 0 && tokens.offsets[end_token - 1].1 > end {
        return Err(boundary(tokens, turn, end));
    }
    if start_token >= end_token {
        return Err(not_found("it renders to no token"));
    }
    Ok(start_token..end_token)
}

/// A token straddles `at`.
fn boundary(tokens: &Tokens<'_>, turn: usize, at: usize) -> TurnError {
    let index = tokens.offsets.iter().position(|&(_, e)| e > at).unwrap_or(tokens.ids.len());
    TurnError::Boundary { turn, prompt_tokens: index, conversation_tokens: tokens.ids.len(), first_difference: index }
}

/// The first and last byte at which the text differs when message `index`'s text is replaced by
/// markers: `(first, end of the last)`, or `None` when nothing differs.
fn differing(renders: &Renders<'_>, text: &str, index: usize) -> Result<Option<(usize, usize)>, TurnError> {
    let Some((probe, marks)) = probe(&renders.messages[index]) else { return Ok(None) };
    let mut values = renders.values.to_vec();
    values[index] = probe.to_value();
    let other = (renders.render)(&values, false)?;
    if other == text {
        return Ok(None);
    }
    if other.matches(MARK).count() > marks {
        return Err(TurnError::NotFound {
            turn: index,
            reason: "the template writes the message's text in more than one place".to_string(),
        });
    }
    let mut first = text.bytes().zip(other.bytes()).take_while(|(a, b)| a == b).count();
    while !text.is_char_boundary(first) {
        first -= 1;
    }
    let max_suffix = text.len().min(other.len()) - first;
    let mut suffix = text.bytes().rev().zip(other.bytes().rev()).take(max_suffix).take_while(|(a, b)| a == b).count();
    while !text.is_char_boundary(text.len() - suffix) {
        suffix -= 1;
    }
    Ok(Some((first, text.len() - suffix)))
}

/// The message with its text replaced by markers: a non-empty string `content` and reasoning, and
/// the arguments of its tool calls; an empty content gets a marker when nothing else would change.
/// Also the most markers a template that writes each field once can render. `None` when nothing can
/// be replaced.
fn probe(message: &Message) -> Option<(Message, usize)> {
    use serde_json::Value as Json;
    let mark = || Json::String(MARK.to_string());
    let mut changed = false;
    let mut marks = 0;
    let mut probe = message.clone();
    for key in ["content", "reasoning_content", "thinking", "reasoning"] {
        if matches!(message.get(key), Some(Json::String(s)) if !s.is_empty()) {
            probe = probe.with(key, mark());
            changed = true;
            marks += 1;
        }
    }
    if let Some(Json::Array(calls)) = message.get("tool_calls") {
        let calls: Vec<Json> = calls
            .iter()
            .map(|call| {
                let mut call = call.clone();
                let target = match call.get_mut("function") {
                    Some(Json::Object(function)) => Some(function),
                    _ => call.as_object_mut(),
                };
                if let Some(arguments) = target.and_then(|t| t.get_mut("arguments")) {
                    // An object's key and value both show when the template writes it as JSON.
                    (*arguments, marks) = match arguments {
                        Json::String(_) => (mark(), marks + 1),
                        _ => (serde_json::json!({ MARK: MARK }), marks + 2),
                    };
                    changed = true;
                }
                call
            })
            .collect();
        probe = probe.with("tool_calls", Json::Array(calls));
    }
    if !changed {
        match message.content() {
            None | Some(Json::String(_)) if message.get("tool_calls").is_none() => {
                probe = probe.with("content", mark());
                marks += 1;
            }
            _ => return None,
        }
    }
    Some((probe, marks))
}

/// Where the turn starts: right after the longest prefix of the generation prompt that lies between
/// `floor` and `first`, ends on one of the prompt's own tokens and covers at least its first added
/// token; or at `first`.
fn header_end(
    tokens: &Tokens<'_>,
    turn: usize,
    text: &str,
    generation_prompt: &str,
    floor: usize,
    first: usize,
) -> Result<usize, TurnError> {
    if generation_prompt.is_empty() || floor >= first {
        return Ok(first);
    }
    let (ids, offsets) = (tokens.encode)(generation_prompt).map_err(TurnError::Tokenizer)?;
    // The prompt's prefixes that end on one of its own tokens, from its first added token on.
    let first_added = ids.iter().position(|&id| (tokens.is_added)(id)).unwrap_or(ids.len().saturating_sub(1));
    let mut ends: Vec<usize> = offsets.iter().skip(first_added).map(|&(_, end)| end).collect();
    ends.push(generation_prompt.len());
    ends.sort_unstable();
    ends.dedup();
    let window = &text[floor..first];
    for &len in ends.iter().rev() {
        let Some(at) = generation_prompt.get(..len).and_then(|prefix| window.rfind(prefix)).map(|at| floor + at + len)
        else {
            continue;
        };
        // Inside a token of the conversation: inside an added token, the match is a coincidence
        // (`<` of `<think>` against the `<` of another marker); inside text, a token straddles the
        // header and the turn, and no exact mask exists.
        match tokens.offsets.iter().position(|&(start, end)| start < at && at < end) {
            None => return Ok(at),
            Some(i) if (tokens.is_added)(tokens.ids[i]) => continue,
            Some(_) => return Err(boundary(tokens, turn, at)),
        }
    }
    Ok(first)
}

/// Where the turn ends: after the first special token from `last` on (or, without one before the
/// next message, the first added token), and the whitespace after it up to the next added token;
/// at `last` when there is none.
fn turn_end(tokens: &Tokens<'_>, text: &str, last: usize, bound: usize) -> usize {
    let from = tokens.offsets.partition_point(|&(_, end)| end <= last);
    let within = (from..tokens.ids.len()).take_while(|&i| tokens.offsets[i].0 < bound);
    let candidates: Vec<usize> = within.filter(|&i| (tokens.is_added)(tokens.ids[i])).collect();
    let Some(&marker) = candidates.iter().find(|&&i| (tokens.is_special)(tokens.ids[i])).or_else(|| candidates.first())
    else {
        return last;
    };
    let end = tokens.offsets[marker].1;
    // Whitespace after the end-of-turn token belongs to the turn when nothing but another added
    // token (or the end) follows it.
    let next_added = ((marker + 1)..tokens.ids.len())
        .find(|&i| (tokens.is_added)(tokens.ids[i]))
        .map_or(text.len(), |i| tokens.offsets[i].0);
    let gap = text.get(end..next_added.min(bound)).unwrap_or("");
    if !gap.is_empty() && gap.chars().all(char::is_whitespace) && next_added <= bound {
        next_added
    } else {
        end
    }
}
