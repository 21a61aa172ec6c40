"""Dataset files, collators, the resumable sampler, artifacts and checkpoints."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from tinyllm import FACTS, tokenized_row, write_jsonl
from tunec_entry.artifacts import check_adapter_shapes, resolve_artifact_dir
from tunec_entry.checkpoints import checkpoint_step, newest_checkpoint
from tunec_entry.data import (
    EpochSampler,
    EvalRow,
    PaddingCollator,
    TokenRules,
    check_tokenized,
    make_collator,
    read_eval_split,
    read_tokenized_split,
    rows_without,
)
from tunec_entry.failure import EntryError

RULES = TokenRules(vocab_size=100, bos_id=1, max_length=8)

# ---- pre-tokenized rows ------------------------------------------------------------------------------------------


def test_a_valid_row_is_used_as_is() -> None:
    row = {"text": "ignored", "input_ids": [1, 5, 6, 7, 2], "labels": [-100, -100, 6, 7, 2]}
    assert check_tokenized(row, RULES, "x") == {"input_ids": [1, 5, 6, 7, 2], "labels": [-100, -100, 6, 7, 2]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"input_ids": "1 2", "labels": [1, 2]}, "`input_ids` must be a list of integers"),
        ({"input_ids": [1, 2], "labels": [2]}, "`labels` has 1 entries, `input_ids` 2"),
        ({"input_ids": [], "labels": []}, "`input_ids` is empty"),
        ({"input_ids": list(range(1, 10)), "labels": list(range(1, 10))}, "9 tokens, more than max_length 8"),
        ({"input_ids": [1, 100], "labels": [1, 100]}, "token id 100 is outside the vocabulary (size 100)"),
        ({"input_ids": [1, 5, 6], "labels": [5, 6, -100]}, "labels[0] is 5, expected -100 or input_ids[0] (1)"),
        ({"input_ids": [1, 5, 6], "labels": [-100, -100, -100]}, "no trained token"),
        ({"input_ids": [1, 1, 6], "labels": [-100, -100, 6]}, "starts with BOS twice"),
    ],
)
def test_broken_rows_are_refused_with_their_location(row: dict, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        check_tokenized(row, RULES, "train.jsonl line 3")
    assert str(caught.value).startswith("train.jsonl line 3: ")
    assert message in str(caught.value)


def test_split_files_are_read_with_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text('{"input_ids": [1, 5], "labels": [-100, 5]}\n\n{"input_ids": [1, 6]\n')
    with pytest.raises(EntryError, match=r"train.jsonl line 3: not valid JSON"):
        read_tokenized_split(tmp_path, "train", RULES)
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(EntryError, match="has no rows"):
        read_tokenized_split(tmp_path, "train", RULES)
    with pytest.raises(EntryError, match=r"val.jsonl is missing \(the channel holds: train.jsonl\)"):
        read_tokenized_split(tmp_path, "val", RULES)


def test_rows_without_the_end_of_turn_token_are_counted() -> None:
    rows = [{"input_ids": [1, 7, 9], "labels": [-100, 7, 9]}, {"input_ids": [1, 7, 8], "labels": [-100, 7, 8]}]
    assert rows_without(rows, 9) == 1


def test_eval_rows_with_and_without_options(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "test.jsonl",
        [
            {"prompt": "p1", "reference": "Paris"},
            {"prompt": "p2", "reference": "B", "options": ["A", "B"], "answer_index": 1},
            {"prompt": "p3", "reference": "Mars", "options": ["Venus", "Mars"]},
        ],
    )
    assert read_eval_split(tmp_path) == [
        EvalRow("p1", "Paris"),
        EvalRow("p2", "B", ("A", "B"), 1),
        EvalRow("p3", "Mars", ("Venus", "Mars"), 1),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"reference": "a"}, "`prompt` must be a non-empty string"),
        ({"prompt": "p"}, "`reference` must be a string"),
        ({"prompt": "p", "reference": "a", "options": ["a"]}, "at least two strings"),
        ({"prompt": "p", "reference": "c", "options": ["a", "b"]}, "`reference` is none of the options"),
        ({"prompt": "p", "reference": "a", "options": ["a", "b"], "answer_index": 2}, "an index into `options`"),
    ],
)
def test_bad_eval_rows_are_refused(tmp_path: Path, row: dict, message: str) -> None:
    write_jsonl(tmp_path / "test.jsonl", [row])
    with pytest.raises(EntryError) as caught:
        read_eval_split(tmp_path)
    assert message in str(caught.value)


# ---- collators ---------------------------------------------------------------------------------------------------


def test_padding_collator_pads_ids_masks_labels_and_attention() -> None:
    batch = PaddingCollator(pad_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert all(tensor.dtype == torch.long for tensor in batch.values())


def test_packing_flattens_the_batch_with_restarting_positions() -> None:
    batch = make_collator(pad_id=0, packing=True)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert "attention_mask" not in batch


def test_packed_rows_do_not_attend_to_each_other(tokenizer) -> None:
    """With sdpa, a packed batch gives the same logits and loss as the padded batch of the same rows.

    transformers derives the block-diagonal mask from position_ids only without a KV cache, as in training
    (train.py turns use_cache off); with the cache on, the second row would attend to the first.
    """
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="sdpa",
        use_cache=False,
    )
    model = LlamaForCausalLM(config).eval()
    rows = [tokenized_row(tokenizer, q, a) for q, a in FACTS[:3]]
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]
    padded = PaddingCollator(pad_id=0)(rows)
    packed = make_collator(pad_id=0, packing=True)(rows)
    with torch.no_grad():
        padded_out = model(**padded)
        packed_out = model(**packed)
    lengths = [len(r["input_ids"]) for r in rows]
    pieces = torch.split(packed_out.logits[0], lengths)
    for index, piece in enumerate(pieces):
        torch.testing.assert_close(piece, padded_out.logits[index, : lengths[index]], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed_out.loss, padded_out.loss, rtol=1e-5, atol=1e-6)


# ---- the resumable sampler ---------------------------------------------------------------------------------------


def test_epoch_sampler_order_depends_only_on_seed_and_epoch() -> None:
    epoch = [0.0]
    sampler = EpochSampler(10, seed=3, current_epoch=lambda: epoch[0])
    first = list(sampler)
    assert sorted(first) == list(range(10)) and len(sampler) == 10
    epoch[0] = 1.0
    second = list(sampler)
    assert second != first
    epoch[0] = 1.67  # resumed two thirds into the second epoch: the second epoch's order again
    assert list(EpochSampler(10, seed=3, current_epoch=lambda: epoch[0])) == second
    assert list(EpochSampler(10, seed=4, current_epoch=lambda: 1.0)) != second


# ---- artifacts ---------------------------------------------------------------------------------------------------


def test_artifact_channel_as_folder_or_model_tar_gz(tmp_path: Path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    assert resolve_artifact_dir(folder) == folder

    packed = tmp_path / "data" / "model"
    packed.mkdir(parents=True)
    with tarfile.open(packed / "model.tar.gz", "w:gz") as tar:
        tar.add(folder / "adapter_config.json", arcname="adapter_config.json")
    unpacked = resolve_artifact_dir(packed)
    assert unpacked == tmp_path / "data" / "model.unpacked"
    assert (unpacked / "adapter_config.json").read_text() == "{}"
    (unpacked / "adapter_config.json").write_text('{"unpacked": "once"}')
    assert resolve_artifact_dir(packed) == unpacked  # not unpacked a second time
    assert (unpacked / "adapter_config.json").read_text() == '{"unpacked": "once"}'


def test_adapter_shapes_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_file(
        {
            "base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(4, 16),
            "base_model.model.layers.0.q_proj.lora_B.weight": torch.zeros(32, 4),
            "base_model.model.lm_head.modules_to_save.weight": torch.zeros(8, 16),
        },
        str(good),
    )
    assert check_adapter_shapes(good, r=4) == 2
    with pytest.raises(EntryError, match=r"malformed LoRA tensors \(r=8\)"):
        check_adapter_shapes(good, r=8)
    empty = tmp_path / "empty.safetensors"
    save_file(
        {
            "base_model.model.layers.0.q_proj.lora_A.weight": torch.zeros(0),
            "base_model.model.layers.0.q_proj.lora_B.weight": torch.zeros(32, 4),
        },
        str(empty),
    )
    with pytest.raises(EntryError, match=r"q_proj.lora_A.weight \[0\]"):
        check_adapter_shapes(empty, r=4)
    none = tmp_path / "none.safetensors"
    save_file({"lm_head.weight": torch.zeros(2, 2)}, str(none))
    with pytest.raises(EntryError, match="holds no LoRA tensors"):
        check_adapter_shapes(none, r=4)


# ---- checkpoints -------------------------------------------------------------------------------------------------


def make_checkpoint(folder: Path, step: int, *, complete: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"")
    if complete:
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return checkpoint


def test_newest_complete_checkpoint_wins(tmp_path: Path) -> None:
    assert newest_checkpoint(tmp_path / "absent") is None
    assert newest_checkpoint(tmp_path) is None
    make_checkpoint(tmp_path, 5)
    ten = make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 15, complete=False)  # killed while writing
    make_checkpoint(tmp_path, 100, complete=False)
    (tmp_path / "checkpoint-200").write_text("a file, not a checkpoint")
    (tmp_path / "tmp-checkpoint-300").mkdir()
    broken = make_checkpoint(tmp_path, 20)
    (broken / "trainer_state.json").write_text('{"global_st')  # truncated
    assert newest_checkpoint(tmp_path) == ten
    assert checkpoint_step(ten) == 10 and checkpoint_step(broken) is None
