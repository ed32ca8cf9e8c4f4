"""The book's own state dicts ("Build a Large Language Model (From Scratch)", chapters 5 and 6:
`torch.save(model.state_dict())` of its GPTModel), converted to our parameter names."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.weights.hf import gpt2_config, tensor_taker


def load_state_dict_file(path: Path) -> dict[str, Tensor]:
    try:  # weights_only: a .pth from the internet must not run pickled code
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for other files
        first = (str(exc).strip().splitlines() or [""])[0]
        raise GptclsError(f"{path} is not a PyTorch state dict: {first}") from None
    if not isinstance(sd, dict):
        raise GptclsError(f"{path} does not hold a state dict")
    return sd


def convert_book_state_dict(sd: dict[str, Tensor], n_heads: int | None = None
                            ) -> tuple[ModelConfig, dict[str, Tensor], dict[str, Tensor]]:
    """The book's GPTModel state dict -> (config, our backbone state dict, head state dict).

    A chapter-6 classifier's out_head (num_classes, emb_dim) [+ bias] becomes the head; a
    chapter-5 language model's out_head (vocab, emb_dim) stays the LM head and the head is {}.
    """
    take = tensor_taker(sd, "book GPTModel")
    vocab, emb = take("tok_emb.weight").shape
    n_layers = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"trf_blocks\.(\d+)\.", k))),
                       default=-1)
    qkv_bias = "trf_blocks.0.att.W_query.bias" in sd
    out_w = take("out_head.weight")
    is_lm = out_w.shape[0] == vocab and "out_head.bias" not in sd
    tie = not is_lm or torch.equal(out_w, take("tok_emb.weight"))
    config = gpt2_config(vocab, take("pos_emb.weight").shape[0], emb, n_layers,
                          take("trf_blocks.0.ff.layers.0.weight").shape[0], n_heads, tie, qkv_bias)
    out = {"tok_emb.weight": take("tok_emb.weight"), "pos_emb.weight": take("pos_emb.weight"),
           "final_norm.weight": take("final_norm.scale"),
           "final_norm.bias": take("final_norm.shift")}
    names = {"att.W_query": "attn.q", "att.W_key": "attn.k", "att.W_value": "attn.v",
             "att.out_proj": "attn.proj", "ff.layers.0": "mlp.fc", "ff.layers.2": "mlp.proj"}
    for i in range(n_layers):
        t, b = f"trf_blocks.{i}.", f"blocks.{i}."
        for theirs, ours in names.items():
            out[f"{b}{ours}.weight"] = take(f"{t}{theirs}.weight")
            if ours not in ("attn.q", "attn.k", "attn.v") or qkv_bias:
                out[f"{b}{ours}.bias"] = take(f"{t}{theirs}.bias")
        for n in ("norm1", "norm2"):  # the book's LayerNorm calls weight/bias scale/shift
            out[f"{b}{n}.weight"] = take(f"{t}{n}.scale")
            out[f"{b}{n}.bias"] = take(f"{t}{n}.shift")
    out["out_head.weight"] = out_w if is_lm and not tie else out["tok_emb.weight"]
    head = {} if is_lm else {"weight": out_w}
    if "out_head.bias" in sd:
        head["bias"] = take("out_head.bias")
    return config, out, head
