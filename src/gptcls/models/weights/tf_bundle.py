"""Read a TensorFlow V2 "tensor bundle" (what TensorFlow calls a checkpoint) without TensorFlow.

`<prefix>.index` is a LevelDB-style SSTable mapping variable names to serialized
`BundleEntryProto`s, which say where in `<prefix>.data-0000S-of-0000N` each tensor's raw
little-endian bytes are. Both the table and the few protobuf fields involved are simple, so they
are parsed here by hand (numpy only), sparing users a ~500 MB TensorFlow install just to read
~30 arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptcls.errors import GptclsError

# ---------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise GptclsError(f"{what} is corrupt: bad varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(buf: bytes, what: str) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a serialized protobuf message: ints for varint and
    fixed-width fields, bytes for length-delimited ones (sub-messages, packed repeats)."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, what)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, what)
        elif wire in (1, 5):  # fixed64 / fixed32, little-endian
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos, what)
            value, pos = buf[pos:pos + length], pos + length
        else:  # groups (3, 4) are deprecated and never used by the bundle protos
            raise GptclsError(f"{what} is corrupt: unexpected protobuf wire type {wire}")
        if pos > len(buf):
            raise GptclsError(f"{what} is corrupt: truncated protobuf field {number}")
        yield number, value


# ---------------------------------------------------------------- CRC-32C (Castagnoli)


def _make_crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes | memoryview) -> int:
    """Plain-Python CRC-32C: fine for index blocks, slow (~seconds/MB) for large tensors."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """LevelDB/TF store CRCs "masked" so that CRCs of data containing CRCs stay well mixed."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---------------------------------------------------------------- SSTable (the .index file)

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48  # two BlockHandles padded to 40 bytes, then the 8-byte magic
_BLOCK_TRAILER_LEN = 5  # 1 compression-type byte + 4-byte masked CRC-32C


def _read_block(data: bytes, handle: bytes, what: str) -> bytes:
    """The contents of the block a BlockHandle (varint offset, varint size) points at."""
    offset, pos = _varint(handle, 0, what)
    size, _ = _varint(handle, pos, what)
    end = offset + size
    if end + _BLOCK_TRAILER_LEN > len(data):
        raise GptclsError(f"{what} is corrupt: block at {offset} runs past the end of the file")
    compression = data[end]
    if compression != 0:
        # TF's BundleWriter always writes uncompressed tables; 1 would be snappy.
        raise GptclsError(f"{what} has a compressed block (type {compression}); only "
                          "uncompressed tensor-bundle indexes are supported")
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if crc32c(data[offset:end + 1]) != unmask_crc(stored):  # covers contents + type byte
        raise GptclsError(f"{what} is corrupt: checksum mismatch in block at {offset}")
    return data[offset:end]


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) of a block. Keys are prefix-compressed against the previous key;
    the trailing restart array (for binary search) is not needed for a full scan."""
    if len(block) < 4:
        raise GptclsError(f"{what} is corrupt: block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise GptclsError(f"{what} is corrupt: bad restart count")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos, what)
        non_shared, pos = _varint(block, pos, what)
        value_len, pos = _varint(block, pos, what)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise GptclsError(f"{what} is corrupt: bad block entry")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def read_sstable(path: Path) -> dict[bytes, bytes]:
    """Every key/value of a LevelDB-format table: footer -> index block -> data blocks."""
    data, what = path.read_bytes(), str(path)
    if len(data) < _FOOTER_LEN:
        raise GptclsError(f"{what} is not a TensorFlow checkpoint index: file too short")
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != _TABLE_MAGIC:
        raise GptclsError(f"{what} is not a TensorFlow checkpoint index: bad magic number")
    footer = data[len(data) - _FOOTER_LEN:]
    # The footer holds the metaindex handle, then the index handle; the metaindex (filters,
    # stats) is empty in tensor bundles, so skip its two varints.
    _, pos = _varint(footer, 0, what)
    _, pos = _varint(footer, pos, what)
    index = _read_block(data, footer[pos:], what)
    table: dict[bytes, bytes] = {}
    for _, handle in _block_entries(index, what):
        table.update(_block_entries(_read_block(data, handle, what), what))
    return table


# ---------------------------------------------------------------- tensor bundle

# TF DataType enum -> numpy dtype, for the types language models' bundles use.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}


@dataclass(frozen=True)
class BundleEntry:
    """A `BundleEntryProto`: where one tensor's bytes are and what they are."""

    dtype: int  # TF DataType enum value (1 = DT_FLOAT, 19 = DT_HALF, ...)
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0  # masked CRC-32C of the tensor's bytes
    sliced: bool = False  # partitioned variable: data stored under other keys


def _parse_shape(buf: bytes, what: str) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 (Dim: int64 size = 1); a scalar has no dims."""
    dims = []
    for number, dim in _fields(buf, what):
        if number == 2 and isinstance(dim, bytes):
            sizes = [v for n, v in _fields(dim, what) if n == 1 and isinstance(v, int)]
            dims.append(sizes[0] if sizes else 0)
    return tuple(dims)


def _parse_entry(buf: bytes, what: str) -> BundleEntry:
    fields: dict[str, object] = {}
    names = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
    for number, value in _fields(buf, what):
        if number == 2 and isinstance(value, bytes):
            fields["shape"] = _parse_shape(value, what)
        elif number == 7:
            fields["sliced"] = True
        elif number in names:
            fields[names[number]] = value
    fields.setdefault("shape", ())
    fields.setdefault("dtype", 0)
    return BundleEntry(**fields)  # type: ignore[arg-type]


class TensorBundle:
    """A TensorFlow V2 tensor bundle (`<prefix>.index` + `<prefix>.data-*`), read with numpy.

    `prefix` is what TF calls the checkpoint path (the file names without their suffixes),
    e.g. `.../124M/model.ckpt`.
    """

    def __init__(self, prefix: str | Path):
        self.prefix = Path(prefix)
        index = self.prefix.with_name(self.prefix.name + ".index")
        if not index.is_file():
            raise GptclsError(f"TensorFlow checkpoint index not found: {index}")
        what = str(index)
        table = read_sstable(index)
        # The header (BundleHeaderProto) sits under the empty key, sorting first.
        header = dict(_fields(table.pop(b"", b""), what))
        self.num_shards = int(header.get(1, 1))
        self.big_endian = header.get(2, 0) == 1
        self.entries = {key.decode("utf-8"): _parse_entry(value, what)
                        for key, value in table.items()
                        # Keys starting with NUL are slices of partitioned variables.
                        if not key.startswith(b"\x00")}
        missing = [p.name for p in map(self.shard_path, range(self.num_shards))
                   if not p.is_file()]
        if missing:
            raise GptclsError(f"TensorFlow checkpoint data missing: {', '.join(missing)} "
                              f"(in {self.prefix.parent})")

    def shard_path(self, shard_id: int) -> Path:
        name = f"{self.prefix.name}.data-{shard_id:05d}-of-{self.num_shards:05d}"
        return self.prefix.with_name(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def read(self, name: str, verify_crc: bool = False) -> np.ndarray:
        """One tensor as a writable numpy array. `verify_crc` checks the stored CRC-32C with a
        pure-Python CRC: thorough but slow (minutes for GPT-2 small), so it is opt-in."""
        if name not in self.entries:
            raise GptclsError(f"{self.prefix} has no variable {name!r}")
        e = self.entries[name]
        if e.sliced:
            raise GptclsError(f"{name!r} in {self.prefix} is a partitioned variable; "
                              "those are not supported")
        if e.dtype not in _DTYPES:
            raise GptclsError(f"{name!r} in {self.prefix} has unsupported TF dtype {e.dtype}")
        dtype = np.dtype(_DTYPES[e.dtype]).newbyteorder(">" if self.big_endian else "<")
        if e.size != dtype.itemsize * int(np.prod(e.shape, dtype=np.int64)):
            raise GptclsError(f"{self.prefix} is corrupt: {name!r} has {e.size} bytes for "
                              f"shape {e.shape} of {dtype}")
        buf = bytearray(e.size)  # bytearray, so the array is writable (torch.from_numpy)
        with open(self.shard_path(e.shard_id), "rb") as f:
            f.seek(e.offset)
            if f.readinto(buf) != e.size:
                raise GptclsError(f"{self.shard_path(e.shard_id)} is truncated at {name!r}")
        if verify_crc and crc32c(buf) != unmask_crc(e.crc32c):
            raise GptclsError(f"{self.prefix} is corrupt: checksum mismatch in {name!r}")
        return np.frombuffer(buf, dtype=dtype).reshape(e.shape).astype(dtype.newbyteorder("="),
                                                                       copy=False)

    def read_all(self, verify_crc: bool = False) -> dict[str, np.ndarray]:
        return {name: self.read(name, verify_crc) for name in self.names}


def read_tf_bundle(prefix: str | Path, verify_crc: bool = False) -> dict[str, np.ndarray]:
    """Every variable of a TF V2 tensor bundle, by name (e.g. "model/h0/attn/c_attn/w")."""
    return TensorBundle(prefix).read_all(verify_crc)
