//! The data engine: from chat conversations to the token ids and labels a fine-tuning job trains on.
//!
//! It reproduces, in Rust, what the Hugging Face stack does in Python before training, so that the
//! runtime can prepare, check and profile data locally and byte for byte as the training container
//! would:
//!
//! - [`template`] renders a model's chat template (from `tokenizer_config.json` or
//!   `chat_template.jinja`) with minijinja, configured as `transformers`' `apply_chat_template`
//!   configures jinja2 (trim/lstrip blocks, loop controls, Python string methods, `raise_exception`,
//!   `strftime_now`, a `json.dumps`-compatible `tojson`, `{% generation %}` tags accepted).
//! - [`tokenize`] encodes the rendered text with the `tokenizers` crate without adding special tokens
//!   (the template wrote them), builds assistant-only labels by checking that the rendered prompt's ids
//!   are a prefix of the conversation's, and applies the pipeline's overflow policy for `seq_len`.
//!
//! `tests/chat_template_parity.rs` compares both, case by case, with `transformers` itself on the real
//! Llama 3.1 tokenizer. Reading sources (JSONL, Parquet, CSV, S3, the Hub), deduplication, splits,
//! outputs and the data profile come next and build on these two.

pub mod template;
pub mod tokenize;
