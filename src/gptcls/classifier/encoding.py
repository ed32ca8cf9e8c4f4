"""Texts -> token ids fitted to the model's length; ids -> length-grouped, padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gptcls.errors import GptclsError
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.options import TRUNCATIONS


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int,
                 pooling: str = "last", truncate: str = "head") -> list[list[int]]:
    """Token ids of texts, fitted to max_length by `fit_ids`."""
    return fit_ids(tokenizer.encode_batch(list(texts)), max_length, tokenizer.pad_id, pooling,
                   truncate)


def fit_ids(seqs: Sequence[list[int]], max_length: int, pad_id: int, pooling: str = "last",
            truncate: str = "head") -> list[list[int]]:
    """Truncate token ids to max_length, keeping the start (head, as the book does) or the end.

    For `last-position` pooling every text is padded to max_length with the pad token, which
    reproduces the book's fixed-length batches: its pooled position is the last one.
    """
    if truncate not in TRUNCATIONS:
        raise GptclsError(f"unknown truncation {truncate!r}; use head or tail")
    ids = [seq[:max_length] if truncate == "head" else seq[-max_length:] for seq in seqs]
    for i, seq in enumerate(ids):
        if not seq:
            raise GptclsError(f"text {i + 1} is empty after tokenization; nothing to classify")
    if pooling == "last-position":
        ids = [seq + [pad_id] * (max_length - len(seq)) for seq in ids]
    return ids


def pad_batch(seqs: Sequence[torch.Tensor], pad_value: float | int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (T_i, ...) tensors to (B, T_max, ...); also return (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = seqs[0].new_full((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), pad_value)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


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


def windows(seq: list[int], size: int) -> list[list[int]]:
    """Half-overlapping windows of `size` tokens covering `seq`; the last one ends at its end."""
    if len(seq) <= size:
        return [seq]
    stride = max(1, size // 2)
    starts = list(range(0, len(seq) - size, stride)) + [len(seq) - size]
    return [seq[s:s + size] for s in starts]
