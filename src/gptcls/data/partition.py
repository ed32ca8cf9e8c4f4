"""How examples are balanced, weighted and cut into train/validation/test (pure functions)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

from gptcls.data.examples import SPLIT_NAMES, Example, label_mapping
from gptcls.errors import GptclsError
from gptcls.schema import check_fractions

# What --balance auto does with data other than the SMS Spam Collection. Undersampling throws
# away most rows of real imbalanced data (516 of TREC's 5,444). none against weighted, chosen
# on validation (bench/quality.py --balance, SmolLM2, seed 123): SMS natural accuracy 99.64%
# vs 99.46%, macro-F1 0.992 vs 0.988; TREC fine 85.9% vs 81.3%, macro-F1 0.794 vs 0.761.
USER_DATA_BALANCE = "none"


def resolved_balance(balance: str, formats: Sequence[str], given_splits: bool) -> str:
    """--balance with auto resolved: undersampling for one SMS Spam Collection file (the
    chapter's job), USER_DATA_BALANCE for everything else (three split files are never
    undersampled)."""
    if balance != "auto":
        return balance
    chapter = not given_splits and bool(formats) and all(f == "sms" for f in formats)
    return "undersample" if chapter else USER_DATA_BALANCE


def balance_undersample(examples: Sequence[Example], seed: int = 123) -> list[Example]:
    """Undersample every class to the size of the smallest one, the way the chapter does.

    The chapter draws `df[ham].sample(n_spam, random_state=seed)` and appends all spam; pandas
    draws with numpy's RandomState(seed).choice(n, k, replace=False), and so do we, one
    RandomState for the classes in sorted order. Drawn rows keep their drawn order.
    """
    by_label: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(i)
    if not by_label:
        return []
    n = min(len(idx) for idx in by_label.values())
    rng = np.random.RandomState(seed)
    keep: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        keep.extend(idx if len(idx) == n else [idx[j] for j in rng.choice(len(idx), n, False)])
    return [examples[i] for i in keep]


def random_split(
    examples: Sequence[Example],
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 123,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Seeded shuffle, then train/validation/test cut the way the book does it.

    The shuffle is pandas' `df.sample(frac=1, random_state=seed)`: RandomState(seed)'s
    permutation. train_end = int(n * f_train), val_end = train_end + int(n * f_val); test gets
    the rest, so rounding losses land in the test split.
    """
    check_fractions(fractions)
    order = np.random.RandomState(seed).permutation(len(examples))
    shuffled = [examples[i] for i in order]
    train_end = int(len(shuffled) * fractions[0])
    val_end = train_end + int(len(shuffled) * fractions[1])
    return shuffled[:train_end], shuffled[train_end:val_end], shuffled[val_end:]


def stratified_split(
    examples: Sequence[Example],
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 123,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Split each class by `fractions` after a seeded shuffle, so every split keeps the mix.

    Cuts are the book's (train int(n*f), validation int(n*f), test the rest), except that a
    class with >= 3 examples always puts at least one in validation and one in test: without
    that, a rare class would silently be missing from the metrics.
    """
    check_fractions(fractions)
    by_label: dict[str, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    rng = random.Random(seed)
    splits: tuple[list[Example], list[Example], list[Example]] = ([], [], [])
    # Sorted labels: the result must not depend on which class happens to come first.
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        n = len(items)
        n_train, n_val = int(n * fractions[0]), int(n * fractions[1])
        if n >= 3:
            n_val = max(n_val, 1)
            n_train = min(n_train, n - n_val - 1)
        splits[0].extend(items[:n_train])
        splits[1].extend(items[n_train:n_train + n_val])
        splits[2].extend(items[n_train + n_val:])
    # Interleave the classes: a split in class blocks would bias anything reading it in order.
    for split in splits:
        rng.shuffle(split)
    return splits


def leakage_warnings(
    train: Sequence[Example], validation: Sequence[Example], test: Sequence[Example]
) -> list[str]:
    """One line per pair of splits that share texts (exact match), e.g. test texts in train."""
    rows = dict(zip(SPLIT_NAMES, (train, validation, test), strict=True))
    texts = {name: {ex.text for ex in split} for name, split in rows.items()}
    out = []
    for later, earlier in (("test", "train"), ("validation", "train"), ("test", "validation")):
        shared = texts[later] & texts[earlier]
        if shared:
            n_rows = sum(1 for ex in rows[later] if ex.text in shared)
            out.append(f"{len(shared):,} texts of {later} ({n_rows:,} rows) also appear in "
                       f"{earlier}; {later} scores on them measure memory, not generalisation")
    return out


def class_weights(examples: Sequence[Example], labels: Sequence[str]) -> list[float]:
    """Inverse class frequency in `labels` order, scaled so the mean weight is 1."""
    label_mapping(examples, order=labels)  # raises on labels outside `labels`
    counts = Counter(ex.label for ex in examples)
    empty = [name for name in labels if counts[name] == 0]
    if empty:
        raise GptclsError(f"class(es) {empty} have no training examples; cannot weight them")
    inverse = [1.0 / counts[name] for name in labels]
    mean = sum(inverse) / len(inverse)
    return [w / mean for w in inverse]
