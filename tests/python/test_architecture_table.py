"""The architecture table and the model catalog, checked against transformers itself.

`stdlib/catalog/architectures.toml` says, per `model_type`, which classes load a checkpoint, which class FSDP wraps,
which linear layers `all_linear` means, where the experts and the router are, and which attention kernels the family
cannot use; `stdlib/catalog/models.toml` gives each checkpoint's exact parameter count. The compiler computes the
count from the shape and the table (its unit tests check that it reproduces every row). Here each family's published
`config.json` (`tests/python/families/<model_type>.json`, which the compiler's fixtures link to) is built with the
training image's transformers on the meta device (no weights, no download) and the table, and the catalog row of
the same family and size, are held against what that model really is.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import tomllib
import torch
import transformers
from transformers import AutoConfig
from transformers.modeling_utils import no_init_weights

from tinyllm import REPO

TABLE: dict[str, dict[str, Any]] = {
    row["model_type"]: row
    for row in tomllib.loads((REPO / "stdlib/catalog/architectures.toml").read_text(encoding="utf-8"))["architecture"]
}
MODELS: dict[str, dict[str, Any]] = {
    row["id"]: row for row in tomllib.loads((REPO / "stdlib/catalog/models.toml").read_text(encoding="utf-8"))["model"]
}
FIXTURES: list[Path] = sorted((REPO / "tests/python/families").glob("*.json"))
VISION = ("vision_tower", "vision_model", "multi_modal_projector")


def build(fixture: Path) -> torch.nn.Module:
    """The fixture's model on the meta device, with the class the table names."""
    config = AutoConfig.for_model(**json.loads(fixture.read_text(encoding="utf-8")))
    cls = getattr(transformers, TABLE[config.model_type]["architecture"])
    with torch.device("meta"), no_init_weights():
        model = cls._from_config(config)
    # no_init_weights skips the tying that post_init would do.
    model.tie_weights()
    return model


def unique_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    seen: set[int] = set()
    out = []
    for name, parameter in model.named_parameters():
        if id(parameter) not in seen:
            seen.add(id(parameter))
            out.append((name, parameter))
    return out


def text_layer_linears(model: torch.nn.Module) -> set[str]:
    """The last name component of every nn.Linear inside the text model's decoder layers."""
    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in name and not any(v in name for v in VISION):
            names.add(name.rsplit(".", 1)[-1])
    return names


@pytest.fixture(scope="module", params=FIXTURES, ids=lambda path: path.name)
def family(request: pytest.FixtureRequest) -> tuple[Path, torch.nn.Module]:
    return request.param, build(request.param)


def catalog_rows(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The catalog rows of the model's family with its hidden size, MLP width, layers and vocabulary (a fine-tune of
    a checkpoint, such as a DeepSeek-R1 distill of Qwen2.5-7B, has a row of its own with the same shape)."""
    config = model.config
    text = config.get_text_config()
    # Llama 4's dense layers are `intermediate_size_mlp` wide; its `intermediate_size` is an expert's.
    mlp = getattr(text, "intermediate_size_mlp", text.intermediate_size)
    shape = (text.hidden_size, mlp, text.num_hidden_layers, text.vocab_size)
    rows = [
        row
        for row in MODELS.values()
        if row["model_type"] == config.model_type
        and (row["hidden_size"], row["intermediate_size"], row["num_layers"], row["vocab_size"]) == shape
    ]
    assert rows, f"{config.model_type} {shape}: no catalog row has this shape"
    return rows


def test_every_family_has_a_fixture() -> None:
    assert sorted(TABLE) == sorted(path.stem for path in FIXTURES)


def test_the_catalog_counts_the_parameters_transformers_builds(family: tuple[Path, torch.nn.Module]) -> None:
    _, model = family
    parameters = unique_parameters(model)
    total = sum(p.numel() for _, p in parameters)
    vision = sum(p.numel() for name, p in parameters if any(v in name for v in VISION))
    for row in catalog_rows(model):
        assert (row["params"], row.get("vision_params", 0)) == (total, vision), row["id"]


def test_the_table_names_the_classes_and_layers_transformers_has(
    family: tuple[Path, torch.nn.Module],
) -> None:
    fixture, model = family
    arch = TABLE[fixture.stem]
    assert type(model).__name__ == arch["architecture"]
    assert arch["decoder_layer"] in model._no_split_modules
    assert any(type(m).__name__ == arch["decoder_layer"] for m in model.modules())

    # all_linear: the text layers' nn.Linear names, less a router that is one.
    router = arch.get("router", "").rsplit(".", 1)[-1]
    linears = text_layer_linears(model)
    if arch.get("router_linear"):
        assert router in linears
    assert set(arch["linear_modules"]) == linears - {router}

    parameters = dict(unique_parameters(model))
    if arch.get("moe") == "fused":
        for name in arch["experts"]:
            found = [p for full, p in parameters.items() if full.endswith("." + name)]
            assert found and all(p.ndim == 3 for p in found), name
    elif arch.get("moe") == "modules":
        expert_linears = {
            n.rsplit(".", 1)[-1]
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and ".experts." in n
        }
        assert set(arch["experts"]) == expert_linears
    if arch.get("router") and not arch.get("router_linear"):
        # A router that is not an nn.Linear: a parameter (gpt-oss, DeepSeek V3) or an nn.Linear
        # subclass with a forward of its own (Llama 4), which neither all-linear nor bitsandbytes
        # may treat as a plain linear layer.
        routers = [m for n, m in model.named_modules() if n.endswith("." + arch["router"])]
        assert routers and all(type(m) is not torch.nn.Linear for m in routers)


def test_the_refused_kernels_are_the_ones_transformers_lacks() -> None:
    for model_type, arch in TABLE.items():
        cls = getattr(transformers, arch["architecture"])
        refused = {r["kernel"]: r["severity"] for r in arch.get("attn_refused", [])}
        if not cls._supports_sdpa:
            assert refused.get("sdpa") == "error", model_type
        if not (cls._supports_flash_attn or getattr(cls, "_supports_flash_attn_2", False)):
            assert refused.get("flash_attention_2") == "error", model_type
        assert arch["attn_implementation"] not in refused, model_type


def test_the_defaults_are_the_config_class_defaults() -> None:
    for model_type, arch in TABLE.items():
        config = transformers.CONFIG_MAPPING[model_type]()
        assert config.tie_word_embeddings == arch["tie_word_embeddings"], model_type
        # The sizes a published config.json may leave out: the text config class's own defaults.
        cls = type(config.get_text_config())
        signature = inspect.signature(cls.__init__)
        for key, value in arch["config_defaults"].items():
            assert signature.parameters[key].default == value, (model_type, key)


def test_every_catalog_row_names_a_family() -> None:
    for model_id, row in MODELS.items():
        assert row["model_type"] in TABLE, model_id
        assert transformers.CONFIG_MAPPING[row["model_type"]] is not None
