"""Learning-rate schedules, early stopping with the best epoch restored, bf16 trunk precision."""

import math

import pytest
import torch
from helpers import CPU, synthetic, tiny_classifier

from gptcls.errors import GptclsError
from gptcls.evaluation.metrics import macro_f1
from gptcls.options import TrainConfig
from gptcls.training.loop import evaluate, make_scheduler, train
from gptcls.training.trunk_cache import build_store, full_batches


def lrs(cfg: TrainConfig, total: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_and_linear_decay():
    cos = lrs(TrainConfig(lr_schedule="cosine", warmup_steps=4), 14)
    assert cos[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert cos[4] == pytest.approx(1.0)
    assert cos[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(cos[3:], cos[4:], strict=False))
    lin = lrs(TrainConfig(lr_schedule="linear"), 10)
    assert lin == pytest.approx([1 - i / 10 for i in range(10)])
    assert lrs(TrainConfig(), 5) == [1.0] * 5


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(GptclsError, match="unknown lr schedule 'step'"):
        lrs(TrainConfig(lr_schedule="step"), 3)


def test_macro_f1_matches_hand_computation():
    y = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: 0
    assert macro_f1(y, pred, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


@pytest.mark.parametrize("metric", ["val_loss", "val_f1"])
def test_early_stopping_restores_the_best_epoch(metric):
    ids, labels = synthetic(96)
    model = tiny_classifier(blocks=1, seed=4)
    tr = build_store(model, ids[:64], labels[:64], True, CPU)
    va = build_store(model, ids[64:], labels[64:], True, CPU)
    # A learning rate high enough that later epochs get worse than the best one.
    cfg = TrainConfig(epochs=6, batch_size=8, lr=3e-2, eval_freq=100, seed=1,
                      early_stopping=metric, patience=2)
    hist = train(model, tr, va, cfg, CPU, log=lambda m: None)
    scores = hist["val_full_losses"] if metric == "val_loss" else hist["val_macro_f1"]
    pick = min if metric == "val_loss" else max  # both return the first best epoch
    best = pick(range(len(scores)), key=scores.__getitem__)
    assert best + 1 < len(scores), "the recipe should overshoot so restoring matters"
    assert hist["best_epoch"] == [best + 1]
    assert len(scores) <= 6
    if len(scores) < 6:  # stopped early: exactly `patience` epochs after the best
        assert len(scores) == best + 1 + 2
    res = evaluate(model, va, full_batches(va), CPU)
    if metric == "val_loss":
        assert res["loss"] == pytest.approx(scores[best], abs=1e-6)
    else:
        assert macro_f1(va.labels, res["probs"].argmax(-1), 2) == pytest.approx(scores[best])


def test_bf16_trunk_is_close_to_fp32_and_not_equal():
    ids, labels = synthetic(24)
    model = tiny_classifier("llama-tiny", blocks=1, seed=0)
    fp32 = build_store(model, ids, labels, True, CPU)
    bf16 = build_store(model, ids, labels, True, CPU, precision="bf16")
    diffs = [float((a - b).abs().max()) for a, b in zip(fp32.items, bf16.items, strict=True)]
    scale = max(float(a.abs().max()) for a in fp32.items)
    assert 0 < max(diffs) < 0.05 * scale
    assert all(b.dtype == torch.float32 for b in bf16.items)


def test_physical_cores_count_hyperthreads_once():
    from gptcls.device import count_cores

    # 2 sockets x 2 cores x 2 hyper-threads = 8 processors, 4 cores.
    info = "\n\n".join(f"processor\t: {i}\nphysical id\t: {i // 4}\ncore id\t\t: {(i // 2) % 2}"
                       for i in range(8))
    assert count_cores(info) == 4
    assert count_cores(info, allowed={0, 1}) == 1  # two threads of one core
    assert count_cores(info, allowed={0, 2, 4}) == 3
    assert count_cores("processor\t: 0\n") == 0  # no core ids: the caller falls back
