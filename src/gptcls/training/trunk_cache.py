"""Per-example model inputs: token ids or cached frozen-trunk activations (the trunk cache).

The trunk (every layer below the first trainable block) is frozen, so its output for a text
never changes during training: `build_store` computes it once per distinct text, keeping only
real tokens, optionally on disk across runs. Batches are grouped by length and right-padded,
so almost no compute goes to padding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gptcls.classifier.encoding import length_batches, pad_batch, unique_sequences
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.twin import trunk_twin
from gptcls.device import autocast
from gptcls.distributed import Dist, gather_dict
from gptcls.files import save_safetensors
from gptcls.progress import progress


@dataclass
class Store:
    """Model inputs of one split: `items[i]` is (T_i,) ids or (T_i, C) trunk activations.
    With `groups` (--long-text chunk) items are windows of texts: `groups[i]` is item i's text,
    `labels` are the texts' and evaluation scores texts (training/long_text.py)."""

    items: list[torch.Tensor]
    labels: torch.Tensor  # (N,) or (N, K): one per text
    cached: bool
    lengths: list[int] = field(init=False)
    groups: list[int] | None = None  # the text of each item; None: item i is text i

    def __post_init__(self) -> None:
        self.lengths = [len(x) for x in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, idx: Sequence[int], device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, lengths = pad_batch([self.items[i] for i in idx])
        return x.to(device), lengths.to(device), self.item_labels(idx).to(device)

    def item_labels(self, idx: Sequence[int]) -> torch.Tensor:
        """The labels of items `idx` (their texts' labels)."""
        texts = list(idx) if self.groups is None else [self.groups[i] for i in idx]
        return self.labels[texts]


@torch.inference_mode()
def build_store(model: ClassifierModel, ids: list[list[int]], labels: Sequence[int],
                cache: bool, device: torch.device, batch_tokens: int = 4096,
                desc: str = "trunk", precision: str = "fp32",
                cache_dir: str | Path | None = None, dist: Dist | None = None) -> Store:
    """Token ids -> Store; with `cache`, runs the frozen trunk once per distinct text (real
    tokens only): duplicates share one activation tensor. With `cache_dir`, activations are
    read from / written to a file named by a fingerprint of weights, texts and precision.
    With several processes (`dist`), each computes every world-th text and all gather."""
    dist = dist or Dist()
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
    # int8 / bf16: a twin whose frozen blocks are quantized / hold bf16 weights; the trainable
    # ones stay fp32 and shared.
    trunk = trunk_twin(model, precision)
    out: dict[int, torch.Tensor] = {}
    mine = list(range(dist.rank, len(first), dist.world))
    sizes = [len(ids[first[j]]) for j in mine]
    # Counted in tokens: the texts run shortest first, so a count of texts would promise an
    # ETA that the long ones at the end break.
    bar = progress(sum(sizes), f"trunk pass ({desc})", "tokens", enabled=dist.main)
    for chunk in length_batches(sizes, batch_tokens, max_batch=512):
        x, lengths = pad_batch([items[first[mine[c]]] for c in chunk])
        with autocast(device, precision):
            h = trunk.trunk(x.to(device), lengths.to(device)).float()  # (B, T, C)
        for row, c in enumerate(chunk):
            out[mine[c]] = h[row, : lengths[row]].clone()
        bar.update(sum(sizes[c] for c in chunk))
    bar.close()
    out = gather_dict(out, dist)
    distinct = [out[j] for j in range(len(first))]
    if path is not None and dist.main:
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
    # Atomic: a killed run never leaves a half-written trunk cache file behind.
    save_safetensors(path, {"flat": torch.cat(items),
                            "lengths": torch.tensor([len(x) for x in items])})


def _read_activations(path: Path) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    d = load_file(str(path))
    return list(torch.split(d["flat"], d["lengths"].tolist()))


def cache_size_mb(ids: list[list[int]], emb_dim: int) -> float:
    return sum(len(s) for s in ids) * emb_dim * 4 / 2**20


def full_batches(store: Store, batch_tokens: int = 4096, max_batch: int = 64) -> list[list[int]]:
    """All examples of a store in length-sorted batches (evaluation)."""
    return length_batches(store.lengths, batch_tokens, max_batch)
