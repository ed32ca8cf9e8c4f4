"""Tests for gptcls.evaluation.metrics, cross-checked against scikit-learn (a test-only
dependency)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from gptcls.errors import GptclsError
from gptcls.evaluation.metrics import (
    average_precision,
    classification_report,
    format_report,
    precision_recall_curve,
    predict,
    roc_auc,
    roc_curve,
    threshold_for_max_fpr,
)
from gptcls.evaluation.plots import plot_confusion_matrix, plot_pr_curve, plot_roc_curve


@pytest.fixture(autouse=True)
def _no_warnings() -> Iterator[None]:
    # Honest metrics must not lean on NaN or divide-by-zero warnings anywhere.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _random_case(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    # One decimal: plenty of tied scores, the case rank- and curve-code gets wrong.
    logits = np.round(rng.normal(size=(n, k)) + 0.8 * np.eye(k)[y], 1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, np.round(probs, 1)


def _check_against_sklearn(y: np.ndarray, probs: np.ndarray, threshold: float | None) -> None:
    k = probs.shape[1]
    report = classification_report(y, probs, [f"c{i}" for i in range(k)], threshold=threshold)
    pred = predict(probs, threshold)
    labels = list(range(k))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per = report["per_class"]
    assert [per[f"c{i}"]["precision"] for i in labels] == pytest.approx(p)
    assert [per[f"c{i}"]["recall"] for i in labels] == pytest.approx(r)
    assert [per[f"c{i}"]["f1"] for i in labels] == pytest.approx(f)
    assert [per[f"c{i}"]["support"] for i in labels] == s.tolist()
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    # sklearn's default macro runs over the labels present in y_true or y_pred, as ours does.
    for avg in ("macro", "weighted"):
        assert report[f"{avg}_f1"] == pytest.approx(
            skm.f1_score(y, pred, average=avg, zero_division=0))
    assert report["macro_precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0))
    assert report["macro_recall"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", zero_division=0))
    assert report["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
    if k == 2:
        assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
        assert report["average_precision"] == pytest.approx(
            skm.average_precision_score(y, probs[:, 1]))
    else:
        assert report["roc_auc"] is None and report["average_precision"] is None


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(("n", "k", "threshold"),
                         [(40, 2, None), (301, 2, 0.3), (500, 2, 0.7), (250, 3, None),
                          (97, 5, None)])
def test_matches_sklearn_on_random_data(seed: int, n: int, k: int, threshold: float | None) -> None:
    y, probs = _random_case(seed, n, k)
    _check_against_sklearn(y, probs, threshold)


def test_class_never_predicted_has_precision_zero() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 0, 0, 1, 1, 1]]  # class 2 never predicted
    report = classification_report(y, probs, ["a", "b", "c"])
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    _check_against_sklearn(y, probs, None)


def test_class_absent_everywhere_is_left_out_of_macro() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.1, 0.9, 0], [0, 1.0, 0]])
    report = classification_report(y, probs, ["a", "b", "c"])
    assert report["per_class"]["c"]["support"] == 0
    assert report["macro_f1"] == pytest.approx(skm.f1_score(y, predict(probs), average="macro"))
    assert report["imbalanced"] is True  # a class with no test rows is as imbalanced as it gets


def test_single_class_y_true() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    report = classification_report([0, 0, 0], probs, ["ham", "spam"])
    assert report["roc_auc"] is None and report["average_precision"] is None
    assert report["per_class"]["spam"]["precision"] == 0.0
    assert classification_report([1, 1, 1], probs, ["ham", "spam"])["roc_auc"] is None
    assert average_precision([1, 1, 1], probs[:, 1]) == pytest.approx(
        skm.average_precision_score([1, 1, 1], probs[:, 1]))


def test_all_scores_tied() -> None:
    y, s = np.array([0, 1, 0, 1, 1]), np.full(5, 0.5)
    assert roc_auc(y, s) == 0.5
    assert average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s))


@pytest.mark.parametrize("seed", range(5))
def test_curves_match_sklearn(seed: int) -> None:
    y, probs = _random_case(seed, 200, 2)
    s = probs[:, 1]
    for ours, theirs in zip(roc_curve(y, s), skm.roc_curve(y, s, drop_intermediate=False),
                            strict=True):
        np.testing.assert_allclose(ours, theirs)
    for ours, theirs in zip(precision_recall_curve(y, s), skm.precision_recall_curve(y, s),
                            strict=True):
        np.testing.assert_allclose(ours, theirs)


def test_imbalance_and_headline() -> None:
    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    probs = np.c_[np.ones(100), np.zeros(100)]  # always "ham": 90 % accuracy, useless
    report = classification_report(y, probs, ["ham", "spam"])
    assert (report["imbalanced"], report["headline"]) == (True, "macro_f1")
    text = format_report(report)
    assert text.splitlines()[0] == ("100 examples; imbalanced classes (10 vs 90), so macro-F1 "
                                    "is the headline, not accuracy")
    assert text.splitlines()[1].startswith("macro-F1") and "0.4737" in text.splitlines()[1]
    balanced = classification_report([0, 1, 1, 0], np.eye(2)[[0, 1, 0, 0]], ["a", "b"])
    assert (balanced["imbalanced"], balanced["headline"]) == (False, "accuracy")
    assert format_report(balanced).splitlines()[1].startswith("accuracy")


def test_format_report_table_and_matrix() -> None:
    y = [0, 0, 1, 1, 1]
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.1, 0.9], [0.9, 0.1]])
    report = classification_report(y, probs, ["ham", "a-long-class-name"], threshold=0.5)
    json.dumps(report)  # the CLI writes it to metrics.json as is
    lines = format_report(report).splitlines()
    assert "threshold          P(a-long-class-name) >= 0.5000" in lines
    assert lines[lines.index("confusion matrix (rows: true class, columns: predicted class)")
                 + 1:] == [
        "true \\ predicted                   ham  a-long-class-name",
        "ham                                  1                  1",
        "a-long-class-name                    1                  2",
    ]
    assert any(line.split()[:2] == ["ham", "0.5000"] for line in lines)


def test_threshold_for_max_fpr_brute_force() -> None:
    for seed in range(10):
        y, probs = _random_case(seed, 150, 2)
        s = probs[:, 1]
        negatives = s[y == 0]
        for max_fpr in (0.0, 0.01, 0.05, 0.1, 0.3, 1.0):
            t = threshold_for_max_fpr(y, s, max_fpr)
            assert np.mean(negatives >= t) <= max_fpr
            lower = [c for c in np.unique(s) if c < t]
            assert all(np.mean(negatives >= c) > max_fpr for c in lower)  # none lower fits


def test_threshold_for_max_fpr_ties_and_edges() -> None:
    y = [0, 1, 0, 1] + [0] * 8
    s = [0.9, 0.8, 0.8, 0.7] + [0.1] * 8
    # 0.1 * 10 negatives allows one false positive: 0.8 would add a second (tied with a
    # positive), so the tie group stays out and t is 0.9.
    assert threshold_for_max_fpr(y, s, 0.1) == 0.9
    assert threshold_for_max_fpr(y, s, 0.25) == 0.7
    assert threshold_for_max_fpr(y, s, 1.0) == 0.1
    t = threshold_for_max_fpr(y, s, 0.0)  # even the top score is a negative
    assert t > 0.9 and t == np.nextafter(0.9, 1)
    with pytest.raises(GptclsError, match="no negative examples"):
        threshold_for_max_fpr([1, 1], [0.2, 0.3], 0.1)
    with pytest.raises(GptclsError, match="between 0 and 1"):
        threshold_for_max_fpr(y, s, 1.5)


def test_input_checks() -> None:
    with pytest.raises(GptclsError, match="a threshold only applies to 2 classes"):
        classification_report([0, 1, 2], np.eye(3), ["a", "b", "c"], threshold=0.5)
    with pytest.raises(ValueError, match="shape"):
        classification_report([0, 1], np.eye(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="class indices"):
        classification_report([0, 3], np.eye(2), ["a", "b"])
    with pytest.raises(GptclsError, match="no examples to evaluate"):
        classification_report([], np.zeros((0, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="0 \\(negative\\) and 1"):
        roc_auc([0, 2], [0.1, 0.2])


def test_plots_write_pngs(tmp_path: Path) -> None:
    y, probs = _random_case(0, 100, 2)
    cm = classification_report(y, probs, ["ham", "spam"])["confusion_matrix"]
    paths = [plot_confusion_matrix(cm, ["ham", "spam"], tmp_path / "plots" / "cm.png"),
             plot_pr_curve(y, probs[:, 1], tmp_path / "pr.png"),
             plot_roc_curve(y, probs[:, 1], tmp_path / "roc.png")]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
