"""Labelled examples and their class names: the vocabulary every data module shares."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gptcls.errors import GptclsError
from gptcls.log import plural

PathLike = str | os.PathLike
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One labelled text. Frozen so examples can be hashed, counted and shared safely."""

    text: str
    label: str
    # Multi-label rows: the label set (sorted); `label` is then the set joined by "|", for
    # counts, leakage checks and the split files. None: a single-label row.
    labels: tuple[str, ...] | None = None


def label_mapping(examples: Iterable[Example], order: Sequence[str] | None = None) -> list[str]:
    """Class names in index order: `order` if given (checked), else sorted unique labels."""
    present = {ex.label for ex in examples}
    if order is None:
        return sorted(present)
    names = list(order)
    if len(set(names)) != len(names):
        raise GptclsError(f"duplicate class names in label order {names}")
    unknown = sorted(present - set(names))
    if unknown:
        raise GptclsError(f"labels {unknown} are not in the label order {names}")
    return names


def n_rows(n: int) -> str:
    """"1 row", "2,345 rows": counts in messages and reports."""
    return plural(n, "row")
