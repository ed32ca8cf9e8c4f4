"""Is a CSV/TSV file's first row column names or already data? Decided from the rows below it.

Conservative: the first row stays the header unless the rows below give evidence that it is
data, and never when it holds a known column name (TEXT_ALIASES, LABEL_ALIASES, or a name the
user gave: naming a column is how to overrule a wrong guess).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

# Rows read past the first one to decide.
SNIFF_ROWS = 50
# A first-row cell this long with this many spaces reads as text, not as a column name.
_TEXT_CHARS = 40
_TEXT_SPACES = 4


def data_evidence(first: Sequence[str], rows: Sequence[Sequence[str]],
                  names: Collection[str]) -> str | None:
    """Why `first` reads as a data row, given the `rows` below it (None: it is the header).
    `names` are case-folded column names that only a header would hold."""
    if not rows or any(_fold(v) in names for v in first):
        return None
    columns = [[r[i] for r in rows if i < len(r) and r[i].strip()] for i in range(len(first))]
    # A name over numbers ("score" above 1, 3, 2) is a header, whatever other columns say.
    if any(col and all(map(_is_number, col)) and v.strip() and not _is_number(v)
           for v, col in zip(first, columns, strict=True)):
        return None
    for i, (v, col) in enumerate(zip(first, columns, strict=True), start=1):
        if not v.strip() or not col:
            continue
        if _is_number(v) and all(map(_is_number, col)):
            return f"column {i}'s first value {v!r} is a number like the rest of the column"
        if v in col:
            return f"column {i}'s first value {v!r} repeats below it"
        # Long like its column's values (a survey's long question above short answers is not).
        if (len(v) >= _TEXT_CHARS and v.count(" ") >= _TEXT_SPACES
                and sorted(map(len, col))[len(col) // 2] >= _TEXT_CHARS // 2):
            return f"column {i}'s first value reads as text, not a column name"
    return None


def position_names(width: int) -> list[str]:
    """Column names of a headerless file: positions "1", "2", ... (1-based, as cut counts)."""
    return [str(i) for i in range(1, width + 1)]


def _is_number(value: str) -> bool:
    try:
        float(value.strip())
    except ValueError:
        return False
    return True


def _fold(name: str) -> str:
    return name.replace("\ufeff", "").strip().casefold()
