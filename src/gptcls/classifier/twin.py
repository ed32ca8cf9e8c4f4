"""Twins: copies of a ClassifierModel made for no-grad passes, sharing every weight they do not
change with the model (which stays as it is: run directories save it, exports trace it).

  int8  the blocks' nn.Linear layers dynamically quantized (int8.py).
  bf16  the blocks' nn.Linear weights cast to bf16 once, for bf16 autocast. The results are
        the autocast model's own (autocast casts each fp32 weight to the same bf16 values on
        every call; norms, embeddings and the head stay fp32); only the casts are gone. Why:
        casting a trunk's weights on every batch, and the cold caches after it, cost the
        SmolLM2 trunk pass ~10% (2-core AMD EPYC with AVX512-BF16).
Both fuse q/k/v and gate/up into one layer each (`fuse`): fewer, larger matrix products.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from gptcls.classifier.int8 import quantize_linear_int8
from gptcls.classifier.model import ClassifierModel
from gptcls.device import check_int8_device, effective_precision

TWIN_PRECISIONS = ("int8", "bf16")  # the precisions that have a twin; others run the model


def int8_copy(model: ClassifierModel, n_blocks: int | None = None) -> ClassifierModel:
    """A model computing like `model` with its first `n_blocks` blocks (default: all) in int8.
    Every other parameter and module is shared with `model`, not copied (the frozen trunk
    pass quantizes only the frozen blocks; the trainable ones stay as they train)."""
    check_int8_device(next(model.parameters()).device)
    # fused_copy already copies each block: quantizing that copy in place copies once, not twice.
    return _twin(model, n_blocks, lambda b: quantize_linear_int8(fused_copy(b), inplace=True))


def bf16_copy(model: ClassifierModel, n_blocks: int | None = None) -> ClassifierModel:
    """A model computing like `model` under bf16 autocast, its first `n_blocks` blocks (default:
    all) holding their nn.Linear weights in bf16; everything else shared with `model`."""
    return _twin(model, n_blocks, lambda b: bf16_linears(fused_copy(b)))


def twin_precision(model: ClassifierModel, precision: str) -> str:
    """The precision `model` computes in when asked for `precision`: "int8", or what autocast
    resolves it to on the model's device ("auto" -> "bf16" where that is native, "bf16" ->
    "fp32" on a GPU without it). Why: the twin must match what autocast does, or a bf16 twin
    meets fp32 inputs (autocast off), or "auto" misses the twin where it runs bf16."""
    if precision == "int8":
        return precision
    return effective_precision(precision, next(model.parameters()).device)


def twin_copy(model: ClassifierModel, precision: str, n_blocks: int | None = None
              ) -> ClassifierModel:
    """The twin for `precision` (by `twin_precision`: TWIN_PRECISIONS have one), or `model`
    itself."""
    precision = twin_precision(model, precision)
    if precision == "int8":
        return int8_copy(model, n_blocks)
    if precision == "bf16":
        return bf16_copy(model, n_blocks)
    return model


def _twin(model: ClassifierModel, n_blocks: int | None, convert) -> ClassifierModel:
    blocks = list(model.backbone.blocks)
    n = len(blocks) if n_blocks is None else n_blocks
    # deepcopy's memo: objects found in it are reused as they are, so the copy shares them.
    memo: dict[int, object] = {id(p): p for p in model.parameters()}
    memo.update({id(b): b for b in blocks[n:]})
    memo.update({id(b): convert(b) for b in blocks[:n]})
    return copy.deepcopy(model, memo).eval()


def fused_copy(block: nn.Module) -> nn.Module:
    """A copy of `block` with q/k/v and gate/up fused into one layer each (`fuse`): the same
    results, while int8 quantizes the shared input once and multiplies once (fewer, larger
    products: what small server batches need)."""
    block = copy.deepcopy(block)
    for module in list(block.modules()):
        if hasattr(module, "fuse"):
            module.fuse()
    return block


def bf16_linears(module: nn.Module) -> nn.Module:
    """`module` (a private copy) with every nn.Linear's weight and bias in bf16, in place."""
    for m in module.modules():
        if type(m) is nn.Linear:
            m.to(torch.bfloat16)
    return module


# Twins are asked for on every batch (the trunk pass of each split, the estimator's new texts,
# every prediction): one per model, precision and depth, kept while the model lives (or until
# `drop_twins`), rebuilt when the blocks it copies have changed.
_KEPT: weakref.WeakKeyDictionary[ClassifierModel, dict[tuple, tuple[tuple, ClassifierModel]]] = (
    weakref.WeakKeyDictionary())


def kept_twin(model: ClassifierModel, precision: str, n_blocks: int | None = None
              ) -> ClassifierModel:
    """`twin_copy(model, precision, n_blocks)`, reused while the first `n_blocks` blocks'
    parameters are unchanged (torch counts in-place changes in each tensor's _version, e.g. an
    optimizer step); `model` itself for a precision without a twin."""
    precision = twin_precision(model, precision)
    if precision not in TWIN_PRECISIONS:
        return model
    blocks = list(model.backbone.blocks)[:n_blocks]
    stamp = tuple(p._version for b in blocks for p in b.parameters())
    kept = _KEPT.setdefault(model, {})
    key = (precision, len(blocks))
    if key not in kept or kept[key][0] != stamp:
        kept[key] = (stamp, twin_copy(model, precision, n_blocks))
    return kept[key][1]


def trunk_twin(model: ClassifierModel, precision: str) -> ClassifierModel:
    """The kept twin of `model`'s frozen blocks (the trainable ones stay shared)."""
    return kept_twin(model, precision, model.first_trainable)


def drop_twins(model: ClassifierModel) -> None:
    """Free `model`'s twins (a bf16 twin of a 1.5B trunk holds ~2.5 GB)."""
    _KEPT.pop(model, None)
