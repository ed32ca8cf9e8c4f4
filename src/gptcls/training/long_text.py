"""`--long-text chunk` in training: a text longer than max_length becomes its half-overlapping
windows (classifier/windows.py, the windows `Classifier.predict_proba` reads), each a training
example with the text's label; evaluation scores each text by its windows' mean probability, so
every figure (losses, accuracies, reports, thresholds, calibration) counts texts, not windows.

The split's Store holds the windows as items, the texts' labels, and `groups` (the text of
each window); the trunk cache sees windows as any other token sequences.
"""

from __future__ import annotations

import torch

from gptcls.classifier.encoding import LengthChoice, fit_ids
from gptcls.classifier.windows import reduce_windows, split_windows, whole_texts
from gptcls.data.examples import SPLIT_NAMES
from gptcls.errors import GptclsError
from gptcls.options import RunOptions
from gptcls.training.trunk_cache import Store


def window_splits(raw: dict[str, list[list[int]]], choice: LengthChoice, pad_id: int,
                  pooling: str) -> tuple[dict[str, list[list[int]]], dict[str, list[int]], str]:
    """(windows per split, the text of each window per split, the line saying what was cut)
    from every split's whole token ids."""
    n = choice.max_length
    ids, groups = {}, {}
    for name in SPLIT_NAMES:
        chunks, owner = split_windows(raw[name], n)
        ids[name], groups[name] = fit_ids(chunks, n, pad_id, pooling), owner
    return ids, groups, windows_message(raw, ids, choice)


def windows_message(raw: dict[str, list[list[int]]], ids: dict[str, list[list[int]]],
                    choice: LengthChoice) -> str:
    """One line: max_length, why, and how many texts of each kind became how many windows."""
    n = choice.max_length
    covered = (choice.texts - choice.longer) / max(choice.texts, 1)
    why = {"longest": f"the longest of the {choice.texts:,} training texts",
           "coverage": f"covers {covered:.1%} of the {choice.texts:,} training texts",
           "max-length": "--max-length", "context": "--context"}[choice.rule]
    parts = []
    for what, names in (("training", SPLIT_NAMES[:1]), ("validation/test", SPLIT_NAMES[1:])):
        long = sum(len(s) > n for name in names for s in raw[name])
        extra = sum(len(ids[name]) - len(raw[name]) for name in names)
        if long:
            parts.append(f"{long:,} {what} text{'s' * (long > 1)} longer than max_length {n} "
                         f"{'were' if long > 1 else 'was'} cut into {long + extra:,} windows")
    if not parts:
        return f"max_length {n} ({why}; --long-text chunk: no text longer, no window)"
    return (f"max_length {n} ({why}); --long-text chunk: {'; '.join(parts)} (half-overlapping; "
            "each window trains with its text's label, a text is scored by its windows' mean "
            "probability)")


def group_stores(stores: dict[str, Store], groups: dict[str, list[int]]) -> None:
    """Mark each store's items as windows of texts (`groups`: the text of each item)."""
    for name, owner in groups.items():
        store = stores[name]
        if len(owner) != len(store) or (owner and owner[-1] + 1 != len(store.labels)):
            raise ValueError(f"{name}: {len(owner)} windows of {len(store.labels)} texts do not "
                             f"match a store of {len(store)} items")
        store.groups = list(owner)


def eval_prefix(store: Store, n: int) -> int:
    """How many leading items the running validation estimate scores: `n`, extended to the end
    of the last text it starts (whole texts only)."""
    return min(n, len(store)) if store.groups is None else whole_texts(store.groups, n)


def text_results(store: Store, probs: torch.Tensor,
                 class_weights: torch.Tensor | None = None) -> dict[str, float | torch.Tensor]:
    """`evaluate`'s result per text from its items' probabilities (NaN rows: not scored): each
    text's probabilities are its scored windows' mean; loss and accuracy count the texts with
    a scored window (the loss as `evaluate`'s: class-weighted sum over texts / texts)."""
    assert store.groups is not None
    p = torch.from_numpy(reduce_windows(probs.numpy(), store.groups, len(store.labels)))
    scored = ~p.isnan().any(1)
    q = p[scored].double().clamp(1e-12, 1 - 1e-12)  # (n, K)
    y = store.labels[scored]
    w = None if class_weights is None else class_weights.detach().cpu().double()
    if y.dim() == 2:  # multi-label: binary cross-entropy per label (w: positive weights)
        pos = y.double() * torch.log(q) * (1 if w is None else w)
        per_text = -(pos + (1 - y.double()) * torch.log(1 - q)).mean(-1)
        correct = ((q > 0.5) == y.bool()).all(-1)
    else:
        per_text = -torch.log(q[torch.arange(len(y)), y]) * (1 if w is None else w[y])
        correct = q.argmax(-1) == y
    count = max(int(scored.sum()), 1)
    return {"loss": float(per_text.sum()) / count, "accuracy": int(correct.sum()) / count,
            "probs": p}


def check_long_text(opts: RunOptions, in_memory: bool = False) -> None:
    """The paths that do not read windows yet refuse --long-text chunk (one line, exit 2)."""
    if opts.long_text == "chunk" and in_memory:
        raise GptclsError("long_text='chunk' is for `gptcls train` and gptcls.train(...); the "
                          "scikit-learn estimator truncates (long_text='truncate')")


def window_counts(stores: dict[str, Store]) -> dict[str, dict[str, int]]:
    """Texts and windows per split, for metrics.json (empty without --long-text chunk)."""
    return {name: {"texts": len(s.labels), "windows": len(s)} for name, s in stores.items()
            if s.groups is not None}
