"""Long texts read whole (`--long-text chunk`): half-overlapping windows of max_length tokens,
and one prediction per text from its windows' probabilities.

One definition for every path that meets a long text: training (each window of a training text
is an example with the text's label; validation and test are scored per text, training/
long_text.py), `Classifier.predict_proba`, `predict`, `evaluate` and the server.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHUNK_REDUCTIONS = ("mean", "max")


def windows(seq: list[int], size: int) -> list[list[int]]:
    """Half-overlapping windows of `size` tokens covering `seq`; the last one ends at its end."""
    if len(seq) <= size:
        return [seq]
    stride = max(1, size // 2)
    starts = list(range(0, len(seq) - size, stride)) + [len(seq) - size]
    return [seq[s:s + size] for s in starts]


def split_windows(seqs: Sequence[list[int]], size: int) -> tuple[list[list[int]], list[int]]:
    """Every text's windows, text after text, and the text (index in `seqs`) of each window."""
    chunks: list[list[int]] = []
    owner: list[int] = []
    for i, seq in enumerate(seqs):
        parts = windows(seq, size)
        chunks += parts
        owner += [i] * len(parts)
    return chunks, owner


def reduce_windows(probs: np.ndarray, owner: Sequence[int], n_texts: int,
                   how: str = "mean", multi_label: bool = False) -> np.ndarray:
    """(n_texts, K) probabilities from (n_windows, K) ones: per text the mean of its windows'
    rows, or ("max") each class's largest, renormalised to sum to 1 unless multi-label. Rows
    that are NaN (windows not scored) are left out; a text with none scored stays NaN."""
    probs = np.asarray(probs, dtype=np.float64)
    index = np.asarray(owner, dtype=np.int64)
    scored = ~np.isnan(probs).any(1)
    probs, index = probs[scored], index[scored]
    counts = np.bincount(index, minlength=n_texts)[:, None]
    out = np.zeros((n_texts, probs.shape[1]))
    if how == "mean":
        np.add.at(out, index, probs)
        out = out / np.maximum(counts, 1)
    else:
        np.maximum.at(out, index, probs)
        if not multi_label:
            out = out / np.maximum(out.sum(1, keepdims=True), 1e-30)
    out[counts[:, 0] == 0] = np.nan
    return out.astype(np.float32)


def whole_texts(owner: Sequence[int], n: int) -> int:
    """The number of leading windows that holds the first `n` windows' texts completely (the
    running validation estimate scores whole texts)."""
    n = min(n, len(owner))
    while 0 < n < len(owner) and owner[n] == owner[n - 1]:
        n += 1
    return n
