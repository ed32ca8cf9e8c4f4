"""GPT-2 (Radford et al., 2019): learned positions, LayerNorm, GELU MLP, biases everywhere."""

from __future__ import annotations

import torch
from torch import nn

from gptcls.models.attention import Attention
from gptcls.models.base import Backbone, ModelConfig
from gptcls.models.layers import Block, GeluMLP


def _gpt2(emb_dim: int, n_layers: int, n_heads: int) -> ModelConfig:
    return ModelConfig(family="gpt2", vocab_size=50257, context_length=1024, emb_dim=emb_dim,
                       n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_heads,
                       hidden_dim=4 * emb_dim, qkv_bias=True, norm_eps=1e-5,
                       tie_embeddings=True, rope_theta=0.0)


# name -> (config, source repository on the Hugging Face hub)
PRESETS: dict[str, tuple[ModelConfig, str]] = {
    "gpt2-small": (_gpt2(768, 12, 12), "openai-community/gpt2"),  # 124M
    "gpt2-medium": (_gpt2(1024, 24, 16), "openai-community/gpt2-medium"),  # 355M
    "gpt2-large": (_gpt2(1280, 36, 20), "openai-community/gpt2-large"),  # 774M
    "gpt2-xl": (_gpt2(1600, 48, 25), "openai-community/gpt2-xl"),  # 1558M
    # 2 layers, width 16: random weights only, for smoke tests and CI.
    "gpt2-tiny": (_gpt2(16, 2, 2), ""),
}
# The directory names of OpenAI's original TensorFlow checkpoints (the book's download format).
OPENAI_SIZES = {"gpt2-small": "124M", "gpt2-medium": "355M", "gpt2-large": "774M",
                "gpt2-xl": "1558M"}


class GPT2(Backbone):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.rope = None  # positions are learned embeddings
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim)
        self.pos_emb = nn.Embedding(c.context_length, c.emb_dim)
        self.drop_emb = nn.Dropout(c.drop_rate)
        self.blocks = nn.ModuleList(
            Block(Attention(c.emb_dim, c.n_heads, c.n_kv_heads, c.head_dim, bias=c.qkv_bias,
                            proj_bias=True, drop_rate=c.drop_rate, causal=c.causal),
                  GeluMLP(c.emb_dim, c.hidden_dim),
                  nn.LayerNorm(c.emb_dim, eps=c.norm_eps), nn.LayerNorm(c.emb_dim, eps=c.norm_eps),
                  drop_rate=c.drop_rate)
            for _ in range(c.n_layers)
        )
        self.final_norm = nn.LayerNorm(c.emb_dim, eps=c.norm_eps)
        self.out_head = nn.Linear(c.emb_dim, c.vocab_size, bias=False)
        self.apply(_init_weights)
        self.tie_weights()

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        self.check_length(T)
        pos = torch.arange(T, device=idx.device)
        return self.drop_emb(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)


def _init_weights(module: nn.Module) -> None:
    # GPT-2's initialisation, so that `--weights random` is the paper's starting point.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
