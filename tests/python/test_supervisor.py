"""A locally run job is tied to the `tunec run` that started it (tunec_entry/supervisor.py).

The end-to-end behaviour (tunec killed with SIGKILL, its job stops and the next run waits for it) is tested from
Rust in tests/interrupt.rs; these tests pin the two mechanisms themselves in a child Python process.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STDLIB = Path(__file__).resolve().parents[2] / "stdlib" / "python"


def child(code: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "PYTHONPATH": str(STDLIB), **env}
    return subprocess.Popen([sys.executable, "-c", code], env=environ)


SUPERVISED = "import os, time; from tunec_entry.supervisor import supervise; supervise(os.environ); time.sleep(30)"


def test_a_job_whose_parent_is_not_tunec_stops_itself_with_sigterm() -> None:
    # The parent is this test, not pid 1: as when tunec died and the job was adopted.
    process = child(SUPERVISED, {"TUNEC_PARENT_PID": "1"})
    assert process.wait(timeout=20) == -signal.SIGTERM


def test_a_job_with_its_parent_alive_keeps_running() -> None:
    process = child(SUPERVISED, {"TUNEC_PARENT_PID": str(os.getpid())})
    try:
        time.sleep(1.5)  # three polls of the watcher
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_the_job_lock_is_held_for_the_life_of_the_job(tmp_path: Path) -> None:
    lock = tmp_path / ".job.lock"
    process = child(SUPERVISED, {"TUNEC_JOB_LOCK": str(lock), "TUNEC_PARENT_PID": str(os.getpid())})
    try:
        deadline = time.monotonic() + 20
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        with lock.open("r") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = False
            except BlockingIOError:
                held = True
        assert held, "the job holds its lock while it runs"
    finally:
        process.kill()
        process.wait()
    with lock.open("r") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the process ended


def test_under_torchrun_the_ranks_are_not_supervised(tmp_path: Path) -> None:
    lock = tmp_path / ".job.lock"
    process = child(SUPERVISED, {"TUNEC_PARENT_PID": "1", "TUNEC_JOB_LOCK": str(lock), "TORCHELASTIC_RUN_ID": "x"})
    try:
        time.sleep(1.5)
        assert process.poll() is None and not lock.exists()
    finally:
        process.kill()
        process.wait()
