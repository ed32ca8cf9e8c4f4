"""The in-memory trunk cache: frozen-trunk activations kept for the life of the process, per text,
across trainings (the scikit-learn estimator's folds and parameter settings).

`build_store` caches one run's activations (and, with a trunk cache folder, one run's whole set
on disk). Cross-validation and grid searches train many models on overlapping texts with the
same frozen trunk: here each text's activations are kept under (trunk fingerprint, token ids),
so a text already seen by any earlier training with that trunk is never run again. The trunk
fingerprint (`trunk_fingerprint` with no texts) covers the backbone's config and weights, the
trunk depth and the precision; the token ids already encode the tokenizer, max_length,
truncation and pooling padding.

Memory: each entry is its text's real tokens x the model's width x 4 bytes (fp32), e.g. about
64 KB for a 28-token SMS on SmolLM2 (width 576). Least recently used entries go once the total
passes the limit the caller gives (its `max_cache_mb` option); `clear()` empties it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from gptcls.classifier.model import ClassifierModel
from gptcls.training.trunk_cache import Store, build_store

Key = tuple[str, tuple[int, ...]]  # (trunk fingerprint, token ids)


class TrunkMemo:
    """Activations per (trunk fingerprint, token ids), least recently used evicted first."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Key, torch.Tensor] = OrderedDict()  # (T_i, C) each
        self._bytes = 0
        self._lock = threading.Lock()  # a threading joblib backend may fit in parallel
        self.computed = 0  # distinct texts run through a trunk
        self.reused = 0  # distinct texts found here instead
        self.shared_mb = 0.0  # > 0 within `sharing`: run_training's stores come from here too

    @contextmanager
    def sharing(self, limit_mb: float) -> Iterator[None]:
        """Within it, `run_training` (the CLI's pipeline) takes its cached splits from this memo
        too, so in-process trainings over overlapping texts (bench/recipe_cv.py's folds and
        recipes) run the trunk once per text instead of once per split. Emptied on exit."""
        self.shared_mb = limit_mb
        try:
            yield
        finally:
            self.shared_mb = 0.0
            self.clear()

    def store(self, model: ClassifierModel, trunk_key: str, ids: Sequence[Sequence[int]],
              labels: Sequence[int], device: torch.device, precision: str,
              limit_mb: float, cache_dir: str | Path | None = None) -> Store:
        """A cached Store of `ids`: the trunk runs only on texts not seen with `trunk_key`
        before (`trunk_key` must be `trunk_fingerprint(model, [], precision)`)."""
        keys: list[Key] = [(trunk_key, tuple(s)) for s in ids]
        with self._lock:
            missing = [k for k in dict.fromkeys(keys) if k not in self._entries]
            self.reused += len(set(keys)) - len(missing)
            self.computed += len(missing)
            new: dict[Key, torch.Tensor] = {}
            if missing:
                computed = build_store(model, [list(k[1]) for k in missing], [0] * len(missing),
                                       True, device, desc="new texts", precision=precision,
                                       cache_dir=cache_dir)
                new = dict(zip(missing, computed.items, strict=True))
            # Taken before eviction: this store keeps its tensors even when they leave the memo.
            items = [new[k] if k in new else self._entries[k] for k in keys]
            for k in dict.fromkeys(keys):
                self._put(k, new[k] if k in new else self._entries[k])
            self._evict(limit_mb)
        return Store(items, torch.tensor(list(labels), dtype=torch.long), cached=True)

    def _put(self, key: Key, value: torch.Tensor) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._entries[key] = value  # most recently used last
        self._bytes += value.nbytes

    def _evict(self, limit_mb: float) -> None:
        while self._entries and self._bytes > limit_mb * 2**20:
            _, value = self._entries.popitem(last=False)
            self._bytes -= value.nbytes

    def clear(self) -> None:
        """Drop every kept activation (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> dict[str, float]:
        """texts kept, their MB, and the distinct texts computed / reused so far."""
        return {"texts": len(self._entries), "mb": self._bytes / 2**20,
                "computed": self.computed, "reused": self.reused}


MEMO = TrunkMemo()  # the process's one in-memory trunk cache
