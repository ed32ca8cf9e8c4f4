"""Exports: transformers (GPT-2, Llama, the real SmolLM2 backbone) and ONNX give gptcls' numbers."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.run_dir import save_run
from gptcls.cli.main import main
from gptcls.errors import GptclsError
from gptcls.models import build_backbone, preset_config
from gptcls.models.weights.pretrained import load_pretrained
from gptcls.serving.export_hf import export_hf
from gptcls.serving.export_onnx import OnnxClassifier, export_onnx

TOL = 1e-4


@pytest.fixture(scope="module")
def test_texts(tiny_run) -> list[str]:
    """The real SMS test split of the tiny run."""
    with (tiny_run / "test.csv").open(newline="") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def _random_run(out: Path, model_name: str, weights: str, max_length: int,
                pooling: str = "last") -> Path:
    """A run with a random head (non-zero bias, the part HF has no slot for) on a backbone."""
    loaded = load_pretrained(model_name, weights)
    model = ClassifierModel(build_backbone(loaded.config), 2, pooling)
    model.backbone.load_state_dict(loaded.state_dict, strict=False)
    model.backbone.tie_weights()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=gen) * 0.5)
        model.head.bias.copy_(torch.tensor([0.7, -0.4]))
    model.set_trainable(1)
    config = ClassifierConfig(model=loaded.config, labels=["ham", "spam"], max_length=max_length,
                              tokenizer=loaded.tokenizer.spec(), pooling=pooling,
                              backbone={"model": model_name, "weights": weights})
    save_run(out, config, model, loaded.tokenizer)
    return out


@pytest.fixture(scope="module")
def llama_run(tmp_path_factory) -> Path:
    # `gptcls train --model llama-tiny` cannot build its tokenizer offline yet, so the tiny
    # Llama run is assembled directly: llama-tiny weights, SmolLM2's tokenizer (its vocabulary).
    from gptcls.models.weights.gguf import gguf_tokenizer
    from gptcls.models.weights.offline import locate_smollm2_gguf

    out = tmp_path_factory.mktemp("runs") / "llama-tiny"
    config = preset_config("llama-tiny")
    torch.manual_seed(1)
    model = ClassifierModel(build_backbone(config), 3)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.5, -1.0, 0.25]))
    model.set_trainable(1)
    tok = gguf_tokenizer(locate_smollm2_gguf())
    save_run(out, ClassifierConfig(model=config, labels=["ham", "spam", "other"], max_length=48,
                                   tokenizer=tok.spec(), truncate="tail"), model, tok)
    return out


def _hf_probs(out: Path, texts: list[str], max_length: int) -> tuple[np.ndarray, list, object]:
    """Probabilities from transformers, in padded batches with an attention mask."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, info = AutoModelForSequenceClassification.from_pretrained(
        out, trust_remote_code=True, output_loading_info=True)
    assert not any(info.values()), info  # every weight used, none missing
    tok = AutoTokenizer.from_pretrained(out)
    probs, ids = np.zeros((len(texts), model.config.num_labels), np.float32), [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding, still some
    padded = 0
    for start in range(0, len(order), 16):
        batch = order[start:start + 16]
        enc = tok([texts[i] for i in batch], padding=True, truncation=True,
                  max_length=max_length, return_tensors="pt")
        padded += int((enc["attention_mask"] == 0).sum())
        with torch.no_grad():
            probs[batch] = torch.softmax(model(**enc).logits, -1).numpy()
        for i, row, mask in zip(batch, enc["input_ids"], enc["attention_mask"], strict=True):
            ids[i] = row[mask.bool()].tolist()
    assert padded > 0  # the batches really hold padding
    return probs, ids, model


def _check_hf(run: Path, out: Path, texts: list[str], architecture: str) -> None:
    from transformers import GPT2ForSequenceClassification, LlamaForSequenceClassification

    clf = Classifier.load(run, device="cpu")
    assert export_hf(run, out) == out
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): lab for i, lab in enumerate(clf.labels)}
    assert config["pad_token_id"] == clf.tokenizer.pad_id
    probs, ids, model = _hf_probs(out, texts, clf.config.max_length)
    assert ids == clf.encode(texts)  # the exported tokenizer is gptcls' tokenizer
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=TOL)
    base = {"gpt2": GPT2ForSequenceClassification, "llama": LlamaForSequenceClassification}
    assert isinstance(model, base[architecture])


def test_hf_export_gpt2(tiny_run, test_texts, tmp_path):
    _check_hf(tiny_run, tmp_path / "hf", test_texts, "gpt2")
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= {
        p.name for p in (tmp_path / "hf").iterdir()}


def test_hf_export_llama(llama_run, test_texts, tmp_path):
    _check_hf(llama_run, tmp_path / "hf", test_texts, "llama")


@pytest.mark.parametrize("pooling", ["last", "last+mean"])  # last+mean: SmolLM2's recipe
def test_hf_export_real_smollm2_backbone(test_texts, tmp_path, pooling):
    run = _random_run(tmp_path / "run", "smollm2-135m-instruct-q4", "pretrained", 48, pooling)
    _check_hf(run, tmp_path / "hf", test_texts[:50], "llama")


def test_hf_export_refuses_poolings_hf_cannot_do(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["pooling"] = "mean"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(GptclsError, match="pooling 'mean'"):
        export_hf(run, tmp_path / "hf")


@pytest.fixture(scope="module")
def onnx_models(tiny_run, llama_run, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    # The GPT-2 one through the command line, the Llama one through the Python API.
    assert main(["export", str(tiny_run), str(folder / "gpt2.onnx"), "--format", "onnx"]) == 0
    return {"gpt2": folder / "gpt2.onnx", "llama": export_onnx(llama_run, folder / "llama.onnx")}


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_onnx_export_matches_pytorch(which, onnx_models, tiny_run, llama_run, test_texts):
    import onnxruntime as ort

    run, out = (tiny_run if which == "gpt2" else llama_run), onnx_models[which]
    clf, onnx_clf = Classifier.load(run, device="cpu"), OnnxClassifier.from_run(run, out)
    # Batch and sequence sizes other than the traced (2, 5), including a batch of one.
    for texts in (test_texts[:1], test_texts[:7], test_texts):
        np.testing.assert_allclose(onnx_clf.predict_proba(texts), clf.predict_proba(texts),
                                   atol=TOL)
    # The raw graph, fed like a transformers tokenizer would: padded ids plus a mask.
    ids = clf.encode(test_texts[:9])
    width = max(map(len, ids))
    x = np.array([s + [0] * (width - len(s)) for s in ids], dtype=np.int64)
    mask = np.array([[1] * len(s) + [0] * (width - len(s)) for s in ids], dtype=np.int64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    (logits,) = session.run(["logits"], {"input_ids": x, "attention_mask": mask})
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, clf.predict_proba(test_texts[:9]), atol=TOL)


def test_cli_classify_with_onnx(onnx_models, tiny_run, llama_run, tmp_path, capsys):
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert (tmp_path / "hf" / "config.json").is_file()
    capsys.readouterr()
    texts = ["WINNER!! Claim your 1000 prize now", "see you at six"]
    assert main(["classify", str(tiny_run), *texts]) == 0
    torch_out = capsys.readouterr().out
    assert main(["classify", str(tiny_run), *texts, "--onnx", str(onnx_models["gpt2"])]) == 0
    assert capsys.readouterr().out == torch_out
    # An ONNX file from another run (other labels) is refused in one line.
    assert main(["classify", str(llama_run), "hi", "--onnx", str(onnx_models["gpt2"])]) == 2
    assert "labels" in capsys.readouterr().err
    assert main(["classify", str(tiny_run), "hi", "--onnx", str(tmp_path / "nope.onnx")]) == 2
