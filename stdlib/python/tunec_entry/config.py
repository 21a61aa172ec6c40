"""args.yaml: the one configuration file of the entry scripts.

The lowering writes one flat YAML mapping per job. Its keys follow the seed workflow's TrlParser style: the field
names of transformers' `TrainingArguments` (which TRL's `SFTConfig` extends) go to the Trainer as they are, and
the names of TRL's `ModelConfig` describe the model, LoRA and bitsandbytes settings. tunec adds the keys that TRL
lacks (`method`, `bnb_4bit_quant_storage`, `pad_token`, `eot_token`, `stop_tokens`, the merge and evaluation
settings, ...). docs/entry-scripts.md lists every key.

The parser is strict: an unknown key is an error (with the closest known names), because a misspelt key that is
silently ignored costs a GPU run. YAML 1.1 reads `2e-4` as a string, so numeric strings are converted wherever
the field is a number.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from tunec_entry.failure import EntryError

METHODS = ("lora", "qlora", "full")
BASE_WEIGHTS = ("pristine",)
EVAL_METRICS = ("exact_match", "rouge_l", "choice_accuracy")
QUANT_TYPES = ("nf4", "fp4")

DTYPE_NAMES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
"""Accepted spellings of a floating dtype, mapped to the torch attribute name."""

RESERVED_TRAINING_KEYS = {"resume_from_checkpoint": "train.py resumes from the newest complete checkpoint by itself"}

ALIASES = {"lora_modules_to_save": "modules_to_save"}
"""TRL ModelConfig names accepted for a tunec key."""


@dataclass(frozen=True)
class TunecArgs:
    """Everything in args.yaml. `training` holds the TrainingArguments keys, untouched but for numeric strings."""

    # TRL ModelConfig
    model_name_or_path: str | None = None
    model_revision: str | None = None
    torch_dtype: str = "bfloat16"
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    use_peft: bool | None = None
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_target_modules: str | tuple[str, ...] = "all-linear"
    lora_target_parameters: tuple[str, ...] = ()
    use_rslora: bool = False
    use_dora: bool = False
    load_in_4bit: bool | None = None
    load_in_8bit: bool | None = None
    bnb_4bit_quant_type: str = "nf4"
    use_bnb_nested_quant: bool = True
    bnb_4bit_compute_dtype: str | None = None
    bnb_4bit_quant_storage: str | None = None
    # tunec: training
    method: str | None = None
    modules_to_save: tuple[str, ...] = ()
    pad_token: str | None = None
    eot_token: str | None = None
    stop_tokens: tuple[str, ...] = ()
    chat_template: str | None = None
    max_length: int | None = None
    packing: bool = False
    use_cache: bool = False
    decoder_layer: str | tuple[str, ...] | None = None
    # tunec: the model family (the compiler writes them from the checkpoint's config.json)
    model_type: str | None = None
    dequantize_mxfp4: bool | None = None
    text_only: bool | None = None
    # tunec: merge
    adapter_path: str | None = None
    base_weights: str = "pristine"
    max_shard_size: str = "5GB"
    # tunec: evaluate
    metrics: tuple[str, ...] | None = None
    max_new_tokens: int = 512
    batch_size: int = 8
    temperature: float = 0.0
    answer_delimiter: str | None = None
    # transformers TrainingArguments / TRL SFTConfig
    training: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_peft(self) -> bool:
        return self.method in ("lora", "qlora")

    @property
    def compute_dtype(self) -> str:
        """bnb_4bit_compute_dtype, defaulting to the model dtype."""
        return self.bnb_4bit_compute_dtype or self.torch_dtype

    @property
    def quant_storage(self) -> str:
        """bnb_4bit_quant_storage, defaulting to the model dtype: FSDP needs it (bitsandbytes defaults to uint8)."""
        return self.bnb_4bit_quant_storage or self.torch_dtype


def load_args(path: Path) -> TunecArgs:
    """Read and validate args.yaml."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise EntryError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise EntryError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(raw, dict):
        raise EntryError(f"{path} must hold a YAML mapping of keys to values, not {type(raw).__name__}")
    return parse_args_mapping(raw)


def parse_args_mapping(raw: Mapping[str, Any]) -> TunecArgs:
    """Split the mapping into TunecArgs fields and TrainingArguments keys, coerce and validate."""
    own_hints = get_type_hints(TunecArgs)
    training_hints = _training_argument_hints()
    own: dict[str, Any] = {}
    training: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in raw.items():
        if not isinstance(key, str):
            raise EntryError(f"args.yaml keys must be strings, got {key!r}")
        name = ALIASES.get(key, key)
        if name in own:
            raise EntryError(f"args.yaml sets `{name}` twice (as `{key}` and as its alias)")
        if name in RESERVED_TRAINING_KEYS:
            raise EntryError(f"args.yaml must not set `{name}`: {RESERVED_TRAINING_KEYS[name]}")
        if name != "training" and name in own_hints:
            own[name] = _coerce(name, value, own_hints[name])
        elif name in training_hints:
            training[name] = _numeric_string(name, value, training_hints[name])
        else:
            unknown.append(key)
    if unknown:
        raise EntryError(_unknown_keys_message(unknown, [*own_hints, *training_hints]))
    args = TunecArgs(**own, training=training)
    return _validated(args)


def _training_argument_hints() -> dict[str, Any]:
    from transformers import TrainingArguments

    return {f.name: f.type for f in dataclasses.fields(TrainingArguments) if f.init}


def _unknown_keys_message(unknown: list[str], known: list[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        parts.append(f"`{key}` (did you mean `{close[0]}`?)" if close else f"`{key}`")
    return "unknown key(s) in args.yaml: " + ", ".join(parts)


def _flat_types(hint: Any) -> tuple[Any, ...]:
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(t for arg in get_args(hint) for t in _flat_types(arg))
    return (hint,)


def _numeric_string(key: str, value: Any, hint: Any) -> Any:
    """'2e-4' -> 0.0002 for a float field, '10' -> 10 for an int field; anything else is left to TrainingArguments."""
    if not isinstance(value, str):
        return value
    kinds = _flat_types(hint)
    if str in kinds:
        return value
    for kind in (int, float):
        if kind in kinds:
            return _coerce(key, value, kind)
    return value


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    parts = []
    for kind in _flat_types(hint):
        if get_origin(kind) is tuple:
            parts.append("a list of strings")
        elif get_origin(kind) in (dict, Mapping) or kind in (dict, Mapping):
            parts.append("a mapping")
        else:
            parts.append(names.get(kind, str(kind)))
    return " or ".join(parts)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against the field's type; accept the string forms SageMaker hyperparameters use."""
    for kind in _flat_types(hint):
        converted = _convert(value, kind)
        if converted is not _NO:
            return converted
    raise EntryError(f"args.yaml `{key}`: expected {_describe(hint)}, got {value!r}")


_NO = object()


def _convert(value: Any, kind: Any) -> Any:
    """`value` as `kind`, or _NO."""
    if kind is type(None):
        return None if value is None else _NO
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return _NO
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        return _NO
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return _NO
        return _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    if get_origin(kind) is tuple:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        return _NO
    if kind in (dict, Mapping) or get_origin(kind) in (dict, Mapping):
        return value if isinstance(value, dict) else _NO
    raise TypeError(f"no conversion to {kind}")


def resolve_method(method: str | None, use_peft: bool | None, quantized: bool | None) -> str:
    """`method` when given (checked against use_peft and load_in_4bit/8bit), else what TRL's flags imply.

    `qlora` is LoRA on a quantized base: 4-bit (load_in_4bit, the default) or 8-bit (load_in_8bit).
    """
    if method is None:
        return "qlora" if quantized else "lora" if use_peft else "full"
    if method not in METHODS:
        raise EntryError(f"args.yaml `method`: expected one of {', '.join(METHODS)}, got {method!r}")
    if use_peft is not None and use_peft != (method != "full"):
        raise EntryError(f"args.yaml: method `{method}` contradicts use_peft: {str(use_peft).lower()}")
    if quantized and method != "qlora":
        raise EntryError(f"args.yaml: method `{method}` loads no quantized base, but load_in_4bit/load_in_8bit is true")
    return method


def canonical_dtype(key: str, value: str, *, allow_auto: bool = False) -> str:
    """The torch name of a dtype spelling (bf16 -> bfloat16)."""
    if allow_auto and value == "auto":
        return value
    try:
        return DTYPE_NAMES[value.lower()]
    except KeyError:
        choices = ", ".join(sorted(set(DTYPE_NAMES.values()) | ({"auto"} if allow_auto else set())))
        raise EntryError(f"args.yaml `{key}`: expected one of {choices}, got {value!r}") from None


def _validated(args: TunecArgs) -> TunecArgs:
    checks = [
        (args.lora_r >= 1, "`lora_r` must be at least 1"),
        (args.lora_alpha > 0, "`lora_alpha` must be positive"),
        (0.0 <= args.lora_dropout < 1.0, "`lora_dropout` must be in [0, 1)"),
        (args.bnb_4bit_quant_type in QUANT_TYPES, f"`bnb_4bit_quant_type` must be one of {', '.join(QUANT_TYPES)}"),
        (not (args.load_in_4bit and args.load_in_8bit), "`load_in_4bit` and `load_in_8bit` exclude each other"),
        (args.max_length is None or args.max_length >= 1, "`max_length` must be at least 1"),
        (args.max_new_tokens >= 1, "`max_new_tokens` must be at least 1"),
        (args.batch_size >= 1, "`batch_size` must be at least 1"),
        (args.temperature >= 0.0, "`temperature` must not be negative"),
        (args.answer_delimiter != "", "`answer_delimiter` must not be empty"),
        (
            not args.lora_target_parameters or args.lora_dropout == 0.0,
            "`lora_target_parameters` needs `lora_dropout: 0` (PEFT applies LoRA to a parameter without dropout)",
        ),
        (
            not args.lora_target_parameters or not args.use_dora,
            "`lora_target_parameters` cannot be combined with `use_dora` (PEFT has no DoRA for parameters)",
        ),
        (
            args.base_weights in BASE_WEIGHTS,
            f"`base_weights` {args.base_weights!r} is not supported by merge.py (supported: {', '.join(BASE_WEIGHTS)})",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise EntryError(f"args.yaml: {message}")
    unknown_metrics = sorted(set(args.metrics or ()) - set(EVAL_METRICS))
    if unknown_metrics:
        raise EntryError(
            f"args.yaml `metrics`: unknown {', '.join(unknown_metrics)} (known: {', '.join(EVAL_METRICS)})"
        )
    return dataclasses.replace(
        args,
        method=resolve_method(args.method, args.use_peft, args.load_in_4bit or args.load_in_8bit),
        torch_dtype=canonical_dtype("torch_dtype", args.torch_dtype, allow_auto=True),
        bnb_4bit_compute_dtype=args.bnb_4bit_compute_dtype
        and canonical_dtype("bnb_4bit_compute_dtype", args.bnb_4bit_compute_dtype),
        bnb_4bit_quant_storage=args.bnb_4bit_quant_storage and _quant_storage_name(args.bnb_4bit_quant_storage),
    )


def _quant_storage_name(value: str) -> str:
    """bitsandbytes also stores 4-bit weights in uint8 (its default), which FSDP cannot shard."""
    return value if value == "uint8" else canonical_dtype("bnb_4bit_quant_storage", value)
