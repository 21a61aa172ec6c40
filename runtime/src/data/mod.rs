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
//! - [`tokenize`] encodes the rendered text without adding special tokens (the template wrote
//!   them), builds assistant-only labels by checking that the rendered prompt's ids are a prefix of
//!   the conversation's (from one encoding of the conversation), and applies the pipeline's overflow
//!   policy for `seq_len`.
//! - [`encoder`] is what it encodes with: [`bpe`], a fast engine for byte-level BPE tokenizers
//!   (Llama 3, Qwen, DeepSeek V3, gpt-oss, Mistral Nemo) that gives `tokenizers`' ids and offsets
//!   exactly, where it can take the tokenizer, and the `tokenizers` crate for the rest (Gemma's
//!   SentencePiece-style BPE, other normalizers and pre-tokenizers).
//!
//! - [`source`] reads a dataset node's rows from local JSONL, CSV and Parquet files, applies the
//!   Hub's split-slice syntax (`train[:10000]`, `train[10%:]`), checks the declared columns with
//!   row-numbered errors and applies `on_bad_row`. S3 and Hub sources are reported as not read here.
//! - [`conversation`] fills a chat node's `system` / `user` / `assistant` `{column}` templates.
//! - [`prepare`] runs the chat node and its split in bounded batches, in parallel: render, tokenize,
//!   overflow policy, deduplication, a seeded content-hash split, and the per-split JSONL files of
//!   docs/entry-scripts.md §3 plus `profile.json`, all written atomically and identical whatever the
//!   number of threads.
//! - [`output`] writes those files, and each split's rows again as Parquet.
//!
//! `tests/chat_template_parity.rs` compares the first two, case by case, with `transformers` itself
//! on the real Llama 3.1 tokenizer; `tests/data_prepare.rs` runs the whole step on MedReason-shaped
//! JSONL, CSV and Parquet files with the same tokenizer; `tests/tokenizer_engines.rs` holds the fast
//! engine to `tokenizers`, token for token, on nine families' real tokenizers.

pub mod bpe;
pub mod conversation;
pub mod encoder;
pub mod output;
pub mod prepare;
pub mod source;
pub mod template;
pub mod tokenize;
pub mod turns;
