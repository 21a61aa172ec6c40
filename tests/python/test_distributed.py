"""train.py under torchrun: two CPU processes with DDP (gloo), as SageMaker's Torchrun driver launches it per GPU.

FSDP itself needs CUDA devices (accelerate refuses it on the CPU); what is tested here is the multi-process part of
train.py: token counts summed over ranks, one writer of the outputs, and SIGTERM agreed on by every rank.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from conftest import expect_ok, lora_args
from tinyllm import FACTS, Layout, run_script, start_script, tokenized_row, wait_for, write_jsonl
from tunec_entry.artifacts import check_adapter_shapes


def ddp_job(root: Path, base: Path, tokenizer, **overrides) -> Layout:
    job = Layout(root)
    write_jsonl(job.add_channel("train") / "train.jsonl", [tokenized_row(tokenizer, q, a) for q, a in FACTS])
    job.write_args(lora_args(base, per_device_train_batch_size=1, gradient_checkpointing=False, **overrides))
    return job


def test_two_processes_sum_their_tokens_and_save_once(tmp_path: Path, base_model: Path, tokenizer) -> None:
    job = ddp_job(tmp_path, base_model, tokenizer, max_steps=6, save_steps=3, logging_steps=3)
    expect_ok(run_script("train.py", job, nproc=2))
    metrics = json.loads((job.output_data_dir / "metrics.json").read_text())
    tokens_per_epoch = sum(len(tokenized_row(tokenizer, q, a)["input_ids"]) for q, a in FACTS)
    # 6 steps x 2 ranks x 1 row = 12 rows = 2 epochs; each rank counts its own rows, rank 0 reports the sum.
    assert (metrics["world_size"], metrics["global_step"]) == (2, 6)
    assert metrics["train_tokens"] == 2 * tokens_per_epoch
    assert check_adapter_shapes(job.model_dir / "adapter_model.safetensors", r=8) == 28


def test_sigterm_stops_every_rank_at_the_same_step(tmp_path: Path, base_model: Path, tokenizer) -> None:
    job = ddp_job(tmp_path, base_model, tokenizer, max_steps=400, save_steps=10, logging_steps=10)
    process = start_script("train.py", job, nproc=2)
    try:
        wait_for(job.checkpoint_dir / "checkpoint-10" / "trainer_state.json", process, timeout=300)
        process.send_signal(signal.SIGTERM)  # torchrun forwards it to both workers
        output, _ = process.communicate(timeout=300)
    finally:
        process.kill()
    stops = re.findall(r"\[rank (\d)\] tunec WARNING: stopped by SIGTERM after step (\d+)", output)
    assert sorted(rank for rank, _ in stops) == ["0", "1"], output[-4000:]
    steps = {int(step) for _, step in stops}
    assert len(steps) == 1  # both ranks saved the same step, as FSDP's collective save needs
    step = steps.pop()
    state = json.loads((job.checkpoint_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
    assert state["global_step"] == step
    assert not (job.model_dir / "adapter_model.safetensors").exists()
