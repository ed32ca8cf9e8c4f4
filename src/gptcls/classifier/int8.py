"""--precision int8: the backbone's blocks with their nn.Linear layers dynamically quantized.

Why: on CPUs without fast bf16 (e.g. a 2-core Intel Xeon: fp32 ~290, bf16 ~165 GFLOP/s),
torch's int8 dynamic linear (fbgemm/x86) multiplies at ~550-980 GFLOP/s, and the attention
projections and MLPs are nearly all of a block's work. Weights are int8 per output channel
(scales fixed once), activations per tensor (scale measured per call: "dynamic"), accumulation
int32, output fp32. Embeddings, norms, attention itself and the classification head stay fp32,
and so does everything that trains.

The fp32 model is kept untouched: `int8_copy` builds a second model that shares every fp32
weight except the quantized blocks' linears, so a run directory still saves fp32 weights.
"""

from __future__ import annotations

import copy
import functools
import warnings
import weakref
from pathlib import Path

import torch
from torch import nn

from gptcls.classifier.model import ClassifierModel
from gptcls.device import check_int8_device
from gptcls.errors import GptclsError

INT8_ALTERNATIVES = "use --precision fp32, or `gptcls export --onnx --int8` for an int8 model"


def quantize_linear_int8(module: nn.Module, inplace: bool = False) -> nn.Module:
    """A copy of `module` whose nn.Linear layers are int8 dynamic-quantized (weights per output
    channel, activations per tensor); `module` itself is left as it was, unless `inplace`
    (for a module that is already a private copy)."""
    quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    quantize = getattr(quantization, "quantize_dynamic", None)
    qconfig = getattr(quantization, "per_channel_dynamic_qconfig", None)
    if quantize is None or qconfig is None:
        raise GptclsError(f"--precision int8: this torch ({torch.__version__}) has no "
                          f"torch.ao.quantization.quantize_dynamic; {INT8_ALTERNATIVES}")
    with warnings.catch_warnings():
        # torch.ao's eager dynamic quantization is deprecated in favour of torchao (a separate
        # package): it still works in the torch we pin, and the warning is not the user's.
        warnings.filterwarnings("ignore", ".*torch.ao.quantization is deprecated",
                                DeprecationWarning)
        warnings.filterwarnings("ignore", ".*quantized tensor creation functions", UserWarning)
        return quantize(module, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=inplace,
                        mapping={nn.Linear: full_range_linear()})


@functools.cache
def full_range_linear() -> type[nn.Module]:
    """torch's dynamic int8 Linear, with 8-bit instead of 7-bit activations where the CPU
    has VNNI. torch always passes reduce_range=True on x86 because fbgemm's AVX2 kernel sums
    pairs of u8 x s8 products in saturating int16; VNNI accumulates in int32 and cannot
    saturate. The 8th bit matters: on the default SMS run, label agreement with fp32 rose
    from 95.7% to 99.0% (300 messages), the per-tensor scale being set by outlier channels."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    reduce_range = not cpu_has_vnni()

    class Int8Linear(DynamicLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                   reduce_range=reduce_range)
            return y.to(x.dtype)

    return Int8Linear


def cpu_has_vnni() -> bool:
    """AVX512-VNNI, AVX-VNNI or AMX-INT8 in /proc/cpuinfo's flags (elsewhere: assume not)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def int8_copy(model: ClassifierModel, n_blocks: int | None = None) -> ClassifierModel:
    """A model computing like `model` with its first `n_blocks` blocks (default: all) in int8.
    Every other parameter and module is shared with `model`, not copied (the frozen trunk
    pass quantizes only the frozen blocks; the trainable ones stay as they train)."""
    check_int8_device(next(model.parameters()).device)
    blocks = list(model.backbone.blocks)
    n = len(blocks) if n_blocks is None else n_blocks
    # deepcopy's memo: objects found in it are reused as they are, so the copy shares them.
    memo: dict[int, object] = {id(p): p for p in model.parameters()}
    memo.update({id(b): b for b in blocks[n:]})
    # fused_copy already copies each block: quantizing that copy in place copies once, not twice.
    memo.update({id(b): quantize_linear_int8(fused_copy(b), inplace=True) for b in blocks[:n]})
    twin = copy.deepcopy(model, memo)
    return twin.eval()


def fused_copy(block: nn.Module) -> nn.Module:
    """A copy of `block` with q/k/v and gate/up fused into one layer each (`fuse`): the same
    results, while int8 quantizes the shared input once and multiplies once (fewer, larger
    products: what small server batches need)."""
    block = copy.deepcopy(block)
    for module in list(block.modules()):
        if hasattr(module, "fuse"):
            module.fuse()
    return block


# The trunk pass runs once per split (and per batch of new texts in the estimator): one twin
# per model, kept while the model lives, rebuilt when its frozen weights change.
_TRUNKS: weakref.WeakKeyDictionary[ClassifierModel, tuple[tuple, ClassifierModel]] = (
    weakref.WeakKeyDictionary())


def int8_trunk(model: ClassifierModel) -> ClassifierModel:
    """`int8_copy(model, model.first_trainable)`, reused while the frozen blocks' parameters
    are unchanged (torch counts in-place changes in each tensor's _version)."""
    n = model.first_trainable
    stamp = (n, tuple(p._version for b in model.backbone.blocks[:n] for p in b.parameters()))
    kept = _TRUNKS.get(model)
    if kept is None or kept[0] != stamp:
        kept = (stamp, int8_copy(model, n))
        _TRUNKS[model] = kept
    return kept[1]
