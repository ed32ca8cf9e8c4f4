"""The chapter's loss and accuracy plots: values against epochs, examples seen on a twin axis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_values(epochs_seen: Sequence[float], examples_seen: Sequence[float],
                train_values: Sequence[float], val_values: Sequence[float], label: str,
                out_stem: Path) -> list[Path]:
    """Write `<out_stem>.png` and `.pdf`; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; never pops up a window
    import matplotlib.pyplot as plt

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
