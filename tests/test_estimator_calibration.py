"""GPTClassifier.fit ends as a `gptcls train` run on data a user brings: the temperature fitted
on the held-out validation_fraction (training/decisions.py, as pipeline.py), and the class-prior
threshold (evaluation/prior.py) with the estimator's `prior` parameter."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="GPTClassifier needs scikit-learn (dev extra)")
from helpers import ESTIMATOR_TINY as TINY  # noqa: E402
from helpers import TOY_HAM as HAM  # noqa: E402
from helpers import TOY_LABELS as LABELS  # noqa: E402
from helpers import TOY_SPAM as SPAM  # noqa: E402
from helpers import TOY_TEXTS as TEXTS  # noqa: E402
from sklearn.base import clone  # noqa: E402

from gptcls import GPTClassifier  # noqa: E402
from gptcls.estimator import EstimatorError, label_indices  # noqa: E402
from gptcls.evaluation.calibration import calibrate  # noqa: E402
from gptcls.training.in_memory import holdout  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# 18 ham, 6 spam: a source prior of 0.75 / 0.25.
SKEWED_TEXTS = SPAM[:6] + HAM + [f"the meeting moved to room {i}" for i in range(6)]
SKEWED = ["spam"] * 6 + ["ham"] * 18



def agrees(est: GPTClassifier, texts: list[str]) -> None:
    """predict is decision_function's sign, and the threshold (or argmax) on predict_proba."""
    pred = est.predict(texts)
    scores = est.decision_function(texts)
    assert list(pred) == list(est.classes_[(scores > 0).astype(int)])
    p1, t = est.predict_proba(texts)[:, 1], est.classifier_.config.threshold
    assert list(pred) == list(est.classes_[(p1 >= (0.5 if t is None else t)).astype(int)])


def test_temperature_is_the_pipelines_fit_on_the_held_out_texts():
    # Every 4th label flipped: held-out errors to calibrate on (T = 0.35 here, seed 123).
    labels = [("ham" if lab == "spam" else "spam") if i % 4 == 0 else lab
              for i, lab in enumerate(LABELS)]
    est = GPTClassifier(**{**TINY, "epochs": 4, "lr": 3e-3}, validation_fraction=0.25)
    est.fit(TEXTS, labels)
    temperature = est.classifier_.config.temperature
    _, y = label_indices(np.array(labels))
    _, val = holdout(y.tolist(), 0.25, est.split_seed)  # the texts fit held out
    clf = est.classifier_
    clf.config.temperature = 1.0
    raw = clf.predict_proba([TEXTS[i] for i in val])  # the uncalibrated probabilities
    clf.config.temperature = temperature
    cal = calibrate({"validation": raw}, {"validation": y[val].tolist()},
                    report_on=("validation",))
    assert cal.section["fit_errors"] > 0  # something to calibrate on
    assert temperature == pytest.approx(cal.temperature, rel=1e-3)
    assert abs(temperature - 1.0) > 0.1
    probs = est.predict_proba(TEXTS)  # calibrated: the temperature is used
    assert np.allclose(probs, clf.predict_proba(TEXTS), atol=1e-5)
    agrees(est, TEXTS)


def test_no_validation_no_calibration():
    est = GPTClassifier(**TINY).fit(TEXTS, LABELS)
    assert est.classifier_.config.temperature == 1.0
    assert est.classifier_.config.threshold is None  # balance none: trained at the source prior


@pytest.mark.parametrize("balance", ["weighted", "undersample"])
def test_imbalanced_fit_decides_at_the_source_prior(balance):
    est = GPTClassifier(**TINY, balance=balance, prior="source").fit(SKEWED_TEXTS, SKEWED)
    assert list(est.classes_) == ["ham", "spam"]
    # Trained at 50/50 (weighted, or undersampled to 6 + 6): the Bayes threshold for 75% ham.
    assert est.classifier_.config.threshold == pytest.approx(0.75)
    agrees(est, SKEWED_TEXTS)
    default = clone(est).set_params(prior=None).fit(SKEWED_TEXTS, SKEWED)
    assert default.classifier_.config.threshold == pytest.approx(0.75)  # user data: source
    at_train = clone(est).set_params(prior="train").fit(SKEWED_TEXTS, SKEWED)
    assert at_train.classifier_.config.threshold is None  # argmax at the training prior


def test_given_prior_and_explicit_threshold():
    est = GPTClassifier(**TINY, balance="weighted", prior="spam=0.1,ham=0.9")
    est.fit(SKEWED_TEXTS, SKEWED)
    assert est.classifier_.config.threshold == pytest.approx(0.9)
    agrees(est, SKEWED_TEXTS)
    # An explicit threshold wins over the prior's, as --threshold does in `gptcls train`.
    fixed = clone(est).set_params(threshold=0.3).fit(SKEWED_TEXTS, SKEWED)
    assert fixed.classifier_.config.threshold == pytest.approx(0.3)
    # With nothing shifted (balance none, the source prior) the decision stays argmax.
    plain = GPTClassifier(**TINY, prior="source").fit(SKEWED_TEXTS, SKEWED)
    assert plain.classifier_.config.threshold is None


def test_prior_is_a_parameter_checked_by_fit():
    est = GPTClassifier(**TINY, prior="spam=0.2,eggs=0.8")
    assert est.get_params()["prior"] == "spam=0.2,eggs=0.8"  # stored as given
    assert clone(est).prior == "spam=0.2,eggs=0.8"
    with pytest.raises(EstimatorError, match="unknown label"):  # the data's labels
        est.fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="sum to"):
        est.set_params(prior="spam=0.5,ham=0.6").fit(TEXTS, LABELS)
    with pytest.raises(ValueError, match="--prior"):  # single-label only, as the CLI says
        GPTClassifier(**TINY, prior="source").fit(TEXTS, [["a"], ["b"]] * 12)
