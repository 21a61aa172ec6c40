"""tunec_entry.miniature on every family's real config.json (tests/python/families/), unchanged.

The miniature must keep what decides which code runs and which token ids are valid (class, vocabulary, special
ids, attention kind, tying, RoPE, MoE kind, quantization format) and shrink the rest, with top-k, GQA groups,
MLA ranks and per-layer patterns still valid and meaningful in 2 layers. The configs are checked without building
weights (the models are instantiated on the meta device); test_families.py trains the built miniatures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, Mxfp4Config

from conftest import family_config, small_vocabulary
from tinyllm import SCRIPTS, build_tokenizer
from tunec_entry import miniature

pytestmark = pytest.mark.usefixtures("one_thread")

SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")
MOE = {"qwen3_moe": 128, "gpt_oss": 32, "granitemoe": 32, "deepseek_v3": 256, "llama4": 16}
"""Experts of each MoE family's real checkpoint."""


def text_of(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("text_config", config)


def meta_model(config) -> torch.nn.Module:
    with torch.device("meta"):
        return miniature.model_class(config)(config)


@pytest.mark.parametrize("name", miniature.FAMILIES)
def test_miniature_keeps_class_vocabulary_tokens_tying_and_rope(name: str) -> None:
    source = family_config(name)
    full = miniature.full_config(source)
    mini = miniature.miniature_config(source)
    assert type(mini) is type(full) and mini.model_type == source["model_type"]
    assert mini.architectures == source["architectures"]
    assert miniature.model_class(mini).__name__ == source["architectures"][0]
    text, full_text = mini.get_text_config(), full.get_text_config()
    assert type(text) is type(full_text)
    assert text.vocab_size == full_text.vocab_size
    for config, original in ((mini, full), (text, full_text)):
        for key in SPECIAL_IDS:
            assert getattr(config, key, None) == getattr(original, key, None), key
    assert mini.tie_word_embeddings == full.tie_word_embeddings
    for key in ("rope_theta", "rope_scaling", "rope_local_base_freq", "hidden_act", "hidden_activation"):
        assert getattr(text, key, None) == getattr(full_text, key, None), key
    for key in ("attn_logit_softcapping", "final_logit_softcapping", "attention_bias", "use_qk_norm"):
        assert getattr(text, key, None) == getattr(full_text, key, None), key
    assert not getattr(mini, "auto_map", None)


@pytest.mark.parametrize("name", miniature.FAMILIES)
def test_miniature_is_two_small_layers_with_valid_heads(name: str) -> None:
    source = family_config(name)
    full_text = miniature.full_config(source).get_text_config()
    mini = miniature.miniature_config(source)
    text = mini.get_text_config()
    assert text.num_hidden_layers == 2
    assert text.hidden_size <= 128
    heads, kv = text.num_attention_heads, getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    full_kv = getattr(full_text, "num_key_value_heads", None) or full_text.num_attention_heads
    assert heads % kv == 0
    assert (kv == heads) == (full_kv == full_text.num_attention_heads), "MHA stays MHA, GQA stays GQA"
    assert (kv == 1) == (full_kv == 1), "MQA stays MQA"
    model = meta_model(mini)
    non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
    assert non_embedding < 2_000_000, non_embedding


@pytest.mark.parametrize("name", sorted(MOE))
def test_moe_keeps_a_few_experts_with_a_valid_top_k(name: str) -> None:
    source = family_config(name)
    text = miniature.miniature_config(source).get_text_config()
    experts = next(getattr(text, key) for key in miniature.EXPERT_COUNT_KEYS if getattr(text, key, None))
    assert experts == 4 < MOE[name]
    top_k = text.num_experts_per_tok
    assert 1 <= top_k <= min(2, experts)
    if name == "llama4":
        assert top_k == 1, "Llama 4 routes each token to one expert, as the real model"
    if name == "deepseek_v3":  # top-k experts from the best topk_group of n_group groups
        assert experts % text.n_group == 0 and text.topk_group <= text.n_group
        assert top_k <= text.topk_group * experts // text.n_group
    model = meta_model(miniature.miniature_config(source))
    assert any("experts" in n or "Experts" in type(m).__name__ for n, m in model.named_modules())


def test_deepseek_keeps_a_dense_first_layer_and_consistent_mla_ranks() -> None:
    mini = miniature.miniature_config(family_config("deepseek_v3"))
    assert mini.first_k_dense_replace == 1
    assert mini.kv_lora_rank < mini.hidden_size and mini.q_lora_rank < mini.hidden_size
    assert mini.qk_head_dim == mini.qk_nope_head_dim + mini.qk_rope_head_dim
    assert mini.head_dim == mini.qk_rope_head_dim
    layers = meta_model(mini).model.layers
    assert [type(layer.mlp).__name__ for layer in layers] == ["DeepseekV3MLP", "DeepseekV3MoE"]
    attention = layers[0].self_attn
    assert attention.kv_a_proj_with_mqa.out_features == mini.kv_lora_rank + mini.qk_rope_head_dim
    assert attention.q_b_proj.in_features == mini.q_lora_rank


@pytest.mark.parametrize(
    ("name", "key", "pattern"),
    [
        ("gemma3_text", "layer_types", ["sliding_attention", "full_attention"]),  # five sliding layers per full one
        ("gemma3", "layer_types", ["sliding_attention", "full_attention"]),
        ("gemma2", "layer_types", ["sliding_attention", "full_attention"]),
        ("gpt_oss", "layer_types", ["sliding_attention", "full_attention"]),
        ("llama4", "layer_types", ["chunked_attention", "full_attention"]),  # a NoPE layer every fourth
        ("llama4", "no_rope_layers", [1, 0]),
        ("smollm3", "no_rope_layers", [1, 0]),
        ("qwen3", "layer_types", ["full_attention", "full_attention"]),  # no sliding window in Qwen3-8B
    ],
)
def test_per_layer_patterns_keep_both_kinds_in_two_layers(name: str, key: str, pattern: list[Any]) -> None:
    text = miniature.miniature_config(family_config(name)).get_text_config()
    assert getattr(text, key) == pattern
    if "sliding_attention" in pattern or "chunked_attention" in pattern:
        window = text.sliding_window if "sliding_attention" in pattern else text.attention_chunk_size
        assert window == miniature.WINDOW


def test_llama4_moe_layers_follow_the_interleave_step() -> None:
    scout = family_config("llama4")
    assert miniature.miniature_config(scout).text_config.moe_layers == [0, 1]  # every layer is MoE in Scout
    maverick = {**scout, "text_config": {**scout["text_config"], "interleave_moe_layer_step": 2}}
    mini = miniature.miniature_config(maverick)
    assert mini.text_config.moe_layers == [1]  # dense, then MoE, as Maverick alternates them
    layers = meta_model(mini).language_model.model.layers
    assert [type(layer.feed_forward).__name__ for layer in layers] == ["Llama4TextMLP", "Llama4TextMoe"]


def test_multimodal_miniature_keeps_a_small_vision_tower() -> None:
    mini = miniature.miniature_config(family_config("gemma3"))
    assert mini.vision_config.model_type == "siglip_vision_model"
    assert (mini.vision_config.num_hidden_layers, mini.vision_config.hidden_size) == (2, 32)
    patches = mini.vision_config.image_size // mini.vision_config.patch_size
    assert patches % int(mini.mm_tokens_per_image**0.5) == 0, "the projector pools whole patches per image token"
    assert (mini.image_token_index, mini.boi_token_index) == (262144, 255999)


def test_quantization_other_than_mxfp4_and_remote_code_are_dropped() -> None:
    deepseek = miniature.miniature_config(family_config("deepseek_v3"))
    assert not getattr(deepseek, "quantization_config", None) and not getattr(deepseek, "auto_map", None)
    assert miniature.is_mxfp4(miniature.miniature_config(family_config("gpt_oss")))


def test_longrope_factors_are_resampled_to_the_rotary_size() -> None:
    pairs = 48  # Phi-3.5-mini: head size 96, so 48 rotary frequencies, one factor each
    source = {
        "model_type": "phi3",
        "hidden_size": 3072,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "num_hidden_layers": 32,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_scaling": {
            "type": "longrope",
            "long_factor": [1.0 + i for i in range(pairs)],
            "short_factor": [1.0] * pairs,
        },
    }
    mini = miniature.miniature_config(source)
    half = mini.hidden_size // mini.num_attention_heads // 2
    assert mini.rope_scaling["long_factor"][0] == 1.0 and mini.rope_scaling["long_factor"][-1] == pairs
    assert len(mini.rope_scaling["long_factor"]) == len(mini.rope_scaling["short_factor"]) == half
    meta_model(mini)  # Phi3Config's own checks of the factor lists pass


def test_unknown_model_type_names_the_families() -> None:
    with pytest.raises(miniature.MiniatureError, match=r"unknown to transformers .* qwen3_moe"):
        miniature.miniature_config({"model_type": "qwen9"})


def test_mxfp4_experts_load_back_exactly_through_transformers(tmp_path: Path) -> None:
    """The packed blocks and scales dequantize (transformers' own reader) to the weights the builder drew."""
    built = miniature.build_miniature(small_vocabulary(family_config("gpt_oss")), tmp_path, dtype="float32")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["quantization_config"]["quant_method"] == "mxfp4"
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.mlp.experts.gate_up_proj_blocks" in keys
    assert "model.layers.0.mlp.experts.gate_up_proj" not in keys
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(
        tmp_path, dtype=torch.float32, quantization_config=Mxfp4Config(dequantize=True)
    )
    expected, actual = dict(built.named_parameters()), dict(loaded.named_parameters())
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name].float()), name
    assert expected["model.layers.1.mlp.experts.down_proj"].abs().max() > 0


def test_command_line_builds_from_a_model_folder_with_its_tokenizer(tmp_path: Path) -> None:
    source = tmp_path / "gemma-3-4b-it"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(family_config("gemma3")), encoding="utf-8")
    (source / "generation_config.json").write_text(json.dumps({"eos_token_id": [1, 106], "top_k": 64}))
    build_tokenizer(source)
    out = tmp_path / "miniature"
    result = subprocess.run(
        [sys.executable, "-m", "tunec_entry.miniature", str(source), str(out)],
        cwd=SCRIPTS,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    described = json.loads(result.stdout.strip().splitlines()[-1])
    assert described["architecture"] == "Gemma3ForConditionalGeneration"
    assert (described["model_type"], described["vocab_size"], described["num_hidden_layers"]) == ("gemma3", 262208, 2)
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(described["files"])
    assert json.loads((out / "generation_config.json").read_text())["top_k"] == 64, "the source's, not a new one"
    config = AutoConfig.from_pretrained(out)
    assert config.torch_dtype == torch.bfloat16, "the checkpoint's dtype by default"
    model = AutoModelForImageTextToText.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("What do bees make?", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_command_line_reports_a_config_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen9"}), encoding="utf-8")
    assert miniature.main([str(tmp_path / "config.json"), str(tmp_path / "out")]) == 2
    assert "error: model_type `qwen9` is unknown to transformers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert miniature.main([str(tmp_path), str(tmp_path)]) == 2
    assert "must go to another folder than its source" in capsys.readouterr().err
