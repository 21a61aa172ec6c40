"""train.py -> merge.py -> evaluate.py on the tiny Llama, on the CPU, as SageMaker would run them (see conftest)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from conftest import LoraRun
from tinyllm import CHAT_TEMPLATE, END_OF_TEXT, EOT, FACTS, PAD, tokenized_row

LLAMA_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
STEPS, EPOCH_STEPS, R = 30, 3, 8


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- train.py ----------------------------------------------------------------------------------------------------


def test_train_saves_adapter_with_resolved_targets_and_tokenizer(lora_run: LoraRun) -> None:
    model_dir = lora_run.train.model_dir
    config = read_json(model_dir / "adapter_config.json")
    assert sorted(config["target_modules"]) == LLAMA_LINEAR  # "all-linear" resolved; lm_head is not a target
    assert config["target_modules"] == LLAMA_LINEAR, "sorted, not in the order of Python's string hashing"
    assert not (model_dir / "training_args.bin").exists(), "no pickle in the artifact; args.yaml is the record"
    assert (config["r"], config["lora_alpha"], config["task_type"]) == (R, 16, "CAUSAL_LM")
    assert config["modules_to_save"] == ["lm_head"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.pad_token == PAD
    assert tokenizer.pad_token_id != tokenizer.convert_tokens_to_ids(EOT)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert not lora_run.train.failure.exists()


def test_adapter_tensor_shapes_are_r_by_in_and_out_by_r(lora_run: LoraRun, base_model: Path) -> None:
    base = AutoModelForCausalLM.from_pretrained(base_model)
    linear = {name: module for name, module in base.named_modules() if isinstance(module, torch.nn.Linear)}
    seen = 0
    with safe_open(str(lora_run.train.model_dir / "adapter_model.safetensors"), framework="pt") as f:
        for key in f.keys():
            shape = tuple(f.get_slice(key).get_shape())
            if ".lora_A." in key or ".lora_B." in key:
                module = linear[key.removeprefix("base_model.model.").split(".lora_")[0]]
                expected = (R, module.in_features) if ".lora_A." in key else (module.out_features, R)
                assert shape == expected, key
                seen += 1
    assert seen == 2 * len(LLAMA_LINEAR) * base.config.num_hidden_layers


def test_losses_are_finite_and_fall_on_the_memorisable_set(lora_run: LoraRun) -> None:
    history = read_json(lora_run.train.output_data_dir / "metrics.json")["history"]
    train_losses = [record["train_loss"] for record in history]
    eval_losses = [record["eval_loss"] for record in history]
    assert all(math.isfinite(loss) for loss in train_losses + eval_losses)
    assert train_losses[-1] < 0.1 * train_losses[0]
    assert eval_losses[-1] < 0.1 * eval_losses[0]


def test_metrics_json_counts_every_trained_token(lora_run: LoraRun, tokenizer) -> None:
    metrics = read_json(lora_run.train.output_data_dir / "metrics.json")
    tokens_per_epoch = sum(len(tokenized_row(tokenizer, q, a)["input_ids"]) for q, a in FACTS)
    assert metrics["schema"] == "tunec.train-metrics/1"
    assert (metrics["method"], metrics["global_step"], metrics["steps_this_run"]) == ("lora", STEPS, STEPS)
    assert metrics["resumed_from_step"] is None
    # 30 steps of 2 rows are 10 epochs of the 6 rows: every token of the set, 10 times, no padding counted.
    assert metrics["train_tokens"] == 10 * tokens_per_epoch
    assert metrics["tokens_per_second"] == pytest.approx(metrics["train_tokens"] / metrics["train_runtime_s"])
    assert metrics["peak_gpu_memory_bytes"] is None  # no CUDA device: nothing measured, nothing invented
    assert metrics["peak_host_memory_bytes"] > 0
    assert [record["step"] for record in metrics["history"]] == list(range(5, STEPS + 1, 5))
    assert metrics["final_train_loss"] == metrics["history"][-1]["train_loss"]
    assert metrics["final_eval_loss"] == metrics["history"][-1]["eval_loss"]
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]
    assert (metrics["world_size"], metrics["num_gpus"]) == (1, 0)
    assert (metrics["instance_type"], metrics["num_hosts"]) == ("local", 1)  # from SM_RESOURCE_CONFIG


def test_usage_json_records_what_each_job_used_and_no_gpu_figure_on_the_cpu(lora_run: LoraRun, tokenizer) -> None:
    train = read_json(lora_run.train.output_data_dir / "usage.json")
    metrics = read_json(lora_run.train.output_data_dir / "metrics.json")
    assert (train["schema"], train["script"], train["steps"]) == ("tunec.usage/1", "train", STEPS)
    # The same tokens as metrics.json, at the rate of the training loop; the wall time covers the whole script.
    assert train["tokens"] == metrics["train_tokens"]
    assert train["tokens_per_second"] == pytest.approx(metrics["tokens_per_second"])
    assert metrics["train_runtime_s"] < train["wall_seconds"]
    assert 0 < train["step_seconds"] * STEPS <= metrics["train_runtime_s"]
    # Peak RSS of a process that imported torch and trained a model: tens of MiB at least.
    assert train["host_peak_bytes"] > 50 * 2**20
    assert [r["rank"] for r in train["ranks"]] == [0]
    for name in ("merge", "evaluate"):
        usage = read_json(getattr(lora_run, name).output_data_dir / "usage.json")
        assert usage["script"] == name and usage["wall_seconds"] > 0 and "steps" not in usage
        assert usage["host_peak_bytes"] == usage["ranks"][0]["host_peak_bytes"] > 50 * 2**20
    evaluate = read_json(lora_run.evaluate.output_data_dir / "usage.json")
    generated = sum(p["new_tokens"] for p in read_jsonl(lora_run.evaluate.output_data_dir / "predictions.jsonl"))
    assert evaluate["tokens"] == generated > 0
    # No CUDA device: no GPU key at all, in the totals or a rank (absent, never zero or null).
    for usage in (train, evaluate):
        gpu_keys = {"gpu_allocated_peak_bytes", "gpu_reserved_peak_bytes", "device_used_peak_bytes", "device"}
        assert not gpu_keys & (set(usage) | set(usage["ranks"][0]))


def test_checkpoint_every_save_steps(lora_run: LoraRun) -> None:
    checkpoints = sorted(lora_run.train.checkpoint_dir.iterdir(), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in checkpoints] == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for checkpoint in checkpoints:
        state = read_json(checkpoint / "trainer_state.json")
        assert state["global_step"] == int(checkpoint.name.split("-")[1])
        assert (checkpoint / "adapter_model.safetensors").is_file()
        assert (checkpoint / "optimizer.pt").is_file()


# ---- merge.py ----------------------------------------------------------------------------------------------------


def logits(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float()


def test_merged_logits_equal_base_plus_adapter(lora_run: LoraRun, base_model: Path, tokenizer) -> None:
    input_ids = torch.tensor([tokenized_row(tokenizer, *FACTS[0])["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    base_logits = logits(base, input_ids)
    expected = logits(PeftModel.from_pretrained(base, lora_run.train.model_dir), input_ids)
    merged_fp32 = logits(AutoModelForCausalLM.from_pretrained(lora_run.merge_fp32.model_dir), input_ids)
    merged_bf16 = logits(
        AutoModelForCausalLM.from_pretrained(lora_run.merge.model_dir, dtype=torch.bfloat16), input_ids
    )
    adapter_effect = (expected - base_logits).abs().max().item()
    assert adapter_effect > 1.0  # the comparison below means something
    assert (merged_fp32 - expected).abs().max().item() < 1e-4
    assert (merged_bf16 - expected).abs().max().item() < 0.03 * adapter_effect


def test_merged_model_is_bf16_sharded_safetensors_without_lora_weights(lora_run: LoraRun) -> None:
    model_dir = lora_run.merge.model_dir
    index = read_json(model_dir / "model.safetensors.index.json")
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and all(name.endswith(".safetensors") for name in shards)
    for shard in shards:
        with safe_open(str(model_dir / shard), framework="pt") as f:
            for key in f.keys():
                assert "lora" not in key and "base_layer" not in key and "modules_to_save" not in key
                assert f.get_slice(key).get_dtype() == "BF16"
    assert not list(model_dir.glob("adapter_*"))


def test_merged_model_is_ready_for_inference(lora_run: LoraRun, tokenizer) -> None:
    model_dir = lora_run.merge.model_dir
    config = read_json(model_dir / "config.json")
    assert config["use_cache"] is True
    generation = GenerationConfig.from_pretrained(model_dir)
    eot_id, end_id, pad_id = tokenizer.convert_tokens_to_ids([EOT, END_OF_TEXT, PAD])
    assert generation.eos_token_id == [eot_id, end_id]  # end-of-turn first, every stop id present
    assert generation.pad_token_id == pad_id == config["pad_token_id"]
    saved = AutoTokenizer.from_pretrained(model_dir)
    assert saved.chat_template == CHAT_TEMPLATE
    assert saved.pad_token == PAD


def test_merge_smoke_generation_answers_and_stops(lora_run: LoraRun) -> None:
    smoke = read_json(lora_run.merge.output_data_dir / "smoke.json")
    assert smoke["prompt"] == lora_run.test_rows[0]["prompt"]
    assert smoke["completion"] == FACTS[0][1]
    assert smoke["stopped"] is True


# ---- evaluate.py -------------------------------------------------------------------------------------------------


def test_evaluate_predicts_the_memorised_answers(lora_run: LoraRun) -> None:
    predictions = read_jsonl(lora_run.evaluate.output_data_dir / "predictions.jsonl")
    assert [p["index"] for p in predictions] == list(range(len(lora_run.test_rows)))
    assert [p["prediction"] for p in predictions[: len(FACTS)]] == [answer for _, answer in FACTS]
    assert all(p["stopped"] for p in predictions)
    assert [p["reference"] for p in predictions] == [row["reference"] for row in lora_run.test_rows]


def test_evaluate_report_has_exact_metrics(lora_run: LoraRun) -> None:
    report = read_json(lora_run.evaluate.output_data_dir / "report.json")
    # 6 memorised answers; "Paris" against "Paris France" (ROUGE-L: P=1, R=1/2, F=2/3); "Paris" against "Lyon".
    assert report["num_examples"] == 8
    assert report["metrics"]["exact_match"] == pytest.approx(6 / 8)
    assert report["metrics"]["rouge_l"] == pytest.approx((6 + 2 / 3) / 8)
    # Multiple choice on rows 0, 2, 4 (answer right) and the last row (key "Lyon", model prefers "Paris").
    assert report["num_choice_examples"] == 4
    assert report["metrics"]["choice_accuracy"] == pytest.approx(3 / 4)
    assert report["stopped_fraction"] == 1.0
    predictions = read_jsonl(lora_run.evaluate.output_data_dir / "predictions.jsonl")
    assert report["metrics"]["exact_match"] == pytest.approx(sum(p["exact_match"] for p in predictions) / 8)
    assert predictions[-1]["chosen_index"] == 1 and predictions[-1]["correct_choice"] is False


def test_evaluating_base_plus_adapter_gives_the_merged_models_answers(lora_run: LoraRun) -> None:
    merged = read_jsonl(lora_run.evaluate.output_data_dir / "predictions.jsonl")
    adapted = read_jsonl(lora_run.evaluate_adapter.output_data_dir / "predictions.jsonl")
    assert [p["prediction"] for p in adapted] == [p["prediction"] for p in merged]
    report = read_json(lora_run.evaluate_adapter.output_data_dir / "report.json")
    assert report["metrics"] == read_json(lora_run.evaluate.output_data_dir / "report.json")["metrics"]
    assert report["adapter"] == "/opt/ml/input/data/adapter", "channel paths are named as SageMaker names them"


def test_evaluate_copies_the_report_into_the_model_artifact(lora_run: LoraRun) -> None:
    output = read_json(lora_run.evaluate.output_data_dir / "report.json")
    assert read_json(lora_run.evaluate.model_dir / "report.json") == output
