"""Class priors: --prior parsing, reweighted metrics on a hand-computed confusion matrix, the
threshold that is best at a prior, and which prior a run decides at."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gptcls.data.examples import Example
from gptcls.errors import GptclsError
from gptcls.evaluation.prior import (
    bayes_threshold,
    check_prior,
    decide_prior,
    parse_prior,
    prior_section,
    prior_values,
    reweighted_report,
)

LABELS = ["ham", "spam"]


def test_parse_prior_named_and_positional():
    assert parse_prior("spam=0.13,ham=0.87") == (["spam", "ham"], [0.13, 0.87])
    assert parse_prior("0.87, 0.13") == (None, [0.87, 0.13])
    np.testing.assert_allclose(prior_values("spam=0.13,ham=0.87", LABELS), [0.87, 0.13])
    np.testing.assert_allclose(prior_values("0.87,0.13", LABELS), [0.87, 0.13])
    check_prior("train")
    check_prior("source")
    check_prior(None)


@pytest.mark.parametrize("text, message", [
    ("spam=0.2,ham=0.7", "sum to 0.9, not 1"),
    ("0.5,0.50001", "not 1"),
    ("spam=0,ham=1", "> 0"),
    ("spam=-0.1,ham=1.1", "> 0"),
    ("spam=nan,ham=1", "> 0"),
    ("spam=lots,ham=0.5", "must be numbers"),
    ("balanced", "must be numbers"),
    ("spam=0.5,0.5", "not both"),
    ("spam=0.5,spam=0.5", "twice"),
])
def test_prior_form_errors(text, message):
    with pytest.raises(GptclsError, match=message):
        check_prior(text)


@pytest.mark.parametrize("text, message", [
    ("spam=0.5,hm=0.5", r"unknown label\(s\) \['hm'\]"),
    ("spam=1", r"no value for \['ham'\]"),
    ("0.2,0.3,0.5", "3 values for 2 labels"),
])
def test_prior_label_errors(text, message):
    with pytest.raises(GptclsError, match=message):
        prior_values(text, LABELS)


def test_reweighted_report_on_a_hand_computed_confusion_matrix():
    # cm = [[40, 10], [5, 45]] on a 50/50 test split, reweighted to ham 0.9, spam 0.1:
    # rows x (1.8, 0.2) -> [[72, 18], [1, 9]] of 100.
    y = [0] * 50 + [1] * 50
    pred = [0] * 40 + [1] * 10 + [0] * 5 + [1] * 45
    r = reweighted_report(y, pred, LABELS, np.array([0.9, 0.1]))
    assert r["accuracy"] == pytest.approx(0.81)
    spam, ham = r["per_class"]["spam"], r["per_class"]["ham"]
    assert spam["precision"] == pytest.approx(9 / 27)
    assert spam["recall"] == pytest.approx(0.9)
    assert spam["f1"] == pytest.approx(18 / 37)
    assert ham["precision"] == pytest.approx(72 / 73)
    assert ham["recall"] == pytest.approx(0.8)
    assert r["macro_f1"] == pytest.approx((18 / 37 + 144 / 163) / 2)
    # At the test split's own prior nothing changes.
    assert reweighted_report(y, pred, LABELS, np.array([0.5, 0.5]))["accuracy"] == 0.85


def test_bayes_threshold_values():
    assert bayes_threshold(np.array([0.5, 0.5]), np.array([0.87, 0.13])) == pytest.approx(0.87)
    # r = (0.8 / 0.4, 0.2 / 0.6) = (2, 1/3): t = 2 / (7 / 3)
    assert bayes_threshold(np.array([0.4, 0.6]), np.array([0.8, 0.2])) == pytest.approx(6 / 7)
    assert bayes_threshold(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(0.5)


def test_bayes_threshold_is_best_at_the_deployment_prior():
    # Calibrated scores at a balanced training prior: P(spam | s) = s. Reweighted to 13% spam,
    # accuracy peaks at the threshold the prior gives (0.87).
    rng = np.random.default_rng(0)
    s = rng.random(400_000)
    y = (rng.random(len(s)) < s).astype(int)
    y, s = np.r_[y, 1 - y], np.r_[s, 1 - s]  # exactly balanced, as undersampling makes it
    probs = np.c_[1 - s, s]
    deploy = np.array([0.87, 0.13])
    grid = np.linspace(0.5, 0.99, 50)
    acc = [reweighted_report(y, (probs[:, 1] >= t).astype(int), LABELS, deploy)["accuracy"]
           for t in grid]
    best = bayes_threshold(np.array([0.5, 0.5]), deploy)
    assert abs(grid[int(np.argmax(acc))] - best) <= 0.02
    at_best = reweighted_report(y, (probs[:, 1] >= best).astype(int), LABELS, deploy)
    assert at_best["accuracy"] > acc[0] + 0.02  # far better than 0.5 at that prior


def splits(train: dict, source: dict | None, balanced=None, weights=None):
    return SimpleNamespace(
        labels=LABELS, train=[Example(f"t{i}", k) for k, n in train.items() for i in range(n)],
        source_counts=source, balanced=balanced, class_weights=weights)


def test_decide_prior_for_each_balance_mode():
    under = splits({"ham": 50, "spam": 50}, {"ham": 866, "spam": 134}, balanced=(268, 1000))
    d = decide_prior(None, under, chapter=False)
    assert d.name == "source" and d.fit_how == "undersampled"
    assert d.threshold == pytest.approx(0.866)
    chapter = decide_prior(None, under, chapter=True)
    assert chapter.name == "train" and chapter.threshold is None
    np.testing.assert_allclose(chapter.target, [0.866, 0.134])  # figures still at the source
    given = decide_prior("spam=0.2,ham=0.8", under, chapter=True)
    assert given.name == "given" and given.threshold == pytest.approx(0.8)
    assert decide_prior("train", under, chapter=False).threshold is None
    # Weighted: the loss sees a uniform prior; the source prior shifts the threshold back.
    weighted = splits({"ham": 80, "spam": 20}, {"ham": 80, "spam": 20}, weights=[0.4, 1.6])
    d = decide_prior(None, weighted, chapter=False)
    assert d.fit_how == "class-weighted" and d.threshold == pytest.approx(0.8)
    # Unbalanced: the model already has the source prior, nothing to correct.
    plain = splits({"ham": 79, "spam": 21}, {"ham": 80, "spam": 20})
    assert decide_prior(None, plain, chapter=False).threshold is None


def test_prior_section_reports_the_decision_used_and_the_prior_threshold():
    under = splits({"ham": 50, "spam": 50}, {"ham": 900, "spam": 100}, balanced=(200, 1000))
    d = decide_prior("train", under, chapter=True)
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.05, 0.95], [0.4, 0.6]])
    sec = prior_section(d, y, probs, None)
    assert sec["decision"] == "train" and sec["threshold"] is None
    assert sec["target"] == "source" and sec["target_threshold"] == pytest.approx(0.9)
    # argmax: one ham false positive, no spam missed; at 0.9: one spam missed, no false alarm.
    assert sec["test_reweighted"]["accuracy"] == pytest.approx(0.55)
    assert sec["test_reweighted_at_target_threshold"]["accuracy"] == pytest.approx(0.95)
