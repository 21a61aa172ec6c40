//! The data step of a chat node and its split: rows in, per-split training files and a data profile
//! out.
//!
//! The source is read in batches of [`PrepareConfig::batch_rows`] records, so memory holds two batches
//! (plus 16 bytes per distinct conversation for deduplication). Each batch is processed in parallel
//! with rayon, row by row: check the declared columns, build the messages ([`super::conversation`]),
//! render them with the chat template and tokenize them with the trained turns' labels
//! ([`super::template`], [`super::tokenize`], [`super::turns`]), apply the overflow policy and pick
//! the split. The results are then taken in file order, on one thread, while the next batch is processed: bad rows are
//! counted or stop the step, duplicates are left out and rows are appended to their split's files.
//! The output is therefore the same, byte for byte, whatever the number of threads.
//!
//! - **Counts.** Every record of the slice ends up in exactly one of: `skipped` (a bad row under
//!   `on_bad_row = skip`), `duplicates`, `dropped` (too long, `overflow = drop`) or `rows` (written);
//!   `truncated` counts the written rows that were cut to `seq_len`. A too-long row under
//!   `overflow = error`, and a row the template or tokenizer rejects, stop the step with its position.
//! - **Deduplication** keys on the SHA-256 of the rendered conversation (before truncation) and keeps
//!   the first occurrence in file order; duplicates are counted before the overflow policy.
//! - **Splits.** A row goes to train, val or test by a hash of (seed, rendered conversation) mapped to
//!   [0, 1) and compared with the cumulative fractions (normalized by their sum). A row's split thus
//!   depends on its own content only: adding rows never moves existing ones, identical conversations
//!   always land together, and the fractions are approximate (each row is an independent draw); the
//!   profile reports the actual counts.
//! - **Outputs** (docs/entry-scripts.md §3): `train/train.jsonl`, `val/val.jsonl`, `test/test.jsonl`
//!   with `text` (the whole rendered conversation, also for truncated rows), `input_ids` and `labels`,
//!   plus `prompt` (the conversation before its final assistant turn, rendered with the generation
//!   prompt) and `reference` (that turn's text) in test rows, or those of the last turn truncation
//!   kept; the same rows in `train/train.parquet`, `val/val.parquet`, `test/test.parquet`; and
//!   `profile.json` ([`Profile`], a superset of the estimator's `DataProfile`). Every file is written
//!   to a temporary name beside it, synced and renamed ([`super::output`]), so a failed step leaves
//!   no partial file and the previous outputs stay whole until the new ones replace them.
//! - **Huge rows.** Under `overflow = drop`, a row whose rendered text is longer than `seq_len`
//!   times the most bytes a token can cover is dropped without being tokenized.
//! - **Not handled here:** the node's `add_special_tokens = true` (it would double the template's
//!   BOS), multiple-choice `options` / `answer_index` in test rows.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::conversation::{reference, ChatSpec, Conversation, ConversationError};
use super::output::{Outputs, Row, ROW_GROUP_BYTES};
use super::source::{BadRowPolicy, RawRow, RowError, RowPos, SourceError, SourceSpec};
use super::template::{Message, TemplateError, Vars};
use super::tokenize::{fit, ChatTokenizer, Encoded, Fit, OverflowPolicy, TokenizeError, Trained, IGNORE_INDEX};

/// Which tokens carry loss (the chat node's `train_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainOn {
    /// Every assistant turn (of the completion, with a prompt column) and its end-of-turn token.
    Assistant,
    /// The final assistant turn only.
    LastAssistant,
    /// Every token.
    All,
}

/// The split node's fractions and seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
    pub seed: u64,
}

/// Everything the step needs besides the source and the tokenizer.
#[derive(Debug, Clone)]
pub struct PrepareConfig {
    pub chat: ChatSpec,
    pub seq_len: usize,
    pub overflow: OverflowPolicy,
    pub train_on: TrainOn,
    /// Further chat-template variables (`date_string`).
    pub template_vars: Map<String, Value>,
    pub split: SplitFractions,
    pub dedup: bool,
    /// Records read and processed at once.
    pub batch_rows: usize,
    /// Worker threads; 0 uses rayon's default (one per core).
    pub threads: usize,
    /// Buffered values, in bytes, past which a Parquet file's rows are written as a row group.
    pub row_group_bytes: usize,
    /// Progress and cancellation shared with the caller (the executor's progress display and
    /// Ctrl-C).
    pub control: Arc<StepControl>,
}

/// What a caller sees of a running step and how it stops one: the records read so far, the engine
/// that encodes its texts once the tokenizer is loaded, and a flag that stops the step between two
/// batches (its outputs are then left as they were).
#[derive(Debug, Default)]
pub struct StepControl {
    pub rows_read: AtomicU64,
    pub engine: OnceLock<String>,
    pub cancelled: AtomicBool,
    /// Whether [`StepControl::engine_once`] gave the engine already.
    engine_said: AtomicBool,
}

impl StepControl {
    /// The engine, the first time it is asked for once it is known, so that a run says it once.
    pub fn engine_once(&self) -> Option<&str> {
        let engine = self.engine.get()?;
        (!self.engine_said.swap(true, Ordering::Relaxed)).then_some(engine.as_str())
    }
}

impl PrepareConfig {
    /// A config with the prelude's defaults: assistant-only loss, dedup, batches of 4096 rows, all
    /// cores, Parquet row groups of [`ROW_GROUP_BYTES`].
    pub fn new(chat: ChatSpec, seq_len: usize, overflow: OverflowPolicy, split: SplitFractions) -> PrepareConfig {
        PrepareConfig {
            chat,
            seq_len,
            overflow,
            train_on: TrainOn::Assistant,
            template_vars: Map::new(),
            split,
            dedup: true,
            batch_rows: 4096,
            threads: 0,
            row_group_bytes: ROW_GROUP_BYTES,
            control: Arc::default(),
        }
    }
}

/// The three parts of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The file a split is written to, under the output folder: `<split>/<split>.jsonl`.
    pub fn path(self, out: &Path) -> PathBuf {
        out.join(self.name()).join(format!("{}.jsonl", self.name()))
    }

    /// The same rows as Parquet: `<split>/<split>.parquet`.
    pub fn parquet_path(self, out: &Path) -> PathBuf {
        out.join(self.name()).join(format!("{}.parquet", self.name()))
    }
}

/// Rows per split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: u64,
    pub val: u64,
    pub test: u64,
}

/// One bar of the token-length histogram: rows of more than half `tokens_up_to` and at most
/// `tokens_up_to` tokens (the first bar starts at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens_up_to: u64,
    pub rows: u64,
}

/// `profile.json`. `rows`, `mean_tokens`, `max_tokens`, `trained_tokens` and `mean_answer_tokens` are
/// the estimator's `DataProfile`; token figures are those of the written rows (after truncation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Rows written (kept before splitting).
    pub rows: u64,
    pub mean_tokens: f64,
    pub max_tokens: u64,
    pub splits: SplitCounts,
    /// Records in the source slice.
    pub read: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub dropped: u64,
    pub truncated: u64,
    /// Messages in the written rows, every role (a system message the node adds included).
    #[serde(default)]
    pub messages: u64,
    /// Assistant turns that carry loss in the written rows.
    #[serde(default)]
    pub assistant_turns: u64,
    /// Tokens that carry loss (a label other than -100) and tokens that do not, in the written rows.
    #[serde(default)]
    pub trained_tokens: u64,
    #[serde(default)]
    pub masked_tokens: u64,
    /// Trained assistant turns that `overflow = truncate` cut off or cut short.
    #[serde(default)]
    pub turns_lost: u64,
    /// The mean tokens of a row's final assistant turn, as rendered (what an evaluation generates).
    #[serde(default)]
    pub mean_answer_tokens: f64,
    /// Power-of-two buckets, empty ones left out.
    pub histogram: Vec<Bucket>,
}

/// Why the step stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareError {
    /// The source cannot be read, or a bad row under `on_bad_row = fail`.
    Source(SourceError),
    /// A row's conversation cannot be built.
    Conversation { at: RowPos, error: ConversationError },
    /// The chat template or tokenizer rejects a row's conversation.
    Tokenize { at: RowPos, error: TokenizeError },
    /// A row longer than `seq_len` under `overflow = error`.
    TooLong { at: RowPos, tokens: usize, seq_len: usize },
    /// An output file cannot be written.
    Io { path: String, message: String },
    /// The config is unusable (fractions, sizes, thread pool).
    Config(String),
    /// Stopped through [`StepControl::cancelled`]; nothing was written.
    Cancelled,
}

impl std::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrepareError::Source(e) => e.fmt(f),
            PrepareError::Conversation { at, error } => write!(f, "{at}: {error}"),
            PrepareError::Tokenize { at, error } => write!(f, "{at}: {error}"),
            PrepareError::TooLong { at, tokens, seq_len } => write!(
                f,
                "{at}: the conversation has {tokens} tokens, more than seq_len = {seq_len} \
                 (set `overflow = drop` or `truncate`, or raise seq_len)"
            ),
            PrepareError::Io { path, message } => write!(f, "cannot write {path}: {message}"),
            PrepareError::Config(message) => f.write_str(message),
            PrepareError::Cancelled => f.write_str("interrupted before it finished; nothing was written"),
        }
    }
}

impl std::error::Error for PrepareError {}

impl From<SourceError> for PrepareError {
    fn from(e: SourceError) -> Self {
        PrepareError::Source(e)
    }
}

/// Runs the step on `source` and writes the split files and `profile.json` under `out`.
pub fn prepare(
    source: &SourceSpec,
    tokenizer: &ChatTokenizer,
    config: &PrepareConfig,
    out: &Path,
) -> Result<Profile, PrepareError> {
    let thresholds = split_thresholds(&config.split)?;
    if config.seq_len == 0 || config.batch_rows == 0 {
        return Err(PrepareError::Config("seq_len and batch_rows must be positive".to_string()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .map_err(|e| PrepareError::Config(format!("cannot start the worker threads: {e}")))?;
    // Past this many bytes a rendered row cannot fit `seq_len` tokens: under `overflow = drop` it
    // is dropped without being encoded, which for a row of megabytes costs minutes and gigabytes.
    let drop_above = (config.overflow == OverflowPolicy::Drop)
        .then(|| tokenizer.max_bytes_per_token())
        .flatten()
        .map(|bytes| bytes.saturating_mul(config.seq_len));
    let step = Step { source, tokenizer, config, thresholds, drop_above };
    let mut rows = source.open()?;
    let path = rows.path().to_string();
    let outputs = Outputs::create(out, config.row_group_bytes)?;
    // The ordered writer takes batch n while the workers process batch n + 1.
    let (sender, receiver) = mpsc::sync_channel::<Vec<Processed>>(1);
    let (read, written) = std::thread::scope(|scope| {
        let step = &step;
        let writer = scope.spawn(move || {
            let mut outputs = outputs;
            let mut tally = Tally::default();
            for batch in receiver {
                for item in batch {
                    tally.take(item, step, &mut outputs, &path)?;
                }
            }
            Ok::<_, PrepareError>((tally, outputs))
        });
        let read = (|| loop {
            if config.control.cancelled.load(Ordering::Relaxed) {
                return Err(PrepareError::Cancelled);
            }
            let batch = rows.batch(config.batch_rows)?;
            if batch.is_empty() {
                return Ok(());
            }
            config.control.rows_read.fetch_add(batch.len() as u64, Ordering::Relaxed);
            let processed: Vec<Processed> = pool.install(|| batch.par_iter().map(|raw| step.process(raw)).collect());
            if sender.send(processed).is_err() {
                // The writer stopped on an error, which it returns.
                return Ok(());
            }
        })();
        drop(sender);
        let written =
            writer.join().unwrap_or_else(|_| Err(PrepareError::Config("the writer thread panicked".to_string())));
        (read, written)
    });
    let (tally, outputs) = written?;
    read?;
    let profile = tally.profile();
    outputs.commit(out, &profile)?;
    Ok(profile)
}

/// The cumulative upper bounds of train and val in [0, 1].
fn split_thresholds(split: &SplitFractions) -> Result<[f64; 2], PrepareError> {
    let parts = [split.train, split.val, split.test];
    if parts.iter().any(|f| !f.is_finite() || *f < 0.0) || parts.iter().sum::<f64>() <= 0.0 {
        return Err(PrepareError::Config(format!(
            "split fractions must be non-negative with a positive sum (train = {}, val = {}, test = {})",
            split.train, split.val, split.test
        )));
    }
    let sum: f64 = parts.iter().sum();
    Ok([split.train / sum, (split.train + split.val) / sum])
}

/// The shared, read-only state of a run.
struct Step<'a> {
    source: &'a SourceSpec,
    tokenizer: &'a ChatTokenizer,
    config: &'a PrepareConfig,
    thresholds: [f64; 2],
    /// Rendered rows longer than this many bytes are dropped unencoded (`overflow = drop`).
    drop_above: Option<usize>,
}

/// What became of one record, computed in parallel.
enum Processed {
    Bad(RowError),
    /// A row whose conversation cannot be built or that its chat template refuses: a bad row too.
    BadConversation(PrepareError),
    Failed(PrepareError),
    Done {
        at: RowPos,
        key: [u8; 16],
        fit: Fitted,
    },
}

/// A conversation after the overflow policy.
enum Fitted {
    Written { split: Split, counts: RowCounts, truncated: bool, row: Row },
    Dropped,
    TooLong { tokens: usize },
}

/// The figures of one written row that the profile adds up.
#[derive(Debug, Clone, Copy, Default)]
struct RowCounts {
    tokens: usize,
    trained: usize,
    messages: usize,
    assistant_turns: usize,
    turns_lost: usize,
    answer_tokens: usize,
}

impl Step<'_> {
    fn process(&self, raw: &RawRow) -> Processed {
        let at = raw.at;
        let row = match self.source.schema.check(raw) {
            Ok(row) => row,
            Err(e) => return Processed::Bad(e),
        };
        let conversation = match self.config.chat.conversation(&row.values) {
            Ok(c) => c,
            Err(error) if error.is_bad_row() => {
                return Processed::BadConversation(PrepareError::Conversation { at, error })
            }
            Err(error) => return Processed::Failed(PrepareError::Conversation { at, error }),
        };
        let trained = match self.config.train_on {
            TrainOn::All => Trained::All,
            TrainOn::LastAssistant => Trained::Turns(vec![conversation.messages.len() - 1]),
            TrainOn::Assistant => Trained::Turns(conversation.assistant_turns()),
        };
        let tools = conversation.tools.as_ref().map(|t| minijinja::Value::from(minijinja::value::Serde(t)));
        let vars = Vars { extra: &self.config.template_vars, tools: tools.as_ref() };
        if let Some(text) = self.surely_too_long(&conversation.messages, &vars) {
            return Processed::Done { at, key: dedup_key(&text).0, fit: Fitted::Dropped };
        }
        let encoded = match self.tokenizer.encode_turns(&conversation.messages, &vars, &trained) {
            Ok(e) => e,
            // The template refuses the row, or no exact label mask exists for it (a token straddles
            // the edge of a turn): the row's own problem, under `on_bad_row`.
            Err(
                error @ (TokenizeError::Template(TemplateError::Raised(_))
                | TokenizeError::PromptMismatch { .. }
                | TokenizeError::TurnNotFound { .. }),
            ) => return Processed::BadConversation(PrepareError::Tokenize { at, error }),
            Err(error) => return Processed::Failed(PrepareError::Tokenize { at, error }),
        };
        let (key, digest) = dedup_key(&encoded.text);
        let split = self.split_of(&digest);
        let turns = match &trained {
            Trained::Turns(turns) => turns.as_slice(),
            Trained::All => &[],
        };
        let fit = match self.fit(encoded, split, &conversation, turns, &vars) {
            Ok(fit) => fit,
            Err(error) => return Processed::Failed(PrepareError::Tokenize { at, error }),
        };
        Processed::Done { at, key, fit }
    }

    /// The rendered text of a conversation that cannot fit `seq_len` tokens (see
    /// [`ChatTokenizer::max_bytes_per_token`]), told without encoding it; only rows whose contents
    /// alone are that long are rendered twice.
    fn surely_too_long(&self, messages: &[Message], vars: &Vars<'_>) -> Option<String> {
        let limit = self.drop_above?;
        let contents: usize = messages.iter().map(|m| m.content().and_then(|c| c.as_str()).map_or(0, str::len)).sum();
        if contents <= limit {
            return None;
        }
        let values: Vec<minijinja::Value> = messages.iter().map(Message::to_value).collect();
        let text = self.tokenizer.template().render_values(&values, false, vars).ok()?;
        (text.len() > limit).then_some(text)
    }

    /// The split of a conversation, from the hash of (seed, its digest).
    fn split_of(&self, digest: &[u8; 32]) -> Split {
        let mut hasher = Sha256::new();
        hasher.update(self.config.split.seed.to_le_bytes());
        hasher.update(digest);
        let hash: [u8; 32] = hasher.finalize().into();
        let mut high = [0u8; 8];
        high.copy_from_slice(&hash[..8]);
        let draw = (u64::from_be_bytes(high) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < self.thresholds[0] {
            Split::Train
        } else if draw < self.thresholds[1] {
            Split::Val
        } else {
            Split::Test
        }
    }

    /// The row after the overflow policy. `turns` are the message indices of the trained turns.
    fn fit(
        &self,
        encoded: Encoded,
        split: Split,
        conversation: &Conversation,
        turns: &[usize],
        vars: &Vars<'_>,
    ) -> Result<Fitted, TokenizeError> {
        let answer_tokens = encoded.example.input_ids.len().saturating_sub(encoded.example.prompt_tokens);
        let (example, truncated, turns_lost) = match fit(encoded.example, self.config.seq_len, self.config.overflow) {
            Fit::Kept(example) => (example, false, 0),
            Fit::Truncated { example, turns_lost, .. } => (example, true, turns_lost),
            Fit::Dropped { .. } => return Ok(Fitted::Dropped),
            Fit::TooLong { tokens } => return Ok(Fitted::TooLong { tokens }),
        };
        let test = split == Split::Test;
        let counts = RowCounts {
            tokens: example.input_ids.len(),
            trained: example.labels.iter().filter(|&&label| label != IGNORE_INDEX).count(),
            messages: conversation.messages.len(),
            assistant_turns: example.turns.len(),
            turns_lost,
            answer_tokens,
        };
        // A test row asks for its final turn; when truncation took that turn away, it asks for the
        // last turn it kept, whose prompt fits.
        let (prompt, reference) = match example.turns.len().checked_sub(1).and_then(|kept| turns.get(kept)) {
            Some(&last) if test && turns_lost > 0 && last + 1 < conversation.messages.len() => {
                let values: Vec<minijinja::Value> =
                    conversation.messages[..last].iter().map(Message::to_value).collect();
                let prompt = self.tokenizer.template().render_values(&values, true, vars)?;
                (prompt, reference(&conversation.messages[last]))
            }
            _ => (encoded.prompt, conversation.reference.clone()),
        };
        let row = Row {
            text: encoded.text,
            input_ids: example.input_ids,
            labels: example.labels,
            prompt: test.then_some(prompt),
            reference: test.then_some(reference),
        };
        Ok(Fitted::Written { split, counts, truncated, row })
    }
}

/// The deduplication key of a rendered conversation (the first half of its SHA-256), and the
/// digest itself.
fn dedup_key(text: &str) -> ([u8; 16], [u8; 32]) {
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    (key, digest)
}

/// The counts of a run so far, and the digests seen.
#[derive(Default)]
struct Tally {
    seen: HashSet<[u8; 16]>,
    profile: Profile,
    tokens: u64,
    answer_tokens: u64,
    /// Rows per power-of-two bucket: index `i` counts lengths in (2^(i-1), 2^i].
    buckets: Vec<u64>,
}

impl Tally {
    /// Accounts for one processed record, in file order, and writes it out when it is kept.
    fn take(
        &mut self,
        item: Processed,
        step: &Step<'_>,
        outputs: &mut Outputs,
        path: &str,
    ) -> Result<(), PrepareError> {
        self.profile.read += 1;
        let (at, key, fitted) = match item {
            Processed::Bad(_) if step.source.on_bad_row == BadRowPolicy::Skip => {
                self.profile.skipped += 1;
                return Ok(());
            }
            Processed::Bad(error) => {
                return Err(PrepareError::Source(SourceError::BadRow { path: path.to_string(), error }))
            }
            Processed::BadConversation(_) if step.source.on_bad_row == BadRowPolicy::Skip => {
                self.profile.skipped += 1;
                return Ok(());
            }
            Processed::BadConversation(error) => return Err(error),
            Processed::Failed(e) => return Err(e),
            Processed::Done { at, key, fit } => (at, key, fit),
        };
        if step.config.dedup && !self.seen.insert(key) {
            self.profile.duplicates += 1;
            return Ok(());
        }
        match fitted {
            Fitted::Dropped => self.profile.dropped += 1,
            Fitted::TooLong { tokens } => {
                return Err(PrepareError::TooLong { at, tokens, seq_len: step.config.seq_len });
            }
            Fitted::Written { split, counts, truncated, row } => {
                outputs.write(split, row)?;
                self.count(split, counts, truncated);
            }
        }
        Ok(())
    }

    fn count(&mut self, split: Split, counts: RowCounts, truncated: bool) {
        let tokens = counts.tokens as u64;
        self.profile.rows += 1;
        self.profile.truncated += u64::from(truncated);
        self.profile.max_tokens = self.profile.max_tokens.max(tokens);
        self.profile.messages += counts.messages as u64;
        self.profile.assistant_turns += counts.assistant_turns as u64;
        self.profile.trained_tokens += counts.trained as u64;
        self.profile.masked_tokens += (counts.tokens - counts.trained) as u64;
        self.profile.turns_lost += counts.turns_lost as u64;
        self.answer_tokens += counts.answer_tokens as u64;
        self.tokens += tokens;
        match split {
            Split::Train => self.profile.splits.train += 1,
            Split::Val => self.profile.splits.val += 1,
            Split::Test => self.profile.splits.test += 1,
        }
        let bucket = (64 - tokens.saturating_sub(1).leading_zeros()) as usize;
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += 1;
    }

    fn profile(&self) -> Profile {
        let mut profile = self.profile.clone();
        if profile.rows > 0 {
            profile.mean_tokens = self.tokens as f64 / profile.rows as f64;
            profile.mean_answer_tokens = self.answer_tokens as f64 / profile.rows as f64;
        }
        profile.histogram = (self.buckets.iter().enumerate())
            .filter(|(_, &rows)| rows > 0)
            .map(|(i, &rows)| Bucket { tokens_up_to: 1 << i, rows })
            .collect();
        profile
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_normalize_the_fractions() {
        let split = |train, val, test| SplitFractions { train, val, test, seed: 1 };
        let [train, val] = split_thresholds(&split(0.9, 0.05, 0.05)).expect("valid");
        assert!((train - 0.9).abs() < 1e-12 && (val - 0.95).abs() < 1e-12, "{train} {val}");
        assert_eq!(split_thresholds(&split(2.0, 1.0, 1.0)).expect("valid"), [0.5, 0.75]);
        assert_eq!(split_thresholds(&split(1.0, 0.0, 0.0)).expect("valid"), [1.0, 1.0]);
        assert!(split_thresholds(&split(0.0, 0.0, 0.0)).is_err());
        assert!(split_thresholds(&split(-0.1, 1.0, 0.0)).is_err());
    }

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let mut tally = Tally::default();
        for tokens in [1, 2, 3, 4, 5, 8, 9, 1000] {
            tally.count(Split::Train, RowCounts { tokens, ..RowCounts::default() }, false);
        }
        let profile = tally.profile();
        let bars: Vec<(u64, u64)> = profile.histogram.iter().map(|b| (b.tokens_up_to, b.rows)).collect();
        assert_eq!(bars, [(1, 1), (2, 1), (4, 2), (8, 2), (16, 1), (1024, 1)]);
        assert_eq!(profile.max_tokens, 1000);
        assert_eq!(profile.mean_tokens, 129.0);
    }
}
