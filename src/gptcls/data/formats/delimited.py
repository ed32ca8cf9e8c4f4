"""CSV and TSV with a header row (RFC 4180 quoting), streamed record by record."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from gptcls.data.examples import n_rows
from gptcls.data.formats.table import Rows, Table, pick
from gptcls.data.formats.text import TextFile
from gptcls.errors import GptclsError


def delimited_table(src: TextFile, fmt: str) -> Table:
    """The header is the first non-blank record; data rows follow, blank lines skipped."""
    delimiter = "\t" if fmt == "tsv" else ","
    records = _records(src, csv.reader(src.content(), delimiter=delimiter), fmt.upper())
    first = next(records, None)
    if first is None:  # only blank records (a lone unterminated quote, say)
        raise GptclsError(f"{src.noun} is empty: {src.path}")
    header = first[1]
    peeked = next(records, None)
    width = len(header)
    table = Table(src.path, fmt, header, lambda _: iter(()), lambda n: f"{src.path}:{n}",
                  empty=peeked is None, handle=src.handle)

    def read(select: list[int] | None) -> Rows:
        wide = 0
        if peeked is not None:
            for line, fields in _chain(peeked, records):
                wide += len(fields) > width
                yield line, pick(fields, select, width)
        if wide:
            table.warnings.append(
                f"{n_rows(wide)} had more fields than the header (unquoted "
                f"{'commas' if delimiter == ',' else 'tabs'} in the text?); extra fields ignored")

    table.read = read
    return table


def _records(src: TextFile, reader: Iterator[list[str]], kind: str
             ) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, fields) for every non-blank record."""
    start = 1
    try:
        for fields in reader:
            if fields:
                yield start, fields
            start = reader.line_num + 1  # type: ignore[attr-defined]
    except csv.Error as exc:
        raise GptclsError(f"{src.path}:{start}: cannot parse {kind}: {exc}") from None


def _chain(first: tuple[int, list[str]], rest: Iterator[tuple[int, list[str]]]
           ) -> Iterator[tuple[int, list[str]]]:
    yield first
    yield from rest
