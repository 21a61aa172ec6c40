"""The evaluation metrics: exact_match, rouge_l and multiple-choice accuracy. Pure functions of strings and indices.

- exact_match: 1 when the prediction equals the reference after normalisation (Unicode NFKC, case folding,
  whitespace runs collapsed to one space, ends stripped), else 0.
- rouge_l: the ROUGE-L F1 of Lin (2004) over word tokens: LCS length / prediction length is the precision,
  / reference length the recall, F1 = 2PR / (P + R), and 0 when either side has no token. Tokens are lower-cased
  runs of letters and digits, which on ASCII text is exactly Google's rouge-score tokenizer without stemming
  (`rouge_scorer.RougeScorer(["rougeL"])`); rouge-score drops non-ASCII letters, this keeps them.
- choice_accuracy: the fraction of multiple-choice rows whose highest-scoring option is the answer.

With an answer delimiter (for example `</think>`), both texts are first cut to what follows its last occurrence, so
that a reasoning trace does not count toward the answer's score.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

WORD = re.compile(r"[^\W_]+")


def answer_part(text: str, delimiter: str | None) -> str:
    """What follows the last `delimiter` in `text`; the whole text without a delimiter or an occurrence of it."""
    if not delimiter or delimiter not in text:
        return text
    return text.rsplit(delimiter, 1)[1]


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_match(prediction: str, reference: str) -> float:
    return 1.0 if normalize(prediction) == normalize(reference) else 0.0


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, in O(len(a) * len(b)) time and O(len(b)) memory."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    predicted, expected = words(prediction), words(reference)
    if not predicted or not expected:
        return 0.0
    common = lcs_length(predicted, expected)
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_option(scores: Sequence[float]) -> int:
    """Index of the highest score; the first one on a tie."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


@dataclass(frozen=True)
class Scored:
    """The metrics of one example."""

    exact_match: float
    rouge_l: float
    correct_choice: bool | None
    """None when the example has no options."""


def score_example(
    prediction: str,
    reference: str,
    *,
    delimiter: str | None = None,
    chosen_index: int | None = None,
    answer_index: int | None = None,
) -> Scored:
    predicted, expected = answer_part(prediction, delimiter), answer_part(reference, delimiter)
    return Scored(
        exact_match=exact_match(predicted, expected),
        rouge_l=rouge_l(predicted, expected),
        correct_choice=None if answer_index is None else chosen_index == answer_index,
    )


def aggregate(scored: Sequence[Scored], metrics: Sequence[str]) -> dict[str, float]:
    """The mean of each requested metric; choice_accuracy over the examples that have options."""
    report: dict[str, float] = {}
    if "exact_match" in metrics:
        report["exact_match"] = sum(s.exact_match for s in scored) / len(scored)
    if "rouge_l" in metrics:
        report["rouge_l"] = sum(s.rouge_l for s in scored) / len(scored)
    choices = [s.correct_choice for s in scored if s.correct_choice is not None]
    if "choice_accuracy" in metrics and choices:
        report["choice_accuracy"] = sum(choices) / len(choices)
    return report
