"""ONNX export directories (optimum's layout) and their int8 variant give gptcls' labels."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from gptcls.cli.main import main
from gptcls.errors import GptclsError
from gptcls.serving.export_onnx import (
    INT8_FILE,
    ONNX_FILE,
    OnnxClassifier,
    export_onnx,
    write_hf_files,
)

TOL = 1e-4


@pytest.fixture(scope="module")
def onnx_dir(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "sms-onnx"
    assert main(["export", str(tiny_run), str(out), "--format", "onnx", "--int8"]) == 0
    return out


@pytest.fixture(scope="module")
def ref_clf(tiny_run):
    """The tiny run in PyTorch fp32, the exact path every export is compared with."""
    from gptcls.classifier.classifier import Classifier

    return Classifier.load(tiny_run, device="cpu", precision="fp32")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_directory_has_the_files(onnx_dir, ref_clf):
    names = {p.name for p in onnx_dir.iterdir()}
    assert {ONNX_FILE, INT8_FILE, "config.json", "tokenizer.json", "tokenizer_config.json",
            "vocab.json", "merges.txt", "gptcls"} <= names
    assert "model.safetensors" not in names  # the graph holds the weights
    config = json.loads((onnx_dir / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert config["id2label"] == {"0": "ham", "1": "spam"}
    assert config["label2id"] == {"ham": 0, "spam": 1}
    assert config["pad_token_id"] == ref_clf.tokenizer.pad_id
    assert json.loads((onnx_dir / "gptcls" / "config.json").read_text())["labels"] == [
        "ham", "spam"]
    # Nothing left beside it by the staging folder.
    assert [p.name for p in onnx_dir.parent.iterdir()] == [onnx_dir.name]


def test_loads_from_the_directory_alone(onnx_dir, ref_clf, tiny_test_texts, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(onnx_dir, moved)
    clf = OnnxClassifier.from_dir(moved)
    np.testing.assert_allclose(clf.predict_proba(tiny_test_texts),
                               ref_clf.predict_proba(tiny_test_texts), atol=TOL)
    assert clf.predict(tiny_test_texts[:5]) == ref_clf.predict(tiny_test_texts[:5])


def test_runs_as_optimum_would(onnx_dir, ref_clf, tiny_test_texts):
    """transformers' tokenizer from the directory, the graph through onnxruntime: no gptcls."""
    import onnxruntime as ort
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    texts = tiny_test_texts[:40]
    ids = ref_clf.encode(texts)
    fast = Tokenizer.from_file(str(onnx_dir / "tokenizer.json"))  # what transformers.js reads
    assert [e.ids[:len(s)] for e, s in zip(fast.encode_batch(texts), ids, strict=True)] == ids
    tok = AutoTokenizer.from_pretrained(onnx_dir)
    enc = tok(texts, padding=True, truncation=True, max_length=ref_clf.config.max_length,
              return_tensors="np")
    assert int((enc["attention_mask"] == 0).sum()) > 0  # the batch really holds padding
    session = ort.InferenceSession(str(onnx_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"input_ids": enc["input_ids"].astype(np.int64),
                                         "attention_mask": enc["attention_mask"].astype(np.int64)})
    probs = _softmax(logits)  # calibration is in the graph
    np.testing.assert_allclose(probs, ref_clf.predict_proba(texts), atol=TOL)


def test_int8_is_smaller_and_agrees(onnx_dir, ref_clf, tiny_test_texts):
    import onnx

    fp32, int8 = onnx_dir / ONNX_FILE, onnx_dir / INT8_FILE
    assert int8.stat().st_size < fp32.stat().st_size
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert "DynamicQuantizeLinear" in ops  # really quantized, not a copy
    ref = ref_clf.predict_proba(tiny_test_texts)
    q = OnnxClassifier.from_dir(onnx_dir, int8=True).predict_proba(tiny_test_texts)
    # int8 weight rounding moves this model's probabilities by about 1e-2: a label may flip
    # only where fp32's top two are closer than that, so texts with a 0.1 margin must agree,
    # and 98% of all texts (a few near-ties may go either way).
    top2 = np.sort(ref, -1)[:, -2:]
    confident = top2[:, 1] - top2[:, 0] > 0.1
    assert confident.mean() > 0.5  # the criterion covers most of the test split
    same = ref.argmax(-1) == q.argmax(-1)
    assert same[confident].all()
    assert same.mean() >= 0.98
    assert np.abs(ref - q).max() < 0.1


def test_cli_classify_an_onnx_directory(onnx_dir, tiny_run, capsys):
    texts = ["WINNER!! Claim your 1000 prize now", "see you at six"]
    assert main(["classify", str(tiny_run), *texts]) == 0
    torch_out = capsys.readouterr().out
    assert main(["classify", str(onnx_dir), *texts]) == 0  # no --onnx needed
    assert capsys.readouterr().out == torch_out
    assert main(["classify", str(tiny_run), *texts, "--onnx", str(onnx_dir)]) == 0
    assert capsys.readouterr().out == torch_out
    assert main(["classify", str(onnx_dir), *texts, "--onnx",
                 str(onnx_dir / INT8_FILE)]) == 0
    labels = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert labels == [line.split("\t")[0] for line in torch_out.splitlines()]


def test_reexport_into_the_directory(onnx_dir, tiny_run, tiny_test_texts, tmp_path):
    """Over an existing export, without --int8: the old int8 graph (another model's) goes and
    files not ours stay. The run pools by mean, which transformers' GPT-2 cannot: the graph
    pools as gptcls does, so it still gets the whole directory."""
    from gptcls.classifier.classifier import Classifier

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["pooling"] = "mean"
    (run / "config.json").write_text(json.dumps(config))
    out = tmp_path / "again"
    shutil.copytree(onnx_dir, out)
    (out / "notes.txt").write_text("mine")
    assert export_onnx(run, out) == out
    assert not (out / INT8_FILE).exists()
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(GptclsError, match="export with --int8"):
        OnnxClassifier.from_dir(out, int8=True)
    hf = json.loads((out / "config.json").read_text())
    assert hf["model_type"] == "gpt2" and hf["gptcls"]["pooling"] == "mean"
    ref = Classifier.load(run, device="cpu", precision="fp32").predict_proba(tiny_test_texts)
    np.testing.assert_allclose(OnnxClassifier.from_dir(out).predict_proba(tiny_test_texts),
                               ref, atol=TOL)


def test_families_transformers_lacks_get_label_fields(ref_clf, tmp_path):
    config = copy.deepcopy(ref_clf.config)
    config.model = dataclasses.replace(config.model, family="not-in-transformers")
    write_hf_files(tmp_path, config, ref_clf.tokenizer)
    hf = json.loads((tmp_path / "config.json").read_text())
    assert hf["id2label"] == {"0": "ham", "1": "spam"} and "model_type" not in hf
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no tokenizer files


def _fails(argv: list[str], capsys, match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err


def test_bad_input_one_line_exit_2(tiny_run, onnx_dir, tmp_path, capsys, monkeypatch):
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    _fails(["export", str(tiny_run), str(taken), "--format", "onnx"], capsys, "not a directory")
    assert taken.read_text() == "not a directory"
    _fails(["export", str(tiny_run), str(tmp_path / "m.onnx"), "--format", "onnx", "--int8"],
           capsys, "--int8")
    _fails(["export", str(tiny_run), str(tmp_path / "hf"), "--format", "hf", "--int8"],
           capsys, "--int8")
    _fails(["classify", str(tiny_run), "hi", "--onnx", str(tmp_path)], capsys,
           "not an ONNX directory")
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # the onnx extra not installed
    _fails(["export", str(tiny_run), str(tmp_path / "out"), "--format", "onnx"], capsys,
           "pip install 'gptcls[onnx]'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing written
    with pytest.raises(GptclsError, match="ONNX directory not found"):
        OnnxClassifier.from_dir(tmp_path / "missing")
