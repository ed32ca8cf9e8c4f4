"""Twins (classifier/twin.py): the bf16 twin computes what bf16 autocast over the fp32 model
does, the twins of the trunk and of a Classifier are rebuilt when their weights change, and
the model they come from is never touched. The int8 twin's accuracy: test_int8.py."""

from __future__ import annotations

import pytest
import torch
from helpers import CPU, family_model, model_logits, synthetic, tiny_classifier
from torch import nn

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.twin import bf16_copy, drop_twins, trunk_twin, twin_copy
from gptcls.device import autocast
from gptcls.training.trunk_cache import build_store


def bf16_logits(model, ids) -> torch.Tensor:
    with autocast(CPU, "bf16"):
        return model_logits(model, ids).float()


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny", "qwen3", "gemma3"])
def test_bf16_twin_computes_what_autocast_over_the_fp32_model_does(name: str) -> None:
    model = family_model(name)
    ids, _ = synthetic(48)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = bf16_logits(model, ids)
    twin = bf16_copy(model)
    # The same bf16 weights autocast makes on every call, fused (q/k/v, gate/up) in one product:
    # measured equal to the last bit; the tolerance allows a GEMM that blocks wider outputs
    # differently, far below bf16's own error (about 1e-2 of the logits here).
    torch.testing.assert_close(bf16_logits(twin, ids), ref, atol=1e-4, rtol=1e-4)
    linears = [m for m in twin.backbone.blocks.modules() if type(m) is nn.Linear]
    assert len(linears) == 4 * len(twin.backbone.blocks)  # q/k/v fused, proj, gate/up fused, down
    assert all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert twin.head.weight is model.head.weight  # shared: a head that trains stays current
    assert twin.backbone.tok_emb.weight is model.backbone.tok_emb.weight
    assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype
               for k, v in model.state_dict().items())


def test_bf16_copy_of_the_trunk_converts_only_the_frozen_blocks() -> None:
    model = family_model("llama-tiny")  # block 1 trains
    twin = twin_copy(model, "bf16", model.first_trainable)
    assert twin.backbone.blocks[1] is model.backbone.blocks[1]
    assert twin.backbone.blocks[0].mlp.down.weight.dtype == torch.bfloat16
    assert twin_copy(model, "fp32") is model


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_trunk_twin_is_reused_until_the_frozen_weights_change(precision: str) -> None:
    model = family_model("llama-tiny")
    twin = trunk_twin(model, precision)
    assert trunk_twin(model, precision) is twin  # one copy for the train/validation/test passes
    with torch.no_grad():
        model.backbone.blocks[1].mlp.up.weight.add_(1.0)  # a trainable block: no effect
    assert trunk_twin(model, precision) is twin
    with torch.no_grad():
        model.backbone.blocks[0].mlp.up.weight.mul_(2.0)
    rebuilt = trunk_twin(model, precision)
    assert rebuilt is not twin
    drop_twins(model)
    assert trunk_twin(model, precision) is not rebuilt
    assert trunk_twin(model, "fp32") is model


def test_trunk_store_in_bf16_is_the_autocast_pass() -> None:
    model = tiny_classifier("llama-tiny", blocks=1)
    ids, labels = synthetic(24)
    got = torch.cat(build_store(model, ids, labels, True, CPU, precision="bf16").items)
    x = [torch.tensor(s) for s in ids]
    with torch.inference_mode(), autocast(CPU, "bf16"):
        ref = torch.cat([model.trunk(s[None])[0].float() for s in x])
    assert (got - ref).abs().max() <= 2e-2 * ref.abs().max()  # one text at a time: bf16 rounding
    assert trunk_twin(model, "bf16").backbone.blocks[0].attn.qkv.weight.dtype == torch.bfloat16


def test_classifier_bf16_predictions_follow_the_weights(tiny_run, tiny_test_texts) -> None:
    clf = Classifier.load(tiny_run, device="cpu", precision="bf16")
    texts = tiny_test_texts[:16]
    first = clf.predict_proba(texts)
    twin = clf.twin_model()
    assert twin is not clf.model and clf.twin_model() is twin  # built once
    with torch.inference_mode(), autocast(CPU, "bf16"):
        ids = [clf.encode([t])[0] for t in texts]
        direct = torch.cat([clf.probabilities(clf.model(torch.tensor([s]),
                                                        torch.tensor([len(s)])).float())
                            for s in ids]).numpy()
    assert abs(first - direct).max() < 2e-2  # the twin's answers are autocast's
    with torch.no_grad():  # e.g. the estimator training on after a prediction
        clf.model.backbone.blocks[0].mlp.fc.weight.mul_(3.0)
    assert clf.twin_model() is not twin
    assert abs(clf.predict_proba(texts) - first).max() > 1e-3


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_takes_the_twin_of_what_autocast_computes(tiny_run, monkeypatch,
                                                                 native: bool) -> None:
    from gptcls import device as dev

    monkeypatch.setenv("GPTCLS_BF16", "1" if native else "0")
    dev.cpu_has_native_bf16.cache_clear()
    try:
        clf = Classifier.load(tiny_run, device="cpu", precision="auto")  # the default
        twin = clf.twin_model()
        if native:  # autocast runs bf16: the twin holds bf16 weights, as for "bf16"
            assert twin.backbone.blocks[0].mlp.fc.weight.dtype == torch.bfloat16
        else:
            assert twin is clf.model
    finally:
        dev.cpu_has_native_bf16.cache_clear()
