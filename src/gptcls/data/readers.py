"""Open any labelled-text file as a streaming `Table`: the one extension table, the one format
detection and the one column detection, shared by train, evaluate and predict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gptcls.data.formats.delimited import delimited_table
from gptcls.data.formats.headerless import headerless_table
from gptcls.data.formats.jsonl import json_table
from gptcls.data.formats.parquet import BATCH_ROWS, parquet_table
from gptcls.data.formats.prefixed import PREFIXED_FORMATS, prefixed_table, sniff_prefixed
from gptcls.data.formats.table import Table
from gptcls.data.formats.text import (
    PROBE_BYTES,
    TextFile,
    check_not_container,
    check_text,
    codec_name,
    compression,
    first_line,
    head_lines,
    inner_path,
    read_head,
)
from gptcls.errors import GptclsError
from gptcls.options import FORMATS

TEXT_ALIASES: tuple[str, ...] = (
    "text", "message", "sms", "content", "body", "sentence", "review", "comment", "document", "v2",
)
LABEL_ALIASES: tuple[str, ...] = (
    "label", "labels", "category", "class", "target", "y", "sentiment", "v1",
)
EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".label": "trec",
}
_FORMAT_ALIASES = {"json": "jsonl", "ndjson": "jsonl"}


def open_table(path: Path, format: str | None = None, encoding: str = "utf-8",
               named: Sequence[str | None] = (), noun: str = "data file",
               streaming: bool = False, batch_rows: int = BATCH_ROWS,
               no_header: bool = False) -> Table:
    """Open `path` for streaming its rows. `format`: one of FORMATS, else from the extension,
    then the content. `named`: column names the user gave (a first line holding one of them
    is a header). `streaming`: refuse what can only be read whole (a JSON array).
    `no_header`: CSV/TSV whose first row is data (else detected), columns named "1", "2"..."""
    head = read_head(path, noun)
    fmt = initial_format(path, head, format)
    if fmt == "parquet":
        return parquet_table(path, batch_rows)
    codec = codec_name(encoding)
    check_not_container(path, head)
    check_text(path, head, codec)
    # A file of only whitespace is as empty as a 0-byte one (longer ones: TextFile.content).
    if not head.strip() and len(head) < PROBE_BYTES:
        raise GptclsError(f"{noun} is empty: {path}")
    if format is None and fmt is None:
        fmt = sniff_prefixed(head_lines(head, codec))
    if format is None and fmt in ("tsv", None):
        fmt = guess_format(first_line(head, codec), fmt, named)
    # csv wants \r\n and lone \r split too (and kept inside quoted fields); the line formats
    # end lines at \n only.
    src = TextFile(path, encoding, "" if fmt in ("csv", "tsv") else "\n", noun)
    try:
        if fmt == "jsonl":
            return json_table(src, allow_array=not streaming)
        if fmt == "sms":
            return headerless_table(src)
        if fmt in PREFIXED_FORMATS:
            return prefixed_table(src, fmt)
        return delimited_table(src, fmt, no_header, known_names(named))
    except BaseException:
        src.close()
        raise


def initial_format(path: Path, head: bytes, format: str | None) -> str | None:
    if format is not None:
        fmt = _FORMAT_ALIASES.get(format.lower(), format.lower())
        if fmt not in FORMATS:
            raise GptclsError(f"unknown data format {format!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if head.startswith(b"PAR1"):  # Parquet magic, whatever the file is called
        if compression(path):
            raise GptclsError(f"{path} is a compressed Parquet file: decompress it (Parquet "
                              "compresses its own columns)")
        return "parquet"
    return EXTENSIONS.get(inner_path(path).suffix.lower())


def guess_format(first: str | None, fmt: str | None, named: Sequence[str | None]) -> str:
    """tsv/.txt/unknown extension: headerless `label<TAB>text`, TSV or CSV from line one."""
    if first is None:  # only blank lines in the first 8 KB
        return fmt or "csv"
    fields = first.split("\t")
    known = known_names(named)
    if len(fields) == 2 and not any(f.strip().casefold() in known for f in fields):
        return "sms"
    return fmt or ("tsv" if "\t" in first else "csv")


def known_names(named: Sequence[str | None]) -> set[str]:
    """Case-folded names that only a header row holds: the aliases and the names given
    (not a number: that is a position, and a data row may well hold it)."""
    return set(TEXT_ALIASES + LABEL_ALIASES) | {n.strip().casefold() for n in named
                                                if n and not n.strip().isdigit()}


def find_column(path: Path, columns: Sequence[str], wanted: str | None,
                aliases: Sequence[str]) -> str | None:
    """The column named `wanted` (exact, else case-insensitive, else a 1-based position;
    raises if absent), or with `wanted` None the first of `aliases` present (None if none)."""
    # reversed(): with duplicate names (after case folding) the first column wins.
    folded = {_fold(c): c for c in reversed(columns)}
    if wanted is None:
        return next((folded[a] for a in aliases if a in folded), None)
    if wanted in columns:
        return wanted
    hit = folded.get(_fold(wanted))
    if hit is None and wanted.strip().isdigit() and 1 <= int(wanted) <= len(columns):
        hit = columns[int(wanted) - 1]  # a 1-based position, as cut and csvcut count
    if hit is None:
        raise GptclsError(f"{path}: no column {wanted!r}; available columns: "
                          f"{column_names(columns)}")
    return hit


def role_column(path: Path, columns: Sequence[str], wanted: str | None, role: str,
                required: bool = True) -> str | None:
    """The "text" or "label" column, named or detected; if `required`, raises when there is
    none, listing the columns and the flag to pass."""
    col = find_column(path, columns, wanted, TEXT_ALIASES if role == "text" else LABEL_ALIASES)
    if col is None and required:
        raise GptclsError(f"{path}: cannot tell which column holds the {role}; available "
                          f"columns: {column_names(columns)}; pass --{role}-column NAME")
    return col


def _fold(name: str) -> str:
    # A second BOM (a file saved twice by a BOM-writing tool) must not hide the column name.
    return name.replace("\ufeff", "").strip().casefold()


def column_names(columns: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f", ... ({len(columns) - limit} more)" if len(columns) > limit else "")
