"""One training run end to end: data -> checkpoint -> classifier -> cache -> train -> run dir."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptcls.classifier.model import ClassifierConfig, ClassifierModel, fit_ids, save_run
from gptcls.data.sms import SPLIT_NAMES
from gptcls.data.splits import DataOptions, Splits, load_splits
from gptcls.device import resolve_precision
from gptcls.distributed import finish, from_env, local_device
from gptcls.errors import GptclsError
from gptcls.evaluation.metrics import (
    classification_report,
    plot_confusion_matrix,
    plot_pr_curve,
    threshold_for_max_fpr,
)
from gptcls.models import build_backbone
from gptcls.training.checkpoint import Checkpointer
from gptcls.training.loop import (
    Store,
    TrainConfig,
    build_store,
    cache_size_mb,
    device_for,
    evaluate,
    full_batches,
    train,
    trunk_fingerprint,
)

DEFAULT_MODEL = "smollm2-135m-instruct-q4"
CHECKPOINT_DIR = "checkpoint"

# Default recipes by preset-name prefix (first match wins). The chapter's for GPT-2; SmolLM2's
# 576-wide blocks need more trainable depth and a faster head to reach the same accuracy.
RECIPES: list[tuple[str, dict[str, Any]]] = [
    ("gpt2", {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5}),
    # last+mean: the head sees the last real token and the mean of all of them (4 test errors of
    # 300 at seeds 123, 1, 2 where last alone made 5-7; see bench/accuracy.py).
    ("smollm2", {"trainable_blocks": 4, "lr": 1e-4, "head_lr": 1e-3, "epochs": 5,
                 "pooling": "last+mean"}),
    ("", {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5}),
]


def recipe_for(model: str) -> dict[str, Any]:
    name = Path(model).name.lower()
    return next(dict(r) for prefix, r in RECIPES if name.startswith(prefix))


@dataclass
class RunOptions:
    out: Path
    model: str = DEFAULT_MODEL
    weights: str = "pretrained"
    data: DataOptions = field(default_factory=DataOptions)
    cache: str | None = None
    pooling: str = "last"
    truncate: str = "head"
    threshold: float | None = None
    max_fpr: float | None = None
    trainable_blocks: int = 1
    train_final_norm: bool = True
    # last-layer | last-block | last-N-blocks | all | lora; None: the last trainable_blocks blocks
    trainable: str | None = None
    train_embeddings: bool = False
    lora_rank: int | None = None  # lora options; None: the defaults of gptcls.models.lora
    lora_alpha: float | None = None
    lora_targets: str | None = None  # comma-separated: attn, mlp, all, q, attn.proj, ...
    lora_blocks: int | None = None  # adapters in the last lora_blocks blocks (None: all)
    merge_lora: bool = True  # fold the adapters into the weights when saving the run
    max_length: int | None = None
    # longest: the longest training text (the chapter's); model: the model's context length;
    # or a number of tokens. Texts are truncated to it (and padded to it by last-position).
    context: str = "longest"
    causal_mask: bool = True  # False: bidirectional attention in every block
    device: str = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)


def options_with_recipe(out: Path, model: str = DEFAULT_MODEL, **overrides: Any) -> RunOptions:
    """RunOptions for `model` with its preset recipe; explicit (non-None) overrides win."""
    merged = {**recipe_for(model), **{k: v for k, v in overrides.items() if v is not None}}
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (TrainConfig, DataOptions)}
    tc = {k: v for k, v in merged.items() if k in fields[TrainConfig]}
    dc = {k: v for k, v in merged.items() if k in fields[DataOptions]}
    rest = {k: v for k, v in merged.items() if k not in fields[TrainConfig] | fields[DataOptions]}
    if "cache" in rest:
        dc["cache"] = rest["cache"]
    return RunOptions(out=Path(out), model=model, train=TrainConfig(**tc),
                      data=DataOptions(**dc), **rest)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_training(opts: RunOptions, resume: bool = False) -> dict[str, Any]:
    """Train, evaluate and save a classifier into `opts.out`; returns the metrics dict.
    With opts.train.checkpoint_every the run checkpoints as it goes; `resume` continues from
    the checkpoint in opts.out (see `resume_options`). Under torchrun every process trains
    its share and rank 0 alone writes (distributed.py)."""
    check_options(opts)
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    out = Path(opts.out)
    device = local_device(device_for(opts.device))
    dist = from_env(device)
    if opts.train.checkpoint_every and not resume and dist.main:
        save_options(opts, out / CHECKPOINT_DIR / "options.json")
    split_dir = out if dist.main else Path(tempfile.mkdtemp(prefix=f"gptcls-rank{dist.rank}-"))
    splits = load_splits(opts.data, split_dir, _log if dist.main else _quiet)
    if splits.class_weights:
        opts.train.class_weights = splits.class_weights
    t0 = time.perf_counter()
    model, tokenizer, ckpt = _build_model(opts, len(splits.labels))
    times["load_backbone_s"] = time.perf_counter() - t0
    model.to(device)

    t0 = time.perf_counter()
    ids, max_length = _tokenize_splits(tokenizer, splits, opts, ckpt.config.context_length)
    times["tokenize_s"] = time.perf_counter() - t0
    cache = _use_cache(model, ids, opts.train)
    precision = resolve_precision(opts.train.precision, device)
    if cache:
        _log(f"frozen trunk ({model.first_trainable} blocks) computed once per text in "
             f"{precision}" + (" (--precision fp32 for exact fp32)" if precision == "bf16" else ""))
    t0 = time.perf_counter()
    stores = {name: build_store(model, ids[name], [splits.labels.index(e.label)
                                                   for e in splits[name]], cache, device, desc=name,
                                 precision=precision,
                                 cache_dir=opts.train.trunk_cache_dir, dist=dist)
              for name in SPLIT_NAMES}
    times["trunk_cache_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    checkpointer = None
    if opts.train.checkpoint_every or resume:
        checkpointer = Checkpointer(out / CHECKPOINT_DIR, opts.train.checkpoint_every,
                                    trunk_fingerprint(model, ids["train"], precision))
    hist = train(model, stores["train"], stores["validation"], opts.train, device,
                 _log if dist.main else _quiet, checkpointer, dist)
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = {name: evaluate(model, store, full_batches(store), device)
             for name, store in stores.items()}
    threshold = _choose_threshold(opts, stores["validation"], final["validation"]["probs"])
    reports = {name: classification_report(stores[name].labels.tolist(),
                                           final[name]["probs"].numpy(), splits.labels, threshold)
               for name in SPLIT_NAMES}
    times["final_eval_s"] = time.perf_counter() - t0
    times["total_s"] = time.perf_counter() - t_all
    metrics = _metrics(opts, hist, final, reports, times, cache, max_length, splits)
    metrics["trunk_precision"] = precision if cache else "fp32"
    metrics["processes"] = dist.world
    if dist.main:
        _save(opts, model, tokenizer, ckpt, splits, max_length, threshold, metrics)
        if checkpointer:  # the run is complete: its run directory replaces the checkpoint
            shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        _plots(out, hist, opts.train.epochs, reports["test"], stores["test"],
               final["test"]["probs"])
    finish(dist)
    return metrics


def _quiet(msg: str) -> None:
    pass


def _save(opts: RunOptions, model: ClassifierModel, tokenizer, ckpt, splits: Splits,
          max_length: int, threshold: float | None, metrics: dict[str, Any]) -> None:
    """The run directory: config.json, weights (LoRA merged unless asked not to), metrics."""
    out = Path(opts.out)
    if model.lora and opts.merge_lora:
        model.merge_lora()  # a plain model with the same logits
    config = ClassifierConfig(
        model=ckpt.config, labels=splits.labels, max_length=max_length, tokenizer={},
        pooling=opts.pooling, trainable_blocks=opts.trainable_blocks,
        train_final_norm=opts.train_final_norm, threshold=threshold, truncate=opts.truncate,
        backbone={"model": opts.model, "weights": opts.weights, "source": ckpt.source},
        trainable=opts.trainable, train_embeddings=opts.train_embeddings, lora=model.lora)
    save_run(out, config, model.cpu(), tokenizer)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def save_options(opts: RunOptions, path: Path) -> None:
    """The run's options as JSON (data paths made absolute), for --resume."""
    d = dataclasses.asdict(opts)
    d["out"] = str(Path(opts.out).resolve())
    for key in ("data", "train", "validation", "test"):
        if d["data"][key]:
            d["data"][key] = str(Path(d["data"][key]).resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d, indent=2) + "\n")


def resume_options(run_dir: str | Path) -> RunOptions:
    """The options a checkpointed run started with; an error when there is nothing to resume."""
    from gptcls.training.checkpoint import STATE_FILE

    ckpt = Path(run_dir) / CHECKPOINT_DIR
    if not (ckpt / "options.json").is_file() or not (ckpt / STATE_FILE).is_file():
        done = (Path(run_dir) / "metrics.json").is_file()
        raise GptclsError(f"nothing to resume in {run_dir}: " + (
            "the run finished" if done else "no checkpoint (train with --checkpoint-every N)"))
    d = json.loads((ckpt / "options.json").read_text())
    d["data"]["split"] = tuple(d["data"]["split"])
    return RunOptions(**{**d, "out": Path(d["out"]), "data": DataOptions(**d["data"]),
                         "train": TrainConfig(**d["train"])})


def _build_model(opts: RunOptions, num_classes: int):
    from gptcls.models.weights.pretrained import load_checkpoint

    policy, n_blocks, lora = trainable_policy(opts)  # bad options fail before any download
    ckpt = load_checkpoint(opts.model, opts.weights, cache=opts.cache, seed=opts.train.seed)
    _log(f"backbone: {ckpt.source}")
    ckpt.config = dataclasses.replace(ckpt.config, causal=opts.causal_mask)
    backbone = build_backbone(ckpt.config)
    backbone.load_state_dict(_with_tied(ckpt.state_dict, backbone), strict=True)
    ckpt.state_dict = {}  # the backbone holds its own copy now: free this one
    # Seeded right before the head, as the chapter does (torch.manual_seed(123), then the new
    # out_head): the head's initial weights depend on the seed alone, not on how many random
    # numbers building this backbone happened to draw.
    torch.manual_seed(opts.train.seed)
    model = ClassifierModel(backbone, num_classes, opts.pooling)
    opts.trainable_blocks = model.set_policy(policy, n_blocks, final_norm=opts.train_final_norm,
                                             embeddings=opts.train_embeddings, lora=lora)
    opts.trainable = policy
    if model.lora:
        lo = model.lora
        _log(f"LoRA: rank {lo['rank']}, alpha {lo['alpha']:g} on {', '.join(lo['targets'])} "
             f"of the last {lo['blocks']} blocks")
    return model, ckpt.tokenizer, ckpt


def trainable_policy(opts: RunOptions) -> tuple[str, int | None, dict[str, Any] | None]:
    """(policy, block count or None for the policy's own, LoRA options or None), validated."""
    from gptcls.classifier.model import TRAINABLE_POLICIES, policy_name
    from gptcls.models.lora import lora_spec

    policy = opts.trainable or policy_name(opts.trainable_blocks)
    if policy not in TRAINABLE_POLICIES:
        raise GptclsError(f"unknown trainable policy {policy!r}; choose one of: "
                          f"{', '.join(TRAINABLE_POLICIES)}")
    given = {"--lora-rank": opts.lora_rank, "--lora-alpha": opts.lora_alpha,
             "--lora-targets": opts.lora_targets, "--lora-blocks": opts.lora_blocks}
    if policy != "lora":
        stray = [name for name, value in given.items() if value is not None]
        if stray:
            raise GptclsError(f"{', '.join(stray)}: only with --trainable lora (got {policy})")
        return policy, (opts.trainable_blocks if policy == "last-N-blocks" else None), None
    return policy, opts.lora_blocks, lora_spec(opts.lora_rank, opts.lora_alpha,
                                               opts.lora_targets)


def _choose_threshold(opts: RunOptions, val: Store, val_probs: torch.Tensor) -> float | None:
    """Binary tasks: the given --threshold, or the lowest one keeping validation FPR <= max_fpr."""
    if opts.threshold is None and opts.max_fpr is None:
        return None
    if val_probs.shape[1] != 2:
        raise GptclsError("--threshold and --max-fpr apply to two-class tasks only")
    if opts.threshold is not None:
        return float(opts.threshold)
    t = threshold_for_max_fpr(val.labels.tolist(), val_probs[:, 1].numpy(), opts.max_fpr)
    _log(f"threshold {t:.4f} chosen on validation for false-positive rate <= {opts.max_fpr}")
    return float(t)


def _plots(out: Path, hist: dict, epochs: int, report: dict, test: Store,
           probs: torch.Tensor) -> None:
    from gptcls.evaluation.plots import plot_history

    plot_history(hist, epochs, out)
    plot_confusion_matrix(report["confusion_matrix"], report["labels"],
                          out / "confusion-matrix.png")
    if probs.shape[1] == 2:
        plot_pr_curve(test.labels.tolist(), probs[:, 1].numpy(), out / "pr-curve.png")


def _with_tied(sd: dict[str, torch.Tensor], backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    if backbone.config.tie_embeddings and "out_head.weight" not in sd:
        return {**sd, "out_head.weight": sd["tok_emb.weight"]}
    return sd


def _tokenize_splits(tokenizer, splits: dict, opts: RunOptions, context_length: int
                     ) -> tuple[dict[str, list[list[int]]], int]:
    """Token ids per split. max_length = the longest training text (the chapter's rule),
    capped by --max-length and the model's context; other splits are truncated to it."""
    limit = min(opts.max_length or context_length, context_length)
    raw = {name: tokenizer.encode_batch([e.text for e in splits[name]]) for name in SPLIT_NAMES}
    max_length = min(max(len(s) for s in raw["train"]), limit)
    if opts.context == "model":
        max_length = limit
    elif opts.context != "longest":
        max_length = min(parse_context(opts.context), limit)
    ids = {name: fit_ids(raw[name], max_length, tokenizer.pad_id, opts.pooling, opts.truncate)
           for name in SPLIT_NAMES}
    return ids, max_length


def parse_context(context: str | int) -> int:
    try:
        n = int(context)
    except ValueError:
        n = 0
    if n <= 0:
        raise GptclsError(f"--context must be longest, model or a positive number of tokens, "
                          f"got {context!r}")
    return n


def _use_cache(model: ClassifierModel, ids: dict[str, list[list[int]]], cfg: TrainConfig) -> bool:
    if not cfg.cache_trunk:
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


def _metrics(opts: RunOptions, hist: dict, final: dict, reports: dict, times: dict,
             cache: bool, max_length: int, splits: Splits) -> dict[str, Any]:
    return {
        "model": opts.model, "weights": opts.weights, "labels": splits.labels,
        # With a decision threshold these differ from argmax accuracy; reports hold both views.
        "train_accuracy": reports["train"]["accuracy"],
        "validation_accuracy": reports["validation"]["accuracy"],
        "test_accuracy": reports["test"]["accuracy"],
        "final": {n: {"accuracy": r["accuracy"], "loss": r["loss"]} for n, r in final.items()},
        "reports": reports, "history": hist, "times": times,
        "examples": {n: len(splits[n]) for n in SPLIT_NAMES},
        "max_length": max_length, "trunk_cached": cache, "train_config":
        dataclasses.asdict(opts.train), "trainable_blocks": opts.trainable_blocks,
        "pooling": opts.pooling, "device": str(device_for(opts.device)),
        "torch_threads": torch.get_num_threads(),
    }


def check_options(opts: RunOptions) -> None:
    """Every check that needs no data and no weights, so a bad option fails before anything
    loads (and a grid fails before its first run trains)."""
    from gptcls.classifier.model import POOLINGS, policy_blocks
    from gptcls.data.splits import BALANCE_MODES
    from gptcls.models import PRESETS, preset_config
    from gptcls.training.loop import EARLY_STOPPING, LR_SCHEDULES

    check_model_name(opts.model)
    t = opts.train
    choices = [("pooling", opts.pooling, POOLINGS), ("truncate", opts.truncate, ("head", "tail")),
               ("lr_schedule", t.lr_schedule, LR_SCHEDULES),
               ("early_stopping", t.early_stopping or EARLY_STOPPING[0], EARLY_STOPPING),
               ("balance", opts.data.balance, BALANCE_MODES)]
    for name, value, valid in choices:
        if value not in valid:
            raise GptclsError(f"unknown {name} {value!r}; choose one of: {', '.join(valid)}")
    resolve_precision(t.precision, torch.device("cpu"))
    for name, value, least in (("epochs", t.epochs, 0), ("batch_size", t.batch_size, 1),
                               ("grad_accum", t.grad_accum, 1)):
        if value < least:
            raise GptclsError(f"{name} must be at least {least}, got {value}")
    if opts.context not in ("longest", "model"):
        parse_context(opts.context)
    policy, n_blocks, _ = trainable_policy(opts)  # includes the LoRA options
    if opts.model in PRESETS:
        n_layers = preset_config(opts.model).n_layers
        n, least = policy_blocks(policy, n_blocks, n_layers), int(policy == "lora")
        if not least <= n <= n_layers:  # the messages of set_trainable and apply_lora
            what = "LoRA blocks" if policy == "lora" else "trainable blocks"
            raise GptclsError(f"{what} must be between {least} and {n_layers}, got {n}")


def check_model_name(model: str) -> None:
    from gptcls.models import PRESETS

    if model not in PRESETS and not Path(model).exists():
        raise GptclsError(f"unknown model preset {model!r} (and no such path); choose one of: "
                          f"{', '.join(PRESETS)}")
