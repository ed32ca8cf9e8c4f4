"""Label audit: out-of-fold class probabilities from one frozen-backbone pass, and the rows
whose given label the data itself disagrees with (confident learning).

The backbone never trains here, so every text's pooled features (the model's pooling of its
last layer, after the final norm: what a head-only run's head reads) are computed once. Then k
logistic heads, each fitted on k-1 folds, predict the held-out fold: every row gets
probabilities from a head that never saw its label. Rows with the same token ids share a fold,
so a duplicated mislabelled text cannot vouch for itself.

Confident learning (Northcutt et al., 2021): t_j = mean p_j over the rows labelled j (how sure
the heads are of class j when it is right); a row labelled i is a probable label error when,
among the classes j with p_j >= t_j, the likeliest is not i. Ranked by margin p_given - max
other p (most negative first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from gptcls.classifier.encoding import length_batches, pad_batch, unique_sequences
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.twin import twin_copy
from gptcls.device import autocast
from gptcls.errors import GptclsError
from gptcls.progress import progress

# L2 penalty on the standardised features' head weights (mean cross-entropy + L2/2 |W|^2):
# about sklearn's C=1 at a few thousand rows; keeps separable folds from fitting to infinity.
L2 = 1e-3
LBFGS_STEPS = 200


@torch.inference_mode()
def pooled_features(model: ClassifierModel, ids: list[list[int]], device: torch.device,
                    precision: str = "fp32", batch_tokens: int = 4096) -> torch.Tensor:
    """(N, D) pooled last-layer features of every text (D = emb_dim, 2x for last+mean), one
    backbone pass per distinct token sequence. `model` must be frozen throughout (last-layer
    policy); its head is bypassed."""
    if model.first_trainable != model.backbone.config.n_layers:
        raise ValueError("pooled_features needs a model whose every block is frozen")
    model = twin_copy(model, precision)  # int8 or bf16 linears; `model` itself stays fp32
    head, model.head = model.head, nn.Identity()  # top() then returns the pooled features
    try:
        model.eval()
        first, owner = unique_sequences(ids)
        out: list[torch.Tensor | None] = [None] * len(first)
        sizes = [len(ids[i]) for i in first]
        # In tokens, as trunk_cache's pass: shortest texts first, so texts would skew the ETA.
        bar = progress(sum(sizes), "trunk pass (audit)", "tokens")
        for chunk in length_batches(sizes, batch_tokens, max_batch=512):
            x, lengths = pad_batch([torch.tensor(ids[first[c]]) for c in chunk])
            x, lengths = x.to(device), lengths.to(device)
            with autocast(device, precision):
                feats = model.top(model.trunk(x, lengths), lengths).float().cpu()  # (B, D)
            for row, c in enumerate(chunk):
                out[c] = feats[row]
            bar.update(sum(sizes[c] for c in chunk))  # no device sync
        bar.close()
    finally:
        model.head = head
    return torch.stack([out[j] for j in owner])  # type: ignore[misc]


def assign_folds(labels: Sequence[int], groups: Sequence[int], k: int, seed: int = 123
                 ) -> list[int]:
    """A fold in 0..k-1 per row: rows of a group share one; groups are dealt round-robin per
    label (of the group's first row) in a seeded order, so each fold keeps the class mix."""
    if k < 2:
        raise GptclsError(f"--folds must be at least 2, got {k}")
    first: dict[int, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    if len(first) < k:
        raise GptclsError(f"{len(first):,} distinct texts cannot make {k} folds")
    gen = torch.Generator().manual_seed(seed)
    order = [list(first)[i] for i in torch.randperm(len(first), generator=gen).tolist()]
    fold_of: dict[int, int] = {}
    dealt: dict[int, int] = {}
    for g in sorted(order, key=lambda g: labels[first[g]]):  # stable: seeded order per label
        c = labels[first[g]]
        fold_of[g] = dealt.get(c, 0) % k
        dealt[c] = dealt.get(c, 0) + 1
    return [fold_of[g] for g in groups]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = L2,
                 steps: int = LBFGS_STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS: (N, D) x, (N,) y -> (D, K) weights,
    (K,) bias. Deterministic (zero start)."""
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def out_of_fold_probs(features: torch.Tensor, labels: Sequence[int], folds: Sequence[int],
                      num_classes: int) -> torch.Tensor:
    """(N, K) probabilities of every row from the head fitted on the other folds (features
    standardised by that head's training rows)."""
    y = torch.tensor(list(labels))
    fold = torch.tensor(list(folds))
    probs = torch.zeros(len(y), num_classes)
    for f in range(int(fold.max()) + 1):
        held = fold == f
        train = features[~held]
        mean, std = train.mean(0), train.std(0).clamp_min(1e-6)  # (D,) each
        w, b = fit_logistic((train - mean) / std, y[~held], num_classes)
        probs[held] = torch.softmax((features[held] - mean) / std @ w + b, dim=-1)
    return probs


@dataclass(frozen=True)
class Issue:
    """A probable label error: row index, given and suggested class, margin, self-confidence."""

    row: int
    given: int
    suggested: int
    margin: float  # p_given - max other p: negative, lower = more likely wrong
    self_confidence: float  # p_given


def class_thresholds(probs: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """(K,) t_j = mean p_j over the rows labelled j (1.0 for a class no row has: never met)."""
    y = torch.tensor(list(labels))
    return torch.stack([probs[y == j, j].mean() if (y == j).any() else torch.tensor(1.0)
                        for j in range(probs.shape[1])])


def margins(probs: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """(N,) p_given - max other p: negative where the heads prefer another class."""
    y = torch.tensor(list(labels))
    given = probs.gather(1, y[:, None])[:, 0]  # (N,)
    others = probs.scatter(1, y[:, None], -1.0).max(-1).values  # (N,)
    return given - others


def label_issues(probs: torch.Tensor, labels: Sequence[int]) -> list[Issue]:
    """Probable label errors, most likely first (confident learning, see the module doc)."""
    t = class_thresholds(probs, labels)
    # The likeliest class among those at or above their threshold (-1: no class is).
    confident = torch.where(probs >= t, probs, torch.full_like(probs, -1.0))  # (N, K)
    best = confident.argmax(-1)  # (N,)
    has = confident.max(-1).values >= 0
    m = margins(probs, labels)
    issues = [Issue(i, given, int(best[i]), float(m[i]), float(probs[i, given]))
              for i, given in enumerate(labels) if has[i] and int(best[i]) != given]
    return sorted(issues, key=lambda s: (s.margin, s.self_confidence, s.row))


def oof_accuracy(probs: torch.Tensor, labels: Sequence[int]) -> float:
    """How often the held-out heads agree with the given labels: how much to trust them."""
    return float((probs.argmax(-1) == torch.tensor(list(labels))).float().mean())
