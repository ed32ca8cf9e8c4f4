"""`gptcls audit` through the CLI: files written, summary printed, bad input one line exit 2."""

from __future__ import annotations

import csv
import json

import pytest
from evaluation.test_audit import FLIPPED, word_rows

from gptcls.cli.main import main

TINY = ["--model", "gpt2-tiny", "--weights", "random", "--device", "cpu"]


def _write(path, texts, labels):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels, strict=True))


def test_audit_writes_ranked_csv_duplicates_and_summary(tmp_path, capsys):
    texts, labels = word_rows()
    texts += [texts[0], "~ " + texts[1]]  # an exact duplicate (other label), a near one
    labels += ["place", labels[1]]
    data = tmp_path / "words.csv"
    _write(data, texts, labels)
    out = tmp_path / "audit"
    assert main(["audit", str(data), "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "probable label errors:" in printed and "top " in printed
    with (out / "audit.csv").open() as f:
        ranked = list(csv.DictReader(f))
    # row 401 (index 400) repeats a fruit text labelled place: a label error too
    flagged = [int(r["row"]) - 1 for r in ranked]
    assert set(flagged) <= {*FLIPPED, 400} and len(flagged) >= len(FLIPPED) // 2
    assert [r["rank"] for r in ranked[:2]] == ["1", "2"]
    assert set(ranked[0]) >= {"given", "suggested", "margin", "p_fruit", "p_place", "text"}
    with (out / "duplicates.csv").open() as f:
        dups = list(csv.DictReader(f))
    assert {("conflict", "1"), ("exact", "401"), ("near", "2"), ("near", "402")} <= {
        (d["kind"], d["row"]) for d in dups}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 402 and summary["conflicting_label_groups"] == 1
    assert summary["probable_label_errors"] == len(ranked)


def test_audit_of_split_files_reports_shared_texts(tmp_path, capsys):
    texts, labels = word_rows(60)
    files = {}
    for name, (a, b) in {"train": (0, 40), "validation": (40, 50), "test": (50, 60)}.items():
        files[name] = tmp_path / f"{name}.csv"
        _write(files[name], texts[a:b] + ([texts[3]] if name == "test" else []),
               labels[a:b] + ([labels[3]] if name == "test" else []))
    out = tmp_path / "audit"
    assert main(["audit", "--train", str(files["train"]), "--validation",
                 str(files["validation"]), "--test", str(files["test"]), "--out", str(out),
                 *TINY]) == 0
    assert "texts shared across splits: 1" in capsys.readouterr().out
    with (out / "duplicates.csv").open() as f:
        shared = [(d["split"], d["row"]) for d in csv.DictReader(f) if d["kind"] == "cross-split"]
    assert sorted(shared) == [("test", "11"), ("train", "4")]


@pytest.mark.parametrize("case, message", [
    ("oneclass", "at least 2 classes"),
    ("missing", "not found"),
    ("both", "not both"),
    ("none", "nothing to audit"),
    ("folds", "--folds must be at least 2"),
])
def test_bad_input_is_one_line_exit_2(case, message, tmp_path, capsys):
    data = tmp_path / "d.csv"
    _write(data, ["a b", "c d", "e f"], ["x"] * 3 if case == "oneclass" else ["x", "y", "x"])
    out = tmp_path / "audit"
    argv = {"oneclass": [str(data)], "missing": [str(tmp_path / "nope.csv")],
            "both": [str(data), "--train", str(data)], "none": [],
            "folds": [str(data), "--folds", "1"]}[case]
    assert main(["audit", *argv, "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_rows_are_the_files_data_rows_when_rows_are_dropped(tmp_path):
    texts, labels = word_rows()
    texts += [texts[0]]  # an exact duplicate with another label: a conflict group
    labels += ["place"]
    data = tmp_path / "gaps.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            if i % 50 == 7:  # rows the reader drops: an empty text, then no label
                w.writerows([["", "fruit"], ["a text with no label", ""]])
            if i == 100:
                f.write("\n")  # a blank line is no row
            w.writerow([text, label])
    with data.open(newline="") as f:
        source = {n: r for n, r in enumerate(csv.DictReader(f), 1)}  # data row -> cells
    gaps = sum(i % 50 == 7 for i in range(len(texts)))
    assert len(source) == len(texts) + 2 * gaps  # 16 rows the audit's reader drops
    out = tmp_path / "audit"
    assert main(["audit", str(data), "--out", str(out), *TINY]) == 0
    with (out / "audit.csv").open() as f:
        ranked = list(csv.DictReader(f))
    with (out / "duplicates.csv").open() as f:
        dups = list(csv.DictReader(f))
    assert ranked and {d["kind"] for d in dups} >= {"conflict", "exact"}
    for r in ranked:  # each row number points at that row of the file
        assert (source[int(r["row"])]["text"], source[int(r["row"])]["label"]) == (
            r["text"], r["given"])
    for d in dups:
        assert (source[int(d["row"])]["text"], source[int(d["row"])]["label"]) == (
            d["text"], d["label"])
    # The duplicate is the file's last row: its number is not shifted by the 16 dropped.
    assert max(int(d["row"]) for d in dups if d["kind"] == "conflict") == len(source)
