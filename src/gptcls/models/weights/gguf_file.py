"""A GGUF file's metadata and tensor table, read directly.

`gguf.GGUFReader` builds a numpy view per array element, which takes ~40 s on Gemma 3's 262k-piece
vocabulary; this reader takes well under a second (numeric arrays are one numpy read, strings a
plain loop) and memory-maps the tensor data, as GGUFReader does. Layout (ggml docs/gguf.md):
magic "GGUF", version, tensor count, key-value count; the key-values; one info record per tensor
(name, dimensions fastest first, type, offset); padding to `general.alignment`; the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptcls.errors import GptclsError

# GGUF value type -> numpy dtype (scalars and array elements); 8 = string, 9 = array.
_NUMERIC = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32,
            6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_STRING, _ARRAY = 8, 9


@dataclass
class TensorInfo:
    """What gguf_quants needs of a tensor (the names match gguf.ReaderTensor's)."""

    name: str
    shape: tuple[int, ...]  # fastest dimension first, as stored
    tensor_type: Any  # gguf.GGMLQuantizationType
    data_offset: int
    n_bytes: int
    data: np.ndarray  # raw bytes (uint8) or, for F32/F16/BF16, typed values


class GGUFFile:
    """`metadata` (key -> int, float, str, bool or list) and `tensors` of one GGUF file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise GptclsError(f"GGUF file not found: {self.path}")
        try:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._pos = 0
            self._parse()
        except GptclsError:
            raise
        except (ValueError, IndexError, struct.error, OverflowError, UnicodeDecodeError) as exc:
            raise GptclsError(f"{self.path} is not a readable GGUF file: {exc}") from None

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._mm):
            raise GptclsError(f"{self.path} is truncated or corrupted (metadata runs past the "
                              f"end of the file)")
        out = self._mm[self._pos:self._pos + n].tobytes()
        self._pos += n
        return out

    def _u(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self._take(struct.calcsize(fmt)))[0]

    def _str(self) -> str:
        return self._take(self._u("Q")).decode("utf-8")

    def _value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self._str()
        if vtype == _ARRAY:
            etype, count = self._u("I"), self._u("Q")
            if etype == _STRING:
                return [self._str() for _ in range(count)]
            if etype not in _NUMERIC:
                return [self._value(etype) for _ in range(count)]
            dtype = np.dtype(_NUMERIC[etype]).newbyteorder("<")
            return np.frombuffer(self._take(count * dtype.itemsize), dtype=dtype).tolist()
        if vtype not in _NUMERIC:
            raise GptclsError(f"{self.path}: unknown GGUF value type {vtype}")
        dtype = np.dtype(_NUMERIC[vtype]).newbyteorder("<")
        return np.frombuffer(self._take(dtype.itemsize), dtype=dtype)[0].item()

    def _parse(self) -> None:
        if self._take(4) != b"GGUF":
            raise GptclsError(f"{self.path} is not a readable GGUF file (no GGUF magic)")
        version = self._u("I")
        if version not in (2, 3):
            raise GptclsError(f"{self.path}: GGUF version {version} is not supported (2, 3)")
        n_tensors, n_kv = self._u("Q"), self._u("Q")
        self.metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = self._str()
            self.metadata[key] = self._value(self._u("I"))
        infos = []
        for _ in range(n_tensors):
            name, n_dims = self._str(), self._u("I")
            dims = tuple(self._u("Q") for _ in range(n_dims))
            infos.append((name, dims, self._u("I"), self._u("Q")))
        align = int(self.metadata.get("general.alignment", 32))
        start = -(-self._pos // align) * align
        self.tensors = [self._tensor(start, *info) for info in infos]

    def _tensor(self, start: int, name: str, dims: tuple[int, ...], type_id: int,
                offset: int) -> TensorInfo:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        try:
            qtype = GGMLQuantizationType(type_id)
        except ValueError:
            raise GptclsError(f"GGUF tensor {name!r} has unknown type id {type_id}") from None
        block, size = GGML_QUANT_SIZES[qtype]
        n = int(np.prod(dims, dtype=np.int64))
        n_bytes = n // block * size
        begin = start + offset
        if n % block or begin + n_bytes > len(self._mm):
            raise GptclsError(f"{self.path} is truncated or corrupted: tensor {name!r} extends "
                              f"beyond the end of the file")
        raw = self._mm[begin:begin + n_bytes]
        plain = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}
        data = raw.view(plain[qtype]) if qtype in plain else raw
        return TensorInfo(name, dims, qtype, begin, n_bytes, data)
