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

from gptcls.data.columns import TEXT_SEPARATOR, join_cells, text_columns
from gptcls.data.examples import Example, PathLike, n_rows
from gptcls.data.formats.prefixed import PREFIXED_FORMATS, SHAPES
from gptcls.data.formats.table import Table
from gptcls.data.rare import RARE_MAX
from gptcls.data.readers import open_table, role_column
from gptcls.errors import GptclsError

# A label column with this many distinct values (and > half the rows) is probably free text.
_MANY_LABELS = 100
_SHOW_CLASSES = 10
_SHOW_RENAMES = 3

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
    notes: list[str] = field(default_factory=list)  # what was decided: no header row, ...
    # the columns joined into the text (one: just text_column)
    text_columns: list[str] = field(default_factory=list)
    # label -> where its first rows are, for labels seen at most RARE_MAX times (typos)
    label_rows: dict[str, list[str]] = field(default_factory=dict)
    # read_labelled(number_rows=True): each example's 1-based data row in the file (the
    # records the reader yields, dropped ones counted; header and blank lines not), as
    # `predict` numbers them ("data row N"); None otherwise (no list for a training read)
    data_rows: list[int] | None = None

    def lines(self) -> list[str]:
        label = f"label column {self.label_column!r}" if self.label_column else "no label column"
        out = [f"read {self.rows_read:,} rows from {self.path} (format {self.format}, "
               f"{describe_text(self.text_columns or [self.text_column])}, {label})"]
        out += self.notes
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
        renames = []
        for norm, variants in self.merged_labels.items():
            raw = ", ".join(json.dumps(v, ensure_ascii=False) for v in variants)
            n = sum(variants.values())
            # One variant and no rows already spelled `norm`: a rename, nothing was merged.
            merged = len(variants) > 1 or self.label_counts.get(norm, 0) > n
            line = f"{raw} -> {json.dumps(norm, ensure_ascii=False)} ({n_rows(n)})"
            if merged:
                out.append(f"labels merged: {line}")
            else:
                renames.append(line)
        if len(renames) > _SHOW_RENAMES:  # every label of a file written in capitals (TREC)
            out.append(f"{len(renames):,} labels renamed (stripped and case-folded), e.g. "
                       f"{renames[0]}; --no-normalize-labels keeps them as written")
        else:
            out += [f"labels renamed: {line}" for line in renames]
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
    no_header: bool = False,
    label_level: str | None = None,
    number_rows: bool = False,
) -> tuple[list[Example], LoadReport]:
    """Read a labelled text file into examples plus a report of what was dropped or merged.

    `format` is one of FORMATS (default: from the extension, then the content). Columns are
    auto-detected from TEXT_ALIASES / LABEL_ALIASES unless named. Rows with empty text or no
    label are dropped and counted (each row once, empty text first), or with `strict` raise.
    With `require_labels=False` the label column is optional and unlabelled rows keep label "".
    `text_column` may list columns ("title,description"): their cells join into the text
    (columns.py). `label_level`: "coarse" keeps a COARSE:fine label's part before the colon
    (default for --format trec), "fine" all of it. `no_header`: see open_table.
    `number_rows`: also report each example's data row (report.data_rows).
    """
    path = Path(path)
    named = (*(text_column or "").split(","), label_column)
    table = open_table(path, format, encoding, named=named, no_header=no_header)
    try:
        if table.empty:
            what = "column names but no data rows" if table.columns else "no data rows"
            raise GptclsError(f"{path} has {what}")
        if table.format in ("sms", *PREFIXED_FORMATS) and (
                {text_column, label_column} - {None, "text", "label", "1", "2"}):
            shape = SHAPES.get(table.format, "'label<TAB>text'")
            raise GptclsError(f"{path} has no header row (headerless {shape} lines), "
                              "so its columns are just 'label' and 'text'")
        text_cols, label_col = _choose_columns(table, text_column, label_column, require_labels)
        report = LoadReport(str(path), table.format, ",".join(text_cols), label_col,
                            notes=list(table.notes), text_columns=text_cols,
                            data_rows=[] if number_rows else None)
        level = label_level or ("coarse" if table.format == "trec" else None)
        examples = _collect(_cells(table, text_cols, label_col), report, normalize_labels,
                            strict, require_labels, level)
    finally:
        table.close()
    report.warnings = list(table.warnings)
    _finish(examples, report)
    return examples, report


# --------------------------------------------------------------------------- shared pass


def _choose_columns(table: Table, text_column: str | None, label_column: str | None,
                    require_labels: bool) -> tuple[list[str], str | None]:
    if text_column is not None:
        text_cols = text_columns(table.path, table.columns, text_column)
    else:  # detected, or raises with the columns and the flag to pass
        text_cols = [str(role_column(table.path, table.columns, None, "text"))]
    label_col = role_column(table.path, table.columns, label_column, "label", required=False)
    if require_labels:
        role_column(table.path, table.columns, label_col, "label")
    if label_col in text_cols:
        raise GptclsError(f"{table.path}: text and label are both column {label_col!r}")
    if table.arrow_schema is not None:
        for col in text_cols:
            _check_parquet_text(table, col)
    return text_cols, label_col


def _check_parquet_text(table: Table, text_col: str) -> None:
    import pyarrow as pa

    kind = table.arrow_schema.field(text_col).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)):
        raise GptclsError(f"{table.path}: text column {text_col!r} holds {kind}, not strings; "
                          "is --text-column the right column?")


def _cells(table: Table, text_cols: list[str], label_col: str | None) -> Cells:
    """(where, text joined from `text_cols`, raw label or None) per row."""
    select = [table.columns.index(c) for c in text_cols]
    if label_col is not None:
        select.append(table.columns.index(label_col))
    k = len(text_cols)
    for n, values in table.read(select):
        where = table.where(n)
        yield where, join_cells(values[:k], where, text_cols), values[k] if label_col else None


def _collect(cells: Cells, report: LoadReport, normalize: bool, strict: bool,
             require_labels: bool, level: str | None) -> list[Example]:
    examples = []
    seen: Counter[str] = Counter()
    for where, text, raw_label in cells:
        report.rows_read += 1
        if not text.strip():
            if strict:
                raise GptclsError(f"{where}: empty text in column {report.text_column!r}")
            report.dropped_empty_text += 1
            continue
        label = _as_label(raw_label, where)
        if level == "coarse":
            label = label.partition(":")[0]
        if not label.strip():
            if strict and require_labels:
                raise GptclsError(f"{where}: no label " + (
                    f"(expected {SHAPES[report.format]} lines)" if report.format in SHAPES
                    else f"in column {report.label_column!r}"))
            if require_labels:
                report.dropped_missing_label += 1
                continue
            label = ""
        elif normalize:
            norm = label.strip().casefold()
            if norm != label:
                report.merged_labels.setdefault(norm, Counter())[label] += 1
            label = norm
        seen[label] += 1
        if label and seen[label] <= RARE_MAX:  # where a label seen once or twice is (typos)
            report.label_rows.setdefault(label, []).append(where)
        examples.append(Example(text=text, label=label))
        if report.data_rows is not None:
            report.data_rows.append(report.rows_read)
    report.label_rows = {k: v for k, v in report.label_rows.items() if seen[k] <= RARE_MAX}
    return examples


def describe_text(columns: list[str]) -> str:
    """"text column 'body'" or "text columns 'title' + 'body' joined by '\\n'"."""
    if len(columns) == 1:
        return f"text column {columns[0]!r}"
    return (f"text columns {' + '.join(repr(c) for c in columns)} joined by "
            f"{TEXT_SEPARATOR!r}")


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
