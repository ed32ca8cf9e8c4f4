"""GGUF tensor types -> fp32 torch tensors.

Whole-tensor torch kernels for the types real files use (legacy Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and the
K-quants Q4_K/Q5_K/Q6_K); each does the same float operations in the same order as
`gguf.quants` (a test checks they are bit-identical) and runs several times faster, since gguf's
numpy kernels loop over groups of rows. F32/F16/BF16 go through `gguf.quants.dequantize`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from gptcls.errors import GptclsError

Kernel = Callable[[torch.Tensor], torch.Tensor]
QK_K = 256  # weights per K-quant super-block


def supported_types() -> dict[Any, Kernel | None]:
    """GGMLQuantizationType -> torch kernel (None: gguf.quants' own conversion)."""
    from gguf import GGMLQuantizationType as Q

    return {Q.F32: None, Q.F16: None, Q.BF16: None, Q.Q8_0: _q8_0, Q.Q4_0: _q4_0,
            Q.Q4_1: _q4_1, Q.Q5_0: _q5_0, Q.Q5_1: _q5_1, Q.Q4_K: _q4_k, Q.Q5_K: _q5_k,
            Q.Q6_K: _q6_k}


def check_tensor_types(tensors: list[Any]) -> None:
    """One line naming the first tensor of a type we do not read, before any work is done."""
    types = supported_types()
    for t in tensors:
        if t.tensor_type not in types:
            names = ", ".join(q.name for q in types)
            raise GptclsError(f"GGUF tensor {t.name!r} has quant type {t.tensor_type.name}, "
                              f"which is not supported (supported: {names})")


def dequantize_tensor(tensor: Any) -> torch.Tensor:
    """A gguf ReaderTensor as fp32 in numpy/torch order (GGUF lists dimensions fastest first)."""
    from gguf.quants import dequantize

    shape = tuple(int(d) for d in reversed(tensor.shape))
    kernel = supported_types().get(tensor.tensor_type)
    if kernel is not None:
        # np.array copies: the reader's arrays are read-only views of a memory map.
        return kernel(torch.from_numpy(np.array(tensor.data, dtype=np.uint8))).reshape(shape)
    arr = dequantize(tensor.data, tensor.tensor_type)
    return torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))


def _f16(cols: torch.Tensor) -> torch.Tensor:
    return cols.contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    return torch.cat([qs & 0xF, qs >> 4], dim=1)  # low nibbles are weights 0-15, high 16-31


def _bits(qh: torch.Tensor) -> torch.Tensor:
    """(n, k) bytes -> (n, 8k) bits, little-endian: bit j of byte i is element 8i + j."""
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((qh.unsqueeze(-1) >> shifts) & 1).reshape(qh.shape[0], -1)


def _q8_0(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 34)  # per 32 weights: f16 scale d, 32 x int8
    return b[:, 2:].contiguous().view(torch.int8).float() * _f16(b[:, :2])


def _q4_0(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 18)  # f16 d, 16 bytes of 4-bit weights offset by 8
    return (_nibbles(b[:, 2:]).to(torch.int8) - 8).float() * _f16(b[:, :2])


def _q4_1(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 20)  # f16 d, f16 min m, 16 bytes of 4-bit weights
    return _nibbles(b[:, 4:]).float() * _f16(b[:, :2]) + _f16(b[:, 2:4])


def _q5_0(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 22)  # f16 d, 4 bytes of 5th bits, 16 bytes of low nibbles; offset 16
    q = _nibbles(b[:, 6:]) | (_bits(b[:, 2:6]) << 4)
    return _f16(b[:, :2]) * (q.to(torch.int8) - 16).float()


def _q5_1(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 24)  # f16 d, f16 min m, 4 bytes of 5th bits, 16 bytes of low nibbles
    q = _nibbles(b[:, 8:]) | (_bits(b[:, 4:8]) << 4)
    return (_f16(b[:, :2]) * q.float()) + _f16(b[:, 2:4])


def _k_scales(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K super-block header: (n, 8, 1) scales d * sc and minimums dmin * m; the 12
    bytes pack eight 6-bit scales and eight 6-bit minimums."""
    n = b.shape[0]
    s = b[:, 4:16].reshape(n, 3, 4)
    d6, m6, lo = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d6 & 0x3F, (lo & 0x0F) | ((d6 >> 2) & 0x30)], dim=-1).float()
    mn = torch.cat([m6 & 0x3F, (lo >> 4) | ((m6 >> 2) & 0x30)], dim=-1).float()
    return (_f16(b[:, :2]) * sc).reshape(n, -1, 1), (_f16(b[:, 2:4]) * mn).reshape(n, -1, 1)


def _k_nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, 128) bytes -> (n, 8, 32): each 32-byte group gives 32 low then 32 high nibbles."""
    q = qs.reshape(qs.shape[0], -1, 1, 32) >> torch.tensor([0, 4], dtype=torch.uint8).reshape(
        1, 1, 2, 1)
    return (q & 0x0F).reshape(qs.shape[0], -1, 32)


def _q4_k(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 144)  # f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles
    d, dm = _k_scales(b)
    return (d * _k_nibbles(b[:, 16:]).float() - dm).reshape(-1, QK_K)


def _q5_k(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 176)  # as Q4_K, plus 32 bytes of 5th bits before the nibbles
    n = b.shape[0]
    d, dm = _k_scales(b)
    shifts = torch.arange(8, dtype=torch.uint8).reshape(1, 1, 8, 1)
    qh = ((b[:, 16:48].reshape(n, 1, 1, 32) >> shifts) & 1).reshape(n, -1, 32)
    q = (_k_nibbles(b[:, 48:]) | (qh << 4)).float()
    return (d * q - dm).reshape(-1, QK_K)


def _q6_k(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 210)  # 128 bytes low nibbles, 64 bytes 2-bit highs, 16 int8 scales, f16 d
    n = b.shape[0]
    d = (_f16(b[:, 208:]) * b[:, 192:208].contiguous().view(torch.int8).float()).reshape(n, 16, 1)
    ql = b[:, :128].reshape(n, -1, 1, 64) >> torch.tensor([0, 4], dtype=torch.uint8).reshape(
        1, 1, 2, 1)
    ql = (ql & 0x0F).reshape(n, -1, 32)
    qh = b[:, 128:192].reshape(n, -1, 1, 32) >> torch.tensor(
        [0, 2, 4, 6], dtype=torch.uint8).reshape(1, 1, 4, 1)
    qh = (qh & 0x03).reshape(n, -1, 32)
    q = ((ql | (qh << 4)).to(torch.int8) - 32).reshape(n, 16, -1).float()
    return (d * q).reshape(-1, QK_K)
