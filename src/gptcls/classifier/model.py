"""The classifier module: a backbone, a pooling rule and a linear head, and its trainable policy.

The model is split at the first trainable block (the lowest one with any trainable parameter,
LoRA adapters included). Everything below (the "trunk") is frozen, so its output for a text
never changes during training and can be computed once (the trunk cache); only the "top"
(trainable blocks, final norm, head) runs every step.

Trainable policies: last-layer (head and final norm only), last-block, last-N-blocks, all (every
block), lora (frozen weights plus low-rank adapters); embeddings train only when asked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gptcls.classifier.config import SINGLE_POSITION_POOLINGS, policy_blocks
from gptcls.errors import GptclsError
from gptcls.models.base import Backbone
from gptcls.models.lora import apply_lora, has_lora, lora_spec
from gptcls.models.lora import merge_lora as merge_adapters
from gptcls.options import POOLINGS


class ClassifierModel(nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int, pooling: str = "last",
                 head_bias: bool = True):
        super().__init__()
        if pooling not in POOLINGS:
            raise GptclsError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        self.backbone = backbone
        width = backbone.config.emb_dim * (2 if pooling == "last+mean" else 1)
        self.head = nn.Linear(width, num_classes)
        # Without a bias the parameter stays, held at zero and frozen (see _set_ends): the same
        # logits as no bias, and run directories keep one layout.
        self.head_bias = head_bias
        if not head_bias:
            nn.init.zeros_(self.head.bias)
        self.pooling = pooling
        self.first_trainable = backbone.config.n_layers  # set by set_trainable / set_policy
        self.lora: dict[str, Any] | None = None  # the LoRA options in use, set by set_policy

    def set_trainable(self, n_blocks: int, final_norm: bool = True,
                      embeddings: bool = False) -> None:
        """Freeze the backbone but its last `n_blocks` blocks (and final norm); the head trains."""
        n_layers = self.backbone.config.n_layers
        if not 0 <= n_blocks <= n_layers:
            raise GptclsError(f"trainable blocks must be between 0 and {n_layers}, got {n_blocks}")
        self.backbone.requires_grad_(False)
        for block in self.backbone.blocks[n_layers - n_blocks:]:
            block.requires_grad_(True)
        self._set_ends(final_norm, embeddings)

    def set_policy(self, policy: str, n_blocks: int | None = None, *, final_norm: bool = True,
                   embeddings: bool = False, lora: dict[str, Any] | None = None) -> int:
        """Apply a trainable policy; returns its block count. `lora` (rank, alpha, targets) is
        for the lora policy only: it replaces the target projections of the last `n_blocks`
        blocks (default: all) by adapters, the only backbone weights that then train."""
        n_layers = self.backbone.config.n_layers
        n = policy_blocks(policy, n_blocks, n_layers)
        if policy != "lora":
            if lora is not None:
                raise GptclsError("LoRA options (--lora-rank, --lora-alpha, --lora-targets) "
                                  "need --trainable lora")
            self.set_trainable(n, final_norm, embeddings)
            return n
        if has_lora(self):
            raise GptclsError("this model already has LoRA adapters")
        spec = lora_spec(**(lora or {}))
        self.backbone.requires_grad_(False)
        targets = apply_lora(self.backbone, spec["rank"], spec["alpha"], spec["targets"], n)
        self.lora = {**spec, "targets": targets, "blocks": n, "merged": False}
        self._set_ends(final_norm, embeddings)
        return n

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the base weights (same logits, a plain model)."""
        merge_adapters(self.backbone)
        if self.lora is not None:
            self.lora = {**self.lora, "merged": True}

    def _set_ends(self, final_norm: bool, embeddings: bool) -> None:
        """Final norm, embeddings and head; then the trunk/top split."""
        self.backbone.final_norm.requires_grad_(final_norm)
        for emb in self.embeddings():
            emb.requires_grad_(embeddings)
        self.head.requires_grad_(True)
        self.head.bias.requires_grad_(self.head_bias)
        blocks = self.backbone.blocks
        self.first_trainable = next(
            (i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())),
            len(blocks))

    def embeddings(self) -> list[nn.Module]:
        """Token (and, for GPT-2, position) embeddings."""
        return [m for m in self.backbone.children() if isinstance(m, nn.Embedding)]

    def trunk(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, C) activations entering the first trainable block."""
        return self.backbone.run_blocks(self.backbone.embed(idx), 0, self.first_trainable,
                                        lengths=lengths)

    def top(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, C) trunk activations and (B,) real lengths -> (B, num_classes) logits."""
        bb, start = self.backbone, self.first_trainable
        if self.pooling in SINGLE_POSITION_POOLINGS:
            pos = lengths - 1 if self.pooling != "first" else torch.zeros_like(lengths)
            if start < bb.config.n_layers:
                # The last block queries only the pooled position: keys/values still see all.
                x = bb.run_blocks(x, start, None, query_pos=pos, lengths=lengths)[:, 0]  # (B, C)
            else:
                x = x[torch.arange(x.shape[0], device=x.device), pos]  # (B, C)
            return self.head(bb.final_norm(x))
        x = bb.final_norm(bb.run_blocks(x, start, lengths=lengths))  # (B, T, C)
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x.dtype)
        pooled = (x * mask[..., None]).sum(1) / lengths[:, None].to(x.dtype)  # (B, C)
        if self.pooling == "last+mean":
            last = x[torch.arange(x.shape[0], device=x.device), lengths - 1]  # (B, C)
            pooled = torch.cat([last, pooled], dim=-1)  # (B, 2C)
        return self.head(pooled)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor, cached: bool = False
                ) -> torch.Tensor:
        """(B, T) ids -> logits; with `cached`, (B, T, C) trunk activations -> logits (the
        form DistributedDataParallel calls when the trunk is cached)."""
        if cached:
            return self.top(idx, lengths)
        return self.top(self.trunk(idx, lengths), lengths)

    def trunk_is_cacheable(self) -> bool:
        """True when the trunk is frozen and deterministic, so its output can be computed once."""
        return self.trunk_uncacheable_reason() is None

    def trunk_uncacheable_reason(self) -> str | None:
        """Why the trunk's output cannot be computed once, or None when it can."""
        if any(p.requires_grad for m in self.embeddings() for p in m.parameters()):
            return "the embeddings train (--train-embeddings)"
        if any(p.requires_grad for b in self.backbone.blocks[: self.first_trainable]
               for p in b.parameters()):
            return "blocks below the trainable top train"
        if self.backbone.config.drop_rate != 0.0:
            return "dropout makes the frozen layers' output random"
        return None
