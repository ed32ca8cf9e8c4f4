"""One training run end to end: data -> pretrained weights -> classifier -> trunk cache -> train
-> run directory."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gptcls.classifier.base_ref import base_identity
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.encoding import choose_max_length, fit_ids
from gptcls.classifier.hf_compat import training_note
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.model_card import write_model_card
from gptcls.classifier.run_dir import save_run
from gptcls.classifier.twin import drop_twins
from gptcls.data.examples import SPLIT_NAMES
from gptcls.data.multilabel import check_multi_label, targets
from gptcls.data.splits import Splits, load_splits, write_splits
from gptcls.device import device_for, resolve_precision
from gptcls.distributed import Dist, finish, from_env, local_device
from gptcls.errors import GptclsError
from gptcls.evaluation.calibration import RELIABILITY_PLOT, Calibration
from gptcls.evaluation.metrics import classification_report
from gptcls.evaluation.plots import plot_reliability
from gptcls.evaluation.prior import PriorDecision, check_prior, decide_prior, prior_section
from gptcls.log import line_logger, plural
from gptcls.options import (
    OPTIONS,
    RunOptions,
    TrainConfig,
    check_values,
    config_fields,
    from_dict,
    to_dict,
)
from gptcls.recipes import describe
from gptcls.training.builder import build_model, trainable_policy
from gptcls.training.checkpoint import STATE_FILE, Checkpointer
from gptcls.training.decisions import fit_decisions
from gptcls.training.long_text import group_stores, window_counts, window_splits
from gptcls.training.loop import evaluate_splits, train
from gptcls.training.multilabel import finish_multilabel
from gptcls.training.run_metrics import run_metrics
from gptcls.training.search import Search
from gptcls.training.trunk_cache import (
    Store,
    build_store,
    cache_size_mb,
    trunk_fingerprint,
)
from gptcls.training.trunk_memo import MEMO

CHECKPOINT_DIR = "checkpoint"


_log = line_logger(__name__)


@dataclass
class _Prepared:
    """The model a run trains, what its trainable policy resolved to, and its inputs."""

    model: ClassifierModel
    tokenizer: Any
    pretrained: Any
    policy: str  # the trainable policy, resolved (never None)
    trainable_blocks: int  # the blocks it trains (or adapts, for lora)
    ids: dict[str, list[list[int]]]
    max_length: int
    cached: bool  # the frozen trunk runs once per text
    precision: str
    stores: dict[str, Store]


def run_training(opts: RunOptions, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and save a classifier into `opts.out`; returns the metrics dict.
    With opts.train.checkpoint_every the run checkpoints as it goes; `resume` continues from
    the checkpoint in opts.out (see `resume_options`). Under torchrun every process trains
    its share and rank 0 alone writes (distributed.py). `opts` is never modified."""
    check_options(opts)
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    out = Path(opts.out)
    device = local_device(device_for(opts.device))
    dist = from_env(device)
    log = _log if dist.main else _quiet
    if opts.train.checkpoint_every and not resume and dist.main:
        save_options(opts, out / CHECKPOINT_DIR / "options.json")
    split_dir = out if dist.main else Path(tempfile.mkdtemp(prefix=f"gptcls-rank{dist.rank}-"))
    splits = load_splits(opts.data, None, log)
    prior = None if opts.data.multi_label else decide_prior(opts.prior, splits,
                                                           chapter=is_chapter(opts, splits))
    run = _prepare(opts, splits, device, dist, times)
    search = Search(opts, run, device, dist) if opts.train.search else None  # may refuse its budget
    write_splits(split_dir, splits)  # after every check: a bad --prior or budget writes nothing
    t0 = time.perf_counter()
    checkpointer = None
    if opts.train.checkpoint_every or resume:
        checkpointer = Checkpointer(out / CHECKPOINT_DIR, opts.train.checkpoint_every,
                                    trunk_fingerprint(run.model, run.ids["train"], run.precision))
    # The class weights come from the data (--balance weighted), not from the options.
    cfg = dataclasses.replace(opts.train, class_weights=splits.class_weights)
    if search:  # tries on one trunk pass; the winner's options, model and history go on
        opts, run, hist = search.run(cfg, times)
    else:
        hist = train(run.model, run.stores["train"], run.stores["validation"], cfg, device,
                     log, checkpointer, dist)
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = evaluate_splits(run.model, run.stores, device, run.precision, dist.main)
    if opts.data.multi_label:  # per-label thresholds chosen on validation, no calibration
        times["total_s"] = time.perf_counter() - t_all
        metrics = finish_multilabel(opts, run, hist, final, splits, times, dist.main,
                                    lambda m: _save(opts, run, splits, None, m))
        if checkpointer and dist.main:
            shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        finish(dist)
        return metrics
    cal, threshold, reports = _decide(opts, run, final, splits, prior)
    times["final_eval_s"] = time.perf_counter() - t0
    times["total_s"] = time.perf_counter() - t_all
    metrics = run_metrics(opts, run, hist, final, reports, times, splits)
    metrics["processes"] = dist.world
    if opts.long_text == "chunk":
        metrics["windows"] = window_counts(run.stores)  # texts and the windows they became
    if search:
        metrics["search"] = search.summary
    metrics["calibration"] = {**cal.section, "plot": RELIABILITY_PLOT}
    metrics["prior"] = prior_section(prior, cal.labels["test"], cal.probs["test"], threshold)
    if dist.main:
        _save(opts, run, splits, threshold, metrics)
        if checkpointer:  # the run is complete: its run directory replaces the checkpoint
            shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        _plots(out, hist, opts.train.epochs, reports["test"], run.stores["test"],
               final["test"]["probs"])
        plot_reliability(cal.labels["test"], cal.raw["test"], cal.probs["test"],
                         out / RELIABILITY_PLOT)
    finish(dist)
    return metrics


def _prepare(opts: RunOptions, splits: Splits, device: torch.device, dist,
             times: dict[str, float]) -> _Prepared:
    """Backbone + head with its trainable policy, token ids, and the stores (trunk cached)."""
    t0 = time.perf_counter()
    model, tokenizer, pretrained, policy, n_blocks = _build_model(opts, len(splits.labels))
    times["load_backbone_s"] = time.perf_counter() - t0
    model.to(device)
    t0 = time.perf_counter()
    ids, max_length, groups = _tokenize_splits(tokenizer, splits, opts,
                                               pretrained.config.context_length)
    times["tokenize_s"] = time.perf_counter() - t0
    cache = _use_cache(model, ids, opts.train)
    precision = resolve_precision(opts.train.precision, device)
    if cache:
        _log(f"frozen trunk ({plural(model.first_trainable, 'block')}) computed once per text in "
             f"{precision}" + (" (--precision fp32 for exact fp32)" if precision == "bf16" else ""))
    elif precision == "int8":  # int8 quantizes the cached trunk only; nothing here is frozen once
        _log("--precision int8: the trunk is not cached, so every layer runs in fp32")
    t0 = time.perf_counter()
    stores = _stores(model, ids, splits, cache, device, precision, opts.train.trunk_cache_dir,
                     dist)
    group_stores(stores, groups)  # --long-text chunk: items are windows of texts
    drop_twins(model)  # the frozen blocks' int8/bf16 copy: no further trunk pass
    times["trunk_cache_s"] = time.perf_counter() - t0
    return _Prepared(model, tokenizer, pretrained, policy, n_blocks, ids, max_length, cache,
                     precision, stores)


def _stores(model: ClassifierModel, ids: dict[str, list[list[int]]], splits: Splits,
            cache: bool, device: torch.device, precision: str, cache_dir: str | None,
            dist: Dist) -> dict[str, Store]:
    """Each split's Store: through the process's trunk memo while it is shared (one trunk
    pass per text across in-process trainings), else computed per split."""
    labels = {name: targets(splits[name], splits.labels) for name in SPLIT_NAMES}
    if cache and MEMO.shared_mb > 0 and dist.world == 1:
        key = trunk_fingerprint(model, [], precision)  # once: it hashes the trunk's weights
        return {name: MEMO.store(model, key, ids[name], labels[name], device, precision,
                                 MEMO.shared_mb, cache_dir) for name in SPLIT_NAMES}
    return {name: build_store(model, ids[name], labels[name], cache, device, desc=name,
                              precision=precision, cache_dir=cache_dir, dist=dist)
            for name in SPLIT_NAMES}


def _quiet(msg: str) -> None:
    pass


def _save(opts: RunOptions, run: _Prepared, splits: Splits, threshold: float | None,
          metrics: dict[str, Any]) -> None:
    """The run directory: config.json, weights (LoRA merged unless asked not to), metrics."""
    out, model = Path(opts.out), run.model
    if model.lora and opts.merge_lora:
        model.merge_lora()  # a plain model with the same logits
    config = ClassifierConfig(
        model=run.pretrained.config, labels=splits.labels, max_length=run.max_length,
        tokenizer={}, threshold=threshold, trainable=run.policy,
        temperature=metrics.get("calibration", {}).get("temperature", 1.0),
        thresholds=metrics.get("thresholds"),  # multi-label: one per label
        trainable_blocks=run.trainable_blocks, lora=model.lora, **config_fields(opts),
        backbone={"model": opts.model, "weights": opts.weights, "source": run.pretrained.source,
                  **base_identity(opts)},  # path + sha256: a delta run's base
        save=opts.save)  # save_run keeps every weight where there is no base to find again
    save_run(out, config, model.cpu(), run.tokenizer)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(out, config, metrics)


def save_options(opts: RunOptions, path: Path) -> None:
    """The run's options as JSON (file and folder paths made absolute), for --resume."""
    d = to_dict(opts)
    for name, o in OPTIONS.items():
        if o.metavar in ("FILE", "DIR") and d[name]:
            d[name] = str(Path(d[name]).resolve())
    doc = {"out": str(Path(opts.out).resolve()), "options": d}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def resume_options(run_dir: str | Path) -> tuple[RunOptions, bool]:
    """The options a checkpointed run started with, and whether it has a checkpoint to continue
    from (False: it was stopped before its first one, so it starts over). An error when there
    is nothing to resume."""
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    if not (ckpt / "options.json").is_file():
        done = (Path(run_dir) / "metrics.json").is_file()
        raise GptclsError(f"nothing to resume in {run_dir}: " + (
            "the run finished" if done else "no checkpoint (train with --checkpoint-every N)"))
    try:
        doc = json.loads((ckpt / "options.json").read_text())
        opts = from_dict(doc["options"], doc["out"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GptclsError(f"cannot resume {run_dir}: {ckpt / 'options.json'} is damaged "
                          f"({exc})") from None
    return opts, (ckpt / STATE_FILE).is_file()


def _build_model(opts: RunOptions, num_classes: int):
    """build_model's (model, tokenizer, pretrained, resolved policy, its block count), saying
    which backbone it is."""
    built = build_model(opts, num_classes)
    model, pretrained = built[0], built[2]
    _log(f"backbone: {pretrained.source}")
    for line in describe(opts).splitlines():  # which recipe ran, and what differs from it
        _log(line)
    if opts.weights == "random":  # a note (INFO, -q silences it), after the data's checks
        _log("note: --weights random: the backbone is randomly initialised, not pretrained; "
             "expect chance-level features (the chapter's random-weights experiment).")
    if note := training_note(pretrained.config.family, opts.pooling, opts.head_bias,
                             opts.causal_mask):
        _log(note)
    if model.lora:
        lo = model.lora
        _log(f"LoRA: rank {lo['rank']}, alpha {lo['alpha']:g} on {', '.join(lo['targets'])} "
             f"of the last {lo['blocks']} blocks")
    return built


def _decide(opts: RunOptions, run: _Prepared, final: dict, splits: Splits,
            prior: PriorDecision) -> tuple[Calibration, float | None, dict[str, dict]]:
    """Temperature fitted on validation, the threshold (on calibrated probabilities) and the
    splits' reports with both."""
    cal, threshold = fit_decisions(opts, {n: r["probs"].numpy() for n, r in final.items()},
                                   {n: store.labels.tolist() for n, store in run.stores.items()},
                                   prior.threshold, _log)
    reports = {name: classification_report(cal.labels[name], cal.probs[name], splits.labels,
                                           threshold) for name in SPLIT_NAMES}
    return cal, threshold, reports


def _plots(out: Path, hist: dict, epochs: int, report: dict, test: Store,
           probs: torch.Tensor) -> None:
    from gptcls.evaluation.plots import plot_confusion_matrix, plot_history, plot_pr_curve

    plot_history(hist, epochs, out)
    plot_confusion_matrix(report["confusion_matrix"], report["labels"],
                          out / "confusion-matrix.png")
    if probs.shape[1] == 2:
        plot_pr_curve(test.labels.tolist(), probs[:, 1].numpy(), out / "pr-curve.png")


def _tokenize_splits(tokenizer, splits: dict, opts: RunOptions, context_length: int
                     ) -> tuple[dict[str, list[list[int]]], int, dict[str, list[int]]]:
    """Token ids per split, cut to the max_length `choose_max_length` picks from the training
    texts (the chapter's longest training text unless texts run long); the run says which."""
    raw = {name: tokenizer.encode_batch([e.text for e in splits[name]]) for name in SPLIT_NAMES}
    choice = choose_max_length([len(s) for s in raw["train"]], context_length, opts.max_length,
                               opts.context)
    max_length = choice.max_length
    if opts.long_text == "chunk":  # windows, and the text of each (training/long_text.py)
        ids, groups, line = window_splits(raw, choice, tokenizer.pad_id, opts.pooling)
        _log(line)
        return ids, max_length, groups
    _log(choice.message(opts.truncate, sum(len(s) > max_length for name in SPLIT_NAMES[1:]
                                           for s in raw[name])))
    ids = {name: fit_ids(raw[name], max_length, tokenizer.pad_id, opts.pooling, opts.truncate)
           for name in SPLIT_NAMES}
    return ids, max_length, {}


def _use_cache(model: ClassifierModel, ids: dict[str, list[list[int]]], cfg: TrainConfig) -> bool:
    if not cfg.cache_trunk or cfg.search:  # --search caches its own trunk (search.py)
        return False
    reason = model.trunk_uncacheable_reason()
    if reason is None and model.first_trainable == 0:
        reason = "every block trains or has LoRA adapters, so only the embeddings lie below"
    if reason is not None:
        _log(f"trunk caching off: {reason}; the whole model runs every step")
        return False
    size = sum(cache_size_mb(v, model.backbone.config.emb_dim) for v in ids.values())
    if size > cfg.max_cache_mb:
        _log(f"trunk caching off: it would take {size:.0f} MB (> max_cache_mb "
             f"{cfg.max_cache_mb:.0f}); the trunk runs every step instead")
        return False
    return True


def is_chapter(opts: RunOptions, splits: Splits) -> bool:
    """The chapter's job: the SMS Spam Collection (downloaded, or its file given as `make demo`
    does) balanced by undersampling. Its balanced test figures stay the headline (argmax
    decisions); the prior-aware figures are printed beside them."""
    return (not opts.data.train and splits.balance == "undersample"
            and all(r.format == "sms" for r in splits.reports))


def check_options(opts: RunOptions) -> None:
    """Every check that needs no data and no weights, so a bad option fails before anything
    loads (and a grid fails before its first run trains)."""
    from gptcls.classifier.config import policy_blocks
    from gptcls.models import PRESETS, preset_config

    check_model_name(opts.model)
    check_values(opts)  # choices, ranges, --context
    check_prior(opts.prior)  # its form; its labels once the data is read
    check_multi_label(opts)
    policy, n_blocks, _ = trainable_policy(opts)  # includes the LoRA options
    if opts.model in PRESETS:
        n_layers = preset_config(opts.model).n_layers
        n, least = policy_blocks(policy, n_blocks, n_layers), int(policy == "lora")
        if not least <= n <= n_layers:  # the messages of set_trainable and apply_lora
            what = "LoRA blocks" if policy == "lora" else "trainable blocks"
            raise GptclsError(f"{what} must be between {least} and {n_layers}, got {n}")


def check_model_name(model: str) -> None:
    from gptcls.models import PRESETS
    from gptcls.models.weights.hub import is_hub_id

    # A hub ID (owner/name) is checked when it downloads: the hub alone knows whether it exists.
    if model not in PRESETS and not Path(model).exists() and not is_hub_id(model):
        raise GptclsError(f"unknown model preset {model!r} (and no such path or hub ID "
                          f"owner/name); choose one of: {', '.join(PRESETS)}")
