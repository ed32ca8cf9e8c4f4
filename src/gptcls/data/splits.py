"""From a data source to train/validation/test splits: the one place that decides how.

Single file: read (any format, see labelled.py), check, balance, split (the chapter's random
split for two balanced classes; stratified otherwise, see partition.py), warn about leakage,
write the CSVs (for a dry run: nothing). Or separate --train/--validation/--test files, used
as they are.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gptcls.data.examples import SPLIT_NAMES, Example, PathLike, label_mapping, n_rows
from gptcls.data.label_names import parse_label_names, rename_labels
from gptcls.data.labelled import LoadReport, read_labelled
from gptcls.data.multilabel import multilabel_parts
from gptcls.data.partition import (
    balance_undersample,
    class_weights,
    leakage_warnings,
    random_split,
    resolved_balance,
    stratified_split,
)
from gptcls.data.rare import drop_rare
from gptcls.data.readers import open_table
from gptcls.data.sms import SMS_LABELS, fetch_sms_spam, read_sms_file
from gptcls.errors import GptclsError
from gptcls.files import atomic_write_bytes
from gptcls.log import line_logger
from gptcls.options import BALANCE_MODES, DataOptions


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[str]
    class_weights: list[float] | None = None
    notes: list[str] = field(default_factory=list)  # leakage warnings
    reports: list[LoadReport] = field(default_factory=list)  # one per file read
    balance: str = "undersample"
    balanced: tuple[int, int] | None = None  # (rows kept, rows before) when undersampled
    # Label counts of the data before balancing (the training file's, given three files): the
    # prior the run's prior-aware figures are reweighted to (evaluation/prior.py).
    source_counts: dict[str, int] | None = None
    dropped_rare: dict[str, int] = field(default_factory=dict)  # rare label -> rows dropped

    def __getitem__(self, name: str) -> list[Example]:
        return getattr(self, name)


def load_splits(opts: DataOptions, out_dir: Path | None = None,
                log: Callable[[str], None] | None = None) -> Splits:
    """Read, check, balance and split the data; write train/validation/test.csv into out_dir
    (None: write nothing, for a dry run). Every check runs before anything is written.
    `log` gets the lines worth telling the user (default: the "gptcls.data.splits" logger)."""
    log = log or line_logger(__name__)
    if opts.balance not in BALANCE_MODES:
        raise GptclsError(f"unknown --balance {opts.balance!r}; use one of {BALANCE_MODES}")
    if opts.multi_label:  # label sets: read and split by multilabel.py
        parts, labels, weights, notes, reports = multilabel_parts(opts, log)
        balance = "none" if opts.balance == "auto" else opts.balance
        splits = Splits(*parts, labels, weights, notes, reports, balance)
        if out_dir is not None:
            write_splits(out_dir, splits)
        return splits
    reports: list[LoadReport] = []
    given = [opts.train, opts.validation, opts.test]
    if any(given):
        if not all(given) or opts.data:
            raise GptclsError("give all three of --train, --validation and --test (and no --data)"
                              ", or one --data file to split")
        read = _given_splits(given, opts, log, reports)
    else:
        read = _split_one(opts.data or fetch_sms_spam(opts.cache), opts, log, reports)
    (train, validation, test), labels, source, balance, dropped, balanced = read
    notes = leakage_warnings(train, validation, test)
    for line in notes:
        log(f"warning: {line}")
    weights = class_weights(train, labels) if balance == "weighted" else None
    for name, part in zip(SPLIT_NAMES, (train, validation, test), strict=True):
        if not part:
            raise GptclsError(f"the {name} split is empty; use more data or other --split")
    splits = Splits(train, validation, test, labels, weights, notes, reports, balance,
                    balanced, dict(source), dropped)
    if out_dir is not None:
        write_splits(out_dir, splits)
    return splits


# What the two ways of giving data resolve to: the three splits, the labels, the source's class
# counts, the balance mode, the rare labels dropped, and (undersampling) rows kept of rows read.
_Read = tuple[list[list[Example]], list[str], Counter, str, dict[str, int],
              tuple[int, int] | None]


def _given_splits(paths: list, opts: DataOptions, log: Callable[[str], None],
                  reports: list[LoadReport]) -> _Read:
    """--train, --validation and --test: read as given (never balanced by undersampling)."""
    parts = [_read(p, opts, log, reports) for p in paths]
    dropped = _drop_rare(parts, reports, opts, log)
    parts = _named(parts, opts, log)
    check_trainable(parts[0])
    labels = label_mapping([e for p in parts for e in p])
    balance = resolved_balance(opts.balance, [r.format for r in reports], True)
    return parts, labels, Counter(e.label for e in parts[0]), balance, dropped, None


def _split_one(path: str | Path, opts: DataOptions, log: Callable[[str], None],
               reports: list[LoadReport]) -> _Read:
    """One --data file: read, balanced as --balance says, split by --split and --split-seed."""
    parts = [_read(path, opts, log, reports)]
    dropped = _drop_rare(parts, reports, opts, log)
    examples = _named(parts, opts, log)[0]
    check_trainable(examples)
    labels = label_mapping(examples)
    source = Counter(e.label for e in examples)
    balance = resolved_balance(opts.balance, [r.format for r in reports], False)
    if opts.balance == "auto":
        log(_AUTO[balance])
    balanced = None
    if balance == "undersample":
        before = len(examples)
        examples = balance_undersample(examples, opts.split_seed)
        balanced = (len(examples), before)
        log(f"balanced by undersampling: {len(examples):,} of {before:,} rows kept")
    # Two balanced classes: the chapter's random split. Otherwise keep each class's share.
    stratify = len(labels) > 2 or balance != "undersample"
    split = stratified_split if stratify else random_split
    return (list(split(examples, opts.split, opts.split_seed)), labels, source, balance, dropped,
            balanced)


_AUTO = {
    "undersample": "balance auto: the SMS Spam Collection is undersampled as the chapter does "
                   "(--balance none keeps every row)",
    "none": "balance auto: every row kept, classes as they come (--balance weighted weights "
            "the loss by class, undersample balances as the chapter does)",
    "weighted": "balance auto: every row kept, the loss weighted by inverse class frequency "
                "(--balance none: unweighted; undersample: as the chapter does)",
}


def write_splits(out_dir: Path, splits: Splits) -> None:
    """train/validation/test.csv into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in SPLIT_NAMES:
        write_split_csv(out_dir / f"{name}.csv", splits[name], splits.labels)


def _read(path: str | Path, opts: DataOptions, log: Callable[[str], None],
          reports: list[LoadReport]) -> list[Example]:
    examples, report = read_labelled(path, opts.format, opts.text_column, opts.label_column,
                                     opts.encoding, opts.normalize_labels, opts.strict,
                                     no_header=opts.no_header, label_level=opts.label_level)
    reports.append(report)
    for line in report.lines():
        log(line)
    return examples


def _named(parts: list[list[Example]], opts: DataOptions,
           log: Callable[[str], None]) -> list[list[Example]]:
    """--label-names: every part with its labels' names (after the rare labels are dropped,
    whose rows are reported as the file writes them)."""
    if opts.label_names is None:
        return parts
    names = parse_label_names(opts.label_names, opts.normalize_labels)
    renamed = [rename_labels(part, names, normalize=opts.normalize_labels) for part in parts]
    log("labels named: " + ", ".join(f"{code} -> {name}" for code, name in names.items()))
    unused = sorted(names.keys() - {e.label for part in parts for e in part})
    if unused:
        log(f"warning: --label-names names {unused}, which no row kept for training has")
    return renamed


def _drop_rare(parts: list[list[Example]], reports: Sequence[LoadReport], opts: DataOptions,
               log: Callable[[str], None]) -> dict[str, int]:
    rows: dict[str, list[str]] = {}
    for r in reports:  # a label rare in two of the files: its rows in both
        for k, v in r.label_rows.items():
            rows.setdefault(k, []).extend(v)
    return drop_rare(parts, rows, opts.keep_rare_labels, opts.strict, log)


def describe_splits(splits: Splits) -> str:
    """A short summary of what training would use: sources, drops, balance, labels per split,
    leakage (what `gptcls train --dry-run` prints)."""
    lines = []
    for r in splits.reports:
        dropped = [f"{n_rows(n)} {why}" for n, why in ((r.dropped_empty_text, "with empty text"),
                                                       (r.dropped_missing_label, "with no label"))
                   if n]
        label = f"label column {r.label_column!r}" if r.label_column else "no label column"
        lines.append(f"source: {r.path} (format {r.format}, text column {r.text_column!r}, "
                     f"{label}): {n_rows(r.rows_read)} read"
                     + (f", dropped {' and '.join(dropped)}" if dropped else ", none dropped"))
        lines += [f"  warning: {w}" for w in r.warnings]
    balance = splits.balance
    if splits.balanced is not None:
        balance += f" ({splits.balanced[0]:,} of {splits.balanced[1]:,} rows kept)"
    if splits.class_weights is not None:
        balance += " (loss weights " + ", ".join(
            f"{k} {w:.3g}" for k, w in zip(splits.labels, splits.class_weights, strict=True)) + ")"
    if splits.dropped_rare:
        lines.append("rare labels dropped (probable typos): " + ", ".join(
            f"{k!r} ({n_rows(n)})" for k, n in splits.dropped_rare.items()))
    lines.append(f"balance: {balance}")
    parts = [splits[name] for name in SPLIT_NAMES]
    counts = [Counter(lab for ex in part for lab in ex.labels or (ex.label,)) for part in parts]
    width = max(len("total"), *(len(k) for k in splits.labels))
    lines.append(f"{len(splits.labels)} labels".ljust(width + 2)
                 + "".join(f"{name:>12}" for name in SPLIT_NAMES))
    for name in splits.labels:
        lines.append(f"  {name:<{width}}" + "".join(f"{c[name]:>12,}" for c in counts))
    lines.append(f"  {'total':<{width}}" + "".join(f"{len(p):>12,}" for p in parts))
    lines += [f"leakage: {note}" for note in splits.notes] or ["leakage: no text is in two splits"]
    return "\n".join(lines)


def check_trainable(examples: Sequence[Example]) -> None:
    """Raise GptclsError unless the examples can train a classifier (>= 2 classes, real text)."""
    if not examples:
        raise GptclsError("no examples to train on")
    if all(not ex.text.strip() for ex in examples):
        raise GptclsError("all texts are empty; is --text-column the right column?")
    unlabelled = sum(1 for ex in examples if ex.label == "")
    if unlabelled:
        raise GptclsError(f"{n_rows(unlabelled)} without a label; training needs a label on each")
    classes = sorted({ex.label for ex in examples})
    if len(classes) < 2:
        raise GptclsError(f"only one class ({classes[0]!r}) in the data; a classifier needs "
                          "at least 2 (is --label-column the right column?)")


# --------------------------------------------------------------------------- CSV splits


def write_split_csv(path: PathLike, examples: Iterable[Example], labels: Sequence[str]) -> None:
    """Write `text,label` rows (label as class name), atomically, as UTF-8."""
    known = set(labels)
    buf = io.StringIO()
    # QUOTE_ALL + "\n": every text survives quotes, commas, \r and \n, and the file
    # reads back identically with any RFC 4180 reader.
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["text", "label"])
    for ex in examples:
        if ex.label not in known and ex.labels is None:  # a label set: joined, its own check
            raise GptclsError(f"label {ex.label!r} is not one of the classes {list(labels)}")
        writer.writerow([ex.text, ex.label])
    try:
        atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
    except OSError as exc:
        raise GptclsError(f"cannot write {path} ({exc.strerror or exc})") from exc


def read_split_csv(path: PathLike) -> list[Example]:
    """Read a split written by `write_split_csv` (any CSV with `text` and `label` columns)."""
    table = open_table(Path(path), "csv")
    try:
        missing = {"text", "label"} - set(table.columns)
        if missing:
            raise GptclsError(f"{table.path}: missing column(s) {sorted(missing)}")
        examples = []
        select = [table.columns.index("text"), table.columns.index("label")]
        for n, (text, label) in table.read(select):
            if text is None or label is None:
                raise GptclsError(f"{table.where(n)}: row has too few fields")
            examples.append(Example(text=text, label=label))
    finally:
        table.close()
    return examples


def prepare_sms_splits(
    data_path: PathLike | None,
    out_dir: PathLike,
    cache: PathLike | None = None,
    seed: int = 123,
    balance: bool = True,
) -> dict:
    """Local file or download -> parse -> (balance) -> split -> train/validation/test.csv.

    Returns {"train", "validation", "test": list[Example], "labels": list[str],
    "source": Path}.
    """
    source = Path(data_path) if data_path is not None else fetch_sms_spam(cache)
    examples = read_sms_file(source)
    labels = label_mapping(examples, order=SMS_LABELS)
    if balance:
        examples = balance_undersample(examples, seed=seed)
    splits = dict(zip(SPLIT_NAMES, random_split(examples, seed=seed), strict=True))
    out = Path(out_dir)
    for name, split in splits.items():
        write_split_csv(out / f"{name}.csv", split, labels)
    return {**splits, "labels": labels, "source": source}
