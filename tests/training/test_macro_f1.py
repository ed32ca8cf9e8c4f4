"""One macro-F1: early stopping on val_f1 scores epochs with the report's definition."""

from __future__ import annotations

import pytest
import torch
from helpers import CPU, synthetic
from sklearn import metrics as skm

from gptcls.classifier.model import ClassifierModel
from gptcls.evaluation.metrics import classification_report, macro_f1
from gptcls.models import build_backbone, preset_config
from gptcls.options import TrainConfig
from gptcls.training.loop import evaluate, train
from gptcls.training.trunk_cache import build_store, full_batches


def _one_hot(pred: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), k).double()


def test_macro_f1_is_the_reports_and_sklearns_with_absent_classes():
    y = [0, 0, 1, 1, 2, 2]
    pred = [0, 1, 1, 3, 0, 1]  # class 2 never predicted, class 3 never true, class 4 neither
    labels = ["a", "b", "c", "d", "e"]
    report = classification_report(y, _one_hot(pred, 5).numpy(), labels)
    ours = macro_f1(y, pred, 5)
    assert ours == pytest.approx(report["macro_f1"], abs=1e-12)
    assert ours == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-12)
    # Classes 0..3 occur in y or pred: F1 1/2, 2/5, 0, 0; class 4 is left out.
    assert ours == pytest.approx((1 / 2 + 2 / 5) / 4)
    assert macro_f1(torch.tensor(y), torch.tensor(pred), 5) == pytest.approx(ours)


def test_early_stopping_scores_epochs_with_the_reports_macro_f1():
    ids, labels = synthetic(96)
    torch.manual_seed(4)
    model = ClassifierModel(build_backbone(preset_config("gpt2-tiny")), 4, "last")
    model.set_trainable(1)
    with torch.no_grad():  # classes 2 and 3 are never predicted
        model.head.bias[2:] = -1e4
    val_labels = [2 if i % 5 == 0 else y for i, y in enumerate(labels[64:])]  # 3 never true
    tr = build_store(model, ids[:64], labels[:64], True, CPU)
    va = build_store(model, ids[64:], val_labels, True, CPU)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-2, eval_freq=100, seed=1,
                      early_stopping="val_f1", patience=None)
    hist = train(model, tr, va, cfg, CPU, log=lambda m: None)
    probs = evaluate(model, va, full_batches(va), CPU)["probs"].double().numpy()
    y = va.labels.numpy()
    pred = probs.argmax(-1)
    assert set(pred.tolist()) <= {0, 1} and 2 in y and 3 not in y  # the case this test is about
    report = classification_report(y, probs, ["a", "b", "c", "d"])
    best = hist["best_epoch"][0]
    assert hist["val_macro_f1"][best - 1] == pytest.approx(report["macro_f1"], abs=1e-12)
    # The old loop definition (mean over all 4 classes) would score this epoch lower.
    per_class = [report["per_class"][name]["f1"] for name in "abcd"]
    assert report["macro_f1"] > 0 and sum(per_class) / 4 < report["macro_f1"] - 1e-3
