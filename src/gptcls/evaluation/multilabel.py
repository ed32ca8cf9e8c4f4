"""Multi-label metrics and decisions: per-label thresholds chosen on validation, and the report
(micro/macro/samples-F1, Hamming loss, subset accuracy, per-label precision/recall/F1/support).

`y` is (N, K) 0/1 truth, `pred` (N, K) 0/1 (or bool) decisions, `probs` (N, K) per-label
sigmoid probabilities. Conventions are scikit-learn's with zero_division=0, except samples-F1
of a row whose true and predicted sets are both empty, which counts 1 (nothing to find,
nothing claimed). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label with no positive example in validation keeps this


def _counts(y: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label (true positives, false positives, false negatives), each (K,)."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return (y & pred).sum(0), (~y & pred).sum(0), (y & ~pred).sum(0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def label_f1s(y: Any, pred: Any) -> np.ndarray:
    """(K,) F1 of each label: 2TP / (2TP + FP + FN), 0 when the label is never true nor
    predicted."""
    tp, fp, fn = _counts(y, pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def micro_f1(y: Any, pred: Any) -> float:
    """F1 of all (text, label) decisions pooled."""
    tp, fp, fn = (c.sum() for c in _counts(y, pred))
    return float(_ratio(2 * tp, 2 * tp + fp + fn))


def samples_f1(y: Any, pred: Any) -> float:
    """Mean over texts of the F1 between the true and the predicted label set."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    inter, size = (y & pred).sum(1), y.sum(1) + pred.sum(1)
    per_row = np.where(size > 0, _ratio(2 * inter, size), 1.0)
    return float(per_row.mean()) if len(per_row) else 0.0


def hamming_loss(y: Any, pred: Any) -> float:
    """Share of (text, label) decisions that are wrong."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return float((y != pred).mean()) if y.size else 0.0


def subset_accuracy(y: Any, pred: Any) -> float:
    """Share of texts whose predicted label set is exactly the true one."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return float((y == pred).all(1).mean()) if len(y) else 0.0


def best_f1_threshold(y: Any, p: Any) -> float:
    """The threshold maximising one label's F1 over `p`, its (N,) probabilities: the midpoint
    between the lowest probability it accepts and the next one below (ties: the highest such
    threshold). DEFAULT_THRESHOLD when `y` has no positive."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, dtype=np.float64)
    if not y.any():
        return DEFAULT_THRESHOLD
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    f1 = 2 * tp / (np.arange(1, len(p) + 1) + y.sum())  # accepting the top i+1 texts
    last = np.r_[ps[1:] < ps[:-1], True]  # a cut between distinct probabilities only
    i = int(np.flatnonzero(last)[np.argmax(f1[last])])
    below = ps[i + 1] if i + 1 < len(ps) else 0.0
    return float((ps[i] + below) / 2)


def choose_thresholds(y: Any, probs: Any) -> list[float]:
    """One threshold per label, each maximising that label's F1 on (y, probs): validation."""
    y, probs = np.asarray(y), np.asarray(probs)
    return [best_f1_threshold(y[:, k], probs[:, k]) for k in range(probs.shape[1])]


def decide(probs: Any, thresholds: Sequence[float]) -> np.ndarray:
    """(N, K) bool: label k where its probability >= thresholds[k]."""
    return np.asarray(probs) >= np.asarray(thresholds, dtype=np.float64)[None, :]


def multilabel_report(y: Any, probs: Any, labels: Sequence[str],
                      thresholds: Sequence[float]) -> dict[str, Any]:
    """The report of one split at `thresholds` (also at 0.5, the untuned view)."""
    y, probs = np.asarray(y).astype(bool), np.asarray(probs)
    pred = decide(probs, thresholds)
    tp, fp, fn = _counts(y, pred)
    precision, recall, f1 = _ratio(tp, tp + fp), _ratio(tp, tp + fn), label_f1s(y, pred)
    return {
        "multi_label": True, "labels": list(labels), "thresholds": [float(t) for t in thresholds],
        "n": int(len(y)), "micro_f1": micro_f1(y, pred), "macro_f1": float(f1.mean()),
        "samples_f1": samples_f1(y, pred), "hamming_loss": hamming_loss(y, pred),
        "subset_accuracy": subset_accuracy(y, pred),
        "accuracy": subset_accuracy(y, pred),  # the name the run summary prints
        "at_0.5": {"micro_f1": micro_f1(y, probs >= 0.5),
                   "macro_f1": float(label_f1s(y, probs >= 0.5).mean())},
        "per_label": {lab: {"precision": float(precision[k]), "recall": float(recall[k]),
                            "f1": float(f1[k]), "support": int(y[:, k].sum()),
                            "threshold": float(thresholds[k])}
                      for k, lab in enumerate(labels)},
    }


def format_multilabel_report(report: dict[str, Any]) -> str:
    """The report as the table `gptcls train` prints."""
    width = max(len("label"), *(len(lab) for lab in report["labels"]))
    lines = [f"{'label':<{width}}  precision  recall      f1  support  threshold"]
    for lab, r in report["per_label"].items():
        lines.append(f"{lab:<{width}}  {r['precision']:9.3f}  {r['recall']:6.3f}  "
                     f"{r['f1']:6.3f}  {r['support']:7d}  {r['threshold']:9.3f}")
    lines.append(f"micro-F1 {report['micro_f1']:.3f} | macro-F1 {report['macro_f1']:.3f} | "
                 f"samples-F1 {report['samples_f1']:.3f} | Hamming loss "
                 f"{report['hamming_loss']:.4f} | subset accuracy "
                 f"{report['subset_accuracy']:.3f} ({report['n']:,} texts)")
    half = report["at_0.5"]
    lines.append(f"(thresholds chosen per label on validation; at 0.5 for every label: "
                 f"micro-F1 {half['micro_f1']:.3f}, macro-F1 {half['macro_f1']:.3f})")
    return "\n".join(lines)
