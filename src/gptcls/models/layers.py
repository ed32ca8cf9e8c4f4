"""Building blocks shared by every decoder family: norms, MLPs, the block (attention.py and
rope.py hold the rest).

A family (gpt2.py, llama.py, qwen.py, gemma3.py) only chooses among these and defines how tokens
are embedded. Every block is pre-norm (Gemma 3 adds norms after attention and MLP too) and
causal unless a classifier turns the causal mask off.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.gate_up: nn.Module | None = None  # gate and up as one layer (`fuse`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up is not None:
            gate, up = self.gate_up(x).chunk(2, -1)  # (B, T, hidden) each
            return self.down(self.act(gate) * up)
        return self.down(self.act(self.gate(x)) * self.up(x))

    def fuse(self) -> None:
        """Compute gate and up with one layer (same results; for inference copies only)."""
        self.gate_up = fuse_linears(self.gate, self.up)
        if self.gate_up is not None:
            self.gate = self.up = None


def fuse_linears(*layers: nn.Module) -> nn.Linear | None:
    """One nn.Linear whose output is the layers' outputs side by side; None unless every
    layer is a plain nn.Linear (a LoRA-wrapped one keeps its own). Why: one matrix product
    instead of several small ones, and an int8 copy quantizes the shared input once."""
    if not all(type(m) is nn.Linear for m in layers):
        return None
    biased = [m.bias is not None for m in layers]
    if any(biased) and not all(biased):
        return None
    first = layers[0]
    fused = nn.Linear(first.in_features, sum(m.out_features for m in layers), bias=biased[0],
                      device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in layers]))
        if biased[0]:
            fused.bias.copy_(torch.cat([m.bias for m in layers]))
    return fused


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
                lengths: torch.Tensor | None = None,
                packing: Packing | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or (B, 1, C) at query_pos when given. With `packing`, x is
        the batch's real tokens, (N, C) -> (N, C) (or (B, 1, C) at query_pos): everything but
        attention itself then skips the padding."""
        a = self.attn(self.norm1(x), rope, query_pos, lengths, packing)
        if self.post_norm1 is not None:
            a = self.post_norm1(a)
        if query_pos is not None:
            x = query_rows(x, query_pos, packing).unsqueeze(1)  # (B, 1, C)
        x = x + self.drop(a)
        m = self.mlp(self.norm2(x))
        if self.post_norm2 is not None:
            m = self.post_norm2(m)
        return x + self.drop(m)


@dataclass(frozen=True)
class Packing:
    """A right-padded (B, T) batch held as its N real tokens, (N, C), row after row.

    Why: on a CPU a padding token costs every linear layer, norm and add what a real one
    does, and a server's small mixed batches are 10-15% padding; only attention needs the
    (B, T) layout, and gets it by `pad`."""

    real: torch.Tensor  # (N,) flat indices into B * T of the real tokens
    starts: torch.Tensor  # (B,) where each row's tokens begin among the N
    B: int
    T: int

    def pack(self, y: torch.Tensor) -> torch.Tensor:
        """(B, T, X) -> (N, X)."""
        return y.reshape(self.B * self.T, -1)[self.real]

    def pad(self, y: torch.Tensor) -> torch.Tensor:
        """(N, X) -> (B, T, X), the padding rows 0."""
        out = y.new_zeros(self.B * self.T, y.shape[-1]).index_copy_(0, self.real, y)
        return out.view(self.B, self.T, -1)


def packing_for(lengths: torch.Tensor | None, T: int, min_share: float = 0.1
                ) -> Packing | None:
    """The Packing of a right-padded batch whose padding is at least `min_share` of it (else
    None: the gathers would cost more than they save). Never while tracing an export."""
    if lengths is None or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    B = lengths.shape[0]
    if int(lengths.sum()) > (1 - min_share) * B * T:
        return None
    positions = torch.arange(T, device=lengths.device)
    real = (positions[None, :] < lengths[:, None]).flatten().nonzero().squeeze(1)  # (N,)
    return Packing(real, torch.cumsum(lengths, 0) - lengths, B, T)


def query_rows(x: torch.Tensor, query_pos: torch.Tensor, packing: Packing | None
               ) -> torch.Tensor:
    """(B, X): each row's token at query_pos, of x (B, T, X) or, packed, (N, X)."""
    if packing is not None:
        return x[packing.starts + query_pos]
    return x[torch.arange(x.shape[0], device=x.device), query_pos]
