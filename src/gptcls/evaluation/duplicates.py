"""Duplicates in labelled data: exact, near, the same text with different labels, and texts
shared across splits.

Three keys per text, from strict to loose:
- exact: Unicode NFKC, whitespace runs collapsed, stripped ("same normalised text");
- loose: case-folded, with every character that is not a letter dropped (punctuation,
  whitespace, digits: "Call 0800 123!" and "call 0900 456" share it);
- MinHash of character 3-grams: texts whose 3-gram Jaccard similarity is at least
  NEAR_JACCARD (0.9) are found by locality-sensitive hashing (BANDS bands of ROWS hashes) and
  then checked exactly, so the pass is linear in the number of texts, not quadratic.
Near-duplicate groups join texts (exact groups) linked by the loose key or by a checked MinHash
pair (union-find), so each group holds at least two different exact texts.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NEAR_JACCARD = 0.9
BANDS, ROWS = 8, 8  # 64 hashes; a pair at Jaccard 0.9 shares a band with probability 0.99
# A bucket this large (a template sent thousands of times) is checked as a star around its
# first member instead of every pair, so the pass stays near-linear.
PAIRWISE_MAX = 32
_PRIME = (1 << 61) - 1
_SPACE = re.compile(r"\s+")


def exact_key(text: str) -> str:
    """The normalised text: NFKC, whitespace runs as one space, stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def loose_key(text: str) -> str:
    """Case-folded letters only: punctuation, whitespace and digits dropped."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalpha())


def shingles(text: str, n: int = 3) -> set[int]:
    """crc32 of the character n-grams of the case-folded, whitespace-collapsed text (crc32, not
    hash(): stable across processes)."""
    s = _SPACE.sub(" ", text.casefold()).strip()
    if len(s) < n:
        return {zlib.crc32(s.encode())}
    return {zlib.crc32(s[i:i + n].encode()) for i in range(len(s) - n + 1)}


def minhash(sets: Sequence[set[int]], seed: int = 0) -> np.ndarray:
    """(N, BANDS * ROWS) MinHash signatures (universal hashes (a x + b) mod 2^61-1)."""
    rng = np.random.default_rng(seed)
    k = BANDS * ROWS
    a = rng.integers(1, 1 << 31, size=k, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=k, dtype=np.uint64)
    out = np.empty((len(sets), k), dtype=np.uint64)
    for i, s in enumerate(sets):
        x = np.fromiter(s, dtype=np.uint64, count=len(s))[:, None]  # (S, 1), values < 2^32
        out[i] = ((x * a + b) % _PRIME).min(axis=0)  # < 2^63: no uint64 overflow
    return out


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def similar_pairs(texts: Sequence[str], threshold: float = NEAR_JACCARD
                  ) -> list[tuple[int, int, float]]:
    """(i, j, Jaccard) for texts whose character 3-gram Jaccard is >= threshold, found by
    MinHash banding and checked exactly (a true pair is missed with probability ~1% at 0.9)."""
    sets = [shingles(t) for t in texts]
    if len(sets) < 2:
        return []
    sig = minhash(sets)  # (N, BANDS * ROWS)
    candidates: set[tuple[int, int]] = set()
    for band in range(BANDS):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        for i, row in enumerate(sig[:, band * ROWS:(band + 1) * ROWS]):
            buckets[row.tobytes()].append(i)
        for members in buckets.values():
            if len(members) <= PAIRWISE_MAX:
                candidates.update((m, n) for k, m in enumerate(members) for n in members[k + 1:])
            else:
                candidates.update((members[0], n) for n in members[1:])
    pairs = [(i, j, jaccard(sets[i], sets[j])) for i, j in sorted(candidates)]
    return [p for p in pairs if p[2] >= threshold]


@dataclass
class Duplicates:
    """Groups of row indices: exact (same normalised text), near (different normalised texts
    that are near-duplicates), conflicts (same normalised text, different labels)."""

    exact: list[list[int]]
    near: list[list[int]]
    conflicts: list[list[int]]


def find_duplicates(texts: Sequence[str], labels: Sequence[str]) -> Duplicates:
    """Duplicate groups among rows `texts` (with their `labels`), each sorted, largest first."""
    by_exact: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts):
        by_exact[exact_key(t)].append(i)
    keys = list(by_exact)  # one per distinct normalised text
    exact = [rows for rows in by_exact.values() if len(rows) > 1]
    conflicts = [rows for rows in exact if len({labels[i] for i in rows}) > 1]
    uf = _UnionFind(len(keys))
    by_loose: dict[str, int] = {}
    for k, key in enumerate(keys):
        loose = loose_key(key)
        if loose:  # a text of digits and punctuation only has no loose key to share
            uf.union(k, by_loose.setdefault(loose, k))
    for i, j, _ in similar_pairs(keys):
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for k in range(len(keys)):
        groups[uf.find(k)].append(k)
    near = [sorted(r for k in ks for r in by_exact[keys[k]]) for ks in groups.values()
            if len(ks) > 1]
    return Duplicates(_ordered(exact), _ordered(near), _ordered(conflicts))


def shared_across(splits: dict[str, Sequence[str]]) -> list[dict[str, list[int]]]:
    """Texts (by loose key, so near-identical texts count) found in more than one split:
    per shared text, {split: its row indices in that split}."""
    where: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for name, texts in splits.items():
        for i, t in enumerate(texts):
            where[loose_key(t) or exact_key(t)][name].append(i)
    shared = [{k: v for k, v in d.items()} for d in where.values() if len(d) > 1]
    return sorted(shared, key=lambda d: -sum(len(v) for v in d.values()))


def _ordered(groups: Iterable[list[int]]) -> list[list[int]]:
    return sorted((sorted(g) for g in groups), key=lambda g: (-len(g), g[0]))
