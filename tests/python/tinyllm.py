"""Test fixtures made from nothing: a tiny Llama, its tokenizer, pre-tokenized splits and a SageMaker job layout.

The tokenizer is a real byte-level BPE (the Llama 3 kind), trained here on the test sentences, with Llama-3-style
special tokens, a post-processor that adds BOS (as Llama 3's does) and a Llama-3-style chat template. The model is a
randomly initialised LlamaForCausalLM with hidden size 64 and 2 layers. Nothing is downloaded.

`tokenized_row` plays the data engine: it renders a conversation with the chat template and tokenizes the prompt
and the answer without special tokens, masking everything but the answer and its end-of-turn token.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "stdlib" / "python"


def tunec_binary() -> str:
    """The tunec binary: $TUNEC_BIN (set by .ci/run), else the repository's target folder."""
    for candidate in (os.environ.get("TUNEC_BIN"), REPO / "target/debug/tunec", REPO / "target/release/tunec"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise AssertionError("no tunec binary: run the tests through .ci/run, or cargo build -p tunec-runtime first")


BOS, END_OF_TEXT, EOT, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>"
SPECIAL_TOKENS = [BOS, END_OF_TEXT, "<|start_header_id|>", "<|end_header_id|>", EOT, PAD, "<|eom_id|>"]
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
INIT = 0.1
"""initializer_range of the tiny model: large enough for LoRA to move its logits within a few steps."""
SYSTEM = "You answer in one word."

FACTS = [
    ("What is the capital of France?", "Paris"),
    ("What color is a clear sky?", "Blue"),
    ("How many legs does a spider have?", "Eight"),
    ("What do bees make?", "Honey"),
    ("Which planet is called red?", "Mars"),
    ("What is frozen water?", "Ice"),
]
"""The memorisable training set: six one-word answers."""


def build_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    corpus = [f"{SYSTEM} {question} {answer}" for question, answer in FACTS] * 4
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=330,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    bos_id = bpe.token_to_id(BOS)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOT,
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
        model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_model(
    folder: Path, tokenizer: PreTrainedTokenizerFast, seed: int = 0, *, tie_word_embeddings: bool = False
) -> LlamaForCausalLM:
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
        tie_word_embeddings=tie_word_embeddings,
        initializer_range=INIT,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return model


def messages(question: str, answer: str | None = None) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return turns + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def tokenized_row(tokenizer: PreTrainedTokenizerFast, question: str, answer: str) -> dict[str, Any]:
    """One row as the data engine writes it: rendered text, input_ids, assistant-only labels."""
    prompt = tokenizer.apply_chat_template(messages(question), add_generation_prompt=True, tokenize=False)
    text = tokenizer.apply_chat_template(messages(question, answer), tokenize=False)
    assert text == prompt + answer + EOT
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer + EOT, add_special_tokens=False)["input_ids"]
    return {
        "text": text,
        "input_ids": prompt_ids + answer_ids,
        "labels": [-100] * len(prompt_ids) + answer_ids,
    }


def eval_row(
    tokenizer: PreTrainedTokenizerFast, question: str, answer: str, options: list[str] | None = None
) -> dict[str, Any]:
    """A test-split row: the training row plus prompt, reference and optional options/answer_index."""
    row = tokenized_row(tokenizer, question, answer)
    row["prompt"] = tokenizer.apply_chat_template(messages(question), add_generation_prompt=True, tokenize=False)
    row["reference"] = answer
    if options is not None:
        row["options"] = options
        row["answer_index"] = options.index(answer)
    return row


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@dataclass
class Layout:
    """A SageMaker job's folders under `root` (standing in for /opt/ml) and the SM_* variables that name them."""

    root: Path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.root / "output" / "data"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def config_path(self) -> Path:
        return self.channel("config") / "args.yaml"

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    def add_channel(self, name: str) -> Path:
        path = self.channel(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_args(self, args: dict[str, Any]) -> Path:
        self.add_channel("config")
        self.config_path.write_text(yaml.safe_dump(args, sort_keys=False), encoding="utf-8")
        return self.config_path

    def environ(self) -> dict[str, str]:
        """SM_* variables as ModelTrainer's environment.py exports them, for a CPU-only instance."""
        for folder in (self.model_dir, self.output_data_dir):
            folder.mkdir(parents=True, exist_ok=True)
        data = self.root / "input" / "data"
        channels = sorted(p.name for p in data.iterdir()) if data.is_dir() else []
        env = {
            "SM_INPUT_DIR": str(self.root / "input"),
            "SM_MODEL_DIR": str(self.model_dir),
            "SM_OUTPUT_DIR": str(self.root / "output"),
            "SM_OUTPUT_DATA_DIR": str(self.output_data_dir),
            "SM_NUM_GPUS": "0",
            "SM_RESOURCE_CONFIG": json.dumps(
                {"current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": "local"}
            ),
            "TUNEC_CHECKPOINT_DIR": str(self.checkpoint_dir),
        }
        env.update({f"SM_CHANNEL_{name.upper()}": str(self.channel(name)) for name in channels})
        return env


def script_environ(layout: Layout) -> dict[str, str]:
    """The process environment for a script run: this one's, with the job's SM_* variables and no GPU."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNEC_"))}
    env.update(layout.environ())
    env.update({"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONHASHSEED": "0"})
    return env


def command(script: str, layout: Layout, nproc: int | None) -> list[str]:
    """`python <script> --config <args.yaml>`, or under torchrun with `nproc` processes (the ModelTrainer driver)."""
    launcher = [sys.executable]
    if nproc is not None:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*launcher, str(SCRIPTS / script), "--config", str(layout.config_path)]


def run_script(
    script: str, layout: Layout, *, nproc: int | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run stdlib/python/<script> as SageMaker would, from the code folder, and wait for it."""
    return subprocess.run(
        command(script, layout, nproc),
        cwd=SCRIPTS,
        env=script_environ(layout),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_script(script: str, layout: Layout, *, nproc: int | None = None) -> subprocess.Popen[str]:
    """Start stdlib/python/<script> without waiting; stderr is merged into stdout."""
    return subprocess.Popen(
        command(script, layout, nproc),
        cwd=SCRIPTS,
        env=script_environ(layout),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float) -> None:
    """Wait until `path` exists while `process` still runs."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the script ended early:\n{process.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)
