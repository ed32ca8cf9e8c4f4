"""LoRA: low-rank adapters on a frozen backbone's attention and MLP projections.

`apply_lora` swaps the chosen nn.Linear layers of the top blocks for `LoRALinear`, which keeps
the original weight frozen and learns W + (alpha / rank) * B @ A with A (rank, in) and
B (out, rank). B starts at zero, so an adapted model computes exactly what the base model did.
`merge_lora` folds B @ A back into W: the merged model is a plain model with the same logits.

The frozen weight keeps its name (`attn.q.weight`), so a base state dict still loads into an
adapted model and a saved unmerged run only adds `lora_A` / `lora_B` tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gptcls.errors import GptclsError
from gptcls.options import DEFAULT_ALPHA, DEFAULT_RANK, DEFAULT_TARGETS

# Projections by block part: attention q,k,v,proj; MLP fc,proj (GPT-2) or gate,up,down (Llama).
GROUPS = {"attn": ("attn.",), "mlp": ("mlp.",), "all": ("attn.", "mlp.")}
SHORT_NAMES = {"q": "attn.q", "k": "attn.k", "v": "attn.v", "fc": "mlp.fc", "gate": "mlp.gate",
               "up": "mlp.up", "down": "mlp.down"}
QUALIFIED_NAMES = ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc", "mlp.proj", "mlp.gate",
                   "mlp.up", "mlp.down")
VALID_TARGETS = (*GROUPS, *SHORT_NAMES, *QUALIFIED_NAMES)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: y = xW^T + b + s * x A^T B^T."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank <= 0:
            raise GptclsError(f"LoRA rank must be positive, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        # The base layer's own parameters (same objects, same names), frozen.
        self.weight = base.weight  # (out, in)
        self.bias = base.bias  # (out,) or None
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, **kw))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **kw))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out)."""
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)  # (..., r) -> (..., out)
        return F.linear(x, self.weight, self.bias) + self.scale * update

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """A plain nn.Linear computing the same function: W + scale * B @ A."""
        delta = (self.lora_B.float() @ self.lora_A.float()) * self.scale  # (out, in)
        merged = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device="meta")
        merged.weight = nn.Parameter((self.weight.float() + delta).to(self.weight.dtype),
                                     requires_grad=False)
        merged.bias = self.bias
        return merged

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, alpha={self.alpha:g}")


def lora_spec(rank: int | None = None, alpha: float | None = None,
              targets: str | Sequence[str] | None = None) -> dict[str, Any]:
    """Validated LoRA options with defaults filled in (targets not yet resolved on a model)."""
    rank = DEFAULT_RANK if rank is None else rank
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    if not isinstance(rank, int) or rank <= 0:
        raise GptclsError(f"--lora-rank must be a positive integer, got {rank}")
    if not alpha > 0:
        raise GptclsError(f"--lora-alpha must be positive, got {alpha}")
    names = parse_targets(DEFAULT_TARGETS if targets is None else targets)
    return {"rank": rank, "alpha": float(alpha), "targets": names}


def parse_targets(targets: str | Sequence[str]) -> list[str]:
    """'attn,mlp.fc' -> ['attn', 'mlp.fc'], each checked against the known names."""
    items = targets.split(",") if isinstance(targets, str) else list(targets)
    names = [t.strip() for t in items if t.strip()]
    if not names:
        raise GptclsError("--lora-targets is empty; choose from: " + ", ".join(VALID_TARGETS))
    for name in names:
        if name == "proj":
            raise GptclsError("LoRA target 'proj' is ambiguous: use attn.proj or mlp.proj")
        if name not in VALID_TARGETS:
            raise GptclsError(f"unknown LoRA target {name!r}; choose from: "
                              + ", ".join(VALID_TARGETS))
    return names


def linear_names(block: nn.Module) -> list[str]:
    """Qualified names of a block's attention and MLP projections, in module order."""
    return [n for n, m in block.named_modules()
            if isinstance(m, (nn.Linear, LoRALinear)) and n.startswith(("attn.", "mlp."))]


def resolve_targets(targets: str | Sequence[str], block: nn.Module) -> list[str]:
    """Target names and groups -> the block's qualified projection names, in module order."""
    available = linear_names(block)
    wanted: set[str] = set()
    for name in parse_targets(targets):
        if name in GROUPS:
            wanted.update(n for n in available if n.startswith(GROUPS[name]))
            continue
        qualified = SHORT_NAMES.get(name, name)
        if qualified not in available:
            raise GptclsError(f"LoRA target {name!r} is not in this model's blocks; they have: "
                              + ", ".join(available))
        wanted.add(qualified)
    return [n for n in available if n in wanted]


def apply_lora(model: nn.Module, rank: int, alpha: float, targets: str | Sequence[str],
               blocks: int | None = None) -> list[str]:
    """Adapt `targets` in the last `blocks` blocks (None: every block) of `model` (a backbone or
    anything with a `.backbone`). Returns the resolved qualified target names."""
    all_blocks = _blocks(model)
    n = len(all_blocks) if blocks is None else blocks
    if not 0 < n <= len(all_blocks):
        raise GptclsError(f"LoRA blocks must be between 1 and {len(all_blocks)}, got {n}")
    names = resolve_targets(targets, all_blocks[0])
    for block in all_blocks[len(all_blocks) - n:]:
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name)
            layer = getattr(parent, child)
            if isinstance(layer, LoRALinear):
                raise GptclsError(f"{name} already has a LoRA adapter")
            setattr(parent, child, LoRALinear(layer, rank, alpha))
    return names


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter of `model` into its base weight, in place; returns how many."""
    merged = 0
    for _name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, child_name, child.merge())
                merged += 1
    return merged


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def _blocks(model: nn.Module) -> nn.ModuleList:
    backbone = getattr(model, "backbone", model)
    return backbone.blocks

