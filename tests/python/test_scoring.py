"""The evaluation metrics and metrics.json on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from tunec_entry.scoring import (
    Scored,
    aggregate,
    answer_part,
    best_option,
    exact_match,
    lcs_length,
    rouge_l,
    score_example,
)
from tunec_entry.trainlog import RunSummary, build_metrics, step_history


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("Paris", "Paris", 1.0),
        ("  paris\n", "Paris", 1.0),
        ("The  answer is\tB", "the answer is b", 1.0),
        ("Ｐａｒｉｓ", "Paris", 1.0),  # NFKC folds full-width letters
        ("Paris.", "Paris", 0.0),
        ("Pari", "Paris", 0.0),
    ],
)
def test_exact_match(prediction: str, reference: str, expected: float) -> None:
    assert exact_match(prediction, reference) == expected


def test_lcs_length() -> None:
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # the textbook example (CLRS 15.4): BCBA
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["a", "b"], ["a", "b"]) == 2


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # LCS "the cat on the mat" = 5; P = 5/5, R = 5/6, F = 2PR/(P+R) = 10/11.
        ("the cat on the mat", "the cat sat on the mat", 10 / 11),
        # LCS "police the gunman" = 3; P = 3/4, R = 3/4, F = 3/4 (Lin 2004, section 3.1).
        ("police kill the gunman", "police killed the gunman", 3 / 4),
        # Case and punctuation are not words: LCS 2 of P = 2/2, R = 2/3, F = 4/5.
        ("Paris, France!", "paris in france", 4 / 5),
        ("completely different", "nothing shared", 0.0),
        ("", "anything", 0.0),
        ("...", "anything", 0.0),
        ("same words here", "same words here", 1.0),
    ],
)
def test_rouge_l_by_hand(prediction: str, reference: str, expected: float) -> None:
    assert rouge_l(prediction, reference) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        ("the quick brown fox jumps over the lazy dog", "a quick brown dog jumps over the fox"),
        ("Aspirin inhibits COX-1 and COX-2.", "aspirin irreversibly inhibits cox 1 and cox 2 enzymes"),
        ("42 is the answer; 7 is not", "the answer is 42"),
    ],
)
def test_rouge_l_agrees_with_rouge_score_on_ascii(prediction: str, reference: str) -> None:
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l(prediction, reference) == pytest.approx(expected)


def test_answer_part_and_delimited_scores() -> None:
    assert answer_part("<think>x</think>\n\nB", "</think>") == "\n\nB"
    assert answer_part("B", "</think>") == "B"
    assert answer_part("a</think>b</think>c", "</think>") == "c"
    assert answer_part("a</think>b", None) == "a</think>b"
    scored = score_example("<think>long, wrong</think> Mars", "<think>reasoning</think>Mars", delimiter="</think>")
    assert (scored.exact_match, scored.rouge_l, scored.correct_choice) == (1.0, 1.0, None)
    assert score_example("<think>a</think> Mars", "<think>b</think>Mars").exact_match == 0.0


def test_best_option_takes_the_first_of_equal_scores() -> None:
    assert best_option([-3.0, -1.0, -1.0]) == 1
    assert best_option([-0.5, -2.0]) == 0


def test_aggregate_on_a_hand_made_case() -> None:
    scored = [
        score_example("Paris", "Paris", chosen_index=0, answer_index=0),  # EM 1, R 1, right
        score_example("Paris", "Paris France", chosen_index=1, answer_index=0),  # EM 0, R 2/3, wrong
        score_example("Lyon", "Paris"),  # EM 0, R 0, no options
        score_example("blue sky", "the sky is blue", chosen_index=2, answer_index=2),  # R: LCS 1, P 1/2 R 1/4
    ]
    assert scored[1] == Scored(exact_match=0.0, rouge_l=pytest.approx(2 / 3), correct_choice=False)
    report = aggregate(scored, ["exact_match", "rouge_l", "choice_accuracy"])
    assert report == {
        "exact_match": 1 / 4,
        "rouge_l": pytest.approx((1 + 2 / 3 + 0 + 1 / 3) / 4),  # F(1/2, 1/4) = 1/3
        "choice_accuracy": 2 / 3,
    }
    assert aggregate(scored, ["rouge_l"]).keys() == {"rouge_l"}
    assert "choice_accuracy" not in aggregate(scored[2:3], ["exact_match", "choice_accuracy"])


# ---- metrics.json ------------------------------------------------------------------------------------------------

LOG_HISTORY = [
    {"loss": 4.0, "grad_norm": 2.0, "learning_rate": 1e-3, "epoch": 0.5, "step": 2},
    {"eval_loss": 3.5, "eval_runtime": 0.1, "eval_samples_per_second": 10.0, "epoch": 0.5, "step": 2},
    {"loss": 3.0, "grad_norm": 1.5, "learning_rate": 5e-4, "epoch": 1.0, "step": 4},
    {"eval_loss": 2.5, "eval_runtime": 0.1, "eval_samples_per_second": 10.0, "epoch": 1.0, "step": 4},
    {"loss": 2.0, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": 1.5, "step": 6},
    {"train_runtime": 12.0, "train_samples_per_second": 2.0, "train_loss": 3.0, "epoch": 1.5, "step": 6},
]


def test_step_history_merges_train_and_eval_logs_per_step() -> None:
    assert step_history(LOG_HISTORY) == [
        {"step": 2, "train_loss": 4.0, "learning_rate": 1e-3, "grad_norm": 2.0, "epoch": 0.5, "eval_loss": 3.5},
        {"step": 4, "train_loss": 3.0, "learning_rate": 5e-4, "grad_norm": 1.5, "epoch": 1.0, "eval_loss": 2.5},
        {"step": 6, "train_loss": 2.0, "learning_rate": 1e-4, "grad_norm": 1.0, "epoch": 1.5},
    ]


def test_build_metrics_on_a_hand_made_run() -> None:
    run = RunSummary(
        method="qlora",
        global_step=6,
        resumed_from_step=2,
        train_runtime_s=8.0,
        train_tokens=1000,
        peak_gpu_memory_bytes=30 * 2**30,
        peak_gpu_memory_reserved_bytes=32 * 2**30,
        peak_host_memory_bytes=2**30,
        trainable_parameters=10,
        total_parameters=100,
        world_size=8,
        num_gpus=8,
        instance_type="ml.p4d.24xlarge",
        num_hosts=1,
    )
    metrics = build_metrics(LOG_HISTORY, run)
    assert metrics == {
        "schema": "tunec.train-metrics/1",
        "method": "qlora",
        "global_step": 6,
        "resumed_from_step": 2,
        "steps_this_run": 4,
        "train_runtime_s": 8.0,
        "train_tokens": 1000,
        "tokens_per_second": 125.0,
        "peak_gpu_memory_bytes": 30 * 2**30,
        "peak_gpu_memory_reserved_bytes": 32 * 2**30,
        "peak_host_memory_bytes": 2**30,
        "final_train_loss": 2.0,
        "final_eval_loss": 2.5,
        "trainable_parameters": 10,
        "total_parameters": 100,
        "world_size": 8,
        "num_gpus": 8,
        "instance_type": "ml.p4d.24xlarge",
        "num_hosts": 1,
        "history": step_history(LOG_HISTORY),
    }
