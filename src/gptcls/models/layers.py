"""Building blocks shared by every decoder family: norms, attention, MLPs, the block, RoPE.

A family (gpt2.py, llama.py) only chooses among these and defines how tokens are embedded.
Every block is pre-norm and causal unless a classifier turns the causal mask off. Batches are
right-padded, so a real causal token never attends to padding and needs no mask; non-causal
attention masks the padding with the rows' lengths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# scaled_dot_product_attention takes enable_gqa from torch 2.5 on.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 like the reference implementations, then cast back; one fused op.
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


class RoPE(nn.Module):
    """Rotary position embedding in the "rotate half" layout (Hugging Face Llama's)."""

    def __init__(self, head_dim: int, context_length: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(context_length, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)  # (ctx, D)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H, T, D); pos None: positions 0..T-1; else (B,) one position per row (T == 1)."""
        if pos is None:  # positions 0..T-1: a slice, no gather
            T = x.shape[2]
            cos, sin = self.cos[:T][None, None], self.sin[:T][None, None]  # (1, 1, T, D)
        else:
            cos, sin = self.cos[pos][:, None, None], self.sin[pos][:, None, None]  # (B, 1, 1, D)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return (x * cos.to(x.dtype)) + (rotated * sin.to(x.dtype))


class Attention(nn.Module):
    """Multi-head attention with grouped key/value heads (n_kv_heads == n_heads is plain MHA)."""

    def __init__(self, emb_dim: int, n_heads: int, n_kv_heads: int, head_dim: int,
                 bias: bool, proj_bias: bool, drop_rate: float = 0.0, causal: bool = True):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.causal = causal  # False: every token sees every real token (bonus table row 17)
        self.q = nn.Linear(emb_dim, n_heads * head_dim, bias=bias)
        self.k = nn.Linear(emb_dim, n_kv_heads * head_dim, bias=bias)
        self.v = nn.Linear(emb_dim, n_kv_heads * head_dim, bias=bias)
        self.proj = nn.Linear(n_heads * head_dim, emb_dim, bias=proj_bias)
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor, rope: RoPE | None = None,
                query_pos: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, C). With query_pos (B,), only those positions are queried: (B, 1, C) out.
        lengths (B,): real tokens per row; only a non-causal layer needs them (to hide the
        right padding, which a causal one never sees from real tokens)."""
        B, T, _ = x.shape
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        k = self.k(x).view(B, T, KV, D).transpose(1, 2)  # (B, KV, T, D)
        v = self.v(x).view(B, T, KV, D).transpose(1, 2)
        positions = torch.arange(T, device=x.device)
        real = None if lengths is None else positions[None, :] < lengths[:, None]  # (B, T)
        if query_pos is None:
            q = self.q(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            q_positions, mask, causal = None, None, self.causal
            if not self.causal and real is not None:
                mask = real[:, None, None, :]  # (B, 1, 1, T)
        else:
            xq = x[torch.arange(B, device=x.device), query_pos].unsqueeze(1)  # (B, 1, C)
            q = self.q(xq).view(B, 1, H, D).transpose(1, 2)  # (B, H, 1, D)
            # The queried token sees itself and what precedes it, never the padding after it.
            mask = (positions[None, :] <= query_pos[:, None])[:, None, None, :]  # (B, 1, 1, T)
            if not self.causal:
                mask = None if real is None else real[:, None, None, :]
            q_positions, causal = query_pos, False
        if rope is not None:
            q, k = rope(q, q_positions), rope(k, None)
        extra = {}
        if KV != H and _SDPA_GQA:
            extra["enable_gqa"] = True  # shares each key/value head without copying it
        elif KV != H:
            k = k.repeat_interleave(H // KV, dim=1)  # (B, H, T, D)
            v = v.repeat_interleave(H // KV, dim=1)
        drop = self.drop_rate if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             dropout_p=drop, **extra)
        return self.proj(out.transpose(1, 2).reshape(B, q.shape[2], H * D))


class GeluMLP(nn.Module):
    """GPT-2's MLP: fc -> GELU (tanh approximation) -> proj."""

    def __init__(self, emb_dim: int, hidden_dim: int):
        super().__init__()
        self.fc = nn.Linear(emb_dim, hidden_dim)
        self.proj = nn.Linear(hidden_dim, emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class SwiGLU(nn.Module):
    """Llama's MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, emb_dim: int, hidden_dim: int):
        super().__init__()
        self.gate = nn.Linear(emb_dim, hidden_dim, bias=False)
        self.up = nn.Linear(emb_dim, hidden_dim, bias=False)
        self.down = nn.Linear(hidden_dim, emb_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, attn: Attention, mlp: nn.Module, norm1: nn.Module, norm2: nn.Module,
                 drop_rate: float = 0.0):
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp
        self.drop = nn.Dropout(drop_rate)

    def forward(self, x: torch.Tensor, rope: RoPE | None = None,
                query_pos: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or (B, 1, C) at query_pos when given."""
        a = self.attn(self.norm1(x), rope, query_pos, lengths)
        if query_pos is not None:
            x = x[torch.arange(x.shape[0], device=x.device), query_pos].unsqueeze(1)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x)))
