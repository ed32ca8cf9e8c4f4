"""The labelled-data pass: rows of any format (readers.py) -> examples plus a report.

Every format reader only yields raw cells; this one pass drops empty rows, normalises labels
and reports, so all formats behave the same. Splitting lives in splits.py.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcls.data.examples import Example, PathLike, n_rows
from gptcls.data.formats.table import Table
from gptcls.data.readers import open_table, role_column
from gptcls.errors import GptclsError

# A label column with this many distinct values (and > half the rows) is probably free text.
_MANY_LABELS = 100
_SHOW_CLASSES = 10

Cells = Iterator[tuple[str, Any, Any]]


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
            out.append(f"dropped {n_rows(self.dropped_empty_text)} with empty text")
        if self.dropped_missing_label:
            out.append(f"dropped {n_rows(self.dropped_missing_label)} with no label")
        for norm, variants in self.merged_labels.items():
            raw = ", ".join(json.dumps(v, ensure_ascii=False) for v in variants)
            n = sum(variants.values())
            # One variant and no rows already spelled `norm`: a rename, nothing was merged.
            merged = len(variants) > 1 or self.label_counts.get(norm, 0) > n
            verb = "merged" if merged else "renamed"
            out.append(
                f"labels {verb}: {raw} -> {json.dumps(norm, ensure_ascii=False)} "
                f"({n_rows(n)})"
            )
        out += [f"warning: {w}" for w in self.warnings]
        return out


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
    table = open_table(path, format, encoding, named=(text_column, label_column))
    try:
        if table.empty:
            what = "column names but no data rows" if table.columns else "no data rows"
            raise GptclsError(f"{path} has {what}")
        if table.format == "sms" and {text_column, label_column} - {None, "text", "label"}:
            raise GptclsError(f"{path} has no header row (headerless 'label<TAB>text' lines), "
                              "so its columns are just 'label' and 'text'")
        text_col, label_col = _choose_columns(table, text_column, label_column, require_labels)
        report = LoadReport(str(path), table.format, text_col, label_col)
        examples = _collect(_cells(table, text_col, label_col), report, normalize_labels,
                            strict, require_labels)
    finally:
        table.close()
    report.warnings = list(table.warnings)
    _finish(examples, report)
    return examples, report


# --------------------------------------------------------------------------- shared pass


def _choose_columns(table: Table, text_column: str | None, label_column: str | None,
                    require_labels: bool) -> tuple[str, str | None]:
    text_col = role_column(table.path, table.columns, text_column, "text", required=False)
    label_col = role_column(table.path, table.columns, label_column, "label", required=False)
    role_column(table.path, table.columns, text_col, "text")  # raises with the columns
    if require_labels:
        role_column(table.path, table.columns, label_col, "label")
    if label_col == text_col:
        raise GptclsError(f"{table.path}: text and label are both column {text_col!r}")
    if table.arrow_schema is not None:
        _check_parquet_text(table, text_col)
    return text_col, label_col


def _check_parquet_text(table: Table, text_col: str) -> None:
    import pyarrow as pa

    kind = table.arrow_schema.field(text_col).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise GptclsError(f"{table.path}: text column {text_col!r} holds {kind}, not strings; "
                          "is --text-column the right column?")


def _cells(table: Table, text_col: str, label_col: str | None) -> Cells:
    ti = table.columns.index(text_col)
    if label_col is None:
        for n, (text,) in table.read([ti]):
            yield table.where(n), text, None
    else:
        for n, (text, label) in table.read([ti, table.columns.index(label_col)]):
            yield table.where(n), text, label


def _collect(cells: Cells, report: LoadReport, normalize: bool, strict: bool,
             require_labels: bool) -> list[Example]:
    examples = []
    for where, raw_text, raw_label in cells:
        report.rows_read += 1
        text = cell_text(raw_text, where, f"text in column {report.text_column!r}")
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


def cell_text(value: object, where: str, what: str) -> str:
    """A text cell as a string ("" for a missing value); any other type is a wrong column.
    `what` names the cell in the message (e.g. "text in column 'body'", "the text")."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GptclsError(f"{where}: {what} is {type(value).__name__}, not a string; is "
                          "--text-column the right column?")
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
