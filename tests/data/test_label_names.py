"""--label-names: labels written as codes get names the run trains on, records, and applies
when it evaluates a file written with the codes."""

from __future__ import annotations

import json

import pytest

from gptcls.cli.main import main
from gptcls.data.examples import Example
from gptcls.data.label_names import parse_label_names, rename_labels
from gptcls.errors import GptclsError


def test_codes_are_matched_as_labels_are_read_and_names_kept_as_written():
    assert parse_label_names(" 1=World, 2 = Sci/Tech") == {"1": "World", "2": "Sci/Tech"}
    assert parse_label_names("HAM=Legit,Spam=Junk") == {"ham": "Legit", "spam": "Junk"}
    assert parse_label_names("HAM=Legit", normalize=False) == {"HAM": "Legit"}


@pytest.mark.parametrize("spec, message", [
    ("1World", "give CODE=NAME pairs"),
    ("1=World,=Sports", "give CODE=NAME pairs"),
    ("1=World,2=", "give CODE=NAME pairs"),
    ("1=World,1=Sports", "names '1' twice"),
    ("1=World,2=World", "gives two codes the same name"),
])
def test_a_malformed_spec_is_one_line(spec, message):
    with pytest.raises(GptclsError, match=message):
        parse_label_names(spec)


def test_rename_keeps_names_and_refuses_what_has_no_name():
    names = {"1": "World", "2": "Sports"}
    rows = [Example("a", "1"), Example("b", "sports")]  # a run's test.csv, read case-folded
    assert rename_labels(rows, names) == [Example("a", "World"), Example("b", "Sports")]
    with pytest.raises(GptclsError, match=r"no name to label\(s\) \['sports'\]"):
        rename_labels(rows, names, normalize=False)  # --no-normalize-labels: as written
    with pytest.raises(GptclsError, match=r"no name to label\(s\) \['3'\] of f.csv"):
        rename_labels([Example("c", "3")], names, "f.csv")


def test_a_run_trains_on_the_names_and_evaluate_renames_a_files_codes(sms_path, tmp_path,
                                                                      capsys):
    out = tmp_path / "named"
    assert main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data",
                 str(sms_path), "--out", str(out), "--epochs", "1",
                 "--label-names", "ham=Legit,spam=Junk"]) == 0
    printed = capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["labels"] == ["Junk", "Legit"] and cfg["label_names"] == "ham=Legit,spam=Junk"
    assert {line.split(",")[-1] for line in (out / "test.csv").read_text().splitlines()[1:]} \
        == {'"Junk"', '"Legit"'}
    assert "Junk" in printed and "Legit" in printed  # the report and the examples
    # The raw file (codes) and the run's own test.csv (names) score alike.
    raw = tmp_path / "raw.tsv"
    raw.write_text("ham\tsee you at six\nspam\tWIN a prize now, call 0800\n")
    assert main(["evaluate", str(out), str(raw), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2
    assert main(["evaluate", str(out), str(out / "test.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 300
    # A code the run has no name for: one line, exit 2.
    raw.write_text("ham\tsee you\nscam\tsend money\n")
    assert main(["evaluate", str(out), str(raw)]) == 2
    assert "gives no name to label(s) ['scam']" in capsys.readouterr().err


def test_label_names_is_refused_for_multi_label_data_before_reading_it(capsys):
    assert main(["train", "--data", "nonexistent.csv", "--multi-label",
                 "--label-names", "a=A"]) == 2
    assert "--label-names is for single-label data" in capsys.readouterr().err
