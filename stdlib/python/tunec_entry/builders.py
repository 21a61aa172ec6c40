"""Pure translations of TunecArgs into the objects transformers and PEFT take.

Each function here builds its object from the arguments alone (plus the model's architecture where the choice
depends on it), so the QLoRA, LoRA and FSDP settings are tested without a GPU. The rules they enforce are the
ones that otherwise fail an hour into a GPU job (docs/entry-scripts.md, "Settings train.py derives").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from peft import LoraConfig
from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, BitsAndBytesConfig, PretrainedConfig, TrainingArguments

from tunec_entry.config import TunecArgs
from tunec_entry.failure import EntryError

ALL_LINEAR = "all-linear"


def torch_dtype(name: str) -> torch.dtype | str:
    """A torch dtype from its canonical name; "auto" is passed through to from_pretrained."""
    return name if name == "auto" else getattr(torch, name)


def quantization_config(args: TunecArgs) -> BitsAndBytesConfig | None:
    """The bitsandbytes settings of QLoRA's quantized base; None for LoRA and full fine-tuning.

    4-bit (the default) has every field explicit: bitsandbytes' defaults (fp4, float32 compute, no double
    quantization, uint8 storage) are the known traps. Storage defaults to the model dtype, which FSDP needs to
    flatten the packed weights. load_in_8bit selects LLM.int8() instead.
    """
    if args.method != "qlora":
        return None
    if args.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    if args.compute_dtype == "auto":
        raise EntryError(
            "args.yaml: QLoRA needs a concrete compute dtype: set `bnb_4bit_compute_dtype` or `torch_dtype`"
        )
    if args.quant_storage == "auto":
        raise EntryError(
            "args.yaml: QLoRA needs a concrete storage dtype: set `bnb_4bit_quant_storage` or `torch_dtype`"
        )
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=args.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=args.use_bnb_nested_quant,
        bnb_4bit_compute_dtype=getattr(torch, args.compute_dtype),
        bnb_4bit_quant_storage=getattr(torch, args.quant_storage),
    )


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The names (last path component) of the model's linear layers, output layer excluded: PEFT's "all-linear".

    bitsandbytes' Linear4bit subclasses torch.nn.Linear, so this also works on the quantized model.
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }
    return sorted(names)


def resolve_target_modules(args: TunecArgs, model: torch.nn.Module) -> list[str]:
    """`lora_target_modules` as an explicit list of names that exist in this architecture."""
    available = linear_module_names(model)
    if args.lora_target_modules == ALL_LINEAR:
        return available
    requested = (
        [args.lora_target_modules] if isinstance(args.lora_target_modules, str) else list(args.lora_target_modules)
    )
    missing = [name for name in requested if name not in available]
    if missing:
        raise EntryError(
            f"args.yaml `lora_target_modules`: {', '.join(missing)} not among the model's linear layers "
            f"({', '.join(available)})"
        )
    return requested


def lora_config(args: TunecArgs, target_modules: list[str]) -> LoraConfig:
    """PEFT's LoraConfig from the lora_* keys, for a causal language model."""
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=target_modules,
        modules_to_save=list(args.modules_to_save) or None,
        use_rslora=args.use_rslora,
        use_dora=args.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def decoder_layer_class(config: PretrainedConfig) -> str | None:
    """The architecture's decoder layer class (FSDP's wrap unit), from the model class's `_no_split_modules`."""
    model_class = MODEL_FOR_CAUSAL_LM_MAPPING.get(type(config), None)
    layers = getattr(model_class, "_no_split_modules", None) or []
    return layers[0] if len(layers) == 1 else None


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    """fsdp_config values arrive as booleans or as the strings "true"/"false"."""
    value = config.get(key, default)
    return value if isinstance(value, bool) else str(value).lower() == "true"


def fsdp_settings(args: TunecArgs, decoder_layer: str | None) -> tuple[str, dict[str, Any]]:
    """`fsdp` and `fsdp_config` for TrainingArguments, completed and checked.

    - auto_wrap without `transformer_layer_cls_to_wrap` wraps `decoder_layer` (args.yaml, else the architecture's);
    - `cpu_ram_efficient_loading` needs `sync_module_states` (other ranks would keep random weights);
    - FSDP's `activation_checkpointing` excludes `gradient_checkpointing` (the Trainer refuses both);
    - QLoRA under FSDP needs a floating storage dtype equal to the model dtype (FSDP flattens uniform dtypes).
    """
    fsdp = args.training.get("fsdp") or ""
    if isinstance(fsdp, bool):
        fsdp = "full_shard" if fsdp else ""
    if not isinstance(fsdp, str):
        raise EntryError('args.yaml `fsdp`: expected a string such as "full_shard auto_wrap"')
    fsdp_config = dict(args.training.get("fsdp_config") or {})
    options = fsdp.split()
    if not options:
        if fsdp_config:
            raise EntryError("args.yaml sets `fsdp_config` without `fsdp`")
        return "", {}
    fsdp_config = {key.removeprefix("fsdp_"): value for key, value in fsdp_config.items()}
    decoder_layer = args.decoder_layer or decoder_layer
    if "auto_wrap" in options and "transformer_layer_cls_to_wrap" not in fsdp_config:
        if decoder_layer is None:
            raise EntryError(
                "args.yaml: set fsdp_config.transformer_layer_cls_to_wrap (the decoder layer class is unknown)"
            )
        fsdp_config["transformer_layer_cls_to_wrap"] = [decoder_layer]
    if _flag(fsdp_config, "cpu_ram_efficient_loading", False):
        if not _flag(fsdp_config, "sync_module_states", True):
            raise EntryError("args.yaml: fsdp_config.cpu_ram_efficient_loading needs sync_module_states: true")
        fsdp_config["sync_module_states"] = True
    if _flag(fsdp_config, "activation_checkpointing", False) and args.training.get("gradient_checkpointing"):
        raise EntryError(
            "args.yaml: fsdp_config.activation_checkpointing and gradient_checkpointing are both true; keep one"
        )
    if args.method == "qlora" and not args.load_in_8bit and args.quant_storage != args.torch_dtype:
        raise EntryError(
            f"args.yaml: QLoRA under FSDP needs bnb_4bit_quant_storage ({args.quant_storage}) equal to torch_dtype "
            f"({args.torch_dtype})"
        )
    return " ".join(options), fsdp_config


def training_arguments(
    args: TunecArgs, output_dir: str, *, has_eval: bool, decoder_layer: str | None, cuda: bool
) -> TrainingArguments:
    """TrainingArguments from the args.yaml keys plus what train.py decides.

    Without CUDA (the local target on a laptop, the tests) the Trainer runs on the CPU, where bf16 is CPU autocast.

    Constructing it also exports the ACCELERATE_USE_FSDP / FSDP_* variables that from_pretrained reads for
    cpu_ram_efficient_loading, so train.py builds it before loading the model.
    """
    kwargs = dict(args.training)
    kwargs["output_dir"] = output_dir
    kwargs["fsdp"], kwargs["fsdp_config"] = fsdp_settings(args, decoder_layer)
    if not cuda:
        kwargs.setdefault("use_cpu", True)
    kwargs.setdefault("report_to", "none")
    kwargs.setdefault("save_strategy", "steps")
    kwargs.setdefault("logging_strategy", "steps")
    if "bf16" not in kwargs and "fp16" not in kwargs:
        kwargs["bf16"] = args.torch_dtype == "bfloat16"
    kwargs.setdefault("label_names", ["labels"])
    # Evaluation computes the loss only: keeping every eval logit (batch x length x vocab) exhausts memory.
    kwargs.setdefault("prediction_loss_only", True)
    if has_eval:
        kwargs.setdefault("eval_strategy", "steps")
    elif kwargs.get("eval_strategy", "no") != "no":
        raise EntryError("args.yaml sets eval_strategy but there is no `val` channel to evaluate on")
    checkpointing_kwargs = dict(kwargs.get("gradient_checkpointing_kwargs") or {})
    if checkpointing_kwargs.get("use_reentrant", False):
        raise EntryError("args.yaml: gradient_checkpointing_kwargs.use_reentrant must be false (frozen base weights)")
    kwargs["gradient_checkpointing_kwargs"] = {**checkpointing_kwargs, "use_reentrant": False}
    if args.uses_peft:
        kwargs.setdefault("ddp_find_unused_parameters", False)
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as err:
        raise EntryError(f"args.yaml: {' '.join(str(err).split())}") from None
