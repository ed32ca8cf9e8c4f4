"""training/decisions.py: the temperature and threshold a run stores, shared by `gptcls train`
and the scikit-learn estimator."""

from __future__ import annotations

import numpy as np
import pytest

from gptcls.errors import GptclsError
from gptcls.evaluation.calibration import fit_temperature, log_probs
from gptcls.options import RunOptions
from gptcls.training.decisions import choose_threshold, fit_decisions

# Overconfident on validation: two of eight wrong at p = 0.95.
VAL_P1 = np.array([0.05, 0.05, 0.05, 0.95, 0.95, 0.95, 0.95, 0.05])
VAL_Y = [0, 0, 0, 1, 1, 1, 0, 1]


def probs(p1: np.ndarray) -> np.ndarray:
    return np.stack([1 - p1, p1], axis=1)  # (n, 2)


def test_fit_decisions_calibrates_on_validation_then_takes_the_prior_threshold():
    p = {"validation": probs(VAL_P1), "test": probs(np.array([0.9, 0.2]))}
    y = {"validation": VAL_Y, "test": [1, 0]}
    cal, threshold = fit_decisions(RunOptions(out="x"), p, y, prior_threshold=0.8)
    assert cal.temperature == pytest.approx(fit_temperature(log_probs(p["validation"]), VAL_Y))
    assert cal.temperature > 1.5  # softened: the model was overconfident
    assert threshold == 0.8  # no --threshold or --max-fpr: the prior's
    assert set(cal.section) >= {"validation", "test"}
    only_val = fit_decisions(RunOptions(out="x"), {"validation": p["validation"]},
                             {"validation": VAL_Y}, None, report_on=("validation",))[0]
    assert only_val.temperature == pytest.approx(cal.temperature)


def test_choose_threshold_given_max_fpr_and_multiclass():
    val = probs(np.linspace(0.05, 0.95, 8))
    assert choose_threshold(RunOptions(out="x", threshold=0.3), VAL_Y, val, 0.8) == 0.3
    lines: list[str] = []
    t = choose_threshold(RunOptions(out="x", max_fpr=0.0), [0, 0, 0, 0, 1, 1, 1, 1], val,
                         None, lines.append)
    assert t > 0.05 + 0.9 * 3 / 7 and "false-positive rate <= 0.0" in lines[0]  # no ham above
    assert choose_threshold(RunOptions(out="x"), [], np.empty((0, 3)), None) is None
    with pytest.raises(GptclsError, match="two-class tasks only"):
        choose_threshold(RunOptions(out="x", threshold=0.5), [], np.empty((0, 3)))
