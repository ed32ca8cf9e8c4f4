"""`gptcls audit`'s pass: read the rows, one frozen-backbone pass, k-fold heads, label issues
and duplicates (audit_report.py writes and prints the result)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from gptcls.data.labelled import LoadReport, read_labelled
from gptcls.errors import GptclsError
from gptcls.evaluation.audit import (
    Issue,
    assign_folds,
    class_thresholds,
    label_issues,
    oof_accuracy,
    out_of_fold_probs,
    pooled_features,
)
from gptcls.evaluation.duplicates import Duplicates, find_duplicates, shared_across


@dataclass
class Rows:
    """The audited rows: text, label, the split file it came from ("" for DATA) and its 1-based
    data row in that file, as `predict` and the readers count them (rows dropped for an empty
    text or no label keep their numbers; the header and blank lines are not rows)."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    reports: list[LoadReport] = field(default_factory=list)


def read_rows(data: str | None, split_files: dict[str, str | None], **read: Any) -> Rows:
    """DATA, or the --train/--validation/--test files (rows tagged with their split), through
    read_labelled with the reading options `read`."""
    given = {k: v for k, v in split_files.items() if v}
    if data and given:
        raise GptclsError("give DATA or --train/--validation/--test files, not both")
    if not data and not given:
        raise GptclsError("nothing to audit: give DATA or --train/--validation/--test files")
    out = Rows()
    for split, path in ([("", data)] if data else list(given.items())):
        examples, report = read_labelled(path, **read, number_rows=True)
        out.texts += [e.text for e in examples]
        out.labels += [e.label for e in examples]
        out.splits += [split] * len(examples)
        out.rows += report.data_rows or []
        out.reports.append(report)
    check_classes(out.labels)  # before any model is loaded
    return out


def check_classes(labels: list[str]) -> list[str]:
    """The sorted class names; fewer than 2 is an error (nothing to disagree with)."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise GptclsError(f"the audit needs at least 2 classes; the data has only {classes}")
    return classes


def backbone_features(texts: list[str], model: str, weights: str = "pretrained",
                      cache: str | None = None, pooling: str | None = None,
                      max_length: int | None = None, truncate: str = "head",
                      device: str = "auto", precision: str = "auto", seed: int = 123
                      ) -> tuple[torch.Tensor, dict[str, Any]]:
    """(N, D) pooled features of the frozen backbone `model` (its recipe's pooling unless
    given), and what was used."""
    from gptcls.classifier.encoding import choose_max_length, fit_ids
    from gptcls.classifier.model import ClassifierModel
    from gptcls.device import device_for, resolve_precision
    from gptcls.models.weights.pretrained import load_backbone, load_pretrained
    from gptcls.options import OPTIONS
    from gptcls.recipes import recipe_for

    pooling = pooling or recipe_for(model).get("pooling", OPTIONS["pooling"].default)
    pretrained = load_pretrained(model, weights, cache=cache, seed=seed)
    backbone = load_backbone(pretrained.config, pretrained.state_dict)
    clf = ClassifierModel(backbone, 2, pooling)
    clf.set_policy("last-layer")  # nothing below the head trains: one pass is all it takes
    dev = device_for(device)
    precision = resolve_precision(precision, dev)
    tok = pretrained.tokenizer
    raw = tok.encode_batch(texts)
    choice = choose_max_length([len(s) for s in raw], pretrained.config.context_length,
                               max_length)
    ids = fit_ids(raw, choice.max_length, tok.pad_id, pooling, truncate)
    t0 = time.perf_counter()
    feats = pooled_features(clf.to(dev), ids, dev, precision)
    info = {"backbone": pretrained.source, "pooling": pooling, "max_length": choice.max_length,
            "texts_cut": choice.longer, "precision": precision, "device": str(dev),
            "trunk_pass_s": round(time.perf_counter() - t0, 1), "features": feats.shape[1]}
    return feats, info


@dataclass
class AuditResult:
    rows: Rows
    classes: list[str]
    probs: torch.Tensor  # (N, K) out-of-fold
    issues: list[Issue]
    dups: Duplicates
    shared: list[dict[str, list[int]]]  # texts in several splits: {split: row indices}
    info: dict[str, Any]


def audit_rows(rows: Rows, features: torch.Tensor, folds: int = 5, seed: int = 123,
               info: dict[str, Any] | None = None) -> AuditResult:
    """Out-of-fold probabilities, label issues and duplicates of `rows` from their features."""
    classes = check_classes(rows.labels)
    y = [classes.index(c) for c in rows.labels]
    groups = _groups(features)
    t0 = time.perf_counter()
    probs = out_of_fold_probs(features, y, assign_folds(y, groups, folds, seed), len(classes))
    info = {**(info or {}), "folds": folds, "heads_s": round(time.perf_counter() - t0, 1),
            "oof_accuracy": round(oof_accuracy(probs, y), 4),
            "thresholds": dict(zip(classes, class_thresholds(probs, y).tolist(), strict=True))}
    by_split: dict[str, list[int]] = {}
    for i, s in enumerate(rows.splits):
        by_split.setdefault(s, []).append(i)
    shared = [] if len(by_split) < 2 else [
        {s: [by_split[s][j] for j in js] for s, js in d.items()}
        for d in shared_across({s: [rows.texts[i] for i in ix] for s, ix in by_split.items()})]
    return AuditResult(rows, classes, probs, label_issues(probs, y),
                       find_duplicates(rows.texts, rows.labels), shared, info)


def _groups(features: torch.Tensor) -> list[int]:
    """Group number per row: rows with identical features (the same token ids) share one."""
    _, inverse = torch.unique(features, dim=0, return_inverse=True)
    return inverse.tolist()
