"""The pre-tokenized splits the data engine writes, and the collators that batch them.

Each split is `<split>.jsonl` in its channel folder, one JSON object per line with `text`, `input_ids` and
`labels` (-100 where the loss is off: system and user turns, tool results, assistant headers). The test split also
carries `prompt` (the conversation up to its last user turn, rendered with the generation prompt), `reference`, and
optionally `options` and `answer_index`. A test row may instead give the conversation itself, `messages` (a list
of `{role, content, ...}`): its prompt is then rendered with the model's chat template once the tokenizer is loaded
(`EvalRow.messages`), and its reference is the content of its last assistant message unless `reference` is set.

Nothing is re-templated or re-tokenized here: `input_ids` and `labels` are used exactly as written. They are
checked instead, so that a broken data step fails in seconds with a line number rather than training on garbage:
ids inside the vocabulary, labels aligned with the ids (a label is -100 or the id at the same position; the model
shifts them itself), at least one trained token, no doubled BOS, and no row longer than `max_length`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

from tunec_entry.failure import EntryError

IGNORE_INDEX = -100

TokenizedRow = dict[str, list[int]]
"""A checked training row: {"input_ids": [...], "labels": [...]}."""


@dataclass(frozen=True)
class TokenRules:
    """What every tokenized row must satisfy."""

    vocab_size: int
    bos_id: int | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class EvalRow:
    """One test example."""

    prompt: str
    reference: str
    options: tuple[str, ...] | None = None
    answer_index: int | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    """For a row given as a conversation: the messages before its last assistant message, which the model's chat
    template renders into `prompt` (empty until then)."""


def split_file(channel_dir: Path, split: str) -> Path:
    path = channel_dir / f"{split}.jsonl"
    if not path.is_file():
        present = ", ".join(sorted(p.name for p in channel_dir.iterdir())) or "nothing"
        raise EntryError(f"{path} is missing (the channel holds: {present})")
    return path


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EntryError(f"{path.name} line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise EntryError(f"{path.name} line {number}: expected a JSON object")
            yield number, row


def _int_list(row: dict[str, Any], key: str, where: str) -> list[int]:
    value = row.get(key)
    if not isinstance(value, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise EntryError(f"{where}: `{key}` must be a list of integers")
    return value


def check_tokenized(row: dict[str, Any], rules: TokenRules, where: str) -> TokenizedRow:
    """The row's input_ids and labels, after checking them against `rules`."""
    input_ids = _int_list(row, "input_ids", where)
    labels = _int_list(row, "labels", where)
    if not input_ids:
        raise EntryError(f"{where}: `input_ids` is empty")
    if len(labels) != len(input_ids):
        raise EntryError(f"{where}: `labels` has {len(labels)} entries, `input_ids` {len(input_ids)}")
    if rules.max_length is not None and len(input_ids) > rules.max_length:
        raise EntryError(f"{where}: {len(input_ids)} tokens, more than max_length {rules.max_length}")
    bad_id = next((i for i in input_ids if not 0 <= i < rules.vocab_size), None)
    if bad_id is not None:
        raise EntryError(f"{where}: token id {bad_id} is outside the vocabulary (size {rules.vocab_size})")
    misaligned = next(
        (i for i, (t, y) in enumerate(zip(input_ids, labels, strict=True)) if y not in (IGNORE_INDEX, t)), None
    )
    if misaligned is not None:
        raise EntryError(
            f"{where}: labels[{misaligned}] is {labels[misaligned]}, expected -100 or input_ids[{misaligned}] "
            f"({input_ids[misaligned]}); labels must not be shifted"
        )
    if all(y == IGNORE_INDEX for y in labels):
        raise EntryError(f"{where}: no trained token (every label is -100)")
    if rules.bos_id is not None and input_ids[:2] == [rules.bos_id, rules.bos_id]:
        raise EntryError(
            f"{where}: starts with BOS twice (the template already adds it; tokenize without special tokens)"
        )
    return {"input_ids": input_ids, "labels": labels}


def read_tokenized_split(channel_dir: Path, split: str, rules: TokenRules) -> list[TokenizedRow]:
    path = split_file(channel_dir, split)
    rows = [check_tokenized(row, rules, f"{path.name} line {n}") for n, row in read_jsonl(path)]
    if not rows:
        raise EntryError(f"{path} has no rows")
    return rows


def _conversation(row: dict[str, Any], where: str) -> tuple[tuple[dict[str, Any], ...], str]:
    """A conversation row's messages before its last assistant message, and that message's content."""
    messages = row["messages"]
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
    ):
        raise EntryError(f"{where}: `messages` must be a list of objects with a string `role`")
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not any(m["role"] == "user" for m in messages[:last]):
        raise EntryError(f"{where}: `messages` needs a user message followed by an assistant message to answer")
    reference = row.get("reference", messages[last].get("content"))
    if not isinstance(reference, str):
        raise EntryError(f"{where}: the last assistant message's `content` must be a string (or set `reference`)")
    return tuple(messages[:last]), reference


def _eval_row(row: dict[str, Any], where: str) -> EvalRow:
    prompt, reference = row.get("prompt"), row.get("reference")
    messages = None
    if prompt is None and "messages" in row:
        messages, reference = _conversation(row, where)
        prompt = ""
    elif not isinstance(prompt, str) or not prompt:
        raise EntryError(f"{where}: `prompt` must be a non-empty string")
    if not isinstance(reference, str):
        raise EntryError(f"{where}: `reference` must be a string")
    options = row.get("options")
    if options is None:
        return EvalRow(prompt, reference, messages=messages)
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise EntryError(f"{where}: `options` must be a list of at least two strings")
    answer_index = row.get("answer_index")
    if answer_index is None:
        if reference not in options:
            raise EntryError(f"{where}: `options` without `answer_index`, and `reference` is none of the options")
        answer_index = options.index(reference)
    if not isinstance(answer_index, int) or isinstance(answer_index, bool) or not 0 <= answer_index < len(options):
        raise EntryError(f"{where}: `answer_index` must be an index into `options`")
    return EvalRow(prompt, reference, tuple(options), answer_index, messages)


def read_eval_split(channel_dir: Path, split: str = "test") -> list[EvalRow]:
    path = split_file(channel_dir, split)
    rows = [_eval_row(row, f"{path.name} line {n}") for n, row in read_jsonl(path)]
    if not rows:
        raise EntryError(f"{path} has no rows")
    return rows


class TokenizedDataset(torch.utils.data.Dataset):
    """A list of {input_ids, labels} rows, as the Trainer's map-style dataset."""

    def __init__(self, rows: list[TokenizedRow]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> TokenizedRow:
        return self.rows[index]


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation of the rows drawn from (seed, epoch), the epoch read from the Trainer when an epoch starts.

    The Trainer resumes mid-epoch through accelerate's skip_first_batches, which rebuilds the dataloader and re-seeds
    accelerate's own sampler with epoch 0 (accelerate 1.10), so the rest of an interrupted epoch would be drawn in
    epoch 0's order: rows seen twice, others never. This sampler has no set_epoch to reset; it asks for the current
    epoch (the Trainer's state.epoch, restored from the checkpoint: 6.67 after two thirds of the seventh epoch) and
    draws the same order the interrupted run used.
    """

    def __init__(self, size: int, seed: int, current_epoch: Callable[[], float]) -> None:
        self.size = size
        self.seed = seed
        self.current_epoch = current_epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + int(self.current_epoch()))
        yield from torch.randperm(self.size, generator=generator).tolist()


class PaddingCollator:
    """Right-pads a batch to its longest row: pad id in input_ids, -100 in labels, 0 in attention_mask."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[TokenizedRow]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        input_ids, labels, attention_mask = [], [], []
        for f in features:
            gap = width - len(f["input_ids"])
            input_ids.append(f["input_ids"] + [self.pad_id] * gap)
            labels.append(f["labels"] + [IGNORE_INDEX] * gap)
            attention_mask.append([1] * len(f["input_ids"]) + [0] * gap)
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(attention_mask, dtype=torch.long),
        }


def make_collator(pad_id: int, packing: bool) -> PaddingCollator | DataCollatorWithFlattening:
    """Padding, or with `packing` transformers' padding-free flattening.

    Flattening concatenates the batch into one row with position_ids restarting at 0 for each example and -100 on
    each example's first label. transformers 4.56 turns those position_ids into a block-diagonal mask for sdpa and
    eager attention, and into cu_seqlens for flash attention, so examples never attend to each other.
    """
    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    return PaddingCollator(pad_id)


def rows_without(rows: list[TokenizedRow], token_id: int) -> int:
    """How many rows never train `token_id` (the end-of-turn token: without it the model does not learn to stop)."""
    return sum(1 for row in rows if token_id not in row["labels"])
