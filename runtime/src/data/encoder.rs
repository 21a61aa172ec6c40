//! Text to token ids: the fast byte-level BPE engine where it is exact, `tokenizers` elsewhere.
//!
//! [`TextEncoder`] is what the data engine encodes with. It holds the `tokenizers` tokenizer and,
//! when [`super::bpe::ByteLevelBpe`] reproduces that tokenizer exactly (the byte-level BPE families:
//! Llama 3, Qwen2/3, DeepSeek V3, gpt-oss, Mistral Nemo, ...), that engine too. Each text is encoded
//! by the fast engine when there is one and it takes the text (under an NFC normalizer it leaves
//! texts that NFC would change to `tokenizers`), and by `tokenizers` otherwise: SentencePiece-style
//! and Unigram models (Gemma), other normalizers and pre-tokenizers. Both give the ids and offsets
//! of `tokenizer.encode(text, add_special_tokens=false)`; `tests/tokenizer_engines.rs` holds the
//! fast engine to that, token for token.
//!
//! `TUNEC_TOKENIZER=tokenizers` makes every text go through `tokenizers` (to compare, or to rule
//! the fast engine out); `auto`, the default, picks as above.

use std::fmt;
use std::path::Path;

use tokenizers::Tokenizer;

use super::bpe::ByteLevelBpe;

/// Which engine to use when both could.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// The fast engine where it is exact, `tokenizers` elsewhere.
    Auto,
    /// `tokenizers` for everything.
    Tokenizers,
}

impl EngineChoice {
    /// The environment variable that chooses.
    pub const VAR: &'static str = "TUNEC_TOKENIZER";

    /// The choice `TUNEC_TOKENIZER` makes (`auto` when unset or empty).
    pub fn from_env() -> Result<EngineChoice, String> {
        match std::env::var(Self::VAR) {
            Err(std::env::VarError::NotPresent) => Ok(EngineChoice::Auto),
            Ok(v) => EngineChoice::parse(&v),
            Err(std::env::VarError::NotUnicode(v)) => EngineChoice::parse(&v.to_string_lossy()),
        }
    }

    fn parse(value: &str) -> Result<EngineChoice, String> {
        match value.trim() {
            "" | "auto" => Ok(EngineChoice::Auto),
            "tokenizers" => Ok(EngineChoice::Tokenizers),
            other => Err(format!("{}={other:?} is not a tokenizer engine; use `auto` or `tokenizers`", Self::VAR)),
        }
    }
}

/// The engine that encodes a tokenizer's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// The fast engine, described.
    ByteLevelBpe(String),
    /// `tokenizers`, and why the fast engine does not run.
    Tokenizers { why: String },
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Engine::ByteLevelBpe(description) => write!(f, "tunec {description}"),
            Engine::Tokenizers { why } => write!(f, "Hugging Face tokenizers ({why})"),
        }
    }
}

/// Token ids, and the byte range of the text each came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

/// A tokenizer and the engine that encodes with it.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    fast: Option<ByteLevelBpe>,
    engine: Engine,
}

impl fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextEncoder").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Loads `tokenizer.json`; the engine follows `choice`.
    pub fn from_file(path: &Path, choice: EngineChoice) -> Result<TextEncoder, String> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TextEncoder::new(tokenizer, choice))
    }

    pub fn new(tokenizer: Tokenizer, choice: EngineChoice) -> TextEncoder {
        let (fast, engine) = match choice {
            EngineChoice::Tokenizers => (None, Engine::Tokenizers { why: format!("{}=tokenizers", EngineChoice::VAR) }),
            EngineChoice::Auto => match ByteLevelBpe::new(&tokenizer) {
                Ok(fast) => {
                    let engine = Engine::ByteLevelBpe(fast.description().to_string());
                    (Some(fast), engine)
                }
                Err(why) => (None, Engine::Tokenizers { why }),
            },
        };
        TextEncoder { tokenizer, fast, engine }
    }

    /// The engine that encodes this tokenizer's texts.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The ids and offsets of `text`, without adding special tokens (as
    /// `tokenizer.encode(text, false)`).
    pub fn encode(&self, text: &str) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        if let Some(fast) = &self.fast {
            if fast.encode(text, &mut tokens.ids, &mut tokens.offsets) {
                return Ok(tokens);
            }
        }
        let encoding = self.tokenizer.encode(text, false).map_err(|e| e.to_string())?;
        tokens.ids = encoding.get_ids().to_vec();
        tokens.offsets = encoding.get_offsets().to_vec();
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_comes_from_one_variable() {
        assert_eq!(EngineChoice::parse(""), Ok(EngineChoice::Auto));
        assert_eq!(EngineChoice::parse(" auto "), Ok(EngineChoice::Auto));
        assert_eq!(EngineChoice::parse("tokenizers"), Ok(EngineChoice::Tokenizers));
        let error = EngineChoice::parse("fast").expect_err("not a choice");
        assert!(error.contains("TUNEC_TOKENIZER=\"fast\"") && error.contains("`auto` or `tokenizers`"), "{error}");
    }
}
