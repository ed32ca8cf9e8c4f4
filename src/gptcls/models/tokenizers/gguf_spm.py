"""Gemma's SentencePiece vocabulary as a GGUF file stores it (`tokenizer.ggml.model` "llama"),
rebuilt as a byte-fallback BPE `tokenizers.Tokenizer` that gives transformers' ids.

A GGUF keeps SentencePiece's pieces and scores but no merges. As transformers does (its
`gemma_tokenizer` GGUF builder), the merges are recovered from the vocabulary: every split of a
piece into two pieces of the vocabulary, ranked by the piece's position in the file (Gemma's
scores do not follow its merge order; the order of the pieces does). Pieces made only of spaces
are stored as real spaces but looked up as "▁", so they are respelled first.
"""

from __future__ import annotations

from typing import Any

import tokenizers as hf
from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers

from gptcls.errors import GptclsError

SPM_ARCHITECTURES = ("gemma", "gemma2", "gemma3")  # SentencePiece files we rebuild
_SPACE = "\u2581"  # SentencePiece's visible space
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types
# GemmaTokenizer's own special tokens besides the file's bos/eos/unk/pad (kept whole on decode).
_GEMMA_MASK = "<mask>"


def _respell(token: str) -> str:
    return _SPACE * len(token) if " " in token and not token.strip() else token


def recover_merges(tokens: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) as transformers' generate_merges builds them, best-first: each piece's
    two-way splits into known pieces, ordered by the piece's position, then by split length."""
    vocab = {t: i for i, t in enumerate(tokens)}  # a repeated spelling keeps its last id
    rank = {t: -i for i, t in enumerate(tokens)}
    merges: list[tuple[str, str, int]] = []
    for piece, score in rank.items():
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return vocab, [(a, b) for a, b, _ in merges]


def gemma_spm(meta: dict[str, Any], name: str) -> hf.Tokenizer:
    """The tokenizer of a Gemma GGUF (pieces, types and special ids in `meta`)."""
    arch = meta.get("general.architecture")
    if arch not in SPM_ARCHITECTURES:
        raise GptclsError(f"{name}: SentencePiece ('llama') GGUF tokenizers are unsupported for "
                          f"architecture {arch!r} (supported: {', '.join(SPM_ARCHITECTURES)})")
    raw: list[str] = meta.get("tokenizer.ggml.tokens", [])
    if not raw:
        raise GptclsError(f"{name}: GGUF has no tokenizer.ggml.tokens")
    vocab, merges = recover_merges([_respell(t) for t in raw])
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = raw[unk_id] if unk_id is not None else "<unk>"
    tok = hf.Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=True, unk_token=unk,
                                  dropout=None, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", _SPACE)
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace(_SPACE, " "), decoders.ByteFallback(),
                                     decoders.Fuse()])
    _add_special(tok, meta, raw, vocab)
    return tok


def _add_special(tok: hf.Tokenizer, meta: dict[str, Any], raw: list[str],
                 vocab: dict[str, int]) -> None:
    """bos/eos/unk/pad/mask and control pieces are special (never matched in user text);
    user-defined pieces (Gemma's HTML tags, ...) are matched whole, as in llama.cpp. A
    user-defined piece of spaces is spelled differently in the vocabulary and is skipped, as
    transformers skips it."""
    ids = [meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")]
    named = [raw[i] for i in ids if i is not None]
    if _GEMMA_MASK in vocab:
        named.append(_GEMMA_MASK)
    types = meta.get("tokenizer.ggml.token_type", [])
    control = [t for t, k in zip(raw, types, strict=False) if k == _CONTROL]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t in dict.fromkeys(named + control)])
    user = [t for t, k in zip(raw, types, strict=False) if k == _USER_DEFINED and t in vocab]
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
