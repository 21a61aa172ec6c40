#!/usr/bin/env python3
"""Raw tokenization alone: the physical limit of the data step on this machine.

Renders every row of IN.jsonl once, outside the timed region, into the exact text of the Llama
3.1 Instruct template (the same text tunec and `apply_chat_template` produce for the deep-thinking
system prompt; the first rows are checked against `apply_chat_template` when transformers is
installed), then times only `tokenizers.Tokenizer.encode_batch(texts, add_special_tokens=False)`
on all cores (the Rust `tokenizers` crate, as tunec uses, behind Python bindings), in chunks of
CHUNK texts so that the ids never all sit in memory at once.

Usage: raw_tokenize.py IN.jsonl [--tokenizer DIR] [--chunk N]
Prints one JSON line: rows, tokens, mean tokens, encode seconds (wall and CPU), rows/s, tokens/s.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from seed_prepare_text import SYSTEM, render  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("--tokenizer", default=os.path.expanduser("~/.cache/tunec/fixtures/llama3_1"))
    p.add_argument("--chunk", type=int, default=10_000)
    a = p.parse_args()

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    with open(a.input, encoding="utf-8") as f:
        texts = [render(json.loads(line)) for line in f if line.strip()]
    check(texts, a.input, a.tokenizer)

    rows = len(texts)
    tokens = 0
    seconds = 0.0
    cpu = 0.0  # CPU seconds of the whole process (all tokenizer threads) during the encodes
    for i in range(0, rows, a.chunk):
        chunk = texts[i : i + a.chunk]
        start, start_cpu = time.perf_counter(), time.process_time()
        encodings = tok.encode_batch(chunk, add_special_tokens=False)
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        tokens += sum(len(e.ids) for e in encodings)
        del encodings
    print(
        json.dumps(
            {
                "impl": "raw tokenizers encode_batch",
                "rows": rows,
                "tokens": tokens,
                "mean_tokens": tokens / rows,
                "seconds": seconds,
                "rows_per_s": rows / seconds,
                "tokens_per_s": tokens / seconds,
                "cpu_seconds": cpu,
                "tokens_per_cpu_s": tokens / cpu,
            }
        )
    )


def check(texts, input_path, tokenizer_dir, n=50):
    """The rendered text equals apply_chat_template's on the first n rows (skipped without transformers)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return
    from pathlib import Path

    hf = AutoTokenizer.from_pretrained(tokenizer_dir)
    hf.chat_template = (Path(__file__).resolve().parents[2] / "tests/data/llama3_1_instruct.jinja").read_text()
    with open(input_path, encoding="utf-8") as f:
        for k, line in zip(range(n), f, strict=False):
            row = json.loads(line)
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": f"<think>\n{row['reasoning']}\n</think>\n\n{row['answer']}"},
            ]
            want = hf.apply_chat_template(messages, tokenize=False, date_string="26 Jul 2024")
            assert texts[k] == want, f"row {k}: the fast rendering differs from apply_chat_template"


if __name__ == "__main__":
    main()
