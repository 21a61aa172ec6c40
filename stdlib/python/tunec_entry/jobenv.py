"""The job's environment: SageMaker's SM_* variables, with the /opt/ml defaults when they are absent.

SageMaker's ModelTrainer drivers export SM_MODEL_DIR, SM_OUTPUT_DATA_DIR, SM_CHANNEL_<NAME>, SM_NUM_GPUS and
SM_RESOURCE_CONFIG; the container itself only guarantees the /opt/ml folders. The local target emulates that
layout in its run folder and sets the same variables. The checkpoint folder is not a SageMaker variable: it is the
CheckpointConfig LocalPath, /opt/ml/checkpoints, which SageMaker syncs with S3 while the job runs (args.yaml names it
as `output_dir`); the local target and the tests point TUNEC_CHECKPOINT_DIR elsewhere, which wins over args.yaml.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from tunec_entry.failure import EntryError

DEFAULT_CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHANNEL_PREFIX = "SM_CHANNEL_"
ARGS_FILE = "args.yaml"


@dataclass(frozen=True)
class JobEnv:
    """Where a job reads its inputs and writes its outputs, and the hardware it was given."""

    model_dir: Path
    output_data_dir: Path
    checkpoint_override: Path | None
    input_config_dir: Path
    channels: Mapping[str, Path] = field(default_factory=dict)
    num_gpus: int | None = None
    instance_type: str | None = None
    hosts: tuple[str, ...] = ()
    world_size: int = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> JobEnv:
        input_dir = Path(environ.get("SM_INPUT_DIR", "/opt/ml/input"))
        input_data_dir = Path(environ.get("SM_INPUT_DATA_DIR", str(input_dir / "data")))
        input_config_dir = Path(environ.get("SM_INPUT_CONFIG_DIR", str(input_dir / "config")))
        resource = _resource_config(environ, input_config_dir)
        return cls(
            model_dir=Path(environ.get("SM_MODEL_DIR", "/opt/ml/model")),
            output_data_dir=Path(environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data")),
            checkpoint_override=Path(environ["TUNEC_CHECKPOINT_DIR"]) if environ.get("TUNEC_CHECKPOINT_DIR") else None,
            input_config_dir=input_config_dir,
            channels=_channels(environ, input_data_dir),
            num_gpus=_optional_int(environ, "SM_NUM_GPUS"),
            instance_type=resource.get("current_instance_type"),
            hosts=tuple(resource.get("hosts", ())),
            world_size=_optional_int(environ, "WORLD_SIZE") or 1,
        )

    def channel(self, name: str) -> Path | None:
        return self.channels.get(name)

    def portable(self, location: str | Path) -> str:
        """A channel path as SageMaker names it (/opt/ml/input/data/<channel>/...), whatever folder the local
        target emulates /opt/ml in, so that reports do not depend on where a job ran; other values unchanged."""
        text = str(location)
        for name, path in sorted(self.channels.items()):
            root = str(path)
            if text == root or text.startswith(root + "/"):
                return f"/opt/ml/input/data/{name}{text[len(root) :]}"
        return text

    def checkpoint_dir(self, output_dir: str | None) -> Path:
        """TUNEC_CHECKPOINT_DIR, else args.yaml's `output_dir`, else /opt/ml/checkpoints."""
        return self.checkpoint_override or Path(output_dir or DEFAULT_CHECKPOINT_DIR)

    def require_channel(self, name: str) -> Path:
        path = self.channel(name)
        if path is None:
            known = ", ".join(sorted(self.channels)) or "none"
            raise EntryError(
                f"input channel `{name}` is missing (SM_CHANNEL_{name.upper()}); channels present: {known}"
            )
        if not path.is_dir():
            raise EntryError(f"input channel `{name}` points at {path}, which is not a folder")
        return path


def _channels(environ: Mapping[str, str], input_data_dir: Path) -> dict[str, Path]:
    """SM_CHANNEL_<NAME> variables first; folders under /opt/ml/input/data fill in the channels they do not name."""
    channels = {
        key[len(CHANNEL_PREFIX) :].lower(): Path(value)
        for key, value in environ.items()
        if key.startswith(CHANNEL_PREFIX) and value
    }
    if input_data_dir.is_dir():
        for child in sorted(input_data_dir.iterdir()):
            if child.is_dir():
                channels.setdefault(child.name.lower(), child)
    return channels


def _optional_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise EntryError(f"{name}={value!r} is not an integer") from None


def _resource_config(environ: Mapping[str, str], input_config_dir: Path) -> dict:
    """SM_RESOURCE_CONFIG (JSON text), else /opt/ml/input/config/resourceconfig.json, else empty."""
    text = environ.get("SM_RESOURCE_CONFIG")
    origin = "SM_RESOURCE_CONFIG"
    if text is None:
        path = input_config_dir / "resourceconfig.json"
        if not path.is_file():
            return {}
        text, origin = path.read_text(encoding="utf-8"), str(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise EntryError(f"{origin} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise EntryError(f"{origin} must be a JSON object")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as an EntryError instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise EntryError(f"{self.prog}: {message}")


def parse_command_line(prog: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """The one option of every entry script: --config, the path of args.yaml.

    SageMaker passes hyperparameters as `--key value`; the lowering's only hyperparameter is `config`.
    """
    parser = _Parser(prog=prog, description=description)
    parser.add_argument(
        "--config", type=Path, help=f"path of {ARGS_FILE} (default: $SM_HP_CONFIG, then the config channel)"
    )
    return parser.parse_args(argv)


def config_path(cli_value: Path | None, environ: Mapping[str, str], env: JobEnv) -> Path:
    """--config, else SM_HP_CONFIG, else args.yaml in the `config` channel."""
    if cli_value is not None:
        return cli_value
    if environ.get("SM_HP_CONFIG"):
        return Path(environ["SM_HP_CONFIG"])
    channel = env.channel("config")
    if channel is not None:
        return channel / ARGS_FILE
    raise EntryError(f"no {ARGS_FILE}: pass --config, set SM_HP_CONFIG, or provide a `config` channel")


def require_single_process(env: JobEnv, script: str) -> None:
    """merge.py and evaluate.py are one process: under torchrun every rank would write the same files."""
    if env.world_size > 1:
        raise EntryError(
            f"{script} runs as one process (WORLD_SIZE={env.world_size}); launch it with python, not torchrun"
        )


def write_json(path: Path, value: Mapping[str, Any]) -> None:
    """Write an output file (indented JSON), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
