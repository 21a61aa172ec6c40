"""Fixtures shared by the entry-script tests.

`base_model` is the tiny random Llama and its tokenizer, built once per session. `lora_run` trains it with LoRA
through train.py, merges the adapter with merge.py (in bfloat16 and in float32) and evaluates with evaluate.py the
merged model and, as the lowering also does, base + adapter; each job is a subprocess in its own SageMaker layout,
run once per session. The pipeline tests read what those jobs wrote.

`miniatures` builds, once per session, the miniature (tunec_entry.miniature) of each family's real config.json in
tests/python/families/, in float32, with the tiny tokenizer beside it and a vocabulary of 512 rows
(`small_vocabulary`): the output layer over a real vocabulary (up to 262,208 rows for Gemma 3) would cost more
than the rest of the model together. test_families_miniature.py checks the miniatures of the unchanged configs.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "stdlib" / "python"))

from tinyllm import (
    CHAT_TEMPLATE,
    END_OF_TEXT,
    EOT,
    FACTS,
    PAD,
    SCRIPTS,
    Layout,
    build_model,
    build_tokenizer,
    eval_row,
    run_script,
    tokenized_row,
    write_jsonl,
)

FAMILY_CONFIGS = Path(__file__).resolve().parent / "families"


def family_config(name: str) -> dict[str, Any]:
    """A family's real config.json (tests/python/families/<name>.json, sources in the README there)."""
    return json.loads((FAMILY_CONFIGS / f"{name}.json").read_text(encoding="utf-8"))


SMALL_VOCABULARY = 512
TOKEN_ID_KEYS = (
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "image_token_index",
    "boi_token_index",
    "eoi_token_index",
)


def small_vocabulary(source: dict[str, Any], size: int = SMALL_VOCABULARY) -> dict[str, Any]:
    """The config with `size` vocabulary rows; token ids past them are folded into the range (id % size)."""

    def fold(config: dict[str, Any]) -> dict[str, Any]:
        config = dict(config)
        for key in TOKEN_ID_KEYS:
            value = config.get(key)
            if isinstance(value, int):
                config[key] = value % size
            elif isinstance(value, list):
                config[key] = [token % size for token in value]
        return config

    folded = fold(source)
    if "text_config" in folded:
        folded["text_config"] = {**fold(folded["text_config"]), "vocab_size": size}
    else:
        folded["vocab_size"] = size
    return folded


@pytest.fixture(scope="session")
def miniatures(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`miniatures(name)`: the folder of the family's float32 miniature with the tiny tokenizer, built once."""
    from tunec_entry.miniature import build_miniature

    root = tmp_path_factory.mktemp("miniatures")

    @functools.cache
    def build(name: str) -> Path:
        folder = root / name
        build_miniature(small_vocabulary(family_config(name)), folder, dtype="float32", seed=0)
        build_tokenizer(folder)
        return folder

    return build


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one thread: toy models run several times faster so on a busy machine (no thread waits for another)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def load_script(name: str) -> ModuleType:
    """Import stdlib/python/<name>.py as a module, to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(f"tunec_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    tokenizer = build_tokenizer(folder)
    build_model(folder, tokenizer)
    return folder


@pytest.fixture(scope="session")
def tokenizer(base_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model)


def lora_args(base: Path, **overrides: Any) -> dict[str, Any]:
    """args.yaml of the LoRA runs (merge and evaluate read the same file): memorise FACTS in 30 steps on the CPU."""
    args = {
        "model_name_or_path": str(base),
        "method": "lora",
        "torch_dtype": "float32",
        "pad_token": PAD,
        "eot_token": EOT,
        "stop_tokens": [END_OF_TEXT],
        "chat_template": CHAT_TEMPLATE,
        "max_length": 128,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "lora_target_modules": "all-linear",
        "modules_to_save": ["lm_head"],
        "learning_rate": "1e-2",
        "lr_scheduler_type": "constant",
        "max_steps": 30,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 4,
        "gradient_checkpointing": True,
        "logging_steps": 5,
        "save_steps": 10,
        "seed": 1,
    }
    args.update(overrides)
    return args


def train_layout(root: Path, base: Path, tokenizer, **overrides: Any) -> Layout:
    """A training job: FACTS as the train split, two of them as the val split."""
    layout = Layout(root)
    rows = [tokenized_row(tokenizer, question, answer) for question, answer in FACTS]
    write_jsonl(layout.add_channel("train") / "train.jsonl", rows)
    write_jsonl(layout.add_channel("val") / "val.jsonl", rows[:2])
    layout.write_args(lora_args(base, **overrides))
    return layout


TEST_ROWS_EXTRA = [
    ("What is the capital of France?", "Paris France", None),
    ("What is the capital of France?", "Lyon", ["Lyon", "Paris"]),
]
"""Test rows the model cannot match: a two-word reference, and a multiple-choice row whose key is wrong."""


def make_test_split(tokenizer) -> list[dict[str, Any]]:
    rows = [
        eval_row(tokenizer, question, answer, [answer, "Nothing"] if index % 2 == 0 else None)
        for index, (question, answer) in enumerate(FACTS)
    ]
    for question, reference, options in TEST_ROWS_EXTRA:
        row = eval_row(tokenizer, question, "Paris")
        row["reference"] = reference
        if options is not None:
            row["options"], row["answer_index"] = options, options.index(reference)
        rows.append(row)
    return rows


def expect_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@dataclass
class LoraRun:
    train: Layout
    merge: Layout
    merge_fp32: Layout
    evaluate: Layout
    evaluate_adapter: Layout
    test_rows: list[dict[str, Any]]


def merge_layout(root: Path, base: Path, adapter: Path, test_rows: list[dict[str, Any]], **overrides: Any) -> Layout:
    layout = Layout(root)
    shutil.copytree(adapter, layout.add_channel("adapter"), dirs_exist_ok=True)
    write_jsonl(layout.add_channel("test") / "test.jsonl", test_rows)
    layout.write_args(lora_args(base, max_shard_size="200KB", **overrides))
    return layout


def evaluate_layout(root: Path, base: Path, test_rows: list[dict[str, Any]], **channels: Path) -> Layout:
    layout = Layout(root)
    for name, source in channels.items():
        shutil.copytree(source, layout.add_channel(name), dirs_exist_ok=True)
    write_jsonl(layout.add_channel("test") / "test.jsonl", test_rows)
    layout.write_args(lora_args(base, max_new_tokens=8, batch_size=4))
    return layout


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory, base_model: Path, tokenizer) -> LoraRun:
    root = tmp_path_factory.mktemp("lora")
    rows = make_test_split(tokenizer)
    train = train_layout(root / "train", base_model, tokenizer)
    expect_ok(run_script("train.py", train))
    merge = merge_layout(root / "merge", base_model, train.model_dir, rows, torch_dtype="bfloat16")
    expect_ok(run_script("merge.py", merge))
    merge_fp32 = merge_layout(root / "merge_fp32", base_model, train.model_dir, rows)
    expect_ok(run_script("merge.py", merge_fp32))
    evaluate = evaluate_layout(root / "evaluate", base_model, rows, model=merge.model_dir)
    expect_ok(run_script("evaluate.py", evaluate))
    evaluate_adapter = evaluate_layout(root / "evaluate_adapter", base_model, rows, adapter=train.model_dir)
    expect_ok(run_script("evaluate.py", evaluate_adapter))
    return LoraRun(train, merge, merge_fp32, evaluate, evaluate_adapter, rows)


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The moto server of .ci/run ($TUNEC_TEST_MOTO_URL), or one started here for this session."""
    if os.environ.get("TUNEC_TEST_MOTO_URL"):
        yield os.environ["TUNEC_TEST_MOTO_URL"].rstrip("/")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/data.json", timeout=2).read()
                break
            except (urllib.error.URLError, OSError):
                assert moto.poll() is None, f"the moto server exited with {moto.returncode}"
                assert time.monotonic() < deadline, "the moto server did not answer within 30 s"
                time.sleep(0.05)
        yield url
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        log.close()
