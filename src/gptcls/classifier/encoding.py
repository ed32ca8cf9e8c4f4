"""Texts -> token ids fitted to the model's length; ids -> length-grouped, padded batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gptcls.errors import GptclsError
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.options import TRUNCATIONS, parse_context

# The default max_length (--context longest, no --max-length). When every training text fits
# LENGTH_CAP tokens the longest one is max_length: nothing is cut, and it costs nothing, since
# batches are grouped by length and only real tokens are cached (so the chapter's SMS run keeps
# its 120 tokens, GPT-2's tokenizer). Beyond the cap a few long texts would dominate the work
# (their tokens, their quadratic attention, the padding of the batches they share, and every
# batch of the book's `last-position` runs, padded to max_length), so the default covers
# LENGTH_COVERAGE of the training texts (rounded up to LENGTH_MULTIPLE tokens, friendlier to
# matrix kernels), at most the cap, and cuts the rest; --max-length N chooses otherwise.
LENGTH_CAP = 512
LENGTH_COVERAGE = 0.98
LENGTH_MULTIPLE = 16


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


@dataclass(frozen=True)
class LengthChoice:
    """A run's max_length and why: `rule` is longest, coverage, max-length or context."""

    max_length: int
    rule: str
    texts: int  # training texts
    longer: int  # training texts longer than max_length: cut to it

    def message(self, truncate: str = "head", longer_elsewhere: int = 0) -> str:
        """One line saying what the run does with long texts, and how to change it."""
        n, covered = self.texts, (self.texts - self.longer) / max(self.texts, 1)
        why = {"longest": f"the longest of the {n:,} training texts",
               "coverage": f"covers {covered:.1%} of the {n:,} training texts",
               "max-length": "--max-length", "context": "--context"}[self.rule]
        if self.rule == "longest" and self.longer:
            why = f"the model's context; covers {covered:.1%} of the {n:,} training texts"
        if not (self.longer or longer_elsewhere):
            return f"max_length {self.max_length} ({why}; no text cut)"
        cut = [f"{k:,} {what}" + "s" * (k > 1) for k, what in (
            (self.longer, "longer training text"), (longer_elsewhere, "validation/test text")) if k]
        kept = "first" if truncate == "head" else "last"
        return (f"max_length {self.max_length} ({why}; {' and '.join(cut)} cut to their {kept} "
                f"{self.max_length} tokens; --max-length N to change, --long-text chunk in "
                "classify/evaluate/predict reads whole texts)")


def choose_max_length(lengths: Sequence[int], context_length: int,
                      max_length: int | None = None, context: str | int = "longest",
                      cap: int = LENGTH_CAP, coverage: float = LENGTH_COVERAGE) -> LengthChoice:
    """The tokens per text of a run from its training texts' token `lengths`: the longest
    text while it fits `cap`, else the length covering `coverage` of them (see LENGTH_CAP);
    --max-length caps the longest instead; --context model / N set it; the model's context
    caps them all."""
    limit = min(max_length or context_length, context_length)
    longest = max(lengths)
    if context == "model":
        n, rule = limit, "context"
    elif context != "longest":
        n, rule = min(parse_context(context), limit), "context"
    elif max_length is not None or longest <= cap:
        n = min(longest, limit)
        rule = "max-length" if max_length is not None and longest > max_length else "longest"
    else:
        covering = sorted(lengths)[max(0, math.ceil(coverage * len(lengths)) - 1)]
        n, rule = min(-(-covering // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, cap, limit), "coverage"
    return LengthChoice(n, rule, len(lengths), sum(length > n for length in lengths))


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


def length_batches(lengths: Sequence[int], batch_tokens: int = 4096, max_batch: int = 64,
                   max_padding: float = 0.05) -> list[list[int]]:
    """Every index once, sorted by length, in batches whose padded size (count x longest)
    stays within `batch_tokens`: big matrix products, little padding. A batch also closes
    when the next text would make more than `max_padding` of it padding, once it holds an
    eighth of the budget: short texts spread over many lengths otherwise share batches of up
    to `max_batch` texts padded to the longest (20% padding on the SMS splits), while a batch
    of 512 token rows still multiplies at full speed."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches, cur, real = [], [], 0
    for i in order:
        n, size = lengths[i], (len(cur) + 1) * lengths[i]
        full = size > batch_tokens or len(cur) == max_batch
        ragged = (len(cur) * lengths[cur[-1]] >= batch_tokens // 8 if cur else False) and \
            real + n < (1 - max_padding) * size
        if cur and (full or ragged):
            batches.append(cur)
            cur, real = [], 0
        cur.append(i)
        real += n
    return batches + ([cur] if cur else [])


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of a pass's positions (count x longest per right-padded batch) that are
    padding: work the attention and matrix products spend on nothing."""
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / total if total else 0.0
