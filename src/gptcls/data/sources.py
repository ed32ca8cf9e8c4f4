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

from gptcls.data.readers import open_table, role_column


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
                chunk_size: int) -> RowSource:
    """Open CSV, TSV, JSON lines, Parquet or headerless `label<TAB>text` for streaming."""
    table = open_table(Path(path), format, encoding, named=(text_column,), noun="input file",
                       streaming=True, batch_rows=max(chunk_size, 1))
    try:
        text = role_column(table.path, table.columns, text_column, "text")
    except BaseException:
        table.close()
        raise
    rows = (values for _, values in table.read(None))
    return RowSource(table.path, table.columns, table.columns.index(text), rows, chunk_size,
                     total=table.total, arrow_schema=table.arrow_schema, handle=table.handle)
