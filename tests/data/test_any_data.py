"""Any labelled file through the CLI: multi-class CSV, evaluate, thresholds, long texts."""

import csv
import json
import random

import numpy as np
import pytest

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.windows import windows
from gptcls.cli.main import main

TOPICS = {
    "Billing": ["invoice", "refund", "charged twice", "payment failed", "receipt"],
    "bug": ["crash", "error message", "stack trace", "freezes", "broken button"],
    "Praise": ["love it", "great job", "thank you so much", "fantastic", "works perfectly"],
}


@pytest.fixture(scope="module")
def tickets(tmp_path_factory):
    """A support-ticket export with its own column names and messy label spellings."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "tickets.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "Body", "Category"])
        for i in range(240):
            label = rng.choice(sorted(TOPICS))
            words = rng.sample(TOPICS[label], 2) + rng.sample(["the", "my", "app", "today"], 2)
            spelled = rng.choice([label, label.lower(), f" {label.upper()} "])
            w.writerow([i, " ".join(rng.sample(words, 4)), spelled])
    return path


@pytest.fixture(scope="module")
def ticket_run(tickets, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tickets"
    rc = main(["train", "--data", str(tickets), "--text-column", "Body", "--label-column",
               "Category", "--model", "gpt2-tiny", "--weights", "random", "--epochs", "3",
               "--lr", "3e-3", "--trainable-blocks", "2", "--balance", "none", "--out", str(out),
               "--classify"])
    assert rc == 0
    return out


def test_multiclass_csv_trains_and_keeps_label_names(ticket_run, capsys):
    cfg = json.loads((ticket_run / "config.json").read_text())
    assert cfg["labels"] == ["billing", "bug", "praise"]  # normalised: case folded, stripped
    m = json.loads((ticket_run / "metrics.json").read_text())
    rep = m["reports"]["test"]
    assert set(rep["per_class"]) == {"billing", "bug", "praise"}
    assert len(rep["confusion_matrix"]) == 3 and rep["macro_f1"] is not None
    assert (ticket_run / "confusion-matrix.png").stat().st_size > 0
    assert sum(m["examples"].values()) == 240
    assert main(["classify", str(ticket_run), "I was charged twice, need a refund"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in cfg["labels"]


def test_evaluate_scores_any_file_and_rejects_unknown_labels(ticket_run, tickets, tmp_path,
                                                             capsys):
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(ticket_run), "--data", str(tickets), "--out",
                 str(report_path)]) == 0
    printed = capsys.readouterr().out
    assert "macro" in printed.lower() and "billing" in printed
    report = json.loads(report_path.read_text())
    assert report["n"] == 240
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "hello", "label": "shipping"}\n{"text": "hi", "label": "bug"}\n')
    assert main(["evaluate", str(ticket_run), "--data", str(other)]) == 2
    assert "labels the run does not know: ['shipping']" in capsys.readouterr().err


def test_max_fpr_threshold_is_stored_and_used(sms_path, tmp_path):
    out = tmp_path / "thr"
    assert main(["train", "--data", str(sms_path), "--model", "gpt2-tiny", "--weights", "random",
                 "--epochs", "1", "--max-fpr", "0.05", "--out", str(out), "--classify"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["threshold"] is not None
    clf = Classifier.load(out, device="cpu")
    probs = clf.predict_proba(["win a free prize now", "see you at lunch"])
    expected = [clf.labels[int(p[1] >= cfg["threshold"])] for p in probs]
    assert clf.predict(["win a free prize now", "see you at lunch"]) == expected


def test_long_texts_are_chunked_and_reduced(tiny_run):
    clf = Classifier.load(tiny_run, device="cpu")
    long_text = " ".join(["Call now to claim your free prize."] * 80)
    short = "See you at six"
    for reduce in ("mean", "max"):
        probs = clf.predict_proba([long_text, short], long_text="chunk", chunk_reduce=reduce)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        # A short text is one window: chunking changes nothing for it.
        np.testing.assert_allclose(probs[1], clf.predict_proba([short])[0], atol=1e-6)
    ids = clf.tokenizer.encode(long_text)
    parts = windows(ids, clf.config.max_length)
    assert len(parts) > 2 and parts[-1] == ids[-clf.config.max_length:]
    assert all(len(w) == clf.config.max_length for w in parts)


def test_tail_truncation_keeps_the_end(sms_path, tmp_path):
    out = tmp_path / "tail"
    assert main(["train", "--data", str(sms_path), "--model", "gpt2-tiny", "--weights", "random",
                 "--epochs", "1", "--truncate", "tail", "--max-length", "8", "--out", str(out),
                 "--classify"]) == 0
    clf = Classifier.load(out, device="cpu")
    ids = clf.encode(["one two three four five six seven eight nine ten eleven twelve"])[0]
    full = clf.tokenizer.encode("one two three four five six seven eight nine ten eleven twelve")
    assert ids == full[-8:]
