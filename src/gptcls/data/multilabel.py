"""Multi-label data: each text has a set of labels, written either as a separated list in one
column ("sports|politics") or as several 0/1 columns (--label-column sports,politics).

Rows whose label set is empty are counted and dropped (--strict rejects them). The split is
a seeded random one: stratifying by label set is not meaningful (most sets are rare), so the
seed alone makes it reproducible. Torch-free.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gptcls.data.columns import join_cells, text_columns
from gptcls.data.examples import Example, PathLike, n_rows
from gptcls.data.labelled import LoadReport
from gptcls.data.readers import find_column, open_table, role_column
from gptcls.errors import GptclsError

# Single-label options that mean nothing for label sets (flags as the user types them).
SINGLE_LABEL_OPTIONS = {"threshold": "--threshold", "max_fpr": "--max-fpr", "prior": "--prior"}
_TRUE = {"1", "1.0", "true", "yes", "y"}
_FALSE = {"0", "0.0", "false", "no", "n", ""}


def multi_label_values(values: dict[str, Any]) -> dict[str, Any]:
    """Given option values (name -> value, only those given) completed for a multi-label run:
    its default balance is none (undersampling label sets does not apply). An explicit
    --balance undersample stays, for `check_multi_label` to reject."""
    if values.get("multi_label") and "balance" not in values:
        return {"balance": "none", **values}
    return values


def check_multi_label(opts: Any) -> None:
    """Resolved RunOptions: --multi-label with a single-label option (or --balance undersample,
    given, or a RunOptions built directly, whose default it is) is an error; so is
    --label-separator without --multi-label."""
    data = opts.data
    if not data.multi_label:
        if data.label_separator != "|":
            raise GptclsError("--label-separator goes with --multi-label")
        return
    if data.balance == "undersample":
        raise GptclsError("--balance undersample does not apply to --multi-label (a text has "
                          "several labels); use none (the default) or weighted")
    given = [flag for name, flag in SINGLE_LABEL_OPTIONS.items()
             if getattr(opts, name) is not None]
    if given:
        raise GptclsError(f"{', '.join(given)}: single-label option(s); --multi-label chooses "
                          "a threshold per label on validation")
    if not data.label_separator:
        raise GptclsError("--label-separator must not be empty")


def read_multilabel(path: PathLike, opts: Any) -> tuple[list[Example], LoadReport]:
    """Examples with label sets (Example.labels) from one file, and the report of what was
    read and dropped. `opts`: DataOptions (format, columns, encoding, separator, strict)."""
    path = Path(path)
    label_spec = [c.strip() for c in (opts.label_column or "").split(",") if c.strip()]
    named = (*(opts.text_column or "").split(","), *label_spec)
    table = open_table(path, opts.format, opts.encoding, named=named, no_header=opts.no_header)
    try:
        if table.empty:
            raise GptclsError(f"{path} has no data rows")
        text_cols = (text_columns(table.path, table.columns, opts.text_column)
                     if opts.text_column else [str(role_column(path, table.columns, None, "text"))])
        label_cols = ([str(find_column(path, table.columns, c, ())) for c in label_spec]
                      if label_spec else [str(role_column(path, table.columns, None, "label"))])
        if set(label_cols) & set(text_cols):
            raise GptclsError(f"{path}: a column is both text and label: "
                              f"{sorted(set(label_cols) & set(text_cols))}")
        report = LoadReport(str(path), table.format, ",".join(text_cols), ",".join(label_cols),
                            notes=list(table.notes), text_columns=text_cols)
        select = [table.columns.index(c) for c in (*text_cols, *label_cols)]
        examples = _collect(table, select, text_cols, label_cols, report, opts)
    finally:
        table.close()
    report.warnings = list(table.warnings)
    if not examples:
        raise GptclsError(f"no usable rows in {path}: {report.rows_read:,} read, "
                          f"{report.dropped_empty_text:,} with empty text, "
                          f"{report.dropped_missing_label:,} with an empty label set")
    counts = Counter(lab for ex in examples for lab in ex.labels or ())
    report.label_counts = dict(sorted(counts.items()))
    if report.dropped_missing_label:  # the report's "dropped N rows with no label" counts them
        report.warnings.append(f"{n_rows(report.dropped_missing_label)} with an empty label "
                               "set dropped (--strict rejects them)")
    return examples, report


def _collect(table: Any, select: list[int], text_cols: list[str], label_cols: list[str],
             report: LoadReport, opts: Any) -> list[Example]:
    k, sep = len(text_cols), opts.label_separator
    examples = []
    for n, values in table.read(select):
        report.rows_read += 1
        where = table.where(n)
        text = join_cells(values[:k], where, text_cols)
        if not text.strip():
            if opts.strict:
                raise GptclsError(f"{where}: empty text in column {report.text_column!r}")
            report.dropped_empty_text += 1
            continue
        if len(label_cols) == 1:
            labels = parse_label_set(values[k], sep, where, opts.normalize_labels)
        else:
            labels = tuple(c for c, v in zip(label_cols, values[k:], strict=True)
                           if indicator(v, where, c))
        if not labels:
            if opts.strict:
                raise GptclsError(f"{where}: empty label set in {report.label_column!r} "
                                  "(--strict rejects such rows)")
            report.dropped_missing_label += 1
            continue
        examples.append(Example(text=text, label=sep.join(labels), labels=labels))
    return examples


def parse_label_set(cell: object, sep: str, where: str, normalize: bool = True
                    ) -> tuple[str, ...]:
    """"sports| Politics" -> ("politics", "sports"): split, stripped, case-folded (unless
    not `normalize`), deduplicated and sorted; a missing cell is the empty set."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ()
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    if not isinstance(cell, str | int | float):
        raise GptclsError(f"{where}: label is {type(cell).__name__}, expected text")
    parts = (p.strip() for p in str(cell).split(sep))
    return tuple(sorted({p.casefold() if normalize else p for p in parts if p}))


def indicator(cell: object, where: str, column: str) -> bool:
    """A 0/1 label column's cell (also true/false, yes/no; missing = 0)."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return False
    text = str(cell).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise GptclsError(f"{where}: column {column!r} holds {cell!r}; 0/1 label columns hold "
                      "0 or 1 (for a list of labels in one column, name only that column)")


def label_names(parts: Sequence[Sequence[Example]]) -> list[str]:
    """Every label of every split, sorted (a label's index is its logit)."""
    return sorted({lab for part in parts for ex in part for lab in ex.labels or ()})


def indicator_rows(examples: Sequence[Example], labels: Sequence[str]) -> list[list[int]]:
    """(N, K) 0/1 targets in `labels` order."""
    index = {lab: k for k, lab in enumerate(labels)}
    rows = []
    for ex in examples:
        row = [0] * len(labels)
        for lab in ex.labels or ():
            row[index[lab]] = 1
        rows.append(row)
    return rows


def targets(examples: Sequence[Example], labels: Sequence[str]) -> list[int] | list[list[int]]:
    """Training targets: class indices (single-label) or (N, K) 0/1 rows (multi-label)."""
    if examples and examples[0].labels is not None:
        return indicator_rows(examples, labels)
    return [labels.index(e.label) for e in examples]


def positive_weights(train: Sequence[Example], labels: Sequence[str]) -> list[float]:
    """--balance weighted for label sets: each label's negatives / positives in train (the
    pos_weight of binary cross-entropy), so a rare label's misses cost as much as its
    negatives together."""
    counts = Counter(lab for ex in train for lab in ex.labels or ())
    missing = [lab for lab in labels if not counts[lab]]
    if missing:
        raise GptclsError(f"label(s) {missing} have no training examples; cannot weight them")
    return [(len(train) - counts[lab]) / counts[lab] for lab in labels]


def read_multilabel_splits(paths: Sequence[PathLike], opts: Any, log: Callable[[str], None],
                           reports: list[LoadReport]) -> list[list[Example]]:
    """Each file read as label sets (its report logged and appended to `reports`)."""
    parts = []
    for path in paths:
        examples, report = read_multilabel(path, opts)
        reports.append(report)
        for line in report.lines():
            log(line.replace(" classes: ", " labels (rows with each): "))
        parts.append(examples)
    return parts


def label_set_counts(parts: Mapping[str, Sequence[Example]], labels: Sequence[str]
                     ) -> dict[str, dict[str, int]]:
    """Rows with each label per split (dry runs, reports)."""
    return {name: {lab: sum(lab in (ex.labels or ()) for ex in part) for lab in labels}
            for name, part in parts.items()}


def multilabel_parts(opts: Any, log: Callable[[str], None]
                     ) -> tuple[list[list[Example]], list[str], list[float] | None, list[str],
                                list[LoadReport]]:
    """(train/validation/test examples, label names, --balance weighted's positive weights,
    leakage notes, reports): three files as they are, or one file split at random with
    --split-seed (stratifying by label set is not meaningful: most sets are rare)."""
    from gptcls.data.partition import leakage_warnings, random_split

    reports: list[LoadReport] = []
    given = [opts.train, opts.validation, opts.test]
    if any(given):
        if not all(given) or opts.data:
            raise GptclsError("give all three of --train, --validation and --test (and no --data)"
                              ", or one --data file to split")
        parts = read_multilabel_splits(given, opts, log, reports)
    elif not opts.data:
        raise GptclsError("--multi-label needs your data: --data FILE (or --train, --validation "
                          "and --test)")
    else:
        examples = read_multilabel_splits([opts.data], opts, log, reports)[0]
        parts = list(random_split(examples, opts.split, opts.split_seed))
        log(f"split at random (seed {opts.split_seed}): stratifying by label set is not "
            "meaningful for multi-label data")
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if not part:
            raise GptclsError(f"the {name} split is empty; use more data or other --split")
    labels = label_names(parts)
    if len(labels) < 2:
        raise GptclsError(f"only one label ({labels[0]!r}) in the data; multi-label needs at "
                          "least 2 (is --label-separator right?)")
    notes = leakage_warnings(*parts)
    for line in notes:
        log(f"warning: {line}")
    weights = positive_weights(parts[0], labels) if opts.balance == "weighted" else None
    return parts, labels, weights, notes, reports
