"""evaluate.py's pieces in-process (which metrics, batching, cutting generations at the stop token, conversation rows)
and a multi-turn test split answered at its last user turn."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import LoraRun, evaluate_layout, expect_ok, load_script
from tinyllm import END_OF_TEXT, EOT, FACTS, PAD, SYSTEM, run_script, write_jsonl
from tunec_entry.config import parse_args_mapping
from tunec_entry.data import EvalRow, read_eval_split
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


def multi_turn(final_question: str, final_answer: str) -> list[dict[str, str]]:
    """Two earlier facts as turns, then the question to answer."""
    (q1, a1), (q2, a2) = FACTS[1], FACTS[3]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": q1},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": q2},
        {"role": "assistant", "content": a2},
        {"role": "user", "content": final_question},
        {"role": "assistant", "content": final_answer},
    ]


def test_conversation_rows_take_their_last_assistant_message_as_the_answer(tokenizer) -> None:
    rows = [
        {"messages": multi_turn("What do bees make?", "Honey")},
        {"messages": multi_turn("What is frozen water?", "Ice"), "reference": "ice"},
    ]
    path = Path(tempfile.mkdtemp()) / "test.jsonl"
    write_jsonl(path, rows)
    first, second = evaluate.render_conversations(tokenizer, read_eval_split(path.parent))
    assert (first.reference, second.reference) == ("Honey", "ice")
    assert first.prompt == tokenizer.apply_chat_template(
        multi_turn("What do bees make?", "Honey")[:-1], tokenize=False, add_generation_prompt=True
    )
    assert first.prompt.endswith("What do bees make?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert FACTS[1][1] in first.prompt, "the earlier turns are in the prompt"
    for bad, message in [
        ({"messages": [{"role": "user", "content": "hi"}]}, "needs a user message followed by an assistant"),
        ({"messages": [{"content": "hi"}]}, "a string `role`"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]}, "must be a string"),
    ]:
        write_jsonl(path, [bad])
        with pytest.raises(EntryError, match=message):
            read_eval_split(path.parent)


def test_a_multi_turn_test_split_is_answered_at_its_last_user_turn(
    lora_run: LoraRun, base_model: Path, tokenizer, tmp_path: Path
) -> None:
    """The same conversation as a prompt the data engine rendered and as messages: the model answers the last user
    turn, exactly as a greedy `generate` on that prompt does."""
    conversation = multi_turn(*FACTS[0])
    prompt = tokenizer.apply_chat_template(conversation[:-1], tokenize=False, add_generation_prompt=True)
    rows = [{"prompt": prompt, "reference": FACTS[0][1]}, {"messages": conversation}]
    merged = lora_run.merge_fp32.model_dir
    layout = evaluate_layout(tmp_path / "evaluate", base_model, rows, model=merged)
    expect_ok(run_script("evaluate.py", layout))
    predictions = [json.loads(line) for line in (layout.output_data_dir / "predictions.jsonl").read_text().splitlines()]
    assert [p["prompt"] for p in predictions] == [prompt, prompt]
    assert [p["reference"] for p in predictions] == [FACTS[0][1]] * 2
    assert predictions[0]["prediction"] == predictions[1]["prediction"]

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=model.generation_config.eos_token_id)
    new = out[0, ids.shape[1] :].tolist()
    stops = set(tokenizer.convert_tokens_to_ids([EOT, END_OF_TEXT]))
    cut = next((i for i, t in enumerate(new) if t in stops), len(new))
    assert predictions[0]["prediction"] == tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
