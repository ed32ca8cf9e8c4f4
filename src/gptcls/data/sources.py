"""The predict-side view of the readers: a big input file a chunk of rows at a time.

Same readers, extension table and column detection as training (readers.py); unlike
read_labelled nothing is dropped or normalised here: every input row comes out, in order, so
predictions line up with the input. Memory depends on the chunk size, not on the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcls.data.columns import TEXT_SEPARATOR, cell_text, join_cells, split_spec, text_columns
from gptcls.data.readers import open_table, role_column
from gptcls.errors import GptclsError


@dataclass
class RowSource:
    """An input file opened for streaming: its columns and a one-shot iterator of row chunks."""

    path: Path
    columns: list[str]
    text_index: int
    rows: Iterator[list[Any]]  # every row as values aligned with `columns`
    chunk_size: int
    total: int | None = None  # known for Parquet only
    arrow_schema: Any = None  # Parquet input only
    handle: Any = None  # the open text file, for position()
    # Every column joined into the text (text_index: the first), and how they join.
    text_indices: list[int] | None = None
    separator: str = TEXT_SEPARATOR

    def text(self, row: list[Any], i: int) -> str:
        """Row `i`'s text: its text cell, or its text cells joined the way training did."""
        where = self.where(i)
        if not self.text_indices or len(self.text_indices) == 1:
            return cell_text(row[self.text_index], where, "the text")
        return join_cells([row[j] for j in self.text_indices], where,
                          [self.columns[j] for j in self.text_indices], self.separator)

    def chunks(self) -> Iterator[list[list[Any]]]:
        # Read errors (bad bytes, broken quoting) already arrive as GptclsError from readers.
        while True:
            chunk = []
            for row in self.rows:
                chunk.append(row)
                if len(chunk) == self.chunk_size:
                    break
            if not chunk:
                return
            yield chunk

    def where(self, row: int) -> str:
        return f"{self.path}: data row {row + 1:,}"

    def position(self) -> int:
        """Bytes taken from the file so far (a streaming test checks it stays small)."""
        return self.handle.buffer.tell() if self.handle is not None else 0

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def open_source(path: Path, format: str | None, text_column: str | None, encoding: str,
                chunk_size: int, no_header: bool = False, trained_column: str | None = None,
                separator: str = TEXT_SEPARATOR) -> RowSource:
    """Open CSV, TSV, JSON lines, Parquet, headerless `label<TAB>text` or label-prefixed lines
    for streaming. `text_column`: one column or a list joined with `separator`; not given,
    the run's `trained_column` where the file has it (a list: it must), else detected."""
    named = (*(text_column or trained_column or "").split(","),)
    table = open_table(Path(path), format, encoding, named=named, noun="input file",
                       streaming=True, batch_rows=max(chunk_size, 1), no_header=no_header)
    try:
        cols = _text_columns(table.path, table.columns, text_column, trained_column)
    except BaseException:
        table.close()
        raise
    rows = (values for _, values in table.read(None))
    indices = [table.columns.index(c) for c in cols]
    return RowSource(table.path, table.columns, indices[0], rows, chunk_size,
                     total=table.total, arrow_schema=table.arrow_schema, handle=table.handle,
                     text_indices=indices, separator=separator)


def _text_columns(path: Path, columns: list[str], given: str | None, trained: str | None
                  ) -> list[str]:
    if given is not None:
        return text_columns(path, columns, given)
    if trained is not None and len(split_spec(trained, columns)) > 1:
        try:
            return text_columns(path, columns, trained)
        except GptclsError as exc:
            raise GptclsError(f"{exc}; the run was trained on --text-column {trained} (pass "
                              "--text-column to read other columns)") from None
    if trained is not None and trained in columns:
        return [trained]
    return [str(role_column(path, columns, None, "text"))]
