"""Resuming train.py: from the newest complete checkpoint after a kill, and after SIGTERM (spot reclaim)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import LoraRun, expect_ok, lora_args
from tinyllm import FACTS, Layout, run_script, start_script, tokenized_row, wait_for, write_jsonl


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_rerun_after_a_kill_continues_from_the_newest_complete_checkpoint(lora_run: LoraRun, tmp_path: Path) -> None:
    # The state a kill leaves behind while checkpoint-30 is being written: checkpoint-10 and -20 complete,
    # checkpoint-30 without its trainer_state.json (written last), no final adapter, no metrics.
    job = Layout(tmp_path / "train")
    shutil.copytree(lora_run.train.root / "input", job.root / "input")
    shutil.copytree(lora_run.train.checkpoint_dir, job.checkpoint_dir)
    (job.checkpoint_dir / "checkpoint-30" / "trainer_state.json").unlink()

    result = run_script("train.py", job)
    expect_ok(result)

    assert f"resuming from {job.checkpoint_dir / 'checkpoint-20'} (global step 20)" in result.stderr
    metrics = read_json(job.output_data_dir / "metrics.json")
    original = read_json(lora_run.train.output_data_dir / "metrics.json")
    assert (metrics["resumed_from_step"], metrics["global_step"], metrics["steps_this_run"]) == (20, 30, 10)
    # Same data order, optimizer state and RNG as the uninterrupted run: the same losses and the same adapter.
    assert [r["step"] for r in metrics["history"]] == [r["step"] for r in original["history"]]
    for resumed, uninterrupted in zip(metrics["history"], original["history"], strict=True):
        assert resumed["train_loss"] == pytest.approx(uninterrupted["train_loss"], rel=1e-5)
        assert resumed["eval_loss"] == pytest.approx(uninterrupted["eval_loss"], rel=1e-5)
    adapter = load_file(job.model_dir / "adapter_model.safetensors")
    reference = load_file(lora_run.train.model_dir / "adapter_model.safetensors")
    assert adapter.keys() == reference.keys()
    for key, tensor in adapter.items():
        torch.testing.assert_close(tensor, reference[key], rtol=1e-5, atol=1e-6)
    assert read_json(job.checkpoint_dir / "checkpoint-30" / "trainer_state.json")["global_step"] == 30


def test_rerun_after_the_last_checkpoint_trains_no_further_step(lora_run: LoraRun, tmp_path: Path) -> None:
    # A kill after the last step's checkpoint (global_step == max_steps) but before the final save: a rerun must
    # not train on (the Trainer, resumed there, would take one step more), it saves that checkpoint as the result.
    job = Layout(tmp_path / "train")
    shutil.copytree(lora_run.train.root / "input", job.root / "input")
    shutil.copytree(lora_run.train.checkpoint_dir, job.checkpoint_dir)
    last = max(job.checkpoint_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = read_json(last / "trainer_state.json")
    assert state["global_step"] == state["max_steps"], "the fixture's last checkpoint ends the training"

    result = run_script("train.py", job)
    expect_ok(result)

    assert "ends the training: it is saved as the result, with no further step" in result.stderr
    metrics = read_json(job.output_data_dir / "metrics.json")
    assert (metrics["resumed_from_step"], metrics["global_step"], metrics["steps_this_run"]) == (
        state["global_step"],
        state["global_step"],
        0,
    )
    assert sorted(p.name for p in job.checkpoint_dir.iterdir()) == sorted(
        p.name for p in lora_run.train.checkpoint_dir.iterdir()
    ), "no new checkpoint"
    adapter = load_file(job.model_dir / "adapter_model.safetensors")
    reference = load_file(lora_run.train.model_dir / "adapter_model.safetensors")
    assert adapter.keys() == reference.keys()
    for key, tensor in adapter.items():
        assert torch.equal(tensor, reference[key]), key
    original = read_json(lora_run.train.output_data_dir / "metrics.json")
    assert metrics["history"] == original["history"]
    assert metrics["final_train_loss"] == original["final_train_loss"]


def test_sigterm_saves_a_checkpoint_and_exits_143(base_model: Path, tokenizer, tmp_path: Path) -> None:
    job = Layout(tmp_path / "train")
    write_jsonl(job.add_channel("train") / "train.jsonl", [tokenized_row(tokenizer, q, a) for q, a in FACTS])
    job.write_args(lora_args(base_model, max_steps=400, save_steps=10, logging_steps=10, gradient_checkpointing=False))

    process = start_script("train.py", job)
    try:
        wait_for(job.checkpoint_dir / "checkpoint-10" / "trainer_state.json", process, timeout=300)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=300)
    finally:
        process.kill()

    assert process.returncode == 143, output[-4000:]
    steps = sorted(int(p.name.split("-")[1]) for p in job.checkpoint_dir.iterdir())
    last = steps[-1]
    assert 10 <= last < 400
    assert read_json(job.checkpoint_dir / f"checkpoint-{last}" / "trainer_state.json")["global_step"] == last
    assert f"stopped by SIGTERM after step {last}" in output
    assert not (job.model_dir / "adapter_model.safetensors").exists()  # not a finished model
    assert not job.failure.exists()  # an interruption is not a failure
