"""Label audit: folds, confident-learning issues, and flipped labels found end to end."""

from __future__ import annotations

import random

import pytest
import torch

from gptcls.errors import GptclsError
from gptcls.evaluation.audit import (
    assign_folds,
    class_thresholds,
    fit_logistic,
    label_issues,
    margins,
    out_of_fold_probs,
    pooled_features,
)
from gptcls.evaluation.audit_run import Rows, audit_rows, backbone_features

FRUIT = "apple banana cherry grape lemon mango peach plum".split()
PLACE = "river mountain forest valley ocean desert canyon island".split()
FLIPPED = [5, 18, 33, 160, 281, 300]


def word_rows(n: int = 400, seed: int = 0) -> tuple[list[str], list[str]]:
    """Texts of 4-8 class-specific words (fruit or place), with FLIPPED labels swapped. Four
    words a class and 400 rows: random gpt2-tiny features are 16 numbers, enough to tell the
    classes apart but only from a few hundred examples."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        words = FRUIT[:4] if i % 2 == 0 else PLACE[:4]
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 8))))
        labels.append("fruit" if i % 2 == 0 else "place")
    for i in (i for i in FLIPPED if i < n):
        labels[i] = "place" if labels[i] == "fruit" else "fruit"
    return texts, labels


def test_thresholds_are_mean_self_probability():
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])
    t = class_thresholds(probs, [0, 0, 1, 1])
    assert torch.allclose(t, torch.tensor([0.8, 0.7]))


def test_label_issues_confident_learning_rule():
    # t = [0.617, 0.525, 0.7]: row 3 (labelled 0) has p_1 = 0.85 >= t_1, its own p_0 below t_0;
    # row 4 (labelled 1) has p_2 = 0.75 >= t_2, its own p_1 = 0.2 below t_1: flagged as 2;
    # row 5 (labelled 2) has p_0 = 0.5 < t_0 and p_2 < t_2: no confident class, not flagged.
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.1, 0.85, 0.05],
                          [0.1, 0.85, 0.05], [0.05, 0.2, 0.75], [0.5, 0.1, 0.4],
                          [0.05, 0.05, 0.9], [0.1, 0.1, 0.8]])
    labels = [0, 0, 1, 0, 1, 2, 2, 2]
    issues = label_issues(probs, labels)
    assert [(s.row, s.given, s.suggested) for s in issues] == [(3, 0, 1), (4, 1, 2)]
    assert issues[0].margin == pytest.approx(0.1 - 0.85)
    assert issues[1].self_confidence == pytest.approx(0.2)


def test_no_issue_when_given_label_is_the_likeliest_confident_class():
    probs = torch.tensor([[0.95, 0.05], [0.7, 0.3], [0.2, 0.8], [0.1, 0.9]])
    assert label_issues(probs, [0, 0, 1, 1]) == []


def test_folds_keep_groups_together_and_classes_spread():
    labels = [0] * 50 + [1] * 10
    groups = [i // 2 for i in range(60)]  # pairs of identical texts
    folds = assign_folds(labels, groups, 5, seed=1)
    assert all(folds[2 * g] == folds[2 * g + 1] for g in range(30))
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for f in range(5):  # 5 pairs of class 1 dealt round-robin: one pair per fold
        assert sum(1 for i in range(50, 60) if folds[i] == f) == 2
    assert assign_folds(labels, groups, 5, seed=1) == folds


@pytest.mark.parametrize("k, groups", [(1, list(range(10))), (5, [0, 0, 1, 1, 2, 2, 3, 3])])
def test_folds_bad_counts(k, groups):
    with pytest.raises(GptclsError, match="folds"):
        assign_folds([0, 1] * (len(groups) // 2), groups, k)


def test_logistic_head_separates_separable_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    w, b = fit_logistic(x, y, 2)
    assert float(((x @ w + b).argmax(-1) == y).float().mean()) > 0.97


def test_out_of_fold_probs_never_see_the_row():
    # One-hot features: each row's feature is its own; a head never fitted on a row has no
    # weight for its feature, so it predicts the training prior, not the row's label.
    x = torch.eye(10)
    probs = out_of_fold_probs(x, [0, 1] * 5, [i % 5 for i in range(10)], 2)
    assert torch.allclose(probs.sum(-1), torch.ones(10))
    assert (probs.max(-1).values < 0.75).all()


def test_flipped_labels_rank_first_with_a_tiny_backbone():
    texts, labels = word_rows()
    rows = Rows(texts, labels, [""] * len(texts), list(range(1, len(texts) + 1)))
    features, info = backbone_features(texts, "gpt2-tiny", "random", device="cpu")
    assert features.shape == (400, 16) and info["pooling"] == "last"
    result = audit_rows(rows, features, folds=5, seed=123, info=info)
    y = [result.classes.index(c) for c in labels]
    # Ranked by margin, the flipped rows come first: the held-out heads disagree with them.
    lowest = margins(result.probs, y).argsort()[: len(FLIPPED)]
    assert sorted(lowest.tolist()) == FLIPPED
    # Confident learning flags flipped rows only (those the heads are sure enough of), first
    # the most confident, each with its true class suggested.
    assert len(result.issues) >= len(FLIPPED) // 2
    for s in result.issues:
        assert s.row in FLIPPED and s.margin < 0
        assert result.classes[s.suggested] != labels[s.row]
    assert [s.margin for s in result.issues] == sorted(s.margin for s in result.issues)


def test_identical_texts_share_features_and_fold():
    texts = ["apple banana", "river ocean", "apple banana", "plum mango", "river ocean",
             "desert canyon"] * 2
    features, _ = backbone_features(texts, "gpt2-tiny", "random", device="cpu")
    assert torch.equal(features[0], features[2]) and torch.equal(features[0], features[6])


def test_one_class_is_an_error():
    rows = Rows(["a", "b", "c"], ["x"] * 3, [""] * 3, [1, 2, 3])
    with pytest.raises(GptclsError, match="at least 2 classes"):
        audit_rows(rows, torch.randn(3, 4), folds=2)


@pytest.mark.parametrize("pooling", ["last", "last+mean", "mean"])
def test_pooled_features_are_what_the_head_reads(pooling):
    from gptcls.classifier.model import ClassifierModel
    from gptcls.models.weights.pretrained import load_backbone, load_pretrained

    pre = load_pretrained("gpt2-tiny", "random", seed=5)
    clf = ClassifierModel(load_backbone(pre.config, pre.state_dict), 3, pooling)
    clf.set_policy("last-layer")
    ids = [pre.tokenizer.encode(t) for t in ["apple banana", "a much longer river text", "x"]]
    feats = pooled_features(clf, ids, torch.device("cpu"))  # (3, D)
    with torch.no_grad():
        for i, seq in enumerate(ids):
            x, n = torch.tensor([seq]), torch.tensor([len(seq)])
            assert torch.allclose(clf.head(feats[i]), clf(x, n)[0], atol=1e-5)
    assert isinstance(clf.head, torch.nn.Linear)  # the head is put back
