"""The SMS Spam Collection's format: headerless `label<TAB>text` lines, no quoting at all."""

from __future__ import annotations

from collections.abc import Iterator

from gptcls.data.formats.table import Rows, Table, pick
from gptcls.data.formats.text import TextFile
from gptcls.errors import GptclsError

COLUMNS = ["label", "text"]


def headerless_rows(src: TextFile, lines: Iterator[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, [label, text]) per non-blank line, split at the first tab.

    Lines end at "\\n" only: the SMS file holds stray C1 controls, U+2028 and \\f inside
    messages, which str.splitlines() would break on. Quotes are text, never CSV quoting.
    """
    for lineno, line in enumerate(lines, start=1):
        line = line.removesuffix("\n").removesuffix("\r")
        if not line.strip():
            continue
        label, sep, message = line.partition("\t")
        if not sep:
            raise GptclsError(f"{src.path}:{lineno}: expected 'label<TAB>text', got {line[:40]!r}")
        yield lineno, [label, message]


def headerless_table(src: TextFile) -> Table:
    rows = headerless_rows(src, src.content())

    def read(select: list[int] | None) -> Rows:
        for lineno, values in rows:
            yield lineno, pick(values, select, 2)

    return Table(src.path, "sms", list(COLUMNS), read, lambda n: f"{src.path}:{n}",
                 handle=src.handle)
