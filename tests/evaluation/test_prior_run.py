"""End to end on a tiny model: a run stores its temperature and the source prior's threshold,
writes ECE before/after, the reliability diagram and the prior-aware figures; a bad --prior
is one line, exit 2, nothing written."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from gptcls.classifier.classifier import Classifier
from gptcls.cli.main import main
from gptcls.evaluation.calibration import tempered_softmax

SPAM = ["win", "free", "prize", "claim", "call now", "cash", "urgent"]
HAM = ["lunch", "see you", "tonight", "mum", "meeting", "thanks", "home"]


@pytest.fixture(scope="module")
def messages(tmp_path_factory):
    """240 ham and 60 spam: 20% spam, so undersampling shifts the prior."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "messages.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(300):
            label = "spam" if i % 5 == 0 else "ham"
            words = rng.sample(SPAM if label == "spam" else HAM, 3) + rng.sample(HAM + SPAM, 1)
            w.writerow([" ".join(words) + f" {i}", label])
    return path


@pytest.fixture(scope="module")
def run(messages, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "prior"
    rc = main(["train", "--data", str(messages), "--model", "gpt2-tiny", "--weights", "random",
               "--epochs", "2", "--lr", "1e-3", "--out", str(out), "--classify",
               "--balance", "undersample"])
    assert rc == 0
    return out


def test_run_stores_temperature_and_the_source_prior_threshold(run):
    cfg = json.loads((run / "config.json").read_text())
    m = json.loads((run / "metrics.json").read_text())
    cal, prior = m["calibration"], m["prior"]
    assert cfg["temperature"] == cal["temperature"] > 0
    for split in ("validation", "test"):
        assert 0 <= cal[split]["ece_before"] <= 1 and 0 <= cal[split]["ece_after"] <= 1
    assert (run / cal["plot"]).stat().st_size > 0  # the reliability diagram
    # Undersampled to 50/50 from 80/20: P(spam) >= 0.8 at the source prior.
    assert prior["decision"] == "source" and prior["fit_how"] == "undersampled"
    assert prior["priors"]["source"] == {"ham": 0.8, "spam": 0.2}
    fit = prior["priors"]["fit"]
    expected = (0.8 / fit["ham"]) / (0.8 / fit["ham"] + 0.2 / fit["spam"])
    assert cfg["threshold"] == pytest.approx(expected) == prior["threshold"]
    assert m["reports"]["test"]["threshold"] == cfg["threshold"]
    assert set(prior["test_reweighted"]) == {"accuracy", "macro_f1", "per_class"}


def test_loaded_run_decides_on_calibrated_probabilities(run, messages):
    clf = Classifier.load(run, device="cpu", precision="fp32")
    texts = ["win a free prize now", "see you at lunch", "claim cash urgent", "thanks mum"]
    probs = clf.predict_proba(texts)
    plain = Classifier(clf.config.__class__(**{**clf.config.__dict__, "temperature": 1.0}),
                       clf.model, clf.tokenizer, device="cpu", precision="fp32")
    raw = plain.predict_proba(texts)
    np.testing.assert_allclose(probs, tempered_softmax(np.log(raw), clf.config.temperature),
                               atol=1e-5)
    t = clf.config.threshold
    assert clf.predict(texts) == [clf.labels[int(p[1] >= t)] for p in probs]


def test_report_says_which_prior_and_threshold(messages, tmp_path, capsys):
    out = tmp_path / "given"
    assert main(["train", "--data", str(messages), "--model", "gpt2-tiny", "--weights",
                 "random", "--epochs", "1", "--out", str(out), "--prior", "spam=0.1,ham=0.9",
                 "--classify"]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["prior"]["decision"] == "given"
    assert m["prior"]["target_prior"] == {"ham": 0.9, "spam": 0.1}
    assert "Calibration: temperature" in printed and "reliability.png" in printed
    assert "Class prior: trained at" in printed
    assert f"Decision: P(spam) >= {m['prior']['threshold']:.4f} (at the --prior given)" in printed
    assert "Test reweighted to the given prior" in printed


@pytest.mark.parametrize("prior, message", [
    ("spam=0.5,ham=0.6", "the probabilities sum to 1.1, not 1"),
    ("spam=0.5,hm=0.5", "unknown label(s) ['hm']"),
    ("0.2,0.3,0.5", "3 values for 2 labels"),
    ("spam=-1,ham=2", "every class probability must be > 0"),
])
def test_bad_prior_is_one_line_exit_2_nothing_written(messages, tmp_path, capsys, prior,
                                                      message):
    out = tmp_path / "bad"
    assert main(["train", "--data", str(messages), "--model", "gpt2-tiny", "--weights",
                 "random", "--out", str(out), "--prior", prior]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("gptcls: error: --prior")
    assert not out.exists()


def test_dry_run_checks_the_prior_labels(messages, capsys):
    assert main(["train", "--dry-run", "--data", str(messages), "--model", "gpt2-tiny",
                 "--prior", "spam=0.5,hm=0.5"]) == 2
    assert "unknown label(s) ['hm']" in capsys.readouterr().err
    assert main(["train", "--dry-run", "--data", str(messages), "--model", "gpt2-tiny",
                 "--prior", "0.9,0.1"]) == 0
