"""Text generation from a backbone: greedy by default, temperature and top-k sampling optional."""

from __future__ import annotations

import torch

from gptcls.models.base import Backbone


@torch.inference_mode()
def generate(model: Backbone, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, eos_id: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Extend (B, T) token ids by up to `max_new_tokens`; stops early when every row hits eos.

    No KV cache: each step re-runs the (cropped) context, which keeps the code obvious and is
    fast enough for the short continuations this tool needs.
    """
    ctx = model.config.context_length
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        logits = model(idx[:, -ctx:])[:, -1, :]  # (B, V)
        if top_k is not None and top_k > 0:
            kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if temperature > 0.0:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        else:
            nxt = logits.argmax(dim=-1, keepdim=True)
        if eos_id is not None:
            nxt = torch.where(done[:, None], torch.full_like(nxt, eos_id), nxt)
            done |= nxt[:, 0] == eos_id
        idx = torch.cat([idx, nxt], dim=1)
        if eos_id is not None and bool(done.all()):
            break
    return idx
