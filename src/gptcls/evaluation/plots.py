"""Plots (matplotlib, imported only when one is drawn): the chapter's loss and accuracy curves
(values against epochs, examples seen on a twin axis), the confusion matrix, PR and ROC curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gptcls.evaluation.metrics import (
    ECE_BINS,
    average_precision,
    expected_calibration_error,
    precision_recall_curve,
    reliability_bins,
    roc_auc,
    roc_curve,
)


def plot_values(epochs_seen: Sequence[float], examples_seen: Sequence[float],
                train_values: Sequence[float], val_values: Sequence[float], label: str,
                out_stem: Path) -> list[Path]:
    """Write `<out_stem>.png` and `.pdf`; returns the paths written."""
    plt = _pyplot()
    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()
    ax2 = ax1.twiny()  # same data against examples seen, on the top axis
    ax2.plot(examples_seen, train_values, alpha=0)
    ax2.set_xlabel("Examples seen")
    fig.tight_layout()
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths


def plot_history(hist: dict, epochs: int, out_dir: Path) -> list[Path]:
    """Loss and accuracy plots of a training history (from train.train) into out_dir."""
    paths: list[Path] = []
    n = len(hist["train_losses"])
    if n:
        epochs_seen = [epochs * i / max(n - 1, 1) for i in range(n)]  # torch.linspace(0, E, n)
        paths += plot_values(epochs_seen, hist["examples_seen_at_eval"], hist["train_losses"],
                             hist["val_losses"], "loss", out_dir / "loss-plot")
    m = len(hist["train_accs"])
    if m:
        total = hist["examples_seen"][0]
        paths += plot_values(list(range(1, m + 1)), [total * (i + 1) / m for i in range(m)],
                             hist["train_accs"], hist["val_accs"], "accuracy",
                             out_dir / "accuracy-plot")
    return paths


def _pyplot() -> ModuleType:
    # Imported here, not at module level: matplotlib is slow to import and `evaluate`
    # without plots (and every metrics test) should not pay for it.
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: Sequence[Sequence[int]], labels: list[str], path_png: Path) -> Path:
    """Counts with rows = true class, columns = predicted; cells shaded by row share."""
    plt = _pyplot()
    counts = np.asarray(cm, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True).repeat(len(labels), axis=1)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)  # 0 if no row
    size = max(3.5, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, f"{v:,}", ha="center", va="center",
                color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(plt, fig, path_png)


def plot_pr_curve(y_true: Sequence[int], p_pos: Sequence[float], path_png: Path) -> Path:
    """Precision against recall, with the no-skill line at the positive rate."""
    plt = _pyplot()
    precision, recall, _ = precision_recall_curve(y_true, p_pos)
    ap = average_precision(y_true, p_pos)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.step(recall, precision, where="post")
    ax.axhline(float(np.mean(y_true)), linestyle="--", color="grey", label="no skill")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="precision-recall" + (f" (AP {ap:.3f})" if ap is not None else ""))
    ax.legend(loc="lower left")
    return _save(plt, fig, path_png)


def plot_roc_curve(y_true: Sequence[int], p_pos: Sequence[float], path_png: Path) -> Path:
    """True-positive rate against false-positive rate, with the chance diagonal."""
    plt = _pyplot()
    fpr, tpr, _ = roc_curve(y_true, p_pos)
    auc = roc_auc(y_true, p_pos)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title="ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""))
    return _save(plt, fig, path_png)


def plot_reliability(y_true: Sequence[int], before: np.ndarray, after: np.ndarray,
                     path_png: Path, n_bins: int = ECE_BINS, split: str = "test") -> Path:
    """Reliability diagram: accuracy against mean confidence per bin of the top probability,
    before and after calibration, with the diagonal of perfect calibration and the ECEs."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for probs, name, marker in ((before, "before", "o"), (after, "after", "s")):
        count, conf, acc = reliability_bins(y_true, probs, n_bins)
        used = count > 0  # empty bins have no point
        ece = expected_calibration_error(y_true, probs, n_bins)
        ax.plot(conf[used], acc[used], marker=marker, label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="mean confidence (top probability)", ylabel="accuracy", xlim=(0, 1.02),
           ylim=(0, 1.02), title=f"reliability, {split} split ({n_bins} bins)")
    ax.legend(loc="upper left")
    return _save(plt, fig, path_png)


def _save(plt: ModuleType, fig: Any, path_png: Path) -> Path:
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
