"""A caller of the `tunec` module as a notebook or pipeline would write one, type-checked by the
wheel's tests with `mypy --strict`: the documents' keys and value types are known to the checker."""

from __future__ import annotations

import tunec


def error_lines(path: str) -> list[str]:
    result: tunec.CheckResult = tunec.check(path, params={"lr": 1e-4, "epochs": 3, "name": '"run-2"', "x": True})
    return [
        f"{d['file']}:{d['span']['line']}:{d['span']['column']}: {d['code']}: {d['help'] or d['message']}"
        for d in result["diagnostics"]
        if d["severity"] == "error"
    ]


def gpu_headroom_gib(path: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for node in tunec.check(path)["nodes"]:
        estimate = node["estimate"]
        if estimate is not None:
            out[node["name"]] = (estimate["gpu_capacity_bytes"] - estimate["gpu_peak_bytes"]) / 2**30
    return out


def job_names(path: str) -> list[str]:
    try:
        graph = tunec.plan(path)
    except tunec.PipelineError as e:
        raise SystemExit("\n".join(d["message"] for d in e.diagnostics)) from e
    total = graph["total"]
    cost = total["usd"] if total is not None else 0.0
    return [f"{n['job_name']} (${cost:.2f})" for n in graph["nodes"] if n["job_name"] is not None]


def built_from() -> str:
    info = tunec.version()
    return f"{tunec.__version__} {info.commit or 'unknown'}{' debug' if info.debug else ''}"
