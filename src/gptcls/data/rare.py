"""Labels seen once or twice among many rows: probable typos (`spa"m` among 747 `spam`).

Policy (load_splits): such a label is dropped from training with a warning naming its rows and
the label it probably misspells; --keep-rare-labels keeps it, --strict stops instead. Kept, one
row would undersample every class to one row and leave the train split empty; and a class with
one or two rows can be neither learnt nor scored.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from gptcls.data.examples import Example, n_rows
from gptcls.errors import GptclsError

# Rare: at most RARE_MAX rows, and at most RARE_SHARE of all rows (so a small file's small
# class is not "rare": 2 rows of 100 are 2%).
RARE_MAX = 2
RARE_SHARE = 0.01
_SHOW_ROWS = 2
_SHOW_LABELS = 10
# difflib ratio above which a rare label reads as a misspelling of a common one.
_TYPO_CUTOFF = 0.6


def rare_labels(counts: Mapping[str, int]) -> list[str]:
    """The labels of `counts` that are rare among all its rows, sorted."""
    total = sum(counts.values())
    return sorted(k for k, n in counts.items() if n <= RARE_MAX and n <= RARE_SHARE * total)


def rare_message(label: str, counts: Mapping[str, int], rows: Sequence[str], action: str
                 ) -> str:
    """One line: the label, how many rows and where, the label it probably misspells and
    `action` (what happens, what to do)."""
    n = counts[label]
    common = [k for k in counts if counts[k] > RARE_MAX]
    guess = difflib.get_close_matches(label, common, n=1, cutoff=_TYPO_CUTOFF)
    typo = f"; probable typo of {_quoted(guess[0])}?" if guess else ""
    where = f" ({', '.join(rows[:_SHOW_ROWS])})" if rows else ""
    return (f"label {_quoted(label)} appears in {n_rows(n)} of {sum(counts.values()):,}"
            f"{where}{typo} {action}")


def rare_counts(parts: Sequence[Sequence[Example]]) -> Counter[str]:
    """Label counts over several lists of examples (the three given splits together)."""
    return Counter(ex.label for part in parts for ex in part)


def _quoted(label: str) -> str:
    return json.dumps(label, ensure_ascii=False)


def drop_rare(parts: list[list[Example]], label_rows: Mapping[str, Sequence[str]],
              keep: bool, strict: bool, log: Callable[[str], None]) -> dict[str, int]:
    """Drop the rows of rare labels from `parts`, in place, with one warning per label (the
    first _SHOW_LABELS); `keep` keeps them, `strict` stops. Rarity counts all parts together.
    `label_rows`: where each label seen at most RARE_MAX times is (LoadReport.label_rows).
    Returns {rare label: rows dropped}."""
    counts = rare_counts(parts)
    rare = rare_labels(counts)
    if not rare:
        return {}
    if keep:
        action = "kept (--keep-rare-labels)"
    elif strict:
        raise GptclsError(rare_message(rare[0], counts, label_rows.get(rare[0], []),
                                       "(--strict: fix the file, or pass --keep-rare-labels)"))
    else:
        action = "dropped from training; use --strict to stop, or fix the file"
    for k in rare[:_SHOW_LABELS]:
        log(f"warning: {rare_message(k, counts, label_rows.get(k, []), action)}")
    if len(rare) > _SHOW_LABELS:
        log(f"warning: ... and {len(rare) - _SHOW_LABELS:,} more rare labels, "
            f"{action.split(';')[0]}")
    if keep:
        return {}
    for part in parts:
        part[:] = [ex for ex in part if ex.label not in rare]
    return {k: counts[k] for k in rare}
