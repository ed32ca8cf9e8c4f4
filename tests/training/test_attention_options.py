"""Bonus-table options: no causal mask, context length, last+mean pooling, through the CLI."""

import dataclasses
import json

import pytest
import torch
from helpers import CPU, synthetic

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.encoding import pad_batch
from gptcls.classifier.model import ClassifierModel
from gptcls.cli.main import main
from gptcls.models import build_backbone, preset_config
from gptcls.options import TrainConfig
from gptcls.training.loop import train
from gptcls.training.trunk_cache import build_store


def bidirectional(name: str, pooling: str = "last", blocks: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    config = dataclasses.replace(preset_config(name), causal=False)
    model = ClassifierModel(build_backbone(config), 2, pooling)
    model.set_trainable(blocks)
    return model.eval()


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
@pytest.mark.parametrize("pooling", ["last", "first", "mean"])
def test_without_causal_mask_padding_is_hidden_and_later_tokens_are_seen(name, pooling):
    model = bidirectional(name, pooling)
    short = torch.randint(0, 300, (5,))
    long = torch.randint(0, 300, (60,))
    alone = model(*pad_batch([short]))
    x, lengths = pad_batch([short, long])
    torch.testing.assert_close(alone, model(x, lengths)[:1], atol=1e-5, rtol=0)
    # The first token's output now depends on the tokens after it.
    changed = short.clone()
    changed[-1] = (changed[-1] + 1) % 300
    first = bidirectional(name, "first")
    assert not torch.allclose(first(*pad_batch([short])), first(*pad_batch([changed])))


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_without_causal_mask_the_cached_trunk_trains_like_the_whole_model(name):
    ids, labels = synthetic()
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, eval_freq=3, eval_iter=2, seed=5)
    hists = []
    for cache in (True, False):
        model = bidirectional(name, blocks=1, seed=1)
        tr = build_store(model, ids[:48], labels[:48], cache, CPU)
        va = build_store(model, ids[48:], labels[48:], cache, CPU)
        hists.append(train(model, tr, va, cfg, CPU, log=lambda m: None))
    torch.testing.assert_close(torch.tensor(hists[0]["train_losses"]),
                               torch.tensor(hists[1]["train_losses"]), atol=1e-5, rtol=0)


def test_cli_no_causal_mask_context_and_last_plus_mean(sms_path, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
               "--out", str(out), "--epochs", "1", "--lr", "1e-3", "--no-causal-mask",
               "--context", "24", "--pooling", "last+mean", "--classify"])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["causal"] is False
    assert config["max_length"] == 24 and config["pooling"] == "last+mean"
    clf = Classifier.load(out, device="cpu")
    assert clf.model.backbone.blocks[0].attn.causal is False
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["max_length"] == 24
    assert main(["export", str(out), str(tmp_path / "hf"), "--format", "hf"]) == 2
    # the non-causal run is refused first (GPT-2 with last+mean would be refused too)
    assert "trained without the causal mask has no transformers equivalent" in (
        capsys.readouterr().err)


def test_context_model_pads_last_position_to_the_model_context(sms_path, tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
               "--out", str(out), "--epochs", "1", "--context", "model",
               "--pooling", "last-position", "--eval-freq", "1000", "--classify"])
    assert rc == 0
    config = json.loads((out / "config.json").read_text())
    assert config["max_length"] == config["model"]["context_length"]
    clf = Classifier.load(out, device="cpu")
    assert [len(s) for s in clf.encode(["hi", "a longer text here"])] == [config["max_length"]] * 2


@pytest.mark.parametrize("context", ["0", "abc", "-5"])
def test_bad_context_is_exit_2(context, tmp_path, capsys, sms_path):
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
               "--out", str(tmp_path / "r"), "--context", context])
    assert rc == 2
    assert "--context must be longest, model or a positive number" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_no_padding_is_batches_of_one_with_accumulation(sms_path, tmp_path):
    data = tmp_path / "sms-head.tsv"
    data.write_bytes(b"".join(sms_path.open("rb").readlines()[:600]))
    out = tmp_path / "run"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(data),
               "--format", "sms", "--out", str(out), "--epochs", "1", "--no-padding",
               "--grad-accum", "4", "--pool", "last", "--classify"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["train_config"]["batch_size"], m["train_config"]["grad_accum"]) == (1, 4)
    n_train = m["examples"]["train"]
    assert m["history"]["steps"] == [n_train // 4]
    assert m["history"]["examples_seen"] == [n_train - n_train % 4]


def test_no_padding_with_another_batch_size_is_exit_2(sms_path, tmp_path, capsys):
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(sms_path),
               "--out", str(tmp_path / "r"), "--no-padding", "--batch-size", "8"])
    assert rc == 2
    assert "--no-padding means batches of one text" in capsys.readouterr().err
