"""The end of a multi-label run: per-label thresholds chosen on validation, the splits' reports
and metrics.json's content (no temperature, no class prior: those are single-label ideas)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch

from gptcls.data.examples import SPLIT_NAMES
from gptcls.evaluation.multilabel import choose_thresholds, multilabel_report


def multilabel_metrics(opts: Any, run: Any, hist: dict, final: dict, splits: Any,
                       times: dict[str, float]) -> dict[str, Any]:
    """`run` is the pipeline's prepared run (stores, max_length, ...), `final` each split's
    evaluation (probs: per-label sigmoid probabilities)."""
    from gptcls.device import device_for
    from gptcls.options import to_dict

    y = {name: run.stores[name].labels.numpy() for name in SPLIT_NAMES}
    probs = {name: final[name]["probs"].numpy() for name in SPLIT_NAMES}
    thresholds = choose_thresholds(y["validation"], probs["validation"])
    print("per-label thresholds chosen on validation (max F1; 0.5 for a label with no "
          "positive there)", file=sys.stderr, flush=True)
    reports = {name: multilabel_report(y[name], probs[name], splits.labels, thresholds)
               for name in SPLIT_NAMES}
    return {
        "model": opts.model, "weights": opts.weights, "labels": splits.labels,
        "multi_label": True, "thresholds": thresholds,
        "train_accuracy": reports["train"]["accuracy"],
        "validation_accuracy": reports["validation"]["accuracy"],
        "test_accuracy": reports["test"]["accuracy"],
        "final": {n: {"accuracy": r["accuracy"], "loss": r["loss"]} for n, r in final.items()},
        "reports": reports, "history": hist, "times": times,
        "examples": {n: len(splits[n]) for n in SPLIT_NAMES},
        "max_length": run.max_length, "trunk_cached": run.cached,
        "train_config": to_dict(opts), "positive_weights": splits.class_weights,
        "trainable": run.policy, "trainable_blocks": run.trainable_blocks,
        "pooling": opts.pooling, "device": str(device_for(opts.device)),
        "torch_threads": torch.get_num_threads(),
        "trunk_precision": run.precision if run.cached else "fp32",
        "split": "the given files" if opts.data.train else
        f"random (seed {opts.data.split_seed}): stratifying by label set is not meaningful",
    }


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
