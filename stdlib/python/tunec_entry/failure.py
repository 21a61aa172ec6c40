"""Failure reporting the way SageMaker expects it.

SageMaker copies the first 1024 characters of /opt/ml/output/failure into the job's FailureReason, and the tunec
runtime reads the same file on the local target. Every entry script therefore runs its `main` through `run_entry`:
an exception becomes one line in that file and exit status 1. `EntryError` marks the problems of the job's own
inputs (a missing channel, a malformed args.yaml, a bad dataset row); their message is the reason as it stands.
Any other exception is reported as `TypeName: message` and its traceback goes to stderr (the job log).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("tunec")

FAILURE_REASON_LIMIT = 1024
"""SageMaker keeps this many characters of the failure file."""

EXIT_FAILED = 1
EXIT_INTERRUPTED = 143
"""128 + SIGTERM: training stopped on request after saving a checkpoint (spot reclaim, StopTrainingJob)."""


class EntryError(Exception):
    """A problem with the job's inputs or configuration; its message is the whole failure reason."""


def failure_path(environ: Mapping[str, str]) -> Path:
    """SM_OUTPUT_FAILURE, else $SM_OUTPUT_DIR/failure, else /opt/ml/output/failure."""
    if environ.get("SM_OUTPUT_FAILURE"):
        return Path(environ["SM_OUTPUT_FAILURE"])
    return Path(environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"


def failure_reason(exc: BaseException) -> str:
    """One line, at most FAILURE_REASON_LIMIT characters."""
    message = " ".join(str(exc).split())
    if isinstance(exc, EntryError):
        reason = message or "invalid input"
    else:
        reason = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return reason[:FAILURE_REASON_LIMIT]


def is_rank_zero(environ: Mapping[str, str]) -> bool:
    """True in a single process and on global rank 0 under torchrun."""
    return environ.get("RANK", "0") == "0"


def write_failure(path: Path, reason: str) -> None:
    """Write the reason unless another rank already did: the first failure is usually the cause."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as f:
            f.write(reason + "\n")
    except FileExistsError:
        pass
    except OSError as err:  # nowhere to write: the log still has the reason
        log.error("could not write the failure file %s: %s", path, err)


def configure_logging() -> None:
    """Log lines with a timestamp and the process rank, to stderr (the job log)."""
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [rank {rank}] %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def run_entry(main: Callable[[], int], environ: Mapping[str, str]) -> int:
    """Run `main`, turning an exception into the failure file and exit status 1.

    A stale failure file from an earlier attempt in the same folder (the local target re-runs a node in place) is
    removed first, by rank 0 only. A Hub token kept in Secrets Manager is read before `main` (tunec_entry.secrets), so
    that a job that cannot read it fails at once, with the reason in the failure file.
    """
    from tunec_entry.secrets import load_hub_token
    from tunec_entry.supervisor import supervise

    supervise(environ)  # first: a job that outlived its local tunec stops before it touches anything
    path = failure_path(environ)
    if is_rank_zero(environ):
        path.unlink(missing_ok=True)
    try:
        secret = load_hub_token(environ)
        if secret is not None:
            configure_logging()  # the scripts' own call in `main` then changes nothing
            log.info("read the Hub token from Secrets Manager (%s)", secret)
        return main()
    except Exception as exc:  # every failure must reach the failure file
        reason = failure_reason(exc)
        if not isinstance(exc, EntryError):
            traceback.print_exc(file=sys.stderr)
        log.error("%s", reason)
        write_failure(path, reason)
        return EXIT_FAILED
