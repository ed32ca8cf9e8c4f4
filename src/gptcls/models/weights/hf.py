"""Hugging Face weights: model directories (config.json + safetensors, sharded or not), bare
GPT-2 .safetensors files, and downloads from the hub; converted to our parameter names."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
from gptcls.models.tokenizers.hf import tokenizer_from_json

# GPT-2's published sizes: files without a config only tell us the width, not the heads.
GPT2_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 20, 1600: 25}
# tokenizer_config.json is read from beside tokenizer.json (same snapshot folder of the cache).
HUB_LLAMA_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def hub_download(repo_id: str, filename: str) -> Path:
    """One file of a hub repo via huggingface_hub (its cache, resume and HF_HUB_OFFLINE apply)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # network, offline mode, missing repo: the hub raises many types
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise GptclsError(f"could not get {filename} of {repo_id} from the Hugging Face hub "
                          f"({type(exc).__name__}: {first}); download it yourself and pass "
                          "its local path as the model or weights") from None


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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sd: dict[str, Tensor] = {}
    for p in paths:
        try:
            sd.update(load_file(str(p)))
        except (SafetensorError, OSError) as exc:
            raise GptclsError(f"cannot read {p} as safetensors: {exc}") from None
    return sd


def load_hf_files(config_path: Path, weight_paths: list[Path], tokenizer_path: Path | None
                  ) -> tuple[ModelConfig, dict[str, Tensor], Tokenizer | None]:
    """Config, our state dict (not yet checked against the config) and tokenizer, if any."""
    config = config_from_hf(json.loads(Path(config_path).read_text()))
    raw = load_safetensors(weight_paths)
    sd = convert_hf_gpt2(raw, config) if config.family == "gpt2" else convert_hf_llama(raw, config)
    if tokenizer_path is not None:
        tok: Tokenizer | None = tokenizer_from_json(tokenizer_path)
    else:
        tok = gpt2_tokenizer() if config.family == "gpt2" else None
    return config, sd, tok


def config_from_hf(d: dict[str, Any]) -> ModelConfig:
    """Our ModelConfig from a Hugging Face config.json (model_type gpt2 or llama)."""
    kind = d.get("model_type")
    if kind == "gpt2":
        _require(d, {"activation_function": ("gelu_new", "gelu_pytorch_tanh"),
                     "scale_attn_by_inverse_layer_idx": (False, None)})
        emb, heads = d["n_embd"], d["n_head"]
        return ModelConfig(
            family="gpt2", vocab_size=d["vocab_size"],
            context_length=d.get("n_positions") or d["n_ctx"], emb_dim=emb,
            n_layers=d["n_layer"], n_heads=heads, n_kv_heads=heads,
            hidden_dim=d.get("n_inner") or 4 * emb, qkv_bias=True,
            norm_eps=d.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=d.get("tie_word_embeddings", True), rope_theta=0.0)
    if kind == "llama":
        _require(d, {"hidden_act": ("silu", None), "attention_bias": (False, None),
                     "mlp_bias": (False, None)})
        rope = d.get("rope_parameters") or d.get("rope_scaling") or {}  # transformers 5 / 4
        if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
            raise GptclsError(f"RoPE scaling {rope} is not supported")
        emb, heads = d["hidden_size"], d["num_attention_heads"]
        if d.get("head_dim") not in (None, emb // heads):
            raise GptclsError("Llama configs with head_dim != hidden_size / heads are unsupported")
        return ModelConfig(
            family="llama", vocab_size=d["vocab_size"],
            context_length=d["max_position_embeddings"], emb_dim=emb,
            n_layers=d["num_hidden_layers"], n_heads=heads,
            n_kv_heads=d.get("num_key_value_heads") or heads,
            hidden_dim=d["intermediate_size"], qkv_bias=False, norm_eps=d["rms_norm_eps"],
            tie_embeddings=d.get("tie_word_embeddings", False),
            rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))))
    raise GptclsError(f"model_type {kind!r} is not supported (gpt2 or llama)")


def _require(d: dict[str, Any], allowed: dict[str, tuple[Any, ...]]) -> None:
    for key, ok in allowed.items():
        if d.get(key) not in ok:
            raise GptclsError(f"config.json {key}={d.get(key)!r} is not supported")


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


def convert_hf_llama(sd: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """HF Llama -> ours: a renaming (nn.Linear layout and rotate-half RoPE are the same)."""
    take = tensor_taker({k.removeprefix("model."): v for k, v in sd.items()}, "Llama")
    out = {"tok_emb.weight": take("embed_tokens.weight"), "final_norm.weight": take("norm.weight")}
    for i in range(config.n_layers):
        for theirs, ours in LLAMA_BLOCK_NAMES.items():
            out[f"blocks.{i}.{ours}.weight"] = take(f"layers.{i}.{theirs}.weight")
    # lm_head sits outside "model." in LlamaForCausalLM; absent when tied to the embedding.
    out["out_head.weight"] = (out["tok_emb.weight"] if config.tie_embeddings
                              else take("lm_head.weight"))
    return out
