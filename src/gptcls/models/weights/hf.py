"""Hugging Face weights: model directories (config.json + safetensors, sharded or not) and bare
GPT-2 .safetensors files, converted to our parameter names (downloads: hub.py)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
from gptcls.models.tokenizers.hf import tokenizer_from_json
from gptcls.models.weights.hf_config import config_from_hf
from gptcls.progress import LOADING, progress

# GPT-2's published sizes: files without a config only tell us the width, not the heads.
GPT2_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 20, 1600: 25}


def safetensors_in(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index names the shard files
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / s for s in shards]
    single = directory / "model.safetensors"
    if not single.is_file():
        raise GptclsError(f"{directory} has config.json but no model.safetensors")
    return [single]


def load_safetensors(paths: list[Path]) -> dict[str, Tensor]:
    """Every tensor of these files (what safetensors' load_file does, one tensor at a time so
    that a big backbone's load shows progress)."""
    from safetensors import SafetensorError, safe_open

    sd: dict[str, Tensor] = {}
    try:
        total = 0
        for p in paths:
            with safe_open(str(p), framework="pt") as f:
                total += len(f.keys())
        with progress(total, LOADING, unit="tensors") as bar:
            for p in paths:
                with safe_open(str(p), framework="pt") as f:
                    for key in f.keys():
                        sd[key] = f.get_tensor(key)
                        bar.update()
    except (SafetensorError, OSError) as exc:
        raise GptclsError(f"cannot read {p} as safetensors: {exc}") from None
    return sd


def load_hf_files(config_path: Path, weight_paths: list[Path], tokenizer_path: Path | None
                  ) -> tuple[ModelConfig, dict[str, Tensor], Tokenizer | None]:
    """Config, our state dict (not yet checked against the config) and tokenizer, if any."""
    config = config_from_hf(json.loads(Path(config_path).read_text()))
    t0 = time.perf_counter()
    raw = load_safetensors(weight_paths)
    logging.getLogger(__name__).debug(f"{len(raw)} tensors read from {len(weight_paths)} "
                                      f"file(s) in {time.perf_counter() - t0:.1f} s")
    convert = convert_hf_gpt2 if config.family == "gpt2" else convert_hf_decoder
    sd = convert(raw, config)
    if tokenizer_path is not None:
        tok: Tokenizer | None = tokenizer_from_json(tokenizer_path)
    else:
        tok = gpt2_tokenizer() if config.family == "gpt2" else None
    return config, sd, tok


def gpt2_config_from_shapes(sd: dict[str, Tensor], n_heads: int | None = None) -> ModelConfig:
    """A GPT-2 config from a bare HF GPT-2 state dict (no config.json)."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    if "wte.weight" not in sd:
        raise GptclsError("this .safetensors file does not hold GPT-2 weights (no wte.weight); "
                          "put config.json beside it")
    vocab, emb = sd["wte.weight"].shape
    n_layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k)))
    return gpt2_config(vocab, sd["wpe.weight"].shape[0], emb, n_layers,
                        sd["h.0.mlp.c_fc.weight"].shape[1], n_heads,
                        tie="lm_head.weight" not in sd)


def gpt2_config(vocab: int, ctx: int, emb: int, n_layers: int, hidden: int,
                 n_heads: int | None, tie: bool = True, qkv_bias: bool = True) -> ModelConfig:
    heads = n_heads or GPT2_HEADS_BY_WIDTH.get(emb)
    if heads is None:
        raise GptclsError(f"cannot tell the number of attention heads of a width-{emb} GPT-2 "
                          "without a config.json")
    return ModelConfig(family="gpt2", vocab_size=vocab, context_length=ctx, emb_dim=emb,
                       n_layers=n_layers, n_heads=heads, n_kv_heads=heads, hidden_dim=hidden,
                       qkv_bias=qkv_bias, norm_eps=1e-5, tie_embeddings=tie, rope_theta=0.0)


def tensor_taker(sd: dict[str, Tensor], what: str) -> Callable[[str], Tensor]:
    def take(key: str) -> Tensor:
        if key not in sd:
            raise GptclsError(f"not {what} weights: tensor {key!r} is missing")
        return sd[key].float()
    return take


def convert_hf_gpt2(sd: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """HF GPT-2 -> ours. HF's Conv1D stores (in, out), so weights are transposed, and the fused
    c_attn is split into q, k, v. The attn.bias/masked_bias buffers are not weights: ignored."""
    take = tensor_taker({k.removeprefix("transformer."): v for k, v in sd.items()}, "GPT-2")
    out = {"tok_emb.weight": take("wte.weight"), "pos_emb.weight": take("wpe.weight"),
           "final_norm.weight": take("ln_f.weight"), "final_norm.bias": take("ln_f.bias")}
    for i in range(config.n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[f"{b}{ours}.weight"] = take(f"{h}{theirs}.weight")
            out[f"{b}{ours}.bias"] = take(f"{h}{theirs}.bias")
        for name in ("weight", "bias"):
            qkv = take(f"{h}attn.c_attn.{name}")
            qkv = qkv.t() if name == "weight" else qkv  # (in, 3C) -> (3C, in)
            for ours, part in zip(("q", "k", "v"), qkv.chunk(3, dim=0), strict=True):
                out[f"{b}attn.{ours}.{name}"] = part.contiguous()
        for ours, theirs in (("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"),
                             ("mlp.proj", "mlp.c_proj")):
            out[f"{b}{ours}.weight"] = take(f"{h}{theirs}.weight").t().contiguous()
            out[f"{b}{ours}.bias"] = take(f"{h}{theirs}.bias")
    out["out_head.weight"] = (out["tok_emb.weight"] if config.tie_embeddings
                              else take("lm_head.weight"))
    return out


LLAMA_BLOCK_NAMES = {"input_layernorm": "norm1", "post_attention_layernorm": "norm2",
                "self_attn.q_proj": "attn.q", "self_attn.k_proj": "attn.k",
                "self_attn.v_proj": "attn.v", "self_attn.o_proj": "attn.proj",
                "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up", "mlp.down_proj": "mlp.down"}


# Gemma 3 normalises each branch's output too, so its "post_attention_layernorm" is not the
# pre-MLP norm it is in Llama.
GEMMA3_NORM_NAMES = {"input_layernorm": "norm1", "post_attention_layernorm": "post_norm1",
                     "pre_feedforward_layernorm": "norm2",
                     "post_feedforward_layernorm": "post_norm2"}
# Prefixes before "layers." etc.: CausalLM ("model."), multimodal Gemma 3 (transformers 5 / 4).
DECODER_PREFIXES = ("model.language_model.", "language_model.model.", "model.")


def convert_hf_decoder(sd: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """HF Llama, Mistral, Qwen2/3 or Gemma 3 -> ours: a renaming (nn.Linear layout and
    rotate-half RoPE are the same), plus Gemma's norm weights w -> 1 + w (see layers.RMSNorm)."""
    take = tensor_taker({_strip(k): v for k, v in sd.items()}, config.family)
    names = dict(LLAMA_BLOCK_NAMES)
    if config.family == "gemma3":
        names.update(GEMMA3_NORM_NAMES)
    if config.qk_norm:
        names.update({"self_attn.q_norm": "attn.q_norm", "self_attn.k_norm": "attn.k_norm"})
    out = {"tok_emb.weight": take("embed_tokens.weight"), "final_norm.weight": take("norm.weight")}
    for i in range(config.n_layers):
        for theirs, ours in names.items():
            out[f"blocks.{i}.{ours}.weight"] = take(f"layers.{i}.{theirs}.weight")
        if config.qkv_bias:
            for p in "qkv":
                out[f"blocks.{i}.attn.{p}.bias"] = take(f"layers.{i}.self_attn.{p}_proj.bias")
    if config.family == "gemma3":
        for k in out:
            if "norm" in k:  # every RMSNorm weight: HF stores w and applies 1 + w
                out[k] = 1.0 + out[k]
    # lm_head sits outside "model." in *ForCausalLM; absent when tied to the embedding.
    out["out_head.weight"] = (out["tok_emb.weight"] if config.tie_embeddings
                              else take("lm_head.weight"))
    return out


def _strip(key: str) -> str:
    for prefix in DECODER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key.removeprefix("language_model.")  # transformers 4 multimodal lm_head
