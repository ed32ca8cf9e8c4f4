"""Class priors: the one the model was fitted to, the source data's, and the one it will be
deployed at; metrics reweighted to a prior, and the binary threshold that is best at one.

A model trained on undersampled (or class-weighted) data learns posteriors at its training
prior. At a deployment prior the Bayes posterior is p'(c|x) ∝ p(c|x) · π_deploy(c) / π_fit(c)
(Saerens et al. 2002), so with calibrated probabilities (temperature scaling, calibration.py,
fitted on a validation split drawn like the training data) the decision that makes the fewest
errors at π_deploy is argmax p'. For two classes that is `P(class 1) >= r0 / (r0 + r1)`, with
r = π_deploy / π_fit: a threshold on the calibrated probability, which the run stores.

Why this threshold, not the one with the best reweighted validation F1: it needs no search on
a validation split that is small (the chapter's has 149 texts, about 20 spam once reweighted to
13% spam), so it does not overfit; it follows from the prior alone, so it is the same number
for every seed given the same calibration; and it minimises expected errors, what accuracy
counts. --max-fpr remains for a false-positive budget; --threshold for any other choice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gptcls.errors import GptclsError
from gptcls.evaluation.calibration import format_calibration
from gptcls.evaluation.metrics import confusion_matrix, predict

PRIOR_KEYWORDS = ("train", "source")
PRIOR_TOLERANCE = 1e-6


def parse_prior(text: str) -> tuple[list[str] | None, list[float]]:
    """`spam=0.13,ham=0.87` -> (names, values); `0.87,0.13` (label order) -> (None, values).
    Checks the form: numbers > 0 summing to 1 (within 1e-6), each name once."""
    parts = [p.strip() for p in str(text).split(",")]
    named = ["=" in p for p in parts]
    if any(named) and not all(named):
        raise GptclsError(f"--prior {text!r}: give every class as label=value, or values alone "
                          "in label order, not both")
    names = [p.split("=", 1)[0].strip() for p in parts] if all(named) else None
    raw = [p.split("=", 1)[1] if names else p for p in parts]
    try:
        values = [float(v) for v in raw]
    except ValueError:
        raise GptclsError(f"--prior {text!r}: values must be numbers (e.g. spam=0.13,ham=0.87 "
                          "or 0.87,0.13 in label order), or train or source") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise GptclsError(f"--prior {text!r}: every class probability must be > 0")
    if abs(sum(values) - 1.0) > PRIOR_TOLERANCE:
        raise GptclsError(f"--prior {text!r}: the probabilities sum to {sum(values):.6g}, not 1")
    if names is not None and len(set(names)) != len(names):
        raise GptclsError(f"--prior {text!r}: a label is given twice")
    return names, values


def check_prior(text: str | None) -> None:
    """The checks that need no data (run before anything loads)."""
    if text is not None and text not in PRIOR_KEYWORDS:
        parse_prior(text)


def prior_values(text: str, labels: Sequence[str]) -> np.ndarray:
    """A --prior distribution in `labels` order, checked against the data's labels."""
    names, values = parse_prior(text)
    if names is None:
        if len(values) != len(labels):
            raise GptclsError(f"--prior {text!r}: {len(values)} values for {len(labels)} labels "
                              f"({', '.join(labels)})")
        return np.array(values)
    unknown = [n for n in names if n not in labels]
    missing = [n for n in labels if n not in names]
    if unknown or missing:
        what = (f"unknown label(s) {unknown}" if unknown else f"no value for {missing}")
        raise GptclsError(f"--prior {text!r}: {what}; the labels are {', '.join(labels)}")
    given = dict(zip(names, values, strict=True))
    return np.array([given[n] for n in labels])


def distribution(counts: Mapping[str, float], labels: Sequence[str]) -> np.ndarray:
    total = float(sum(counts.get(n, 0) for n in labels))
    return np.array([counts.get(n, 0) / total for n in labels]) if total else \
        np.full(len(labels), 1 / len(labels))


def bayes_threshold(fit: np.ndarray, deploy: np.ndarray) -> float:
    """Binary: the t where P(class 1) >= t is argmax of the prior-corrected posterior."""
    r = np.asarray(deploy, dtype=np.float64) / np.asarray(fit, dtype=np.float64)
    return float(r[0] / (r[0] + r[1]))


@dataclass
class PriorDecision:
    """Which prior a run decides at, every prior involved (label order), and the threshold."""

    name: str  # train, source or given
    labels: list[str]
    fit: np.ndarray  # what the model learned: the training data as balanced or weighted
    fit_how: str
    source: np.ndarray  # the data before balancing
    deploy: np.ndarray  # the prior decisions are made for (fit when name == "train")
    threshold: float | None  # binary, when deploy differs from fit; None: argmax

    @property
    def target(self) -> np.ndarray:
        """The prior the reweighted figures are at: the deployment prior, or the source
        data's when the decision stays at the training prior."""
        return self.source if self.name == "train" else self.deploy


def decide_prior(spec: str | None, splits: Any, chapter: bool) -> PriorDecision:
    """The run's prior decision for `splits` (a data.splits.Splits, not imported: options.py
    imports this module and data.splits imports options). spec None: `train` for the
    chapter's recipe (its balanced test figures unchanged), `source` for data the user brings."""
    labels = list(splits.labels)
    name = spec or ("train" if chapter else "source")
    train_counts = Counter(e.label for e in splits.train)
    source = distribution(getattr(splits, "source_counts", None) or train_counts, labels)
    if splits.class_weights is not None:
        fit_how = "class-weighted"
        fit = distribution({n: train_counts[n] * w for n, w in
                            zip(labels, splits.class_weights, strict=True)}, labels)
    elif splits.balanced is not None:
        fit_how, fit = "undersampled", distribution(train_counts, labels)
    else:  # a stratified split keeps the source prior; its rounding is no shift
        fit_how, fit = "as the data", source
    deploy = {"train": fit, "source": source}.get(name)
    if deploy is None:
        deploy, name = prior_values(name, labels), "given"
    shifted = len(labels) == 2 and not np.allclose(deploy, fit, rtol=0, atol=1e-12)
    return PriorDecision(name, labels, fit, fit_how, source, deploy,
                         bayes_threshold(fit, deploy) if shifted else None)


def reweighted_report(y_true: Sequence[int], pred: Sequence[int], labels: Sequence[str],
                      target: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and macro-F1 with each example of class c
    weighted by target[c] / (its share of these examples): the figures at prior `target`."""
    k = len(labels)
    cm = confusion_matrix(y_true, pred, k).astype(np.float64)
    share = cm.sum(axis=1) / cm.sum()
    weight = np.divide(target, share, out=np.zeros(k), where=share > 0)
    cm = cm * weight[:, None]  # rows rescaled to the target prior
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(k), where=support + predicted > 0)
    present = (support + predicted) > 0
    return {"accuracy": float(tp.sum() / cm.sum()), "macro_f1": float(f1[present].mean()),
            "per_class": {n: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i])} for i, n in enumerate(labels)}}


def prior_section(d: PriorDecision, y_test: Sequence[int], probs_test: np.ndarray,
                  threshold: float | None) -> dict[str, Any]:
    """metrics.json's `prior`: the priors, the decision used, and the test split reweighted
    to the target prior with that decision (and with the target's Bayes threshold if that
    differs: what --prior would buy)."""
    def named(p: np.ndarray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(d.labels, p, strict=True)}

    y = np.asarray(y_test, dtype=np.int64)
    test = np.bincount(y, minlength=len(d.labels)) / len(y)
    section: dict[str, Any] = {
        "decision": d.name, "threshold": threshold, "prior_threshold": d.threshold,
        "fit_how": d.fit_how, "priors": {"fit": named(d.fit), "source": named(d.source),
                                         "deploy": named(d.deploy), "test": named(test)},
        "target": "source" if d.name == "train" else d.name, "target_prior": named(d.target),
        "test_reweighted": reweighted_report(y_test, predict(probs_test, threshold), d.labels,
                                             d.target)}
    best = bayes_threshold(d.fit, d.target) if len(d.labels) == 2 else None
    if best is not None and threshold != best and not np.allclose(d.fit, d.target, atol=1e-12):
        section["target_threshold"] = best
        section["test_reweighted_at_target_threshold"] = reweighted_report(
            y_test, predict(probs_test, best), d.labels, d.target)
    return section


def format_prior(section: dict[str, Any]) -> str:
    """The report's lines: the priors, the decision used, the reweighted test figures."""
    labels = list(section["priors"]["fit"])

    def shares(p: Mapping[str, float]) -> str:
        return ", ".join(f"{n} {v:.3f}" for n, v in p.items())

    def decision(t: float | None) -> str:
        return "argmax" if t is None else f"P({labels[1]}) >= {t:.4f}"

    pr, name = section["priors"], section["decision"]
    why = {"train": "the training prior", "source": "the source data's prior",
           "given": "the --prior given"}[name]
    lines = [f"Class prior: trained at {shares(pr['fit'])} ({section['fit_how']}); source data "
             f"{shares(pr['source'])}" + (f"; deployment (--prior) {shares(pr['deploy'])}"
                                          if name == "given" else ""),
             f"Decision: {decision(section['threshold'])}"
             + (f" (at {why})" if section["threshold"] == section["prior_threshold"]
                else " (--threshold/--max-fpr)")]
    lines.append(_reweighted_line(f"Test reweighted to the {section['target']} prior, "
                                  f"{decision(section['threshold'])}",
                                  section["test_reweighted"], labels))
    if "target_threshold" in section:
        lines.append(_reweighted_line(f"  at {decision(section['target_threshold'])} (the Bayes "
                                      f"threshold for that prior: --prior {section['target']})",
                                      section["test_reweighted_at_target_threshold"], labels))
    return "\n".join(lines)


def _reweighted_line(head: str, r: dict[str, Any], labels: list[str]) -> str:
    line = f"{head}: accuracy {r['accuracy']:.4f}, macro-F1 {r['macro_f1']:.4f}"
    if len(labels) == 2:  # the positive class's precision is what a prior shift moves
        c = r["per_class"][labels[1]]
        line += (f"; {labels[1]} precision {c['precision']:.4f} recall {c['recall']:.4f} "
                 f"F1 {c['f1']:.4f}")
    return line


def format_decisions(metrics: Mapping[str, Any], run_dir: Any) -> str:
    """Calibration and class-prior lines of the training report (metrics.json's sections)."""
    cal = metrics["calibration"]
    plot = f"{run_dir}/{cal['plot']}" if cal.get("plot") else None
    return format_calibration(cal, plot) + "\n" + format_prior(metrics["prior"])
