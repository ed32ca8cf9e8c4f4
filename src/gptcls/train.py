"""The training loop, evaluation and the frozen-trunk cache, as plain functions.

Data reaches the loop as a `Store`: per-example inputs that are either token ids (the model runs
whole) or cached trunk activations (only the trainable top runs). Batches are grouped by length
and right-padded, so almost no compute goes to padding.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gptcls.classifier import ClassifierModel, pad_batch
from gptcls.errors import GptclsError


@dataclass
class TrainConfig:
    """A training recipe. The defaults are chapter 6's."""

    epochs: int = 5
    batch_size: int = 8
    lr: float = 5e-5
    head_lr: float | None = None  # None: same as lr
    weight_decay: float = 0.1
    eval_freq: int = 50  # steps between loss evaluations
    eval_iter: int = 5  # batches per evaluation
    seed: int = 123
    cache_trunk: bool = True
    max_cache_mb: float = 4096.0  # above this the trunk is not cached (runs every step)
    bucket: bool = True
    class_weights: list[float] | None = None
    lr_schedule: str = "constant"  # constant | linear | cosine (decay to 0 after warmup)
    warmup_steps: int = 0
    # val_loss | val_f1: evaluate all of validation each epoch, restore the best epoch's weights
    early_stopping: str | None = None
    patience: int | None = None  # epochs without improvement before stopping (None: never)
    precision: str = "fp32"  # fp32 | bf16: compute dtype of the frozen trunk on CPU
    # A folder to keep trunk activations in across runs (seeds, grids): same weights, texts,
    # depth and precision -> the trunk is read back instead of recomputed. None: in memory only.
    trunk_cache_dir: str | None = None


LR_SCHEDULES = ("constant", "linear", "cosine")
EARLY_STOPPING = ("val_loss", "val_f1")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Store:
    """Model inputs of one split: `items[i]` is (T_i,) ids or (T_i, C) trunk activations."""

    items: list[torch.Tensor]
    labels: torch.Tensor  # (N,)
    cached: bool
    lengths: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = [len(x) for x in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, idx: Sequence[int], device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, lengths = pad_batch([self.items[i] for i in idx])
        return x.to(device), lengths.to(device), self.labels[list(idx)].to(device)


def make_batches(lengths: Sequence[int], batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 bucket: bool = True, order: Sequence[int] | None = None) -> list[list[int]]:
    """Index batches. Bucketing sorts by length within windows of 50 batches, then shuffles
    the batches, so a batch holds texts of similar length yet the order stays random."""
    idx = list(order) if order is not None else list(range(len(lengths)))
    if shuffle:
        idx = [idx[i] for i in torch.randperm(len(idx), generator=generator).tolist()]
    if drop_last:
        idx = idx[: len(idx) - len(idx) % batch_size]
    if bucket:
        window = batch_size * 50
        idx = [i for w in range(0, len(idx), window)
               for i in sorted(idx[w:w + window], key=lambda j: lengths[j])]
    batches = [idx[b:b + batch_size] for b in range(0, len(idx), batch_size)]
    if shuffle and bucket:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def device_for(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def physical_cores() -> int:
    """Cores this process may use, counting hyper-threads once (matrix products gain nothing
    from a core's second thread and lose time to contention)."""
    import os

    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    logical = len(allowed) if allowed else (os.cpu_count() or 1)
    try:
        cores = count_cores(Path("/proc/cpuinfo").read_text(), allowed)
    except (OSError, ValueError):
        return logical
    return max(1, min(cores, logical)) if cores else logical


def count_cores(cpuinfo: str, allowed: set[int] | None = None) -> int:
    """Distinct (physical id, core id) pairs among the allowed processors of /proc/cpuinfo."""
    cores: set[tuple[str, str]] = set()
    cpu, phys = -1, "0"
    for line in cpuinfo.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "processor":
            cpu, phys = int(value), "0"
        elif key == "physical id":
            phys = value
        elif key == "core id" and (allowed is None or cpu in allowed):
            cores.add((phys, value))
    return len(cores)


def configure_threads() -> int:
    """torch's CPU threads = physical cores, unless OMP_NUM_THREADS or GPTCLS_THREADS says."""
    import os

    wanted = os.environ.get("GPTCLS_THREADS") or os.environ.get("OMP_NUM_THREADS")
    n = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else physical_cores()
    torch.set_num_threads(n)
    return n


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on CUDA always; on CPU only when asked (fp32 is the exact, tested path).
    Matrix products run in bf16, norms and the residual stream stay fp32."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def build_store(model: ClassifierModel, ids: list[list[int]], labels: Sequence[int],
                cache: bool, device: torch.device, batch_tokens: int = 4096,
                desc: str = "trunk", precision: str = "fp32",
                cache_dir: str | Path | None = None) -> Store:
    """Token ids -> Store; with `cache`, runs the frozen trunk once per distinct text (real
    tokens only): duplicates share one activation tensor. With `cache_dir`, activations are
    read from / written to a file named by a fingerprint of weights, texts and precision."""
    y = torch.tensor(list(labels), dtype=torch.long)
    items = [torch.tensor(s, dtype=torch.long) for s in ids]
    if not cache:
        return Store(items, y, cached=False)
    first, owner = unique_sequences(ids)
    path = None
    if cache_dir is not None:
        key = trunk_fingerprint(model, [ids[i] for i in first], precision)
        path = Path(cache_dir) / f"trunk-{key}.safetensors"
        if path.is_file():
            distinct = _read_activations(path)
            return Store([distinct[j] for j in owner], y, cached=True)
    model.eval()
    out: dict[int, torch.Tensor] = {}
    bar = tqdm(total=len(first), desc=f"caching {desc}", unit="text", disable=None, leave=False)
    for chunk in length_batches([len(ids[i]) for i in first], batch_tokens, max_batch=512):
        x, lengths = pad_batch([items[first[j]] for j in chunk])
        with autocast(device, precision):
            h = model.trunk(x.to(device)).float()  # (B, T, C)
        for row, j in enumerate(chunk):
            out[j] = h[row, : lengths[row]].clone()
        bar.update(len(chunk))
    bar.close()
    distinct = [out[j] for j in range(len(first))]
    if path is not None:
        _write_activations(path, distinct)
    return Store([distinct[j] for j in owner], y, cached=True)


def trunk_fingerprint(model: ClassifierModel, ids: Sequence[Sequence[int]],
                      precision: str) -> str:
    """sha256 of what the trunk's output depends on: config, depth, precision, the texts'
    ids and the trunk weights (every 997th value of each tensor: cheap, and any real change
    of weights moves many of them)."""
    h = hashlib.sha256()
    bb = model.backbone
    h.update(json.dumps([bb.config.to_dict(), model.first_trainable, precision]).encode())
    for seq in ids:
        h.update(torch.tensor(list(seq), dtype=torch.int64).numpy().tobytes())
        h.update(b"|")
    modules = [bb.tok_emb, *list(bb.blocks)[: model.first_trainable]]
    modules += [m for m in (getattr(bb, "pos_emb", None),) if m is not None]
    for module in modules:
        for name, t in module.state_dict().items():
            h.update(f"{name}{tuple(t.shape)}".encode())
            h.update(t.detach().flatten()[::997].float().cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def _write_activations(path: Path, items: list[torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"flat": torch.cat(items), "lengths": torch.tensor([len(x) for x in items])},
              str(tmp))
    tmp.replace(path)  # atomic: a killed run never leaves a half-written cache behind


def _read_activations(path: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    d = load_file(str(path))
    return list(torch.split(d["flat"], d["lengths"].tolist()))


def unique_sequences(ids: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """(index of each distinct sequence's first occurrence, distinct-number of every sequence).
    SMS data repeats texts (5,171 distinct of 5,574): each runs once."""
    seen: dict[tuple[int, ...], int] = {}
    first, owner = [], []
    for i, seq in enumerate(ids):
        key = tuple(seq)
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        owner.append(seen[key])
    return first, owner


def cache_size_mb(ids: list[list[int]], emb_dim: int) -> float:
    return sum(len(s) for s in ids) * emb_dim * 4 / 2**20


def logits_for(model: ClassifierModel, store: Store, idx: Sequence[int],
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, lengths, y = store.batch(idx, device)
    with autocast(device):
        logits = model.top(x, lengths) if store.cached else model(x, lengths)
    return logits.float(), y


@torch.inference_mode()
def evaluate(model: ClassifierModel, store: Store, batches: list[list[int]],
             device: torch.device, class_weights: torch.Tensor | None = None
             ) -> dict[str, float | torch.Tensor]:
    """Mean loss, accuracy and per-example probabilities (in store order) over `batches`."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    probs = torch.full((len(store), model.head.out_features), float("nan"))
    for idx in batches:
        logits, y = logits_for(model, store, idx, device)
        total_loss += F.cross_entropy(logits, y, weight=class_weights, reduction="sum").item()
        correct += int((logits.argmax(-1) == y).sum())
        count += len(idx)
        probs[idx] = torch.softmax(logits, -1).cpu()
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1),
            "probs": probs}


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
            self.state = {k: p.detach().clone() for k, p in model.named_parameters()
                          if p.requires_grad}
        return self.patience is not None and epoch - self.best_epoch >= self.patience

    def restore(self, model: ClassifierModel) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in self.state.items():
                params[k].copy_(v)


def train(model: ClassifierModel, train_store: Store, val_store: Store, cfg: TrainConfig,
          device: torch.device, log: Callable[[str], None] | None = None) -> dict[str, list]:
    """The chapter's `train_classifier_simple`, on length-bucketed batches of a Store."""
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    weights = torch.tensor(cfg.class_weights, device=device) if cfg.class_weights else None
    hist: dict[str, list] = {k: [] for k in ("train_losses", "val_losses", "examples_seen_at_eval",
                                             "train_accs", "val_accs", "epoch_seconds")}
    steps_per_epoch = len(train_store) // cfg.batch_size
    sched = make_scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    stopper = EarlyStopping(cfg.early_stopping, cfg.patience) if cfg.early_stopping else None
    val_batches = make_batches(val_store.lengths, cfg.batch_size, bucket=cfg.bucket,
                               order=range(min(len(val_store), cfg.eval_iter * cfg.batch_size)))
    examples_seen, step = 0, -1
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="training", unit="step", disable=None)
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        for idx in make_batches(train_store.lengths, cfg.batch_size, True, gen, True, cfg.bucket):
            model.train()
            logits, y = logits_for(model, train_store, idx, device)
            loss = F.cross_entropy(logits, y, weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            examples_seen += len(idx)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.eval_freq == 0:
                tr = evaluate(model, train_store, _sample(train_store, cfg, gen), device, weights)
                va = evaluate(model, val_store, val_batches, device, weights)
                hist["train_losses"].append(tr["loss"])
                hist["val_losses"].append(va["loss"])
                hist["examples_seen_at_eval"].append(examples_seen)
                log(f"Ep {epoch + 1} (Step {step:06d}): "
                    f"Train loss {tr['loss']:.3f}, Val loss {va['loss']:.3f}")
        tr_acc = evaluate(model, train_store, _sample(train_store, cfg, gen), device)["accuracy"]
        va_acc = evaluate(model, val_store, val_batches, device)["accuracy"]
        hist["train_accs"].append(tr_acc)
        hist["val_accs"].append(va_acc)
        hist["epoch_seconds"].append(time.perf_counter() - t0)
        log(f"Training accuracy: {tr_acc * 100:.2f}% | Validation accuracy: {va_acc * 100:.2f}%")
        if stopper and _early_stop_epoch(model, val_store, device, weights, stopper, epoch,
                                         hist, log):
            break
    bar.close()
    if stopper:
        stopper.restore(model)
        hist["best_epoch"] = [stopper.best_epoch]
        log(f"restored the weights of epoch {stopper.best_epoch} (best {stopper.metric})")
    hist["examples_seen"] = [examples_seen]
    hist["steps"] = [step + 1]
    return hist


def _early_stop_epoch(model: ClassifierModel, val_store: Store, device: torch.device,
                      weights: torch.Tensor | None, stopper: EarlyStopping, epoch: int,
                      hist: dict[str, list], log: Callable[[str], None]) -> bool:
    """Evaluate all of validation, update the stopper; True when patience ran out."""
    va = evaluate(model, val_store, full_batches(val_store), device, weights)
    va["macro_f1"] = macro_f1(val_store.labels, va["probs"].argmax(-1), va["probs"].shape[1])
    hist.setdefault("val_full_losses", []).append(va["loss"])
    hist.setdefault("val_macro_f1", []).append(va["macro_f1"])
    stop = stopper.update(model, epoch + 1, va)
    if stop:
        log(f"early stopping after epoch {epoch + 1}: no better {stopper.metric} for "
            f"{stopper.patience} epoch(s)")
    return stop


def macro_f1(y: torch.Tensor, pred: torch.Tensor, n_classes: int) -> float:
    """Unweighted mean of per-class F1 (a class absent from both y and pred scores 0)."""
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (y == c)).sum())
        denom = int((pred == c).sum()) + int((y == c).sum())
        f1s.append(2 * tp / denom if denom else 0.0)
    return sum(f1s) / n_classes


def _sample(store: Store, cfg: TrainConfig, gen: torch.Generator) -> list[list[int]]:
    """`eval_iter` random batches, like the first batches of the chapter's shuffled loader."""
    n = min(len(store), cfg.eval_iter * cfg.batch_size)
    order = torch.randperm(len(store), generator=gen)[:n].tolist()
    return make_batches(store.lengths, cfg.batch_size, bucket=cfg.bucket, order=order)


def length_batches(lengths: Sequence[int], batch_tokens: int = 4096, max_batch: int = 64
                   ) -> list[list[int]]:
    """Every index once, sorted by length, in batches whose padded size (count x longest)
    stays within `batch_tokens`: big matrix products, almost no padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and ((len(cur) + 1) * lengths[i] > batch_tokens or len(cur) == max_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + ([cur] if cur else [])


def full_batches(store: Store, batch_tokens: int = 4096, max_batch: int = 64) -> list[list[int]]:
    """All examples of a store in length-sorted batches (evaluation)."""
    return length_batches(store.lengths, batch_tokens, max_batch)
