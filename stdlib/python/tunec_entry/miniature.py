"""Miniatures: a real model's architecture at toy size, with random weights, for smoke runs and tests.

Given a checkpoint's `config.json` (a dict), `miniature_config` builds a config of the same `model_type` and
config class that keeps everything that decides which code runs and which token ids are valid, and shrinks only
the sizes:

- kept: the vocabulary size, the special-token ids, the attention kind (GQA, MQA, MHA, MLA, sliding or chunked
  windows, attention sinks, soft-capping), QK norms, tied or untied embeddings, the RoPE settings (theta, scaling,
  partial rotary), activation, biases, the MoE kind (a ModuleList of experts or fused expert parameters, shared
  experts, the router's scoring) and, for a multimodal checkpoint, the vision tower's kind;
- shrunk: 2 decoder layers; hidden size 64 (or heads x 16 where the head size is derived from it); head size 16;
  key/value heads 1 (MQA) or 2, with query heads a multiple of them (MHA stays MHA); intermediate size 128, 64 per
  expert; at most 4 experts, top-k at most 2 and never above the expert count (DeepSeek's expert groups shrink
  with them); DeepSeek's MLA ranks to 32 (query and key/value), 8 (rotary part) and 16 (the rest);
- per-layer patterns keep both kinds in 2 layers: the first layer's kind, then the first different kind of the
  real model (Gemma 3's five sliding layers per full one become sliding, full; DeepSeek's dense first layers
  become one dense layer then an MoE layer; Llama 4 and SmolLM3 keep one layer without RoPE); sliding and chunked
  windows shrink to 16 tokens so that short test rows cross them;
- a vision tower (Gemma 3's SigLIP, Llama 4's) shrinks the same way, with a 56-pixel image (4 x 4 patches).

`build_miniature` instantiates it with the architecture the checkpoint names (`architectures[0]`, e.g.
`Gemma3ForConditionalGeneration`), random weights from a seed, and saves it with `save_pretrained`. A checkpoint
whose weights ship as MXFP4 (gpt-oss) gets MXFP4 expert weights too, packed exactly as transformers reads them and
chosen on the FP4 grid so that dequantizing them is lossless, so the miniature loads through the same dequantizing
path as the real model. Any other quantization (DeepSeek's FP8) and `auto_map` remote code are dropped: the
miniature is plain weights of the transformers class.

Command line (from `stdlib/python`): `python -m tunec_entry.miniature SOURCE OUT [--dtype D] [--seed N]
[--facts F]`, where SOURCE is a `config.json` or a model folder; from a folder, the tokenizer, chat template,
generation config and image processor files are copied beside the miniature. With `--facts F` (a catalog row as
JSON, for a model whose config.json is not on this machine) the config comes from `tunec_entry.catalog_config` and
SOURCE is the folder whose tokenizer goes beside. It prints one JSON line describing the miniature.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel

from tunec_entry.architecture import EXPERT_COUNT_KEYS, expert_count, is_mxfp4

LAYERS = 2
HIDDEN = 64
HEAD_DIM = 16
INTERMEDIATE = 128
EXPERT_INTERMEDIATE = 64
"""A multiple of 32: MXFP4 packs 32 values per block along every expert matrix's input dimension."""
EXPERTS = 4
TOP_K = 2
WINDOW = 16
MLA_RANK, MLA_ROPE_DIM, MLA_HEAD_DIM = 32, 8, 16
VISION_HIDDEN, VISION_HEADS, VISION_PATCHES = 32, 2, 4

TOP_K_KEYS = ("num_experts_per_tok", "experts_per_token")
DENSE_INTERMEDIATE_KEYS = ("intermediate_size_mlp",)
EXPERT_INTERMEDIATE_KEYS = ("moe_intermediate_size", "shared_expert_intermediate_size")
WINDOW_KEYS = ("sliding_window", "attention_chunk_size")
PER_LAYER_KEYS = ("layer_types", "no_rope_layers")
"""Per-layer lists: shrunk to the first layer's value and the first value that differs from it."""
FILES_BESIDE = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
)
FP4_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
"""The E2M1 values of the 16 nibbles, as transformers' MXFP4 dequantizer reads them."""
MXFP4_BLOCK = 32

FAMILIES = (
    "llama",
    "mistral",
    "qwen2",
    "gemma2",
    "phi3",
    "qwen3",
    "qwen3_moe",
    "gemma3_text",
    "gemma3",
    "gpt_oss",
    "smollm3",
    "olmo2",
    "granite",
    "granitemoe",
    "deepseek_v3",
    "llama4",
)
"""The model types whose miniatures are built and trained in the tests (tests/python/test_families.py)."""


class MiniatureError(ValueError):
    """A config.json that cannot be made into a miniature (unknown model type, missing key)."""


def config_class(model_type: str) -> type[PretrainedConfig]:
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[model_type]
    except KeyError:
        raise MiniatureError(
            f"model_type `{model_type}` is unknown to transformers {transformers.__version__}; "
            f"families with tested miniatures: {', '.join(FAMILIES)}"
        ) from None


def full_config(source: Mapping[str, Any]) -> PretrainedConfig:
    """The checkpoint's config as its class reads it: defaults filled in, derived per-layer patterns computed."""
    model_type = source.get("model_type")
    if not isinstance(model_type, str):
        raise MiniatureError("config.json has no `model_type`")
    cls = config_class(model_type)
    try:
        return cls.from_dict(dict(source))
    except (ValueError, TypeError, KeyError) as err:
        raise MiniatureError(f"config.json does not read as {cls.__name__}: {err}") from None


def shrunk_pattern(values: Sequence[Any]) -> list[Any]:
    """A per-layer list for 2 layers: the first value, then the first value that differs (else the first again)."""
    first = values[0]
    other = next((value for value in values if value != first), first)
    return [first, other]


def _shrink_rope_factors(rope_scaling: Mapping[str, Any] | None, rotary_pairs: int) -> dict[str, Any] | None:
    """LongRoPE's per-frequency factor lists (Phi-3.5) resampled to the miniature's number of rotary pairs."""
    if not rope_scaling:
        return rope_scaling
    scaling = dict(rope_scaling)
    for key in ("long_factor", "short_factor"):
        factors = scaling.get(key)
        if isinstance(factors, list) and factors:
            step = (len(factors) - 1) / max(rotary_pairs - 1, 1)
            scaling[key] = [factors[round(i * step)] for i in range(rotary_pairs)]
    return scaling


def _heads(config: PretrainedConfig) -> tuple[int, int]:
    """(query heads, key/value heads) of the miniature: MQA stays MQA, MHA stays MHA, GQA keeps a group of 2..4."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if kv_heads == heads:
        return 4, 4
    kv_small = 1 if kv_heads == 1 else 2
    group = max(1, heads // kv_heads)
    return kv_small * min(group, 4), kv_small


def _head_dim_is_free(config: PretrainedConfig) -> bool:
    """Whether the config sets a head size of its own rather than hidden_size / heads."""
    head_dim = getattr(config, "head_dim", None)
    return head_dim is not None and head_dim * config.num_attention_heads != config.hidden_size


def shrink_text_config(config: PretrainedConfig) -> dict[str, Any]:
    """The miniature's text config as a dict of the same class (see the module doc for the rules)."""
    values = config.to_dict()
    heads, kv_heads = _heads(config)
    layers = config.num_hidden_layers
    values.update(num_hidden_layers=LAYERS, num_attention_heads=heads)
    if "num_key_value_heads" in values:
        values["num_key_value_heads"] = kv_heads
    if "kv_lora_rank" in values:  # DeepSeek's multi-head latent attention
        values.update(hidden_size=HIDDEN, kv_lora_rank=MLA_RANK, qk_rope_head_dim=MLA_ROPE_DIM)
        values.update(qk_nope_head_dim=MLA_HEAD_DIM, v_head_dim=MLA_HEAD_DIM, num_key_value_heads=heads)
        if values.get("q_lora_rank"):
            values["q_lora_rank"] = MLA_RANK
        values.update(qk_head_dim=MLA_HEAD_DIM + MLA_ROPE_DIM, head_dim=MLA_ROPE_DIM)
    elif _head_dim_is_free(config):
        values.update(hidden_size=HIDDEN, head_dim=HEAD_DIM)
    else:
        values["hidden_size"] = heads * HEAD_DIM
        if values.get("head_dim") is not None:
            values["head_dim"] = HEAD_DIM
    if values.get("query_pre_attn_scalar") is not None:  # Gemma scales queries by 1/sqrt of this
        values["query_pre_attn_scalar"] = HEAD_DIM
    partial = values.get("partial_rotary_factor") or 1.0
    values["rope_scaling"] = _shrink_rope_factors(values.get("rope_scaling"), int(HEAD_DIM * partial) // 2)

    experts = next((values[key] for key in EXPERT_COUNT_KEYS if values.get(key)), None)
    # Without a separate expert size (gpt-oss, GraniteMoE, Llama 4), `intermediate_size` is one expert's.
    expert_sized = experts and not values.get("moe_intermediate_size")
    values["intermediate_size"] = EXPERT_INTERMEDIATE if expert_sized else INTERMEDIATE
    for key in DENSE_INTERMEDIATE_KEYS:
        if values.get(key):
            values[key] = INTERMEDIATE
    for key in EXPERT_INTERMEDIATE_KEYS:
        if values.get(key):
            values[key] = EXPERT_INTERMEDIATE
    if experts:
        small = min(experts, EXPERTS)
        for key in EXPERT_COUNT_KEYS:
            if values.get(key):
                values[key] = small
        for key in TOP_K_KEYS:
            if values.get(key):
                values[key] = min(values[key], TOP_K, small)
        if values.get("n_group"):  # DeepSeek routes within groups of experts: 2 groups of 2, the best group
            values.update(n_group=2, topk_group=1)
            for key in TOP_K_KEYS:
                if values.get(key):
                    values[key] = min(values[key], small // 2)
    if values.get("first_k_dense_replace"):
        values["first_k_dense_replace"] = 1
    for key in ("moe_layers", "mlp_only_layers"):  # Llama 4's MoE layers, Qwen3-MoE's dense ones: index lists
        indices = values.get(key)
        if isinstance(indices, list) and indices:
            values[key] = [0, 1] if len(indices) >= layers else [1] if key == "moe_layers" else [0]
    if values.get("max_window_layers") is not None:
        values["max_window_layers"] = min(values["max_window_layers"], 1 if values["max_window_layers"] < layers else 2)
    for key in PER_LAYER_KEYS:
        if isinstance(values.get(key), list) and values[key]:
            values[key] = shrunk_pattern(values[key])
    if "_sliding_window_pattern" in values:  # Gemma 3 recomputes layer_types from it when they are absent
        values["_sliding_window_pattern"] = values["sliding_window_pattern"] = 2
    for key in WINDOW_KEYS:
        if values.get(key):
            values[key] = min(values[key], WINDOW)
    return values


def shrink_vision_config(config: PretrainedConfig) -> dict[str, Any]:
    """A vision tower of the same kind: 2 layers, hidden 32, 2 heads, a 56-pixel image of 4 x 4 patches."""
    values = config.to_dict()
    values.update(
        num_hidden_layers=LAYERS,
        hidden_size=VISION_HIDDEN,
        num_attention_heads=VISION_HEADS,
        intermediate_size=2 * VISION_HIDDEN,
        image_size=values.get("patch_size", 14) * VISION_PATCHES,
    )
    if "pixel_shuffle_ratio" in values:  # Llama 4: the pixel shuffle concatenates 1/ratio^2 patches
        shuffled = int(VISION_HIDDEN / values["pixel_shuffle_ratio"] ** 2)
        values.update(intermediate_size=shuffled, projector_input_dim=shuffled, projector_output_dim=shuffled)
        values["vision_output_dim"] = shuffled
    if values.get("intermediate_layers_indices"):
        values["intermediate_layers_indices"] = [0]
    return values


def miniature_config(source: Mapping[str, Any]) -> PretrainedConfig:
    """The miniature's config: same model_type and class, shrunk as the module doc says. `source` is not changed."""
    full = full_config(source)
    values = full.to_dict()
    sub_configs = getattr(full, "sub_configs", {}) or {}
    if "text_config" in sub_configs:
        values["text_config"] = shrink_text_config(full.text_config)
        if getattr(full, "vision_config", None) is not None:
            values["vision_config"] = shrink_vision_config(full.vision_config)
        if values.get("mm_tokens_per_image"):  # Gemma 3 pools the patches to this many tokens per image
            values["mm_tokens_per_image"] = (VISION_PATCHES // 2) ** 2
    else:
        values.update(shrink_text_config(full))
    values.pop("auto_map", None)
    if not is_mxfp4(full):
        values.pop("quantization_config", None)
    mini = type(full).from_dict(copy.deepcopy(values))
    mini.architectures = list(source.get("architectures") or []) or None
    return mini


def model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    """The architecture the checkpoint names when transformers has it, else its causal-LM (or image-text) class."""
    import transformers
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,
    )

    for name in config.architectures or ():
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, PreTrainedModel):
            return cls
    for mapping in (MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING, MODEL_FOR_CAUSAL_LM_MAPPING):
        if type(config) in mapping:
            return mapping[type(config)]
    raise MiniatureError(f"transformers has no causal language model class for model_type `{config.model_type}`")


def mxfp4_expert_weights(shape: Sequence[int], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random expert weights on the MXFP4 grid, and their packed blocks and scales.

    `shape` is the parameter's (experts, in, out). transformers reads `<name>_blocks` (experts, out, in/32, 16) of
    uint8, two E2M1 nibbles per byte, low nibble first, and `<name>_scales` (experts, out, in/32) of uint8 biased
    exponents (value = nibble x 2^(scale - 127)). Every value is drawn from the grid, so unpacking gives the
    returned weights exactly.
    """
    experts, fan_in, fan_out = shape
    if fan_in % MXFP4_BLOCK:
        raise MiniatureError(f"MXFP4 needs input sizes that are multiples of {MXFP4_BLOCK}, not {fan_in}")
    blocks_per_row = fan_in // MXFP4_BLOCK
    nibbles = torch.randint(0, 16, (experts, fan_out, blocks_per_row, MXFP4_BLOCK), generator=generator)
    exponents = torch.randint(-9, -6, (experts, fan_out, blocks_per_row), generator=generator)
    grid = torch.tensor(FP4_GRID, dtype=torch.float32)
    values = grid[nibbles] * torch.pow(2.0, exponents.float()).unsqueeze(-1)
    weights = values.reshape(experts, fan_out, fan_in).transpose(1, 2).contiguous()
    packed = (nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)).to(torch.uint8)
    scales = (exponents + 127).to(torch.uint8)
    return weights, packed, scales


MXFP4_EXPERT_PARAMETERS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
"""gpt-oss expert parameters that an MXFP4 checkpoint stores as `<name>_blocks` and `<name>_scales`."""


def _mxfp4_state_dict(model: PreTrainedModel, seed: int) -> dict[str, torch.Tensor]:
    """The state dict to save with the experts as MXFP4; the model's expert weights become the grid values."""
    generator = torch.Generator().manual_seed(seed + 1)
    state = dict(model.state_dict())
    for name, parameter in model.named_parameters():
        if not name.endswith(MXFP4_EXPERT_PARAMETERS):
            continue
        weights, blocks, scales = mxfp4_expert_weights(parameter.shape, generator)
        with torch.no_grad():
            parameter.copy_(weights.to(parameter.dtype))
        del state[name]
        state[f"{name}_blocks"], state[f"{name}_scales"] = blocks, scales
    return state


def build_miniature(
    source: Mapping[str, Any], out_dir: str | Path, *, dtype: str | None = None, seed: int = 0
) -> PreTrainedModel:
    """Build, initialise from `seed` and save the miniature of the checkpoint `source` (its config.json) to out_dir.

    `dtype` is the dtype of the saved weights (a torch name); by default the checkpoint's `torch_dtype`, else
    float32. Returns the model as saved (for MXFP4, with the grid values that dequantizing gives back).
    """
    config = miniature_config(source)
    torch_dtype = getattr(torch, dtype or _source_dtype(source))
    mxfp4 = is_mxfp4(config)
    quantization = config.quantization_config if mxfp4 else None
    if mxfp4:
        del config.quantization_config  # the random model is built unquantized, then packed when saved
    torch.manual_seed(seed)
    model = model_class(config)(config).to(torch_dtype).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if mxfp4:
        state = _mxfp4_state_dict(model, seed)
        model.config.quantization_config = quantization
        model.save_pretrained(out, state_dict=state, safe_serialization=True)
    else:
        model.save_pretrained(out, safe_serialization=True)
    return model


def _source_dtype(source: Mapping[str, Any]) -> str:
    name = source.get("torch_dtype") or source.get("dtype")
    return name if isinstance(name, str) and isinstance(getattr(torch, name, None), torch.dtype) else "float32"


def describe(model: PreTrainedModel, out_dir: Path) -> dict[str, Any]:
    """What the command line prints: the miniature's architecture and sizes."""
    config = model.config
    text = config.get_text_config()
    return {
        "path": str(out_dir),
        "model_type": config.model_type,
        "architecture": type(model).__name__,
        "config_class": type(config).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "num_hidden_layers": text.num_hidden_layers,
        "hidden_size": text.hidden_size,
        "vocab_size": text.vocab_size,
        "experts": expert_count(config),
        "mxfp4": is_mxfp4(config),
        "files": sorted(p.name for p in out_dir.iterdir()),
    }


def read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise MiniatureError(f"cannot read {path}: {err}") from None
    if not isinstance(value, dict):
        raise MiniatureError(f"{path} does not hold a JSON object")
    return value


def read_source(path: Path) -> tuple[dict[str, Any], Path | None]:
    """config.json as a dict, and the model folder it came from (None for a bare config.json file)."""
    folder = path if path.is_dir() else None
    return read_json_object(path / "config.json" if folder is not None else path), folder


def from_facts(facts_file: Path, tokenizer_dir: Path) -> tuple[dict[str, Any], Path]:
    """The config.json that `tunec_entry.catalog_config` builds from a catalog row, and the tokenizer's folder."""
    from tunec_entry.catalog_config import config_from_facts

    facts = read_json_object(facts_file)
    if not tokenizer_dir.is_dir():
        raise MiniatureError(f"{tokenizer_dir} is not a folder with a tokenizer")
    return config_from_facts(facts, tokenizer_dir), tokenizer_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tunec_entry.miniature",
        description="Build a 2-layer random miniature of a model from its config.json (see the module doc).",
    )
    parser.add_argument("source", type=Path, help="a config.json, or a model folder (its tokenizer files are copied)")
    parser.add_argument("out", type=Path, help="the folder to write the miniature to")
    parser.add_argument("--dtype", help="dtype of the saved weights (default: the checkpoint's torch_dtype)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument(
        "--facts",
        type=Path,
        help="tunec catalog facts (JSON) to build the config from instead of a config.json; SOURCE is then the "
        "folder whose tokenizer files go beside the miniature (tunec_entry.catalog_config)",
    )
    options = parser.parse_args(argv)
    source: dict[str, Any] = {}
    try:
        if options.facts is not None:
            source, folder = from_facts(options.facts, options.source)
        else:
            source, folder = read_source(options.source)
        if folder is not None and folder.resolve() == options.out.resolve():
            raise MiniatureError("the miniature must go to another folder than its source")
        if options.dtype is not None and not isinstance(getattr(torch, options.dtype, None), torch.dtype):
            raise MiniatureError(f"--dtype {options.dtype} is not a torch dtype (float32, bfloat16, float16)")
        model = build_miniature(source, options.out, dtype=options.dtype, seed=options.seed)
    except MiniatureError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, KeyError, RuntimeError) as err:  # transformers refusing the shrunk config
        print(
            f"error: the miniature of model_type `{source.get('model_type')}` does not build ({type(err).__name__}: "
            f"{err}); families with tested miniatures: {', '.join(FAMILIES)}",
            file=sys.stderr,
        )
        return 2
    if folder is not None:
        for name in FILES_BESIDE:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, options.out / name)
    print(json.dumps(describe(model, options.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
