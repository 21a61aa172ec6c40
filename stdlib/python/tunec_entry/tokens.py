"""Pad, end-of-turn and stop tokens.

The collator sets the labels of pad positions to -100. If the pad token were the end-of-turn token (Llama 3.1
Instruct's EOS *is* `<|eot_id|>`), masking pads would also mask the one token that teaches the model to stop. So
the pad token must be none of the stop tokens, and the stop tokens (end-of-turn first) go into the merged model's
generation_config so that generation stops at the end of the assistant's turn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from tunec_entry.config import TunecArgs
from tunec_entry.failure import EntryError


@dataclass(frozen=True)
class SpecialTokens:
    pad_token: str
    pad_id: int
    eot_token: str
    eot_id: int
    stop_ids: tuple[int, ...]
    """End-of-turn first, then `stop_tokens`, then the tokenizer's EOS; no duplicates."""

    def with_stops(self, extra: int | list[int] | None) -> SpecialTokens:
        """These tokens plus a generation_config's eos_token_id (an id, a list or None), in that order."""
        more = [extra] if isinstance(extra, int) else list(extra or [])
        return dataclasses.replace(self, stop_ids=tuple(dict.fromkeys([*self.stop_ids, *more])))


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str, role: str) -> int:
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise EntryError(f"the {role} {token!r} is not a single token of the tokenizer")
    return vocab[token]


def resolve_special_tokens(tokenizer: PreTrainedTokenizerBase, args: TunecArgs) -> SpecialTokens:
    """Choose the tokens from args.yaml and the tokenizer; refuse a pad token that is a stop token."""
    eot = args.eot_token or tokenizer.eos_token
    if not eot:
        raise EntryError("no end-of-turn token: set `eot_token` in args.yaml (the tokenizer has no EOS either)")
    eot_id = _token_id(tokenizer, eot, "end-of-turn token")
    stops = [eot, *args.stop_tokens]
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    stop_ids = tuple(dict.fromkeys(_token_id(tokenizer, token, "stop token") for token in stops))

    pad = args.pad_token or tokenizer.pad_token
    if not pad:
        raise EntryError(
            "no pad token: set `pad_token` in args.yaml to a token that is not a stop token "
            "(for Llama 3.x: <|finetune_right_pad_id|>)"
        )
    pad_id = _token_id(tokenizer, pad, "pad token")
    if pad_id in stop_ids:
        origin = "args.yaml `pad_token`" if args.pad_token else "the tokenizer's pad token"
        raise EntryError(
            f"{origin} {pad!r} is a stop token (end-of-turn {eot!r}); padding with it would mask the stop token "
            "out of the loss. Set `pad_token` to another token (for Llama 3.x: <|finetune_right_pad_id|>)"
        )
    return SpecialTokens(pad_token=pad, pad_id=pad_id, eot_token=eot, eot_id=eot_id, stop_ids=stop_ids)
