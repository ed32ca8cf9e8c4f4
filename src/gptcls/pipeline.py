"""One training run end to end: data -> checkpoint -> classifier -> cache -> train -> run dir."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptcls import data as data_mod
from gptcls.classifier import ClassifierConfig, ClassifierModel, encode_texts, save_run
from gptcls.errors import GptclsError
from gptcls.models import build_backbone
from gptcls.train import (
    Store,
    TrainConfig,
    build_store,
    cache_size_mb,
    device_for,
    evaluate,
    full_batches,
    train,
)

DEFAULT_MODEL = "smollm2-135m-instruct-q4"

# Default recipes by preset-name prefix (first match wins). The chapter's for GPT-2; SmolLM2's
# 576-wide blocks need more trainable depth and a faster head to reach the same accuracy.
RECIPES: list[tuple[str, dict[str, Any]]] = [
    ("gpt2", {"trainable_blocks": 1, "lr": 5e-5, "head_lr": None, "epochs": 5}),
    ("smollm2", {"trainable_blocks": 4, "lr": 1e-4, "head_lr": 1e-3, "epochs": 5}),
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
    data: str | None = None
    cache: str | None = None
    split_seed: int = 123
    balance: bool = True
    pooling: str = "last"
    trainable_blocks: int = 1
    train_final_norm: bool = True
    max_length: int | None = None
    device: str = "auto"
    train: TrainConfig = field(default_factory=TrainConfig)


def options_with_recipe(out: Path, model: str = DEFAULT_MODEL, **overrides: Any) -> RunOptions:
    """RunOptions for `model` with its preset recipe; explicit (non-None) overrides win."""
    recipe = recipe_for(model)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    tc = {k: v for k, v in {**recipe, **overrides}.items() if k in train_fields}
    opts = {k: v for k, v in {**recipe, **overrides}.items()
            if k not in train_fields and k != "epochs"}
    return RunOptions(out=Path(out), model=model, train=TrainConfig(**tc), **opts)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_training(opts: RunOptions) -> dict[str, Any]:
    """Train, evaluate and save a classifier into `opts.out`; returns the metrics dict."""
    from gptcls.weights import load_checkpoint

    times: dict[str, float] = {}
    t_all = time.perf_counter()
    out = Path(opts.out)
    splits = data_mod.prepare_sms_splits(opts.data, out, cache=opts.cache, seed=opts.split_seed,
                                         balance=opts.balance)
    labels = splits["labels"]
    t0 = time.perf_counter()
    ckpt = load_checkpoint(opts.model, opts.weights, cache=opts.cache, seed=opts.train.seed)
    times["load_backbone_s"] = time.perf_counter() - t0
    _log(f"backbone: {ckpt.source}")
    torch.manual_seed(opts.train.seed)
    backbone = build_backbone(ckpt.config)
    backbone.load_state_dict(_with_tied(ckpt.state_dict, backbone), strict=True)
    model = ClassifierModel(backbone, len(labels), opts.pooling)
    model.set_trainable(opts.trainable_blocks, opts.train_final_norm)
    device = device_for(opts.device)
    model.to(device)

    t0 = time.perf_counter()
    ids, max_length = _tokenize_splits(ckpt.tokenizer, splits, opts, ckpt.config.context_length)
    times["tokenize_s"] = time.perf_counter() - t0
    cache = _use_cache(model, ids, opts.train)
    t0 = time.perf_counter()
    stores = {name: build_store(model, ids[name], [labels.index(e.label) for e in splits[name]],
                                cache, device, desc=name) for name in data_mod.SPLIT_NAMES}
    times["trunk_cache_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hist = train(model, stores["train"], stores["validation"], opts.train, device, _log)
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = {name: _final_eval(model, store, device) for name, store in stores.items()}
    times["final_eval_s"] = time.perf_counter() - t0
    times["total_s"] = time.perf_counter() - t_all

    config = ClassifierConfig(
        model=ckpt.config, labels=labels, max_length=max_length, tokenizer={},
        pooling=opts.pooling, trainable_blocks=opts.trainable_blocks,
        train_final_norm=opts.train_final_norm,
        backbone={"model": opts.model, "weights": opts.weights, "source": ckpt.source})
    save_run(out, config, model.cpu(), ckpt.tokenizer)
    metrics = _metrics(opts, hist, final, times, cache, max_length, splits)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    from gptcls.plots import plot_history

    plot_history(hist, opts.train.epochs, out)
    return metrics


def _with_tied(sd: dict[str, torch.Tensor], backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    if backbone.config.tie_embeddings and "out_head.weight" not in sd:
        return {**sd, "out_head.weight": sd["tok_emb.weight"]}
    return sd


def _tokenize_splits(tokenizer, splits: dict, opts: RunOptions, context_length: int
                     ) -> tuple[dict[str, list[list[int]]], int]:
    """Token ids per split. max_length = the longest training text (the chapter's rule),
    capped by --max-length and the model's context; other splits are truncated to it."""
    limit = min(opts.max_length or context_length, context_length)
    raw = tokenizer.encode_batch([e.text for e in splits["train"]])
    max_length = min(max(len(s) for s in raw), limit)
    ids = {name: encode_texts(tokenizer, [e.text for e in splits[name]], max_length,
                              opts.pooling) for name in data_mod.SPLIT_NAMES}
    return ids, max_length


def _use_cache(model: ClassifierModel, ids: dict[str, list[list[int]]], cfg: TrainConfig) -> bool:
    if not cfg.cache_trunk:
        return False
    if not model.trunk_is_cacheable():
        _log("trunk caching off: layers below the trainable top are not frozen and deterministic")
        return False
    size = sum(cache_size_mb(v, model.backbone.config.emb_dim) for v in ids.values())
    if size > cfg.max_cache_mb:
        _log(f"trunk caching off: it would take {size:.0f} MB (> max_cache_mb "
             f"{cfg.max_cache_mb:.0f}); the trunk runs every step instead")
        return False
    return True


def _final_eval(model: ClassifierModel, store: Store, device: torch.device) -> dict[str, float]:
    res = evaluate(model, store, full_batches(store), device)
    return {"accuracy": float(res["accuracy"]), "loss": float(res["loss"])}


def _metrics(opts: RunOptions, hist: dict, final: dict, times: dict, cache: bool,
             max_length: int, splits: dict) -> dict[str, Any]:
    return {
        "model": opts.model, "weights": opts.weights,
        "train_accuracy": final["train"]["accuracy"],
        "validation_accuracy": final["validation"]["accuracy"],
        "test_accuracy": final["test"]["accuracy"],
        "final": final, "history": hist, "times": times,
        "examples": {n: len(splits[n]) for n in data_mod.SPLIT_NAMES},
        "max_length": max_length, "trunk_cached": cache, "train_config":
        dataclasses.asdict(opts.train), "trainable_blocks": opts.trainable_blocks,
        "pooling": opts.pooling, "device": str(device_for(opts.device)),
        "torch_threads": torch.get_num_threads(),
    }


def check_model_name(model: str) -> None:
    from gptcls.models import PRESETS

    if model not in PRESETS and not Path(model).exists():
        raise GptclsError(f"unknown model preset {model!r} (and no such path); choose one of: "
                          f"{', '.join(PRESETS)}")
