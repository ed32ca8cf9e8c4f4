"""CSV and TSV with a header row (RFC 4180 quoting), streamed record by record."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Collection, Iterator

from gptcls.data.examples import n_rows
from gptcls.data.formats.header import SNIFF_ROWS, data_evidence, position_names
from gptcls.data.formats.table import Rows, Table, pick
from gptcls.data.formats.text import TextFile
from gptcls.errors import GptclsError


def delimited_table(src: TextFile, fmt: str, no_header: bool = False,
                    names: Collection[str] = ()) -> Table:
    """The header is the first non-blank record, unless `no_header` or the rows below show it
    is data (header.py; `names`: case-folded names only a header holds); blank lines skipped.
    Without a header the columns are named by position: "1", "2", ..."""
    delimiter = "\t" if fmt == "tsv" else ","
    records = _records(src, csv.reader(src.content(), delimiter=delimiter), fmt.upper())
    first = next(records, None)
    if first is None:  # only blank records (a lone unterminated quote, say)
        raise GptclsError(f"{src.noun} is empty: {src.path}")
    sample = list(itertools.islice(records, SNIFF_ROWS))
    why = "--no-header" if no_header else data_evidence(first[1], [f for _, f in sample], names)
    if why is None:
        header, data = first[1], sample
        note = []
    else:
        header, data = position_names(len(first[1])), [first, *sample]
        note = [f"no header row ({why}): columns are named by position "
                f"1-{len(header)}; name them with --text-column/--label-column N"]
    width = len(header)
    table = Table(src.path, fmt, header, lambda _: iter(()), lambda n: f"{src.path}:{n}",
                  empty=not data, handle=src.handle, notes=note)

    def read(select: list[int] | None) -> Rows:
        wide = 0
        if data:
            for line, fields in itertools.chain(data, records):
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

