"""The config dataclass every family shares, and the backbone interface the classifier uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gptcls.errors import GptclsError
from gptcls.models.layers import RoPE


@dataclass
class ModelConfig:
    """Hyper-parameters of a decoder. Field names are the same for every family."""

    family: str = "gpt2"
    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int = 12
    hidden_dim: int = 3072
    qkv_bias: bool = True
    drop_rate: float = 0.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    rope_theta: float = 0.0  # 0 = learned absolute positions (GPT-2)
    causal: bool = True  # False: bidirectional attention (a classifier option, never for text)

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise GptclsError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**d)


class Backbone(nn.Module):
    """A decoder split into the stages the classifier needs: embed, blocks, final norm, LM head.

    Subclasses build `tok_emb`, `blocks`, `final_norm`, `out_head` and may set `rope`.
    """

    config: ModelConfig
    tok_emb: nn.Embedding
    blocks: nn.ModuleList
    final_norm: nn.Module
    out_head: nn.Linear
    rope: RoPE | None  # a class-level default would shadow the registered submodule

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, C)."""
        raise NotImplementedError

    def check_length(self, T: int) -> None:
        if T > self.config.context_length:
            raise GptclsError(
                f"sequence of {T} tokens exceeds the model's context length "
                f"{self.config.context_length}"
            )

    def run_blocks(self, x: torch.Tensor, start: int = 0, stop: int | None = None,
                   query_pos: torch.Tensor | None = None,
                   lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Blocks [start, stop) on (B, T, C). query_pos (B,) makes the last one query only there;
        lengths (B,) hide right padding from non-causal attention."""
        blocks = list(self.blocks)[start:stop]
        for i, block in enumerate(blocks):
            last = i == len(blocks) - 1
            x = block(x, self.rope, query_pos if last else None, lengths)
        return x

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> final-normed (B, T, C)."""
        self.check_length(idx.shape[1])
        return self.final_norm(self.run_blocks(self.embed(idx)))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> next-token logits (B, T, V)."""
        return self.out_head(self.hidden_states(idx))

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.out_head.weight = self.tok_emb.weight
