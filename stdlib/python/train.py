"""train.py: supervised fine-tuning of a causal language model (LoRA, QLoRA or full) on pre-tokenized data.

tunec runs it as a SageMaker training job in the Hugging Face PyTorch image (under torchrun, one process per GPU)
and, on the local target, as a plain process with the same /opt/ml layout. It reads args.yaml (--config), the
`train` and optional `val` channels written by the data engine, and the starting model from the `model` channel or
`model_name_or_path`. It uses `input_ids` and `labels` exactly as the data engine wrote them, so nothing is
re-templated or re-tokenized on the GPU machine.

It trains with transformers' Trainer: QLoRA loads the base in 4 bits (bitsandbytes, imported only then), LoRA and
full fine-tuning load it in `torch_dtype`; FSDP, gradient checkpointing (non-reentrant, with input gradients) and
use_cache=False follow args.yaml. Checkpoints go to the checkpoint folder every save_steps, and a restarted job
(managed spot) resumes from the newest complete one. SIGTERM saves a checkpoint at the end of the current step and
exits with status 143.

Outputs: the adapter (or the full model) with its tokenizer in SM_MODEL_DIR, saved from a full state dict, and
metrics.json in SM_OUTPUT_DATA_DIR. Any error: exit status 1 and a one-line reason in the failure file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model
from transformers import (
    AutoConfig,
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINING_ARGS_NAME

from tunec_entry import architecture, builders
from tunec_entry.artifacts import check_adapter_shapes
from tunec_entry.checkpoints import TRAINER_STATE, checkpoint_step, newest_checkpoint, training_finished
from tunec_entry.config import TunecArgs, load_args
from tunec_entry.data import (
    EpochSampler,
    TokenizedDataset,
    TokenizedRow,
    TokenRules,
    make_collator,
    read_tokenized_split,
    rows_without,
)
from tunec_entry.failure import EXIT_INTERRUPTED, EntryError, configure_logging, run_entry
from tunec_entry.jobenv import JobEnv, config_path, parse_command_line, write_json
from tunec_entry.models import (
    load_tokenizer,
    make_generation_config_savable,
    model_source,
    prepare_for_inference,
    set_use_cache,
)
from tunec_entry.tokens import SpecialTokens
from tunec_entry.trainlog import (
    RunSummary,
    build_metrics,
    max_over_ranks,
    peak_gpu_memory,
    peak_host_memory_bytes,
    sum_over_ranks,
)
from tunec_entry.usage import UsageMeter

log = logging.getLogger("tunec")

METRICS_FILE = "metrics.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class TunecTrainer(Trainer):
    """The Trainer with a resumable shuffle (EpochSampler) that counts the non-padding tokens it trains on."""

    tokens_trained = 0

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.group_by_length or dataset is None:
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSampler(len(dataset), seed, lambda: self.state.epoch or 0.0)

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        mask = inputs.get("attention_mask")
        self.tokens_trained += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        return super().training_step(model, inputs, num_items_in_batch)


class StopOnSigterm(TrainerCallback):
    """On SIGTERM, save a checkpoint at the end of the current step and stop training.

    SageMaker sends SIGTERM on a spot reclaim or StopTrainingJob and kills the job 120 s later. torchrun forwards
    the signal to every rank, possibly during different steps, so the ranks agree through an all-reduce at each
    step end: they all save the same step, which FSDP's collective save needs.
    """

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None

    def request(self, signum: int, frame: object) -> None:
        self.requested = True

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        if max_over_ranks(int(self.requested), args.device):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step


@contextlib.contextmanager
def sigterm_handler(callback: StopOnSigterm) -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, callback.request)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_hardware(args: TunecArgs, env: JobEnv) -> None:
    """Refuse what cannot run here before anything is loaded."""
    cuda = torch.cuda.is_available()
    if env.num_gpus and not cuda:
        raise EntryError(f"SM_NUM_GPUS={env.num_gpus} but PyTorch sees no CUDA device")
    if args.method == "qlora" and not cuda:
        raise EntryError("QLoRA (load_in_4bit) needs a CUDA GPU: bitsandbytes' 4-bit layers do not train on the CPU")
    if args.training.get("fsdp") and not cuda:
        raise EntryError("FSDP needs CUDA GPUs: accelerate does not shard on the CPU (use DDP: torchrun without fsdp)")
    if env.num_gpus and env.num_gpus > env.world_size:
        log.warning(
            "%d GPUs but %d process(es): launch with torchrun --nproc_per_node=%d to use them all",
            env.num_gpus,
            env.world_size,
            env.num_gpus,
        )


def load_model(
    args: TunecArgs, source: str, config: PretrainedConfig, training_args: TrainingArguments
) -> PreTrainedModel:
    """The base model in the checkpoint's own architecture: 4-bit for QLoRA (on this process's GPU unless FSDP
    places it), MXFP4 weights dequantized, else in torch_dtype."""
    mxfp4 = architecture.mxfp4_loading(args, config, "train")
    if mxfp4 is not None and args.method == "qlora":
        raise EntryError(
            f"QLoRA cannot quantize the {config.model_type} checkpoint's MXFP4 weights with bitsandbytes: "
            "use method lora (the weights are dequantized to bf16)"
        )
    if args.dequantize_mxfp4 and mxfp4 is None:
        log.info("dequantize_mxfp4: the checkpoint's weights are not MXFP4, there is nothing to dequantize")
    quantization = mxfp4 or builders.quantization_config(args)
    device_map = {"": training_args.local_process_index} if args.method == "qlora" and not training_args.fsdp else None
    dtype = builders.torch_dtype(args.torch_dtype)
    model = architecture.auto_class(config).from_pretrained(
        source,
        revision=args.model_revision,
        dtype=dtype,
        attn_implementation=args.attn_implementation,
        trust_remote_code=args.trust_remote_code,
        device_map=device_map,
        **architecture.quantization_kwargs(quantization),
    )
    if mxfp4 is not None:
        architecture.cast_dequantized_experts(model, dtype)
    return model


def prepare_quantized_base(model: PreTrainedModel) -> None:
    """PEFT's prepare_model_for_kbit_training without its float32 copy of the fused experts.

    PEFT freezes the base and upcasts every 16-bit parameter that bitsandbytes did not quantize to float32, for
    the stability of the norms and embeddings. bitsandbytes quantizes only nn.Linear, so a model whose experts are
    3-D parameters (Llama 4, GraniteMoE) keeps them in 16 bits, and PEFT's upcast would double their memory, by
    far the largest part of such a model. They stay in their dtype here; everything else is as PEFT does it.
    Gradient checkpointing is enabled by prepare_model, non-reentrant, so PEFT's input-gradient hook is not needed.
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
        fused_expert = parameter.ndim == 3
        quantized = parameter.__class__.__name__ == "Params4bit"
        if parameter.dtype in (torch.float16, torch.bfloat16) and not fused_expert and not quantized:
            parameter.data = parameter.data.to(torch.float32)


def prepare_model(model: PreTrainedModel, args: TunecArgs, training_args: TrainingArguments) -> torch.nn.Module:
    """use_cache off; a multimodal model's vision tower frozen; for LoRA/QLoRA, input gradients for
    non-reentrant checkpointing and the PEFT wrapper.

    The quantized base's float32 upcast (prepare_quantized_base) runs only without FSDP: FSDP cannot flatten
    float32 norms together with the bf16-packed 4-bit weights.
    """
    set_use_cache(model, False)
    if architecture.is_multimodal(model.config):
        frozen = architecture.frozen_outside_text_path(model)
        log.info("text-only training: %d parameter tensors outside the text path are frozen", len(frozen))
    if training_args.fsdp:
        architecture.check_wrap_classes(model, training_args.fsdp_config.get("transformer_layer_cls_to_wrap") or [])
    if not args.uses_peft:
        return model
    if args.method == "qlora" and not training_args.fsdp:
        prepare_quantized_base(model)
    if training_args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=training_args.gradient_checkpointing_kwargs)
        model.enable_input_require_grads()
    targets = builders.lora_targets(args, model)
    log.info(
        "LoRA r=%d alpha=%g on %s%s%s",
        args.lora_r,
        args.lora_alpha,
        ", ".join(targets.modules) or "no linear layer",
        f" and the parameters {', '.join(targets.parameters)}" if targets.parameters else "",
        f", except the modules matching {targets.exclude}" if targets.exclude else "",
    )
    return get_peft_model(model, builders.lora_config(args, targets))


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, counted before FSDP flattens them."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def portable_adapter_metadata(model: torch.nn.Module, env: JobEnv) -> None:
    """Make the adapter's files the same wherever and however often the same training runs.

    The adapter (adapter_config.json, the README model card) names its base as SageMaker names the channel, not
    the folder this job happened to run in (the local target's run folder); and PEFT keeps `target_modules` as a
    set, which JSON would list in an order that changes with Python's per-process string hashing.
    """
    for peft_config in getattr(model, "peft_config", {}).values():
        if peft_config.base_model_name_or_path:
            peft_config.base_model_name_or_path = env.portable(peft_config.base_model_name_or_path)
        if isinstance(peft_config.target_modules, set):
            peft_config.target_modules = sorted(peft_config.target_modules)
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if get_base is not None else None
    config = getattr(base, "config", None)
    if config is not None and getattr(config, "_name_or_path", None):
        config._name_or_path = env.portable(config._name_or_path)
    if getattr(base, "name_or_path", None):  # the model card's `base_model:adapter:` tag
        base.name_or_path = env.portable(base.name_or_path)


def save_final_model(
    trainer: Trainer, model: torch.nn.Module, args: TunecArgs, env: JobEnv, special: SpecialTokens
) -> None:
    """Save the adapter (or full model) with its tokenizer from a full state dict, then check the adapter."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    if not args.uses_peft:
        prepare_for_inference(model, special)
    portable_adapter_metadata(model, env)
    trainer.save_model(str(env.model_dir))
    # The Trainer also pickles its TrainingArguments beside the model. args.yaml is the job's record; the pickle
    # names this machine's folders, differs from run to run, and is unsafe to load from an untrusted artifact.
    if trainer.is_world_process_zero():
        (env.model_dir / TRAINING_ARGS_NAME).unlink(missing_ok=True)
    if args.uses_peft and trainer.is_world_process_zero():
        experts = architecture.expert_count(model.config) if args.lora_target_parameters else None
        count = check_adapter_shapes(env.model_dir / ADAPTER_WEIGHTS, args.lora_r, experts)
        log.info("saved the adapter (%d LoRA matrices) to %s", count, env.model_dir)


def read_splits(
    env: JobEnv, rules: TokenRules, special: SpecialTokens
) -> tuple[list[TokenizedRow], list[TokenizedRow] | None]:
    """The checked train rows and, with a `val` channel, the val rows."""
    train_rows = read_tokenized_split(env.require_channel("train"), "train", rules)
    val_rows = read_tokenized_split(env.require_channel("val"), "val", rules) if env.channel("val") else None
    missing_eot = rows_without(train_rows, special.eot_id)
    if missing_eot:
        log.warning("%d of %d training rows never train the end-of-turn token", missing_eot, len(train_rows))
    return train_rows, val_rows


def prepared_checkpoint_dir(env: JobEnv, args: TunecArgs) -> Path:
    checkpoint_dir = env.checkpoint_dir(args.training.get("output_dir"))
    try:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EntryError(
            f"cannot create the checkpoint folder {checkpoint_dir} (set TUNEC_CHECKPOINT_DIR): {err}"
        ) from None
    return checkpoint_dir


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    meter = UsageMeter("train")
    options = parse_command_line("train.py", "Fine-tune a causal LM on pre-tokenized data.", argv)
    env = JobEnv.from_environ(environ)
    args = load_args(config_path(options.config, environ, env))
    check_hardware(args, env)
    if args.use_cache:
        raise EntryError("args.yaml: use_cache must be false while training (the KV cache is restored for inference)")
    source = model_source(args, env)

    config = AutoConfig.from_pretrained(source, revision=args.model_revision, trust_remote_code=args.trust_remote_code)
    architecture.check_model_type(args, config)
    text_only = architecture.text_only(args, config)
    architecture.check_attention(args, config)
    tokenizer, special = load_tokenizer(source, args)
    vocab_size = architecture.text_config(config).vocab_size
    rules = TokenRules(vocab_size=vocab_size, bos_id=tokenizer.bos_token_id, max_length=args.max_length)
    train_rows, val_rows = read_splits(env, rules, special)
    checkpoint_dir = prepared_checkpoint_dir(env, args)
    # Built before the model: it exports the FSDP variables that from_pretrained reads.
    training_args = builders.training_arguments(
        args,
        str(checkpoint_dir),
        has_eval=val_rows is not None,
        default_wrap=lambda: architecture.wrap_classes(config),
        frozen_parts=text_only,
        cuda=torch.cuda.is_available(),
    )
    set_seed(training_args.seed)
    model = load_model(args, source, config, training_args)
    if not args.uses_peft:  # a full fine-tune saves the whole model, generation_config included, at every checkpoint
        make_generation_config_savable(model)
    # The Trainer aligns the model's eos ids with the tokenizer's: keep the base model's stop ids first.
    special = special.with_stops(model.generation_config.eos_token_id)
    model = prepare_model(model, args, training_args)
    trainable, total = parameter_counts(model)

    stop = StopOnSigterm()
    trainer = TunecTrainer(
        model=model,
        args=training_args,
        train_dataset=TokenizedDataset(train_rows),
        eval_dataset=TokenizedDataset(val_rows) if val_rows is not None else None,
        data_collator=make_collator(special.pad_id, args.packing),
        processing_class=tokenizer,
        callbacks=[stop, meter],
    )
    resume = newest_checkpoint(checkpoint_dir)
    resumed_from = checkpoint_step(resume) if resume is not None else None
    if resume is not None:
        log.info("resuming from %s (global step %d)", resume, resumed_from)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    if resume is not None and training_finished(resume):
        log.info(
            "the checkpoint of step %d ends the training: it is saved as the result, with no further step", resumed_from
        )
        # transformers is pinned (4.56.2): its checkpoint loader handles adapters and sharded weights alike.
        trainer._load_from_checkpoint(str(resume))
        trainer.state = TrainerState.load_from_json(str(resume / TRAINER_STATE))
    else:
        with sigterm_handler(stop):
            trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    runtime = time.perf_counter() - started
    if stop.stopped_at is not None:
        log.warning(
            "stopped by SIGTERM after step %d; the checkpoint is saved, a rerun resumes from it", stop.stopped_at
        )
        return EXIT_INTERRUPTED

    device = training_args.device
    gpu_allocated, gpu_reserved = peak_gpu_memory(device)  # before the final save gathers the full state dict
    save_final_model(trainer, model, args, env, special)
    summary = RunSummary(
        method=args.method,
        global_step=trainer.state.global_step,
        resumed_from_step=resumed_from,
        train_runtime_s=runtime,
        train_tokens=sum_over_ranks(trainer.tokens_trained, device),
        peak_gpu_memory_bytes=gpu_allocated,
        peak_gpu_memory_reserved_bytes=gpu_reserved,
        peak_host_memory_bytes=max_over_ranks(peak_host_memory_bytes(), device),
        trainable_parameters=trainable,
        total_parameters=total,
        world_size=training_args.world_size,
        num_gpus=env.num_gpus,
        instance_type=env.instance_type,
        num_hosts=len(env.hosts) or 1,
    )
    if trainer.is_world_process_zero():
        write_json(env.output_data_dir / METRICS_FILE, build_metrics(trainer.state.log_history, summary))
    meter.write(env.output_data_dir, tokens=summary.train_tokens, tokens_seconds=runtime)
    return 0


if __name__ == "__main__":
    configure_logging()
    sys.exit(run_entry(main, os.environ))
