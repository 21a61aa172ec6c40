"""Ties a locally run job to the `tunec run` that started it.

On SageMaker the container is the job's whole world. On the local target the entry script is a child process of
`tunec run`, in its own process group (so that a Ctrl-C in the terminal reaches tunec, which then asks the job to
stop with SIGTERM and train.py saves a checkpoint first). If tunec itself is killed (SIGKILL, a closed terminal, an
out-of-memory kill) the job would live on as an orphan, still writing into the folder that the next `tunec run`
prepares for the same node. Two variables, set by the local target only, prevent that:

- TUNEC_PARENT_PID: a daemon thread checks twice a second that this process's parent is still that pid; when it is
  not, the job sends itself SIGTERM, which train.py handles by saving a checkpoint and exiting (merge and evaluate
  just end).
- TUNEC_JOB_LOCK: a file the job holds an exclusive flock on for its whole life. The next `tunec run` takes the same
  lock before it touches the node's folder, so it waits for an orphan to finish stopping instead of racing it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Mapping

POLL_SECONDS = 0.5

_held: list[int] = []


def hold_job_lock(path: str) -> None:
    """Take the job's lock for the life of this process (released by the kernel when it ends)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # named by tunec while it waits for this process
    _held.append(fd)


def _watch(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(POLL_SECONDS)


def supervise(environ: Mapping[str, str]) -> None:
    """Apply TUNEC_JOB_LOCK and TUNEC_PARENT_PID when the local target set them; no-op otherwise.

    Under torchrun the ranks' parent is the launcher, which tunec started: the launcher is supervised, not
    the ranks (they would all wait for one exclusive lock, and none has tunec as its parent).
    """
    if "TORCHELASTIC_RUN_ID" in environ:
        return
    # The parent first: a job whose tunec died while it was still importing must stop before it takes the lock
    # (which a newer run's job may hold) or touches anything in the folder.
    parent = environ.get("TUNEC_PARENT_PID")
    if parent and parent.isdigit():
        if os.getppid() != int(parent):
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=_watch, args=(int(parent),), name="tunec-parent-watch", daemon=True).start()
    lock = environ.get("TUNEC_JOB_LOCK")
    if lock:
        hold_job_lock(lock)
