"""Multi-head attention shared by every family: grouped key/value heads, optional q/k norms,
an optional sliding window, and the classifier's two shortcuts (query one position; no causal
mask).

Batches are right-padded, so a real causal token never attends to padding and needs no mask;
non-causal attention masks the padding with the rows' lengths. A sliding window of W lets a
causal query see itself and the W - 1 tokens before it (Hugging Face's convention); without
the causal mask, the tokens less than W away on either side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gptcls.models.layers import Packing, RMSNorm, fuse_linears, query_rows
from gptcls.models.rope import RoPE

# scaled_dot_product_attention takes enable_gqa from torch 2.5 on.
_SDPA_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)


MATH_MAX_T = 128  # the longest batch the explicit bf16 route below measured faster for


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           causal: bool, drop: float, scale: float | None, extra: dict) -> torch.Tensor:
    """scaled_dot_product_attention of q (B, H, Tq, D), k and v (B, KV, T, D), by the route
    that is fastest for the case on a CPU under bf16; elsewhere SDPA itself. Why: torch's CPU
    flash attention in bf16 runs its backward 3-4x slower than fp32's (8 texts of 40 tokens,
    9 heads: 5.4 vs 1.4 ms forward + backward on a 2-core AMD EPYC), so attention that
    autograd differentiates runs in fp32; without grad, short plain causal batches take
    `causal_attention_bf16`."""
    if _cpu_bf16(q):
        if q.requires_grad and torch.is_grad_enabled():
            with torch.autocast("cpu", enabled=False):
                return F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=mask, is_causal=causal,
                    dropout_p=drop, scale=scale, **extra).to(torch.bfloat16)
        if mask is None and causal and drop == 0.0 and q.shape[2] == k.shape[2] <= MATH_MAX_T:
            return causal_attention_bf16(q, k, v, scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                          dropout_p=drop, scale=scale, **extra)


def causal_attention_bf16(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          scale: float | None) -> torch.Tensor:
    """Causal attention as two bf16 matrix products and an fp32 softmax, each key/value head
    shared by its group of query heads without copying it: (B, H, T, D). Why: for the short
    texts of a frozen-trunk pass or a server batch, torch's CPU flash attention in bf16 spends
    1.1-3x longer (2-core AMD EPYC: 64 texts of 16 tokens, 9 heads: 5.0 vs 1.6 ms)."""
    B, H, T, D = q.shape
    KV = k.shape[1]
    q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    with torch.autocast("cpu", enabled=False):
        # Head h uses key/value head h // (H / KV), as SDPA's enable_gqa (repeat_interleave).
        s = (q.reshape(B, KV, H // KV * T, D) @ k.transpose(-1, -2)).float()  # (B, KV, G*T, T)
        pos = torch.arange(T, device=q.device)
        later = (pos[None, :] > pos[:, None]).repeat(H // KV, 1)  # (G*T, T): keys after the query
        p = s.mul_(scale or D ** -0.5).masked_fill_(later, float("-inf")).softmax(-1)
        return (p.to(torch.bfloat16) @ v).reshape(B, H, T, D)


def _cpu_bf16(q: torch.Tensor) -> bool:
    """q is a CPU tensor that attention would multiply in bf16 (its dtype, or autocast)."""
    autocast_bf16 = (torch.is_autocast_enabled("cpu")
                     and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    return q.device.type == "cpu" and (q.dtype == torch.bfloat16 or autocast_bf16)


class Attention(nn.Module):
    """Multi-head attention with grouped key/value heads (n_kv_heads == n_heads is plain MHA).

    qk_norm_eps > 0 adds an RMSNorm over each head of q and k before RoPE (Qwen3, Gemma 3);
    window > 0 makes it a sliding-window layer; scale 0 is the usual 1/sqrt(head_dim)."""

    def __init__(self, emb_dim: int, n_heads: int, n_kv_heads: int, head_dim: int,
                 bias: bool, proj_bias: bool, drop_rate: float = 0.0, causal: bool = True,
                 qk_norm_eps: float = 0.0, window: int = 0, scale: float = 0.0):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.causal = causal  # False: every token sees every real token (bonus table row 17)
        self.window, self.scale = window, scale or None  # None: SDPA's 1/sqrt(head_dim)
        self.q = nn.Linear(emb_dim, n_heads * head_dim, bias=bias)
        self.k = nn.Linear(emb_dim, n_kv_heads * head_dim, bias=bias)
        self.v = nn.Linear(emb_dim, n_kv_heads * head_dim, bias=bias)
        self.proj = nn.Linear(n_heads * head_dim, emb_dim, bias=proj_bias)
        self.q_norm = RMSNorm(head_dim, qk_norm_eps) if qk_norm_eps else None
        self.k_norm = RMSNorm(head_dim, qk_norm_eps) if qk_norm_eps else None
        self.drop_rate = drop_rate
        self.qkv: nn.Module | None = None  # q, k and v as one layer (`fuse`)

    def forward(self, x: torch.Tensor, rope: RoPE | None = None,
                query_pos: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None,
                packing: Packing | None = None) -> torch.Tensor:
        """x: (B, T, C). With query_pos (B,), only those positions are queried: (B, 1, C) out.
        lengths (B,): real tokens per row; only a non-causal layer needs them (to hide the
        right padding, which a causal one never sees from real tokens). With `packing`, x is
        the real tokens (N, C): projections run on them, attention on the padded layout."""
        B, T = (packing.B, packing.T) if packing is not None else x.shape[:2]
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.project(x, query_pos, packing)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, H, Tq, D), (B, KV, T, D)
        mask, causal = self.mask(T, query_pos, lengths, k.device)
        if rope is not None:
            q, k = rope(q, query_pos), rope(k, None)
        extra = {}
        if KV != H and _SDPA_GQA:
            extra["enable_gqa"] = True  # shares each key/value head without copying it
        elif KV != H:
            k = k.repeat_interleave(H // KV, dim=1)  # (B, H, T, D)
            v = v.repeat_interleave(H // KV, dim=1)
        drop = self.drop_rate if self.training else 0.0
        out = attend(q, k, v, mask, causal, drop, self.scale, extra)  # (B, H, Tq, D)
        out = out.transpose(1, 2).reshape(B, q.shape[2], H * D)
        if packing is not None and query_pos is None:
            out = packing.pack(out)  # (N, H * D)
        return self.proj(out)

    def project(self, x: torch.Tensor, query_pos: torch.Tensor | None,
                packing: Packing | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, Tq, H, D), k (B, T, KV, D), v (B, KV, T, D) of x (B, T, C) or packed (N, C)."""
        B, T = (packing.B, packing.T) if packing is not None else x.shape[:2]
        H, KV, D = self.n_heads, self.n_kv_heads, self.head_dim
        if self.qkv is not None:  # one product; the query shortcut then keeps one row of q
            q, k, v = self.qkv(x).split([H * D, KV * D, KV * D], -1)
        else:
            q, k, v = None, self.k(x), self.v(x)
        if query_pos is not None:  # (B, 1, H * D): only the queried positions
            q = (query_rows(q, query_pos, packing) if q is not None
                 else self.q(query_rows(x, query_pos, packing))).unsqueeze(1)
        else:
            q = self.q(x) if q is None else q
            q = packing.pad(q) if packing is not None else q
        if packing is not None:
            k, v = packing.pad(k), packing.pad(v)  # (B, T, KV * D), padding 0
        return (q.reshape(B, q.shape[1], H, D), k.reshape(B, T, KV, D),
                v.reshape(B, T, KV, D).transpose(1, 2))

    def fuse(self) -> None:
        """Compute q, k and v with one layer (same results; for inference copies only: the
        query shortcut then projects every position's query, a few % of the last block)."""
        self.qkv = fuse_linears(self.q, self.k, self.v)
        if self.qkv is not None:
            self.q = self.k = self.v = None

    def mask(self, T: int, query_pos: torch.Tensor | None, lengths: torch.Tensor | None,
             device: torch.device) -> tuple[torch.Tensor | None, bool]:
        """The boolean attn_mask (True: may attend; None: none) and is_causal for SDPA."""
        positions = torch.arange(T, device=device)
        real = None if lengths is None else positions[None, :] < lengths[:, None]  # (B, T)
        if self.window:  # even when T <= window: an ONNX trace must keep the mask for any T
            return self.window_mask(positions, query_pos, real), False
        if query_pos is None:
            if not self.causal and real is not None:
                return real[:, None, None, :], False  # (B, 1, 1, T)
            return None, self.causal
        if not self.causal:
            return (None if real is None else real[:, None, None, :]), False
        # The queried token sees itself and what precedes it, never the padding after it.
        return (positions[None, :] <= query_pos[:, None])[:, None, None, :], False

    def window_mask(self, positions: torch.Tensor, query_pos: torch.Tensor | None,
                    real: torch.Tensor | None) -> torch.Tensor:
        """(B or 1, 1, Tq, T): the sliding window, causal or not."""
        q_pos = positions[None, :, None] if query_pos is None else query_pos[:, None, None]
        dist = q_pos - positions  # (1 or B, Tq, T): how far each key lies before its query
        if self.causal:  # the padding after a real query is never within dist >= 0
            return ((dist >= 0) & (dist < self.window))[:, None]
        mask = dist.abs() < self.window
        if real is not None:
            # A padding query far from every real token keeps itself, so no row is all False
            # (SDPA would return NaN there, and NaN values leak even through zero weights).
            mask = (mask & real[:, None, :]) | (dist == 0)
        return mask[:, None]
