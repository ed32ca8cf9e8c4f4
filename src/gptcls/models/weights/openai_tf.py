"""Load OpenAI's original GPT-2 TensorFlow checkpoints without TensorFlow.

OpenAI published GPT-2 as TF1 checkpoints (the files "Build a Large Language Model (From
Scratch)" downloads from openaipublic.blob.core.windows.net/gpt-2/models/<size>/): an
`hparams.json` and a tensor bundle (read by tf_bundle.py) whose variables are mapped here to our
GPT-2's state dict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.weights.tf_bundle import TensorBundle

# ---------------------------------------------------------------- OpenAI GPT-2


def _bundle_prefix(directory: Path) -> Path:
    """The bundle prefix named by TF's `checkpoint` state file, else OpenAI's "model.ckpt".
    A path recorded on another machine (absolute) falls back to its name in `directory`."""
    state = directory / "checkpoint"
    name = "model.ckpt"
    if state.is_file():
        match = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(), re.M)
        name = match.group(1) if match else name
    prefix = directory / name  # an absolute `name` replaces `directory`
    if not prefix.with_name(prefix.name + ".index").is_file():
        prefix = directory / Path(name).name
    return prefix


def _check_files(directory: Path) -> Path:
    """Fail early, in one line, naming every file the loader needs but cannot find."""
    if not directory.is_dir():
        raise GptclsError(f"OpenAI GPT-2 checkpoint directory not found: {directory}")
    prefix = _bundle_prefix(directory)
    missing = [n for n in ("hparams.json", prefix.name + ".index")
               if not (directory / n).is_file()]
    if not list(directory.glob(prefix.name + ".data-*")):
        missing.append(prefix.name + ".data-00000-of-00001")
    if missing:
        raise GptclsError(f"{directory} is not a complete OpenAI GPT-2 checkpoint: missing "
                          f"{', '.join(missing)}")
    return prefix


def _config_from_hparams(path: Path) -> ModelConfig:
    try:
        hp = json.loads(path.read_text())
        C = int(hp["n_embd"])
        return ModelConfig(family="gpt2", vocab_size=int(hp["n_vocab"]),
                           context_length=int(hp["n_ctx"]), emb_dim=C,
                           n_layers=int(hp["n_layer"]), n_heads=int(hp["n_head"]),
                           n_kv_heads=int(hp["n_head"]), hidden_dim=4 * C, qkv_bias=True,
                           norm_eps=1e-5, tie_embeddings=True, rope_theta=0.0)
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise GptclsError(f"{path} is not a valid GPT-2 hparams.json: {e!r}") from None


class _Variables:
    """Hands out bundle arrays by name, checking shapes and remembering what was used.
    From a TensorBundle, arrays are read on demand: converting GPT-2 XL (6 GB) block by block
    then never holds a second full copy of the weights."""

    def __init__(self, arrays: Mapping[str, np.ndarray] | TensorBundle, where: str | Path):
        if isinstance(arrays, TensorBundle):
            self.names, self.read = set(arrays.entries), arrays.read
        else:
            self.names, self.read = set(arrays), arrays.__getitem__
        self.where, self.used = where, set[str]()

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.names:
            raise GptclsError(f"{self.where} has no variable {name!r}; does hparams.json "
                              "match the checkpoint?")
        a = self.read(name)
        if a.shape != shape:
            raise GptclsError(f"{self.where}: {name!r} has shape {a.shape}, hparams.json "
                              f"implies {shape}")
        self.used.add(name)
        return a


def _block(v: _Variables, i: int, C: int, hidden: int) -> dict[str, np.ndarray]:
    """One transformer block. OpenAI's conv1d weights are (1, in, out): drop the 1 and
    transpose to nn.Linear's (out, in); c_attn packs q, k, v side by side along `out`."""
    h, b = f"model/h{i}", f"blocks.{i}"
    out = {f"{b}.norm1.weight": v.take(f"{h}/ln_1/g", (C,)),
           f"{b}.norm1.bias": v.take(f"{h}/ln_1/b", (C,)),
           f"{b}.norm2.weight": v.take(f"{h}/ln_2/g", (C,)),
           f"{b}.norm2.bias": v.take(f"{h}/ln_2/b", (C,))}
    qkv_w = v.take(f"{h}/attn/c_attn/w", (1, C, 3 * C))[0]
    qkv_b = v.take(f"{h}/attn/c_attn/b", (3 * C,))
    for j, name in enumerate("qkv"):
        out[f"{b}.attn.{name}.weight"] = qkv_w[:, j * C:(j + 1) * C].T
        out[f"{b}.attn.{name}.bias"] = qkv_b[j * C:(j + 1) * C]
    for ours, theirs, n_in, n_out in (("attn.proj", "attn/c_proj", C, C),
                                      ("mlp.fc", "mlp/c_fc", C, hidden),
                                      ("mlp.proj", "mlp/c_proj", hidden, C)):
        out[f"{b}.{ours}.weight"] = v.take(f"{h}/{theirs}/w", (1, n_in, n_out))[0].T
        out[f"{b}.{ours}.bias"] = v.take(f"{h}/{theirs}/b", (n_out,))
    return out


def gpt2_state_dict(arrays: Mapping[str, np.ndarray] | TensorBundle, config: ModelConfig,
                    where: str | Path = "checkpoint", dtype: torch.dtype = torch.float32,
                    ) -> dict[str, torch.Tensor]:
    """Map OpenAI's TF variable names/layouts to `gptcls.models.gpt2.GPT2`'s state dict.
    `where` only names the source in error messages."""
    v, C = _Variables(arrays, where), config.emb_dim

    def to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # Contiguous copies of the transposed views, made per block so the raw arrays of
        # only one block are alive at a time (see _Variables).
        return {k: torch.from_numpy(np.ascontiguousarray(a)).to(dtype) for k, a in arrays.items()}

    sd = to_torch({"tok_emb.weight": v.take("model/wte", (config.vocab_size, C)),
                   "pos_emb.weight": v.take("model/wpe", (config.context_length, C)),
                   "final_norm.weight": v.take("model/ln_f/g", (C,)),
                   "final_norm.bias": v.take("model/ln_f/b", (C,))})
    for i in range(config.n_layers):
        sd.update(to_torch(_block(v, i, C, config.hidden_dim)))
    # Leftover model variables mean hparams.json describes a smaller model than was saved.
    extra = sorted(n for n in v.names if n.startswith("model/") and n not in v.used)
    if extra:
        raise GptclsError(f"{where} has variables hparams.json does not account for: "
                          f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    sd["out_head.weight"] = sd["tok_emb.weight"]  # GPT-2 ties the LM head to wte
    return sd


def load_openai_gpt2(directory: str | Path, dtype: torch.dtype = torch.float32,
                     ) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and state dict of an OpenAI GPT-2 checkpoint directory (124M, 355M, ...).

    The state dict loads with `strict=True` into `gptcls.models.build_backbone(config)`.
    """
    directory = Path(directory)
    prefix = _check_files(directory)
    config = _config_from_hparams(directory / "hparams.json")
    return config, gpt2_state_dict(TensorBundle(prefix), config, directory, dtype)
