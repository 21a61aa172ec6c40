"""Ties a locally run job to the `tunec run` that started it.

On SageMaker the container is the job's whole world. On the local target the entry script is a child process of
`tunec run`, in its own process group (so that a Ctrl-C in the terminal reaches tunec, which then asks the job to
stop with SIGTERM and train.py saves a checkpoint first). If tunec itself dies (SIGKILL, a closed terminal, an
out-of-memory kill, any signal) the job lives on as an orphan, still writing into the folder that the next
`tunec run` prepares for the same node. Three variables, set by the local target only, make the orphan stop as it
would on SIGTERM, saving what it has trained:

- TUNEC_PARENT_PID: a daemon thread checks twice a second that this process's parent is still that pid; when it is
  not, the job sends itself SIGTERM, which train.py handles by saving a checkpoint at the end of the current step
  and exiting (merge and evaluate have nothing to save and just end).
- TUNEC_JOB_LOG: the job's log file. The job's stdout and stderr are pipes that tunec reads; once tunec is gone, a
  write to them would fail (EPIPE: Python raises BrokenPipeError from the next progress bar update, and the job
  would die mid-step without saving anything). So the job keeps a read end of each pipe open for itself: with a
  reader left, a write never fails, and an unread pipe at worst fills and blocks a writer for the half second
  until the watcher notices. The watcher then points stdout and stderr at the log file, appends to it what tunec
  had not read, and closes the pipes; the job's last lines (the step it saved) end up in its log.
- TUNEC_JOB_LOCK: a file the job holds an exclusive flock on for its whole life. The next `tunec run` takes the same
  lock before it touches the node's folder, so it waits for an orphan to finish saving instead of racing it, however
  long the save takes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import threading
import time
from collections.abc import Mapping

POLL_SECONDS = 0.5
STD_FDS = (1, 2)

_held: list[int] = []


def hold_job_lock(path: str) -> None:
    """Take the job's lock for the life of this process (released by the kernel when it ends)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # named by tunec while it waits for this process
    _held.append(fd)


def keep_pipes_readable() -> dict[int, int]:
    """Open a read end of each standard stream that is a pipe: {stream fd: read end}, non-blocking.

    On Linux, opening /proc/self/fd/N of a pipe opens that same pipe, in the mode asked for. Elsewhere (no /proc)
    nothing is kept, and the watcher's redirect is the only protection.
    """
    readers: dict[int, int] = {}
    for fd in STD_FDS:
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                continue
            readers[fd] = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
    return readers


def _drain(reader: int, into: int) -> None:
    """Copy what is waiting in a pipe to `into` until the pipe is empty."""
    while True:
        try:
            chunk = os.read(reader, 65536)
        except BlockingIOError:
            return
        except OSError:
            return
        if not chunk:
            return
        try:
            os.write(into, chunk)
        except OSError:
            pass


def leave_pipes(readers: Mapping[int, int], log: str | None) -> None:
    """Point stdout and stderr at the log (or /dev/null), keep what tunec had not read, and close the pipes."""
    try:
        target = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log else None
    except OSError:
        target = None
    if target is None:
        target = os.open(os.devnull, os.O_WRONLY)
    # Writers from here on go to the log; one blocked on a full pipe is released by the drain.
    for fd in readers:
        os.dup2(target, fd)
    for _ in range(2):  # again after a moment, for a write that was blocked during the first pass
        for reader in readers.values():
            _drain(reader, target)
        time.sleep(0.05)
    for reader in readers.values():
        os.close(reader)
    os.close(target)


def orphaned(parent: int, readers: Mapping[int, int], log: str | None) -> None:
    """tunec is gone: keep the output, say so in the log, and stop as on SIGTERM."""
    leave_pipes(readers, log)
    message = f"tunec (pid {parent}) is gone: stopping as on SIGTERM (train.py saves a checkpoint first)\n"
    try:
        os.write(2, message.encode())
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _watch(parent: int, readers: Mapping[int, int], log: str | None) -> None:
    while True:
        if os.getppid() != parent:
            orphaned(parent, readers, log)
            return
        time.sleep(POLL_SECONDS)


def supervise(environ: Mapping[str, str]) -> None:
    """Apply TUNEC_PARENT_PID, TUNEC_JOB_LOG and TUNEC_JOB_LOCK when the local target set them; no-op otherwise.

    Under torchrun the ranks' parent is the launcher, which tunec started: the launcher is supervised, not
    the ranks (they would all wait for one exclusive lock, and none has tunec as its parent).
    """
    if "TORCHELASTIC_RUN_ID" in environ:
        return
    # The parent first: a job whose tunec died while it was still importing must stop before it takes the lock
    # (which a newer run's job may hold) or touches anything in the folder. It has trained nothing, so SIGTERM's
    # default action (no handler is installed yet) is the clean stop.
    parent = environ.get("TUNEC_PARENT_PID")
    if parent and parent.isdigit():
        log = environ.get("TUNEC_JOB_LOG") or None
        readers = keep_pipes_readable()
        if os.getppid() != int(parent):
            orphaned(int(parent), readers, log)
        threading.Thread(
            target=_watch, args=(int(parent), readers, log), name="tunec-parent-watch", daemon=True
        ).start()
    lock = environ.get("TUNEC_JOB_LOCK")
    if lock:
        hold_job_lock(lock)
