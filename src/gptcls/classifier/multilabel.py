"""A multi-label Classifier's decisions (a label set per text) and its evaluation on a file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gptcls.errors import GptclsError


def run_thresholds(thresholds: Sequence[float] | None, n_labels: int) -> list[float]:
    """A multi-label run's per-label thresholds (0.5 each for a run without them)."""
    from gptcls.evaluation.multilabel import DEFAULT_THRESHOLD

    return list(thresholds) if thresholds is not None else [DEFAULT_THRESHOLD] * n_labels


def label_sets(decisions: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """Per row of (N, K) 0/1 decisions (Classifier.decide), its labels in label order."""
    return [[labels[k] for k in np.flatnonzero(row)] for row in decisions]


def evaluate_multilabel(clf: Any, path: str | Path, long_text: str | None, chunk_reduce: str,
                        **read_options: Any) -> dict:
    """The multi-label report of a labelled file (label sets as the run was trained on:
    its separator, or --label-column naming 0/1 columns) at the run's thresholds."""
    from gptcls.data.multilabel import indicator_rows, read_multilabel
    from gptcls.evaluation.multilabel import multilabel_report
    from gptcls.options import DataOptions

    known = set(DataOptions.__dataclass_fields__)
    stray = sorted(set(read_options) - known)
    if stray:
        raise GptclsError(f"unknown read option(s) {stray}")
    opts = DataOptions(**{"multi_label": True,
                          "label_separator": clf.config.label_separator, **read_options})
    examples, _report = read_multilabel(path, opts)
    unknown = sorted({lab for e in examples for lab in e.labels or ()} - set(clf.labels))
    if unknown:
        raise GptclsError(f"labels the run does not know: {unknown[:10]}; it knows "
                          f"{clf.labels}")
    probs = clf.predict_proba([e.text for e in examples], long_text, chunk_reduce)
    thresholds = run_thresholds(clf.config.thresholds, len(clf.labels))
    return multilabel_report(indicator_rows(examples, clf.labels), probs, clf.labels,
                             thresholds)


def label_set_line(record: dict[str, Any], separator: str) -> str:
    """`classify`'s line for a multi-label text: `a|b<TAB>a 0.9120, b 0.7733<TAB>text`; a
    text with no label at its threshold shows `(none)` and its most probable label."""
    probs = record["probabilities"]
    shown = record["labels"] or [max(probs, key=probs.get)]
    detail = ", ".join(f"{lab} {probs[lab]:.4f}" for lab in shown)
    if not record["labels"]:
        return f"(none)\t(highest: {detail})\t{record['text']}"
    return f"{separator.join(record['labels'])}\t{detail}\t{record['text']}"
