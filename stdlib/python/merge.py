"""merge.py: merge a LoRA/QLoRA adapter into its base model and save a model ready for inference.

tunec runs it as its own single-process job after training: never inside the FSDP job (PEFT cannot merge sharded
weights) and never on a 4-bit base (re-quantizing base + update rounds the update away). It loads the base from
`model_name_or_path` (or a `model` channel) in `torch_dtype` (bfloat16 unless args.yaml says otherwise; a QLoRA
adapter is merged into the 16-bit base it was quantized from), applies the adapter from the `adapter` channel (or
`adapter_path`) with PeftModel.from_pretrained, and merges with merge_and_unload, which returns the merged model
rather than changing the wrapper in place.

The merged model is saved to SM_MODEL_DIR as sharded safetensors (`max_shard_size`) with use_cache restored, a
generation_config whose eos_token_id lists every stop token (end-of-turn first) and the tokenizer with the training
chat template. Then the saved model is loaded back and generates a short answer: smoke.json in SM_OUTPUT_DATA_DIR
records the prompt, the completion and whether it stopped on a stop token. Any error: exit status 1 and a one-line
reason in the failure file.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import cached_file

from tunec_entry import architecture
from tunec_entry.config import TunecArgs, load_args
from tunec_entry.data import read_eval_split
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
    prepare_for_inference,
)
from tunec_entry.tokens import SpecialTokens
from tunec_entry.usage import UsageMeter

log = logging.getLogger("tunec")

SMOKE_FILE = "smoke.json"
SMOKE_NEW_TOKENS = 32
SMOKE_QUESTION = "Hello! Who are you?"
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def check_unquantized(source: str, args: TunecArgs) -> None:
    """Refuse a pre-quantized base checkpoint (for example a *-bnb-4bit repository); MXFP4 is dequantized."""
    config = load_config(source, args)
    if getattr(config, "quantization_config", None) and not architecture.is_mxfp4(config):
        raise EntryError(f"the base model {source} is quantized; merge into its 16-bit checkpoint instead")


def copy_processor_files(source: str, out: Path) -> list[str]:
    """The base's image processor files, so that a merged multimodal checkpoint is complete (AutoProcessor)."""
    copied = []
    for name in PROCESSOR_FILES:
        found = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        if found is not None and not (out / name).exists():
            shutil.copyfile(found, out / name)
            copied.append(name)
    return copied


def smoke_prompt(tokenizer: PreTrainedTokenizerBase, env: JobEnv) -> str:
    """The first test prompt when a `test` channel is there, else a greeting rendered with the chat template."""
    if env.channel("test") is not None:
        return read_eval_split(env.require_channel("test"))[0].prompt
    messages = [{"role": "user", "content": SMOKE_QUESTION}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@torch.no_grad()
def smoke_generation(model_dir: Path, prompt: str, special: SpecialTokens, args: TunecArgs) -> dict[str, Any]:
    """Load the saved model back and generate greedily with its saved generation_config's stop ids."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_pretrained(
        str(model_dir), load_config(str(model_dir), args), args, purpose="evaluate", device_map=inference_device_map()
    )
    input_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(model.device)
    output = model.generate(input_ids=input_ids, max_new_tokens=SMOKE_NEW_TOKENS, do_sample=False)
    new_tokens = output[0, input_ids.shape[1] :].tolist()
    return {
        "prompt": prompt,
        "completion": tokenizer.decode(new_tokens, skip_special_tokens=True),
        "new_tokens": len(new_tokens),
        "stopped": any(token in special.stop_ids for token in new_tokens),
        "stop_token_ids": list(special.stop_ids),
    }


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    meter = UsageMeter("merge")
    options = parse_command_line("merge.py", "Merge a LoRA adapter into its base model.", argv)
    env = JobEnv.from_environ(environ)
    args = load_args(config_path(options.config, environ, env))
    require_single_process(env, "merge.py")
    adapter_dir = adapter_source(args, env)
    if adapter_dir is None:
        raise EntryError("no adapter to merge: provide an `adapter` channel or set `adapter_path` in args.yaml")
    source = model_source(args, env)
    check_unquantized(source, args)
    tokenizer, special = load_tokenizer(str(adapter_dir) if has_tokenizer(adapter_dir) else source, args)
    if not tokenizer.chat_template:
        raise EntryError("the tokenizer has no chat template to ship with the merged model: set `chat_template`")

    log.info("merging %s into %s in %s", adapter_dir, source, args.torch_dtype)
    model = merged_model(source, adapter_dir, tokenizer, args)
    special = prepare_for_inference(model, special)
    env.model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(env.model_dir, safe_serialization=True, max_shard_size=args.max_shard_size)
    tokenizer.save_pretrained(env.model_dir)
    if architecture.is_multimodal(model.config):
        copied = copy_processor_files(source, env.model_dir)
        log.info(
            "multimodal checkpoint: vision tower saved unchanged; copied %s", ", ".join(copied) or "no processor file"
        )
    del model

    smoke = smoke_generation(env.model_dir, smoke_prompt(tokenizer, env), special, args)
    log.info(
        "smoke generation (%d tokens, stopped: %s): %r", smoke["new_tokens"], smoke["stopped"], smoke["completion"]
    )
    write_json(env.output_data_dir / SMOKE_FILE, smoke)
    meter.write(env.output_data_dir)
    return 0


if __name__ == "__main__":
    configure_logging()
    sys.exit(run_entry(main, os.environ))
