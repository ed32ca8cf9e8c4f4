"""Streaming readers for `gptcls predict`: a big input file a chunk of rows at a time.

CSV/TSV and JSON lines are read line by line from an open file, Parquet record batch by record
batch, so memory depends on the chunk size, not on the file. Column detection follows
tabular.py (TEXT_ALIASES); unlike tabular.read_labelled nothing is dropped or normalised here:
every input row comes out, in order, so predictions line up with the input.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcls.data.labelled import LABEL_ALIASES, TEXT_ALIASES
from gptcls.errors import GptclsError

_INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


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
        while True:
            chunk = []
            try:
                for row in self.rows:
                    chunk.append(row)
                    if len(chunk) == self.chunk_size:
                        break
            except UnicodeDecodeError as exc:
                raise GptclsError(f"{self.path} is not valid text in the given encoding "
                                  f"({exc.reason}); pass --encoding") from None
            except csv.Error as exc:
                raise GptclsError(f"{self.path}: cannot parse: {exc}") from None
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
    if not path.is_file():
        raise GptclsError(f"input file not found: {path}")
    with path.open("rb") as fh:
        head = fh.read(4)
    fmt = (format or "").lower() or ("parquet" if head == b"PAR1"
                                     else _INPUT_FORMATS.get(path.suffix.lower()))
    if fmt == "parquet":
        return _parquet_source(path, text_column, chunk_size)
    try:
        codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") \
            else encoding  # utf-8-sig drops the BOM Excel writes
        # newline="\n": lines end at "\n" only, as in training; csv keeps a "\r\n" ending right.
        fh = path.open(encoding=codec, newline="\n")
    except LookupError:
        raise GptclsError(f"unknown encoding {encoding!r}") from None
    try:
        return _text_source(path, fh, fmt, text_column, chunk_size)
    except BaseException:
        fh.close()
        raise


def _text_source(path: Path, fh: Any, fmt: str | None, text_column: str | None,
                 chunk_size: int) -> RowSource:
    def source(columns: list[str], rows: Iterator[list[Any]]) -> RowSource:
        index = _text_index(path, columns, text_column)
        return RowSource(path, columns, index, rows, chunk_size, handle=fh)

    try:
        first = fh.readline()
    except UnicodeDecodeError:
        raise GptclsError(f"{path} is not valid text in the given encoding; pass --encoding"
                          ) from None
    if not first.strip():
        raise GptclsError(f"input file is empty or starts with a blank line: {path}")
    if fmt is None or fmt == "sms":
        fields = first.rstrip("\r\n").split("\t")
        names = {f.strip().casefold() for f in fields}
        if fmt == "sms" or (len(fields) == 2 and not names & {*TEXT_ALIASES, *LABEL_ALIASES}):
            lines = itertools.chain([first], fh)
            return source(["label", "text"], (list(ln.rstrip("\r\n").partition("\t")[::2])
                                              for ln in lines if ln.strip()))
        fmt = "tsv" if "\t" in first else "csv"
    if fmt == "jsonl":
        if first.lstrip().startswith("["):
            raise GptclsError(f"{path} holds one JSON array, which cannot be streamed; "
                              "write one JSON object per line (JSON lines)")
        return _jsonl_source(path, itertools.chain([first], fh), source, chunk_size)
    if fmt not in ("csv", "tsv"):
        raise GptclsError(f"unknown input format {fmt!r}; use csv, tsv, jsonl, parquet or sms")
    reader = csv.reader(itertools.chain([first], fh), delimiter="\t" if fmt == "tsv" else ",")
    header = next(reader)
    width = len(header)
    rows = ((f + [None] * (width - len(f)))[:width] for f in reader if f)
    return source(header, rows)


def _jsonl_source(path: Path, lines: Iterator[str], source: Callable[..., RowSource],
                  chunk_size: int) -> RowSource:
    def records() -> Iterator[dict[str, Any]]:
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GptclsError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise GptclsError(f"{path}:{n}: expected a JSON object")
            yield obj

    stream = records()
    # Columns come from the first chunk: later keys that never appear there are not written.
    first = list(itertools.islice(stream, chunk_size))
    if not first:
        raise GptclsError(f"{path} has no data rows")
    columns = list(dict.fromkeys(k for obj in first for k in obj))
    objs = itertools.chain(first, stream)
    return source(columns, ([obj.get(c) for c in columns] for obj in objs))


def _parquet_source(path: Path, text_column: str | None, chunk_size: int) -> RowSource:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GptclsError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise GptclsError(f"{path} is not a readable Parquet file ({exc})") from None
    schema = pf.schema_arrow
    columns = list(schema.names)

    def rows() -> Iterator[list[Any]]:
        # One record batch at a time: a row group is never read whole into Python objects.
        for batch in pf.iter_batches(batch_size=chunk_size):
            for record in batch.to_pylist():
                yield [record.get(c) for c in columns]

    index = _text_index(path, columns, text_column)
    return RowSource(path, columns, index, rows(), chunk_size, total=pf.metadata.num_rows,
                     arrow_schema=schema)


def _text_index(path: Path, columns: list[str], wanted: str | None) -> int:
    folded = [c.strip().casefold() for c in columns]
    if wanted is not None:
        if wanted in columns:
            return columns.index(wanted)
        if wanted.strip().casefold() in folded:
            return folded.index(wanted.strip().casefold())
        raise GptclsError(f"{path}: no column {wanted!r}; columns: {columns[:20]}")
    for alias in TEXT_ALIASES:
        if alias in folded:
            return folded.index(alias)
    raise GptclsError(f"{path}: cannot tell which column holds the text; columns: "
                      f"{columns[:20]}; pass --text-column NAME")
