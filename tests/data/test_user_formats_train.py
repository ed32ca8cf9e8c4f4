"""Each new way to bring data trains end to end (gpt2-tiny, random weights, 1 epoch, a small
subset of the real files); the joined columns are recorded in the run and applied by predict
and evaluate; bad input is one line, exit 2, nothing written."""

import csv
import json

import pytest
from helpers import SMS_PATH

from gptcls.cli.main import main

DATA = SMS_PATH.parents[1]
AG_NEWS = DATA / "ag_news" / "test.csv"
TREC_TRAIN = DATA / "trec" / "train_5500.label"
TINY = ["--model", "gpt2-tiny", "--weights", "random", "--epochs", "1", "--lr", "1e-3"]


def _head(src, dst, n, skip=0):
    dst.write_bytes(b"".join(src.open("rb").readlines()[skip:skip + n]))
    return dst


@pytest.fixture(scope="module")
def ag_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ag")
    data = _head(AG_NEWS, tmp / "ag.csv", 121)  # header + 120 rows
    out = tmp / "run"
    assert main(["train", "--data", str(data), "--text-column", "title,description",
                 "--out", str(out), *TINY]) == 0
    return out


def test_joined_columns_train_and_are_recorded(ag_run):
    cfg = json.loads((ag_run / "config.json").read_text())
    assert cfg["text_column"] == "title,description" and cfg["text_separator"] == "\n"
    assert cfg["labels"] == ["1", "2", "3", "4"]
    with (ag_run / "train.csv").open(newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    assert all("\n" in t for t in texts)  # every AG News row has a title and a description


def test_predict_joins_the_run_columns(ag_run, tmp_path):
    news = tmp_path / "news.csv"
    news.write_text("id,title,description\n1,Stocks rally,Markets rose on Monday.\n"
                    "2,Cup final,The home side won 2-1.\n")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(ag_run), str(news), str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["1", "2"] and all(r["label"] in "1234" for r in rows)
    # Same probabilities as classifying the joined text directly.
    from gptcls.classifier.classifier import Classifier

    clf = Classifier.load(ag_run, device="cpu")
    probs = clf.predict_proba(["Stocks rally\nMarkets rose on Monday."])[0]
    assert float(rows[0]["prob_1"]) == pytest.approx(float(probs[0]), abs=1e-5)


def test_evaluate_reads_the_run_columns(ag_run, tmp_path, capsys):
    data = _head(AG_NEWS, tmp_path / "eval.csv", 1)
    data.write_bytes(data.read_bytes() + b"".join(AG_NEWS.open("rb").readlines()[300:340]))
    out = tmp_path / "report.json"
    assert main(["evaluate", str(ag_run), "--data", str(data), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 40


@pytest.mark.parametrize("kind", ["trec", "fasttext", "headerless"])
def test_new_formats_train_end_to_end(kind, tmp_path, capsys):
    if kind == "trec":
        data, extra = _head(TREC_TRAIN, tmp_path / "q.label", 150), ["--balance", "none"]
    elif kind == "fasttext":
        data = tmp_path / "sms.txt"
        lines = SMS_PATH.read_text(encoding="utf-8").splitlines()[:150]
        data.write_text("".join(f"__label__{ln.partition(chr(9))[0]} "
                                f"{' '.join(ln.partition(chr(9))[2].split())}\n"
                                for ln in lines), encoding="utf-8")
        extra = []
    else:
        data = _head(AG_NEWS, tmp_path / "ag_noheader.csv", 150, skip=1)
        extra = ["--text-column", "2,3", "--label-column", "1"]
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, *extra]) == 0
    err = capsys.readouterr().err
    assert {"trec": "format trec", "fasttext": "format fasttext",
            "headerless": "no header row (column 1's first value"}[kind] in err
    assert "read 150 rows" in err
    assert (out / "config.json").is_file() and (out / "metrics.json").is_file()


@pytest.mark.parametrize(("case", "message"), [
    ("missing-column", "no column 'body' (of --text-column title,body); available columns: "
                       "'label', 'title', 'description'"),
    ("no-label-line", "q.label:2: no label (expected 'COARSE:fine text' lines)"),
    ("encoding", "is not valid cp1252: byte 0x81"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(case, message, tmp_path, capsys):
    if case == "missing-column":
        argv = ["--data", str(AG_NEWS), "--text-column", "title,body"]
    elif case == "no-label-line":
        data = tmp_path / "q.label"
        data.write_text("NUM:dist How far ?\nWhat is this ?\n")
        argv = ["--data", str(data), "--strict"]
    else:
        data = tmp_path / "bad.csv"
        data.write_bytes(b"text,label\nabc \x81,ham\n")
        argv = ["--data", str(data), "--encoding", "cp1252"]
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out), *TINY]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("gptcls: error:") and message in last
    if case == "encoding":
        assert "--encoding" in last
    assert not out.exists()
