"""A multi-label run end to end (gpt2-tiny, random weights, 2 epochs on a synthetic file whose
labels come from keywords): its config, thresholds and metrics, and every path that uses it
(classify, predict, evaluate, serve, the transformers export, the estimator); bad inputs."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from gptcls.classifier.classifier import Classifier
from gptcls.cli.main import main
from gptcls.evaluation.multilabel import choose_thresholds, decide

KEYWORDS = {"sports": ["goal", "match", "team"], "politics": ["vote", "senate", "law"],
            "tech": ["chip", "code", "robot"]}
FILLER = "the a of and to in on with for today new".split()
TINY = ["--model", "gpt2-tiny", "--weights", "random", "--precision", "fp32", "--lr", "1e-3"]


def rows(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Texts of filler words plus one keyword per label; about 1 in 5 has no label."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        labels = [lab for lab in KEYWORDS if rng.random() < 0.4]
        words = rng.choices(FILLER, k=5) + [rng.choice(KEYWORDS[lab]) for lab in labels]
        rng.shuffle(words)
        out.append((" ".join(words), labels))
    return out


def write_list_csv(path: Path, n: int = 240) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "labels"])
        w.writerows((t, "|".join(labs)) for t, labs in rows(n))
    return path


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("multilabel")
    data, out = write_list_csv(tmp / "tags.csv"), tmp / "run"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", *TINY, "--data", str(data), "--multi-label", "--out", str(out),
                   "--epochs", "2", "--classify"])
    assert rc == 0
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def ml_clf(ml_run) -> Classifier:
    return Classifier.load(ml_run[0], device="cpu", precision="fp32")


def split_rows(run: Path, name: str) -> tuple[list[str], np.ndarray]:
    with (run / f"{name}.csv").open() as fh:
        data = list(csv.DictReader(fh))
    labels = sorted(KEYWORDS)
    y = np.array([[int(lab in r["label"].split("|")) for lab in labels] for r in data])
    return [r["text"] for r in data], y


def test_config_metrics_and_report(ml_run, ml_clf):
    run, printed = ml_run
    config = json.loads((run / "config.json").read_text())
    assert config["multi_label"] is True and config["label_separator"] == "|"
    assert config["labels"] == ["politics", "sports", "tech"]
    assert len(config["thresholds"]) == 3 and all(0 < t < 1 for t in config["thresholds"])
    m = json.loads((run / "metrics.json").read_text())
    test = m["reports"]["test"]
    for key in ("micro_f1", "macro_f1", "samples_f1", "hamming_loss", "subset_accuracy"):
        assert 0.0 <= test[key] <= 1.0
    assert set(test["per_label"]) == {"politics", "sports", "tech"}
    texts, y = split_rows(run, "test")
    assert sum(r["support"] for r in test["per_label"].values()) == int(y.sum())
    assert m["examples"]["test"] == len(texts)
    assert "micro-F1" in printed and "Hamming loss" in printed and "subset accuracy" in printed


def test_thresholds_chosen_on_validation(ml_run, ml_clf):
    run = ml_run[0]
    texts, y = split_rows(run, "validation")
    probs = ml_clf.predict_proba(texts)
    assert ml_clf.config.thresholds == pytest.approx(choose_thresholds(y, probs), abs=1e-4)


def test_predict_and_proba(ml_clf):
    texts = [t for t, _ in rows(12, seed=5)]
    probs = ml_clf.predict_proba(texts)
    assert probs.shape == (12, 3) and ((probs >= 0) & (probs <= 1)).all()
    sets = ml_clf.predict(texts)
    expected = decide(probs, ml_clf.config.thresholds)
    assert sets == [[lab for lab, on in zip(ml_clf.labels, row, strict=True) if on]
                    for row in expected]
    assert ml_clf.predict(texts[0]) == sets[0]
    one = ml_clf.predict_proba(texts[0])
    assert one == pytest.approx(probs[0], abs=1e-6)


def test_classify_cli(ml_run, ml_clf, capsys):
    text = "goal vote the chip"
    assert main(["classify", str(ml_run[0]), text]) == 0
    labels, detail, shown = capsys.readouterr().out.rstrip("\n").split("\t")
    expected = ml_clf.predict([text])[0]
    assert shown == text
    assert labels == ("|".join(expected) if expected else "(none)")
    assert main(["classify", "--json", str(ml_run[0]), text]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["labels"] == expected and set(record["probabilities"]) == set(ml_clf.labels)


def test_predict_cli(ml_run, ml_clf, tmp_path):
    texts = [t for t, _ in rows(10, seed=9)]
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as fh:
        csv.writer(fh).writerows([["text"], *([t] for t in texts)])
    assert main(["predict", str(ml_run[0]), str(src), str(tmp_path / "out.csv")]) == 0
    with (tmp_path / "out.csv").open() as fh:
        out = list(csv.DictReader(fh))
    assert list(out[0]) == ["text", "labels", "prob_politics", "prob_sports", "prob_tech",
                            "threshold"]
    assert [r["labels"] for r in out] == ["|".join(s) for s in ml_clf.predict(texts)]
    probs = np.array([[float(r[f"prob_{lab}"]) for lab in ml_clf.labels] for r in out])
    assert probs == pytest.approx(ml_clf.predict_proba(texts), abs=1e-5)


def test_evaluate(ml_run, ml_clf):
    report = ml_clf.evaluate(ml_run[0] / "test.csv")
    saved = json.loads((ml_run[0] / "metrics.json").read_text())["reports"]["test"]
    assert report["micro_f1"] == pytest.approx(saved["micro_f1"], abs=1e-6)
    assert report["n"] == saved["n"]


def test_server(ml_run, ml_clf):
    from fastapi.testclient import TestClient

    from gptcls.serving.server import create_app

    texts = [t for t, _ in rows(4, seed=3)]
    with TestClient(create_app(ml_run[0], device="cpu", precision="fp32")) as client:
        r = client.post("/v1/classify", json={"texts": texts})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["labels"] for x in results] == ml_clf.predict(texts)
    assert all("label" not in x for x in results)
    assert [x["probabilities"]["tech"] for x in results] == pytest.approx(
        ml_clf.predict_proba(texts)[:, 2], abs=1e-5)



def test_server_model_info_gives_multi_label_and_thresholds(ml_run, ml_clf):
    from fastapi.testclient import TestClient

    from gptcls.serving.server import create_app

    with TestClient(create_app(ml_run[0], device="cpu", precision="fp32")) as client:
        info = client.get("/v1/model").json()
    assert info["multi_label"] is True
    assert list(info["thresholds"]) == ml_clf.labels
    assert list(info["thresholds"].values()) == pytest.approx(ml_clf.config.thresholds)

def test_hf_export_is_multi_label(ml_run, ml_clf, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "hf"
    assert main(["export", "--format", "hf", str(ml_run[0]), str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["gptcls"]["thresholds"] == pytest.approx(ml_clf.config.thresholds)
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert model.config.problem_type == "multi_label_classification"
    texts = [t for t, _ in rows(3, seed=4)]
    for text, ids in zip(texts, ml_clf.encode(texts), strict=True):
        with torch.no_grad():
            logits = model.eval()(torch.tensor([ids])).logits
        assert torch.sigmoid(logits)[0].numpy() == pytest.approx(
            ml_clf.predict_proba([text])[0], abs=1e-4)
    # transformers' multi-label semantics: binary cross-entropy on float 0/1 targets
    ids, target = torch.tensor([ml_clf.encode(texts[:1])[0]]), torch.tensor([[1.0, 0.0, 1.0]])
    with torch.no_grad():
        out = model(ids, labels=target)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, target)
    assert float(out.loss) == pytest.approx(float(expected), abs=1e-6)


def test_indicator_columns_run(tmp_path):
    path = tmp_path / "cols.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["body", *KEYWORDS])
        w.writerows([t, *(int(lab in labs) for lab in KEYWORDS)] for t, labs in rows(120))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(path), "--multi-label", "--text-column", "body",
                 "--label-column", "sports,politics,tech", "--out", str(out), "--epochs", "1",
                 "--balance", "weighted", "--classify"]) == 0
    clf = Classifier.load(out, device="cpu")
    assert clf.labels == ["politics", "sports", "tech"] and clf.config.multi_label
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["positive_weights"]) == 3 and all(w > 0 for w in m["positive_weights"])


@pytest.mark.parametrize("extra, message", [
    (["--balance", "undersample"], "--balance undersample does not apply to --multi-label"),
    (["--threshold", "0.3"], "--threshold: single-label option(s)"),
    (["--max-fpr", "0.1"], "--max-fpr: single-label option(s)"),
    (["--prior", "train"], "--prior: single-label option(s)"),
    (["--strict"], "empty label set"),
])
def test_bad_inputs_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    data, out = write_list_csv(tmp_path / "tags.csv", 60), tmp_path / "run"
    assert main(["train", *TINY, "--data", str(data), "--multi-label", "--out", str(out),
                 *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not out.exists()


def test_label_separator_needs_multi_label(tmp_path, capsys):
    data = write_list_csv(tmp_path / "tags.csv", 60)
    assert main(["train", *TINY, "--data", str(data), "--label-separator", ";",
                 "--out", str(tmp_path / "run")]) == 2
    assert "--label-separator goes with --multi-label" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_estimator_label_lists_and_indicator_matrix():
    from sklearn.base import clone

    from gptcls.estimator import GPTClassifier

    data = rows(60, seed=2)
    texts = [t for t, _ in data]
    sets = [labs or ["tech"] for _, labs in data]  # no empty sets here
    est = GPTClassifier(model="gpt2-tiny", weights="random", epochs=1,
                        validation_fraction=0.25).fit(texts, sets)
    assert est.classes_.tolist() == ["politics", "sports", "tech"]
    pred, probs = est.predict(texts[:5]), est.predict_proba(texts[:5])
    assert pred.shape == probs.shape == (5, 3) and set(np.unique(pred)) <= {0, 1}
    thresholds = est.classifier_.config.thresholds
    assert (pred == (probs >= np.array(thresholds))).all()
    assert est.classifier_.predict(texts[:5]) == [
        [lab for lab, on in zip(est.classes_, row, strict=True) if on] for row in pred]
    indicator = np.array([[int(lab in s) for lab in est.classes_] for s in sets])
    assert 0.0 <= est.score(texts, sets) == est.score(texts, indicator) <= 1.0
    est2 = clone(est).fit(texts, indicator)
    assert est2.classes_.tolist() == [0, 1, 2] and est2.predict(texts[:2]).shape == (2, 3)
    with pytest.raises(ValueError, match="--balance undersample does not apply"):
        GPTClassifier(model="gpt2-tiny", weights="random", balance="undersample").fit(
            texts, sets)
