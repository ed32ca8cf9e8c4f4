"""Read labelled text from CSV, TSV, JSON lines, Parquet or headerless `label<TAB>text` files.

Every format reader only yields raw `(where, text, label)` cells; one shared pass then drops,
normalises and reports, so all formats behave the same. Splitting lives in splits.py.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gptcls.data.sms import Example, PathLike
from gptcls.errors import GptclsError

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet", "sms")
TEXT_ALIASES: tuple[str, ...] = (
    "text", "message", "sms", "content", "body", "sentence", "review", "comment", "document", "v2",
)
LABEL_ALIASES: tuple[str, ...] = (
    "label", "labels", "category", "class", "target", "y", "sentiment", "v1",
)
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet",
}
_PROBE_BYTES = 8192
# A label column with this many distinct values (and > half the rows) is probably free text.
_MANY_LABELS = 100
_SHOW_CLASSES = 10

Cells = Iterator[tuple[str, object, object]]


@dataclass
class LoadReport:
    """What `read_labelled` did to the file, for the user to check before training on it."""

    path: str
    format: str
    text_column: str
    label_column: str | None
    rows_read: int = 0
    dropped_missing_label: int = 0
    dropped_empty_text: int = 0
    # normalised label -> {raw variant that was rewritten: rows}
    merged_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        label = f"label column {self.label_column!r}" if self.label_column else "no label column"
        out = [
            f"read {self.rows_read:,} rows from {self.path} "
            f"(format {self.format}, text column {self.text_column!r}, {label})"
        ]
        if self.label_counts:
            common = sorted(self.label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = "; ".join(f"{k} {v:,}" for k, v in common[:_SHOW_CLASSES])
            more = len(common) - _SHOW_CLASSES
            out.append(f"{len(common):,} classes: {shown}" + (f"; ... ({more:,} more)"
                                                               if more > 0 else ""))
        if self.dropped_empty_text:
            out.append(f"dropped {_rows(self.dropped_empty_text)} with empty text")
        if self.dropped_missing_label:
            out.append(f"dropped {_rows(self.dropped_missing_label)} with no label")
        for norm, variants in self.merged_labels.items():
            raw = ", ".join(json.dumps(v, ensure_ascii=False) for v in variants)
            n = sum(variants.values())
            # One variant and no rows already spelled `norm`: a rename, nothing was merged.
            merged = len(variants) > 1 or self.label_counts.get(norm, 0) > n
            verb = "merged" if merged else "renamed"
            out.append(
                f"labels {verb}: {raw} -> {json.dumps(norm, ensure_ascii=False)} "
                f"({_rows(n)})"
            )
        out += [f"warning: {w}" for w in self.warnings]
        return out


@dataclass
class _Source:
    columns: list[str]
    cells: Callable[[str, str | None], Cells]
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- public API


def read_labelled(
    path: PathLike,
    format: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str = "utf-8",
    normalize_labels: bool = True,
    strict: bool = False,
    require_labels: bool = True,
) -> tuple[list[Example], LoadReport]:
    """Read a labelled text file into examples plus a report of what was dropped or merged.

    `format` is one of FORMATS (default: from the extension, then the content). Columns are
    auto-detected from TEXT_ALIASES / LABEL_ALIASES unless named. Rows with empty text or no
    label are dropped and counted (each row once, empty text first), or with `strict` raise.
    With `require_labels=False` the label column is optional and unlabelled rows keep label "".
    """
    path = Path(path)
    head = _probe(path)
    fmt = _initial_format(path, head, format)
    if fmt == "parquet":
        source = _parquet_source(path)
    else:
        text = _decode(path, encoding)
        if format is None and fmt in ("tsv", None):
            fmt = _guess_text_format(text, fmt, (text_column, label_column))
        source = _text_source(path, text, fmt)
    if fmt == "sms" and {text_column, label_column} - {None, "text", "label"}:
        raise GptclsError(f"{path} has no header row (headerless 'label<TAB>text' lines), so "
                          "its columns are just 'label' and 'text'")
    text_col, label_col = _choose_columns(path, source.columns, text_column, label_column,
                                          require_labels)
    report = LoadReport(str(path), fmt, text_col, label_col, warnings=list(source.warnings))
    examples = _collect(source.cells(text_col, label_col), report, normalize_labels, strict,
                        require_labels)
    _finish(examples, report)
    return examples, report


# --------------------------------------------------------------------------- bytes -> text


def _probe(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            head = fh.read(_PROBE_BYTES)
    except FileNotFoundError:
        raise GptclsError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise GptclsError(f"data file is a directory: {path}") from None
    except OSError as exc:
        raise GptclsError(f"cannot read {path} ({exc.strerror or exc})") from None
    # A file of only whitespace is as empty as a 0-byte one (longer ones: see _decode).
    if not head.strip() and len(head) < _PROBE_BYTES:
        raise GptclsError(f"data file is empty: {path}")
    return head


def _initial_format(path: Path, head: bytes, format: str | None) -> str | None:
    if format is not None:
        fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(format.lower(), format.lower())
        if fmt not in FORMATS:
            raise GptclsError(f"unknown data format {format!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if head.startswith(b"PAR1"):  # Parquet magic, whatever the file is called
        return "parquet"
    return _EXTENSIONS.get(path.suffix.lower())


def _decode(path: Path, encoding: str) -> str:
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise GptclsError(f"unknown encoding {encoding!r}; use a Python codec name such as "
                          "utf-8, latin-1, cp1252") from None
    raw = path.read_bytes()
    # NUL never occurs in real text in byte-oriented encodings; UTF-16/32 are full of it.
    if not codec.startswith(("utf-16", "utf-32")) and b"\x00" in raw[:_PROBE_BYTES]:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise GptclsError(f"{path} looks like UTF-16 text; pass --encoding utf-16")
        raise GptclsError(f"{path} looks like a binary file (NUL bytes in the first 8 KB), "
                          "not CSV, TSV, JSON lines or Parquet")
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        hint = "pass --encoding latin-1 (or the file's real encoding)" if codec == "utf-8" \
            else "pass the file's real encoding with --encoding"
        raise GptclsError(f"{path} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start} (line {line}); {hint}") from None
    # Drop the BOM Excel and Notepad put first (decoding with utf-8-sig instead would shift
    # the byte offsets reported above by 3).
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise GptclsError(f"data file is empty: {path}")
    return text


def _guess_text_format(text: str, fmt: str | None, named: tuple[str | None, ...]) -> str:
    """tsv/.txt/unknown extension: headerless `label<TAB>text`, TSV or CSV from line one."""
    first = next(line for line in text.split("\n") if line.strip()).removesuffix("\r")
    fields = first.split("\t")
    known = set(TEXT_ALIASES + LABEL_ALIASES) | {n.casefold() for n in named if n}
    if len(fields) == 2 and not any(f.strip().casefold() in known for f in fields):
        return "sms"
    return fmt or ("tsv" if "\t" in first else "csv")


# --------------------------------------------------------------------------- format readers


def _text_source(path: Path, text: str, fmt: str) -> _Source:
    if fmt == "jsonl":
        return _json_source(path, text)
    if fmt == "sms":
        return _sms_source(path, text)
    return _delimited_source(path, text, "\t" if fmt == "tsv" else ",", fmt.upper())


def _sms_source(path: Path, text: str) -> _Source:
    # Same rules as data.read_sms_file (no quoting, split on "\n" only, first tab separates).
    rows = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        label, sep, message = line.partition("\t")
        if not sep:
            raise GptclsError(f"{path}:{lineno}: expected 'label<TAB>text', got {line[:40]!r}")
        rows.append((f"{path}:{lineno}", message, label))
    return _Source(["label", "text"], lambda _t, _l: iter(rows))


def _delimited_source(path: Path, text: str, delimiter: str, kind: str) -> _Source:
    # newline="": the csv module then keeps \r and \n inside quoted fields.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            if fields:  # blank line
                records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise GptclsError(f"{path}:{start}: cannot parse {kind}: {exc}") from None
    header = records[0][1]
    if len(records) == 1:
        raise GptclsError(f"{path} has column names but no data rows")
    wide = sum(1 for _, f in records[1:] if len(f) > len(header))
    warnings = [f"{_rows(wide)} had more fields than the header (unquoted "
                f"{'commas' if delimiter == ',' else 'tabs'} in the text?); extra fields ignored"
                ] if wide else []

    def cells(text_col: str, label_col: str | None) -> Cells:
        ti = header.index(text_col)
        li = header.index(label_col) if label_col is not None else None
        for line, f in records[1:]:
            label = f[li] if li is not None and li < len(f) else None
            yield f"{path}:{line}", f[ti] if ti < len(f) else None, label

    return _Source(header, cells, warnings)


def _json_source(path: Path, text: str) -> _Source:
    stripped = text.lstrip()
    if stripped.startswith("["):  # a .json file holding one array of objects
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GptclsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        records = [(f"{path}: item {i}", obj) for i, obj in enumerate(items, start=1)]
    else:
        records = []
        # split("\n"), not splitlines(): U+2028 etc. may appear raw inside JSON strings.
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append((f"{path}:{lineno}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise GptclsError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    columns: dict[str, None] = {}
    for where, obj in records:
        if not isinstance(obj, dict):
            raise GptclsError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        columns.update(dict.fromkeys(obj))
    if not records:
        raise GptclsError(f"{path} has no data rows")

    def cells(text_col: str, label_col: str | None) -> Cells:
        for where, obj in records:
            yield where, obj.get(text_col), obj.get(label_col) if label_col is not None else None

    return _Source(list(columns), cells)


def _parquet_source(path: Path) -> _Source:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GptclsError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise GptclsError(f"{path} is not a readable Parquet file ({exc})") from None

    def cells(text_col: str, label_col: str | None) -> Cells:
        kind = schema.field(text_col).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or getattr(pa.types, "is_string_view", lambda _: False)(kind)):
            raise GptclsError(f"{path}: text column {text_col!r} holds {kind}, not strings; "
                              "is --text-column the right column?")
        try:
            table = pq.read_table(path, columns=[c for c in (text_col, label_col) if c is not None])
        except (pa.ArrowException, OSError) as exc:
            raise GptclsError(f"{path} is not a readable Parquet file ({exc})") from None
        if table.num_rows == 0:
            raise GptclsError(f"{path} has column names but no data rows")
        texts = table.column(text_col).to_pylist()
        labels = table.column(label_col).to_pylist() if label_col else [None] * len(texts)
        for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1):
            yield f"{path}: row {i}", t, lab

    return _Source(list(schema.names), cells)


# --------------------------------------------------------------------------- shared pass


def _choose_columns(path: Path, columns: list[str], text_column: str | None,
                    label_column: str | None, require_labels: bool) -> tuple[str, str | None]:
    text_col = _find_column(path, columns, text_column, TEXT_ALIASES)
    label_col = _find_column(path, columns, label_column, LABEL_ALIASES)
    for role, col in (("text", text_col), ("label", label_col if require_labels else "")):
        if col is None:
            raise GptclsError(f"{path}: cannot tell which column holds the {role}; available "
                              f"columns: {_names(columns)}; pass --{role}-column NAME")
    if label_col == text_col:
        raise GptclsError(f"{path}: text and label are both column {text_col!r}")
    return text_col, label_col


def _find_column(path: Path, columns: list[str], wanted: str | None,
                 aliases: Sequence[str]) -> str | None:
    # reversed(): with duplicate names (after case folding) the first column wins.
    folded = {c.strip().casefold(): c for c in reversed(columns)}
    if wanted is None:
        return next((folded[a] for a in aliases if a in folded), None)
    if wanted in columns:
        return wanted
    hit = folded.get(wanted.strip().casefold())
    if hit is None:
        raise GptclsError(f"{path}: no column {wanted!r}; available columns: {_names(columns)}")
    return hit


def _names(columns: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f", ... ({len(columns) - limit} more)" if len(columns) > limit else "")


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _collect(cells: Cells, report: LoadReport, normalize: bool, strict: bool,
             require_labels: bool) -> list[Example]:
    examples = []
    for where, raw_text, raw_label in cells:
        report.rows_read += 1
        text = _as_text(raw_text, where, report.text_column)
        if not text.strip():
            if strict:
                raise GptclsError(f"{where}: empty text in column {report.text_column!r}")
            report.dropped_empty_text += 1
            continue
        label = _as_label(raw_label, where)
        if not label.strip():
            if strict and require_labels:
                raise GptclsError(f"{where}: no label in column {report.label_column!r}")
            if require_labels:
                report.dropped_missing_label += 1
                continue
            label = ""
        elif normalize:
            norm = label.strip().casefold()
            if norm != label:
                report.merged_labels.setdefault(norm, Counter())[label] += 1
            label = norm
        examples.append(Example(text=text, label=label))
    return examples


def _as_text(value: object, where: str, column: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GptclsError(f"{where}: text in column {column!r} is {type(value).__name__}, "
                          "not a string; is --text-column the right column?")
    return value


def _as_label(value: object, where: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a pandas column with NaNs means class "1"
    if isinstance(value, str | int | float):
        return str(value)
    raise GptclsError(f"{where}: label is {type(value).__name__}, expected a string or number")


def _finish(examples: list[Example], report: LoadReport) -> None:
    if not examples:
        raise GptclsError(f"no usable rows in {report.path}: {report.rows_read:,} read, "
                          f"{report.dropped_empty_text:,} with empty text, "
                          f"{report.dropped_missing_label:,} with no label")
    report.merged_labels = {k: dict(v) for k, v in sorted(report.merged_labels.items())}
    counts = Counter(ex.label for ex in examples if ex.label)  # "": unlabelled rows kept
    report.label_counts = dict(sorted(counts.items()))
    distinct = len(counts)
    if distinct > _MANY_LABELS and distinct > 0.5 * len(examples):
        report.warnings.append(f"label column {report.label_column!r} has {distinct:,} distinct "
                               f"values in {len(examples):,} rows; is this the text column?")
