"""The output file of `gptcls predict`: its format (from the extension), the row layout (the
input's columns, then label, prob_<label>... and threshold), part files and their join."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from gptcls.data.formats.text import COMPRESSED_SUFFIXES, OPENERS, inner_path
from gptcls.data.sources import RowSource
from gptcls.errors import GptclsError

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: Path) -> str:
    """The output's format from its extension (after a .gz/.bz2/.xz one)."""
    inner = inner_path(path)
    fmt = OUTPUT_FORMATS.get(inner.suffix.lower())
    if fmt is None:
        raise GptclsError(f"cannot tell the output format of {path}: use one of the extensions "
                          f"{', '.join(sorted(OUTPUT_FORMATS))} (the text ones may end in "
                          f"{', '.join(COMPRESSED_SUFFIXES)} too)")
    if fmt == "parquet" and inner != path:
        raise GptclsError(f"{path}: Parquet compresses its own columns; write {inner.name}")
    return fmt


def compressor(path: Path) -> Any:
    """The opener that compresses what is written to `path` (out.csv.gz; None: plain)."""
    kind = COMPRESSED_SUFFIXES.get(path.suffix.lower())
    return OPENERS[kind] if kind else None


@dataclass
class OutputLayout:
    """Output columns: the input's (renamed on a clash) + label, prob_<label>..., threshold."""

    fmt: str
    input_columns: list[str]
    columns: list[str]
    threshold: float | None
    arrow_schema: Any = None  # Parquet output only
    inputs_as_text: bool = False  # Parquet output of CSV/JSON input: input columns as strings

    @classmethod
    def build(cls, source: RowSource, labels: list[str], threshold: float | None,
              fmt: str, label_column: str = "label") -> OutputLayout:
        """label_column "labels": a multi-label run's column of separated label sets."""
        ours = [label_column, *(f"prob_{lab}" for lab in labels), "threshold"]
        if len(set(ours)) != len(ours):
            raise GptclsError(f"labels {labels} give clashing prob_ column names")
        taken, renamed = set(ours), []
        for c in source.columns:
            # A true-label column called "label" must not be confused with the prediction.
            name = c
            while name in taken:
                name = f"input_{name}"
            taken.add(name)
            renamed.append(name)
        layout = cls(fmt, renamed, renamed + ours, threshold)
        if fmt == "parquet":
            layout.arrow_schema = _arrow_schema(source, renamed, ours)
            layout.inputs_as_text = source.arrow_schema is None
        return layout

    def row(self, values: list[Any], result: tuple[str, list[float]] | None) -> list[Any]:
        """One output row: the input values, then the prediction (empty when `result` is None:
        a row without text)."""
        n_probs = len(self.columns) - len(self.input_columns) - 2
        label, probs = result if result is not None else ("", [None] * n_probs)
        if self.fmt in ("csv", "tsv"):
            return [*(_cell(v) for v in values), label,
                    *("" if p is None else format(p, ".7g") for p in probs),
                    "" if self.threshold is None else self.threshold]
        if self.inputs_as_text:
            values = [None if v is None else _cell(v) for v in values]
        return [*values, label, *probs, self.threshold]


def write_rows(layout: OutputLayout, rows: list[list[Any]], path: Path) -> None:
    """One part file: `rows` in the output format, without a header (the join adds it)."""
    if layout.fmt in ("csv", "tsv"):
        with path.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, delimiter=_delimiter(layout), lineterminator="\n").writerows(rows)
    elif layout.fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                record = dict(zip(layout.columns, row, strict=True))
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(zip(*rows, strict=True))
        arrays = [pa.array(list(col), type=f.type)
                  for col, f in zip(columns, layout.arrow_schema, strict=True)]
        pq.write_table(pa.Table.from_arrays(arrays, schema=layout.arrow_schema), path)


def join_parts(layout: OutputLayout, parts: Sequence[Path], fh: BinaryIO,
               compress: Any = None) -> None:
    """The whole output file into `fh`: header, then the parts in order, flushed to disk;
    text formats through `compress` (an opener of `compressor`) when given."""
    if layout.fmt == "parquet":
        import pyarrow.parquet as pq

        with pq.ParquetWriter(fh, layout.arrow_schema) as writer:
            for part in parts:  # one part in memory at a time
                writer.write_table(pq.read_table(part, schema=layout.arrow_schema))
    else:
        # Closing a compressor finishes its stream and leaves `fh` open (a file object given).
        with compress(fh, "wb") if compress else nullcontext(fh) as dst:
            if layout.fmt in ("csv", "tsv"):
                buf = io.StringIO()
                csv.writer(buf, delimiter=_delimiter(layout), lineterminator="\n").writerow(
                    layout.columns)
                dst.write(buf.getvalue().encode("utf-8"))
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, dst)
    fh.flush()
    os.fsync(fh.fileno())  # on disk before the rename makes it OUTPUT


def _delimiter(layout: OutputLayout) -> str:
    return "\t" if layout.fmt == "tsv" else ","


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _arrow_schema(source: RowSource, inputs: list[str], ours: list[str]) -> Any:
    import pyarrow as pa

    if source.arrow_schema is not None:  # Parquet in, Parquet out: keep the column types
        fields = [f.with_name(n) for f, n in zip(source.arrow_schema, inputs, strict=True)]
    else:  # CSV/JSON values: strings (non-string JSON values as their JSON text)
        fields = [pa.field(n, pa.string()) for n in inputs]
    fields += [pa.field(ours[0], pa.string())]
    fields += [pa.field(n, pa.float64()) for n in ours[1:]]
    return pa.schema(fields)
