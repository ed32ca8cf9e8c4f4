"""JSON lines (one object per line), streamed; a .json file holding one array of objects."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from gptcls.data.formats.table import Rows, Table
from gptcls.data.formats.text import TextFile
from gptcls.errors import GptclsError

# Columns are the keys of the first objects: a key that first appears later is not a column.
COLUMN_PEEK = 1000


def json_table(src: TextFile, allow_array: bool = True) -> Table:
    lines = src.content()
    first = next(lines)
    while not first.strip():  # the blank lines content() put back
        first = next(lines)
    rest = itertools.chain([first], lines)
    skipped = src.skipped
    if first.lstrip().startswith("["):
        if not allow_array:
            raise GptclsError(f"{src.path} holds one JSON array, which cannot be streamed; "
                              "write one JSON object per line (JSON lines)")
        records = _array(src, "\n" * skipped + "".join(rest))
        where = f"{src.path}: item {{}}"
    else:
        records = _objects(src, rest, skipped)
        where = f"{src.path}:{{}}"
    peeked = list(itertools.islice(records, COLUMN_PEEK))
    columns = list(dict.fromkeys(k for _, obj in peeked for k in obj))

    def read(select: list[int] | None) -> Rows:
        names = columns if select is None else [columns[i] for i in select]
        for n, obj in itertools.chain(peeked, records):
            yield n, [obj.get(c) for c in names]

    return Table(src.path, "jsonl", columns, read, where.format, empty=not peeked,
                 handle=src.handle)


def _objects(src: TextFile, lines: Iterator[str], skipped: int
             ) -> Iterator[tuple[int, dict[str, Any]]]:
    # Lines end at "\n" only: U+2028 etc. may appear raw inside JSON strings.
    for lineno, line in enumerate(lines, start=skipped + 1):
        if line.strip():
            yield lineno, _object(src, _loads(src, line, lineno), f"{src.path}:{lineno}")


def _array(src: TextFile, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = _loads(src, text, None)
    if not isinstance(items, list):
        raise GptclsError(f"{src.path}: expected a JSON array of objects")
    for i, obj in enumerate(items, start=1):
        yield i, _object(src, obj, f"{src.path}: item {i}")


def _loads(src: TextFile, text: str, lineno: int | None) -> Any:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        line = lineno if lineno is not None else exc.lineno
        raise GptclsError(f"{src.path}:{line}: not valid JSON ({exc.msg})") from None
    except (RecursionError, ValueError) as exc:  # too deep; an integer of > 4,300 digits
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise GptclsError(f"{src.path}:{lineno or 1}: not valid JSON ({why})") from None
    # A "\ud800" escape decodes to a lone surrogate: valid JSON, but no valid text, and it
    # would break every later step that encodes it (writing a CSV, printing a label).
    if "\\u" in text:
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise GptclsError(f"{src.path}:{lineno or 1}: a \\u escape makes an unpaired "
                              "surrogate, which is not text") from None
    return obj


def _object(src: TextFile, obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise GptclsError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj
