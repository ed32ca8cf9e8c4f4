"""The tokenizer a GGUF file carries in its metadata: the byte-level BPE vocabulary (Llama 3,
Qwen, SmolLM2) or Gemma's SentencePiece one (gguf_spm.py), rebuilt as a Hugging Face
`tokenizers.Tokenizer` that gives the same ids as transformers' GGUF conversion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tokenizers as hf
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers

from gptcls.errors import GptclsError
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.tokenizers.gguf_spm import gemma_spm
from gptcls.models.tokenizers.gpt2 import bytes_to_unicode
from gptcls.models.tokenizers.hf import HFTokenizer

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


def _field_value(field: Any) -> Any:
    """A GGUF metadata value as Python data (works on old gguf versions without `.contents()`)."""
    from gguf import GGUFValueType

    def one(part: Any, vtype: Any) -> Any:
        return bytes(part).decode("utf-8") if vtype == GGUFValueType.STRING else part[0].item()

    if field.types[0] == GGUFValueType.ARRAY:
        return [one(field.parts[i], field.types[-1]) for i in field.data]
    return one(field.parts[field.data[0]], field.types[0])


def _gguf_metadata(source: Any) -> tuple[dict[str, Any], str]:
    """The tokenizer.* and general.* metadata of a GGUF file (a path, a GGUFFile or a
    gguf.GGUFReader), plus a fallback name."""
    from gptcls.models.weights.gguf_file import GGUFFile

    fallback = "gguf"
    if isinstance(source, (str, os.PathLike)):
        source, fallback = GGUFFile(source), Path(source).stem
    if isinstance(source, GGUFFile):
        items = source.metadata.items()
    else:
        items = ((key, _field_value(field)) for key, field in source.fields.items())
    meta = {k: v for k, v in items if k.startswith(("tokenizer.ggml.", "general."))}
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
    spelling = bytes_to_unicode()
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

    BOS is prepended only if the file sets `tokenizer.ggml.add_bos_token`; files that omit it
    get none if byte-level, one if SentencePiece (as in transformers and llama.cpp). Pad falls
    back to eos when the file names no pad id."""
    meta, fallback = _gguf_metadata(path_or_reader)
    name = "gguf:" + str(meta.get("general.basename") or meta.get("general.name") or fallback)
    model = meta.get("tokenizer.ggml.model")
    if model not in ("gpt2", "llama"):
        raise GptclsError(f"{name}: tokenizer model {model!r} unsupported (supported: byte-level "
                          f"'gpt2', and Gemma's SentencePiece 'llama')")
    if "tokenizer.ggml.eos_token_id" not in meta:
        raise GptclsError(f"{name}: GGUF names no eos token (tokenizer.ggml.eos_token_id)")
    eos = int(meta["tokenizer.ggml.eos_token_id"])
    return HFTokenizer(
        _byte_level_bpe(meta, name) if model == "gpt2" else gemma_spm(meta, name),
        name=name,
        eot_id=eos,
        pad_id=int(meta.get("tokenizer.ggml.padding_token_id", eos)),
        bos_id=meta.get("tokenizer.ggml.bos_token_id"),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", model == "llama")),
    )
