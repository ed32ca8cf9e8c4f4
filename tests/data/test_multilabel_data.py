"""Multi-label files: a separated list in one column or several 0/1 columns, empty label sets,
the random split, and the options that conflict with --multi-label."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gptcls.data.multilabel import (
    check_multi_label,
    indicator_rows,
    multi_label_values,
    parse_label_set,
    read_multilabel,
)
from gptcls.data.splits import load_splits
from gptcls.errors import GptclsError
from gptcls.options import DataOptions


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def opts(path: Path, **kw) -> DataOptions:
    return DataOptions(data=str(path), multi_label=True, **kw)


def test_parse_label_set():
    assert parse_label_set(" Sports| politics |sports||", "|", "x") == ("politics", "sports")
    assert parse_label_set("A;b", ";", "x", normalize=False) == ("A", "b")
    assert parse_label_set(None, "|", "x") == ()
    assert parse_label_set(3.0, "|", "x") == ("3",)


def test_one_column_list(tmp_path):
    path = write(tmp_path / "d.csv", ["text", "tags"],
                 [["a", "x|y"], ["b", ""], ["c", "Y"], ["", "x"], ["d", " x "]])
    examples, report = read_multilabel(path, opts(path, label_column="tags"))
    assert [(e.text, e.labels, e.label) for e in examples] == [
        ("a", ("x", "y"), "x|y"), ("c", ("y",), "y"), ("d", ("x",), "x")]
    assert report.label_counts == {"x": 2, "y": 2}
    assert report.dropped_empty_text == 1
    lines = "\n".join(report.lines())
    assert "warning: 1 row with an empty label set dropped (--strict rejects them)" in lines
    assert "dropped 1 row with no label" in lines and report.dropped_missing_label == 1


def test_indicator_columns(tmp_path):
    path = write(tmp_path / "d.csv", ["body", "sports", "politics", "tech"],
                 [["a", "1", "0", "1"], ["b", "0", "0", "0"], ["c", "0", "1", ""],
                  ["d", "true", "no", "0"]])
    examples, report = read_multilabel(path, opts(path, text_column="body",
                                                  label_column="sports,politics,tech"))
    assert [e.labels for e in examples] == [("sports", "tech"), ("politics",), ("sports",)]
    assert "1 row with an empty label set" in "\n".join(report.lines())
    assert indicator_rows(examples, ["politics", "sports", "tech"]) == [
        [0, 1, 1], [1, 0, 0], [0, 1, 0]]


def test_bad_indicator_and_strict(tmp_path):
    path = write(tmp_path / "d.csv", ["text", "a", "b"], [["t", "1", "2"]])
    with pytest.raises(GptclsError, match="0/1 label columns hold 0 or 1"):
        read_multilabel(path, opts(path, label_column="a,b"))
    path = write(tmp_path / "e.csv", ["text", "labels"], [["t", "a"], ["u", ""]])
    with pytest.raises(GptclsError, match=r"e.csv:3: empty label set"):
        read_multilabel(path, opts(path, strict=True))
    with pytest.raises(GptclsError, match="no column 'nope'"):
        read_multilabel(path, opts(path, label_column="labels,nope"))


def test_split_is_random_and_seeded(tmp_path):
    rows = [[f"text {i}", ["a", "b", "a|b"][i % 3]] for i in range(60)]
    path = write(tmp_path / "d.csv", ["text", "labels"], rows)
    logged: list[str] = []
    s1 = load_splits(opts(path, balance="none"), tmp_path / "out", logged.append)
    s2 = load_splits(opts(path, balance="none"), None, lambda m: None)
    assert [e.text for e in s1.train] == [e.text for e in s2.train]
    assert (len(s1.train), len(s1.validation), len(s1.test)) == (42, 6, 12)
    assert s1.labels == ["a", "b"]
    assert any("split at random (seed 123)" in m for m in logged)
    written = list(csv.reader((tmp_path / "out" / "test.csv").open()))
    assert written[0] == ["text", "label"] and {r[1] for r in written[1:]} <= {"a", "b", "a|b"}
    weighted = load_splits(opts(path, balance="weighted"), None, lambda m: None)
    n, pos = len(weighted.train), [sum(lab in e.labels for e in weighted.train)
                                   for lab in ("a", "b")]
    assert weighted.class_weights == pytest.approx([(n - p) / p for p in pos])


def test_one_label_only(tmp_path):
    path = write(tmp_path / "d.csv", ["text", "labels"], [[f"t{i}", "a"] for i in range(20)])
    with pytest.raises(GptclsError, match="only one label"):
        load_splits(opts(path, balance="none"), None, lambda m: None)


def test_option_conflicts():
    from gptcls.recipes import options_with_recipe

    assert multi_label_values({"multi_label": True})["balance"] == "none"
    assert multi_label_values({"multi_label": True, "balance": "weighted"})["balance"] == \
        "weighted"
    assert multi_label_values({"balance": "undersample"}) == {"balance": "undersample"}
    check_multi_label(options_with_recipe("out", multi_label=True))
    check_multi_label(options_with_recipe("out", balance="undersample"))
    for given, match in (({"balance": "undersample"}, "--balance undersample does not apply"),
                         ({"threshold": 0.3}, "--threshold"),
                         ({"max_fpr": 0.1, "prior": "train"}, "--max-fpr, --prior")):
        with pytest.raises(GptclsError, match=match):
            check_multi_label(options_with_recipe("out", multi_label=True, **given))
    with pytest.raises(GptclsError, match="--label-separator goes with --multi-label"):
        check_multi_label(options_with_recipe("out", label_separator=";"))
