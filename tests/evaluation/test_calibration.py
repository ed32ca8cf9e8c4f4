"""Temperature scaling and ECE: fitted T recovers a known temperature, lowers the NLL, never
changes argmax; ECE on a hand-computed example; Classifier applies the run's T."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gptcls.classifier.classifier import Classifier
from gptcls.errors import GptclsError
from gptcls.evaluation.calibration import (
    T_BOUNDS,
    calibrate,
    fit_temperature,
    log_probs,
    nll,
    tempered_softmax,
)
from gptcls.evaluation.metrics import expected_calibration_error, reliability_bins


def miscalibrated(t_true: float, n: int = 20000, k: int = 3, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * t_true (overconfident if > 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, k))
    p = tempered_softmax(z, 1.0)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)  # one draw per row from p
    return z * t_true, y


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_fit_recovers_a_known_temperature_and_lowers_nll(t_true):
    logits, y = miscalibrated(t_true)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(t_true, rel=0.05)
    assert nll(logits, y, t) < nll(logits, y, 1.0) - 1e-3
    assert fit_temperature(logits, y) == t  # deterministic


def test_temperature_never_changes_argmax():
    logits, y = miscalibrated(2.5, n=2000)
    for t in (0.1, 0.7, 3.0, 19.0):
        assert (tempered_softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_probabilities_stand_in_for_logits():
    logits, _ = miscalibrated(1.0, n=50)
    probs = tempered_softmax(logits, 1.0).astype(np.float32)
    np.testing.assert_allclose(tempered_softmax(log_probs(probs), 1.7),
                               tempered_softmax(logits, 1.7), atol=1e-6)


def test_no_errors_on_validation_keeps_t_at_one():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.5]])
    assert fit_temperature(logits, [0, 1, 0]) == 1.0


def test_all_wrong_runs_to_the_upper_bound():
    logits = np.array([[3.0, 0.0], [0.0, 2.0]])
    assert fit_temperature(logits, [1, 0]) == pytest.approx(T_BOUNDS[1], rel=1e-4)


def test_fit_rejects_mismatched_shapes():
    with pytest.raises(GptclsError, match="cannot fit a temperature"):
        fit_temperature(np.zeros((3, 2)), [0, 1])


def test_ece_on_a_hand_computed_example():
    # Top probabilities 0.9 (bin 13, right), 0.85 (bin 12, wrong), 0.62 and 0.65 (bin 9, one
    # right): 1/4 * 0.1 + 1/4 * 0.85 + 2/4 * |0.5 - 0.635| = 0.305.
    probs = np.array([[0.9, 0.1], [0.15, 0.85], [0.38, 0.62], [0.65, 0.35]])
    y = [0, 0, 1, 1]
    assert expected_calibration_error(y, probs) == pytest.approx(0.305, abs=1e-12)
    count, conf, acc = reliability_bins(y, probs)
    assert count.tolist() == [0] * 9 + [2, 0, 0, 1, 1, 0]
    assert conf[9] == pytest.approx(0.635) and acc[9] == pytest.approx(0.5)


def test_ece_bins_are_right_closed():
    # 2 bins: (0, 0.5] and (0.5, 1]; a top probability of exactly 0.5 is in the first.
    count, _, _ = reliability_bins([0, 0], np.array([[0.5, 0.5], [1.0, 0.0]]), n_bins=2)
    assert count.tolist() == [1, 1]
    assert expected_calibration_error([0], np.array([[1.0, 0.0]])) == 0.0


def test_calibrate_reports_ece_and_nll_before_and_after():
    logits, y = miscalibrated(3.0, n=6000)
    probs = {"validation": tempered_softmax(logits[:3000], 1.0),
             "test": tempered_softmax(logits[3000:], 1.0)}
    cal = calibrate(probs, {"validation": y[:3000], "test": y[3000:]})
    assert cal.temperature == pytest.approx(3.0, rel=0.1)
    for name in ("validation", "test"):
        s = cal.section[name]
        assert s["ece_after"] < s["ece_before"] and s["nll_after"] < s["nll_before"]
        assert (cal.probs[name].argmax(1) == probs[name].argmax(1)).all()


def test_classifier_applies_the_run_temperature(tiny_clf, tiny_test_texts):
    c = tiny_clf
    hot = Classifier(dataclasses.replace(c.config, temperature=2.5, threshold=None), c.model,
                     c.tokenizer, device="cpu", precision="fp32")
    texts = tiny_test_texts[:4]
    probs = hot.predict_proba(texts)
    for text, p in zip(texts, probs, strict=True):
        ids = hot.encode([text])[0]
        with torch.inference_mode():
            logits = hot.model(torch.tensor([ids]), torch.tensor([len(ids)])).float()[0]
        np.testing.assert_allclose(p, torch.softmax(logits / 2.5, -1).numpy(), atol=1e-5)
    assert hot.predict(texts) == [hot.labels[int(i)] for i in probs.argmax(1)]


def test_runs_written_before_calibration_load_with_temperature_one(tiny_clf):
    from gptcls.classifier.config import ClassifierConfig

    old = tiny_clf.config.to_dict()
    del old["temperature"]
    assert ClassifierConfig.from_dict(old).temperature == 1.0


def test_onnx_classifier_applies_the_temperature(tiny_run, tiny_test_texts, tmp_path):
    import json
    import shutil

    from gptcls.serving.export_onnx import OnnxClassifier, export_onnx

    run = tmp_path / "hot"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "temperature": 3.0}))
    onnx = OnnxClassifier.from_run(run, export_onnx(run, tmp_path / "hot.onnx"))
    hot = Classifier.load(run, device="cpu", precision="fp32")
    texts = tiny_test_texts[:5]
    np.testing.assert_allclose(onnx.predict_proba(texts), hot.predict_proba(texts), atol=1e-4)
    cold = Classifier(dataclasses.replace(hot.config, temperature=1.0), hot.model,
                      hot.tokenizer, device="cpu", precision="fp32").predict_proba(texts)
    np.testing.assert_allclose(onnx.predict_proba(texts), tempered_softmax(np.log(cold), 3.0),
                               atol=1e-4)
