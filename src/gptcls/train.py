"""The training loop, evaluation and the frozen-trunk cache, as plain functions.

Data reaches the loop as a `Store`: per-example inputs that are either token ids (the model runs
whole) or cached trunk activations (only the trainable top runs). Batches are grouped by length
and right-padded, so almost no compute goes to padding.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gptcls.classifier import ClassifierModel, pad_batch


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


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU (fp32 is the exact, tested path)."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.inference_mode()
def build_store(model: ClassifierModel, ids: list[list[int]], labels: Sequence[int],
                cache: bool, device: torch.device, batch_tokens: int = 4096,
                desc: str = "trunk") -> Store:
    """Token ids -> Store; with `cache`, runs the frozen trunk once per text (real tokens only)."""
    y = torch.tensor(list(labels), dtype=torch.long)
    items = [torch.tensor(s, dtype=torch.long) for s in ids]
    if not cache:
        return Store(items, y, cached=False)
    model.eval()
    out: list[torch.Tensor] = [torch.empty(0)] * len(items)
    bar = tqdm(total=len(items), desc=f"caching {desc}", unit="text", disable=None, leave=False)
    for chunk in length_batches([len(s) for s in ids], batch_tokens, max_batch=512):
        x, lengths = pad_batch([items[i] for i in chunk])
        with autocast(device):
            h = model.trunk(x.to(device)).float()  # (B, T, C)
        for row, i in enumerate(chunk):
            out[i] = h[row, : lengths[row]].clone()
        bar.update(len(chunk))
    bar.close()
    return Store(out, y, cached=True)


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
    bar.close()
    hist["examples_seen"] = [examples_seen]
    hist["steps"] = [step + 1]
    return hist


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
