"""GGUF files (llama.cpp's format): Llama (2, 3.x, Mistral), Qwen2/2.5, Qwen3 and Gemma 3.

Four things differ from Hugging Face weights: tensors may be quantised (gguf_quants.py turns
them into fp32), shapes are stored fastest-dimension first (the reverse of numpy/torch order),
the converter permuted the rows of Llama's Q and K so that llama.cpp's "interleaved pairs" RoPE
works (our RoPE is Hugging Face's "rotate half", so that permutation is undone here; Qwen and
Gemma use llama.cpp's NEOX RoPE, which is rotate-half, and are stored unpermuted), and part of
the config is not in the metadata but hard-coded in llama.cpp per architecture (Gemma 3's
sliding-window pattern and local RoPE base), which we follow.

Gemma's norm weights: Hugging Face stores `w` and applies `1 + w`; llama.cpp's converter adds
the 1 when it writes the GGUF, so the file already holds the multiplier, which is what our
RMSNorm stores: taken as they are.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.weights.gguf_file import GGUFFile
from gptcls.models.weights.gguf_quants import check_tensor_types, dequantize_tensor
from gptcls.progress import LOADING, progress

ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")
# llama.cpp (src/llama-model.cpp, LLM_ARCH_GEMMA3): every 6th layer global, local RoPE base 10k.
GEMMA3_SWA_PATTERN, GEMMA3_LOCAL_THETA = 6, 10000.0

# GGUF tensor name (after "blk.N.") -> our name (after "blocks.N.")
_BLOCK_NAMES = {
    "attn_norm.weight": "norm1.weight",
    "ffn_norm.weight": "norm2.weight",
    "post_attention_norm.weight": "post_norm1.weight",
    "post_ffw_norm.weight": "post_norm2.weight",
    "attn_q_norm.weight": "attn.q_norm.weight",
    "attn_k_norm.weight": "attn.k_norm.weight",
    **{f"attn_{x}.{p}": f"attn.{x}.{p}" for x in "qkv" for p in ("weight", "bias")},
    "attn_output.weight": "attn.proj.weight",
    "ffn_gate.weight": "mlp.gate.weight",
    "ffn_up.weight": "mlp.up.weight",
    "ffn_down.weight": "mlp.down.weight",
}
_TOP_NAMES = {"token_embd.weight": "tok_emb.weight", "output_norm.weight": "final_norm.weight",
              "output.weight": "out_head.weight"}
ROPE_FREQS = "rope_freqs.weight"  # Llama 3.1+: per-frequency divisors (llama3 rope scaling)


def open_reader(path: Path) -> GGUFFile:
    return GGUFFile(path)


def _field(reader: GGUFFile, key: str, default: Any = None) -> Any:
    """A metadata value, or `default` when absent (None: the key is required)."""
    if key not in reader.metadata:
        if default is None:
            raise GptclsError(f"GGUF file lacks the metadata key {key!r}")
        return default
    return reader.metadata[key]


def config_from_gguf(reader: GGUFFile) -> ModelConfig:
    """Our ModelConfig from a GGUF's metadata (and, for Llama 3, its rope_freqs tensor)."""
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise GptclsError(f"GGUF architecture {arch!r} is not supported (supported: "
                          f"{', '.join(ARCHITECTURES)})")
    tokens = reader.metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list):
        raise GptclsError("GGUF file has no tokenizer.ggml.tokens list")

    def key(name: str, default: Any = None) -> Any:
        return _field(reader, f"{arch}.{name}", default)

    emb, n_heads, n_layers = (int(key("embedding_length")), int(key("attention.head_count")),
                              int(key("block_count")))
    head_dim = int(key("attention.key_length", key("rope.dimension_count", emb // n_heads)))
    names = {t.name for t in reader.tensors}
    config = ModelConfig(
        family=arch, vocab_size=len(tokens), context_length=int(key("context_length")),
        emb_dim=emb, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=int(key("attention.head_count_kv", n_heads)),
        hidden_dim=int(key("feed_forward_length")), head_dim=head_dim,
        qkv_bias="blk.0.attn_q.bias" in names, qk_norm="blk.0.attn_q_norm.weight" in names,
        norm_eps=float(key("attention.layer_norm_rms_epsilon")),
        tie_embeddings="output.weight" not in names,
        rope_theta=float(key("rope.freq_base", 10000.0)), rope_scaling=_rope_scaling(reader, arch),
        sliding_window=int(key("attention.sliding_window", 0)))
    if arch == "llama" and "mistral" in str(_field(reader, "general.name", "")).lower():
        config.family = "mistral"  # llama.cpp stores Mistral as llama (transformers' rule)
    if arch == "gemma3":
        _gemma3(reader, config)
    if ROPE_FREQS in names:
        config.rope_scaling = llama3_scaling_from_factors(
            dequantize_tensor(next(t for t in reader.tensors if t.name == ROPE_FREQS)),
            config.rope_theta, head_dim)
    return config


def _rope_scaling(reader: GGUFFile, arch: str) -> dict[str, Any] | None:
    kind = _field(reader, f"{arch}.rope.scaling.type", "none")
    if kind in ("none", ""):
        return None
    factor = float(_field(reader, f"{arch}.rope.scaling.factor", 1.0))
    if kind != "linear":
        raise GptclsError(f"GGUF RoPE scaling {kind!r} is not supported (supported: linear, "
                          f"and llama3 through a rope_freqs tensor)")
    return {"rope_type": "linear", "factor": factor}


def _gemma3(reader: GGUFFile, c: ModelConfig) -> None:
    """What llama.cpp hard-codes for Gemma 3 rather than reading from the file."""
    c.embed_scale, c.mlp_act, c.rope_local_theta = math.sqrt(c.emb_dim), "gelu_tanh", \
        GEMMA3_LOCAL_THETA
    # query_pre_attn_scalar: head_dim, except 27B (62 layers): emb_dim / n_heads.
    c.attn_scale = (c.emb_dim / c.n_heads if c.n_layers == 62 else c.head_dim) ** -0.5
    pattern = reader.metadata.get("gemma3.attention.sliding_window_pattern")  # newer: per layer
    given = isinstance(pattern, list) and len(pattern) == c.n_layers
    sliding = ([bool(p) for p in pattern] if given  # type: ignore[union-attr]
               else [i % GEMMA3_SWA_PATTERN < GEMMA3_SWA_PATTERN - 1 for i in range(c.n_layers)])
    c.layer_types = ["sliding_attention" if s else "full_attention" for s in sliding]


def llama3_scaling_from_factors(factors: torch.Tensor, theta: float, head_dim: int
                                ) -> dict[str, Any] | None:
    """The HF `llama3` rope_scaling that convert_hf_to_gguf turned into `factors` (each base
    frequency is divided by its factor). The file keeps only the factors; in the blended band
    1/f = (1 - s)/factor + s with s = (orig / wavelen - low) / (high - low), linear in
    1/wavelen, so only the ratios of (orig, low, high) are determined: low = 1 is fixed and the
    others fitted, then the whole table recomputed and checked against the file."""
    from gptcls.models.rope import rope_inv_freq

    f = factors.double().flatten()
    if torch.allclose(f, torch.ones_like(f)):
        return None
    factor = float(f.max())
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    band = (f > 1 + 1e-6) & (f < factor * (1 - 1e-6))
    scaling: dict[str, Any] | None = None
    if int(band.sum()) >= 2:
        s = (1 / f[band] - 1 / factor) / (1 - 1 / factor)
        x = inv[band] / (2 * math.pi)  # 1 / wavelen
        a, b = np.polyfit(x.numpy(), s.numpy(), 1)  # s = a x - b: a = orig/(high-low), b = low/..
        b = -b
        scaling = {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                   "high_freq_factor": round(1.0 + 1.0 / b, 4),
                   "original_max_position_embeddings": int(round(a / b))}
    expected = (inv.float() / f.float())
    if scaling is None or not torch.allclose(rope_inv_freq(head_dim, theta, scaling), expected,
                                             rtol=1e-4, atol=0):
        raise GptclsError("GGUF rope_freqs tensor is not a llama3 RoPE scaling")
    return scaling


def unpermute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's convert_hf_to_gguf permute() of Q/K rows (per head: halves -> pairs)."""
    d = w.shape[0] // n_heads // 2
    return w.reshape(n_heads, d, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape).contiguous()


def _our_name(name: str) -> str:
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if m and m.group(2) in _BLOCK_NAMES:
        return f"blocks.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}"
    raise GptclsError(f"unsupported tensor {name!r} in GGUF file")


def state_dict_from_gguf(reader: GGUFFile, config: ModelConfig) -> dict[str, torch.Tensor]:
    """Every tensor dequantised to fp32 under our names, Llama's Q/K rows back in rotate-half
    order."""
    check_tensor_types(reader.tensors)
    permuted = config.family in ("llama", "mistral")  # llama.cpp's non-NEOX RoPE families
    sd: dict[str, torch.Tensor] = {}
    # Dequantising a big quantised backbone takes a while: say so (and nothing when quick).
    with progress(len(reader.tensors), LOADING, unit="tensors") as bar:
        for tensor in reader.tensors:
            bar.update()
            if tensor.name == ROPE_FREQS:
                continue  # read into config.rope_scaling
            name = _our_name(tensor.name)
            w = dequantize_tensor(tensor)
            if permuted and re.search(r"attn\.q\.(weight|bias)$", name):
                w = unpermute_qk(w, config.n_heads)
            elif permuted and re.search(r"attn\.k\.(weight|bias)$", name):
                w = unpermute_qk(w, config.n_kv_heads)
            sd[name] = w
    if config.tie_embeddings:
        sd["out_head.weight"] = sd["tok_emb.weight"]
    return sd


def load_gguf(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor], Any]:
    """(config, fp32 state dict in our names, Tokenizer) from a GGUF file."""
    from gptcls.models.tokenizers.gguf import tokenizer_from_gguf

    t0 = time.perf_counter()
    reader = open_reader(Path(path))
    config = config_from_gguf(reader)
    sd = state_dict_from_gguf(reader, config)
    logging.getLogger(__name__).debug(f"{path}: {len(sd)} tensors dequantised in "
                                      f"{time.perf_counter() - t0:.1f} s")
    # One reader for both: parsing the metadata (the vocabulary) is the slow part.
    return config, sd, tokenizer_from_gguf(reader)


def gguf_tokenizer(path: str | os.PathLike) -> Any:
    from gptcls.models.tokenizers.gguf import tokenizer_from_gguf

    return tokenizer_from_gguf(open_reader(Path(path)))
