"""Tokenizers behind one small interface (base.py), all built offline: GPT-2's (gpt2.py),
any Hugging Face tokenizer.json (hf.py) and the one a GGUF file carries (gguf.py).
`load_tokenizer` rebuilds the one a run directory saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gptcls.errors import GptclsError
from gptcls.files import sha256_file
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
from gptcls.models.tokenizers.hf import HFTokenizer, read_tokenizer_file


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
    tok = read_tokenizer_file(path)
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
