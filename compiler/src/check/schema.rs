//! The schema of the language: which functions each node kind may call, which fields every node,
//! variant and target takes, their types, ranges and documentation.
//!
//! The checker validates every field against this table generically (unknown fields with a
//! suggestion, types, enumeration values, ranges), so a domain rule only ever sees well-typed
//! values. The documentation strings are the ones an editor shows on hover. Defaults are not here:
//! they live in `stdlib/prelude.tune`, in the language itself.

use crate::syntax::ast::NodeKind;
use crate::target::Target;

/// The type a field's value must have.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// A string literal. `env("NAME")` is not accepted: the value ends up in artifacts.
    Str,
    /// A string literal or `env("NAME")`, resolved at run time and never written in clear.
    StrOrEnv,
    /// Must come from `secret("ARN")` (AWS Secrets Manager) or `env("NAME")` (tokens, keys).
    Secret,
    /// A string with `{column}` placeholders.
    Template,
    /// A string naming a column of the node's dataset (`messages = "messages"`).
    Column,
    Int {
        min: i64,
        max: i64,
    },
    /// `min_exclusive` makes the lower bound strict (a learning rate of 0 is meaningless).
    Float {
        min: f64,
        max: f64,
        min_exclusive: bool,
    },
    Bool,
    Duration,
    Size,
    Money,
    Enum(&'static [&'static str]),
    /// `qlora { r = 32 }` or a bare `full`.
    Variant(&'static [VariantSpec]),
    /// `"ml.p4d.24xlarge"` or `"ml.p4d.24xlarge" x 2`.
    Instance,
    /// `{ question: string, options: [string] }`.
    Columns,
    /// A list whose elements have the given type.
    List(&'static Ty),
    /// `all_linear` or a list of module names.
    Targets,
    /// A reference to another node's output.
    Ref(&'static [RefTy]),
}

/// The node output types a reference may point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefTy {
    Model,
    Dataset,
    /// A whole chat node or one part of a split: rendered, tokenized conversations.
    Chat,
    Splits,
    Adapter,
    EvalReport,
}

impl RefTy {
    pub fn as_str(self) -> &'static str {
        match self {
            RefTy::Model => "Model",
            RefTy::Dataset => "Dataset",
            RefTy::Chat => "Chat",
            RefTy::Splits => "Splits",
            RefTy::Adapter => "Adapter",
            RefTy::EvalReport => "EvalReport",
        }
    }
}

impl Ty {
    /// How the type is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Ty::Str => "a string".into(),
            Ty::StrOrEnv => "a string or `env(\"NAME\")`".into(),
            Ty::Secret => "`secret(\"ARN\")` or `env(\"NAME\")`".into(),
            Ty::Template => "a template string".into(),
            Ty::Column => "a column name (`\"messages\"`)".into(),
            Ty::Int { .. } => "an integer".into(),
            Ty::Float { .. } => "a number".into(),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Duration => "a duration (`30m`, `5h`)".into(),
            Ty::Size => "a size (`40GiB`)".into(),
            Ty::Money => "an amount (`$150`)".into(),
            Ty::Enum(values) => one_of(values),
            Ty::Variant(variants) => one_of(&variants.iter().map(|v| v.name).collect::<Vec<_>>()),
            Ty::Instance => "an instance type (`\"ml.p4d.24xlarge\" x 1`)".into(),
            Ty::Columns => "a column schema (`{ question: string }`)".into(),
            Ty::List(inner) => {
                format!("a list of {}", inner.describe().trim_start_matches("a ").trim_start_matches("an "))
            }
            Ty::Targets => "`all_linear` or a list of module names".into(),
            Ty::Ref(tys) => {
                let names: Vec<_> = tys.iter().map(|t| t.as_str()).collect();
                format!("a reference to a {} node", names.join(" or "))
            }
        }
    }
}

pub(crate) fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.as_slice() {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("one of {} or {last}", init.join(", ")),
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub struct VariantSpec {
    pub name: &'static str,
    pub fields: &'static [FieldSpec],
    pub doc: &'static str,
}

/// A function a node may call: `sft(model, data = ...)`. Positional arguments fill the fields
/// named in `positional`, in order; named arguments and the block fill the rest.
#[derive(Debug)]
pub struct FuncSpec {
    pub kind: NodeKind,
    pub name: &'static str,
    pub positional: &'static [&'static str],
    pub fields: &'static [FieldSpec],
    pub doc: &'static str,
}

#[derive(Debug)]
pub struct TargetSpec {
    pub name: &'static str,
    pub target: Target,
    pub fields: &'static [FieldSpec],
    pub doc: &'static str,
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> FieldSpec {
    FieldSpec { name, ty, required: true, doc }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> FieldSpec {
    FieldSpec { name, ty, required: false, doc }
}

const POS: Ty = Ty::Int { min: 1, max: i64::MAX };
const NON_NEG: Ty = Ty::Int { min: 0, max: i64::MAX };
const FRACTION: Ty = Ty::Float { min: 0.0, max: 1.0, min_exclusive: false };
pub const DTYPES: &[&str] = &["bf16", "fp16", "fp32"];
pub const METRICS: &[&str] = &["exact_match", "rouge_l", "choice_accuracy"];
pub const OPTIMIZERS: &[&str] = &[
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "adamw_torch_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "adafactor",
    "sgd",
];
pub const EIGHT_BIT_OPTIMIZERS: &[&str] = &["adamw_8bit", "adamw_bnb_8bit", "adamw_torch_8bit", "paged_adamw_8bit"];

const TOKEN: FieldSpec = opt(
    "token",
    Ty::Secret,
    "A Hub access token for gated repositories: `secret(\"arn:aws:secretsmanager:...\")` (read where it is \
         used; on SageMaker, by the job with its execution role) or `env(\"HF_TOKEN\")`.",
);
const REVISION: FieldSpec = opt("revision", Ty::Str, "A Hub revision (branch, tag or commit) to pin.");

const DATASET_FIELDS: &[FieldSpec] = &[
    req(
        "columns",
        Ty::Columns,
        "The columns the pipeline reads and their types (`string`, `int`, `float`, `bool`, `[string]`).",
    ),
    opt("split", Ty::Str, "A split and slice as the Hub writes it: `train`, `train[:10000]`, `train[10%:]`."),
    opt("rows", POS, "The number of rows, for estimates before the data has been profiled."),
    opt("mean_tokens", POS, "The mean tokens per conversation, for estimates before the data has been profiled."),
    opt(
        "on_bad_row",
        Ty::Enum(&["fail", "skip"]),
        "What a malformed row does: `fail` stops with its row number, `skip` counts it.",
    ),
    REVISION,
    TOKEN,
];

const LORA_FIELDS: &[FieldSpec] = &[
    opt("r", Ty::Int { min: 1, max: 4096 }, "The LoRA rank."),
    opt(
        "alpha",
        Ty::Float { min: 0.0, max: 1.0e6, min_exclusive: true },
        "The LoRA scaling numerator (scale = alpha / r).",
    ),
    opt(
        "dropout",
        Ty::Float { min: 0.0, max: 1.0, min_exclusive: false },
        "Dropout on the adapter input; 0 disables it.",
    ),
    opt(
        "targets",
        Ty::Targets,
        "The modules that get adapters: `all_linear`, or a list of names such as `[q_proj, v_proj]`, which may hold `all_linear` and, for a mixture-of-experts model, `experts`.",
    ),
    opt("rslora", Ty::Bool, "Scale by alpha / sqrt(r) instead of alpha / r."),
    opt(
        "modules_to_save",
        Ty::List(&Ty::Str),
        "Modules trained in full next to the adapter (`embed_tokens`, `lm_head`).",
    ),
];

const QUANT_FIELDS: &[FieldSpec] = &[
    opt("double_quant", Ty::Bool, "Quantize the quantization constants too (0.127 instead of 0.5 bit per parameter)."),
    opt("compute", Ty::Enum(DTYPES), "The dtype matmuls run in after dequantization."),
    opt(
        "storage",
        Ty::Enum(&["bf16", "fp16", "fp32", "uint8"]),
        "The dtype 4-bit values are packed into; FSDP needs it to equal the training dtype.",
    ),
];

const FSDP_FIELDS: &[FieldSpec] = &[
    opt("auto_wrap", Ty::Bool, "Wrap every decoder layer in its own FSDP unit (TRANSFORMER_BASED_WRAP)."),
    opt("wrap_class", Ty::Str, "The class to wrap; tunec derives it from the architecture when unset."),
    opt("offload", Ty::Bool, "Keep sharded parameters, gradients and optimizer state in host RAM."),
    opt("cpu_ram_efficient_loading", Ty::Bool, "Load weights on rank 0 only and broadcast them."),
    opt("sync_module_states", Ty::Bool, "Broadcast rank 0's weights to the other ranks after wrapping."),
    opt("use_orig_params", Ty::Bool, "Let FSDP keep the original parameters (costs memory with frozen weights)."),
    opt(
        "activation_checkpointing",
        Ty::Bool,
        "FSDP's own activation checkpointing (exclusive with gradient_checkpointing).",
    ),
];

const TRANSFORMERS: FieldSpec =
    opt("transformers", Ty::Str, "The transformers version of the training image (stdlib/catalog/images.toml).");
const PYTORCH: FieldSpec =
    opt("pytorch", Ty::Str, "The PyTorch version of the training image (stdlib/catalog/images.toml).");

const TRAIN_FIELDS: &[FieldSpec] = &[
    req("model", Ty::Ref(&[RefTy::Model]), "The base model."),
    req("data", Ty::Ref(&[RefTy::Chat]), "The training conversations: a chat node or a split part (`parts.train`)."),
    opt("eval", Ty::Ref(&[RefTy::Chat]), "Conversations to compute the eval loss on during training."),
    req(
        "method",
        Ty::Variant(&[
            VariantSpec { name: "lora", fields: LORA_FIELDS, doc: "LoRA adapters on a bf16 base." },
            VariantSpec {
                name: "qlora",
                fields: LORA_FIELDS,
                doc: "LoRA adapters on a 4-bit quantized base (needs `quant`).",
            },
            VariantSpec { name: "full", fields: &[], doc: "Full fine-tuning of every weight." },
        ]),
        "How the model is trained.",
    ),
    opt(
        "quant",
        Ty::Variant(&[
            VariantSpec { name: "nf4", fields: QUANT_FIELDS, doc: "4-bit NormalFloat (QLoRA)." },
            VariantSpec {
                name: "fp4",
                fields: QUANT_FIELDS,
                doc: "4-bit float, bitsandbytes' default and worse than nf4 for weights.",
            },
            VariantSpec { name: "int8", fields: &[], doc: "LLM.int8() 8-bit weights." },
        ]),
        "How the frozen base weights are quantized.",
    ),
    opt(
        "fsdp",
        Ty::Variant(&[
            VariantSpec {
                name: "full_shard",
                fields: FSDP_FIELDS,
                doc: "Shard parameters, gradients and optimizer state (ZeRO-3).",
            },
            VariantSpec {
                name: "shard_grad_op",
                fields: FSDP_FIELDS,
                doc: "Shard gradients and optimizer state (ZeRO-2).",
            },
            VariantSpec {
                name: "hybrid_shard",
                fields: FSDP_FIELDS,
                doc: "Full shard within a node, replicate across nodes.",
            },
        ]),
        "Fully sharded data parallelism across the GPUs.",
    ),
    opt("compute", Ty::Instance, "The SageMaker instance type and count."),
    opt("epochs", Ty::Int { min: 1, max: 10_000 }, "Passes over the training data."),
    opt("max_steps", POS, "Stop after this many optimizer steps (overrides epochs)."),
    opt("learning_rate", Ty::Float { min: 0.0, max: 1.0, min_exclusive: true }, "The peak learning rate."),
    opt("per_device_batch", Ty::Int { min: 1, max: 65_536 }, "Sequences per GPU per micro-step."),
    opt("grad_accum", Ty::Int { min: 1, max: 65_536 }, "Micro-steps accumulated per optimizer step."),
    opt("gradient_checkpointing", Ty::Bool, "Recompute activations in the backward pass (non-reentrant)."),
    opt("precision", Ty::Enum(DTYPES), "The training dtype."),
    opt("warmup_steps", NON_NEG, "Linear warm-up steps (exclusive with warmup_ratio)."),
    opt(
        "warmup_ratio",
        Ty::Float { min: 0.0, max: 1.0, min_exclusive: false },
        "Warm-up as a fraction of all steps (exclusive with warmup_steps).",
    ),
    opt("weight_decay", Ty::Float { min: 0.0, max: 1.0, min_exclusive: false }, "AdamW weight decay."),
    opt("save_steps", POS, "Checkpoint every this many steps (spot training resumes from the newest)."),
    opt("logging_steps", POS, "Log the loss every this many steps."),
    opt("eval_steps", POS, "Evaluate every this many steps (defaults to save_steps)."),
    opt("max_runtime", Ty::Duration, "Stop the job after this long (MaxRuntimeInSeconds)."),
    opt("max_wait", Ty::Duration, "With spot, the longest to wait for capacity plus run (MaxWaitTimeInSeconds)."),
    opt("spot", Ty::Bool, "Use managed spot capacity."),
    opt("optimizer", Ty::Enum(OPTIMIZERS), "The optimizer."),
    opt(
        "lr_scheduler",
        Ty::Enum(&["linear", "cosine", "constant", "constant_with_warmup"]),
        "The learning-rate schedule.",
    ),
    opt(
        "attention",
        Ty::Enum(&["sdpa", "flash_attention_2", "eager"]),
        "The attention kernel; unset, the model family's (`eager` for gpt-oss and Gemma 2, else `sdpa`).",
    ),
    opt("packing", Ty::Bool, "Pack several conversations into one sequence."),
    opt("use_cache", Ty::Bool, "Keep the KV cache while training (must be off with gradient checkpointing)."),
    opt(
        "max_grad_norm",
        Ty::Float { min: 0.0, max: 1.0e6, min_exclusive: false },
        "Gradient clipping norm; 0 disables it.",
    ),
    opt("seed", NON_NEG, "The training seed."),
    opt(
        "utilization",
        Ty::Float { min: 0.0, max: 1.0, min_exclusive: true },
        "The fraction of the GPUs' bf16 peak the estimator assumes (defaults per GPU type in stdlib/catalog/gpus.toml).",
    ),
    TRANSFORMERS,
    PYTORCH,
];

const MERGE_FIELDS: &[FieldSpec] = &[
    req("adapter", Ty::Ref(&[RefTy::Adapter]), "The trained adapter."),
    opt("base", Ty::Ref(&[RefTy::Model]), "The base to merge into; must be the one the adapter was trained on."),
    opt("dtype", Ty::Enum(&["bf16", "fp16", "fp32", "nf4", "int8"]), "The dtype the base is loaded and saved in."),
    opt(
        "base_weights",
        Ty::Enum(&["pristine", "nf4_roundtrip"]),
        "Add the update to the original weights, or to their NF4 round trip.",
    ),
    opt("compute", Ty::Instance, "The SageMaker instance type for the merge job."),
    opt("max_shard_size", Ty::Size, "The largest safetensors shard."),
    TRANSFORMERS,
    PYTORCH,
];

const EVAL_FIELDS: &[FieldSpec] = &[
    req("model", Ty::Ref(&[RefTy::Model, RefTy::Adapter]), "The model to evaluate: a merged model or an adapter."),
    req("data", Ty::Ref(&[RefTy::Chat]), "The conversations to generate answers for (normally the test split)."),
    opt("metrics", Ty::List(&Ty::Enum(METRICS)), "The metrics to compute."),
    opt("max_new_tokens", Ty::Int { min: 1, max: 1_000_000 }, "The longest answer generated."),
    opt("batch_size", Ty::Int { min: 1, max: 4096 }, "Prompts generated at once."),
    opt("temperature", Ty::Float { min: 0.0, max: 10.0, min_exclusive: false }, "Sampling temperature; 0 is greedy."),
    opt("compute", Ty::Instance, "The SageMaker instance type for the evaluation job."),
    TRANSFORMERS,
    PYTORCH,
];

pub const FUNCTIONS: &[FuncSpec] = &[
    FuncSpec {
        kind: NodeKind::Model,
        name: "hf_model",
        positional: &["id"],
        fields: &[
            req("id", Ty::Str, "The Hugging Face Hub id, e.g. `meta-llama/Llama-3.1-8B-Instruct`."),
            REVISION,
            TOKEN,
            opt(
                "pad_token",
                Ty::Str,
                "The pad token; tunec picks a reserved token that is neither EOS nor end-of-turn when unset.",
            ),
        ],
        doc: "A model from the Hugging Face Hub whose architecture is in the stdlib catalog.",
    },
    FuncSpec {
        kind: NodeKind::Model,
        name: "local_model",
        positional: &["path"],
        fields: &[
            req("path", Ty::Str, "A directory with config.json, tokenizer.json and tokenizer_config.json."),
            opt(
                "pad_token",
                Ty::Str,
                "The pad token; tunec picks a reserved token that is neither EOS nor end-of-turn when unset.",
            ),
        ],
        doc: "A model in a local directory; its facts are read from its config files.",
    },
    FuncSpec {
        kind: NodeKind::Dataset,
        name: "hf_dataset",
        positional: &["id"],
        fields: &[
            req("id", Ty::Str, "The Hugging Face Hub dataset id."),
            opt(
                "subset",
                Ty::Str,
                "The subset (a configuration in `datasets`) when the dataset has several: `main` of `openai/gsm8k`.",
            ),
            DATASET_FIELDS[0],
            DATASET_FIELDS[1],
            DATASET_FIELDS[2],
            DATASET_FIELDS[3],
            DATASET_FIELDS[4],
            DATASET_FIELDS[5],
            DATASET_FIELDS[6],
        ],
        doc: "A dataset from the Hugging Face Hub.",
    },
    FuncSpec {
        kind: NodeKind::Dataset,
        name: "file",
        positional: &["path"],
        fields: &[
            req("path", Ty::Str, "A local path or an `s3://` URI."),
            opt(
                "format",
                Ty::Enum(&["auto", "jsonl", "parquet", "csv"]),
                "The file format; `auto` uses the extension.",
            ),
            DATASET_FIELDS[0],
            DATASET_FIELDS[1],
            DATASET_FIELDS[2],
            DATASET_FIELDS[3],
            DATASET_FIELDS[4],
        ],
        doc: "A JSONL, Parquet or CSV file, local or on S3.",
    },
    FuncSpec {
        kind: NodeKind::Chat,
        name: "chat_template",
        positional: &["data"],
        fields: &[
            req("data", Ty::Ref(&[RefTy::Dataset]), "The dataset whose rows become conversations."),
            req("tokenizer", Ty::Ref(&[RefTy::Model]), "The model whose tokenizer and chat template are used."),
            opt(
                "messages",
                Ty::Column,
                "The column holding each row's conversation: a list of `{ role, content }` (or ShareGPT's `{ from, value }`) objects.",
            ),
            opt(
                "prompt",
                Ty::Column,
                "The column with the prompt: a string (one user turn) or a list of messages; trained on never.",
            ),
            opt(
                "completion",
                Ty::Column,
                "The column with the completion: a string (one assistant turn) or a list of messages.",
            ),
            opt("tools", Ty::Column, "A column of tool schemas (JSON) the chat template renders for each row."),
            opt(
                "system",
                Ty::Template,
                "The system message; `{column}` inserts a column. Added to conversations that have none.",
            ),
            opt("user", Ty::Template, "The user message; `{column}` inserts a column."),
            opt("assistant", Ty::Template, "The assistant answer the model learns; `{column}` inserts a column."),
            req("seq_len", Ty::Int { min: 1, max: 10_000_000 }, "The longest tokenized conversation."),
            opt("overflow", Ty::Enum(&["drop", "truncate", "error"]), "What a conversation longer than seq_len does."),
            opt("add_special_tokens", Ty::Bool, "Let the tokenizer add BOS/EOS on top of the template."),
            opt(
                "train_on",
                Ty::Enum(&["assistant", "last_assistant", "all"]),
                "Which tokens carry loss: every assistant turn, the final one only, or every token.",
            ),
            opt("date_string", Ty::Str, "Pins the date templates insert (`26 Jul 2024`), so renders are reproducible."),
        ],
        doc: "Renders each row into a conversation with the tokenizer's chat template and tokenizes it.",
    },
    FuncSpec {
        kind: NodeKind::Split,
        name: "split",
        positional: &["data"],
        fields: &[
            req("data", Ty::Ref(&[RefTy::Chat]), "The conversations to split."),
            opt("train", FRACTION, "The fraction for training."),
            opt("val", FRACTION, "The fraction for validation."),
            opt("test", FRACTION, "The fraction for the final test."),
            opt("seed", NON_NEG, "The shuffle seed."),
            opt("dedup", Ty::Bool, "Drop duplicate conversations before splitting."),
        ],
        doc: "A deterministic, seeded split into train, val and test parts.",
    },
    FuncSpec {
        kind: NodeKind::Train,
        name: "sft",
        positional: &["model"],
        fields: TRAIN_FIELDS,
        doc: "Supervised fine-tuning on conversations.",
    },
    FuncSpec {
        kind: NodeKind::Merge,
        name: "merge",
        positional: &["adapter"],
        fields: MERGE_FIELDS,
        doc: "Merges a LoRA/QLoRA adapter into its 16-bit base.",
    },
    FuncSpec {
        kind: NodeKind::Evaluate,
        name: "evaluate",
        positional: &["model", "data"],
        fields: EVAL_FIELDS,
        doc: "Generates answers for a split and scores them.",
    },
];

pub const TARGETS: &[TargetSpec] = &[
    TargetSpec {
        name: "sagemaker",
        target: Target::SageMaker,
        fields: &[
            req("region", Ty::StrOrEnv, "The AWS region, e.g. `us-east-1`."),
            req("role", Ty::StrOrEnv, "The SageMaker execution role ARN, usually `env(\"TUNEC_SAGEMAKER_ROLE\")`."),
            req("bucket", Ty::StrOrEnv, "The S3 prefix for data, code and outputs: `s3://bucket/prefix`."),
            opt("kms_key", Ty::StrOrEnv, "A KMS key for uploads and job outputs."),
        ],
        doc: "Train, merge and evaluate run as SageMaker training jobs.",
    },
    TargetSpec {
        name: "local",
        target: Target::Local,
        fields: &[opt("python", Ty::Str, "The Python interpreter to run the entry scripts with.")],
        doc: "Everything runs on this machine; the default.",
    },
];

/// Settings written directly in the pipeline block.
pub const PIPELINE_FIELDS: &[FieldSpec] = &[
    opt("budget", Ty::Money, "The most the pipeline may cost; exceeding it is a compile error."),
    opt("description", Ty::Str, "What the pipeline is for."),
];

pub fn functions_for(kind: NodeKind) -> impl Iterator<Item = &'static FuncSpec> {
    FUNCTIONS.iter().filter(move |f| f.kind == kind)
}

pub fn function(kind: NodeKind, name: &str) -> Option<&'static FuncSpec> {
    functions_for(kind).find(|f| f.name == name)
}

pub fn field<'a>(fields: &'a [FieldSpec], name: &str) -> Option<&'a FieldSpec> {
    fields.iter().find(|f| f.name == name)
}

/// The fields of one node kind, whatever the function (used for `defaults` blocks).
pub fn kind_fields(kind: NodeKind) -> Vec<&'static FieldSpec> {
    let mut out: Vec<&'static FieldSpec> = Vec::new();
    for func in functions_for(kind) {
        for f in func.fields {
            if !out.iter().any(|o| o.name == f.name) {
                out.push(f);
            }
        }
    }
    out
}
