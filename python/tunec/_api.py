"""`check`, `plan` and `version`: the binary's JSON contract as Python values.

Each call runs the binary once with `--format json` and `--color never`, in the caller's working
folder, and parses what it prints. Exit codes map to results and exceptions the way the command line
documents them (docs/cli.md): 0 and 1 are answers (1: the pipeline has errors), 2 is a usage or IO
error, anything else is the binary failing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

from tunec._binary import find_binary
from tunec._types import CheckResult, Diagnostic, PlanResult

PathLike = str | os.PathLike[str]
"""A path: a `str` or a `pathlib.Path`."""
ParamValue = str | int | float | bool
"""The value of a `params` entry (see `check()`)."""


class TunecError(Exception):
    """The binary could not answer: a usage or IO error (exit code 2), a crash, or (the subclass
    `PipelineError`) a pipeline with errors where a plan was asked for.

    `returncode` and `stderr` are the binary's; the message is its last line of stderr.
    """

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


class PipelineError(TunecError):
    """The pipeline has errors, so it has no plan. `result` is its `check()` result, whose
    `diagnostics` say what to fix; the message lists the errors as `file:line:column: code: message`,
    and `stderr` has them drawn as the command line draws them."""

    def __init__(self, result: CheckResult, stderr: str) -> None:
        self.result = result
        errors = [d for d in result["diagnostics"] if d["severity"] == "error"]
        lines = [_one_line(d) for d in errors]
        heading = f"{result['file']}: {len(errors)} error{'s' if len(errors) != 1 else ''}"
        super().__init__("\n".join([heading, *lines]), 1, stderr)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Every diagnostic of the pipeline (errors and warnings), sorted by position."""
        return self.result["diagnostics"]


class Version(NamedTuple):
    """What `tunec --version` says about the binary: its version, the commit it was built from (12
    hex digits, or `None` when unknown) and that commit's date (`YYYY-MM-DD`), and whether it is a
    debug build."""

    version: str
    commit: str | None
    date: str | None
    debug: bool


def _one_line(d: Diagnostic) -> str:
    span = d["span"]
    return f"{d['file']}:{span['line']}:{span['column']}: {d['code']}: {d['message']}"


def _argument(name: str, value: ParamValue) -> str:
    if not name or "=" in name:
        raise ValueError(f"{name!r} is not a parameter name")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"the value of {name!r} is a {type(value).__name__}: give a str, int, float or bool")
    return f"--set={name}={text}"


def _run(arguments: Sequence[str], binary: PathLike | None) -> subprocess.CompletedProcess[str]:
    exe = os.fspath(binary) if binary is not None else find_binary()
    return subprocess.run(
        [exe, *arguments],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def _failure(done: subprocess.CompletedProcess[str]) -> TunecError:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else f"tunec exited with code {done.returncode} and printed nothing"
    return TunecError(last.removeprefix("tunec: "), done.returncode, done.stderr)


def _compile_args(command: str, path: PathLike, params: Mapping[str, ParamValue] | None) -> list[str]:
    sets = [_argument(name, value) for name, value in (params or {}).items()]
    return [command, "--format", "json", "--color", "never", *sets, "--", os.fspath(path)]


def _document(done: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise TunecError(f"tunec printed no JSON document ({e})", done.returncode, done.stderr) from e


def check(
    path: PathLike,
    *,
    params: Mapping[str, ParamValue] | None = None,
    binary: PathLike | None = None,
) -> CheckResult:
    """Check a pipeline as `tunec check --format json PATH` does, and return its document.

    A pipeline with errors is an answer, not an exception: look at `result["summary"]["errors"]`
    and `result["diagnostics"]`. `params` overrides the file's `param`s like `--set NAME=VALUE`:
    ints, floats and bools are written as the language writes them, and a `str` is passed as written,
    in the language's syntax (`'"run-2"'` for a string, `"5h"` for a duration, `"$150"` for money).
    `binary` is the tunec to run instead of the one installed with this package.

    Raises `TunecError` when the file cannot be read or an argument is wrong (exit code 2).
    """
    done = _run(_compile_args("check", path, params), binary)
    if done.returncode not in (0, 1):
        raise _failure(done)
    return cast(CheckResult, _document(done))


def plan(
    path: PathLike,
    *,
    params: Mapping[str, ParamValue] | None = None,
    binary: PathLike | None = None,
) -> PlanResult:
    """Lower a pipeline as `tunec plan --format json PATH` does, and return the job graph: every
    node in order with its content key, SageMaker job name, estimate and what a run would do.

    Raises `PipelineError` (with the `check()` result) when the pipeline has errors, and
    `TunecError` when the file cannot be read or an argument is wrong. `params` and `binary` are
    as for `check()`.
    """
    done = _run(_compile_args("plan", path, params), binary)
    if done.returncode == 1:
        raise PipelineError(check(path, params=params, binary=binary), done.stderr)
    if done.returncode != 0:
        raise _failure(done)
    return cast(PlanResult, _document(done))


_VERSION = re.compile(r"^tunec (\S+) \((?:unknown commit|([0-9a-f]+) (\d{4}-\d{2}-\d{2}))(, debug build)?\)$")


def version(*, binary: PathLike | None = None) -> Version:
    """The version, commit and commit date of the binary, from `tunec --version`."""
    done = _run(["--version"], binary)
    line = done.stdout.strip()
    found = _VERSION.match(line)
    if done.returncode != 0 or found is None:
        raise TunecError(f"unexpected `tunec --version` output: {line!r}", done.returncode, done.stderr)
    return Version(found.group(1), found.group(2), found.group(3), found.group(4) is not None)
