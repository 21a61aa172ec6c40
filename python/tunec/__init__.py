"""tunec from Python: check and plan LLM fine-tuning pipelines (`.tune` files) in notebooks and
Python pipelines, with the binary's JSON contract as typed dictionaries.

    >>> import tunec
    >>> result = tunec.check("examples/medreason/medreason.tune")
    >>> result["summary"]["errors"], [n["name"] for n in result["nodes"]]
    (0, ['llama', 'raw', 'convo', 'parts', 'sft', 'merged', 'report'])
    >>> graph = tunec.plan("examples/medreason/medreason.tune")
    >>> [n["job_name"] is not None for n in graph["nodes"]]
    [False, False, False, False, True, True, True]

`check()` returns the document of `tunec check --format json` (errors included: they are in
`diagnostics`); `plan()` returns that of `tunec plan --format json`, or raises `PipelineError` when
the pipeline has errors. Both run the `tunec` binary installed with this package (`find_binary()`),
which is also what `python -m tunec` and the `tunec` command run. docs/python.md describes the module.
"""

from __future__ import annotations

from tunec._api import PipelineError, TunecError, Version, check, plan, version
from tunec._binary import find_binary
from tunec._types import (
    Action,
    CheckResult,
    Diagnostic,
    Estimate,
    Execution,
    Label,
    Node,
    NodeSpan,
    PlanNode,
    PlanResult,
    Severity,
    Span,
    Summary,
    Total,
)

__version__: str  # declared for type checkers; the value comes from __getattr__ on first use


def __getattr__(name: str) -> str:
    """`__version__`: the installed package's version, which is the binary's crate version
    (`tunec.version()` adds the commit). Read on first use: importlib.metadata costs more to import
    than the rest of the module."""
    if name != "__version__":
        raise AttributeError(f"module 'tunec' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        value = distribution_version("tunec")
    except PackageNotFoundError:  # imported from a source checkout, not installed
        value = "0+unknown"
    globals()["__version__"] = value
    return value


__all__ = [
    "Action",
    "CheckResult",
    "Diagnostic",
    "Estimate",
    "Execution",
    "Label",
    "Node",
    "NodeSpan",
    "PipelineError",
    "PlanNode",
    "PlanResult",
    "Severity",
    "Span",
    "Summary",
    "Total",
    "TunecError",
    "Version",
    "__version__",
    "check",
    "find_binary",
    "plan",
    "version",
]
