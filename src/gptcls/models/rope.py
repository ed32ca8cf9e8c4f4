"""Rotary position embedding (RoPE) and the scalings of its frequencies that checkpoints use.

A scaling is Hugging Face config.json's `rope_scaling` dict (ModelConfig.rope_scaling): "linear"
divides every frequency by `factor`; "llama3" (Llama 3.1+) divides the low frequencies by
`factor`, keeps the high ones and blends in between. The formulas follow transformers'
modeling_rope_utils op for op, so fp32 tables agree bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gptcls.errors import GptclsError

ROPE_TYPES = ("default", "linear", "llama3")  # what rope_scaling's rope_type may be


def rope_type(scaling: dict[str, Any] | None) -> str:
    """The scaling's type ("default" for none), or a one-line error naming the supported ones."""
    kind = "default" if not scaling else scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ROPE_TYPES:
        raise GptclsError(f"RoPE type {kind!r} is not supported (supported: "
                          f"{', '.join(ROPE_TYPES)})")
    return kind


def rope_inv_freq(head_dim: int, theta: float, scaling: dict[str, Any] | None = None
                  ) -> torch.Tensor:
    """(head_dim / 2,) inverse frequencies, scaled as `scaling` says."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    kind = rope_type(scaling)
    if kind == "linear":
        return inv_freq / float(scaling["factor"])  # type: ignore[index]
    if kind == "llama3":
        return _llama3(inv_freq, scaling)  # type: ignore[arg-type]
    return inv_freq


def _llama3(inv_freq: torch.Tensor, s: dict[str, Any]) -> torch.Tensor:
    factor, low, high = float(s["factor"]), float(s["low_freq_factor"]), float(
        s["high_freq_factor"])
    old_context = s["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths (beyond the original context) are stretched by `factor`; short ones kept.
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)


class RoPE(nn.Module):
    """Rotary position embedding in the "rotate half" layout (Hugging Face Llama's)."""

    def __init__(self, head_dim: int, context_length: int, theta: float,
                 scaling: dict[str, Any] | None = None):
        super().__init__()
        self.head_dim, self.context_length = head_dim, context_length
        self.theta, self.scaling = theta, scaling
        self.register_buffer("cos", torch.empty(0), persistent=False)
        self.register_buffer("sin", torch.empty(0), persistent=False)
        self.fill()

    def fill(self, device: torch.device | None = None) -> None:
        """(Re)compute the cos/sin tables, on the default device (as any new tensor), then onto
        `device`. They are not in the state dict: a model built on the meta device and loaded
        with assign=True calls this (with the model's device) to get real tables."""
        inv_freq = rope_inv_freq(self.head_dim, self.theta, self.scaling)
        angles = torch.outer(torch.arange(self.context_length, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)  # (ctx, D)
        self.cos, self.sin = angles.cos().to(device), angles.sin().to(device)

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
