"""A single-label run's decisions once the model is trained, the same for `gptcls train`
(pipeline.py) and the scikit-learn estimator (in_memory.py): the temperature fitted on the
validation split (evaluation/calibration.py), then the binary threshold on the calibrated
probabilities: --threshold, the one --max-fpr allows on validation, or else the class prior's
(evaluation/prior.py; None: argmax)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from gptcls.errors import GptclsError
from gptcls.evaluation.calibration import Calibration, calibrate
from gptcls.evaluation.metrics import threshold_for_max_fpr
from gptcls.options import RunOptions

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


def fit_decisions(opts: RunOptions, probs: Mapping[str, np.ndarray],
                  labels: Mapping[str, Sequence[int]], prior_threshold: float | None,
                  log: Log = _quiet, report_on: Sequence[str] = ("validation", "test")
                  ) -> tuple[Calibration, float | None]:
    """(the calibration fitted on probs["validation"], the threshold). probs: split name ->
    (n, k) uncalibrated probabilities; labels: split name -> true class indices; report_on:
    the splits whose ECE and NLL before/after go into the calibration's section."""
    cal = calibrate(probs, labels, report_on=report_on)
    threshold = choose_threshold(opts, labels["validation"], cal.probs["validation"],
                                 prior_threshold, log)
    return cal, threshold


def choose_threshold(opts: RunOptions, val_labels: Sequence[int], val_probs: np.ndarray,
                     default: float | None = None, log: Log = _quiet) -> float | None:
    """Binary tasks: the given --threshold, or the lowest one keeping validation FPR <= max_fpr,
    else `default` (the prior's). val_probs: (n, k) calibrated probabilities."""
    if opts.threshold is None and opts.max_fpr is None:
        return default
    if val_probs.shape[1] != 2:
        raise GptclsError("--threshold and --max-fpr apply to two-class tasks only")
    if opts.threshold is not None:
        return float(opts.threshold)
    t = threshold_for_max_fpr(list(val_labels), val_probs[:, 1], opts.max_fpr)
    log(f"threshold {t:.4f} chosen on validation for false-positive rate <= {opts.max_fpr}")
    return float(t)
