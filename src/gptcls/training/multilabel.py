"""The end of a multi-label run: per-label thresholds chosen on validation, the splits' reports
and metrics.json's content (no temperature, no class prior: those are single-label ideas)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gptcls.data.examples import SPLIT_NAMES
from gptcls.evaluation.multilabel import choose_thresholds, multilabel_report
from gptcls.training.run_metrics import run_metrics

log = logging.getLogger(__name__)


def multilabel_metrics(opts: Any, run: Any, hist: dict, final: dict, splits: Any,
                       times: dict[str, float]) -> dict[str, Any]:
    """`run` is the pipeline's prepared run (stores, max_length, ...), `final` each split's
    evaluation (probs: per-label sigmoid probabilities)."""
    y = {name: run.stores[name].labels.numpy() for name in SPLIT_NAMES}
    probs = {name: final[name]["probs"].numpy() for name in SPLIT_NAMES}
    thresholds = choose_thresholds(y["validation"], probs["validation"])
    log.info("per-label thresholds chosen on validation (max F1; 0.5 for a label with no "
             "positive there)")
    reports = {name: multilabel_report(y[name], probs[name], splits.labels, thresholds)
               for name in SPLIT_NAMES}
    metrics = run_metrics(opts, run, hist, final, reports, times, splits)
    metrics.pop("class_weights")
    metrics.update({
        "multi_label": True, "thresholds": thresholds,
        "positive_weights": splits.class_weights,
        "split": "the given files" if opts.data.train else
        f"random (seed {opts.data.split_seed}): stratifying by label set is not meaningful"})
    return metrics


def finish_multilabel(opts: Any, run: Any, hist: dict, final: dict, splits: Any,
                      times: dict[str, float], main: bool, save: Callable[[dict], None]
                      ) -> dict[str, Any]:
    """Metrics, then (on the main process) the run directory through `save` and the loss
    plot (no confusion matrix: labels are not exclusive)."""
    from gptcls.evaluation.plots import plot_history

    metrics = multilabel_metrics(opts, run, hist, final, splits, times)
    if main:
        save(metrics)
        plot_history(hist, opts.train.epochs, opts.out)
    return metrics
