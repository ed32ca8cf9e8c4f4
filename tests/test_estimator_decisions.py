"""GPTClassifier decides as Classifier does: the run's calibration temperature in predict_proba,
its threshold (the class prior's, --threshold or --max-fpr's) in predict, and decision_function
scores whose sign or argmax is predict's answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="GPTClassifier needs scikit-learn (dev extra)")
from helpers import ESTIMATOR_TINY as TINY  # noqa: E402
from helpers import TOY_LABELS as LABELS  # noqa: E402
from helpers import TOY_TEXTS as TEXTS  # noqa: E402

from gptcls import GPTClassifier  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def flipping_threshold(p1: np.ndarray) -> float:
    """A threshold between two distinct probabilities that decides some text otherwise than
    argmax (>= 0.5) and leaves both classes predicted."""
    u = np.unique(p1)
    assert len(u) >= 3, "the tiny model gives too few distinct probabilities"
    for t in (u[:-1] + u[1:]) / 2:
        pred = p1 >= t
        if (pred != (p1 >= 0.5)).any() and 0 < pred.sum() < len(p1):
            return float(t)
    raise AssertionError(f"no threshold flips a decision among {u}")


def test_binary_temperature_and_threshold_are_the_classifiers():
    est = GPTClassifier(**TINY).fit(TEXTS, LABELS)
    clf = est.classifier_
    raw = est.predict_proba(TEXTS)  # temperature 1, no threshold yet
    clf.config.temperature = 0.25  # sharper: what a fitted temperature below 1 does
    probs = est.predict_proba(TEXTS)
    assert np.allclose(probs, clf.predict_proba(TEXTS), atol=1e-5)
    assert np.abs(probs - raw).max() > 1e-3  # the temperature is applied, not ignored
    clf.config.threshold = flipping_threshold(probs[:, 1])
    pred = est.predict(TEXTS)
    assert list(pred) == clf.predict(TEXTS)
    assert list(pred) != list(est.classes_[probs.argmax(1)])  # the threshold decided
    scores = est.decision_function(TEXTS)
    assert scores.shape == (24,)
    assert list(est.classes_[(scores > 0).astype(int)]) == list(pred)
    t = clf.config.threshold  # calibrated log-odds less the threshold's
    expected = np.log(probs[:, 1] / probs[:, 0]) - np.log(t / (1 - t))
    assert np.allclose(scores, expected, atol=1e-4)


def test_multiclass_scores_are_calibrated_logits():
    texts = TEXTS + [f"the weather is {w} today" for w in ("sunny", "cold", "grey", "wet")] * 3
    y = np.array([2] * 12 + [0] * 12 + [1] * 12)
    est = GPTClassifier(**TINY).fit(texts, y)
    clf = est.classifier_
    clf.config.temperature = 2.0
    scores = est.decision_function(texts)
    probs = est.predict_proba(texts)
    assert scores.shape == (36, 3)
    assert np.allclose(torch.softmax(torch.from_numpy(scores), -1).numpy(), probs, atol=1e-5)
    assert np.allclose(probs, clf.predict_proba(texts), atol=1e-5)
    assert list(est.predict(texts)) == list(est.classes_[scores.argmax(1)])


def test_multilabel_scores_are_positive_where_a_label_is_predicted():
    y = [["offer", "urgent"] if i < 8 else ["offer"] if i < 12 else ["social"]
         for i in range(24)]
    est = GPTClassifier(**TINY).fit(TEXTS, y)
    clf = est.classifier_
    probs = est.predict_proba(TEXTS)
    clf.config.thresholds = [flipping_threshold(probs[:, k]) for k in range(probs.shape[1])]
    pred = est.predict(TEXTS)
    assert pred.shape == (24, 3) and set(np.unique(pred)) == {0, 1}
    assert (pred == (probs >= np.array(clf.config.thresholds))).all()
    assert (pred == (est.decision_function(TEXTS) > 0)).all()
    sets = clf.predict(TEXTS)
    assert sets == [[lab for lab, v in zip(clf.labels, row, strict=True) if v] for row in pred]
