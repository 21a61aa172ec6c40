"""What the entry scripts need to know about a model's architecture, read from its config and its modules.

Nothing here is a table of families: each answer comes from transformers' own classes, so a family that
transformers 4.56.2 loads works without a change here, and the tests check the answers on a miniature of every
family tunec supports (tunec_entry.miniature).

- **Model class.** A text model loads as its causal LM (`AutoModelForCausalLM`). A multimodal checkpoint (a
  config with a `vision_config`: Gemma 3 4B-27B, Llama 4) loads as its image-text class
  (`AutoModelForImageTextToText`: `Gemma3ForConditionalGeneration`, `Llama4ForConditionalGeneration`), so that
  merge.py saves the architecture it read. `AutoModelForCausalLM` would give Llama 4's text model alone, and a
  merged checkpoint without the vision tower.
- **Text path.** The modules the text flows through: the decoder (`get_decoder()`) and the output layer. In a
  multimodal model the vision tower and projector are outside it; tunec trains on text only, so they are frozen
  and never LoRA targets.
- **Routers.** A linear layer of the text path that maps to one logit per expert (`out_features` equal to the
  config's expert count): Qwen3-MoE's `mlp.gate`, Llama 4's `feed_forward.router`, GraniteMoE's
  `block_sparse_moe.router.layer`. PEFT's "all-linear" picks them; tunec does not (see builders.lora_targets).
- **Fused experts.** Experts held as 3-D parameters (experts x in x out) rather than `nn.Linear` modules: gpt-oss
  `mlp.experts.gate_up_proj`/`down_proj`, Llama 4 `feed_forward.experts.*`, GraniteMoE
  `block_sparse_moe.input_linear.weight`/`output_linear.weight`. No linear-layer LoRA reaches them; PEFT's
  `target_parameters` does, and bitsandbytes leaves them unquantized.
- **FSDP wrap classes.** The model class's `_no_split_modules` that actually occur in the model: Gemma 3's list
  names the SigLIP classes even in the text-only `Gemma3ForCausalLM`, and accelerate refuses a class it cannot
  find.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

from tunec_entry.config import TunecArgs
from tunec_entry.failure import EntryError

EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
MXFP4_EXPERT_PARAMETERS = ("gate_up_proj", "down_proj")
"""gpt-oss expert parameters that MXFP4 checkpoints ship as `<name>_blocks` and `<name>_scales`."""


def is_multimodal(config: PretrainedConfig) -> bool:
    """A checkpoint with a vision tower beside its language model (Gemma 3 4B-27B, Llama 4)."""
    return getattr(config, "vision_config", None) is not None and "text_config" in (config.sub_configs or {})


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The language model's config: `text_config` of a multimodal checkpoint, else the config itself."""
    return config.get_text_config()


def check_model_type(args: TunecArgs, config: PretrainedConfig) -> None:
    """The checkpoint must be the family the pipeline was checked against (args.yaml `model_type`)."""
    if args.model_type is not None and args.model_type != config.model_type:
        raise EntryError(
            f"args.yaml `model_type` is {args.model_type} but the checkpoint's config.json says "
            f"{config.model_type}: the pipeline was checked against another model (run tunec check again)"
        )


def text_only(args: TunecArgs, config: PretrainedConfig) -> bool:
    """Whether a multimodal checkpoint trains on text only: always, since the data engine writes text rows.

    `text_only: false` on a multimodal checkpoint is refused rather than silently trained on text; on a text
    model the key changes nothing.
    """
    if not is_multimodal(config):
        return False
    if args.text_only is False:
        raise EntryError(
            f"args.yaml `text_only` is false, but tunec trains {config.model_type} on text rows only "
            "(images are not supported): set text_only: true"
        )
    return True


def auto_class(config: PretrainedConfig) -> type:
    """The Auto class that loads the checkpoint's own architecture (see the module doc)."""
    if is_multimodal(config) and type(config) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING:
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


def model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    """The transformers class that auto_class loads for this config."""
    auto = auto_class(config)
    mapping = (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING if auto is AutoModelForImageTextToText else MODEL_FOR_CAUSAL_LM_MAPPING
    )
    try:
        return mapping[type(config)]
    except KeyError:
        raise EntryError(
            f"transformers has no causal language model class for model_type `{config.model_type}`"
        ) from None


def check_attention(args: TunecArgs, config: PretrainedConfig) -> None:
    """An attention implementation the architecture lacks is refused before loading (gpt-oss has no SDPA)."""
    if args.attn_implementation != "sdpa" or type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        return  # remote code: transformers decides when it loads the class
    cls = model_class(config)
    if not getattr(cls, "_supports_sdpa", False):
        raise EntryError(
            f"args.yaml `attn_implementation` is sdpa, which {cls.__name__} does not support: "
            "set attn_implementation: eager"
        )


def is_mxfp4(config: PretrainedConfig | Mapping[str, Any]) -> bool:
    """Whether the checkpoint's weights ship as MXFP4 (gpt-oss); `config` is the config or its config.json dict."""
    quantization = (
        config.get("quantization_config")
        if isinstance(config, Mapping)
        else getattr(config, "quantization_config", None)
    )
    if quantization is not None and not isinstance(quantization, Mapping):
        quantization = quantization.to_dict()
    return bool(quantization) and quantization.get("quant_method") == "mxfp4"


def mxfp4_loading(args: TunecArgs, config: PretrainedConfig, purpose: str) -> Any:
    """The quantization_config that dequantizes an MXFP4 checkpoint, or None (`purpose`: train, merge, evaluate).

    MXFP4 weights cannot be trained and PEFT cannot merge into them, so training and merging always dequantize an
    MXFP4 checkpoint (`dequantize_mxfp4` absent means yes; `false` is refused for training). evaluate.py
    dequantizes when asked (and when it merges an adapter, as merging); otherwise transformers keeps MXFP4 on a GPU
    with its kernels and dequantizes by itself elsewhere. For a checkpoint that is not MXFP4 the flag changes
    nothing: `Mxfp4Config` there would make transformers quantize on the fly, which needs a GPU and its kernels.
    """
    from transformers import Mxfp4Config

    if not is_mxfp4(config):
        return None
    if purpose == "train" and args.dequantize_mxfp4 is False:
        raise EntryError(
            f"args.yaml `dequantize_mxfp4` is false, but the {config.model_type} checkpoint's MXFP4 weights "
            "cannot be trained: set dequantize_mxfp4: true (they are dequantized to bf16)"
        )
    if purpose == "evaluate" and not args.dequantize_mxfp4:
        return None
    return Mxfp4Config(dequantize=True)


def quantization_kwargs(quantization: Any) -> dict[str, Any]:
    """`quantization_config` for from_pretrained, only when there is one.

    An explicit `quantization_config=None` replaces the checkpoint's own (transformers passes it on to the config),
    which breaks loading an MXFP4 checkpoint as it ships.
    """
    return {} if quantization is None else {"quantization_config": quantization}


def cast_dequantized_experts(model: torch.nn.Module, dtype: torch.dtype | str) -> None:
    """transformers dequantizes MXFP4 experts to bfloat16 whatever `dtype` the model loads in; align them.

    Experts kept in MXFP4 (transformers' kernels, on a GPU) are not floating parameters and stay as they are.
    """
    if not isinstance(dtype, torch.dtype):
        return
    for name, parameter in model.named_parameters():
        expert = name.rsplit(".", 1)[-1] in MXFP4_EXPERT_PARAMETERS and parameter.ndim == 3
        if expert and parameter.dtype.is_floating_point and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)


def expert_count(config: PretrainedConfig) -> int | None:
    text = text_config(config)
    return next((getattr(text, key) for key in EXPERT_COUNT_KEYS if getattr(text, key, None)), None)


def decoder(model: PreTrainedModel) -> torch.nn.Module:
    """The language model's decoder (the text path without the output layer)."""
    get_decoder = getattr(model, "get_decoder", None)
    found = get_decoder() if get_decoder is not None else None
    return found if isinstance(found, torch.nn.Module) else model


def text_path_ids(model: PreTrainedModel) -> set[int]:
    """ids of the modules the text flows through: the decoder's and the output layer."""
    ids = {id(module) for module in decoder(model).modules()}
    output = model.get_output_embeddings()
    if output is not None:
        ids.add(id(output))
    return ids


def frozen_outside_text_path(model: PreTrainedModel) -> list[str]:
    """Freeze every parameter outside the text path (a multimodal model's vision tower and projector).

    Returns the frozen parameters' names. Parameters shared with the text path (tied embeddings) stay trainable.
    """
    text_parameters = {
        id(p)
        for module in (decoder(model), model.get_output_embeddings())
        if module is not None
        for p in module.parameters()
    }
    frozen = []
    for name, parameter in model.named_parameters():
        if id(parameter) not in text_parameters:
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def linear_layers(model: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every nn.Linear (bitsandbytes' Linear4bit included) by qualified name, output layer excluded."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    }


def routers(model: PreTrainedModel, layers: dict[str, torch.nn.Linear]) -> set[str]:
    """The qualified names of the MoE routers among `layers` (see the module doc)."""
    experts = expert_count(model.config)
    if not experts:
        return set()
    return {name for name, module in layers.items() if module.out_features == experts}


def fused_expert_parameters(model: PreTrainedModel) -> list[str]:
    """Qualified names of the text path's 3-D (experts x in x out) parameters."""
    text = decoder(model)
    prefix = next((name for name, module in model.named_modules() if module is text), "")
    return [
        f"{prefix}.{name}" if prefix else name for name, parameter in text.named_parameters() if parameter.ndim == 3
    ]


def parameter_suffixes(names: Iterable[str]) -> list[str]:
    """`mlp.experts.gate_up_proj` for `model.layers.3.mlp.experts.gate_up_proj`: the part after the layer index."""
    suffixes = set()
    for name in names:
        parts = name.split(".")
        digits = [i for i, part in enumerate(parts) if part.isdigit()]
        suffixes.add(".".join(parts[digits[-1] + 1 :] if digits else parts[-3:]))
    return sorted(suffixes)


def wrap_classes(config: PretrainedConfig) -> list[str]:
    """FSDP's wrap classes: the model class's `_no_split_modules` that occur in this model.

    The model is built on the meta device (no memory, no weights) to see which classes it contains, from its
    miniature's config (tunec_entry.miniature: 2 layers of each kind, 4 experts), which has the same classes:
    DeepSeek V3 at full size takes a minute to build even on the meta device.
    """
    from tunec_entry.miniature import miniature_config  # imports this module

    try:
        cls = model_class(config)
    except EntryError:
        raise EntryError(
            f"transformers has no class for model_type `{config.model_type}` to find its FSDP wrap class in: "
            "set `decoder_layer` in args.yaml"
        ) from None
    declared = list(getattr(cls, "_no_split_modules", None) or [])
    if not declared:
        return []
    with torch.device("meta"):
        model = cls(miniature_config(config.to_dict()))
    present = {type(module).__name__ for module in model.modules()}
    return [name for name in declared if name in present]


def check_wrap_classes(model: torch.nn.Module, names: Iterable[str]) -> None:
    """Every FSDP wrap class must occur in the loaded model (accelerate fails later, on the GPUs, otherwise)."""
    present = {type(module).__name__ for module in model.modules()}
    missing = [name for name in names if name not in present]
    if missing:
        raise EntryError(
            f"FSDP wrap class(es) {', '.join(missing)} do not occur in {type(model).__name__} "
            f"(args.yaml `decoder_layer` or fsdp_config.transformer_layer_cls_to_wrap); "
            f"its layer classes: {', '.join(wrap_candidates(model))}"
        )


def wrap_candidates(model: torch.nn.Module) -> list[str]:
    """Class names of the modules repeated in a ModuleList (the layer classes one would wrap)."""
    names = set()
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 1:
            names.add(type(module[0]).__name__)
    return sorted(names)
