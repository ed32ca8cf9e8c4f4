"""From a data source to train/validation/test splits: the one place that decides how.

Single file: read (any format, see tabular.py), check, balance, split (the chapter's random
split for two balanced classes; stratified otherwise), warn about leakage, write the CSVs.
Or separate --train/--validation/--test files, used as they are.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gptcls.data.labelled import _rows, read_labelled
from gptcls.data.sms import (
    SPLIT_NAMES,
    Example,
    _check_fractions,
    balance_undersample,
    fetch_sms_spam,
    label_mapping,
    random_split,
    write_split_csv,
)
from gptcls.errors import GptclsError

BALANCE_MODES = ("undersample", "none", "weighted")


@dataclass
class DataOptions:
    """How to get labelled examples and split them. No path: the SMS Spam Collection."""

    data: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    format: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    encoding: str = "utf-8"
    strict: bool = False
    normalize_labels: bool = True
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_seed: int = 123
    balance: str = "undersample"
    cache: str | None = None


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[str]
    class_weights: list[float] | None = None
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> list[Example]:
        return getattr(self, name)


def load_splits(opts: DataOptions, out_dir: Path, log: Callable[[str], None] = print) -> Splits:
    """Read, check, balance and split the data; write train/validation/test.csv into out_dir."""
    if opts.balance not in BALANCE_MODES:
        raise GptclsError(f"unknown --balance {opts.balance!r}; use one of {BALANCE_MODES}")
    given = [opts.train, opts.validation, opts.test]
    if any(given):
        if not all(given) or opts.data:
            raise GptclsError("give all three of --train, --validation and --test (and no --data)"
                              ", or one --data file to split")
        parts = [_read(p, opts, log) for p in given]
        check_trainable(parts[0])
        labels = label_mapping([e for p in parts for e in p])
        train, validation, test = parts
    else:
        path = opts.data or fetch_sms_spam(opts.cache)
        examples = _read(path, opts, log)
        check_trainable(examples)
        labels = label_mapping(examples)
        if opts.balance == "undersample":
            before = len(examples)
            examples = balance_undersample(examples, opts.split_seed)
            log(f"balanced by undersampling: {len(examples):,} of {before:,} rows kept")
        # Two balanced classes: the chapter's random split. Otherwise keep each class's share.
        stratify = len(labels) > 2 or opts.balance != "undersample"
        split = stratified_split if stratify else random_split
        train, validation, test = split(examples, opts.split, opts.split_seed)
    for line in leakage_warnings(train, validation, test):
        log(f"warning: {line}")
    weights = class_weights(train, labels) if opts.balance == "weighted" else None
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in zip(SPLIT_NAMES, (train, validation, test), strict=True):
        if not part:
            raise GptclsError(f"the {name} split is empty; use more data or other --split")
        write_split_csv(out_dir / f"{name}.csv", part, labels)
    return Splits(train, validation, test, labels, weights)


def _read(path: str | Path, opts: DataOptions, log: Callable[[str], None]) -> list[Example]:
    examples, report = read_labelled(path, opts.format, opts.text_column, opts.label_column,
                                     opts.encoding, opts.normalize_labels, opts.strict)
    for line in report.lines():
        log(line)
    return examples


def check_trainable(examples: Sequence[Example]) -> None:
    """Raise GptclsError unless the examples can train a classifier (>= 2 classes, real text)."""
    if not examples:
        raise GptclsError("no examples to train on")
    if all(not ex.text.strip() for ex in examples):
        raise GptclsError("all texts are empty; is --text-column the right column?")
    unlabelled = sum(1 for ex in examples if ex.label == "")
    if unlabelled:
        raise GptclsError(f"{_rows(unlabelled)} without a label; training needs a label on each")
    classes = sorted({ex.label for ex in examples})
    if len(classes) < 2:
        raise GptclsError(f"only one class ({classes[0]!r}) in the data; a classifier needs "
                          "at least 2 (is --label-column the right column?)")


def parse_fractions(spec: str) -> tuple[float, float, float]:
    """Parse "0.7,0.1,0.2" into (train, validation, test) fractions: 3 positive, summing to 1."""
    values = []
    for part in (p.strip() for p in spec.split(",")):
        try:
            values.append(float(part))
        except ValueError:
            raise GptclsError(f"bad split fractions {spec!r}: {part!r} is not a number "
                              "(use e.g. 0.7,0.1,0.2)") from None
    _check_fractions(values)
    return values[0], values[1], values[2]


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
    _check_fractions(fractions)
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


