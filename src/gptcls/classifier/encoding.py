"""Texts -> token ids fitted to the model's length, and ids -> padded batches."""

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
