"""Pure translations of TunecArgs into the objects transformers and PEFT take.

Each function here builds its object from the arguments alone (plus the model's architecture where the choice
depends on it), so the QLoRA, LoRA and FSDP settings are tested without a GPU. The rules they enforce are the
ones that otherwise fail an hour into a GPU job (docs/entry-scripts.md, "Settings train.py derives").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig
from transformers import BitsAndBytesConfig, TrainingArguments

from tunec_entry import architecture
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


@dataclass(frozen=True)
class LoraTargets:
    """What LoRA adapts, as PEFT's LoraConfig takes it.

    `modules`: the last names of the targeted linear layers (`q_proj`, ...), which PEFT matches as name suffixes;
    `exclude`: a regular expression (PEFT's `exclude_modules`, matched against whole module names) for the layers
    those names would also reach but must not (a multimodal model's vision tower, a router), else None;
    `parameters`: PEFT's `target_parameters`, fused expert parameters (`mlp.experts.gate_up_proj`).
    """

    modules: list[str]
    exclude: str | None
    parameters: list[str]


def lora_targets(args: TunecArgs, model: torch.nn.Module) -> LoraTargets:
    """`lora_target_modules` and `lora_target_parameters` resolved against the loaded model.

    "all-linear" is every linear layer of the text path except the output layer and the MoE routers (PEFT's
    own "all-linear" takes the routers and, in a multimodal model, the vision tower too). A list names layers
    by their last name; each must be a linear layer of the text path, and a router is targeted only when named.
    Each `lora_target_parameters` entry must end the name of a fused expert parameter of the text path.
    """
    layers = architecture.linear_layers(model)
    text = architecture.text_path_ids(model)
    text_layers = {name: module for name, module in layers.items() if id(module) in text}
    available = sorted({leaf(name) for name in text_layers})
    if args.lora_target_modules == ALL_LINEAR:
        router_names = architecture.routers(model, text_layers)
        wanted = {name for name in text_layers if name not in router_names}
    else:
        requested = (
            [args.lora_target_modules] if isinstance(args.lora_target_modules, str) else list(args.lora_target_modules)
        )
        missing = [name for name in requested if name not in available]
        if missing:
            raise EntryError(
                f"args.yaml `lora_target_modules`: {', '.join(missing)} not among the model's linear layers "
                f"({', '.join(available)})"
            )
        wanted = {name for name in text_layers if leaf(name) in requested}
    modules = sorted({leaf(name) for name in wanted})
    reached = {name for name in layers if leaf(name) in modules}
    return LoraTargets(modules, exclusion_pattern(reached - wanted), target_parameters(args, model))


def leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def exclusion_pattern(names: set[str]) -> str | None:
    """A regular expression that matches exactly `names`, with layer indices generalised (`layers\\.\\d+`)."""
    if not names:
        return None
    patterns = sorted({re.sub(r"\\\.\d+(?=\\\.|$)", r"\\.\\d+", re.escape(name)) for name in names})
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def target_parameters(args: TunecArgs, model: torch.nn.Module) -> list[str]:
    """`lora_target_parameters`, each checked to name a fused expert parameter of the text path."""
    if not args.lora_target_parameters:
        return []
    fused = architecture.fused_expert_parameters(model)
    missing = [
        wanted for wanted in args.lora_target_parameters if not any(name.endswith("." + wanted) for name in fused)
    ]
    if missing:
        known = ", ".join(architecture.parameter_suffixes(fused)) or "none: its experts, if any, are linear layers"
        raise EntryError(
            f"args.yaml `lora_target_parameters`: {', '.join(missing)} not among the model's fused expert "
            f"parameters ({known})"
        )
    return list(args.lora_target_parameters)


def lora_config(args: TunecArgs, targets: LoraTargets) -> LoraConfig:
    """PEFT's LoraConfig from the lora_* keys and the resolved targets, for a causal language model."""
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets.modules,
        exclude_modules=targets.exclude,
        target_parameters=targets.parameters or None,
        modules_to_save=list(args.modules_to_save) or None,
        use_rslora=args.use_rslora,
        use_dora=args.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    """fsdp_config values arrive as booleans or as the strings "true"/"false"."""
    value = config.get(key, default)
    return value if isinstance(value, bool) else str(value).lower() == "true"


def fsdp_settings(
    args: TunecArgs, default_wrap: Callable[[], Sequence[str]], *, frozen_parts: bool = False
) -> tuple[str, dict[str, Any]]:
    """`fsdp` and `fsdp_config` for TrainingArguments, completed and checked.

    - auto_wrap without `transformer_layer_cls_to_wrap` wraps `decoder_layer` (args.yaml), else the classes
      `default_wrap()` gives (architecture.wrap_classes: the model's own, called only then);
    - full fine-tuning of a model with frozen parts (a multimodal model's vision tower) needs `use_orig_params`:
      FSDP cannot flatten trainable and frozen parameters together otherwise;
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
    if "auto_wrap" in options and not fsdp_config.get("transformer_layer_cls_to_wrap"):
        named = [args.decoder_layer] if isinstance(args.decoder_layer, str) else list(args.decoder_layer or ())
        wrap = named or list(default_wrap())
        if not wrap:
            raise EntryError(
                "args.yaml: set decoder_layer or fsdp_config.transformer_layer_cls_to_wrap "
                "(the model class names no layer to wrap)"
            )
        fsdp_config["transformer_layer_cls_to_wrap"] = wrap
    if frozen_parts and args.method == "full" and not _flag(fsdp_config, "use_orig_params", True):
        raise EntryError(
            "args.yaml: full fine-tuning of the text path leaves the vision tower frozen, which FSDP can shard "
            "only with fsdp_config.use_orig_params: true"
        )
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
    args: TunecArgs,
    output_dir: str,
    *,
    has_eval: bool,
    default_wrap: Callable[[], Sequence[str]] = list,
    frozen_parts: bool = False,
    cuda: bool,
) -> TrainingArguments:
    """TrainingArguments from the args.yaml keys plus what train.py decides.

    Without CUDA (the local target on a laptop, the tests) the Trainer runs on the CPU, where bf16 is CPU autocast.

    Constructing it also exports the ACCELERATE_USE_FSDP / FSDP_* variables that from_pretrained reads for
    cpu_ram_efficient_loading, so train.py builds it before loading the model.
    """
    kwargs = dict(args.training)
    kwargs["output_dir"] = output_dir
    kwargs["fsdp"], kwargs["fsdp_config"] = fsdp_settings(args, default_wrap, frozen_parts=frozen_parts)
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
