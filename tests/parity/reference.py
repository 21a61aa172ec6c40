"""The transformers side of tests/chat_template_parity.rs: renders, token ids and assistant masks.

Reads a JSON request on stdin, `{"cases": [...]}`, each case with `tokenizer_dir`, `template` (the chat
template to render, or null for the tokenizer's own), `marked` (the same template with `{% generation %}`
markers, or null), `block_headers`, `messages` and `kwargs`. Writes `{"transformers": version, "results":
[...]}`, one result per case:

- `text`, `ids`: `apply_chat_template(messages, tokenize=False, **kwargs)` and its ids without added special
  tokens; or `error`, the exception the template raised.
- `masks`: the assistant tokens by independent references, each a list of 0/1 per token, or null where the
  reference does not apply:
  - `markers`: transformers' `return_assistant_tokens_mask` on `marked` (which must render the same text), less
    `block_headers` at the start of each marked block: what a template puts inside its block of the text it
    writes when it prompts (TRL's gpt-oss training template holds `<|start|>assistant`, its DeepSeek-V3 one
    `<｜Assistant｜>` and, after tool results, `<｜tool▁outputs▁end｜>`, its Qwen2.5 one the newline after
    `<|im_start|>assistant`), which the data engine never trains. `marked_error` says why the reference does
    not apply, and `marker_straddles` lists the blocks whose edge falls inside a token.
  - `prefixes`: for each assistant message i, the text from the end of `messages[:i]` rendered with the
    generation prompt to the end of `messages[:i + 1]` rendered without, when both are prefixes of the whole
    text; null when the template rewrites a turn. `straddles` lists turns whose edge falls inside a token.
"""

import json
import sys

import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template


def render(tok, template, messages, kwargs, add_generation_prompt):
    return tok.apply_chat_template(
        messages, tokenize=False, chat_template=template, add_generation_prompt=add_generation_prompt, **kwargs
    )


def token_mask(offsets, spans):
    """1 for every token inside one of the character spans; and the spans whose edges cut a token."""
    mask = [0] * len(offsets)
    straddles = []
    for number, (start, end) in enumerate(spans):
        for i, (a, b) in enumerate(offsets):
            if a >= start and b <= end and b > a:
                mask[i] = 1
            elif (a < start < b) or (a < end < b):
                straddles.append(number)
    return mask, sorted(set(straddles))


def marker_mask(tok, marked, block_headers, messages, kwargs, text, ids, offsets):
    """The marked blocks as transformers finds them, less their headers, as tokens."""
    if render(tok, marked, messages, kwargs, False) != text:
        return (None, []), "the marked template renders another text"
    out = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, chat_template=marked, **kwargs
    )
    if list(out["input_ids"]) != ids:
        return (None, []), "the marked template tokenizes differently"
    # The character spans behind transformers' token mask (apply_chat_template keeps them to itself).
    tools = kwargs.get("tools")
    variables = {**tok.special_tokens_map, **{k: v for k, v in kwargs.items() if k != "tools"}}
    _, generation_indices = render_jinja_template(
        conversations=[messages], tools=tools, chat_template=marked, return_assistant_tokens_mask=True, **variables
    )
    blocks = generation_indices[0]
    unstripped, _ = token_mask(offsets, blocks)
    if unstripped != list(out["assistant_masks"]) and not any(
        (a < start < b) or (a < end < b) for start, end in blocks for a, b in offsets
    ):
        return (None, []), "the character spans do not give transformers' token mask"
    assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if len(blocks) != len(assistants):
        return (None, []), f"{len(blocks)} marked blocks for {len(assistants)} assistant messages"
    spans = []
    for start, end in blocks:
        for header in block_headers:
            if text.startswith(header, start):
                start += len(header)
        spans.append((start, end))
    return token_mask(offsets, spans), None


def prefix_mask(tok, template, messages, kwargs, text, offsets):
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tok, template, messages[:i], kwargs, True)
        through = text if i == len(messages) - 1 else render(tok, template, messages[: i + 1], kwargs, False)
        if not (text.startswith(prompt) and text.startswith(through)) or len(through) < len(prompt):
            return None, None
        spans.append((len(prompt), len(through)))
    return token_mask(offsets, spans)


def main():
    request = json.load(sys.stdin)
    tokenizers = {}
    results = []
    for case in request["cases"]:
        directory = case["tokenizer_dir"]
        if directory not in tokenizers:
            tokenizers[directory] = AutoTokenizer.from_pretrained(directory)
        tok = tokenizers[directory]
        template, marked, messages, kwargs = case["template"], case["marked"], case["messages"], case["kwargs"]
        result = {}
        try:
            text = render(tok, template, messages, kwargs, False)
        except Exception as e:  # the template's own refusal, compared with the data engine's
            results.append({"error": f"{type(e).__name__}: {e}"})
            continue
        encoding = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]
        result["text"], result["ids"] = text, ids
        masks = {}
        if marked is not None:
            (masks["markers"], result["marker_straddles"]), result["marked_error"] = marker_mask(
                tok, marked, case.get("block_headers") or [], messages, kwargs, text, ids, offsets
            )
        masks["prefixes"], result["straddles"] = prefix_mask(tok, template, messages, kwargs, text, offsets)
        result["masks"] = masks
        results.append(result)
    json.dump({"transformers": transformers.__version__, "results": results}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
