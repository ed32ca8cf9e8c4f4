"""Hugging Face `tokenizers` tokenizers: any tokenizer.json file (with its sibling
tokenizer_config.json), and the base of the GGUF tokenizer."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import tokenizers as hf

from gptcls.errors import GptclsError
from gptcls.files import atomic_write_bytes, sha256_bytes
from gptcls.models.tokenizers.base import TOKENIZER_FILE, Tokenizer


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


def read_tokenizer_file(path: Path) -> hf.Tokenizer:
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
    tok = read_tokenizer_file(path)
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
