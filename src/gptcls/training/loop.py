"""The training loop and evaluation, as plain functions.

Data reaches the loop as a `Store` (trunk_cache.py): per-example inputs that are either token
ids (the model runs whole) or cached trunk activations (only the trainable top runs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from gptcls.classifier.encoding import make_batches
from gptcls.classifier.model import ClassifierModel
from gptcls.device import autocast
from gptcls.distributed import Dist, check_batch, share, wrap
from gptcls.errors import GptclsError
from gptcls.evaluation.metrics import macro_f1
from gptcls.evaluation.multilabel import label_f1s
from gptcls.log import line_logger
from gptcls.options import EARLY_STOPPING, LR_SCHEDULES, TrainConfig
from gptcls.progress import progress
from gptcls.training.checkpoint import Checkpointer, LoopState, load_trainable, trainable_state
from gptcls.training.long_text import eval_prefix, text_results
from gptcls.training.trunk_cache import Store, full_batches


def logits_for(model: torch.nn.Module, store: Store, idx: Sequence[int],
               device: torch.device, precision: str = "fp32"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """`model` is a ClassifierModel or the DistributedDataParallel wrapping one; matrix
    products in bf16 where `precision` resolves to it (device.autocast), fp32 master weights."""
    x, lengths, y = store.batch(idx, device)
    with autocast(device, precision):
        logits = model(x, lengths, cached=store.cached)
    return logits.float(), y


@torch.inference_mode()
def evaluate(model: ClassifierModel, store: Store, batches: list[list[int]],
             device: torch.device, class_weights: torch.Tensor | None = None,
             desc: str | None = None, precision: str = "fp32"
             ) -> dict[str, float | torch.Tensor]:
    """Mean loss, accuracy and per-example probabilities (in store order) over `batches`;
    with `desc`, a progress bar (or lines) under that name."""
    model.eval()
    bar = progress(sum(map(len, batches)), desc or "", enabled=desc is not None)
    total_loss, correct, count = 0.0, 0, 0
    probs = torch.full((len(store), model.head.out_features), float("nan"))
    for idx in batches:
        logits, y = logits_for(model, store, idx, device, precision)
        if y.dim() == 2:  # multi-label: accuracy is subset accuracy at 0.5
            total_loss += multilabel_loss(logits, y, class_weights).item()
            correct += int(((logits > 0) == y.bool()).all(-1).sum())
            probs[idx] = torch.sigmoid(logits).cpu()
        else:
            total_loss += F.cross_entropy(logits, y, weight=class_weights, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            probs[idx] = torch.softmax(logits, -1).cpu()
        count += len(idx)
        bar.update(len(idx))
    bar.close()
    if store.groups is not None:  # --long-text chunk: one prediction per text, from its windows
        return text_results(store, probs, class_weights)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1),
            "probs": probs}


def evaluate_splits(model: ClassifierModel, stores: dict[str, Store], device: torch.device,
                    precision: str = "fp32", show: bool = True) -> dict[str, dict]:
    """The final evaluation: `evaluate` over every example of each split exactly once, in
    length-sorted batches of up to 4,096 tokens, at the precision training ran in (so the
    figures are those of the model as `Classifier.load` serves it by default)."""
    return {name: evaluate(model, store, full_batches(store), device, precision=precision,
                           desc=f"evaluation ({name})" if show else None)
            for name, store in stores.items()}


def multilabel_loss(logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None = None,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy per label on (B, K) logits and 0/1 targets: summed over examples,
    averaged over labels (transformers' multi_label_classification loss, times B)."""
    target = y.float() * (1 - label_smoothing) + 0.5 * label_smoothing
    per_label = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight,
                                                   reduction="none")  # (B, K)
    return per_label.mean(-1).sum()


def make_optimizer(model: ClassifierModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    head = [p for p in model.head.parameters() if p.requires_grad]
    body = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": body, "lr": cfg.lr}] if body else []
    groups.append({"params": head, "lr": cfg.head_lr if cfg.head_lr is not None else cfg.lr})
    # The fused kernel updates each tensor in one pass: several times faster than the default
    # per-op loop on CPU, where the optimizer step otherwise rivals the backward pass.
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_steps`, then constant, linear or cosine decay to 0."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise GptclsError(f"unknown lr schedule {cfg.lr_schedule!r}; "
                          f"choose one of: {', '.join(LR_SCHEDULES)}")

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.lr_schedule == "linear":
            return 1.0 - progress
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


class EarlyStopping:
    """Tracks a full-validation metric per epoch and keeps the best epoch's trainable weights."""

    def __init__(self, metric: str, patience: int | None):
        if metric not in EARLY_STOPPING:
            raise GptclsError(f"unknown early-stopping metric {metric!r}; "
                              f"choose one of: {', '.join(EARLY_STOPPING)}")
        self.metric, self.patience = metric, patience
        self.best: float | None = None
        self.best_epoch = 0
        self.state: dict[str, torch.Tensor] = {}

    def update(self, model: ClassifierModel, epoch: int, val: dict) -> bool:
        """Record epoch `epoch` (1-based); True when training should stop."""
        score = -val["loss"] if self.metric == "val_loss" else val["macro_f1"]
        if self.best is None or score > self.best:
            self.best, self.best_epoch = score, epoch
            self.state = trainable_state(model)
        return self.patience is not None and epoch - self.best_epoch >= self.patience

    def restore(self, model: ClassifierModel) -> None:
        load_trainable(model, self.state)


def train(model: ClassifierModel, train_store: Store, val_store: Store, cfg: TrainConfig,
          device: torch.device, log: Callable[[str], None] | None = None,
          checkpoint: Checkpointer | None = None, dist: Dist | None = None) -> dict[str, list]:
    """The chapter's `train_classifier_simple`, on length-bucketed batches of a Store; with a
    Checkpointer it saves as it goes and continues from the checkpoint it finds; with a Dist
    of several processes each trains on its share of every batch (distributed.py)."""
    log = log or line_logger(__name__)
    dist = dist or Dist()
    if cfg.grad_accum < 1:
        raise GptclsError(f"grad_accum must be at least 1, got {cfg.grad_accum}")
    check_batch(cfg.batch_size, dist)
    runner = wrap(model, dist, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    weights = torch.tensor(cfg.class_weights, device=device) if cfg.class_weights else None
    steps_per_epoch = len(train_store) // cfg.batch_size // cfg.grad_accum
    sched = make_scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    stopper = EarlyStopping(cfg.early_stopping, cfg.patience) if cfg.early_stopping else None
    val_batches = make_batches(val_store.lengths, cfg.batch_size, bucket=cfg.bucket,
                               order=range(eval_prefix(val_store, cfg.eval_iter * cfg.batch_size)))
    payload = checkpoint.load() if checkpoint else None
    st = checkpoint.restore(payload, model, opt, sched, gen, stopper) if payload else LoopState()
    if payload:
        log(f"resuming at epoch {st.epoch + 1}, step {st.step + 1}")
    while st.epoch < cfg.epochs:
        t0 = time.perf_counter()
        if st.order is None:
            st.order = make_batches(train_store.lengths, cfg.batch_size, True, gen, True,
                                    cfg.bucket)
            st.order = st.order[: len(st.order) - len(st.order) % cfg.grad_accum]
        bar = progress((len(st.order) - st.batch) // cfg.grad_accum,
                       f"epoch {st.epoch + 1}/{cfg.epochs}", "steps", enabled=dist.main)
        while st.batch < len(st.order):
            group = st.order[st.batch: st.batch + cfg.grad_accum]
            loss = _step(runner, train_store, group, opt, sched, device, weights, dist,
                         cfg.label_smoothing, cfg.precision)
            st.batch += len(group)
            st.step += 1
            st.examples_seen += sum(len(idx) for idx in group)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
            if st.step % cfg.eval_freq == 0:
                _eval_losses(model, train_store, val_store, val_batches, cfg, gen, st, device,
                             weights, log)
            if checkpoint and dist.main and checkpoint.due(st.step):
                checkpoint.save(model, opt, sched, gen, st, stopper)
        bar.close()
        stop = _end_epoch(model, train_store, val_store, val_batches, cfg, gen, st, device,
                          weights, log, stopper, time.perf_counter() - t0)
        st.epoch, st.batch, st.order = st.epoch + 1, 0, None
        if checkpoint and dist.main:
            checkpoint.save(model, opt, sched, gen, st, stopper)
        if stop:
            break
    return _finish(model, st, stopper, log)


def _step(model: torch.nn.Module, store: Store, group: list[list[int]],
          opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR,
          device: torch.device, weights: torch.Tensor | None, dist: Dist | None = None,
          label_smoothing: float = 0.0, precision: str = "fp32") -> float:
    """One optimizer step over `group` micro-batches; returns this process's share of their
    mean loss. Each process takes its share of every micro-batch; scaling by world / batch
    size makes DDP's gradient average the gradient of the whole batch's mean loss."""
    dist = dist or Dist()
    model.train()
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for idx in group:
        logits, y = logits_for(model, store, share(idx, dist), device, precision)
        if y.dim() == 2:  # multi-label; weights are each label's positive weight
            loss = multilabel_loss(logits, y, weights, label_smoothing)
        else:
            loss = F.cross_entropy(logits, y, weight=weights, reduction="sum",
                                   label_smoothing=label_smoothing)
        if weights is not None and y.dim() == 1:  # a weighted mean divides by summed weights
            loss = loss * len(idx) / float(weights[store.item_labels(idx)].sum())
        loss = loss * dist.world / len(idx) / len(group)
        loss.backward()
        total += loss.item() / dist.world
    opt.step()
    sched.step()
    return total


def _eval_losses(model, train_store, val_store, val_batches, cfg, gen, st, device, weights,
                 log) -> None:
    tr = evaluate(model, train_store, _sample(train_store, cfg, gen), device, weights,
                  precision=cfg.precision)
    va = evaluate(model, val_store, val_batches, device, weights, precision=cfg.precision)
    st.hist["train_losses"].append(tr["loss"])
    st.hist["val_losses"].append(va["loss"])
    st.hist["examples_seen_at_eval"].append(st.examples_seen)
    log(f"Ep {st.epoch + 1} (Step {st.step:06d}): "
        f"Train loss {tr['loss']:.3f}, Val loss {va['loss']:.3f}")


def _end_epoch(model, train_store, val_store, val_batches, cfg, gen, st, device, weights, log,
               stopper, seconds: float) -> bool:
    """The chapter's per-epoch accuracies (+ early stopping); True when training should stop."""
    tr_acc = evaluate(model, train_store, _sample(train_store, cfg, gen), device,
                      precision=cfg.precision)["accuracy"]
    va_acc = evaluate(model, val_store, val_batches, device, precision=cfg.precision)["accuracy"]
    st.hist["train_accs"].append(tr_acc)
    st.hist["val_accs"].append(va_acc)
    st.hist["epoch_seconds"].append(seconds)
    log(f"Training accuracy: {tr_acc * 100:.2f}% | Validation accuracy: {va_acc * 100:.2f}%")
    return bool(stopper) and _early_stop_epoch(model, val_store, device, weights, stopper,
                                               st.epoch, st.hist, log, cfg.precision)


def _finish(model: ClassifierModel, st: LoopState, stopper: EarlyStopping | None,
            log: Callable[[str], None]) -> dict[str, list]:
    hist = st.hist
    if stopper:
        stopper.restore(model)
        hist["best_epoch"] = [stopper.best_epoch]
        log(f"restored the weights of epoch {stopper.best_epoch} (best {stopper.metric})")
    hist["examples_seen"] = [st.examples_seen]
    hist["steps"] = [st.step + 1]
    return hist


def _early_stop_epoch(model: ClassifierModel, val_store: Store, device: torch.device,
                      weights: torch.Tensor | None, stopper: EarlyStopping, epoch: int,
                      hist: dict[str, list], log: Callable[[str], None],
                      precision: str = "fp32") -> bool:
    """Evaluate all of validation, update the stopper; True when patience ran out."""
    va = evaluate(model, val_store, full_batches(val_store), device, weights,
                  precision=precision)
    # The report's definition (evaluation.metrics), so the best epoch is picked by the number
    # the report shows.
    if val_store.labels.dim() == 2:  # multi-label: macro-F1 at 0.5 (thresholds come later)
        va["macro_f1"] = label_f1s(val_store.labels.numpy(), va["probs"].numpy() >= 0.5).mean()
    else:
        va["macro_f1"] = macro_f1(val_store.labels.numpy(), va["probs"].argmax(-1).numpy(),
                                  va["probs"].shape[1])
    hist.setdefault("val_full_losses", []).append(va["loss"])
    hist.setdefault("val_macro_f1", []).append(va["macro_f1"])
    stop = stopper.update(model, epoch + 1, va)
    if stop:
        log(f"early stopping after epoch {epoch + 1}: no better {stopper.metric} for "
            f"{stopper.patience} epoch(s)")
    return stop


def _sample(store: Store, cfg: TrainConfig, gen: torch.Generator) -> list[list[int]]:
    """`eval_iter` random batches, like the first batches of the chapter's shuffled loader."""
    n = min(len(store), cfg.eval_iter * cfg.batch_size)
    order = torch.randperm(len(store), generator=gen)[:n].tolist()
    return make_batches(store.lengths, cfg.batch_size, bucket=cfg.bucket, order=order)


