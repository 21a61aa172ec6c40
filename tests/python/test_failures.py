"""Bad inputs end a job with exit status 1 and a one-line reason in the failure file, before any training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import load_script, lora_args, make_test_split
from tinyllm import EOT, FACTS, Layout, run_script, tokenized_row, write_jsonl
from tunec_entry.failure import run_entry

SCRIPTS = {name: load_script(name) for name in ("train", "merge", "evaluate")}


def run_in_process(script: str, layout: Layout) -> tuple[int, str]:
    """Run <script>.main as SageMaker would, in this process; return the exit status and the failure file."""
    environ = layout.environ()
    status = run_entry(lambda: SCRIPTS[script].main(["--config", str(layout.config_path)], environ), environ)
    reason = layout.failure.read_text(encoding="utf-8") if layout.failure.exists() else ""
    return status, reason


def train_job(root: Path, base: Path, tokenizer, rows: list[dict[str, Any]] | None = None, **overrides: Any) -> Layout:
    layout = Layout(root)
    rows = rows if rows is not None else [tokenized_row(tokenizer, q, a) for q, a in FACTS]
    write_jsonl(layout.add_channel("train") / "train.jsonl", rows)
    layout.write_args(lora_args(base, **overrides))
    return layout


def assert_failed(status: int, reason: str, expected: str) -> None:
    assert status == 1
    assert reason.endswith("\n") and reason.count("\n") == 1  # one line
    assert expected in reason


def test_missing_train_channel(tmp_path: Path, base_model: Path) -> None:
    layout = Layout(tmp_path)
    layout.write_args(lora_args(base_model))
    assert_failed(*run_in_process("train", layout), "input channel `train` is missing (SM_CHANNEL_TRAIN)")
    assert not layout.checkpoint_dir.exists()


def test_malformed_args_yaml(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = train_job(tmp_path, base_model, tokenizer)
    layout.config_path.write_text("learning_rate: [0.1\nmax_steps: 3\n")
    assert_failed(*run_in_process("train", layout), "is not valid YAML")


def test_misspelt_key(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = train_job(tmp_path, base_model, tokenizer, per_device_batch_size=2)
    assert_failed(
        *run_in_process("train", layout),
        "unknown key(s) in args.yaml: `per_device_batch_size` (did you mean `per_device_eval_batch_size`?)",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_qlora_without_a_gpu(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = train_job(tmp_path, base_model, tokenizer, method="qlora")
    assert_failed(*run_in_process("train", layout), "QLoRA (load_in_4bit) needs a CUDA GPU")


def test_gpus_announced_but_absent(tmp_path: Path, base_model: Path, tokenizer, monkeypatch) -> None:
    layout = train_job(tmp_path, base_model, tokenizer)
    environ = {**layout.environ(), "SM_NUM_GPUS": "8"}
    monkeypatch.setattr(layout, "environ", lambda: environ)
    assert_failed(*run_in_process("train", layout), "SM_NUM_GPUS=8 but PyTorch sees no CUDA device")


def test_shifted_labels_in_the_data(tmp_path: Path, base_model: Path, tokenizer) -> None:
    rows = [tokenized_row(tokenizer, q, a) for q, a in FACTS]
    rows[1]["labels"] = [*rows[1]["labels"][1:], -100]  # a data step that shifted the labels itself
    layout = train_job(tmp_path, base_model, tokenizer, rows=rows)
    assert_failed(*run_in_process("train", layout), "train.jsonl line 2: labels[")


def test_use_cache_while_training(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = train_job(tmp_path, base_model, tokenizer, use_cache=True)
    assert_failed(*run_in_process("train", layout), "use_cache must be false while training")


def test_pad_token_that_is_the_end_of_turn_token(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = train_job(tmp_path, base_model, tokenizer, pad_token=EOT)
    assert_failed(*run_in_process("train", layout), "args.yaml `pad_token` '<|eot_id|>' is a stop token")


def test_the_exit_status_and_failure_file_of_a_real_process(tmp_path: Path, base_model: Path) -> None:
    layout = Layout(tmp_path)
    layout.write_args(lora_args(base_model))
    result = run_script("train.py", layout)
    assert result.returncode == 1
    assert (
        layout.failure.read_text() == "input channel `train` is missing (SM_CHANNEL_TRAIN); channels present: config\n"
    )
    assert "Traceback" not in result.stderr  # an input problem is reported, not dumped


def test_merge_without_an_adapter(tmp_path: Path, base_model: Path) -> None:
    layout = Layout(tmp_path)
    layout.write_args(lora_args(base_model))
    assert_failed(*run_in_process("merge", layout), "no adapter to merge: provide an `adapter` channel")


def test_merge_refuses_a_quantized_base(tmp_path: Path, base_model: Path) -> None:
    quantized = tmp_path / "base-bnb-4bit"
    shutil.copytree(base_model, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    layout = Layout(tmp_path / "job")
    (layout.add_channel("adapter") / "adapter_config.json").write_text("{}")
    layout.write_args(lora_args(quantized))
    assert_failed(*run_in_process("merge", layout), "is quantized; merge into its 16-bit checkpoint instead")


def test_evaluate_without_a_model(tmp_path: Path, tokenizer) -> None:
    layout = Layout(tmp_path)
    write_jsonl(layout.add_channel("test") / "test.jsonl", make_test_split(tokenizer))
    layout.write_args({"pad_token": "<|finetune_right_pad_id|>"})
    assert_failed(*run_in_process("evaluate", layout), "no model: set `model_name_or_path`")


def test_evaluate_choice_accuracy_needs_options(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = Layout(tmp_path)
    rows = [row for row in make_test_split(tokenizer) if "options" not in row]
    write_jsonl(layout.add_channel("test") / "test.jsonl", rows)
    layout.write_args(lora_args(base_model, metrics=["exact_match", "choice_accuracy"]))
    assert_failed(*run_in_process("evaluate", layout), "asks for choice_accuracy but no test row has `options`")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_fsdp_without_a_gpu(tmp_path: Path, base_model: Path, tokenizer) -> None:
    layout = train_job(tmp_path, base_model, tokenizer, fsdp="full_shard auto_wrap")
    assert_failed(*run_in_process("train", layout), "FSDP needs CUDA GPUs")
