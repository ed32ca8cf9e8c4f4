"""--precision int8: the backbone's blocks with their nn.Linear layers dynamically quantized.

Why: on CPUs without fast bf16 (e.g. a 2-core Intel Xeon: fp32 ~290, bf16 ~165 GFLOP/s),
torch's int8 dynamic linear (fbgemm/x86) multiplies at ~550-980 GFLOP/s, and the attention
projections and MLPs are nearly all of a block's work. Weights are int8 per output channel
(scales fixed once), activations per tensor (scale measured per call: "dynamic"), accumulation
int32, output fp32. Embeddings, norms, attention itself and the classification head stay fp32,
and so does everything that trains.

The fp32 model is kept untouched: twin.py's `int8_copy` builds a second model that shares every
fp32 weight except the quantized blocks' linears, so a run directory still saves fp32 weights.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import nn

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
