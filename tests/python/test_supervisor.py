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


# A job as train.py is one: SIGTERM asks it to stop at the end of its current step, and it says what it saved.
STEPPING = """
import os, signal, sys, time
from tunec_entry.supervisor import supervise
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
supervise(os.environ)
step = 0
while not stopping:
    step += 1
    print(f"step {step}", flush=True)
    sys.stderr.write(f"progress {step}\\r")
    sys.stderr.flush()
    time.sleep(0.01)
print(f"saved the checkpoint of step {step}", flush=True)
"""

# `tunec run`: starts the job with its output piped to itself, reads a little of it, and is then killed.
TUNEC = """
import os, subprocess, sys, time
env = {**os.environ, "TUNEC_PARENT_PID": str(os.getpid())}
job = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
print(job.pid, flush=True)
job.stdout.readline()
time.sleep(60)
"""


def test_a_job_whose_tunec_is_killed_keeps_writing_to_its_log_and_stops_as_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "sft.log"
    log.write_text("== tunec: the lines it read\n")
    tunec = subprocess.Popen(
        [sys.executable, "-c", TUNEC, STEPPING],
        env={**os.environ, "PYTHONPATH": str(STDLIB), "TUNEC_JOB_LOG": str(log)},
        stdout=subprocess.PIPE,
    )
    assert tunec.stdout is not None
    job = int(tunec.stdout.readline())
    time.sleep(0.5)
    tunec.kill()  # SIGKILL: the pipes lose their reader, the job its parent
    tunec.wait()
    deadline = time.monotonic() + 20
    while "saved the checkpoint" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert text.startswith("== tunec: the lines it read\n"), "appended, not replaced"
    assert f"tunec (pid {tunec.pid}) is gone: stopping as on SIGTERM" in text
    # Without a reader the job's next print would have raised BrokenPipeError and nothing would be saved.
    saved = [line for line in text.splitlines() if line.startswith("saved the checkpoint of step ")]
    assert saved, text
    assert "progress" in text, "stderr goes to the log too"
    while os.path.exists(f"/proc/{job}") and not _zombie(job) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{job}") or _zombie(job), "the job ended"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


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
