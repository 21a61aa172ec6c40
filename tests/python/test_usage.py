"""usage.json's record from made-up per-rank figures: the job's figures are the largest over its ranks."""

from __future__ import annotations

import pytest

from tunec_entry.usage import SCHEMA, build_usage


def test_the_largest_rank_is_the_jobs_peak_and_absent_gpu_figures_stay_absent() -> None:
    ranks = [
        {"rank": 1, "host_peak_bytes": 30, "gpu_allocated_peak_bytes": 70, "gpu_reserved_peak_bytes": 90},
        {"rank": 0, "host_peak_bytes": 50, "gpu_allocated_peak_bytes": 60, "gpu_reserved_peak_bytes": 95},
    ]
    usage = build_usage("train", 100.0, [2.0, 4.0], 900, 90.0, ranks)
    assert usage["schema"] == SCHEMA
    assert [r["rank"] for r in usage["ranks"]] == [0, 1]
    assert (usage["host_peak_bytes"], usage["gpu_allocated_peak_bytes"], usage["gpu_reserved_peak_bytes"]) == (
        50,
        70,
        95,
    )
    assert "device_used_peak_bytes" not in usage  # no rank measured it
    assert (usage["steps"], usage["step_seconds"]) == (2, 3.0)
    assert usage["tokens_per_second"] == pytest.approx(10.0)


def test_a_job_without_steps_or_tokens_has_neither() -> None:
    usage = build_usage("merge", 5.0, [], None, None, [{"rank": 0, "host_peak_bytes": 7}])
    assert set(usage) == {"schema", "script", "wall_seconds", "ranks", "host_peak_bytes"}
