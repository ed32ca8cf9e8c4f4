"""`gptcls train --long-text chunk`: long training texts become half-overlapping windows with
their text's label; validation/test are scored per text; the run predicts that way by default."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import random
import re

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.cli.main import main
from gptcls.errors import GptclsError
from gptcls.serving.predict import predict_file
from gptcls.serving.server import create_app
from gptcls.training.long_text import eval_prefix, group_stores, text_results
from gptcls.training.trunk_cache import Store

MAX_LENGTH = 32  # small, so that a few dozen words make a long text


def write_reviews(path, n: int, seed: int, long_every: int) -> None:
    """Texts of 5-15 filler words (every `long_every`-th: 60-140) with three words of their
    label's sentiment."""
    rng = random.Random(seed)
    sentiment = {"pos": "great wonderful loved superb".split(),
                 "neg": "awful boring hated dull".split()}
    filler = "the film was long and the story went on with the actors on screen".split()
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            words = [rng.choice(filler) for _ in range(
                rng.randint(60, 140) if i % long_every == 0 else rng.randint(5, 15))]
            for _ in range(3):
                words.insert(rng.randrange(len(words) + 1), rng.choice(sentiment[label]))
            w.writerow([" ".join(words), label])


def read_texts(path) -> list[str]:
    with path.open(newline="") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def n_windows(length: int, size: int) -> int:
    """Windows of `size` with stride size // 2 whose last one ends at the end."""
    return 1 if length <= size else math.ceil((length - size) / (size // 2)) + 1


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    write_reviews(d / "train.csv", 40, 1, 5)
    write_reviews(d / "val.csv", 16, 2, 4)
    write_reviews(d / "test.csv", 20, 3, 4)
    return d


@pytest.fixture(scope="module")
def chunk_run(data):
    """(run directory, its stderr): gpt2-tiny, random weights, fp32 (exact comparisons)."""
    out, err = data / "run", io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["train", "--model", "gpt2-tiny", "--weights", "random",
                   "--train", str(data / "train.csv"), "--validation", str(data / "val.csv"),
                   "--test", str(data / "test.csv"), "--out", str(out), "--epochs", "2",
                   "--max-length", str(MAX_LENGTH), "--long-text", "chunk", "--batch-size", "4",
                   "--precision", "fp32", "--balance", "none", "--prior", "train"])
    assert rc == 0, err.getvalue()
    return out, err.getvalue()


@pytest.fixture(scope="module")
def clf(chunk_run) -> Classifier:
    return Classifier.load(chunk_run[0], device="cpu", precision="fp32")


def test_the_run_says_how_many_long_texts_became_how_many_windows(chunk_run, data, clf):
    out, err = chunk_run
    lengths = {name: [len(s) for s in clf.tokenizer.encode_batch(read_texts(data / f))]
               for name, f in (("train", "train.csv"), ("validation", "val.csv"),
                               ("test", "test.csv"))}
    long_train = [n for n in lengths["train"] if n > MAX_LENGTH]
    assert long_train  # the data has long texts, and short ones
    expected = sum(n_windows(n, MAX_LENGTH) for n in long_train)
    line = next(x for x in err.splitlines() if x.startswith(f"max_length {MAX_LENGTH} "))
    assert f"{len(long_train)} training texts longer than max_length {MAX_LENGTH} were cut " \
           f"into {expected} windows" in line, line
    assert "\n" not in line and "cut to their first" not in line
    windows = json.loads((out / "metrics.json").read_text())["windows"]
    for name, ns in lengths.items():
        assert windows[name] == {"texts": len(ns),
                                 "windows": sum(n_windows(n, MAX_LENGTH) for n in ns)}


def test_metrics_count_texts_not_windows(chunk_run):
    metrics = json.loads((chunk_run[0] / "metrics.json").read_text())
    assert metrics["examples"] == {"train": 40, "validation": 16, "test": 20}
    for name, texts in metrics["examples"].items():
        report = metrics["reports"][name]
        assert np.sum(report["confusion_matrix"]) == texts < metrics["windows"][name]["windows"]
    assert all(math.isfinite(x) for x in metrics["history"]["val_losses"])
    assert metrics["trunk_cached"] is True  # windows are token sequences like any other


def test_the_final_evaluation_is_the_runs_chunked_evaluation(chunk_run, clf, data):
    """Training scored test texts as `Classifier.evaluate` does by default: windows' mean."""
    metrics = json.loads((chunk_run[0] / "metrics.json").read_text())
    report = clf.evaluate(data / "test.csv")
    assert report["confusion_matrix"] == metrics["reports"]["test"]["confusion_matrix"]
    assert report["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)


def test_config_records_chunk_and_classify_reads_windows_by_default(chunk_run, clf, data,
                                                                     capsys):
    assert json.loads((chunk_run[0] / "config.json").read_text())["long_text"] == "chunk"
    assert clf.config.long_text == "chunk"
    texts = read_texts(data / "test.csv")
    long = [t for t in texts if len(clf.tokenizer.encode(t)) > MAX_LENGTH][:2]
    default = clf.predict_proba(long)
    np.testing.assert_allclose(default, clf.predict_proba(long, "chunk"), atol=1e-6)
    assert not np.allclose(default, clf.predict_proba(long, "truncate"), atol=1e-6)
    for flag, expected in (([], "chunk"), (["--long-text", "truncate"], "truncate")):
        assert main(["classify", *flag, "--precision", "fp32", "--device", "cpu", "--json",
                     str(chunk_run[0]), long[0]]) == 0
        printed = json.loads(capsys.readouterr().out)["probabilities"]
        want = clf.predict_proba([long[0]], expected)[0]
        np.testing.assert_allclose(list(printed.values()), want, atol=1e-5)


def test_predict_and_serve_default_to_the_runs_windows(chunk_run, clf, data, tmp_path):
    texts = read_texts(data / "test.csv")
    want = clf.predict_proba(texts, "chunk")
    out = tmp_path / "pred.csv"
    predict_file(clf, data / "test.csv", out, progress=False)
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = [[float(r[f"prob_{lab}"]) for lab in clf.labels] for r in rows]
    np.testing.assert_allclose(got, want, atol=1e-4)
    with TestClient(create_app(clf)) as client:
        r = client.post("/v1/classify", json={"texts": texts[:4]})
    assert r.status_code == 200
    served = [[x["probabilities"][lab] for lab in clf.labels] for x in r.json()["results"]]
    np.testing.assert_allclose(served, want[:4], atol=1e-5)


def test_windows_train_with_their_texts_label():
    items = [torch.tensor([1, 2]), torch.tensor([3]), torch.tensor([4]), torch.tensor([5])]
    store = Store(items, torch.tensor([1, 0]), cached=False)
    group_stores({"train": store}, {"train": [0, 0, 0, 1]})
    assert store.item_labels([0, 1, 2, 3]).tolist() == [1, 1, 1, 0]
    _, _, y = store.batch([3, 1], torch.device("cpu"))
    assert y.tolist() == [0, 1]
    assert eval_prefix(store, 2) == 3  # the running estimate scores whole texts
    with pytest.raises(ValueError, match="do not match"):
        group_stores({"train": Store(items, torch.tensor([1, 0]), cached=False)},
                     {"train": [0, 0, 1]})


def test_evaluation_scores_each_text_by_its_windows_mean_probability():
    store = Store([torch.tensor([i]) for i in range(4)], torch.tensor([1, 0]), cached=False)
    store.groups = [0, 0, 0, 1]
    # Text 0: windows (0.2, 0.8), (0.6, 0.4), (0.4, 0.6): mean (0.4, 0.6) -> class 1, right;
    # a window vote would not matter. Text 1: (0.3, 0.7) -> class 1, wrong.
    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.3, 0.7]])
    r = text_results(store, probs)
    np.testing.assert_allclose(r["probs"].numpy(), [[0.4, 0.6], [0.3, 0.7]], atol=1e-6)
    assert r["accuracy"] == 0.5  # 1 of 2 texts, not 3 of 4 windows
    assert r["loss"] == pytest.approx(-(math.log(0.6) + math.log(0.3)) / 2, abs=1e-6)
    weighted = text_results(store, probs, torch.tensor([2.0, 1.0]))
    assert weighted["loss"] == pytest.approx(-(math.log(0.6) + 2 * math.log(0.3)) / 2, abs=1e-6)
    # Windows not scored (a sample of batches) are left out; texts with none do not count.
    part = probs.clone()
    part[3] = float("nan")
    r = text_results(store, part)
    assert r["accuracy"] == 1.0 and torch.isnan(r["probs"][1]).all()


def test_multi_label_texts_are_scored_by_their_windows_mean_sigmoid():
    store = Store([torch.tensor([i]) for i in range(3)], torch.tensor([[1, 0], [0, 1]]),
                  cached=False)
    store.groups = [0, 0, 1]
    probs = torch.tensor([[0.9, 0.2], [0.5, 0.4], [0.2, 0.3]])  # text 0: (0.7, 0.3)
    r = text_results(store, probs)
    assert r["accuracy"] == 0.5  # text 0 right at 0.5, text 1 (0.2, 0.3) misses its label
    bce0 = -(math.log(0.7) + math.log(0.7)) / 2
    bce1 = -(math.log(0.8) + math.log(0.3)) / 2
    assert r["loss"] == pytest.approx((bce0 + bce1) / 2, abs=1e-6)


def test_runs_written_before_long_text_load_as_truncate(clf):
    d = clf.config.to_dict()
    del d["long_text"]
    assert ClassifierConfig.from_dict(d).long_text == "truncate"


def test_an_unknown_long_text_mode_is_one_line_and_exit_2(data, clf, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(data / "train.csv"), "--long-text", "windows"])
    assert exc.value.code == 2
    assert re.search(r"--long-text: invalid choice: 'windows'", capsys.readouterr().err)
    import gptcls

    with pytest.raises(GptclsError, match=r"unknown long.text 'windows'; choose one of: "
                                          r"truncate, chunk"):
        gptcls.train(data / "train.csv", data / "never", model="gpt2-tiny", long_text="windows")
    assert not (data / "never").exists()
    with pytest.raises(GptclsError, match="unknown long-text mode 'windows'"):
        clf.predict_proba(["a text"], "windows")


def test_the_estimator_refuses_chunk_in_one_line():
    pytest.importorskip("sklearn")
    from gptcls import GPTClassifier

    with pytest.raises(GptclsError, match="estimator truncates"):
        GPTClassifier(model="gpt2-tiny", weights="random", epochs=1,
                      long_text="chunk").fit(["a b c", "d e f"] * 4, ["x", "y"] * 4)
