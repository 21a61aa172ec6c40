"""The newest complete checkpoint in the checkpoint folder, to resume from.

SageMaker syncs /opt/ml/checkpoints with S3 while the job runs and restores it when a managed-spot job restarts,
so a restarted train.py finds its own earlier `checkpoint-<step>` folders there. A job killed while writing a
checkpoint leaves a folder without `trainer_state.json`, which the Trainer writes last: such a folder is skipped,
and the one before it is used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def checkpoint_step(checkpoint: Path) -> int | None:
    """global_step of a complete checkpoint, or None when its trainer_state.json is missing or unreadable."""
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else None


def training_finished(checkpoint: Path) -> bool:
    """Whether a checkpoint is the last step of its training (global_step reached the planned max_steps).

    The Trainer, resumed from such a checkpoint, would run one step more before noticing that it is done (its loop
    checks max_steps after a step, not before), so a job killed between its final checkpoint and its final save
    would otherwise train on every restart.
    """
    try:
        state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(state, dict):
        return False
    step, planned = state.get("global_step"), state.get("max_steps")
    return isinstance(step, int) and isinstance(planned, int) and 0 < planned <= step


def newest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The complete `checkpoint-<n>` folder with the largest n, or None."""
    if not checkpoint_dir.is_dir():
        return None
    candidates = []
    for child in checkpoint_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and checkpoint_step(child) is not None:
            candidates.append((int(match.group(1)), child))
    return max(candidates)[1] if candidates else None
