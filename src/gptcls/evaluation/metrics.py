"""Classification metrics with numpy only: the numbers `evaluate` reports and prints.

Definitions follow scikit-learn (the tests cross-check them), so numbers are comparable with
other tools: a zero division gives 0 (never NaN, never a warning), macro averages run over the
classes present in the true or predicted labels, ROC-AUC averages tied ranks, and average
precision is the step-wise (non-interpolated) area under the precision-recall curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gptcls.errors import GptclsError

# The headline switches to macro-F1 when the rarest class has < half the largest one's rows:
# there, accuracy mostly measures the majority class.
IMBALANCE_RATIO = 0.5


def predict(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices: argmax, or for 2 classes with `threshold`, 1 where P(class 1) >= it."""
    probs = np.asarray(probs, dtype=np.float64)
    if threshold is None:
        return probs.argmax(axis=1)
    if probs.shape[1] != 2:
        raise GptclsError(f"a threshold only applies to 2 classes, not {probs.shape[1]}")
    return (probs[:, 1] >= threshold).astype(np.int64)


def classification_report(
    y_true: Sequence[int], probs: np.ndarray, labels: list[str], threshold: float | None = None
) -> dict:
    """Accuracy, per-class precision/recall/F1, macro/weighted F1, confusion matrix and, for 2
    classes, ROC-AUC and average precision of P(class 1). Plain Python values (JSON-ready)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise ValueError(f"probs must have shape ({len(y)}, {k}), got {p.shape}")
    if len(y) == 0:
        raise GptclsError("no examples to evaluate")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"y_true must hold class indices 0..{k - 1}")
    cm = confusion_matrix(y, predict(p, threshold), k)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    precision, recall = _div(tp, predicted), _div(tp, support)
    f1, present = _f1(cm)
    report: dict = {
        "n": int(len(y)),
        "labels": list(labels),
        "threshold": threshold,
        "accuracy": float(tp.sum() / len(y)),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "weighted_f1": float((f1 * support).sum() / support.sum()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "roc_auc": roc_auc(y, p[:, 1]) if k == 2 else None,
        "average_precision": average_precision(y, p[:, 1]) if k == 2 else None,
        "imbalanced": bool(support.min() < IMBALANCE_RATIO * support.max()),
    }
    report["headline"] = "macro_f1" if report["imbalanced"] else "accuracy"
    return report


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int
                     ) -> np.ndarray:
    """(n_classes, n_classes) counts: rows = true class, columns = predicted class."""
    y = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    k = n_classes
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred (as
    scikit-learn's average="macro"): a class absent from both is left out, not scored 0.
    The one definition: the report's macro-F1 and early stopping on val_f1 both use it."""
    f1, present = _f1(confusion_matrix(y_true, y_pred, n_classes))
    return float(f1[present].mean()) if present.any() else 0.0


def _f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and which classes occur in the true or predicted labels."""
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    return _div(2 * tp, support + predicted), (support + predicted) > 0


def format_report(report: dict) -> str:
    """A text table of a `classification_report` result, headline metric first."""
    if report.get("multi_label"):  # a multilabel_report (evaluation/multilabel.py)
        from gptcls.evaluation.multilabel import format_multilabel_report

        return format_multilabel_report(report)
    labels, per = report["labels"], report["per_class"]
    supports = [per[name]["support"] for name in labels]
    summary = [("accuracy", report["accuracy"]), ("macro-F1", report["macro_f1"])]
    if report["imbalanced"]:
        summary.reverse()
        lines = [f"{report['n']:,} examples; imbalanced classes ({min(supports):,} vs "
                 f"{max(supports):,}), so macro-F1 is the headline, not accuracy"]
    else:
        lines = [f"{report['n']:,} examples"]
    summary.append(("weighted-F1", report["weighted_f1"]))
    if report["roc_auc"] is not None:
        summary.append(("ROC-AUC", report["roc_auc"]))
    if report["average_precision"] is not None:
        summary.append(("average precision", report["average_precision"]))
    lines += [f"{name:<18} {value:.4f}" for name, value in summary]
    if report["threshold"] is not None:
        lines.append(f"{'threshold':<18} P({labels[1]}) >= {report['threshold']:.4f}")
    width = max(12, *(len(name) for name in labels)) + 2
    lines += ["", f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name in labels:
        c = per[name]
        lines.append(f"{name:<{width}}{c['precision']:>10.4f}{c['recall']:>10.4f}"
                     f"{c['f1']:>10.4f}{c['support']:>10,}")
    lines.append(f"{'macro avg':<{width}}{report['macro_precision']:>10.4f}"
                 f"{report['macro_recall']:>10.4f}{report['macro_f1']:>10.4f}{report['n']:>10,}")
    lines.append(f"{'weighted avg':<{width}}{'':>20}{report['weighted_f1']:>10.4f}"
                 f"{report['n']:>10,}")
    return "\n".join(lines + ["", *_format_matrix(report["confusion_matrix"], labels)])


def _format_matrix(cm: list[list[int]], labels: list[str]) -> list[str]:
    corner = "true \\ predicted"
    width = max(len(corner), *(len(name) for name in labels)) + 2
    cell = max(8, *(len(name) + 2 for name in labels), *(len(f"{v:,}") + 2 for r in cm for v in r))
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             corner.ljust(width) + "".join(f"{n:>{cell}}" for n in labels)]
    for name, row in zip(labels, cm, strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell},}" for v in row))
    return lines


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0, silently (sklearn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


# --------------------------------------------------------------------------- binary scores


def _binary(y_true: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D of equal length, got {y.shape}, {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0 (negative) and 1 (positive) only")
    return y, s


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positives when predicting `s >= t`, for each distinct t, t decreasing.

    Equal scores always land on the same side of a threshold, so each tie group is one step.
    """
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each tie group
    tps = np.cumsum(y)[last]
    return last + 1 - tps, tps, s[last]


def roc_curve(
    y_true: Sequence[int], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds decreasing from +inf; every tie group is a point."""
    y, s = _binary(y_true, scores)
    fps, tps, thr = _counts(y, s)
    fps, tps = np.r_[0, fps], np.r_[0, tps]
    return _div(fps, np.full_like(fps, fps[-1])), _div(tps, np.full_like(tps, tps[-1])), \
        np.r_[np.inf, thr]


def precision_recall_curve(
    y_true: Sequence[int], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds), thresholds increasing; a final (1, 0) point is added,
    as in scikit-learn."""
    y, s = _binary(y_true, scores)
    fps, tps, thr = _counts(y, s)
    precision, recall = _div(tps, tps + fps), _div(tps, np.full_like(tps, tps[-1]))
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1]


def roc_auc(y_true: Sequence[int], scores: Sequence[float]) -> float | None:
    """P(score of a random positive > a random negative), ties counting 1/2; None if y_true
    holds one class only (the AUC is undefined there, not 0.5)."""
    y, s = _binary(y_true, scores)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # Average rank per tie group: (first + last) / 2, 1-based.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: Sequence[int], scores: Sequence[float]) -> float | None:
    """Sum over thresholds of (recall step) x precision; None without any positive."""
    y, s = _binary(y_true, scores)
    if not y.any():
        return None
    fps, tps, _ = _counts(y, s)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * (tps / (tps + fps))))


def threshold_for_max_fpr(y_true: Sequence[int], p_pos: Sequence[float], max_fpr: float) -> float:
    """The lowest threshold t (predict positive when p >= t) whose false-positive rate on these
    labels is <= max_fpr, i.e. the most recall that FPR budget buys.

    Candidates are the distinct scores, so a tie group is never split: if letting in a group
    of equal scores would exceed the budget, t stays above the whole group. If even the top
    score breaks the budget, t is just above it and nothing is predicted positive.
    """
    if not 0.0 <= max_fpr <= 1.0:
        raise GptclsError(f"max false-positive rate must be between 0 and 1, got {max_fpr}")
    y, s = _binary(y_true, p_pos)
    n_neg = int((y == 0).sum())
    if n_neg == 0:
        raise GptclsError("no negative examples, so a false-positive rate cannot be measured")
    fps, _, thr = _counts(y, s)
    # Compare counts, not rates: 0.1 * 10 must allow exactly 1 false positive.
    ok = fps <= max_fpr * n_neg + 1e-9
    if not ok[0]:
        return float(np.nextafter(thr[0], np.inf))
    return float(thr[ok][-1])


# --------------------------------------------------------------------------- calibration

ECE_BINS = 15  # equal-width bins on the top probability (Guo et al. 2017 use 15)


def reliability_bins(y_true: Sequence[int], probs: np.ndarray, n_bins: int = ECE_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean confidence, accuracy) per equal-width bin of the top probability; bin i
    holds confidences in (i/n, (i+1)/n]. Empty bins have confidence and accuracy 0."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], conf, side="left")  # (n,) bin of each example
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    return (count, _div(np.bincount(index, conf, n_bins), count),
            _div(np.bincount(index, correct, n_bins), count))


def expected_calibration_error(y_true: Sequence[int], probs: np.ndarray,
                               n_bins: int = ECE_BINS) -> float:
    """Sum over bins of (share of examples) x |accuracy - mean confidence|: the one ECE
    definition (training's report, the quality harness)."""
    count, conf, acc = reliability_bins(y_true, probs, n_bins)
    if count.sum() == 0:
        raise GptclsError("no examples to measure calibration on")
    return float((count / count.sum() * np.abs(acc - conf)).sum())
