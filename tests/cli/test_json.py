"""`classify --json` (JSON Lines: text, label, probabilities) and `evaluate --json`."""

import json

import numpy as np
import pytest

from gptcls.cli.common import prediction_records
from gptcls.cli.main import main

TEXTS = ["Free entry! Text WIN now", "see you soon", "Ünïcode \"quoted\"\ttabbed"]


def test_classify_json_is_one_object_per_text_and_nothing_else(tiny_run, capsys):
    assert main(["classify", str(tiny_run), *TEXTS, "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]  # every stdout line is JSON
    assert [r["text"] for r in records] == TEXTS
    assert main(["classify", str(tiny_run), *TEXTS]) == 0
    plain = [line.split("\t", 2) for line in capsys.readouterr().out.splitlines()]
    for r, (label, p, _) in zip(records, plain, strict=True):
        assert set(r) == {"text", "label", "probabilities"}
        assert set(r["probabilities"]) == {"ham", "spam"}
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == label  # the same decision as the plain output
        assert r["probabilities"][label] == pytest.approx(float(p), abs=5e-5)


def test_quiet_classify_json_with_stdin(tiny_run, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("first text\n\nsecond text\n"))
    assert main(["-q", "classify", str(tiny_run), "-", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["first text",
                                                                      "second text"]
    assert err == ""


def test_evaluate_json_prints_the_report_it_writes(tiny_run, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(["evaluate", str(tiny_run), "--data", str(tiny_run / "test.csv"), "--json",
                 "--out", str(report)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(report.read_text())
    assert 0.0 <= printed["accuracy"] <= 1.0


class _Clf:
    labels = ["a", "b", "c"]

    def labels_from_proba(self, probs: np.ndarray) -> list[str]:
        return [self.labels[int(i)] for i in probs.argmax(-1)]


def test_prediction_records_are_plain_json_types():
    probs = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]], dtype=np.float32)
    records = prediction_records(_Clf(), ["x", "y"], probs)
    assert [r["label"] for r in records] == ["b", "a"]
    assert records[1]["probabilities"] == pytest.approx({"a": 0.9, "b": 0.05, "c": 0.05})
    assert json.loads(json.dumps(records)) == records  # floats, not numpy scalars


def test_evaluate_takes_the_file_as_an_argument_or_as_data(tiny_run, capsys):
    """`gptcls evaluate RUN FILE` (as predict takes its input) reports what --data FILE does."""
    test = str(tiny_run / "test.csv")
    assert main(["evaluate", str(tiny_run), test, "--json"]) == 0
    positional = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tiny_run), test, "--data", test, "--json"]) == 0  # the same
    assert json.loads(capsys.readouterr().out) == positional
    assert main(["evaluate", str(tiny_run), "--data", test, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == positional
