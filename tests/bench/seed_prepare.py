#!/usr/bin/env python3
"""The seed's data preparation in Python, for benchmarking tunec's data step against it.

As the AWS workflow ("Scale LLM fine-tuning with Hugging Face and Amazon SageMaker AI") writes it:
`datasets.load_dataset("json", ...)`, a `map` that builds the messages (deep-thinking system
prompt, user = question, assistant = "<think>\\n{reasoning}\\n</think>\\n\\n{answer}") and renders
them with `tokenizer.apply_chat_template(messages, tokenize=False)`, then the tokenizer on the
text, then `to_json`. The seed calls `tokenizer(text)`, which adds a second BOS after the
template's; here `add_special_tokens=False` so both sides do the same work (tunec writes one BOS).
Truncation to seq_len 4096 as tunec's `overflow = truncate` (no generated row comes near it).

The datasets cache goes to a fresh folder inside OUT_DIR, so no run reuses an earlier run's map.

Usage: seed_prepare.py IN.jsonl OUT_DIR [--num-proc N] [--tokenizer DIR] [--template FILE]
Needs: transformers, datasets (tests/bench/run_data_bench.sh makes a venv).
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SYSTEM = (
    "You are a deep-thinking AI assistant.\n\nFor every user question, first write your thoughts and "
    "reasoning inside <think>...</think> tags, then provide your answer."
)
ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("out_dir")
    p.add_argument("--num-proc", type=int, default=2)
    p.add_argument("--tokenizer", default=os.path.expanduser("~/.cache/tunec/fixtures/llama3_1"))
    p.add_argument("--template", default=str(ROOT / "tests/data/llama3_1_instruct.jinja"))
    p.add_argument("--seq-len", type=int, default=4096)
    a = p.parse_args()

    out = Path(a.out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cache = out / "hf-cache"
    start = time.perf_counter()

    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer)
    tokenizer.chat_template = Path(a.template).read_text()
    num_proc = a.num_proc if a.num_proc > 1 else None

    ds = datasets.load_dataset("json", data_files=a.input, split="train", cache_dir=str(cache))

    def render(row):
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": f"<think>\n{row['reasoning']}\n</think>\n\n{row['answer']}"},
        ]
        return {"text": tokenizer.apply_chat_template(messages, tokenize=False, date_string="26 Jul 2024")}

    ds = ds.map(render, remove_columns=ds.column_names, num_proc=num_proc)

    def tokenize(batch):
        return tokenizer(batch["text"], add_special_tokens=False, truncation=True, max_length=a.seq_len)

    ds = ds.map(tokenize, batched=True, num_proc=num_proc)
    ds.to_json(str(out / "train.jsonl"), num_proc=num_proc)
    seconds = time.perf_counter() - start

    # After the timed region, on the memory-mapped Arrow column (no copy into Python lists).
    import pyarrow.compute as pc

    tokens = pc.sum(pc.list_value_length(ds.data.column("input_ids"))).as_py()
    rows = len(ds)
    shutil.rmtree(cache, ignore_errors=True)
    print(
        json.dumps(
            {
                "impl": f"seed python num_proc={a.num_proc}",
                "rows": rows,
                "tokens": tokens,
                "mean_tokens": tokens / rows,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "tokens_per_s": tokens / seconds,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
