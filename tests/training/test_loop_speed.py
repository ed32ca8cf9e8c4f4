"""The loop's precision and the final evaluation: bf16 autocast for the trainable layers where
`precision` resolves to bf16 (fp32 master weights), the fp32 path bit for bit the plain one,
each split scored once at the end. Behaviour only: no timings."""

import contextlib
import json

import pytest
import torch
from helpers import CPU, synthetic, tiny_classifier

import gptcls.device
import gptcls.training.loop as loop
from gptcls.device import effective_precision
from gptcls.options import TrainConfig
from gptcls.training.trunk_cache import Store, build_store, full_batches

CFG = dict(epochs=1, batch_size=8, lr=1e-3, eval_freq=2, eval_iter=1, seed=5)


def _native_bf16(monkeypatch, native: bool) -> None:
    """This CPU as one with (or without) bf16 measured faster than fp32."""
    monkeypatch.setattr(gptcls.device, "cpu_has_native_bf16", lambda: native)


def _train(precision: str, blocks: int = 1, watch: list | None = None):
    """(history, trainable weights, optimizer-state dtypes) of a tiny cached run; `watch`
    collects (training?, output dtype) of the top block's first linear layer's calls."""
    ids, labels = synthetic(40)
    model = tiny_classifier("llama-tiny", "last+mean", blocks=blocks, seed=1)
    tr = build_store(model, ids[:32], labels[:32], True, CPU)
    va = build_store(model, ids[32:], labels[32:], True, CPU)
    if watch is not None:
        linear = next(m for m in model.backbone.blocks[-1].modules()
                      if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda m, i, o: watch.append((m.training, o.dtype)))
    dtypes: set[torch.dtype] = set()
    real_step = torch.optim.AdamW.step

    def step(self, *a, **k):
        out = real_step(self, *a, **k)
        dtypes.update(t.dtype for s in self.state.values() for t in s.values()
                      if torch.is_tensor(t) and t.dim() > 0)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", step)
        hist = loop.train(model, tr, va, TrainConfig(**CFG, precision=precision), CPU,
                          log=lambda m: None)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return hist, weights, dtypes


def _same(a, b) -> None:
    hist_a, w_a, _ = a
    hist_b, w_b, _ = b
    for key in ("train_losses", "val_losses", "train_accs", "val_accs"):
        assert hist_a[key] == hist_b[key], key  # exact: not a float tolerance
    assert w_a.keys() == w_b.keys()
    assert all(torch.equal(w_a[n], w_b[n]) for n in w_a)


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_the_fp32_path_is_bit_for_bit_training_without_autocast(monkeypatch, precision):
    _native_bf16(monkeypatch, False)  # auto resolves to fp32 here
    resolved = _train(precision)
    with monkeypatch.context() as mp:  # the loop as it was: no autocast context on the CPU
        mp.setattr(loop, "autocast", lambda *a, **k: contextlib.nullcontext())
        plain = _train(precision)
    _same(resolved, plain)
    assert resolved[2] == {torch.float32}


def test_fp32_asked_for_stays_fp32_where_bf16_is_native(monkeypatch):
    watch: list = []
    _native_bf16(monkeypatch, True)
    exact = _train("fp32", watch=watch)
    _native_bf16(monkeypatch, False)
    _same(exact, _train("auto"))
    assert {dtype for _, dtype in watch} == {torch.float32}


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_bf16_autocast_trains_the_top_where_bf16_resolves(monkeypatch, precision):
    _native_bf16(monkeypatch, True)
    watch: list = []
    hist, weights, opt_dtypes = _train(precision, blocks=2, watch=watch)
    assert (True, torch.bfloat16) in watch  # training steps multiply in bf16
    assert (False, torch.bfloat16) in watch  # so do the loop's evaluations
    assert (True, torch.float32) not in watch
    # fp32 master weights and optimizer state
    assert all(w.dtype == torch.float32 for w in weights.values())
    assert opt_dtypes == {torch.float32}
    _native_bf16(monkeypatch, False)
    fp32_hist = _train("fp32", blocks=2)[0]
    assert hist["train_losses"] != fp32_hist["train_losses"]  # bf16 really ran
    torch.testing.assert_close(torch.tensor(hist["train_losses"]),
                               torch.tensor(fp32_hist["train_losses"]), atol=0.05, rtol=0.05)


def test_auto_is_fp32_where_bf16_is_not_native(monkeypatch):
    _native_bf16(monkeypatch, False)
    watch: list = []
    _train("auto", watch=watch)
    assert {dtype for _, dtype in watch} == {torch.float32}


def _stores():
    ids, labels = synthetic(45)
    model = tiny_classifier("gpt2-tiny", "last+mean", blocks=1, seed=3)
    parts = {"train": slice(0, 25), "validation": slice(25, 35), "test": slice(35, 45)}
    return model, {name: build_store(model, ids[s], labels[s], True, CPU)
                   for name, s in parts.items()}


def test_the_final_evaluation_scores_each_example_of_each_split_once(monkeypatch):
    model, stores = _stores()
    seen: dict[int, list[int]] = {}
    real_batch = Store.batch

    def batch(self, idx, device):
        seen.setdefault(id(self), []).extend(idx)
        return real_batch(self, idx, device)

    monkeypatch.setattr(Store, "batch", batch)
    final = loop.evaluate_splits(model, stores, CPU, show=False)
    assert list(final) == list(stores)
    for name, store in stores.items():
        assert sorted(seen[id(store)]) == list(range(len(store))), name
        assert not final[name]["probs"].isnan().any()
    monkeypatch.setattr(Store, "batch", real_batch)
    for name, store in stores.items():  # the same figures as evaluate over full batches
        alone = loop.evaluate(model, store, full_batches(store), CPU)
        assert torch.equal(alone["probs"], final[name]["probs"])
        assert alone["loss"] == final[name]["loss"]


def test_the_final_evaluation_runs_at_the_precision_given(monkeypatch):
    model, stores = _stores()
    _native_bf16(monkeypatch, True)
    exact = loop.evaluate_splits(model, stores, CPU, "fp32", show=False)
    fast = loop.evaluate_splits(model, stores, CPU, "auto", show=False)
    assert any(not torch.equal(exact[n]["probs"], fast[n]["probs"]) for n in stores)
    for name in stores:
        torch.testing.assert_close(fast[name]["probs"], exact[name]["probs"], atol=0.02,
                                   rtol=0)


def test_metrics_record_the_training_precision(tiny_run):
    m = json.loads((tiny_run / "metrics.json").read_text())
    precision = m["train_config"]["precision"]
    assert m["train_precision"] == effective_precision(precision, torch.device(m["device"]))
