"""The args.yaml files the lowering writes (its insta snapshots) parse, and build valid TrainingArguments.

This is the contract between compiler/src/lower/args.rs and the entry scripts: a key the lowering adds that the
scripts do not know, or a value they refuse, fails here rather than in a GPU job.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinyllm import REPO
from tunec_entry import builders
from tunec_entry.config import parse_args_mapping

SNAPSHOTS = sorted((REPO / "compiler" / "tests" / "snapshots").glob("*-args@*.snap"))


def args_yaml(snapshot: Path) -> str:
    """The snapshot's content: what follows insta's `---` header."""
    return snapshot.read_text(encoding="utf-8").split("\n---\n", 1)[1]


def test_the_lowering_has_args_snapshots() -> None:
    assert len(SNAPSHOTS) >= 3, "expected the train, merge and evaluate args.yaml snapshots"


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda path: path.name)
def test_every_lowered_args_yaml_is_accepted(snapshot: Path, tmp_path: Path) -> None:
    import yaml

    raw = yaml.safe_load(args_yaml(snapshot))
    args = parse_args_mapping(raw)
    assert args.pad_token not in (args.eot_token, *args.stop_tokens)
    if "per_device_train_batch_size" in raw:  # a training job
        saved = dict(os.environ)
        try:
            training = builders.training_arguments(args, str(tmp_path), has_eval="eval_steps" in raw, cuda=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert training.gradient_checkpointing_kwargs == {"use_reentrant": False}
        if args.method == "qlora":
            assert builders.quantization_config(args).bnb_4bit_quant_storage is not None
