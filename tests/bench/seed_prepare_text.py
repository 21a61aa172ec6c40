"""The Llama 3.1 Instruct rendering of a MedReason row, written out by hand for raw_tokenize.py.

Equal to `apply_chat_template(messages, tokenize=False, date_string="26 Jul 2024")` with
tests/data/llama3_1_instruct.jinja for a system, user and assistant message and no tools
(raw_tokenize.py checks this on the first rows). Messages are trimmed, as the template does.
"""

SYSTEM = (
    "You are a deep-thinking AI assistant.\n\nFor every user question, first write your thoughts and "
    "reasoning inside <think>...</think> tags, then provide your answer."
)


def render(row: dict) -> str:
    assistant = f"<think>\n{row['reasoning']}\n</think>\n\n{row['answer']}"
    return (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        f"{SYSTEM.strip()}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{row['question'].strip()}<|eot_id|>"
        f"<|start_header_id|>assistant<|end_header_id|>\n\n{assistant.strip()}<|eot_id|>"
    )
