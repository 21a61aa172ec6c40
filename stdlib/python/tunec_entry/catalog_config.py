"""A model's `config.json` rebuilt from tunec's catalog facts, for a miniature when no copy of the real one is here.

A smoke run builds each model's miniature from its `config.json`. For a catalog model (`hf_model("id")`) whose Hub
copy is not on this machine (offline, or a base model no chat node fetched), the runtime passes the catalog's row
instead: the model type, the architecture class, the sizes, the attention shape, tying, the MoE and latent-attention
dimensions and the special tokens (the same names as `stdlib/catalog/models.toml`, plus `architecture` from the
architecture table). `config_from_facts` turns that row into a `config.json` of the model type's config class:

- what the catalog states is written under the key the class reads it from (`num_hidden_layers`, the class's own
  key for the expert count and top-k, `moe_intermediate_size` where the class has one and `intermediate_size`
  otherwise, DeepSeek's `n_shared_experts` and `first_k_dense_replace`, the MLA ranks);
- a multimodal class (Gemma 3, Llama 4) gets the text facts in its `text_config`, and the published vision tower
  of its family (`VISION_TOWERS`, else the class's defaults, which are Llama 4's);
- the special tokens become ids through the tokenizer that goes beside the miniature (`bos_token_id`, and
  `eos_token_id` listing the end-of-sequence token then the stop tokens, as Llama 3.1's and Qwen3's published files
  do);
- MXFP4 weights (gpt-oss) get the `quantization_config` of the published checkpoint, so that the miniature loads
  through the same dequantizing path; other quantizations are left out, as the miniature drops them anyway;
- everything else (RoPE scaling, per-layer patterns, soft-capping, norms) is the config class's default, computed
  for the real number of layers. The catalog does not record those, so this config matches the published one in
  what the catalog states and in the kind of model, not in every key; the smoke run says which was used.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunec_entry.architecture import EXPERT_COUNT_KEYS
from tunec_entry.miniature import PER_LAYER_KEYS, TOP_K_KEYS, MiniatureError, config_class

DERIVED_KEYS = (*PER_LAYER_KEYS, "sliding_window_pattern", "_sliding_window_pattern", "moe_layers", "mlp_only_layers")
"""Per-layer patterns the class derives from the number of layers: dropped so that it derives them again."""

MXFP4_QUANTIZATION = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
}
"""gpt-oss's published `quantization_config`: the experts in MXFP4, everything else bf16."""

VISION_TOWERS: dict[str, dict[str, Any]] = {
    "gemma3": {
        "model_type": "siglip_vision_model",
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 896,
        "vision_use_head": False,
    },
}
"""Vision towers whose published config differs from the class's defaults, by model type: Gemma 3's SigLIP (the
`vision_config` of huggingface.co/google/gemma-3-4b-it/blob/main/config.json; every Gemma 3 size has this one tower,
google/gemma_pytorch gemma/siglip_vision/config.py). Llama 4's published tower is its class's default."""

REQUIRED = (
    "model_type",
    "architecture",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "vocab_size",
)


def _set_present(values: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """Write `value` under the first of `keys` the class has (its defaults list every key it reads)."""
    key = next((k for k in keys if k in values), None)
    if key is not None:
        values[key] = value


def _text_values(defaults: dict[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    values = copy.deepcopy(defaults)
    for key in DERIVED_KEYS:
        values.pop(key, None)
    values.update(
        hidden_size=facts["hidden_size"],
        intermediate_size=facts["intermediate_size"],
        num_hidden_layers=facts["num_layers"],
        num_attention_heads=facts["num_heads"],
        num_key_value_heads=facts["num_kv_heads"],
        vocab_size=facts["vocab_size"],
    )
    if facts.get("head_dim"):  # Qwen3-MoE's class has no default for it, and reads it when it is there
        values["head_dim"] = facts["head_dim"]
    if facts.get("max_position_embeddings"):
        values["max_position_embeddings"] = facts["max_position_embeddings"]
    if "attention_bias" in values and "attention_bias" in facts:
        values["attention_bias"] = bool(facts["attention_bias"])
    if "tied_embeddings" in facts:
        values["tie_word_embeddings"] = bool(facts["tied_embeddings"])
    moe = facts.get("moe")
    if moe:
        _set_present(values, EXPERT_COUNT_KEYS, moe["experts"])
        _set_present(values, TOP_K_KEYS, moe["top_k"])
        if "moe_intermediate_size" in values:
            values["moe_intermediate_size"] = moe["intermediate_size"]
        else:  # gpt-oss, Granite MoE, Llama 4: `intermediate_size` is one expert's
            values["intermediate_size"] = moe["intermediate_size"]
            if "intermediate_size_mlp" in values:  # Llama 4's dense MLP
                values["intermediate_size_mlp"] = facts["intermediate_size"]
        shared = moe.get("shared_intermediate_size") or 0
        if "shared_expert_intermediate_size" in values:
            values["shared_expert_intermediate_size"] = shared
        if "n_shared_experts" in values:
            values["n_shared_experts"] = shared // moe["intermediate_size"] if shared else None
        if "first_k_dense_replace" in values:
            values["first_k_dense_replace"] = moe.get("dense_layers") or 0
    mla = facts.get("mla")
    if mla:
        values.update(
            q_lora_rank=mla.get("q_lora_rank") or None,
            kv_lora_rank=mla["kv_lora_rank"],
            qk_nope_head_dim=mla["qk_nope_head_dim"],
            qk_rope_head_dim=mla["qk_rope_head_dim"],
            v_head_dim=mla["v_head_dim"],
            qk_head_dim=mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"],
            head_dim=mla["qk_rope_head_dim"],
        )
    return values


def special_token_ids(facts: Mapping[str, Any], tokenizer_dir: Path | None) -> dict[str, Any]:
    """`bos_token_id` and `eos_token_id` (end-of-sequence, then the stop tokens), numbered by the tokenizer beside."""
    if tokenizer_dir is None:
        return {}
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError) as err:
        raise MiniatureError(f"the tokenizer in {tokenizer_dir} does not load: {err}") from None
    vocab = tokenizer.get_vocab()

    def token_id(token: Any) -> int | None:
        return vocab.get(token) if isinstance(token, str) and token else None

    ids: dict[str, Any] = {}
    bos = token_id(facts.get("bos_token"))
    if bos is not None:
        ids["bos_token_id"] = bos
    eos = [token_id(facts.get("eos_token")), *(token_id(t) for t in facts.get("stop_tokens") or ())]
    eos_ids = list(dict.fromkeys(i for i in eos if i is not None))
    if eos_ids:
        ids["eos_token_id"] = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    return ids


def config_from_facts(facts: Mapping[str, Any], tokenizer_dir: Path | None = None) -> dict[str, Any]:
    """A `config.json` (a dict) of the catalog row `facts`; see the module doc for what it holds."""
    missing = [key for key in REQUIRED if not facts.get(key)]
    if missing:
        raise MiniatureError(f"the catalog facts lack {', '.join(missing)}")
    cls = config_class(facts["model_type"])
    defaults = cls().to_dict()
    nested = isinstance(defaults.get("text_config"), dict)
    values = copy.deepcopy(defaults)
    text = _text_values(defaults["text_config"] if nested else defaults, facts)
    ids = special_token_ids(facts, tokenizer_dir)
    text.update(ids)
    if nested:
        values["text_config"] = text
        if facts["model_type"] in VISION_TOWERS:
            values["vision_config"] = copy.deepcopy(VISION_TOWERS[facts["model_type"]])
        values.update(ids)
        if "tied_embeddings" in facts:
            values["tie_word_embeddings"] = bool(facts["tied_embeddings"])
    else:
        values = text
    values["model_type"] = facts["model_type"]
    values["architectures"] = [facts["architecture"]]
    values["torch_dtype"] = "bfloat16"
    values.pop("quantization_config", None)
    if facts.get("weights") == "mxfp4":
        values["quantization_config"] = copy.deepcopy(MXFP4_QUANTIZATION)
    for key in ("transformers_version", "_name_or_path"):
        values.pop(key, None)
    return values
