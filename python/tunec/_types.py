"""The JSON documents of `tunec check --format json` and `tunec plan --format json`, version 1, as
`TypedDict`s: what `tunec.check()` and `tunec.plan()` return.

docs/cli.md describes every field; these types follow it key for key, and the wheel's tests check
them against the documents that the binary prints for every example and test fixture. Within a
version fields are only added, never removed or changed.
"""

from __future__ import annotations

from typing import Literal, TypedDict

Severity = Literal["error", "warning"]
"""A diagnostic's severity."""

Execution = Literal["model reference", "local data step", "SageMaker training job", "local script"]
"""How a node of the job graph is carried out."""

Action = Literal["run", "reuse", "check", "may run"]
"""What `tunec run` would do with a node, read from the state journal."""


class Span(TypedDict):
    """A range of the file: byte offsets (UTF-8, half-open) and 1-based lines and columns (columns
    count Unicode scalar values) of both ends."""

    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int


class NodeSpan(TypedDict):
    """A node declaration's byte range, and the line and column of its name."""

    start: int
    end: int
    line: int
    column: int


class Label(TypedDict):
    """A labelled span of a diagnostic: the primary one, or a secondary one."""

    message: str
    primary: bool
    span: Span


class Diagnostic(TypedDict):
    """One problem, with a stable code (`tunec::<stage>::<name>`) and its fix."""

    code: str
    severity: Severity
    message: str
    file: str
    """The file the span points into: the pipeline, or `<--set NAME>` for an override's value."""
    span: Span
    labels: list[Label]
    help: str | None
    docs: str
    """The code's page, `docs/errors/<name>.md`; `tunec explain <name>` prints it."""


class Summary(TypedDict):
    errors: int
    warnings: int


class Estimate(TypedDict):
    """A job's estimated peaks (bytes), disk, tokens, time and cost; each `*_terms` maps the terms
    of a figure, in the order the model adds them, to their bytes."""

    instance: str
    instance_count: int
    gpu_peak_bytes: int
    gpu_capacity_bytes: int
    gpu_terms: dict[str, int]
    host_peak_bytes: int
    host_capacity_bytes: int
    host_terms: dict[str, int]
    disk_bytes: int
    disk_terms: dict[str, int]
    tokens: int | None
    trained_tokens: int | None
    token_source: str | None
    hours: float | None
    usd: float | None
    spot: bool
    padding_factor: float | None
    """A train job without packing: token positions computed per real token (the data profile's padding)."""
    packing_saves_hours: float | None
    packing_saves_usd: float | None
    calibration: dict[str, object] | None
    """The calibration applied (`gpu`, `family`, `memory_factor`, `hours_factor`), from tunec.calibration.json."""


class Total(TypedDict):
    """Sums over the jobs that have a time and a cost; `complete` says whether every job has one."""

    hours: float
    usd: float
    complete: bool


class Node(TypedDict):
    """A typed node of the pipeline."""

    name: str
    kind: str
    function: str
    type: str
    """The output type: `Model<base>`, `Dataset<col: type, ...>`, `Chat<tokenizer>`, ..."""
    inputs: list[str]
    span: NodeSpan
    estimate: Estimate | None


class CheckResult(TypedDict):
    """`tunec check --format json`: every diagnostic, the typed nodes in dependency order with their
    estimates, and the total. `pipeline`, `target` and `total` are `None` when the file did not parse."""

    version: int
    file: str
    pipeline: str | None
    target: str | None
    summary: Summary
    diagnostics: list[Diagnostic]
    nodes: list[Node]
    total: Total | None


class PlanNode(TypedDict):
    """A node of the lowered job graph."""

    name: str
    kind: str
    key: str
    """The content key, 64 hex digits."""
    deps: list[str]
    execution: Execution
    job_name: str | None
    estimate: Estimate | None
    action: Action
    reason: str


class PlanResult(TypedDict):
    """`tunec plan --format json`: the job graph in order, with keys, job names and estimates."""

    version: int
    pipeline: str
    target: str
    bundle_digest: str
    env: list[str]
    """The environment variables the graph reads at run time, sorted."""
    nodes: list[PlanNode]
    total: Total | None
