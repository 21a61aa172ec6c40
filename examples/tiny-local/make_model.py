"""Builds the tiny model of this example into ./model: a random Llama-architecture model and its tokenizer.

The tokenizer is a byte-level BPE (the Llama 3 kind) trained on the questions and answers of data.jsonl, with
Llama-3-style special tokens, a post-processor that adds BOS and a Llama-3-style chat template. The model is a
randomly initialised LlamaForCausalLM (hidden size 64, 2 layers): it knows nothing, it only has the shape of a
real one, so that `tunec run tiny.tune` trains, merges and evaluates it on a CPU in a minute or two.

Nothing is downloaded and the output is deterministic. The small text files (config.json, tokenizer.json,
tokenizer_config.json, chat_template.jinja) are committed, so that `tunec check` works without running this
script; the weights (model.safetensors) and generation_config.json are not. Running it rewrites exactly those
six files.

Needs torch, transformers and tokenizers, e.g. the virtualenv that .ci/venv.sh creates:

    python make_model.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model"

BOS, END_OF_TEXT, EOT, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, END_OF_TEXT, "<|start_header_id|>", "<|end_header_id|>", EOT, PAD, "<|eom_id|>"]
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if tools %}{{- '<|start_header_id|>system<|end_header_id|>\\n\\nTools: ' }}"
    "{{- tools | map(attribute='function') | map(attribute='name') | join(', ') + '<|eot_id|>' }}{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message.tool_calls %}{%- for call in message.tool_calls %}{{- call.function | tojson }}{%- endfor %}"
    "{%- else %}{{- message['content'] | trim }}{%- endif %}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
"""Llama 3's layout; with `tools`, a system message names them (a tiny model has no room for their schemas), and an
assistant's tool calls are written as JSON (chat.tune trains on them). A conversation without tools renders as Llama
3's own template renders it."""
SYSTEM = "You answer in a few words."
"""The system prompt of tiny.tune, part of the tokenizer's training text."""

COMMITTED = ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]
GENERATED = ["model.safetensors", "generation_config.json"]


def corpus() -> list[str]:
    rows = [json.loads(line) for line in (HERE / "data.jsonl").read_text(encoding="utf-8").splitlines() if line]
    return [f"{SYSTEM} {row['question']} {row['answer']}" for row in rows] * 4


def build_tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bpe.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
        model_input_names=["input_ids", "attention_mask"],
    )


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids([EOT, END_OF_TEXT]),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.1,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def main() -> None:
    MODEL.mkdir(exist_ok=True)
    for name in COMMITTED + GENERATED:
        (MODEL / name).unlink(missing_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.save_pretrained(MODEL)
    tokenizer.save_pretrained(MODEL)
    # save_pretrained also writes special_tokens_map.json, which tokenizer_config.json makes redundant.
    (MODEL / "special_tokens_map.json").unlink(missing_ok=True)
    written = sorted(p.name for p in MODEL.iterdir())
    assert written == sorted(COMMITTED + GENERATED), written
    print(f"wrote {MODEL}: {', '.join(written)} ({len(tokenizer)} tokens)")


if __name__ == "__main__":
    main()
