"""Training from texts and labels in memory, writing nothing: the scikit-learn estimator's path.

The model, trainable policy, length rule, loop and trunk are a `gptcls train` run's (pipeline.py);
the data is given, not read, and split only when asked (`validation_fraction`). Two things are
kept for the life of the process so that many trainings on overlapping data (cross-validation
folds, parameter settings) pay for the backbone about once:

- the pretrained weights last loaded (one backbone in fp32, e.g. ~540 MB for SmolLM2-135M),
  copied into each new model instead of read and converted again;
- the frozen-trunk activations of every text seen, in the in-memory trunk cache
  (trunk_memo.py), so a text runs through a given trunk once.

`forget_weights()` and `MEMO.clear()` free them.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.encoding import choose_max_length, fit_ids
from gptcls.classifier.model import ClassifierModel
from gptcls.data.examples import Example
from gptcls.data.multilabel import positive_weights
from gptcls.data.partition import balance_undersample, class_weights, resolved_balance
from gptcls.data.splits import Splits
from gptcls.device import device_for, resolve_precision
from gptcls.errors import GptclsError
from gptcls.evaluation.calibration import format_calibration
from gptcls.evaluation.multilabel import choose_thresholds
from gptcls.evaluation.prior import PriorDecision, decide_prior
from gptcls.options import RunOptions, config_fields
from gptcls.training.builder import build_model
from gptcls.training.decisions import choose_threshold, fit_decisions
from gptcls.training.long_text import check_long_text
from gptcls.training.loop import evaluate, logits_for, train
from gptcls.training.pipeline import check_options
from gptcls.training.trunk_cache import Store, cache_size_mb, full_batches, trunk_fingerprint
from gptcls.training.trunk_memo import MEMO

Log = Callable[[str], None]
_kept: dict[tuple[Any, ...], Any] = {}  # the last pretrained backbone loaded, by what chose it


def quiet(msg: str) -> None:
    pass


@dataclass
class Trained:
    """A classifier trained in memory, and how its inputs are prepared: through the in-memory
    trunk cache under `trunk_key`, or whole (None: the trunk could not be cached)."""

    classifier: Classifier
    history: dict[str, list]
    trunk_key: str | None
    precision: str  # the trunk's, as trained
    max_cache_mb: float
    trunk_cache_dir: str | None = None

    def store(self, ids: list[list[int]], labels: Sequence[int]) -> Store:
        model, device = self.classifier.model, self.classifier.device
        if self.trunk_key is None:
            return Store([torch.tensor(s) for s in ids], torch.tensor(list(labels)), cached=False)
        return MEMO.store(model, self.trunk_key, ids, labels, device, self.precision,
                          self.max_cache_mb, self.trunk_cache_dir)

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, num_classes) logits, in input order; the trunk runs only on unseen texts."""
        clf = self.classifier
        store = self.store(clf.encode(texts), [0] * len(texts))
        out = torch.empty(len(store), len(clf.labels))
        clf.model.eval()
        with torch.inference_mode():
            for idx in full_batches(store):
                out[idx] = logits_for(clf.model, store, idx, clf.device)[0].cpu()
        return out


def train_texts(opts: RunOptions, texts: Sequence[str], y: Sequence[int], labels: list[str],
                validation_fraction: float = 0.0, log: Log = quiet) -> Trained:
    """Train a classifier on `texts` with class indices `y` (into `labels`), holding out a
    stratified `validation_fraction` for the loop's validation, early stopping, --max-fpr and
    the calibration temperature (0: no validation; the loop's validation figures are then the
    training data's); the temperature, threshold and prior are decided as `gptcls train` does."""
    check_in_memory(opts, validation_fraction)
    device = device_for(opts.device)
    train_idx, val_idx = holdout(y, validation_fraction, opts.data.split_seed)
    train_idx, weights = balanced(train_idx, y, len(labels), opts)
    prior = prior_for(opts, y, train_idx, labels, weights)  # a bad prior fails before training
    model, tokenizer, pretrained, policy, n_blocks = build_model(opts, len(labels),
                                                                 pretrained_copy(opts))
    log(f"backbone: {pretrained.source}")
    model.to(device)
    raw = tokenizer.encode_batch([texts[i] for i in train_idx])
    choice = choose_max_length([len(s) for s in raw], pretrained.config.context_length,
                               opts.max_length, opts.context)
    log(choice.message(opts.truncate))
    max_length = choice.max_length
    config = ClassifierConfig(
        model=pretrained.config, labels=list(labels), max_length=max_length, tokenizer={},
        trainable=policy, trainable_blocks=n_blocks, lora=model.lora, **config_fields(opts),
        backbone={"model": opts.model, "weights": opts.weights, "source": pretrained.source})
    precision = resolve_precision(opts.train.precision, device)
    ids = fit_ids(raw, max_length, tokenizer.pad_id, opts.pooling, opts.truncate)
    trained = Trained(Classifier(config, model, tokenizer, opts.device, precision), {},
                      trunk_key_for(model, opts, precision, ids, log), precision,
                      opts.train.max_cache_mb, opts.train.trunk_cache_dir)
    train_store = trained.store(ids, [y[i] for i in train_idx])
    val_store = train_store
    if val_idx:
        val_store = trained.store(trained.classifier.encode([texts[i] for i in val_idx]),
                                  [y[i] for i in val_idx])
    cfg = dataclasses.replace(opts.train, class_weights=weights)
    history = train(model, train_store, val_store, cfg, device, log)
    trained.history = history if val_idx else {k: v for k, v in history.items()
                                                if not k.startswith("val_")}
    decide(opts, config, model, val_store, bool(val_idx), device, prior, log)
    if model.lora and opts.merge_lora:
        model.merge_lora()  # what a run directory holds: a plain model, the same logits
        config.lora = model.lora
    return trained


def check_in_memory(opts: RunOptions, validation_fraction: float) -> None:
    """`check_options`, and the options that need a validation split."""
    check_options(opts)
    check_long_text(opts, in_memory=True)
    if not 0.0 <= validation_fraction < 1.0:
        raise GptclsError(f"validation_fraction must be at least 0 and below 1, got "
                          f"{validation_fraction}")
    needs = [n for n, v in (("early_stopping", opts.train.early_stopping),
                            ("max_fpr", opts.max_fpr)) if v is not None]
    if needs and validation_fraction == 0.0:
        raise GptclsError(f"{', '.join(needs)} needs a validation split: set "
                          "validation_fraction (e.g. 0.1)")


def holdout(y: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: `fraction` of each class (at least one of a class with
    two or more examples) held out after a seeded shuffle; no fraction, no validation."""
    if fraction == 0.0:
        return list(range(len(y))), []
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(y):  # label-set rows (multi-label): one group, a random holdout
        by_class.setdefault(int(c) if np.ndim(c) == 0 else 0, []).append(i)
    rng = random.Random(seed)
    train_idx, val_idx = [], []
    for c in sorted(by_class):  # sorted: the split must not depend on which class comes first
        idx = by_class[c]
        rng.shuffle(idx)
        n_val = max(1, round(fraction * len(idx))) if len(idx) >= 2 else 0
        val_idx += idx[:n_val]
        train_idx += idx[n_val:]
    return sorted(train_idx), sorted(val_idx)


def in_memory_balance(opts: RunOptions) -> str:
    """--balance for texts given in memory: the user's own data (auto never undersamples)."""
    return resolved_balance(opts.data.balance, [], given_splits=True)


def balanced(idx: list[int], y: Sequence[int], n_classes: int, opts: RunOptions
             ) -> tuple[list[int], list[float] | None]:
    """The training indices as --balance has them (undersampled the chapter's way, or kept),
    and the class weights of --balance weighted."""
    if opts.data.multi_label:  # y: 0/1 rows; weighted: each label's positive weight
        rows = [Example("", "", tuple(str(k) for k, v in enumerate(y[i]) if v)) for i in idx]
        weights = positive_weights(rows, [str(k) for k in range(n_classes)])
        return idx, weights if in_memory_balance(opts) == "weighted" else None
    names = [str(c) for c in range(n_classes)]
    examples = [Example(str(i), str(y[i])) for i in idx]  # text: the index, to map back
    balance = in_memory_balance(opts)
    if balance == "undersample":
        kept = balance_undersample(examples, opts.data.split_seed)
        return sorted(int(e.text) for e in kept), None
    if balance == "weighted":
        return idx, class_weights(examples, names)
    return idx, None


def pretrained_copy(opts: RunOptions):
    """load_pretrained's result with its own copy of the weights (training changes them); the
    backbone last loaded is kept, so the next training on it copies instead of loading."""
    from gptcls.models.weights.pretrained import load_pretrained

    path = Path(opts.model).expanduser()
    key = (opts.model, opts.weights, opts.data.cache,
           opts.train.seed if opts.weights == "random" else None,
           path.stat().st_mtime_ns if path.exists() else None)
    if key not in _kept:
        _kept.clear()  # one backbone at a time: each is hundreds of MB
        _kept[key] = load_pretrained(opts.model, opts.weights, cache=opts.data.cache,
                                     seed=opts.train.seed)
    kept = _kept[key]
    return dataclasses.replace(kept, state_dict={k: v.clone() for k, v in
                                                 kept.state_dict.items()})


def forget_weights() -> None:
    """Drop the kept pretrained backbone."""
    _kept.clear()


def trunk_key_for(model: ClassifierModel, opts: RunOptions, precision: str,
                  ids: list[list[int]], log: Log = quiet) -> str | None:
    """The trunk's fingerprint when its output can be kept (frozen, deterministic, something
    below the trainable top, the training texts' activations within max_cache_mb), else None:
    the whole model then runs every step."""
    reason = model.trunk_uncacheable_reason()
    size = cache_size_mb(ids, model.backbone.config.emb_dim)
    if reason is None and model.first_trainable == 0:
        reason = "every block trains or has LoRA adapters, so only the embeddings lie below"
    elif reason is None and size > opts.train.max_cache_mb:
        reason = f"it would take {size:.0f} MB (> max_cache_mb {opts.train.max_cache_mb:.0f})"
    if not opts.train.cache_trunk or reason is not None:
        if reason:
            log(f"trunk caching off: {reason}; the whole model runs every step")
        return None
    return trunk_fingerprint(model, [], precision)


def prior_for(opts: RunOptions, y: Sequence[int], train_idx: list[int], labels: list[str],
              weights: list[float] | None) -> PriorDecision | None:
    """The class prior `gptcls train` decides at for data a user brings (decide_prior; texts
    in memory are never the chapter's job): `prior` if given, else the given texts' (source).
    The model's prior is the training part's, as balanced or weighted. None: multi-label."""
    if opts.data.multi_label:
        return None
    train = [Example(str(i), labels[y[i]]) for i in train_idx]
    balance = in_memory_balance(opts)
    undersampled = (len(train_idx), len(y)) if balance == "undersample" else None
    splits = Splits(train, [], [], list(labels), weights, balance=balance,
                    balanced=undersampled, source_counts=dict(Counter(labels[c] for c in y)))
    return decide_prior(opts.prior, splits, chapter=False)


def decide(opts: RunOptions, config: ClassifierConfig, model: ClassifierModel, val: Store,
           held_out: bool, device: torch.device, prior: PriorDecision | None,
           log: Log = quiet) -> None:
    """The decisions a `gptcls train` run stores, into `config`: multi-label, a threshold per
    label on `val` (the training texts when nothing is held out); else the temperature fitted
    on the held-out texts and the threshold on calibrated probabilities (training/decisions.py).
    Nothing held out: the temperature stays 1 (on its training texts a model looks better
    calibrated than it is) and the threshold is the given one or the prior's."""
    if prior is None or held_out:  # (n, k) probabilities, as predict computes them
        probs = evaluate(model, val, full_batches(val), device)["probs"]
    if prior is None:  # multi-label
        config.thresholds = choose_thresholds(val.labels.numpy(), probs.numpy())
    elif not held_out:
        config.threshold = choose_threshold(opts, [], np.empty((0, len(config.labels))),
                                            prior.threshold, log)
    else:
        cal, config.threshold = fit_decisions(
            opts, {"validation": probs.numpy()}, {"validation": val.labels.tolist()},
            prior.threshold, log, report_on=("validation",))
        config.temperature = cal.temperature
        log(format_calibration(cal.section))


def restore(classifier: Classifier, history: dict[str, list], cached: bool, precision: str,
            max_cache_mb: float, trunk_cache_dir: str | None = None) -> Trained:
    """A Trained again from its saved classifier (unpickling): same weights, same trunk key."""
    key = trunk_fingerprint(classifier.model, [], precision) if cached else None
    return Trained(classifier, history, key, precision, max_cache_mb, trunk_cache_dir)

