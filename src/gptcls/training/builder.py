"""The classifier a run trains: its trainable policy (validated), the pretrained backbone and the
new head, built the same way for `gptcls train` (pipeline.py) and the in-memory estimator
(in_memory.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from gptcls.classifier.model import ClassifierModel
from gptcls.errors import GptclsError
from gptcls.options import OPTIONS, TRAINABLE_POLICIES, RunOptions, value


def build_model(opts: RunOptions, num_classes: int, pretrained: Any = None
                ) -> tuple[ClassifierModel, Any, Any, str, int]:
    """(model, tokenizer, pretrained, resolved policy, its block count). `pretrained` is
    load_pretrained's result to build on (its state dict is handed to the backbone and emptied);
    None: loaded here, after the options are checked (bad options fail before any download)."""
    from gptcls.models.weights.pretrained import load_backbone, load_pretrained

    policy, n_blocks, lora = trainable_policy(opts)
    if pretrained is None:
        pretrained = load_pretrained(opts.model, opts.weights, cache=opts.data.cache,
                                     seed=opts.train.seed)
    pretrained.config = dataclasses.replace(pretrained.config, causal=opts.causal_mask)
    # The backbone takes the state dict's tensors (no second copy, no random init to discard).
    backbone = load_backbone(pretrained.config, pretrained.state_dict)
    pretrained.state_dict = {}  # the backbone owns the tensors now
    # Seeded right before the head, as the chapter does (torch.manual_seed(123), then the new
    # out_head): the head's initial weights depend on the seed alone, not on how many random
    # numbers building this backbone happened to draw.
    torch.manual_seed(opts.train.seed)
    model = ClassifierModel(backbone, num_classes, opts.pooling, head_bias=opts.head_bias)
    trained = model.set_policy(policy, n_blocks, final_norm=opts.train_final_norm,
                               embeddings=opts.train_embeddings, lora=lora)
    return model, pretrained.tokenizer, pretrained, policy, trained


def trainable_policy(opts: RunOptions) -> tuple[str, int | None, dict[str, Any] | None]:
    """(policy, block count or None for the policy's own, LoRA options or None), validated."""
    from gptcls.classifier.config import policy_name
    from gptcls.models.lora import lora_spec

    policy = opts.trainable or policy_name(opts.trainable_blocks)
    if policy not in TRAINABLE_POLICIES:
        raise GptclsError(f"unknown trainable policy {policy!r}; choose one of: "
                          f"{', '.join(TRAINABLE_POLICIES)}")
    lora_options = ("lora_rank", "lora_alpha", "lora_targets", "lora_blocks")
    if policy != "lora":
        stray = [OPTIONS[n].flag for n in lora_options if value(opts, n) is not None]
        if stray:
            raise GptclsError(f"{', '.join(stray)}: only with --trainable lora (got {policy})")
        return policy, (opts.trainable_blocks if policy == "last-N-blocks" else None), None
    return policy, opts.lora_blocks, lora_spec(opts.lora_rank, opts.lora_alpha,
                                               opts.lora_targets)
