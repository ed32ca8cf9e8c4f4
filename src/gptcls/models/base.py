"""The config dataclass every family shares, and the backbone interface the classifier uses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gptcls.errors import GptclsError
from gptcls.models.layers import packing_for
from gptcls.models.rope import RoPE


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
    # Fields of the newer families; the defaults are GPT-2's and Llama 2's behaviour, so run
    # directories written before these fields existed load unchanged.
    head_dim: int = 0  # 0: emb_dim // n_heads (resolved in __post_init__); Qwen3/Gemma set it
    qk_norm: bool = False  # RMSNorm over each head of q and k before RoPE (Qwen3, Gemma 3)
    # HF config.json's rope_scaling, e.g. {"rope_type": "llama3", "factor": 32.0,
    # "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    # or {"rope_type": "linear", "factor": 8.0}; None: plain RoPE. Gemma 3: global layers only.
    rope_scaling: dict[str, Any] | None = None
    rope_local_theta: float = 0.0  # RoPE base of sliding-window layers (Gemma 3); 0: rope_theta
    sliding_window: int = 0  # tokens a sliding layer's query sees, itself included; 0: none
    # Per layer "sliding_attention" or "full_attention" (HF's names). None: every layer full,
    # or every layer sliding when sliding_window > 0 (Mistral).
    layer_types: list[str] | None = None
    embed_scale: float = 1.0  # token embeddings times this, in their dtype (Gemma: sqrt(emb_dim))
    # Softmax scale; 0: 1/sqrt(head_dim). Gemma 3: query_pre_attn_scalar ** -0.5.
    attn_scale: float = 0.0
    mlp_act: str = ""  # "": the family's own; "gelu_tanh": GeGLU (Gemma), "silu": SwiGLU

    def __post_init__(self) -> None:
        if not self.head_dim:
            self.head_dim = self.emb_dim // self.n_heads

    def is_sliding(self, layer: int) -> bool:
        """Whether layer `layer` attends through the sliding window."""
        if not self.sliding_window:
            return False
        return self.layer_types is None or self.layer_types[layer] == "sliding_attention"

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
        layers = range(len(self.blocks))[start:stop]
        packing = packing_for(lengths, x.shape[1]) if layers else None
        if packing is not None:  # padding worth skipping: only the real tokens go through
            x = packing.pack(x)  # (N, C)
        for i in layers:
            last = i == layers[-1]
            x = self.blocks[i](x, self.block_rope(i), query_pos if last else None, lengths,
                               packing)
        if packing is not None and query_pos is None:
            x = packing.pad(x)  # (B, T, C), the padding rows 0
        return x

    def block_rope(self, layer: int) -> RoPE | None:
        """The RoPE of block `layer` (Gemma 3's sliding layers have their own base)."""
        return self.rope

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> final-normed (B, T, C)."""
        self.check_length(idx.shape[1])
        return self.final_norm(self.run_blocks(self.embed(idx)))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) -> next-token logits (B, T, V)."""
        return self.out_head(self.hidden_states(idx))

    def init_weights(self, std: float = 0.02) -> None:
        """The usual decoder initialisation (normal, std 0.02, on every linear and embedding
        weight), then the head tied if configured: what `--weights random` starts from."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_embeddings:
            self.out_head.weight = self.tok_emb.weight
