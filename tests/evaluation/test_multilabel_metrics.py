"""Multi-label metrics on hand-computed examples, and the per-label threshold choice."""

from __future__ import annotations

import numpy as np
import pytest

from gptcls.evaluation.metrics import format_report
from gptcls.evaluation.multilabel import (
    DEFAULT_THRESHOLD,
    best_f1_threshold,
    choose_thresholds,
    decide,
    hamming_loss,
    label_f1s,
    micro_f1,
    multilabel_report,
    samples_f1,
    subset_accuracy,
)

Y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
PRED = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]])


def test_metrics_by_hand():
    # label 0: tp 2, fp 0, fn 0 -> F1 1; label 1: tp 1, fn 1 -> 2/3; label 2: tp 1, fp 1, fn 1
    # -> 1/2. Pooled: tp 4, fp 1, fn 2 -> 8/11.
    assert label_f1s(Y, PRED) == pytest.approx([1.0, 2 / 3, 0.5])
    assert micro_f1(Y, PRED) == pytest.approx(8 / 11)
    # rows: {0,2}/{0} 2/3, {1}/{1,2} 2/3, {0,1}/{0} 2/3, {2}/{2} 1
    assert samples_f1(Y, PRED) == pytest.approx(0.75)
    assert hamming_loss(Y, PRED) == pytest.approx(3 / 12)
    assert subset_accuracy(Y, PRED) == pytest.approx(0.25)


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import f1_score
    from sklearn.metrics import hamming_loss as sk_hamming

    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 2, (40, 5)), rng.integers(0, 2, (40, 5))
    y[0], pred[0] = 1, 1  # no row with both sets empty (where samples-F1 conventions differ)
    for average, ours in (("micro", micro_f1), ("samples", samples_f1)):
        assert ours(y, pred) == pytest.approx(f1_score(y, pred, average=average,
                                                       zero_division=0))
    assert label_f1s(y, pred).mean() == pytest.approx(f1_score(y, pred, average="macro"))
    assert hamming_loss(y, pred) == pytest.approx(sk_hamming(y, pred))


def test_empty_rows_and_labels():
    y, pred = np.array([[0, 0], [1, 0]]), np.array([[0, 0], [0, 0]])
    assert samples_f1(y, pred) == pytest.approx(0.5)  # both empty: 1; a missed label: 0
    assert label_f1s(y, pred) == pytest.approx([0.0, 0.0])


def test_best_f1_threshold_by_hand():
    # accepting the top 1, 2, 3, 4: F1 2/3, 1/2, 4/5, 2/3 -> the top 3: between 0.3 and 0.2
    assert best_f1_threshold([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.2]) == pytest.approx(0.25)
    # a tie at 0.7 cannot be cut: top 2 (2/3) beats all 3 (1/2)
    assert best_f1_threshold([1, 0, 0], [0.7, 0.7, 0.1]) == pytest.approx(0.4)
    assert best_f1_threshold([0, 0, 0], [0.9, 0.2, 0.1]) == DEFAULT_THRESHOLD


def test_choose_thresholds_and_decide():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    probs = np.array([[0.9, 0.8], [0.2, 0.1], [0.6, 0.3]])
    t = choose_thresholds(y, probs)
    assert t == pytest.approx([0.4, DEFAULT_THRESHOLD])  # label 1: no positive, 0.5
    assert decide(probs, t).tolist() == [[True, True], [False, False], [True, False]]


def test_report_and_its_table():
    probs = np.where(PRED == 1, 0.8, 0.2)
    report = multilabel_report(Y, probs, ["a", "b", "c"], [0.5, 0.5, 0.5])
    assert report["micro_f1"] == pytest.approx(8 / 11)
    assert report["macro_f1"] == pytest.approx((1 + 2 / 3 + 0.5) / 3)
    assert report["accuracy"] == report["subset_accuracy"] == pytest.approx(0.25)
    assert report["per_label"]["c"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "threshold": 0.5})
    text = format_report(report)
    assert "micro-F1 0.727" in text and "Hamming loss 0.2500" in text
    assert text.splitlines()[0].split() == ["label", "precision", "recall", "f1", "support",
                                            "threshold"]
