"""Measure the GPU memory of real training steps and set it beside tunec's estimate.

    python tests/gpu/measure_memory.py --model meta-llama/Llama-3.1-8B-Instruct --method qlora \
        --seq 2048 --batch 1 --gpus 1 --out result.json [--fsdp] [--offload] [--layers 8]

It builds a randomly initialised model with the architecture of a catalog row (stdlib/catalog/models.toml;
nothing is downloaded), writes a pipeline that trains it with the requested method, asks `tunec check
--format json` for the estimate and `tunec build` for the job's args.yaml, lays out the SageMaker folders, and
runs the real stdlib/python/train.py for a few steps (under torchrun with one process per GPU). train.py
records torch.cuda.max_memory_allocated and max_memory_reserved (the largest over ranks) in metrics.json; the
result file puts them beside the estimated per-GPU peak and its terms.

`--layers N` keeps only N decoder layers (the estimate is of the same truncated model, so the comparison stays
fair) to save time and disk; `--cpu` runs one step of a small model on the CPU, a smoke test of the harness
itself (no memory is measured then). The binary is $TUNEC_BIN, else target/release/tunec, else
target/debug/tunec.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "stdlib" / "python"
sys.path.insert(0, str(REPO / "tests" / "python"))

# An instance with the requested number of GPUs: the per-GPU estimate depends on the world size (FSDP
# sharding, NCCL buffers), not on the instance's own GPU memory, which is only the capacity it is compared with.
INSTANCE_FOR_GPUS = {1: "ml.g6e.xlarge", 4: "ml.g6e.12xlarge", 8: "ml.p5.48xlarge"}
# The dense families whose shape a catalog row gives in full (mixture-of-experts and multimodal rows
# need more than these keys to rebuild).
DENSE_MODEL_TYPES = {"llama", "mistral", "qwen2", "gemma2", "phi3"}


def tunec_binary() -> str:
    for candidate in (os.environ.get("TUNEC_BIN"), REPO / "target/release/tunec", REPO / "target/debug/tunec"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("no tunec binary: build it (cargo build --release -p tunec-runtime) or set TUNEC_BIN")


def catalog_row(model_id: str) -> dict[str, Any]:
    rows = tomllib.loads((REPO / "stdlib/catalog/models.toml").read_text(encoding="utf-8"))["model"]
    for row in rows:
        if row["id"].lower() == model_id.lower():
            return row
    raise SystemExit(f"`{model_id}` is not in stdlib/catalog/models.toml")


def build_model(row: dict[str, Any], folder: Path, layers: int | None, tiny: bool) -> int:
    """A randomly initialised model of the row's architecture, saved with a tokenizer; returns its vocab size."""
    import torch
    from tinyllm import build_tokenizer
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = build_tokenizer(folder)
    shape = {
        "hidden_size": row["hidden_size"],
        "intermediate_size": row["intermediate_size"],
        "num_hidden_layers": layers or row["num_layers"],
        "num_attention_heads": row["num_heads"],
        "num_key_value_heads": row["num_kv_heads"],
        "head_dim": row["head_dim"],
        "vocab_size": row["vocab_size"],
    }
    if tiny:
        shape.update(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            vocab_size=len(tokenizer),
        )
    if row["model_type"] not in DENSE_MODEL_TYPES:
        raise SystemExit(
            f"{row['id']}: the harness rebuilds dense models only ({', '.join(sorted(DENSE_MODEL_TYPES))}), "
            f"not {row['model_type']}"
        )
    config = AutoConfig.for_model(
        row["model_type"],
        **shape,
        max_position_embeddings=row["max_position_embeddings"],
        tie_word_embeddings=row["tied_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    return len(tokenizer)


def pipeline_text(args: argparse.Namespace, instance: str, rows: int) -> str:
    quant = "quant = nf4 { double_quant = true, compute = bf16, storage = bf16 }" if args.method == "qlora" else ""
    fsdp = f"fsdp = full_shard {{ auto_wrap = true, offload = {str(args.offload).lower()} }}" if args.fsdp else ""
    return f"""// Written by tests/gpu/measure_memory.py.
pipeline measure {{
  model m = local_model("model")
  dataset d = file("data.jsonl") {{
    columns = {{ text: string }}
    rows = {rows}
    mean_tokens = {args.seq}
  }}
  chat c = chat_template(d, tokenizer = m) {{
    user = "{{text}}"
    assistant = "{{text}}"
    seq_len = {args.seq}
    overflow = truncate
  }}
  train t = sft(m, data = c) {{
    method = {args.method} {{ r = {args.rank}, alpha = {2 * args.rank}, dropout = 0.05, targets = all_linear }}
    {quant}
    {fsdp}
    compute = "{instance}" x 1
    per_device_batch = {args.batch}
    grad_accum = 1
    max_steps = {args.steps}
    save_steps = {args.steps * 10}
    gradient_checkpointing = true
    attention = sdpa
  }}
}}
"""


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode not in (0, 1):
        raise SystemExit(f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct")
    parser.add_argument("--method", choices=["lora", "qlora", "full"], default="qlora")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=1, choices=sorted(INSTANCE_FOR_GPUS))
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--offload", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="smoke-test the harness on the CPU with a small model")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    started = time.time()
    work = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / f"tunec-measure-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    (work / "model").mkdir(parents=True)
    row = catalog_row(args.model)
    vocab = build_model(row, work / "model", args.layers, args.cpu)

    # Pre-tokenized rows of exactly `seq` tokens, every token trained: the data engine's output format.
    rng = random.Random(0)
    rows = args.batch * args.gpus * args.steps
    train = work / "opt_ml" / "input" / "data" / "train"
    train.mkdir(parents=True)
    with (train / "train.jsonl").open("w", encoding="utf-8") as out:
        for _ in range(rows):
            ids = [rng.randrange(3, vocab) for _ in range(args.seq)]
            out.write(json.dumps({"text": "", "input_ids": ids, "labels": ids}) + "\n")
    (work / "data.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    instance = INSTANCE_FOR_GPUS[args.gpus]
    (work / "measure.tune").write_text(pipeline_text(args, instance, rows), encoding="utf-8")

    tunec = tunec_binary()
    checked = json.loads(run([tunec, "check", "--format", "json", str(work / "measure.tune")]).stdout)
    node = next(n for n in checked["nodes"] if n["name"] == "t")
    estimate = node["estimate"]
    build = run([tunec, "build", str(work / "measure.tune"), "-o", str(work / "build")])
    if build.returncode != 0:
        raise SystemExit(f"tunec build refused the pipeline:\n{build.stderr}")

    layout = work / "opt_ml"
    config = layout / "input" / "data" / "config"
    config.mkdir(parents=True)
    # The job's paths are the container's; this layout stands in for /opt/ml.
    args_yaml = (work / "build" / "t" / "args.yaml").read_text(encoding="utf-8")
    (config / "args.yaml").write_text(args_yaml.replace('"/opt/ml/', f'"{layout}/'), encoding="utf-8")
    (layout / "input" / "data" / "base_model").symlink_to(work / "model", target_is_directory=True)
    for folder in ("model", "output/data", "checkpoints"):
        (layout / folder).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TUNEC_"))}
    env.update(
        {
            "SM_MODEL_DIR": str(layout / "model"),
            "SM_OUTPUT_DIR": str(layout / "output"),
            "SM_OUTPUT_DATA_DIR": str(layout / "output" / "data"),
            "SM_CHANNEL_TRAIN": str(train),
            "SM_CHANNEL_CONFIG": str(config),
            "SM_CHANNEL_BASE_MODEL": str(layout / "input" / "data" / "base_model"),
            "SM_NUM_GPUS": "0" if args.cpu else str(args.gpus),
            "TUNEC_CHECKPOINT_DIR": str(layout / "checkpoints"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
    )
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        command = [sys.executable, "train.py", "--config", str(config / "args.yaml")]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.gpus}",
            "train.py",
            "--config",
            str(config / "args.yaml"),
        ]
    trained = subprocess.run(command, cwd=SCRIPTS, env=env, capture_output=True, text=True)
    if trained.returncode != 0:
        failure = layout / "output" / "failure"
        reason = failure.read_text(encoding="utf-8") if failure.exists() else trained.stderr[-4000:]
        raise SystemExit(f"train.py failed ({trained.returncode}): {reason}")
    metrics = json.loads((layout / "output" / "data" / "metrics.json").read_text(encoding="utf-8"))

    allocated = metrics.get("peak_gpu_memory_bytes")
    reserved = metrics.get("peak_gpu_memory_reserved_bytes")
    estimated = estimate["gpu_peak_bytes"]
    result = {
        "model": args.model,
        "layers": args.layers or row["num_layers"],
        "method": args.method,
        "seq": args.seq,
        "batch": args.batch,
        "gpus": args.gpus,
        "fsdp": args.fsdp,
        "offload": args.offload,
        "steps": args.steps,
        "cpu_smoke_test": args.cpu,
        "estimate": {"gpu_peak_bytes": estimated, "gpu_terms": estimate["gpu_terms"]},
        "measured": {"max_memory_allocated": allocated, "max_memory_reserved": reserved},
        "error_vs_reserved": None if not reserved else estimated / reserved - 1,
        "error_vs_allocated": None if not allocated else estimated / allocated - 1,
        "seconds": round(time.time() - started, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
