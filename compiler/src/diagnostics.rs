//! Diagnostics as data: a code, a severity, a message, a primary label on a span, secondary labels
//! and one `help:` line.
//!
//! Every stage returns its problems as `Diagnostic` values and never renders them; `render` turns
//! them into miette reports or JSON. Each code is stable, is named `tunec::<stage>::<name>` and has
//! a page at `docs/errors/<name>.md` (a test keeps the list and the pages in step). Messages are
//! terse and lowercase with names in backticks and no trailing period; the label says what is wrong
//! *here*; the help says how to fix it.

use crate::syntax::ast::Span;
use std::fmt;

/// Identifies a source file in a [`Sources`] map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($( $variant:ident => ($stage:literal, $name:literal, $severity:ident, $summary:literal) ),* $(,)?) => {
        /// Every diagnostic code tunec can emit.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The short name, also the file name of its page under `docs/errors/`.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name),* }
            }

            /// The stage that reports it: `parse`, `resolve`, `check` or `estimate`.
            pub fn stage(self) -> &'static str {
                match self { $(Code::$variant => $stage),* }
            }

            /// The severity it is reported with.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$severity),* }
            }

            /// One line that says what the code is about.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary),* }
            }
        }
    };
}

codes! {
    Syntax => ("parse", "syntax", Error, "the text does not follow the .tune grammar"),
    BadLiteral => ("parse", "bad_literal", Error, "a literal cannot be represented (overflow, bad escape)"),
    NoPipeline => ("resolve", "no_pipeline", Error, "a file must declare exactly one pipeline"),
    UnknownName => ("resolve", "unknown_name", Error, "a name refers to no node or parameter"),
    DuplicateName => ("resolve", "duplicate_name", Error, "two nodes or parameters share a name"),
    Cycle => ("resolve", "cycle", Error, "nodes depend on each other in a cycle"),
    UnknownParam => ("resolve", "unknown_param", Error, "`--set` names a parameter the pipeline does not declare"),
    UnknownFunction => ("check", "unknown_function", Error, "a node calls a function that does not exist for its kind"),
    UnknownField => ("check", "unknown_field", Error, "a field is not known for this node, target or variant"),
    MissingField => ("check", "missing_field", Error, "a required field is not set"),
    DuplicateField => ("check", "duplicate_field", Error, "a field is set twice"),
    TypeMismatch => ("check", "type_mismatch", Error, "a value has the wrong type for its field"),
    UnknownValue => ("check", "unknown_value", Error, "an enumeration value is not one of the allowed ones"),
    ValueRange => ("check", "value_range", Error, "a number is outside the range its field accepts"),
    UnknownModel => ("check", "unknown_model", Error, "a Hugging Face model id is not in the catalog"),
    LocalModel => ("check", "local_model", Error, "a local model directory cannot be read or understood"),
    UnknownInstance => ("check", "unknown_instance", Error, "an instance type is not a known SageMaker training instance"),
    NoCudaGpu => ("check", "no_cuda_gpu", Error, "a GPU method runs on an instance without a CUDA GPU"),
    Bf16Unsupported => ("check", "bf16_unsupported", Error, "bf16 on a GPU that has no bf16 support"),
    FsdpQloraStorage => ("check", "fsdp_qlora_storage", Error, "FSDP with 4-bit weights needs the quant storage dtype to equal the training dtype"),
    BnbDefaults => ("check", "bnb_defaults", Warning, "4-bit settings that are bitsandbytes' defaults, not QLoRA's"),
    QuantWithoutAdapter => ("check", "quant_without_adapter", Error, "quantized weights need an adapter method (LoRA/QLoRA)"),
    PadIsEos => ("check", "pad_is_eos", Error, "the pad token is the end-of-sequence, end-of-turn or a stop token"),
    DoubleBos => ("check", "double_bos", Error, "the template adds BOS and tokenization adds it again"),
    SeqLenContext => ("check", "seq_len_context", Error, "seq_len is longer than the model's context window"),
    FsdpWrapClass => ("check", "fsdp_wrap_class", Error, "the FSDP wrap class is not the model's decoder layer"),
    FsdpSingleGpu => ("check", "fsdp_single_gpu", Warning, "FSDP on a single GPU without offload shards nothing"),
    RamEfficientLoading => ("check", "ram_efficient_loading", Error, "CPU-RAM-efficient loading without syncing module states"),
    DoubleCheckpointing => ("check", "double_checkpointing", Error, "FSDP activation checkpointing and gradient checkpointing are both on"),
    UseCacheTraining => ("check", "use_cache_training", Error, "use_cache is on while training with gradient checkpointing"),
    OptimizerFsdp => ("check", "optimizer_fsdp", Error, "an optimizer that breaks under this FSDP setup"),
    WarmupConflict => ("check", "warmup_conflict", Error, "warmup_steps and warmup_ratio are both set"),
    UnknownTargetModule => ("check", "unknown_target_module", Error, "a LoRA target module does not exist in the architecture"),
    PackingAttention => ("check", "packing_attention", Error, "packing without an attention kernel that isolates samples"),
    TemplatePlaceholder => ("check", "template_placeholder", Error, "a template placeholder names no column of the dataset, or one with no text form"),
    UntrainedSpecialTokens => ("check", "untrained_special_tokens", Warning, "a chat template on a base model trains untrained special tokens"),
    ConversationFields => ("check", "conversation_fields", Error, "a chat node describes its conversation with no set of fields, or with more than one"),
    ConversationColumn => ("check", "conversation_column", Error, "a chat node's messages, prompt, completion or tools column is missing or has the wrong type"),
    ReasoningDropped => ("check", "reasoning_dropped", Warning, "the chat template leaves out reasoning that the data provides"),
    SplitFractions => ("check", "split_fractions", Error, "split fractions are out of range or sum to more than 1"),
    SplitLeakage => ("check", "split_leakage", Error, "training data is also used for evaluation"),
    SplitSlice => ("check", "split_slice", Error, "a dataset split slice is malformed"),
    MergeQuantizedBase => ("check", "merge_quantized_base", Error, "an adapter is merged into a quantized base"),
    MergeDtype => ("check", "merge_dtype", Warning, "the merge dtype differs from the training precision"),
    AdapterBase => ("check", "adapter_base", Error, "an adapter is applied to a base it was not trained on"),
    SpotWithoutCheckpoints => ("check", "spot_without_checkpoints", Warning, "managed spot training without checkpoints restarts from scratch"),
    MaxRuntimeLimit => ("check", "max_runtime_limit", Error, "a runtime or wait limit is outside what SageMaker accepts"),
    InlineSecret => ("check", "inline_secret", Error, "a secret is written into the pipeline in clear"),
    SecretArn => ("check", "secret_arn", Error, "`secret(...)` is not given the ARN of a Secrets Manager secret"),
    TokenInJob => ("check", "token_in_job", Warning, "a Hub token from env() is written into a SageMaker training job's environment"),
    UnknownImage => ("check", "unknown_image", Error, "no training image for these versions in this region"),
    TransformersVersion => ("check", "transformers_version", Error, "the model's family needs a newer transformers than the job's image"),
    AttentionKernel => ("check", "attention_kernel", Error, "the attention kernel is one the model's family cannot use"),
    FusedExpertsQuant => ("check", "fused_experts_quant", Warning, "bitsandbytes cannot quantize fused expert parameters, which stay bf16"),
    Mxfp4Quant => ("check", "mxfp4_quant", Error, "MXFP4 weights must be dequantized to bf16 to train; bitsandbytes cannot quantize them"),
    ExpertLoraDropout => ("check", "expert_lora_dropout", Error, "LoRA on fused expert parameters needs dropout 0"),
    TokenizerVocab => ("check", "tokenizer_vocab", Error, "the tokenizer has token ids past the model's embedding rows"),
    TemplateRoles => ("check", "template_roles", Error, "the chat template refuses a role the conversations use"),
    GpuMemory => ("estimate", "gpu_memory", Error, "the estimated per-GPU peak memory exceeds the GPU's memory"),
    HostMemory => ("estimate", "host_memory", Error, "the estimated host memory exceeds the instance's RAM"),
    DiskSpace => ("estimate", "disk_space", Error, "the estimated disk use exceeds the instance's storage"),
    Budget => ("estimate", "budget", Error, "the estimated cost of the pipeline exceeds its budget"),
    UnknownSize => ("estimate", "unknown_size", Warning, "the dataset's size is unknown, so time and cost are not estimated"),
    TimeLimit => ("estimate", "time_limit", Warning, "the estimated training time exceeds the node's max_runtime"),
}

impl Code {
    /// `tunec::check::fsdp_qlora_storage`
    pub fn full(self) -> String {
        format!("tunec::{}::{}", self.stage(), self.name())
    }

    /// Finds a code by its full (`tunec::check::x`) or short (`x`) name.
    pub fn lookup(text: &str) -> Option<Code> {
        let short = text.rsplit("::").next().unwrap_or(text);
        Code::ALL.iter().copied().find(|code| code.name() == short && (text == short || text == code.full()))
    }

    /// The codes `text` may have meant when [`Code::lookup`] finds none: the nearest name by edit
    /// distance (`fsdp_qlora_storag`), else the names that contain it (`qlora`), at most five.
    pub fn suggest(text: &str) -> Vec<Code> {
        let short = text.rsplit("::").next().unwrap_or(text).trim().to_ascii_lowercase().replace('-', "_");
        if let Some(name) = crate::check::suggest::closest(&short, Code::ALL.iter().map(|c| c.name())) {
            return Code::ALL.iter().copied().filter(|c| c.name() == name).collect();
        }
        if short.len() < 3 {
            return Vec::new();
        }
        let containing: Vec<Code> = Code::ALL.iter().copied().filter(|c| c.name().contains(&short)).collect();
        if containing.len() <= 5 {
            containing
        } else {
            Vec::new()
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tunec::{}::{}", self.stage(), self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

impl Label {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Label { span, message: message.into() }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub file: FileId,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's own severity.
    pub fn new(code: Code, file: FileId, message: impl Into<String>, primary: Label) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            file,
            primary,
            secondary: Vec::new(),
            help: None,
        }
    }

    #[must_use]
    pub fn with_label(mut self, label: Label) -> Self {
        self.secondary.push(label);
        self
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// One source text and the name it is shown under.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// The texts that diagnostics point into: the pipeline file, the stdlib prelude, `--set` values.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile { name: name.into(), text: text.into() });
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    pub fn get(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize)
    }

    pub fn name(&self, id: FileId) -> &str {
        self.get(id).map_or("<unknown>", |f| f.name.as_str())
    }

    pub fn text(&self, id: FileId) -> &str {
        self.get(id).map_or("", |f| f.text.as_str())
    }
}

/// Line starts of one text, for turning many offsets into lines and columns in O(log n) each.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column of a byte offset; the column counts Unicode scalar values.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let (line, start, offset) = self.locate(text, offset);
        (line + 1, text[start..offset].chars().count() + 1)
    }

    /// The 0-based line of a byte offset, that line's start, and the offset itself, clamped into
    /// the text and back onto a character boundary.
    pub fn locate(&self, text: &str, offset: usize) -> (usize, usize, usize) {
        let offset = offset.min(text.len());
        let offset = (0..=offset).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let line = self.starts.partition_point(|s| *s <= offset) - 1;
        (line, self.starts[line], offset)
    }

    /// The byte range of 0-based `line`, without its `\n`; `None` past the last line.
    pub fn line_range(&self, text: &str, line: usize) -> Option<(usize, usize)> {
        let start = *self.starts.get(line)?;
        Some((start, self.starts.get(line + 1).map_or(text.len(), |next| next - 1)))
    }
}

/// 1-based line and column of a byte offset; the column counts Unicode scalar values.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let offset = (0..=offset).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_found_by_either_name() {
        let mut names: Vec<_> = Code::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
        assert_eq!(Code::lookup("tunec::check::fsdp_qlora_storage"), Some(Code::FsdpQloraStorage));
        assert_eq!(Code::lookup("fsdp_qlora_storage"), Some(Code::FsdpQloraStorage));
        assert_eq!(Code::lookup("tunec::parse::fsdp_qlora_storage"), None);
        assert_eq!(Code::lookup("nope"), None);
    }

    #[test]
    fn line_col_counts_chars() {
        let text = "ab\ncé d";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 6), (2, 3));
        assert_eq!(line_col(text, 999), (2, 5));
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(index.line_col(text, offset), line_col(text, offset), "{offset}");
        }
    }
}
