"""Several columns as one text: which columns a `--text-column` list names and how their cells
join, the same way for training (labelled.py) and for predict (sources.py).

The separator is "\\n": a token every tokenizer sees, it joins a title and its body the way
documents are laid out in pretraining text, and unlike ". " it adds no punctuation to a title
that already ends in "?" or "." and cannot be mistaken for a sentence break inside a column.
A run records it (ClassifierConfig.text_separator) so later separators never change old runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gptcls.data.readers import column_names, find_column
from gptcls.errors import GptclsError

TEXT_SEPARATOR = "\n"


def split_spec(spec: str, columns: Sequence[str]) -> list[str]:
    """`--text-column` as column names: the whole spec if a column is called that (commas and
    all), else its comma-separated parts."""
    if spec in columns or "," not in spec:
        return [spec]
    parts = [p.strip() for p in spec.split(",")]
    if not all(parts):
        raise GptclsError(f"--text-column {spec!r} has an empty name in its list")
    return parts


def joined_spec(spec: str | None) -> str | None:
    """A run's --text-column if it lists several columns (evaluate reads those by default)."""
    return spec if spec and "," in spec else None


def text_columns(path: Path, columns: Sequence[str], spec: str) -> list[str]:
    """The columns `spec` names (each exact, case-insensitive or a 1-based position); a list
    naming a missing column raises, naming the columns that exist."""
    names = split_spec(spec, columns)
    if len(names) == 1:
        return [str(find_column(path, columns, names[0], ()))]
    missing = [n for n in names if not _has(path, columns, n)]
    if missing:
        raise GptclsError(f"{path}: no column {', '.join(repr(m) for m in missing)} (of "
                          f"--text-column {spec}); available columns: {column_names(columns)}")
    found = [str(find_column(path, columns, n, ())) for n in names]
    if len(set(found)) < len(found):
        raise GptclsError(f"--text-column {spec} names a column twice")
    return found


def _has(path: Path, columns: Sequence[str], name: str) -> bool:
    try:
        find_column(path, columns, name, ())
    except GptclsError:
        return False
    return True


def join_cells(values: Sequence[object], where: str, columns: Sequence[str],
               separator: str = TEXT_SEPARATOR) -> str:
    """The text of one row: its text cells joined by `separator`, blank ones left out (so a
    row with an empty description is its title alone, at training and at predict alike)."""
    if len(values) == 1:
        return cell_text(values[0], where, f"text in column {columns[0]!r}")
    parts = [cell_text(v, where, f"text in column {c!r}")
             for v, c in zip(values, columns, strict=True)]
    return separator.join(p for p in parts if p.strip())


def cell_text(value: object, where: str, what: str) -> str:
    """A text cell as a string ("" for a missing value); any other type is a wrong column.
    `what` names the cell in the message (e.g. "text in column 'body'", "the text")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GptclsError(f"{where}: {what} is {type(value).__name__}, not a string; is "
                          "--text-column the right column?")
    return value
