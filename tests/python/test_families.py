"""Every supported model family, for real on the CPU: train.py -> merge.py -> evaluate.py on a miniature.

Each family's miniature is built from its real config.json (tests/python/families/, tunec_entry.miniature): the
same config class, architecture, attention and MoE kind, 2 layers of toy size, with a vocabulary of 512 rows
(conftest.small_vocabulary). The tiny byte-level tokenizer of tinyllm.py writes the rows. The scripts run in this
process (their `main`, with the job's SM_* variables), which saves the interpreter start-up of three subprocesses
per family; tests/python/test_pipeline.py runs them as SageMaker does, as subprocesses.

Per family: the LoRA targets resolve to the family's linear layers (experts included where they are linear layers,
fused experts through PEFT's target_parameters where asked, routers and the vision tower never), the FSDP wrap
classes are the model's own decoder layer, the merged model's logits equal base + adapter and it is saved as the
architecture it was read as, and evaluation generates.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from transformers import AutoConfig, AutoTokenizer

from conftest import family_config, load_script, small_vocabulary
from tinyllm import (
    CHAT_TEMPLATE,
    END_OF_TEXT,
    EOT,
    FACTS,
    PAD,
    Layout,
    build_tokenizer,
    eval_row,
    tokenized_row,
    write_jsonl,
)
from tunec_entry import architecture, builders
from tunec_entry.config import parse_args_mapping
from tunec_entry.failure import EntryError
from tunec_entry.miniature import FAMILIES, build_miniature, full_config

pytestmark = pytest.mark.usefixtures("one_thread")

ATTENTION = ["k_proj", "o_proj", "q_proj", "v_proj"]
MLP = ["down_proj", "gate_proj", "up_proj"]
LORA_MODULES = {
    "llama": ATTENTION + MLP,
    "mistral": ATTENTION + MLP,
    "qwen2": ATTENTION + MLP,
    "gemma2": ATTENTION + MLP,
    "phi3": ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"],
    "qwen3": ATTENTION + MLP,
    "qwen3_moe": ATTENTION + MLP,  # the experts are linear layers; the router `mlp.gate` is left out
    "gemma3_text": ATTENTION + MLP,
    "gemma3": ATTENTION + MLP,  # of the language model; SigLIP's q/k/v_proj are excluded
    "gpt_oss": ATTENTION,  # the experts are fused parameters, the router a parameter
    "smollm3": ATTENTION + MLP,
    "olmo2": ATTENTION + MLP,
    "granite": ATTENTION + MLP,
    "granitemoe": ATTENTION,  # fused experts; the router `block_sparse_moe.router.layer` is left out
    "deepseek_v3": [
        "down_proj",
        "gate_proj",
        "kv_a_proj_with_mqa",
        "kv_b_proj",
        "o_proj",
        "q_a_proj",
        "q_b_proj",
        "up_proj",
    ],
    "llama4": ATTENTION + MLP,  # shared expert and dense MLP; the router and the vision tower are left out
}
"""`all-linear` as tunec resolves it, per family, from the architectures' published module names."""
TARGET_PARAMETERS = {
    "gpt_oss": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
    "llama4": ["feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"],
    "granitemoe": ["block_sparse_moe.input_linear.weight", "block_sparse_moe.output_linear.weight"],
}
"""Fused experts, asked for with `lora_target_parameters` in these runs."""
WRAP_CLASSES = {
    "llama": ["LlamaDecoderLayer"],
    "mistral": ["MistralDecoderLayer"],
    "qwen2": ["Qwen2DecoderLayer"],
    "gemma2": ["Gemma2DecoderLayer"],
    "phi3": ["Phi3DecoderLayer"],
    "qwen3": ["Qwen3DecoderLayer"],
    "qwen3_moe": ["Qwen3MoeDecoderLayer"],
    "gemma3_text": ["Gemma3DecoderLayer"],
    "gemma3": ["Gemma3DecoderLayer", "SiglipVisionEmbeddings", "SiglipEncoderLayer"],
    "gpt_oss": ["GptOssDecoderLayer"],
    "smollm3": ["SmolLM3DecoderLayer"],
    "olmo2": ["Olmo2DecoderLayer"],
    "granite": ["GraniteDecoderLayer"],
    "granitemoe": ["GraniteMoeDecoderLayer"],
    "deepseek_v3": ["DeepseekV3DecoderLayer"],
    "llama4": ["Llama4TextDecoderLayer", "Llama4VisionEncoderLayer"],
}
MULTIMODAL = {"gemma3", "llama4"}
VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.", "vision_model.", "multi_modal_projector.")
STEPS = 6


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def run_main(script: str, layout: Layout) -> None:
    """Run stdlib/python/<script>.py's main in this process with the job's SM_* variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNEC_"))}
    environ.update(layout.environ())
    assert load_script(script).main(["--config", str(layout.config_path)], environ) == 0


def family_args(name: str, base: Path, **overrides: Any) -> dict[str, Any]:
    """args.yaml as the lowering writes it for the family (model_type, attention, experts, text_only, MXFP4)."""
    args: dict[str, Any] = {
        "model_name_or_path": str(base),
        "model_type": family_config(name)["model_type"],
        "method": "lora",
        "torch_dtype": "float32",
        "attn_implementation": "eager" if name == "gpt_oss" else "sdpa",
        "pad_token": PAD,
        "eot_token": EOT,
        "stop_tokens": [END_OF_TEXT],
        "chat_template": CHAT_TEMPLATE,
        "max_length": 128,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "lora_target_modules": "all-linear",
        "learning_rate": "1e-2",
        "lr_scheduler_type": "constant",
        "max_steps": STEPS,
        "per_device_train_batch_size": 2,
        "gradient_checkpointing": True,
        "logging_steps": 1,
        "save_steps": 1000,
        "seed": 1,
        "max_new_tokens": 4,
        "batch_size": 3,
    }
    if name in TARGET_PARAMETERS:
        args["lora_target_parameters"] = TARGET_PARAMETERS[name]
    if name in MULTIMODAL:
        args["text_only"] = True
    if name == "gpt_oss":
        args["dequantize_mxfp4"] = True
    args.update(overrides)
    return args


def train_layout(root: Path, args: dict[str, Any], tokenizer) -> Layout:
    layout = Layout(root)
    write_jsonl(layout.add_channel("train") / "train.jsonl", [tokenized_row(tokenizer, q, a) for q, a in FACTS])
    layout.write_args(args)
    return layout


@dataclass
class FamilyRun:
    name: str
    base: Path
    train: Layout
    merge: Layout
    evaluate: Layout


@pytest.fixture(scope="module", params=FAMILIES)
def family_run(
    request: pytest.FixtureRequest, miniatures: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> FamilyRun:
    name = request.param
    base = miniatures(name)
    tokenizer = AutoTokenizer.from_pretrained(base)
    root = tmp_path_factory.mktemp(name)
    train = train_layout(root / "train", family_args(name, base), tokenizer)
    run_main("train", train)
    test_rows = [eval_row(tokenizer, question, answer) for question, answer in FACTS[:3]]
    merge = Layout(root / "merge")
    merge.write_args(family_args(name, base, adapter_path=str(train.model_dir)))
    write_jsonl(merge.add_channel("test") / "test.jsonl", test_rows)
    run_main("merge", merge)
    evaluate = Layout(root / "evaluate")
    evaluate.write_args(family_args(name, merge.model_dir))
    write_jsonl(evaluate.add_channel("test") / "test.jsonl", test_rows)
    run_main("evaluate", evaluate)
    return FamilyRun(name, base, train, merge, evaluate)


def load(folder: Path) -> torch.nn.Module:
    """A model as the scripts load it: its own architecture, float32 (MXFP4 experts dequantized, then cast)."""
    config = AutoConfig.from_pretrained(folder)
    model = architecture.auto_class(config).from_pretrained(folder, dtype=torch.float32).eval()
    architecture.cast_dequantized_experts(model, torch.float32)
    return model


# ---- train.py ----------------------------------------------------------------------------------------------------


def test_lora_targets_resolve_to_the_family_layers(family_run: FamilyRun) -> None:
    config = read_json(family_run.train.model_dir / "adapter_config.json")
    assert config["target_modules"] == sorted(LORA_MODULES[family_run.name])
    assert config["target_parameters"] == TARGET_PARAMETERS.get(family_run.name)
    assert (config["exclude_modules"] is not None) == (family_run.name in MULTIMODAL)
    with safe_open(str(family_run.train.model_dir / "adapter_model.safetensors"), framework="pt") as f:
        keys = [key.removeprefix("base_model.model.") for key in f.keys()]
    assert keys and all(".lora_A." in key or ".lora_B." in key for key in keys)
    assert not [key for key in keys if key.startswith(VISION_PREFIXES)], "the vision tower is never adapted"
    assert not [key for key in keys if ".router." in key or ".mlp.gate.lora" in key], "nor a router"
    if family_run.name in ("qwen3_moe", "deepseek_v3"):  # experts as ModuleLists of linear layers
        assert any(".experts.0.gate_proj." in key for key in keys)
    wanted = [name.rsplit(".", 1)[0] for name in TARGET_PARAMETERS.get(family_run.name, [])]
    for module in set(wanted):  # PEFT's ParamWrapper saves one lora_A per parameter, under the expert module
        adapted = [key for key in keys if f".{module}." in key and ".lora_A." in key]
        assert len(adapted) == wanted.count(module) * 2, (module, adapted)  # 2 MoE layers


def test_training_loss_is_finite_and_falls(family_run: FamilyRun) -> None:
    metrics = read_json(family_run.train.output_data_dir / "metrics.json")
    losses = [record["train_loss"] for record in metrics["history"]]
    assert len(losses) == STEPS and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert metrics["global_step"] == STEPS
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]


# ---- merge.py ----------------------------------------------------------------------------------------------------


def test_merged_logits_equal_base_plus_adapter(family_run: FamilyRun) -> None:
    tokenizer = AutoTokenizer.from_pretrained(family_run.base)
    input_ids = torch.tensor([tokenized_row(tokenizer, *FACTS[0])["input_ids"]])
    base = load(family_run.base)
    with torch.no_grad():
        base_logits = base(input_ids=input_ids).logits
        expected = PeftModel.from_pretrained(base, family_run.train.model_dir).eval()(input_ids=input_ids).logits
        merged = load(family_run.merge.model_dir)(input_ids=input_ids).logits
    effect = (expected - base_logits).abs().max().item()
    assert effect > 1e-3, "the adapter changes the logits, so the comparison below means something"
    assert (merged - expected).abs().max().item() < 1e-4 + 1e-3 * effect


def test_merged_model_is_saved_as_the_architecture_it_was_read_as(family_run: FamilyRun) -> None:
    base_config = read_json(family_run.base / "config.json")
    merged_config = read_json(family_run.merge.model_dir / "config.json")
    assert (
        merged_config["architectures"]
        == base_config["architectures"]
        == family_config(family_run.name)["architectures"]
    )
    assert merged_config["model_type"] == base_config["model_type"]
    assert "quantization_config" not in merged_config, "MXFP4 experts are saved dequantized"
    base, merged = load(family_run.base), load(family_run.merge.model_dir)
    assert type(merged) is type(base)
    base_weights, merged_weights = dict(base.named_parameters()), dict(merged.named_parameters())
    assert base_weights.keys() == merged_weights.keys()
    outside = [name for name in base_weights if name.startswith(VISION_PREFIXES)]
    assert bool(outside) == (family_run.name in MULTIMODAL)
    for name in outside:  # text-only training leaves the vision tower as it was
        assert torch.equal(base_weights[name], merged_weights[name]), name


def test_merge_smoke_generation_generates(family_run: FamilyRun) -> None:
    smoke = read_json(family_run.merge.output_data_dir / "smoke.json")
    assert smoke["new_tokens"] >= 1


# ---- evaluate.py -------------------------------------------------------------------------------------------------


def test_evaluation_generates_for_every_test_row(family_run: FamilyRun) -> None:
    report = read_json(family_run.evaluate.output_data_dir / "report.json")
    assert report["num_examples"] == 3
    assert set(report["metrics"]) == {"exact_match", "rouge_l"}
    predictions = [json.loads(line) for line in (family_run.evaluate.output_data_dir / "predictions.jsonl").open()]
    assert [p["index"] for p in predictions] == [0, 1, 2]
    assert all(p["new_tokens"] >= 1 for p in predictions)


# ---- architecture facts, without training ------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_fsdp_wrap_classes_are_the_models_own_layers(name: str, miniatures: Callable[[str], Path]) -> None:
    config = AutoConfig.from_pretrained(miniatures(name))
    wrap = architecture.wrap_classes(config)
    assert wrap == WRAP_CLASSES[name]
    assert architecture.wrap_classes(full_config(family_config(name))) == wrap, "the real model's, too"
    with torch.device("meta"):
        model = architecture.model_class(config)(config)
    decoder_layers = architecture.decoder(model).layers
    assert type(decoder_layers[0]).__name__ == wrap[0]
    architecture.check_wrap_classes(model, wrap)
    if name != "llama":
        with pytest.raises(EntryError, match="LlamaDecoderLayer do not occur"):
            architecture.check_wrap_classes(model, ["LlamaDecoderLayer"])


@pytest.mark.parametrize("name", FAMILIES)
def test_all_linear_is_peft_all_linear_less_routers_and_vision(name: str, miniatures: Callable[[str], Path]) -> None:
    """PEFT's own "all-linear" against tunec's: the difference is exactly the routers and the vision tower."""
    folder = miniatures(name)

    def adapted(config: LoraConfig) -> set[str]:
        model = get_peft_model(load(folder), config)
        return {n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, LoraLayer)}

    args = parse_args_mapping({"lora_dropout": 0.0})
    ours = adapted(builders.lora_config(args, builders.lora_targets(args, load(folder))))
    peft_all = adapted(LoraConfig(target_modules="all-linear", task_type="CAUSAL_LM"))
    assert ours and ours <= peft_all
    model = load(folder)
    experts = architecture.expert_count(model.config)
    modules = dict(model.named_modules())
    for left_out in peft_all - ours:
        is_router = experts is not None and modules[left_out].out_features == experts
        assert is_router or left_out.startswith(VISION_PREFIXES), left_out
    routers = {n for n in peft_all - ours if not n.startswith(VISION_PREFIXES)}
    assert bool(routers) == (name in ("qwen3_moe", "granitemoe", "llama4"))
    assert bool(peft_all - ours - routers) == (name in MULTIMODAL)


# ---- family flags --------------------------------------------------------------------------------------------------


def quick_train(root: Path, name: str, base: Path, **overrides: Any) -> Layout:
    tokenizer = AutoTokenizer.from_pretrained(base)
    layout = train_layout(root, family_args(name, base, max_steps=2, **overrides), tokenizer)
    run_main("train", layout)
    return layout


def test_dequantize_mxfp4_is_harmless_on_weights_that_are_not_mxfp4(tmp_path: Path) -> None:
    source = {k: v for k, v in small_vocabulary(family_config("gpt_oss")).items() if k != "quantization_config"}
    base = tmp_path / "base"
    build_miniature(source, base, dtype="float32")
    build_tokenizer(base)
    layout = quick_train(tmp_path / "train", "gpt_oss", base, dequantize_mxfp4=True)
    assert read_json(layout.output_data_dir / "metrics.json")["global_step"] == 2


def test_mxfp4_weights_are_dequantized_to_train_unless_refused(
    miniatures: Callable[[str], Path], tmp_path: Path
) -> None:
    base = miniatures("gpt_oss")
    config = AutoConfig.from_pretrained(base)
    for flag in (None, True):
        args = parse_args_mapping({"dequantize_mxfp4": flag} if flag is not None else {})
        assert architecture.mxfp4_loading(args, config, "train").dequantize is True
        assert architecture.mxfp4_loading(args, config, "merge").dequantize is True
    assert architecture.mxfp4_loading(parse_args_mapping({}), config, "evaluate") is None
    with pytest.raises(EntryError, match="MXFP4 weights cannot be trained: set dequantize_mxfp4: true"):
        quick_train(tmp_path, "gpt_oss", base, dequantize_mxfp4=False)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("gemma3", {"text_only": False}, "trains gemma3 on text rows only"),
        ("qwen3", {"model_type": "llama"}, "`model_type` is llama but the checkpoint's config.json says qwen3"),
        ("gpt_oss", {"attn_implementation": "sdpa"}, "GptOssForCausalLM does not support: set attn_implementation"),
        ("qwen3_moe", {"lora_target_parameters": ["mlp.experts.gate_up_proj"]}, "not among the model's fused expert"),
        (
            "gpt_oss",
            {"lora_target_parameters": ["mlp.experts.gate_proj"]},
            "(mlp.experts.down_proj, mlp.experts.gate_up_proj)",
        ),
    ],
)
def test_family_mistakes_are_refused(
    name: str, overrides: dict[str, Any], message: str, miniatures: Callable[[str], Path], tmp_path: Path
) -> None:
    with pytest.raises(EntryError) as caught:
        quick_train(tmp_path, name, miniatures(name), **overrides)
    assert message in str(caught.value)


def test_full_fine_tuning_of_a_multimodal_checkpoint_trains_the_text_path_only(
    miniatures: Callable[[str], Path], tmp_path: Path
) -> None:
    base = miniatures("gemma3")
    layout = quick_train(tmp_path, "gemma3", base, method="full", use_peft=False, learning_rate="1e-3")
    before, after = dict(load(base).named_parameters()), dict(load(layout.model_dir).named_parameters())
    assert before.keys() == after.keys()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and not [name for name in changed if name.startswith(VISION_PREFIXES)]
    assert any(name.startswith("model.language_model.layers.") for name in changed)


def test_qlora_preparation_keeps_fused_experts_in_16_bits(miniatures: Callable[[str], Path]) -> None:
    """bitsandbytes leaves 3-D expert parameters unquantized; the fp32 upcast of the rest must not copy them."""
    model = load(miniatures("llama4")).to(torch.bfloat16)
    load_script("train").prepare_quantized_base(model)
    fused = {name for name, p in model.named_parameters() if p.ndim == 3}
    assert fused == set(architecture.fused_expert_parameters(model)) and len(fused) == 4
    for name, parameter in model.named_parameters():
        assert not parameter.requires_grad
        assert parameter.dtype == (torch.bfloat16 if name in fused else torch.float32), name


def test_fsdp_full_fine_tuning_of_a_multimodal_checkpoint_needs_original_parameters() -> None:
    raw = {"method": "full", "fsdp": "full_shard auto_wrap", "fsdp_config": {"use_orig_params": False}}
    wrap = ["Gemma3DecoderLayer", "SiglipEncoderLayer"]
    with pytest.raises(EntryError, match="use_orig_params: true"):
        builders.fsdp_settings(parse_args_mapping(raw), lambda: wrap, frozen_parts=True)
    raw["fsdp_config"]["use_orig_params"] = True
    _, config = builders.fsdp_settings(parse_args_mapping(raw), lambda: wrap, frozen_parts=True)
    assert config["transformer_layer_cls_to_wrap"] == wrap
    lora = {"method": "lora", "fsdp": "full_shard auto_wrap", "decoder_layer": wrap}
    _, config = builders.fsdp_settings(parse_args_mapping(lora), list, frozen_parts=True)
    assert config["transformer_layer_cls_to_wrap"] == wrap, "LoRA freezes the whole base: any wrap works"


def test_evaluating_an_mxfp4_checkpoint_as_it_ships(miniatures: Callable[[str], Path], tmp_path: Path) -> None:
    """Without dequantize_mxfp4, transformers dequantizes by itself on the CPU; the experts follow torch_dtype."""
    base = miniatures("gpt_oss")
    tokenizer = AutoTokenizer.from_pretrained(base)
    layout = Layout(tmp_path)
    layout.write_args({k: v for k, v in family_args("gpt_oss", base).items() if k != "dequantize_mxfp4"})
    write_jsonl(layout.add_channel("test") / "test.jsonl", [eval_row(tokenizer, *FACTS[0])])
    run_main("evaluate", layout)
    assert read_json(layout.output_data_dir / "report.json")["num_examples"] == 1
