"""Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted after training on the
validation split, so that softmax(logits / T) minimises the negative log-likelihood there.

Dividing every logit by the same T never changes which class is largest, so argmax labels stay
exactly as they were; only the confidence moves (T > 1 softens an overconfident model, T < 1
sharpens an underconfident one). The fit is a deterministic golden-section search over log T,
which finds the one minimum because the NLL is convex in 1/T.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gptcls.errors import GptclsError
from gptcls.evaluation.metrics import ECE_BINS, expected_calibration_error

RELIABILITY_PLOT = "reliability.png"  # in the run directory
T_BOUNDS = (0.05, 20.0)  # beyond these a model is hopeless or the search has run away
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
# float32 softmax underflows to 0 below exp(-103); clamping there keeps log p finite.
_LOG_FLOOR = -103.0


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant (which softmax ignores), from probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(p), _LOG_FLOOR)


def tempered_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) row-wise, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)  # (n, k), row max 0: no overflow
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, y_true: Sequence[int], temperature: float) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(y_true, dtype=np.int64)
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))  # (n,) log-sum-exp
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y_true: Sequence[int],
                    bounds: tuple[float, float] = T_BOUNDS, tol: float = 1e-7) -> float:
    """The T in `bounds` minimising nll(logits, y_true, T).

    With every example already right (argmax) the NLL only falls as T -> 0: there is no
    evidence of miscalibration to correct, so T stays 1 rather than running to the bound.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise GptclsError(f"cannot fit a temperature on logits of shape {z.shape} and "
                          f"{len(y)} labels")
    if (z.argmax(axis=1) == y).all() or np.ptp(z, axis=1).max() == 0:
        return 1.0
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(z, y, np.exp(a)), nll(z, y, np.exp(b))
    while hi - lo > tol:  # keeps the bracket [lo, hi] around the minimum of NLL(log T)
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(z, y, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(z, y, np.exp(b))
    return float(np.exp((lo + hi) / 2))


@dataclass
class Calibration:
    """A fitted temperature, the splits' calibrated probabilities and metrics.json's section."""

    temperature: float
    probs: dict[str, np.ndarray]  # split name -> (n, k) calibrated probabilities
    raw: dict[str, np.ndarray]  # split name -> (n, k) probabilities before calibration
    labels: dict[str, list[int]]  # split name -> true class indices
    section: dict


def calibrate(probs: Mapping[str, np.ndarray], labels: Mapping[str, Sequence[int]],
              fit_on: str = "validation", report_on: Sequence[str] = ("validation", "test")
              ) -> Calibration:
    """Fit T on `fit_on`'s probabilities (their logs are the logits up to a constant), then
    calibrate every split; ECE and NLL before/after on `report_on`."""
    logits = {name: log_probs(p) for name, p in probs.items()}
    t = fit_temperature(logits[fit_on], labels[fit_on])
    cal = {name: tempered_softmax(z, t) for name, z in logits.items()}
    errors = int((logits[fit_on].argmax(axis=1) != np.asarray(labels[fit_on])).sum())
    section: dict = {"temperature": t, "fitted_on": fit_on, "fit_errors": errors,
                     "ece_bins": ECE_BINS,
                     "at_bound": bool(np.isclose(t, T_BOUNDS, rtol=1e-4).any())}
    for name in report_on:
        y = labels[name]
        section[name] = {
            "ece_before": expected_calibration_error(y, np.asarray(probs[name])),
            "ece_after": expected_calibration_error(y, cal[name]),
            "nll_before": nll(logits[name], y, 1.0), "nll_after": nll(logits[name], y, t)}
    raw = {name: np.asarray(p, dtype=np.float64) for name, p in probs.items()}
    return Calibration(t, cal, raw, {n: [int(v) for v in y] for n, y in labels.items()},
                       section)


def format_calibration(section: dict, plot: str | None = None) -> str:
    """One or two lines for the training report."""
    parts = [f"{name} {section[name]['ece_before']:.4f} -> {section[name]['ece_after']:.4f}"
             for name in ("validation", "test") if name in section]
    line = (f"Calibration: temperature {section['temperature']:.3f} fitted on "
            f"{section['fitted_on']}; ECE ({section['ece_bins']} bins) " + ", ".join(parts))
    if section.get("fit_errors") == 0:
        line += " (validation has no errors to calibrate on: T stays 1)"
    elif section.get("at_bound"):
        line += " (T at its search bound: the validation split says little)"
    return line + (f"\nReliability diagram: {plot}" if plot else "")
