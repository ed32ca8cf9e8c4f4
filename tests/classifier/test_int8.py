"""--precision int8: the blocks' linear layers dynamically quantized (classifier/int8.py).

Tolerances: int8 with per-tensor activation scales moves tiny random models' logits by a few
percent of their spread; the bounds below are about 3x the largest difference measured on these
models (so a broken quantization, which moves logits by their whole spread, still fails)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import CPU, family_model, model_logits, synthetic, tiny_classifier
from torch import nn

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.int8 import quantize_linear_int8
from gptcls.classifier.twin import fused_copy, int8_copy
from gptcls.cli.main import main
from gptcls.device import autocast, effective_precision, resolve_precision
from gptcls.errors import GptclsError
from gptcls.models.layers import fuse_linears
from gptcls.models.lora import LoRALinear
from gptcls.training.trunk_cache import build_store, trunk_fingerprint

# max |int8 - fp32| logit difference / fp32 logits' std (measured: <= 0.061, Gemma 3)
REL_TOL = 0.15


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny", "qwen3", "gemma3"])
def test_int8_logits_are_close_to_fp32_and_the_fp32_model_is_untouched(name: str) -> None:
    model = family_model(name)
    ids, _ = synthetic(48)
    ref = model_logits(model, ids)
    twin = int8_copy(model)
    got = model_logits(twin, ids)
    assert (got - ref).abs().max() <= REL_TOL * ref.std()
    assert not torch.equal(got, ref)  # the int8 kernels did run
    quantized = [m for m in twin.backbone.blocks.modules() if type(m).__name__ == "Int8Linear"]
    assert len(quantized) == 4 * 2  # per block: q/k/v fused, proj, two MLP layers (gate/up fused)
    assert type(twin.head) is nn.Linear and twin.head.weight is model.head.weight
    assert twin.backbone.tok_emb.weight is model.backbone.tok_emb.weight
    assert all(type(m) is not nn.Linear or m.weight.dtype == torch.float32
               for m in model.modules())
    assert not any(type(m).__name__ == "Int8Linear" for m in model.modules())
    torch.testing.assert_close(model_logits(model, ids), ref, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny", "qwen3", "gemma3"])
def test_fused_blocks_compute_what_the_separate_layers_do(name: str) -> None:
    model = family_model(name)  # the last block queries one position (the shortcut)
    ids, _ = synthetic(24)
    ref = model_logits(model, ids)
    fused = [fused_copy(b) for b in model.backbone.blocks]
    assert all(b.attn.qkv is not None and b.attn.q is None for b in fused)
    model.backbone.blocks = nn.ModuleList(fused)
    torch.testing.assert_close(model_logits(model, ids), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["llama-tiny", "gemma3"])
def test_fusing_before_int8_changes_no_result(name: str) -> None:
    # q, k and v (gate and up) see one input, so its per-tensor int8 scale is the same fused
    # or not, and the weights' scales are per output channel: the same integers either way.
    block = family_model(name).backbone.blocks[0]
    x = torch.randn(3, 7, block.attn.q.in_features)
    with torch.inference_mode():
        separate = quantize_linear_int8(block)(x)
        fused = quantize_linear_int8(fused_copy(block))(x)
    torch.testing.assert_close(fused, separate, atol=1e-5, rtol=1e-5)


def test_only_plain_linears_are_fused() -> None:
    q, k = nn.Linear(8, 8), nn.Linear(8, 4)
    assert fuse_linears(q, k).weight.shape == (12, 8)
    assert fuse_linears(LoRALinear(q, 2, 4.0), k) is None  # the adapter stays its own layer
    assert fuse_linears(q, nn.Linear(8, 4, bias=False)) is None


def test_int8_copy_of_the_trunk_quantizes_only_the_frozen_blocks() -> None:
    model = family_model("llama-tiny")  # 2 blocks, the last trains
    twin = int8_copy(model, model.first_trainable)
    assert twin.backbone.blocks[1] is model.backbone.blocks[1]
    assert type(twin.backbone.blocks[0].mlp.down).__name__ == "Int8Linear"


def test_quantize_linear_int8_leaves_its_argument_alone() -> None:
    lin = nn.Sequential(nn.Linear(32, 8))
    q = quantize_linear_int8(lin)
    assert type(lin[0]) is nn.Linear and type(q[0]).__name__ == "Int8Linear"
    x = torch.randn(5, 32)
    assert (q(x) - lin(x)).abs().max() < 0.1 * lin(x).abs().max()


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_int8_is_a_cpu_path(device: str) -> None:
    with pytest.raises(GptclsError, match="int8 is a CPU path") as info:
        resolve_precision("int8", torch.device(device))  # torch.device() touches no GPU
    assert "\n" not in str(info.value)


def test_int8_resolves_on_the_cpu_and_autocast_stays_off() -> None:
    assert resolve_precision("int8", CPU) == "int8"
    assert effective_precision("int8", CPU) == "int8"  # what the server reports
    assert not autocast(CPU, "int8")._enabled  # int8 swaps modules; no bf16 autocast


def test_trunk_store_in_int8_is_close_to_fp32_and_keyed_apart() -> None:
    model = tiny_classifier("llama-tiny", blocks=1)
    ids, labels = synthetic(24)
    fp32 = build_store(model, ids, labels, True, CPU, precision="fp32")
    int8 = build_store(model, ids, labels, True, CPU, precision="int8")
    ref, got = torch.cat(fp32.items), torch.cat(int8.items)
    assert (got - ref).abs().max() <= REL_TOL * ref.std() and not torch.equal(got, ref)
    assert all(type(m) is not nn.Linear or m.weight.dtype == torch.float32
               for m in model.modules())  # the trainable model itself stays fp32
    assert trunk_fingerprint(model, ids, "int8") != trunk_fingerprint(model, ids, "fp32")


def test_classifier_int8_labels_agree_with_fp32(tiny_run, tiny_clf, tiny_test_texts) -> None:
    clf8 = Classifier.load(tiny_run, device="cpu", precision="int8")
    p32, p8 = tiny_clf.predict_proba(tiny_test_texts), clf8.predict_proba(tiny_test_texts)
    agree = (p32.argmax(1) == p8.argmax(1)).mean()
    assert agree >= 0.95, agree  # measured: 1.0 on these 300 texts
    assert abs(p32 - p8).max() < 0.1  # measured: well under 0.05
    assert clf8.model is not clf8.twin_model()  # the fp32 model is what saves and exports


def test_cli_classify_int8(tiny_run, capsys) -> None:
    assert main(["classify", str(tiny_run), "Free entry! Text WIN now", "see you soon",
                 "--precision", "int8", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split("\t")[0] in ("ham", "spam") for line in lines)


def test_train_int8_runs_the_frozen_trunk_in_int8_and_trains_fp32(sms_path, tmp_path) -> None:
    rows = sms_path.read_text(encoding="utf-8").splitlines()
    spam = [r for r in rows if r.startswith("spam\t")][:40]
    ham = [r for r in rows if r.startswith("ham\t")][:40]
    data = tmp_path / "small.tsv"
    data.write_text("\n".join(spam + ham) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(data),
                 "--format", "sms", "--out", str(out), "--epochs", "1", "--trainable-blocks",
                 "1", "--precision", "int8", "--device", "cpu"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["trunk_cached"] and m["trunk_precision"] == "int8"
    assert m["train_precision"] == "fp32" and m["train_config"]["precision"] == "int8"
    model = Classifier.load(out, device="cpu", precision="fp32").model  # saved: all fp32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(type(m) is nn.Linear for m in model.backbone.blocks[1].modules()
               if "Linear" in type(m).__name__)


def test_audit_features_in_int8_are_close_to_fp32() -> None:
    from gptcls.evaluation.audit import pooled_features

    model = tiny_classifier("llama-tiny", blocks=0)  # every block frozen, as audit runs it
    ids, _ = synthetic(16)
    ref = pooled_features(model, ids, CPU, "fp32")
    got = pooled_features(model, ids, CPU, "int8")
    assert (got - ref).abs().max() <= REL_TOL * ref.std() and not torch.equal(got, ref)
    assert type(model.head) is nn.Linear  # the model's own head is back in place
