"""usage.json: what a job used, for the ledger that compares tunec's estimate with what ran.

train.py, merge.py and evaluate.py each write one `usage.json` (schema `tunec.usage/1`) in SM_OUTPUT_DATA_DIR:
the script's wall time, the mean optimizer step time (train.py), the tokens it processed and their rate, and one
record per rank with that rank's peak host memory (ru_maxrss) and, on CUDA, its peak allocated and reserved memory
(torch.cuda.max_memory_allocated / max_memory_reserved) and the device's peak total use as the CUDA driver reports
it (cudaMemGetInfo through torch.cuda.mem_get_info, sampled at the end of every optimizer step and at the end of
the job; it counts every process on the device, the CUDA context included). On CPU the GPU keys are absent: a
figure that was not measured is never written. The file sits with the job's other outputs for people, which no
dependent reads, so a rerun whose figures differ reruns nothing after it. docs/estimator.md describes the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from tunec_entry.jobenv import write_json
from tunec_entry.trainlog import peak_host_memory_bytes

SCHEMA = "tunec.usage/1"
USAGE_FILE = "usage.json"


def device_used_bytes() -> int | None:
    """The device's memory in use by every process (total minus free, from the CUDA driver); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return int(total - free)


class UsageMeter(TrainerCallback):
    """Measures one job from its creation to `finish`; as a Trainer callback it also times the optimizer steps."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.started = time.perf_counter()
        self.step_started: float | None = None
        self.step_seconds: list[float] = []
        self.device_peak = device_used_bytes()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def _sample_device(self) -> None:
        used = device_used_bytes()
        if used is not None:
            self.device_peak = max(self.device_peak or 0, used)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step_started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.step_started is not None:
            self.step_seconds.append(time.perf_counter() - self.step_started)
            self.step_started = None
        self._sample_device()

    def rank_record(self, rank: int) -> dict[str, Any]:
        """This process's figures; the GPU ones only where CUDA measured them."""
        self._sample_device()
        record: dict[str, Any] = {"rank": rank, "host_peak_bytes": peak_host_memory_bytes()}
        if torch.cuda.is_available():
            record["gpu_allocated_peak_bytes"] = int(torch.cuda.max_memory_allocated())
            record["gpu_reserved_peak_bytes"] = int(torch.cuda.max_memory_reserved())
            record["device_used_peak_bytes"] = self.device_peak
            record["device"] = torch.cuda.get_device_name()
        return record

    def finish(self, tokens: int | None = None, tokens_seconds: float | None = None) -> dict[str, Any] | None:
        """The usage record, gathered from every rank; None on ranks other than 0 (only rank 0 writes it).

        `tokens` were processed in `tokens_seconds` (default: the whole wall time) and give the rate.
        """
        wall = time.perf_counter() - self.started
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        mine = self.rank_record(rank)
        if distributed:
            ranks: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(ranks, mine)
        else:
            ranks = [mine]
        if rank != 0:
            return None
        return build_usage(self.script, wall, self.step_seconds, tokens, tokens_seconds, ranks)

    def write(self, output_dir: Path, tokens: int | None = None, tokens_seconds: float | None = None) -> None:
        usage = self.finish(tokens, tokens_seconds)
        if usage is not None:
            write_json(output_dir / USAGE_FILE, usage)


def build_usage(
    script: str,
    wall_seconds: float,
    step_seconds: list[float],
    tokens: int | None,
    tokens_seconds: float | None,
    ranks: list[dict[str, Any]],
) -> dict[str, Any]:
    """The usage.json record: a pure function of what was measured, so that it is tested on made-up figures."""
    seconds = tokens_seconds if tokens_seconds is not None else wall_seconds
    usage: dict[str, Any] = {
        "schema": SCHEMA,
        "script": script,
        "wall_seconds": wall_seconds,
        "ranks": sorted(ranks, key=lambda r: r["rank"]),
        "host_peak_bytes": max(r["host_peak_bytes"] for r in ranks),
    }
    if step_seconds:
        usage["steps"] = len(step_seconds)
        usage["step_seconds"] = sum(step_seconds) / len(step_seconds)
    if tokens is not None:
        usage["tokens"] = tokens
        if seconds > 0:
            usage["tokens_per_second"] = tokens / seconds
    for key in ("gpu_allocated_peak_bytes", "gpu_reserved_peak_bytes", "device_used_peak_bytes"):
        values = [r[key] for r in ranks if r.get(key) is not None]
        if values:
            usage[key] = max(values)
    return usage
