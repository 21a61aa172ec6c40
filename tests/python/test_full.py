"""Full fine-tuning with packing: train.py saves a complete model that is ready for inference."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from conftest import expect_ok, lora_args
from tinyllm import CHAT_TEMPLATE, END_OF_TEXT, EOT, FACTS, PAD, Layout, run_script, tokenized_row, write_jsonl
from tunec_entry.data import EpochSampler


def test_full_fine_tuning_with_packing(tmp_path: Path, base_model: Path, tokenizer) -> None:
    rows = [tokenized_row(tokenizer, q, a) for q, a in FACTS]
    job = Layout(tmp_path)
    write_jsonl(job.add_channel("train") / "train.jsonl", rows)
    job.write_args(
        lora_args(
            base_model,
            method="full",
            packing=True,
            modules_to_save=[],
            learning_rate="1e-3",
            max_steps=4,
            save_steps=4,
            logging_steps=1,
        )
    )
    expect_ok(run_script("train.py", job))

    assert (job.model_dir / "model.safetensors").is_file()
    assert not (job.model_dir / "adapter_config.json").exists()
    config = json.loads((job.model_dir / "config.json").read_text())
    assert config["use_cache"] is True
    eot, end = tokenizer.convert_tokens_to_ids([EOT, END_OF_TEXT])
    assert GenerationConfig.from_pretrained(job.model_dir).eos_token_id == [eot, end]
    saved = AutoTokenizer.from_pretrained(job.model_dir)
    assert (saved.pad_token, saved.chat_template) == (PAD, CHAT_TEMPLATE)
    assert AutoModelForCausalLM.from_pretrained(job.model_dir).num_parameters() > 0

    metrics = json.loads((job.output_data_dir / "metrics.json").read_text())
    assert metrics["method"] == "full" and metrics["global_step"] == 4
    assert metrics["trainable_parameters"] == metrics["total_parameters"]
    # 4 steps of 2 packed rows: all 6 rows (epoch 0), then the first 2 of epoch 1's order; packing adds no padding.
    second_epoch = list(EpochSampler(len(rows), seed=1, current_epoch=lambda: 1.0))[:2]
    lengths = [len(row["input_ids"]) for row in rows]
    assert metrics["train_tokens"] == sum(lengths) + sum(lengths[i] for i in second_epoch)
    assert all(record["train_loss"] > 0 for record in metrics["history"])
