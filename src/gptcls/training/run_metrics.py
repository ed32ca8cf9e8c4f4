"""metrics.json: what every run records beside its reports."""

from __future__ import annotations

from typing import Any

import torch

from gptcls.data.examples import SPLIT_NAMES
from gptcls.device import device_for, effective_precision
from gptcls.options import RunOptions, to_dict


def run_metrics(opts: RunOptions, run: Any, hist: dict, final: dict, reports: dict,
                times: dict, splits: Any) -> dict[str, Any]:
    """metrics.json's content common to every run; `run` is the pipeline's prepared run
    (policy, stores, max_length, precision), `final` each split's evaluation."""
    return {
        "model": opts.model, "weights": opts.weights, "labels": splits.labels,
        # With a decision threshold these differ from argmax accuracy; reports hold both views.
        "train_accuracy": reports["train"]["accuracy"],
        "validation_accuracy": reports["validation"]["accuracy"],
        "test_accuracy": reports["test"]["accuracy"],
        "final": {n: {"accuracy": r["accuracy"], "loss": r["loss"]} for n, r in final.items()},
        "reports": reports, "history": hist, "times": times,
        "examples": {n: len(splits[n]) for n in SPLIT_NAMES},
        "max_length": run.max_length, "trunk_cached": run.cached,
        # Every option as resolved (gptcls.options.from_dict reads it back).
        "train_config": to_dict(opts), "class_weights": splits.class_weights,
        "trainable": run.policy, "trainable_blocks": run.trainable_blocks,
        "pooling": opts.pooling, "device": str(device_for(opts.device)),
        "torch_threads": torch.get_num_threads(),
        "trunk_precision": run.precision if run.cached else "fp32",
        # What the trainable layers' matrix products (and the final evaluation) ran in.
        # int8 is the frozen trunk's alone (classifier/int8.py): what trains stays fp32.
        "train_precision": effective_precision(run.precision.replace("int8", "fp32"),
                                               device_for(opts.device)),
    }
