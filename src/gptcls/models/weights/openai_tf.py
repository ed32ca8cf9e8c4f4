"""Load OpenAI's original GPT-2 TensorFlow checkpoints without TensorFlow.

OpenAI published GPT-2 as TF1 checkpoints (the files "Build a Large Language Model (From
Scratch)" downloads from openaipublic.blob.core.windows.net/gpt-2/models/<size>/). Their
weights live in a TensorFlow "tensor bundle" (V2): `<prefix>.index` is a LevelDB-style SSTable
mapping variable names to serialized `BundleEntryProto`s, which say where in
`<prefix>.data-0000S-of-0000N` each tensor's raw little-endian bytes are. Both the table and
the few protobuf fields involved are simple, so they are parsed here by hand (numpy only),
sparing users a ~500 MB TensorFlow install just to read ~30 arrays.

Public API: `TensorBundle` (any V2 bundle), `read_tf_checkpoint`, `load_openai_gpt2`.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig

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

# TF DataType enum -> numpy dtype, for the types checkpoints of language models use.
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
    """A TensorFlow V2 checkpoint (`<prefix>.index` + `<prefix>.data-*`), read with numpy.

    `prefix` is what TF calls the checkpoint path, e.g. `.../124M/model.ckpt`.
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


def read_tf_checkpoint(prefix: str | Path, verify_crc: bool = False) -> dict[str, np.ndarray]:
    """Every variable of a TF V2 checkpoint, by name (e.g. "model/h0/attn/c_attn/w")."""
    return TensorBundle(prefix).read_all(verify_crc)


# ---------------------------------------------------------------- OpenAI GPT-2


def _checkpoint_prefix(directory: Path) -> Path:
    """The bundle prefix named by TF's `checkpoint` state file, else OpenAI's "model.ckpt".
    A path recorded on another machine (absolute) falls back to its name in `directory`."""
    state = directory / "checkpoint"
    name = "model.ckpt"
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(), re.M)
        name = match.group(1) if match else name
    prefix = directory / name  # an absolute `name` replaces `directory`
    if not prefix.with_name(prefix.name + ".index").is_file():
        prefix = directory / Path(name).name
    return prefix


def _check_files(directory: Path) -> Path:
    """Fail early, in one line, naming every file the loader needs but cannot find."""
    if not directory.is_dir():
        raise GptclsError(f"OpenAI GPT-2 checkpoint directory not found: {directory}")
    prefix = _checkpoint_prefix(directory)
    missing = [n for n in ("hparams.json", prefix.name + ".index")
               if not (directory / n).is_file()]
    if not list(directory.glob(prefix.name + ".data-*")):
        missing.append(prefix.name + ".data-00000-of-00001")
    if missing:
        raise GptclsError(f"{directory} is not a complete OpenAI GPT-2 checkpoint: missing "
                          f"{', '.join(missing)}")
    return prefix


def _config_from_hparams(path: Path) -> ModelConfig:
    try:
        hp = json.loads(path.read_text())
        C = int(hp["n_embd"])
        return ModelConfig(family="gpt2", vocab_size=int(hp["n_vocab"]),
                           context_length=int(hp["n_ctx"]), emb_dim=C,
                           n_layers=int(hp["n_layer"]), n_heads=int(hp["n_head"]),
                           n_kv_heads=int(hp["n_head"]), hidden_dim=4 * C, qkv_bias=True,
                           norm_eps=1e-5, tie_embeddings=True, rope_theta=0.0)
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise GptclsError(f"{path} is not a valid GPT-2 hparams.json: {e!r}") from None


class _Variables:
    """Hands out checkpoint arrays by name, checking shapes and remembering what was used.
    From a TensorBundle, arrays are read on demand: converting GPT-2 XL (6 GB) block by block
    then never holds a second full copy of the weights."""

    def __init__(self, arrays: Mapping[str, np.ndarray] | TensorBundle, where: str | Path):
        if isinstance(arrays, TensorBundle):
            self.names, self.read = set(arrays.entries), arrays.read
        else:
            self.names, self.read = set(arrays), arrays.__getitem__
        self.where, self.used = where, set[str]()

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.names:
            raise GptclsError(f"{self.where} has no variable {name!r}; does hparams.json "
                              "match the checkpoint?")
        a = self.read(name)
        if a.shape != shape:
            raise GptclsError(f"{self.where}: {name!r} has shape {a.shape}, hparams.json "
                              f"implies {shape}")
        self.used.add(name)
        return a


def _block(v: _Variables, i: int, C: int, hidden: int) -> dict[str, np.ndarray]:
    """One transformer block. OpenAI's conv1d weights are (1, in, out): drop the 1 and
    transpose to nn.Linear's (out, in); c_attn packs q, k, v side by side along `out`."""
    h, b = f"model/h{i}", f"blocks.{i}"
    out = {f"{b}.norm1.weight": v.take(f"{h}/ln_1/g", (C,)),
           f"{b}.norm1.bias": v.take(f"{h}/ln_1/b", (C,)),
           f"{b}.norm2.weight": v.take(f"{h}/ln_2/g", (C,)),
           f"{b}.norm2.bias": v.take(f"{h}/ln_2/b", (C,))}
    qkv_w = v.take(f"{h}/attn/c_attn/w", (1, C, 3 * C))[0]
    qkv_b = v.take(f"{h}/attn/c_attn/b", (3 * C,))
    for j, name in enumerate("qkv"):
        out[f"{b}.attn.{name}.weight"] = qkv_w[:, j * C:(j + 1) * C].T
        out[f"{b}.attn.{name}.bias"] = qkv_b[j * C:(j + 1) * C]
    for ours, theirs, n_in, n_out in (("attn.proj", "attn/c_proj", C, C),
                                      ("mlp.fc", "mlp/c_fc", C, hidden),
                                      ("mlp.proj", "mlp/c_proj", hidden, C)):
        out[f"{b}.{ours}.weight"] = v.take(f"{h}/{theirs}/w", (1, n_in, n_out))[0].T
        out[f"{b}.{ours}.bias"] = v.take(f"{h}/{theirs}/b", (n_out,))
    return out


def gpt2_state_dict(arrays: Mapping[str, np.ndarray] | TensorBundle, config: ModelConfig,
                    where: str | Path = "checkpoint", dtype: torch.dtype = torch.float32,
                    ) -> dict[str, torch.Tensor]:
    """Map OpenAI's TF variable names/layouts to `gptcls.models.gpt2.GPT2`'s state dict.
    `where` only names the source in error messages."""
    v, C = _Variables(arrays, where), config.emb_dim

    def to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # Contiguous copies of the transposed views, made per block so the raw arrays of
        # only one block are alive at a time (see _Variables).
        return {k: torch.from_numpy(np.ascontiguousarray(a)).to(dtype) for k, a in arrays.items()}

    sd = to_torch({"tok_emb.weight": v.take("model/wte", (config.vocab_size, C)),
                   "pos_emb.weight": v.take("model/wpe", (config.context_length, C)),
                   "final_norm.weight": v.take("model/ln_f/g", (C,)),
                   "final_norm.bias": v.take("model/ln_f/b", (C,))})
    for i in range(config.n_layers):
        sd.update(to_torch(_block(v, i, C, config.hidden_dim)))
    # Leftover model variables mean hparams.json describes a smaller model than was saved.
    extra = sorted(n for n in v.names if n.startswith("model/") and n not in v.used)
    if extra:
        raise GptclsError(f"{where} has variables hparams.json does not account for: "
                          f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    sd["out_head.weight"] = sd["tok_emb.weight"]  # GPT-2 ties the LM head to wte
    return sd


def load_openai_gpt2(directory: str | Path, dtype: torch.dtype = torch.float32,
                     ) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and state dict of an OpenAI GPT-2 checkpoint directory (124M, 355M, ...).

    The state dict loads with `strict=True` into `gptcls.models.build_backbone(config)`.
    """
    directory = Path(directory)
    prefix = _check_files(directory)
    config = _config_from_hparams(directory / "hparams.json")
    return config, gpt2_state_dict(TensorBundle(prefix), config, directory, dtype)
