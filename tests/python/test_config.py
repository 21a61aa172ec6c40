"""args.yaml parsing and its translation into BitsAndBytesConfig, LoraConfig and TrainingArguments (no GPU)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunec_entry import architecture, builders
from tunec_entry.config import load_args, parse_args_mapping, resolve_method
from tunec_entry.failure import EntryError

FSDP_QLORA = {
    "model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
    "method": "qlora",
    "torch_dtype": "bfloat16",
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "use_bnb_nested_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_quant_storage": "bfloat16",
    "lora_r": 32,
    "lora_alpha": 64,
    "lora_dropout": 0.05,
    "lora_target_modules": "all-linear",
    "learning_rate": "2e-4",
    "num_train_epochs": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "gradient_checkpointing": True,
    "bf16": True,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "save_steps": 100,
    "fsdp": "full_shard auto_wrap offload",
    "fsdp_config": {
        "cpu_ram_efficient_loading": True,
        "sync_module_states": True,
        "use_orig_params": False,
        "backward_prefetch": "backward_pre",
    },
}
"""The reference workflow's training job (examples/medreason), as the lowering writes it."""


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def restore_environ():
    """TrainingArguments exports FSDP_* variables; put the environment back afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# ---- parsing -----------------------------------------------------------------------------------------------------


def test_yaml_file_with_the_reference_keys_parses(tmp_path: Path) -> None:
    path = tmp_path / "args.yaml"
    path.write_text("model_name_or_path: m\nlearning_rate: 2e-4\nlora_r: 32\nuse_peft: true\nbf16: true\n")
    args = load_args(path)
    assert args.training == {"learning_rate": 0.0002, "bf16": True}  # YAML reads 2e-4 as a string
    assert (args.model_name_or_path, args.lora_r, args.method) == ("m", 32, "lora")


def test_sagemaker_style_strings_become_typed_values() -> None:
    args = parse_args_mapping(
        {"lora_r": "16", "lora_dropout": "0.1", "trust_remote_code": "True", "max_steps": "10", "seed": "7"}
    )
    assert (args.lora_r, args.lora_dropout, args.trust_remote_code) == (16, 0.1, True)
    assert args.training == {"max_steps": 10, "seed": 7}


def test_lists_dtypes_and_aliases() -> None:
    args = parse_args_mapping(
        {
            "lora_target_modules": ["q_proj", "v_proj"],
            "lora_modules_to_save": ["lm_head"],
            "stop_tokens": ["<|eom_id|>"],
            "torch_dtype": "bf16",
            "lora_alpha": 64,
        }
    )
    assert args.lora_target_modules == ("q_proj", "v_proj")
    assert args.modules_to_save == ("lm_head",)
    assert args.stop_tokens == ("<|eom_id|>",)
    assert args.torch_dtype == "bfloat16"
    assert args.lora_alpha == 64.0 and isinstance(args.lora_alpha, float)  # the lowering writes 64.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"learnig_rate": 1e-4}, "unknown key(s) in args.yaml: `learnig_rate` (did you mean `learning_rate`?)"),
        ({"resume_from_checkpoint": "/tmp/x"}, "must not set `resume_from_checkpoint`"),
        ({"lora_r": "sixteen"}, "args.yaml `lora_r`: expected an integer, got 'sixteen'"),
        ({"lora_r": 0}, "`lora_r` must be at least 1"),
        ({"stop_tokens": "<|eot_id|>"}, "args.yaml `stop_tokens`: expected a list of strings"),
        ({"torch_dtype": "int4"}, "args.yaml `torch_dtype`: expected one of auto, bfloat16, float16, float32"),
        ({"base_weights": "nf4_roundtrip"}, "`base_weights` 'nf4_roundtrip' is not supported by merge.py"),
        ({"load_in_4bit": True, "load_in_8bit": True}, "`load_in_4bit` and `load_in_8bit` exclude each other"),
        ({"use_cache": "sometimes"}, "args.yaml `use_cache`: expected true or false"),
        ({"bnb_4bit_quant_type": "int8"}, "`bnb_4bit_quant_type` must be one of nf4, fp4"),
        ({"metrics": ["bleu"]}, "args.yaml `metrics`: unknown bleu"),
        ({"lora_modules_to_save": ["a"], "modules_to_save": ["b"]}, "sets `modules_to_save` twice"),
    ],
)
def test_bad_args_are_refused_with_a_reason(raw: dict, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        parse_args_mapping(raw)
    assert message in str(caught.value)


def test_malformed_yaml_and_non_mapping_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [1e-4\n")
    with pytest.raises(EntryError, match="is not valid YAML"):
        load_args(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(EntryError, match="must hold a YAML mapping"):
        load_args(bad)
    with pytest.raises(EntryError, match="cannot read"):
        load_args(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("method", "use_peft", "load_in_4bit", "expected"),
    [
        (None, None, None, "full"),
        (None, True, None, "lora"),
        (None, True, True, "qlora"),
        (None, None, True, "qlora"),
        ("qlora", True, True, "qlora"),
        ("lora", None, False, "lora"),
        ("full", False, None, "full"),
    ],
)
def test_method_follows_the_trl_flags(method, use_peft, load_in_4bit, expected) -> None:
    assert resolve_method(method, use_peft, load_in_4bit) == expected


def test_eight_bit_loading_is_qlora_too() -> None:
    args = parse_args_mapping({"use_peft": True, "load_in_8bit": True})
    assert args.method == "qlora"
    config = builders.quantization_config(args)
    assert config.load_in_8bit and not config.load_in_4bit


@pytest.mark.parametrize(
    ("method", "use_peft", "load_in_4bit"),
    [("full", True, None), ("lora", None, True), ("qlora", False, None), ("dora", None, None)],
)
def test_contradicting_method_is_refused(method, use_peft, load_in_4bit) -> None:
    with pytest.raises(EntryError):
        resolve_method(method, use_peft, load_in_4bit)


# ---- BitsAndBytesConfig ------------------------------------------------------------------------------------------


def test_qlora_bitsandbytes_config_has_every_field_explicit() -> None:
    config = builders.quantization_config(parse_args_mapping(FSDP_QLORA))
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.bnb_4bit_quant_storage == torch.bfloat16


def test_qlora_storage_and_compute_default_to_the_model_dtype_not_uint8() -> None:
    args = parse_args_mapping({"method": "qlora", "torch_dtype": "float16", "use_bnb_nested_quant": False})
    config = builders.quantization_config(args)
    assert (config.bnb_4bit_compute_dtype, config.bnb_4bit_quant_storage) == (torch.float16, torch.float16)
    assert config.bnb_4bit_use_double_quant is False


def test_no_bitsandbytes_config_for_lora_and_full() -> None:
    assert builders.quantization_config(parse_args_mapping({"method": "lora"})) is None
    assert builders.quantization_config(parse_args_mapping({"method": "full"})) is None


def test_qlora_with_auto_dtype_needs_an_explicit_compute_dtype() -> None:
    with pytest.raises(EntryError, match="concrete compute dtype"):
        builders.quantization_config(parse_args_mapping({"method": "qlora", "torch_dtype": "auto"}))


# ---- LoraConfig --------------------------------------------------------------------------------------------------


def test_all_linear_resolves_to_the_architecture_linear_layers_without_lm_head() -> None:
    args = parse_args_mapping({"method": "lora"})
    targets = builders.lora_targets(args, tiny_llama())
    assert targets.modules == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert (targets.exclude, targets.parameters) == (None, [])


def test_named_targets_must_exist_in_the_model() -> None:
    model = tiny_llama()
    assert builders.lora_targets(parse_args_mapping({"lora_target_modules": ["q_proj"]}), model).modules == ["q_proj"]
    with pytest.raises(EntryError, match="query_key_value not among the model's linear layers"):
        builders.lora_targets(parse_args_mapping({"lora_target_modules": ["query_key_value"]}), model)


def test_lora_config_carries_the_lora_keys() -> None:
    args = parse_args_mapping({**FSDP_QLORA, "modules_to_save": ["embed_tokens", "lm_head"], "use_rslora": True})
    config = builders.lora_config(args, builders.LoraTargets(["q_proj", "v_proj"], None, []))
    assert (config.r, config.lora_alpha, config.lora_dropout) == (32, 64, 0.05)
    assert config.target_modules == {"q_proj", "v_proj"}
    assert (config.exclude_modules, config.target_parameters) == (None, None)
    assert config.modules_to_save == ["embed_tokens", "lm_head"]
    assert config.use_rslora is True and config.use_dora is False
    assert (config.task_type, config.bias) == ("CAUSAL_LM", "none")


# ---- FSDP and TrainingArguments ----------------------------------------------------------------------------------


def test_wrap_classes_come_from_the_architecture() -> None:
    assert architecture.wrap_classes(LlamaConfig(num_hidden_layers=1, hidden_size=64)) == ["LlamaDecoderLayer"]


def llama_layer() -> list[str]:
    return ["LlamaDecoderLayer"]


def no_layer() -> list[str]:
    return []


def test_fsdp_settings_of_the_reference_workflow() -> None:
    fsdp, config = builders.fsdp_settings(parse_args_mapping(FSDP_QLORA), llama_layer)
    assert fsdp == "full_shard auto_wrap offload"
    assert config == {
        "cpu_ram_efficient_loading": True,
        "sync_module_states": True,
        "use_orig_params": False,
        "backward_prefetch": "backward_pre",
        "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"],
    }


def test_fsdp_wraps_the_decoder_layer_named_in_args_yaml() -> None:
    raw = {"fsdp": "full_shard auto_wrap", "decoder_layer": "MistralDecoderLayer"}
    _, config = builders.fsdp_settings(parse_args_mapping(raw), llama_layer)
    assert config["transformer_layer_cls_to_wrap"] == ["MistralDecoderLayer"]


def test_fsdp_settings_keep_an_explicit_wrap_class_and_drop_the_fsdp_prefix() -> None:
    raw = {"fsdp": "full_shard auto_wrap", "fsdp_config": {"fsdp_transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]}}
    fsdp, config = builders.fsdp_settings(parse_args_mapping(raw), llama_layer)
    assert (fsdp, config) == ("full_shard auto_wrap", {"transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]})


def test_ram_efficient_loading_turns_on_module_sync() -> None:
    raw = {"fsdp": "full_shard", "fsdp_config": {"cpu_ram_efficient_loading": "true"}}
    _, config = builders.fsdp_settings(parse_args_mapping(raw), no_layer)
    assert config["sync_module_states"] is True


def test_no_fsdp_means_no_fsdp_settings() -> None:
    assert builders.fsdp_settings(parse_args_mapping({"method": "lora"}), llama_layer) == ("", {})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"fsdp": "full_shard", "fsdp_config": {"cpu_ram_efficient_loading": True, "sync_module_states": False}},
            "needs sync_module_states: true",
        ),
        (
            {"fsdp": "full_shard", "gradient_checkpointing": True, "fsdp_config": {"activation_checkpointing": True}},
            "are both true",
        ),
        (
            {**FSDP_QLORA, "bnb_4bit_quant_storage": "uint8"},
            "needs bnb_4bit_quant_storage (uint8) equal to torch_dtype (bfloat16)",
        ),
        ({"fsdp_config": {"use_orig_params": False}}, "`fsdp_config` without `fsdp`"),
    ],
)
def test_fsdp_mistakes_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        builders.fsdp_settings(parse_args_mapping(raw), llama_layer)
    assert message in str(caught.value)


def test_auto_wrap_needs_a_known_layer_class() -> None:
    with pytest.raises(EntryError, match="transformer_layer_cls_to_wrap"):
        builders.fsdp_settings(parse_args_mapping({"fsdp": "full_shard auto_wrap"}), no_layer)


def test_training_arguments_of_the_reference_workflow(tmp_path: Path, restore_environ) -> None:
    args = parse_args_mapping(FSDP_QLORA)
    training = builders.training_arguments(args, str(tmp_path), has_eval=True, default_wrap=llama_layer, cuda=False)
    assert training.output_dir == str(tmp_path)
    assert [option.value for option in training.fsdp] == ["full_shard", "auto_wrap", "offload"]
    assert training.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert training.gradient_checkpointing is True
    assert training.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert (training.learning_rate, training.num_train_epochs, training.save_steps) == (2e-4, 2, 100)
    assert training.bf16 is True and training.eval_strategy == "steps"
    assert training.prediction_loss_only is True and training.label_names == ["labels"]
    assert training.report_to == [] and training.ddp_find_unused_parameters is False
    # What from_pretrained and accelerate read under torchrun:
    assert os.environ["ACCELERATE_USE_FSDP"] == "true"
    assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    assert os.environ["FSDP_SYNC_MODULE_STATES"] == "true"
    assert os.environ["FSDP_USE_ORIG_PARAMS"] == "false"
    assert os.environ["FSDP_OFFLOAD_PARAMS"] == "true"
    assert os.environ["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"


def test_training_arguments_without_eval_or_fsdp(tmp_path: Path) -> None:
    args = parse_args_mapping({"method": "full", "torch_dtype": "float32", "max_steps": 5})
    training = builders.training_arguments(args, str(tmp_path), has_eval=False, cuda=False)
    assert training.fsdp == [] and training.eval_strategy == "no"
    assert training.bf16 is False and training.max_steps == 5
    assert training.use_cpu is True  # no CUDA: the Trainer runs on the CPU
    assert "ddp_find_unused_parameters" not in args.training and training.ddp_find_unused_parameters is None
    on_gpu = builders.training_arguments(args, str(tmp_path), has_eval=False, cuda=True)
    assert on_gpu.use_cpu is False


@pytest.mark.parametrize(
    ("raw", "has_eval", "message"),
    [
        ({"eval_strategy": "steps"}, False, "no `val` channel"),
        ({"gradient_checkpointing_kwargs": {"use_reentrant": True}}, True, "use_reentrant must be false"),
        ({"warmup_ratio": 2.0}, True, "warmup_ratio must lie in range [0,1]"),
    ],
)
def test_training_argument_mistakes_are_refused(tmp_path: Path, raw: dict, has_eval: bool, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        builders.training_arguments(parse_args_mapping(raw), str(tmp_path), has_eval=has_eval, cuda=False)
    assert message in str(caught.value)
