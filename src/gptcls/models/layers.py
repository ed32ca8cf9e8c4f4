"""Building blocks shared by every decoder family: norms, MLPs, the block (attention.py and
rope.py hold the rest).

A family (gpt2.py, llama.py, qwen.py, gemma3.py) only chooses among these and defines how tokens
are embedded. Every block is pre-norm (Gemma 3 adds norms after attention and MLP too) and
causal unless a classifier turns the causal mask off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """weight * x / rms(x). The weight is the multiplier actually applied: Gemma's checkpoints
    store it as w with the model applying 1 + w, and the converters add the 1 when loading."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 like the reference implementations, then cast back; one fused op.
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


class GeluMLP(nn.Module):
    """GPT-2's MLP: fc -> GELU (tanh approximation) -> proj."""

    def __init__(self, emb_dim: int, hidden_dim: int):
        super().__init__()
        self.fc = nn.Linear(emb_dim, hidden_dim)
        self.proj = nn.Linear(hidden_dim, emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"silu": F.silu, "gelu_tanh": gelu_tanh}


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with silu (Llama, Qwen, Mistral), GeGLU with tanh
    GELU (Gemma)."""

    def __init__(self, emb_dim: int, hidden_dim: int, act: str = "silu"):
        super().__init__()
        self.gate = nn.Linear(emb_dim, hidden_dim, bias=False)
        self.up = nn.Linear(emb_dim, hidden_dim, bias=False)
        self.down = nn.Linear(hidden_dim, emb_dim, bias=False)
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)). Gemma 3 also
    normalises each branch's output: x + post_norm1(attn(norm1(x))), likewise for the MLP."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module,
                 drop_rate: float = 0.0, post_norm1: nn.Module | None = None,
                 post_norm2: nn.Module | None = None):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp
        self.post_norm1, self.post_norm2 = post_norm1, post_norm2
        self.drop = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor, rope: nn.Module | None = None,
                query_pos: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or (B, 1, C) at query_pos when given."""
        a = self.attn(self.norm1(x), rope, query_pos, lengths)
        if self.post_norm1 is not None:
            a = self.post_norm1(a)
        if query_pos is not None:
            x = x[torch.arange(x.shape[0], device=x.device), query_pos].unsqueeze(1)
        x = x + self.drop(a)
        m = self.mlp(self.norm2(x))
        if self.post_norm2 is not None:
            m = self.post_norm2(m)
        return x + self.drop(m)
