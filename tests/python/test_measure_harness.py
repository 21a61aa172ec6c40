"""The GPU measurement harness (tests/gpu/measure_memory.py), smoke-tested on the CPU.

On a GPU machine the harness measures peak memory; here it runs its whole path with a small model: a random
model of a catalog architecture on disk, `tunec check` for the estimate, `tunec build` for args.yaml, and the real
train.py for one step. The tunec binary comes from $TUNEC_BIN (set by .ci/run) or the repository's target folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tinyllm import REPO, tunec_binary


def test_the_harness_runs_train_py_and_reports_the_estimate(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = {**os.environ, "TUNEC_BIN": tunec_binary(), "TMPDIR": str(tmp_path)}
    harness = [sys.executable, str(REPO / "tests/gpu/measure_memory.py"), "--cpu", "--method", "lora"]
    done = subprocess.run(
        [*harness, "--seq", "32", "--steps", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["cpu_smoke_test"] is True
    terms = result["estimate"]["gpu_terms"]
    assert result["estimate"]["gpu_peak_bytes"] == sum(terms.values())
    assert {"weights", "activations", "CUDA context", "allocator slack"} <= set(terms)
    # Without CUDA nothing is measured, and the harness says so rather than inventing a figure.
    assert result["measured"] == {"max_memory_allocated": None, "max_memory_reserved": None}
    assert result["error_vs_reserved"] is None
