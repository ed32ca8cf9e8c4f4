"""What every format reader returns: the columns and a one-shot stream of rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (row number as `where` formats it, values aligned with the selected columns)
Rows = Iterator[tuple[int, list[Any]]]


@dataclass
class Table:
    """An open labelled-or-not file: `read(select)` streams its rows once.

    `read(None)` gives every column, `read([i, j])` only columns i and j (None where a row is
    too short). Memory depends on the reader's chunk, never on the file size.
    """

    path: Path
    format: str
    columns: list[str]
    read: Callable[[list[int] | None], Rows]
    where: Callable[[int], str]  # row number -> "file:line" / "file: row n" for messages
    empty: bool = False  # column names but no data rows
    total: int | None = None  # rows, where the format records it (Parquet)
    arrow_schema: Any = None  # Parquet only
    handle: Any = None  # the open text file (TextIOWrapper), for position() and close()
    warnings: list[str] = field(default_factory=list)  # appended to while rows are read
    notes: list[str] = field(default_factory=list)  # what was decided about the file (header)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        for close in self.closers:
            close()


def pick(values: list[Any], select: list[int] | None, width: int) -> list[Any]:
    """Values at `select` (all `width` columns if None); None for fields a short row lacks."""
    if select is None:
        return (values + [None] * (width - len(values)))[:width]
    n = len(values)
    return [values[i] if i < n else None for i in select]
