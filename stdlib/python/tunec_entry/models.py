"""Finding, loading and finishing models and tokenizers, shared by the three scripts.

A job's starting model is the `model` channel when it has one (evaluate: the merged model), else
`model_name_or_path`, a Hub id or a local folder (the lowering writes a channel's path there too). An adapter is the
`adapter` channel, else `adapter_path`: merge.py merges it into the model, evaluate.py evaluates base + adapter.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from peft import PeftModel
from transformers import (
    AutoConfig,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tunec_entry import architecture
from tunec_entry.artifacts import resolve_artifact_dir
from tunec_entry.builders import torch_dtype
from tunec_entry.config import TunecArgs
from tunec_entry.failure import EntryError
from tunec_entry.jobenv import JobEnv
from tunec_entry.tokens import SpecialTokens, resolve_special_tokens

log = logging.getLogger("tunec")

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
SAMPLING_FLAGS = ("temperature", "top_p", "min_p", "typical_p", "top_k", "epsilon_cutoff", "eta_cutoff")
"""The flags that transformers' GenerationConfig.validate says only sampling uses."""
BEAM_FLAGS = ("early_stopping", "num_beam_groups", "diversity_penalty", "length_penalty", "constraints")
"""The flags that it says only beam search uses."""


def model_source(args: TunecArgs, env: JobEnv) -> str:
    """The `model` channel's folder, else model_name_or_path."""
    channel = env.channel("model")
    if channel is not None:
        return str(resolve_artifact_dir(env.require_channel("model")))
    if args.model_name_or_path:
        return args.model_name_or_path
    raise EntryError("no model: set `model_name_or_path` in args.yaml or provide a `model` channel")


def adapter_source(args: TunecArgs, env: JobEnv) -> Path | None:
    """The adapter's folder: the `adapter` channel, else `adapter_path`, else None (no adapter)."""
    if env.channel("adapter") is not None:
        folder = resolve_artifact_dir(env.require_channel("adapter"))
    elif args.adapter_path:
        if not Path(args.adapter_path).is_dir():
            raise EntryError(f"args.yaml `adapter_path` {args.adapter_path} is not a folder")
        folder = resolve_artifact_dir(Path(args.adapter_path))
    else:
        return None
    if not (folder / "adapter_config.json").is_file():
        raise EntryError(f"the adapter folder {folder} holds no adapter_config.json")
    return folder


def load_config(source: str, args: TunecArgs) -> PretrainedConfig:
    """The checkpoint's config, checked against args.yaml (`model_type`, `text_only`)."""
    config = AutoConfig.from_pretrained(source, revision=args.model_revision, trust_remote_code=args.trust_remote_code)
    architecture.check_model_type(args, config)
    architecture.text_only(args, config)
    return config


def load_pretrained(
    source: str,
    config: PretrainedConfig,
    args: TunecArgs,
    *,
    purpose: str,
    attn_implementation: str | None = None,
    device_map: str | None = None,
) -> PreTrainedModel:
    """The checkpoint in its own architecture (architecture.auto_class) and `torch_dtype`.

    MXFP4 weights are dequantized as architecture.mxfp4_loading says for `purpose` (merge, evaluate).
    """
    mxfp4 = architecture.mxfp4_loading(args, config, purpose)
    dtype = torch_dtype(args.torch_dtype)
    model = architecture.auto_class(config).from_pretrained(
        source,
        revision=args.model_revision,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=args.trust_remote_code,
        device_map=device_map,
        **architecture.quantization_kwargs(mxfp4),
    )
    if architecture.is_mxfp4(config):  # dequantized here, or by transformers itself where its kernels do not run
        architecture.cast_dequantized_experts(model, dtype)
    return model


def merged_model(
    source: str,
    adapter_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    args: TunecArgs,
    device_map: str | None = None,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """The base in `torch_dtype` (never quantized; MXFP4 weights dequantized) with the adapter merged into it.

    Embeddings grow first if the adapter's tokenizer has more tokens than the base. merge_and_unload returns the
    merged model instead of changing the PEFT wrapper in place; safe_merge refuses NaNs. It merges LoRA on linear
    layers and on fused expert parameters (PEFT's target_parameters) alike. Embeddings that `modules_to_save`
    trained apart from their tied twin are saved untied (untie_trained_embeddings).
    """
    config = load_config(source, args)
    base = load_pretrained(
        source, config, args, purpose="merge", attn_implementation=attn_implementation, device_map=device_map
    )
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload(safe_merge=True)
    untie_trained_embeddings(merged)
    return merged


def untie_trained_embeddings(model: PreTrainedModel) -> bool:
    """Mark the embeddings untied when training made the output layer differ from the input embeddings.

    With tied embeddings (Llama 3.2 1B/3B, Gemma, small Qwen), `modules_to_save` trains a copy of `lm_head` or
    `embed_tokens` alone, so the adapter's model has two different matrices. merge_and_unload puts the copy in place
    and save_pretrained writes both, but a config that still says `tie_word_embeddings` makes from_pretrained tie
    them again, silently dropping one of the trained matrices. Returns whether the config was changed.
    """
    text = model.config.get_text_config(decoder=True)
    output = model.get_output_embeddings()
    if not getattr(text, "tie_word_embeddings", False) or output is None:
        return False
    tied, trained = model.get_input_embeddings().weight, output.weight
    if tied is trained or (tied.shape == trained.shape and torch.equal(tied, trained)):
        return False
    for config in {id(c): c for c in (model.config, text)}.values():
        config.tie_word_embeddings = False
    log.warning("the adapter trained the input embeddings and the output layer apart: saved untied")
    return True


def set_use_cache(model: PreTrainedModel, use_cache: bool) -> None:
    """The KV cache flag of the model and of its language model's config (a multimodal model reads the latter)."""
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.use_cache = use_cache


def inference_device_map() -> str | None:
    """Spread a model over the GPUs when there are any; the CPU otherwise."""
    return "auto" if torch.cuda.is_available() else None


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(source: str, args: TunecArgs) -> tuple[PreTrainedTokenizerBase, SpecialTokens]:
    """The tokenizer with tunec's pad token set and, when args.yaml has one, the training chat template."""
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=args.model_revision, trust_remote_code=args.trust_remote_code
    )
    special = resolve_special_tokens(tokenizer, args)
    tokenizer.pad_token = special.pad_token
    if args.chat_template:
        tokenizer.chat_template = args.chat_template
    return tokenizer, special


def savable_generation_config(config: GenerationConfig) -> list[str]:
    """Make `config` pass the strict check of GenerationConfig.save_pretrained; returns what was changed.

    transformers loads a generation_config.json that sets sampling flags without `do_sample: true` (many published
    checkpoints do: `temperature` 0.6 and `top_p` 0.9 alone) with a warning, and generates greedily with it, but
    refuses to save it: a full fine-tune's checkpoints and a merge would fail at their first save. Sampling flags
    without `do_sample` are read as the base's authors meant them, which is what serving stacks that read the file
    (vLLM, TGI) do: `do_sample` becomes true, unless `temperature` is 0, which means greedy, and then the sampling
    flags go back to their defaults. Beam-search flags without beams are ignored by generate() and go back to their
    defaults, and a negative `pad_token_id` is unset. Anything else the check refuses is an error that names the file.
    """
    try:
        config.validate(strict=True)
        return []
    except ValueError:
        pass
    defaults = GenerationConfig()
    changed: list[str] = []
    if config.do_sample is False:
        sampling = [f for f in SAMPLING_FLAGS if getattr(config, f, None) != getattr(defaults, f)]
        if sampling and config.temperature == 0:
            for flag in sampling:
                setattr(config, flag, getattr(defaults, flag))
            changed.append(f"{', '.join(sampling)} back to the defaults (temperature 0 means greedy decoding)")
        elif sampling:
            config.do_sample = True
            changed.append(f"do_sample set to true (the base sets {', '.join(sampling)} without it)")
    if config.pad_token_id is not None and config.pad_token_id < 0:  # -1 in early Llama conversions
        config.pad_token_id = None
        changed.append("pad_token_id unset (it was negative)")
    if config.num_beams == 1:
        beam = [f for f in BEAM_FLAGS if getattr(config, f, None) != getattr(defaults, f)]
        for flag in beam:
            setattr(config, flag, getattr(defaults, flag))
        if beam:
            changed.append(f"{', '.join(beam)} back to the defaults (beam-search flags, and num_beams is 1)")
    try:
        config.validate(strict=True)
    except ValueError as err:
        reason = " ".join(str(err).split())
        raise EntryError(
            f"the base model's generation_config.json cannot be saved with the model ({reason}); correct the file"
        ) from None
    return changed


def make_generation_config_savable(model: PreTrainedModel) -> None:
    """savable_generation_config on the model's generation_config, logging what changed."""
    if model.generation_config is None:
        return
    for change in savable_generation_config(model.generation_config):
        log.warning("generation_config: %s, so that transformers can save it", change)


def prepare_for_inference(model: PreTrainedModel, special: SpecialTokens) -> SpecialTokens:
    """Restore the KV cache (training turned it off) and make generation stop at every stop token.

    The generation_config keeps the base model's sampling defaults and stop ids (made savable, see
    savable_generation_config); tunec's stop ids (end-of-turn first) come before them. Returns the tokens with the
    complete stop list.
    """
    set_use_cache(model, True)
    model.config.pad_token_id = special.pad_id
    config = model.generation_config or GenerationConfig.from_model_config(model.config)
    special = special.with_stops(config.eos_token_id)
    config.eos_token_id = list(special.stop_ids)
    config.pad_token_id = special.pad_id
    model.generation_config = config
    make_generation_config_savable(model)
    return special
