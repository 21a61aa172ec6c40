"""Pad, end-of-turn and stop tokens: the pad token is never a stop token."""

from __future__ import annotations

import copy

import pytest

from tinyllm import END_OF_TEXT, EOT, PAD
from tunec_entry.config import parse_args_mapping
from tunec_entry.failure import EntryError
from tunec_entry.tokens import resolve_special_tokens


def ids(tokenizer, *tokens: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(tokens))


def test_args_pad_token_and_stop_order(tokenizer) -> None:
    special = resolve_special_tokens(tokenizer, parse_args_mapping({"pad_token": PAD, "stop_tokens": [END_OF_TEXT]}))
    assert (special.pad_token, special.pad_id) == (PAD, ids(tokenizer, PAD)[0])
    assert (special.eot_token, special.eot_id) == (EOT, ids(tokenizer, EOT)[0])  # the EOS when eot_token is unset
    assert special.stop_ids == tuple(ids(tokenizer, EOT, END_OF_TEXT))  # end-of-turn first, no duplicate EOS


def test_with_stops_appends_a_generation_configs_eos_ids_once(tokenizer) -> None:
    special = resolve_special_tokens(tokenizer, parse_args_mapping({"pad_token": PAD}))
    eot, end = ids(tokenizer, EOT, END_OF_TEXT)
    assert special.with_stops([end, eot]).stop_ids == (eot, end)
    assert special.with_stops(end).stop_ids == (eot, end)
    assert special.with_stops(None).stop_ids == (eot,)


def test_the_tokenizers_pad_token_is_kept_when_it_is_not_a_stop_token(tokenizer) -> None:
    padded = copy.deepcopy(tokenizer)
    padded.pad_token = PAD
    assert resolve_special_tokens(padded, parse_args_mapping({})).pad_token == PAD


@pytest.mark.parametrize(
    ("tokenizer_pad", "args", "message"),
    [
        (None, {}, "no pad token: set `pad_token`"),
        (EOT, {}, "the tokenizer's pad token '<|eot_id|>' is a stop token"),
        (None, {"pad_token": EOT}, "args.yaml `pad_token` '<|eot_id|>' is a stop token"),
        (None, {"pad_token": END_OF_TEXT, "stop_tokens": [END_OF_TEXT]}, "is a stop token"),
        (None, {"pad_token": "<|reserved_special_token_0|>"}, "is not a single token of the tokenizer"),
        (None, {"pad_token": PAD, "eot_token": "<|im_end|>"}, "end-of-turn token '<|im_end|>' is not a single token"),
    ],
)
def test_a_pad_token_that_would_mask_the_stop_token_is_refused(tokenizer, tokenizer_pad, args, message) -> None:
    candidate = copy.deepcopy(tokenizer)
    candidate.pad_token = tokenizer_pad
    with pytest.raises(EntryError) as caught:
        resolve_special_tokens(candidate, parse_args_mapping(args))
    assert message in str(caught.value)
