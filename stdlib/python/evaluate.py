"""evaluate.py: generate answers for the test split and score them.

tunec runs it as a single-process job on a model: the merged model (the `model` channel, else
`model_name_or_path`), or a base model plus an adapter (the `adapter` channel or `adapter_path`), merged in memory.
The test split (`test` channel, test.jsonl) carries each prompt already rendered with the training chat template
and its generation prompt, so the model sees exactly the format it was trained on; prompts are tokenized without
special tokens because the template writes BOS itself. A multi-turn conversation's prompt holds every turn up to the
last user one, which the model answers. A row given as `messages` instead is rendered here, the same way, with the
model's chat template. Generation runs in batches of `batch_size`, is greedy unless
`temperature` is above 0, stops at every stop token and is capped at `max_new_tokens`.

Metrics (tunec_entry.scoring): exact_match and rouge_l on the generated text against `reference`, and, for rows
with `options`, choice_accuracy: the option with the highest log-likelihood (option tokens plus the end-of-turn
token, after the prompt) must be the one at `answer_index`.

Outputs: predictions.jsonl (one record per example) and report.json in SM_OUTPUT_DATA_DIR, and a copy of report.json
in SM_MODEL_DIR so it travels with the model artifact. Any error: exit status 1 and a one-line reason in the failure
file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from tunec_entry import architecture
from tunec_entry.config import TunecArgs, load_args
from tunec_entry.data import EvalRow, read_eval_split
from tunec_entry.failure import EntryError, configure_logging, run_entry
from tunec_entry.jobenv import JobEnv, config_path, parse_command_line, require_single_process, write_json
from tunec_entry.models import (
    adapter_source,
    has_tokenizer,
    inference_device_map,
    load_config,
    load_pretrained,
    load_tokenizer,
    merged_model,
    model_source,
    set_use_cache,
)
from tunec_entry.scoring import Scored, aggregate, best_option, score_example
from tunec_entry.tokens import SpecialTokens
from tunec_entry.usage import UsageMeter

log = logging.getLogger("tunec")

REPORT_FILE = "report.json"
PREDICTIONS_FILE = "predictions.jsonl"
SCHEMA = "tunec.eval-report/1"
DEFAULT_METRICS = ("exact_match", "rouge_l", "choice_accuracy")


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int
    stopped: bool


def requested_metrics(args: TunecArgs, rows: Sequence[EvalRow]) -> tuple[str, ...]:
    """`metrics`, or all three; choice_accuracy asked for explicitly needs rows with options."""
    has_options = any(row.options for row in rows)
    if args.metrics is None:
        return tuple(m for m in DEFAULT_METRICS if m != "choice_accuracy" or has_options)
    if "choice_accuracy" in args.metrics and not has_options:
        raise EntryError("`metrics` asks for choice_accuracy but no test row has `options`")
    return args.metrics


def render_conversations(tokenizer: PreTrainedTokenizerBase, rows: Sequence[EvalRow]) -> list[EvalRow]:
    """Rows given as conversations get their prompt: every message up to the last user turn, and the generation
    prompt."""
    return [
        row
        if row.messages is None
        else replace(
            row,
            prompt=tokenizer.apply_chat_template(list(row.messages), tokenize=False, add_generation_prompt=True),
        )
        for row in rows
    ]


def prompt_token_ids(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[EvalRow], max_length: int | None
) -> list[list[int]]:
    """Each prompt tokenized as rendered (no added special tokens); a doubled BOS or an overlong prompt is an error."""
    encoded = []
    for number, row in enumerate(rows, start=1):
        ids = tokenizer(row.prompt, add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None and ids[:2] == [tokenizer.bos_token_id] * 2:
            raise EntryError(f"test.jsonl row {number}: the prompt starts with BOS twice")
        if max_length is not None and len(ids) > max_length:
            raise EntryError(
                f"test.jsonl row {number}: the prompt has {len(ids)} tokens, more than max_length {max_length}"
            )
        encoded.append(ids)
    return encoded


def generation_config(args: TunecArgs, special: SpecialTokens, bos_id: int | None) -> GenerationConfig:
    sampling = {"do_sample": True, "temperature": args.temperature} if args.temperature > 0 else {"do_sample": False}
    return GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        eos_token_id=list(special.stop_ids),
        pad_token_id=special.pad_id,
        bos_token_id=bos_id,
        **sampling,
    )


def finish(tokens: list[int], special: SpecialTokens, tokenizer: PreTrainedTokenizerBase) -> Generation:
    """Cut at the first stop token and decode what came before it."""
    stop_at = next((i for i, token in enumerate(tokens) if token in special.stop_ids), None)
    answer = tokens if stop_at is None else tokens[:stop_at]
    text = tokenizer.decode(answer, skip_special_tokens=True).strip()
    return Generation(
        text=text, new_tokens=len(tokens) if stop_at is None else stop_at + 1, stopped=stop_at is not None
    )


def left_padded(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask for a batch, padded on the left so that every prompt ends at the same column."""
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return input_ids, attention_mask


@torch.no_grad()
def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[int]],
    special: SpecialTokens,
    config: GenerationConfig,
    batch_size: int,
) -> list[Generation]:
    """Batched generation, in the order of `prompts`."""
    generations = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = left_padded(prompts[start : start + batch_size], special.pad_id, model.device)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        for row in output[:, input_ids.shape[1] :].tolist():
            generations.append(finish(row, special, tokenizer))
    return generations


@torch.no_grad()
def option_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: list[int], options: Sequence[str], eot_id: int
) -> list[float]:
    """Log-likelihood of each option as the complete answer: its tokens and the end-of-turn token after the prompt."""
    scores = []
    for option in options:
        continuation = tokenizer(option, add_special_tokens=False)["input_ids"] + [eot_id]
        ids = torch.tensor([prompt + continuation], device=model.device)
        logits = model(input_ids=ids, use_cache=False).logits[0, len(prompt) - 1 : -1].float()
        targets = torch.tensor(continuation, device=model.device).unsqueeze(1)
        scores.append(float(torch.log_softmax(logits, dim=-1).gather(1, targets).sum()))
    return scores


def prediction_record(
    index: int, row: EvalRow, generation: Generation, scored: Scored, scores: list[float] | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "index": index,
        "prompt": row.prompt,
        "reference": row.reference,
        "prediction": generation.text,
        "exact_match": scored.exact_match,
        "rouge_l": scored.rouge_l,
        "stopped": generation.stopped,
        "new_tokens": generation.new_tokens,
    }
    if row.options is not None and scores is not None:
        record.update(
            options=list(row.options),
            answer_index=row.answer_index,
            chosen_index=best_option(scores),
            option_scores=scores,
            correct_choice=scored.correct_choice,
        )
    return record


def build_report(
    source: str,
    adapter_dir: Path | None,
    metrics: Sequence[str],
    scored: Sequence[Scored],
    generations: Sequence[Generation],
    args: TunecArgs,
    special: SpecialTokens,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "model": source,
        "adapter": str(adapter_dir) if adapter_dir is not None else None,
        "num_examples": len(scored),
        "num_choice_examples": sum(1 for s in scored if s.correct_choice is not None),
        "metrics": aggregate(scored, metrics),
        "stopped_fraction": sum(g.stopped for g in generations) / len(generations),
        "mean_new_tokens": sum(g.new_tokens for g in generations) / len(generations),
        "generation": {
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "batch_size": args.batch_size,
            "stop_token_ids": list(special.stop_ids),
            "answer_delimiter": args.answer_delimiter,
        },
    }


def load_model(
    source: str, adapter_dir: Path | None, tokenizer: PreTrainedTokenizerBase, args: TunecArgs
) -> PreTrainedModel:
    """The model to evaluate, in torch_dtype and its own architecture, with the KV cache on: `source` itself, or
    `source` + the adapter."""
    config = load_config(source, args)
    architecture.check_attention(args, config)
    if adapter_dir is not None:
        model = merged_model(
            source,
            adapter_dir,
            tokenizer,
            args,
            device_map=inference_device_map(),
            attn_implementation=args.attn_implementation,
        )
    else:
        model = load_pretrained(
            source,
            config,
            args,
            purpose="evaluate",
            attn_implementation=args.attn_implementation,
            device_map=inference_device_map(),
        )
    set_use_cache(model, True)
    return model.eval()


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    meter = UsageMeter("evaluate")
    options = parse_command_line("evaluate.py", "Generate answers for the test split and score them.", argv)
    env = JobEnv.from_environ(environ)
    args = load_args(config_path(options.config, environ, env))
    require_single_process(env, "evaluate.py")
    rows = read_eval_split(env.require_channel("test"))
    metrics = requested_metrics(args, rows)
    source = model_source(args, env)
    adapter_dir = adapter_source(args, env)
    tokenizer_source = str(adapter_dir) if adapter_dir is not None and has_tokenizer(adapter_dir) else source
    tokenizer, special = load_tokenizer(tokenizer_source, args)
    rows = render_conversations(tokenizer, rows)
    prompts = prompt_token_ids(tokenizer, rows, args.max_length)

    set_seed(args.training.get("seed", 42))
    model = load_model(source, adapter_dir, tokenizer, args)
    special = special.with_stops(model.generation_config.eos_token_id)
    log.info("generating answers for %d test rows (batch %d)", len(rows), args.batch_size)
    config = generation_config(args, special, tokenizer.bos_token_id)
    generating = time.perf_counter()
    generations = generate_answers(model, tokenizer, prompts, special, config, args.batch_size)
    generated_seconds = time.perf_counter() - generating

    records, scored = [], []
    for index, (row, prompt, generation) in enumerate(zip(rows, prompts, generations, strict=True)):
        scores = option_scores(model, tokenizer, prompt, row.options, special.eot_id) if row.options else None
        result = score_example(
            generation.text,
            row.reference,
            delimiter=args.answer_delimiter,
            chosen_index=best_option(scores) if scores else None,
            answer_index=row.answer_index,
        )
        scored.append(result)
        records.append(prediction_record(index, row, generation, result, scores))

    # Channel paths as SageMaker names them: a report does not depend on the folder a job ran in.
    named_adapter = Path(env.portable(adapter_dir)) if adapter_dir is not None else None
    report = build_report(env.portable(source), named_adapter, metrics, scored, generations, args, special)
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    with (env.output_data_dir / PREDICTIONS_FILE).open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    write_json(env.output_data_dir / REPORT_FILE, report)
    write_json(env.model_dir / REPORT_FILE, report)
    log.info("metrics: %s", json.dumps(report["metrics"]))
    # The rate is that of generation, the job's dominant cost; the wall time covers the whole job.
    meter.write(env.output_data_dir, tokens=sum(g.new_tokens for g in generations), tokens_seconds=generated_seconds)
    return 0


if __name__ == "__main__":
    configure_logging()
    sys.exit(run_entry(main, os.environ))
