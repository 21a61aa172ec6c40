"""metrics.json: what a training run measured.

The Trainer's log history has one entry per logging step (loss, learning_rate, grad_norm, epoch), one per
evaluation (eval_loss, ...) and a closing summary. `build_metrics` folds them into one record per step, adds the
run's token throughput and measured peak memory, and is a pure function of its inputs so that it is tested on a
hand-made history. After a resume the history holds the steps restored from the checkpoint too, while the token and
time figures cover this run only (`resumed_from_step` says where it started).
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from typing import Any

import torch

SCHEMA = "tunec.train-metrics/1"
TRAIN_KEYS = {"loss": "train_loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm", "epoch": "epoch"}


@dataclass(frozen=True)
class RunSummary:
    """The figures of one train.py run besides the log history."""

    method: str
    global_step: int
    resumed_from_step: int | None
    train_runtime_s: float
    train_tokens: int
    peak_gpu_memory_bytes: int | None
    peak_gpu_memory_reserved_bytes: int | None
    peak_host_memory_bytes: int
    trainable_parameters: int
    total_parameters: int
    world_size: int
    num_gpus: int | None
    instance_type: str | None
    num_hosts: int


def step_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per logged step, ordered by step: train_loss, learning_rate, grad_norm, epoch, eval_loss."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        record = by_step.setdefault(step, {"step": step})
        if "loss" in entry:
            record.update({name: entry[key] for key, name in TRAIN_KEYS.items() if key in entry})
        if "eval_loss" in entry:
            record["eval_loss"] = entry["eval_loss"]
            record.setdefault("epoch", entry.get("epoch"))
    return [by_step[step] for step in sorted(by_step) if len(by_step[step]) > 1]


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [record[key] for record in history if key in record]
    return values[-1] if values else None


def build_metrics(log_history: list[dict[str, Any]], run: RunSummary) -> dict[str, Any]:
    history = step_history(log_history)
    started_at = run.resumed_from_step or 0
    return {
        "schema": SCHEMA,
        "method": run.method,
        "global_step": run.global_step,
        "resumed_from_step": run.resumed_from_step,
        "steps_this_run": run.global_step - started_at,
        "train_runtime_s": run.train_runtime_s,
        "train_tokens": run.train_tokens,
        "tokens_per_second": run.train_tokens / run.train_runtime_s if run.train_runtime_s > 0 else None,
        "peak_gpu_memory_bytes": run.peak_gpu_memory_bytes,
        "peak_gpu_memory_reserved_bytes": run.peak_gpu_memory_reserved_bytes,
        "peak_host_memory_bytes": run.peak_host_memory_bytes,
        "final_train_loss": _last(history, "train_loss"),
        "final_eval_loss": _last(history, "eval_loss"),
        "trainable_parameters": run.trainable_parameters,
        "total_parameters": run.total_parameters,
        "world_size": run.world_size,
        "num_gpus": run.num_gpus,
        "instance_type": run.instance_type,
        "num_hosts": run.num_hosts,
        "history": history,
    }


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest `value` of all ranks under torchrun; `value` itself in a single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


def sum_over_ranks(value: int, device: torch.device) -> int:
    """The sum of `value` over all ranks under torchrun; `value` itself in a single process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return int(tensor.item())


def peak_gpu_memory(device: torch.device) -> tuple[int | None, int | None]:
    """torch.cuda max_memory_allocated / max_memory_reserved, the largest over all ranks; None without CUDA."""
    if not torch.cuda.is_available():
        return None, None
    allocated = max_over_ranks(torch.cuda.max_memory_allocated(), device)
    reserved = max_over_ranks(torch.cuda.max_memory_reserved(), device)
    return allocated, reserved


def peak_host_memory_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
