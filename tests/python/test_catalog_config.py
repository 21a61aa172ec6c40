"""tunec_entry.catalog_config: a config.json from tunec's catalog row, held to the published config.json.

For each family whose published config (tests/python/families/, checkpoints in the README there) is of a checkpoint
in the catalog (stdlib/catalog/models.toml), the config rebuilt from the catalog's facts must read as the same config
class with the same shape, and its miniature must be the same network as the miniature of the published config:
the same parameter names and shapes (built on the meta device). Every other catalog row must give a config that its
class accepts and a miniature that instantiates.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
import torch

from conftest import family_config
from tinyllm import BOS, END_OF_TEXT, EOT, SCRIPTS, build_tokenizer
from tunec_entry import miniature
from tunec_entry.architecture import expert_count, is_mxfp4
from tunec_entry.catalog_config import config_from_facts

REPO = Path(__file__).resolve().parents[2]
ARCHITECTURES = {
    row["model_type"]: row["architecture"]
    for row in tomllib.loads((REPO / "stdlib/catalog/architectures.toml").read_text(encoding="utf-8"))["architecture"]
}
ROWS = tomllib.loads((REPO / "stdlib/catalog/models.toml").read_text(encoding="utf-8"))["model"]
CATALOG = {row["id"]: dict(row, architecture=ARCHITECTURES[row["model_type"]]) for row in ROWS}
"""Catalog rows as the runtime passes them (runtime/src/run/smoke/model_source.rs `facts_json`)."""


def published_checkpoints() -> dict[str, str]:
    """Family config file stem → the checkpoint it was written from (the README's table)."""
    readme = (REPO / "tests/python/families/README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `(\w+)\.json` \| `([^`]+)` \|", readme, flags=re.MULTILINE))


PUBLISHED = {stem: checkpoint for stem, checkpoint in published_checkpoints().items() if checkpoint in CATALOG}


def shape(config) -> dict[str, Any]:
    text = config.get_text_config()
    heads = text.num_attention_heads
    return {
        "class": type(config).__name__,
        "text_class": type(text).__name__,
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": getattr(text, "num_key_value_heads", heads),
        "head_dim": getattr(text, "head_dim", None) or text.hidden_size // heads,
        "tie_word_embeddings": config.tie_word_embeddings,
        "experts": expert_count(config),
        "mxfp4": is_mxfp4(config),
        "layer_types": getattr(text, "layer_types", None),
    }


def parameters(config) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = miniature.model_class(config)(config)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def test_the_readme_names_catalog_checkpoints_for_most_families() -> None:
    assert len(PUBLISHED) >= 12, PUBLISHED


@pytest.mark.parametrize("stem", sorted(PUBLISHED))
def test_the_facts_give_the_published_shape_and_the_same_miniature(stem: str) -> None:
    published = family_config(stem)
    rebuilt = config_from_facts(CATALOG[PUBLISHED[stem]])
    assert rebuilt["architectures"] == published["architectures"]
    assert shape(miniature.full_config(rebuilt)) == shape(miniature.full_config(published))
    published_mini, rebuilt_mini = miniature.miniature_config(published), miniature.miniature_config(rebuilt)
    assert parameters(rebuilt_mini) == parameters(published_mini)


@pytest.mark.parametrize("model_id", sorted(CATALOG))
def test_every_catalog_row_gives_a_config_its_class_accepts(model_id: str) -> None:
    facts = CATALOG[model_id]
    config = miniature.full_config(config_from_facts(facts))
    got = shape(config)
    assert (got["num_hidden_layers"], got["vocab_size"]) == (facts["num_layers"], facts["vocab_size"])
    assert got["experts"] == (facts["moe"]["experts"] if "moe" in facts else None)
    assert parameters(miniature.miniature_config(config_from_facts(facts)))


def test_special_tokens_are_numbered_by_the_tokenizer_beside(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(tmp_path)
    facts = dict(CATALOG["meta-llama/Llama-3.1-8B-Instruct"], bos_token=BOS, eos_token=EOT)
    facts["stop_tokens"] = [END_OF_TEXT, EOT, "<|a token this tokenizer lacks|>"]
    config = config_from_facts(facts, tmp_path)
    assert config["bos_token_id"] == tokenizer.convert_tokens_to_ids(BOS)
    assert config["eos_token_id"] == tokenizer.convert_tokens_to_ids([EOT, END_OF_TEXT])


def test_facts_missing_a_size_are_refused() -> None:
    facts = dict(CATALOG["Qwen/Qwen3-8B"])
    del facts["hidden_size"]
    with pytest.raises(miniature.MiniatureError, match="lack hidden_size"):
        config_from_facts(facts)


def run_builder(source: Path, out: Path, facts_file: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tunec_entry.miniature", str(source), str(out), "--facts", str(facts_file)]
    return subprocess.run(command, cwd=SCRIPTS, capture_output=True, text=True, check=False)


def test_the_command_builds_a_miniature_from_facts_with_the_tokenizer_beside(tmp_path: Path) -> None:
    tokenizer_dir = tmp_path / "tokenizer"
    build_tokenizer(tokenizer_dir)
    facts = dict(CATALOG["Qwen/Qwen3-30B-A3B"], vocab_size=512, bos_token=BOS, eos_token=EOT, stop_tokens=[])
    facts_file = tmp_path / "facts.json"
    facts_file.write_text(json.dumps(facts), encoding="utf-8")
    out = tmp_path / "mini"
    result = run_builder(tokenizer_dir, out, facts_file)
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert (saved["model_type"], saved["architectures"]) == ("qwen3_moe", ["Qwen3MoeForCausalLM"])
    assert (saved["num_hidden_layers"], saved["num_experts"], saved["vocab_size"]) == (2, 4, 512)
    assert (out / "tokenizer.json").is_file()
    bad = run_builder(tmp_path / "nowhere", tmp_path / "other", facts_file)
    assert bad.returncode == 2 and "is not a folder with a tokenizer" in bad.stderr
