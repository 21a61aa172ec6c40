"""evaluate.py's pieces in-process: which metrics, batching, cutting generations at the stop token."""

from __future__ import annotations

import pytest
import torch

from conftest import load_script
from tinyllm import END_OF_TEXT, EOT, PAD
from tunec_entry.config import parse_args_mapping
from tunec_entry.data import EvalRow
from tunec_entry.failure import EntryError
from tunec_entry.tokens import resolve_special_tokens

evaluate = load_script("evaluate")

PLAIN = [EvalRow("p", "a")]
CHOICE = [EvalRow("p", "a"), EvalRow("q", "b", ("a", "b"), 1)]


def test_default_metrics_add_choice_accuracy_only_when_rows_have_options() -> None:
    args = parse_args_mapping({})
    assert evaluate.requested_metrics(args, PLAIN) == ("exact_match", "rouge_l")
    assert evaluate.requested_metrics(args, CHOICE) == ("exact_match", "rouge_l", "choice_accuracy")
    assert evaluate.requested_metrics(parse_args_mapping({"metrics": ["rouge_l"]}), CHOICE) == ("rouge_l",)
    with pytest.raises(EntryError, match="no test row has `options`"):
        evaluate.requested_metrics(parse_args_mapping({"metrics": ["choice_accuracy"]}), PLAIN)


def test_left_padding_aligns_the_prompt_ends() -> None:
    input_ids, attention_mask = evaluate.left_padded([[7, 8, 9], [5]], pad_id=0, device=torch.device("cpu"))
    assert input_ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_generations_are_cut_at_the_first_stop_token(tokenizer) -> None:
    special = resolve_special_tokens(tokenizer, parse_args_mapping({"pad_token": PAD, "stop_tokens": [END_OF_TEXT]}))
    paris = tokenizer("Paris", add_special_tokens=False)["input_ids"]
    eot, end, pad = tokenizer.convert_tokens_to_ids([EOT, END_OF_TEXT, PAD])
    stopped = evaluate.finish([*paris, eot, pad, pad], special, tokenizer)
    assert (stopped.text, stopped.new_tokens, stopped.stopped) == ("Paris", len(paris) + 1, True)
    other_stop = evaluate.finish([*paris, end, *paris], special, tokenizer)
    assert (other_stop.text, other_stop.stopped) == ("Paris", True)
    runaway = evaluate.finish(paris * 3, special, tokenizer)
    assert (runaway.text, runaway.new_tokens, runaway.stopped) == ("ParisParisParis", 3 * len(paris), False)


def test_generation_config_is_greedy_unless_a_temperature_is_set(tokenizer) -> None:
    special = resolve_special_tokens(tokenizer, parse_args_mapping({"pad_token": PAD}))
    greedy = evaluate.generation_config(parse_args_mapping({"max_new_tokens": 7}), special, 0)
    assert (greedy.do_sample, greedy.max_new_tokens, greedy.eos_token_id) == (False, 7, list(special.stop_ids))
    assert greedy.pad_token_id == special.pad_id
    sampled = evaluate.generation_config(parse_args_mapping({"temperature": 0.7}), special, 0)
    assert (sampled.do_sample, sampled.temperature) == (True, 0.7)
