"""merge.py (and a full fine-tune) on bases that save differently from the tiny Llama of conftest: a
generation_config.json that transformers loads but refuses to save, and tied embeddings that `modules_to_save`
trains apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, GenerationConfig

from conftest import expect_ok, make_test_split, merge_layout, train_layout
from tinyllm import FACTS, build_model, build_tokenizer, run_script, tokenized_row
from tunec_entry.failure import EntryError
from tunec_entry.models import savable_generation_config

SAMPLING_WITHOUT_DO_SAMPLE = {"bos_token_id": 0, "temperature": 0.6, "top_p": 0.9}
"""What published generation_config.json files such as NousResearch/Llama-2-7b-chat-hf's held (temperature and top_p,
no do_sample): transformers 4.56.2 generates greedily with it and refuses to save it."""


def base_with(folder: Path, *, generation: dict | None = None, tied: bool = False):
    tokenizer = build_tokenizer(folder)
    build_model(folder, tokenizer, tie_word_embeddings=tied)
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    return tokenizer


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_published_kind_of_generation_config_is_refused_by_transformers_save(tmp_path: Path) -> None:
    config = GenerationConfig.from_dict(SAMPLING_WITHOUT_DO_SAMPLE)
    with pytest.raises(ValueError, match="GenerationConfig is invalid"):
        config.save_pretrained(tmp_path)


def test_sampling_flags_without_do_sample_become_sampling_and_a_zero_temperature_greedy() -> None:
    config = GenerationConfig.from_dict(SAMPLING_WITHOUT_DO_SAMPLE)
    assert savable_generation_config(config) == ["do_sample set to true (the base sets temperature, top_p without it)"]
    assert (config.do_sample, config.temperature, config.top_p) == (True, 0.6, 0.9)

    greedy = GenerationConfig.from_dict({"temperature": 0.0, "top_k": 1})
    assert savable_generation_config(greedy) == [
        "temperature, top_k back to the defaults (temperature 0 means greedy decoding)"
    ]
    assert (greedy.do_sample, greedy.temperature, greedy.top_k) == (False, 1.0, 50)

    beams = GenerationConfig.from_dict({"length_penalty": 1.2})
    assert savable_generation_config(beams) == [
        "length_penalty back to the defaults (beam-search flags, and num_beams is 1)"
    ]
    negative_pad = GenerationConfig.from_dict({"pad_token_id": -1})
    assert savable_generation_config(negative_pad) == ["pad_token_id unset (it was negative)"]
    assert negative_pad.pad_token_id is None
    valid = GenerationConfig.from_dict({"do_sample": True, "temperature": 0.7})
    assert savable_generation_config(valid) == []
    assert valid.to_diff_dict() == GenerationConfig.from_dict({"do_sample": True, "temperature": 0.7}).to_diff_dict()


def test_a_generation_config_that_cannot_be_made_savable_names_the_file() -> None:
    config = GenerationConfig.from_dict({"use_cache": False, "cache_implementation": "static"})
    with pytest.raises(EntryError, match=r"generation_config\.json cannot be saved .*cache_implementation"):
        savable_generation_config(config)


def test_a_base_whose_generation_config_transformers_refuses_to_save_merges(tmp_path: Path) -> None:
    base = tmp_path / "base"
    tokenizer = base_with(base, generation=SAMPLING_WITHOUT_DO_SAMPLE)
    train = train_layout(tmp_path / "train", base, tokenizer, max_steps=2, save_steps=100)
    expect_ok(run_script("train.py", train))
    merge = merge_layout(tmp_path / "merge", base, train.model_dir, make_test_split(tokenizer))
    result = run_script("merge.py", merge)
    expect_ok(result)
    assert "do_sample set to true (the base sets temperature, top_p without it)" in result.stderr
    saved = read_json(merge.model_dir / "generation_config.json")
    assert (saved["do_sample"], saved["temperature"], saved["top_p"]) == (True, 0.6, 0.9)
    assert read_json(merge.output_data_dir / "smoke.json")["new_tokens"] > 0


def test_a_full_fine_tune_of_such_a_base_saves_its_checkpoints(tmp_path: Path) -> None:
    base = tmp_path / "base"
    tokenizer = base_with(base, generation=SAMPLING_WITHOUT_DO_SAMPLE)
    train = train_layout(
        tmp_path / "train", base, tokenizer, method="full", modules_to_save=[], max_steps=2, save_steps=1
    )
    expect_ok(run_script("train.py", train))
    assert read_json(train.model_dir / "generation_config.json")["do_sample"] is True


@pytest.mark.parametrize("modules", [["lm_head"], ["embed_tokens"]])
def test_embeddings_trained_apart_from_their_tied_twin_stay_apart_in_the_merged_model(
    tmp_path: Path, modules: list[str]
) -> None:
    base = tmp_path / "base"
    tokenizer = base_with(base, tied=True)
    train = train_layout(tmp_path / "train", base, tokenizer, modules_to_save=modules, max_steps=10, save_steps=100)
    expect_ok(run_script("train.py", train))
    merge = merge_layout(tmp_path / "merge", base, train.model_dir, make_test_split(tokenizer))
    expect_ok(run_script("merge.py", merge))

    input_ids = torch.tensor([tokenized_row(tokenizer, *FACTS[0])["input_ids"]])
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        before = base_model(input_ids=input_ids).logits
        trained = PeftModel.from_pretrained(base_model, train.model_dir)(input_ids=input_ids).logits
        merged_model = AutoModelForCausalLM.from_pretrained(merge.model_dir, dtype=torch.float32)
        merged = merged_model(input_ids=input_ids).logits
    assert (trained - before).abs().max().item() > 0.5  # the comparison below means something
    assert (merged - trained).abs().max().item() < 1e-4
    assert read_json(merge.model_dir / "config.json")["tie_word_embeddings"] is False


def test_tied_embeddings_that_training_left_alone_stay_tied(tmp_path: Path) -> None:
    base = tmp_path / "base"
    tokenizer = base_with(base, tied=True)
    train = train_layout(tmp_path / "train", base, tokenizer, modules_to_save=[], max_steps=2, save_steps=100)
    expect_ok(run_script("train.py", train))
    merge = merge_layout(tmp_path / "merge", base, train.model_dir, make_test_split(tokenizer))
    expect_ok(run_script("merge.py", merge))
    assert read_json(merge.model_dir / "config.json")["tie_word_embeddings"] is True
