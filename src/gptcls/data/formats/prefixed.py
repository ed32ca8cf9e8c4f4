"""Label-prefixed lines: TREC's `COARSE:fine question text` and fastText's `__label__x text`.

The label is the line's first word; the text is the rest. A line whose first word is no label
yields no label (the labelled pass drops and counts it, or with --strict stops at its line).
Lines end at "\\n" only, as in the SMS format; quotes are text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from gptcls.data.examples import n_rows
from gptcls.data.formats.table import Rows, Table, pick
from gptcls.data.formats.text import TextFile

COLUMNS = ["label", "text"]
FASTTEXT_PREFIX = "__label__"
# TREC: ABBR:exp, NUM:dist... Any word:word first token reads as a label, the fine part as
# written (a colon-ended word, "Note:", is text).
TREC_LABEL = re.compile(r"[\w-]+:\S+")
FASTTEXT_LABEL = re.compile(r"\s*__label__(\S*)(?=\s|$)")
PREFIXED_FORMATS = ("trec", "fasttext")
# How the lines of each format look, for messages.
SHAPES = {"trec": "'COARSE:fine text'", "fasttext": "'__label__x text'"}


def sniff_prefixed(lines: Sequence[str]) -> str | None:
    """"fasttext" or "trec" when every one of the first lines starts with such a label."""
    if not lines:
        return None
    if all(ln.startswith(FASTTEXT_PREFIX) for ln in lines):
        return "fasttext"
    if all("\t" not in ln and TREC_LABEL.fullmatch(ln.split(" ", 1)[0]) and " " in ln
           for ln in lines):
        return "trec"
    return None


def split_line(line: str, fmt: str) -> tuple[str | None, str, int]:
    """(label or None, text, how many labels the line had) of one line."""
    if fmt == "trec":
        first, _, rest = line.partition(" ")
        if TREC_LABEL.fullmatch(first):
            return first, rest.strip(), 1
        return None, line.strip(), 0
    labels, at = [], 0
    while m := FASTTEXT_LABEL.match(line, at):
        labels.append(m.group(1))
        at = m.end()
    return (labels[0] if labels else None), line[at:].strip(), len(labels)


def prefixed_table(src: TextFile, fmt: str) -> Table:
    lines = src.content()
    table = Table(src.path, fmt, list(COLUMNS), lambda _: iter(()), lambda n: f"{src.path}:{n}",
                  handle=src.handle)

    def read(select: list[int] | None) -> Rows:
        several = 0
        for lineno, values, n_labels in _rows(lines, fmt):
            several += n_labels > 1
            yield lineno, pick(values, select, 2)
        if several:
            table.warnings.append(
                f"{n_rows(several)} had several {FASTTEXT_PREFIX} labels; kept the first of "
                "each (multi-label data is not supported yet)")

    table.read = read
    return table


def _rows(lines: Iterator[str], fmt: str) -> Iterator[tuple[int, list[str | None], int]]:
    for lineno, line in enumerate(lines, start=1):
        line = line.removesuffix("\n").removesuffix("\r")
        if line.strip():
            label, text, n_labels = split_line(line, fmt)
            yield lineno, [label, text], n_labels
