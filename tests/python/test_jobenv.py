"""The SageMaker environment and the failure file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunec_entry.failure import (
    EXIT_FAILED,
    EntryError,
    failure_path,
    failure_reason,
    run_entry,
)
from tunec_entry.jobenv import JobEnv, config_path, parse_command_line, require_single_process


def test_defaults_are_the_opt_ml_layout() -> None:
    env = JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent/input"})
    assert env.model_dir == Path("/opt/ml/model")
    assert env.output_data_dir == Path("/opt/ml/output/data")
    assert env.checkpoint_dir(None) == Path("/opt/ml/checkpoints")
    assert env.checkpoint_dir("/opt/ml/checkpoints/sft") == Path("/opt/ml/checkpoints/sft")  # args.yaml output_dir
    assert (env.num_gpus, env.instance_type, env.hosts, env.world_size) == (None, None, (), 1)
    assert failure_path({}) == Path("/opt/ml/output/failure")


def test_sm_variables_channels_and_resource_config(tmp_path: Path) -> None:
    data = tmp_path / "input" / "data"
    for name in ("train", "config", "test"):
        (data / name).mkdir(parents=True)
    (tmp_path / "input" / "config").mkdir()
    (tmp_path / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"], "current_instance_type": "ml.p4d.24xlarge"}
        )
    )
    environ = {
        "SM_INPUT_DIR": str(tmp_path / "input"),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "SM_OUTPUT_DATA_DIR": str(tmp_path / "out"),
        "SM_CHANNEL_TRAIN": str(tmp_path / "elsewhere"),
        "SM_CHANNEL_VAL": str(tmp_path / "val"),
        "SM_NUM_GPUS": "8",
        "WORLD_SIZE": "8",
        "TUNEC_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
    }
    env = JobEnv.from_environ(environ)
    assert env.channels == {
        "train": tmp_path / "elsewhere",  # the variable wins over the folder
        "val": tmp_path / "val",
        "config": data / "config",
        "test": data / "test",
    }
    assert (env.model_dir, env.output_data_dir, env.checkpoint_dir("/opt/ml/checkpoints")) == (
        tmp_path / "model",
        tmp_path / "out",
        tmp_path / "ckpt",
    )
    assert (env.num_gpus, env.world_size, env.instance_type, env.hosts) == (
        8,
        8,
        "ml.p4d.24xlarge",
        ("algo-1", "algo-2"),
    )
    assert env.require_channel("test") == data / "test"
    with pytest.raises(EntryError, match=r"points at .*elsewhere, which is not a folder"):
        env.require_channel("train")
    with pytest.raises(EntryError, match=r"input channel `adapter` is missing \(SM_CHANNEL_ADAPTER\)"):
        env.require_channel("adapter")


def test_sm_resource_config_variable_and_bad_values() -> None:
    env = JobEnv.from_environ(
        {"SM_INPUT_DIR": "/nonexistent", "SM_RESOURCE_CONFIG": '{"current_instance_type": "ml.g5.2xlarge"}'}
    )
    assert env.instance_type == "ml.g5.2xlarge"
    with pytest.raises(EntryError, match="SM_RESOURCE_CONFIG is not valid JSON"):
        JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent", "SM_RESOURCE_CONFIG": "{"})
    with pytest.raises(EntryError, match="SM_NUM_GPUS='eight' is not an integer"):
        JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent", "SM_NUM_GPUS": "eight"})


def test_config_path_precedence(tmp_path: Path) -> None:
    env = JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent", "SM_CHANNEL_CONFIG": str(tmp_path)})
    assert config_path(Path("/x/args.yaml"), {"SM_HP_CONFIG": "/y"}, env) == Path("/x/args.yaml")
    assert config_path(None, {"SM_HP_CONFIG": "/y/args.yaml"}, env) == Path("/y/args.yaml")
    assert config_path(None, {}, env) == tmp_path / "args.yaml"
    with pytest.raises(EntryError, match=r"no args\.yaml"):
        config_path(None, {}, JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent"}))


def test_command_line() -> None:
    assert parse_command_line("train.py", "d", ["--config", "/a.yaml"]).config == Path("/a.yaml")
    assert parse_command_line("train.py", "d", []).config is None
    with pytest.raises(EntryError, match=r"train\.py: unrecognized arguments: --epochs 3"):
        parse_command_line("train.py", "d", ["--epochs", "3"])


def test_merge_and_evaluate_refuse_torchrun() -> None:
    require_single_process(JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent"}), "merge.py")
    with pytest.raises(EntryError, match=r"merge.py runs as one process \(WORLD_SIZE=8\)"):
        require_single_process(JobEnv.from_environ({"SM_INPUT_DIR": "/nonexistent", "WORLD_SIZE": "8"}), "merge.py")


# ---- failure file ------------------------------------------------------------------------------------------------


def test_failure_path_precedence() -> None:
    assert failure_path({"SM_OUTPUT_FAILURE": "/a/f", "SM_OUTPUT_DIR": "/b"}) == Path("/a/f")
    assert failure_path({"SM_OUTPUT_DIR": "/b"}) == Path("/b/failure")


def test_failure_reason_is_one_bounded_line() -> None:
    assert failure_reason(EntryError("missing\n  channel")) == "missing channel"
    assert failure_reason(ValueError("bad\nvalue")) == "ValueError: bad value"
    assert failure_reason(MemoryError()) == "MemoryError"
    assert len(failure_reason(RuntimeError("x" * 5000))) == 1024


def test_run_entry_writes_the_reason_and_clears_a_stale_one(tmp_path: Path) -> None:
    environ = {"SM_OUTPUT_DIR": str(tmp_path)}
    path = tmp_path / "failure"

    def failing() -> int:
        raise EntryError("input channel `train` is missing")

    assert run_entry(failing, environ) == EXIT_FAILED
    assert path.read_text() == "input channel `train` is missing\n"
    assert run_entry(lambda: 0, environ) == 0
    assert not path.exists()  # a stale reason from an earlier attempt is not left behind


def test_the_first_failing_rank_keeps_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "failure"
    path.write_text("rank 3: CUDA out of memory\n")

    def failing() -> int:
        raise RuntimeError("NCCL watchdog timeout")

    assert run_entry(failing, {"SM_OUTPUT_DIR": str(tmp_path), "RANK": "1"}) == EXIT_FAILED
    assert path.read_text() == "rank 3: CUDA out of memory\n"
