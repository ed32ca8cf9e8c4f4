"""The run directory: a trained classifier on disk (config.json, model.safetensors and the
tokenizer's files), read back with no pickle.

A full run's model.safetensors holds every weight. A delta run's (config `save: "delta"`, the
default for runs trained from weights that can be found again) holds only what training changed,
and loading rebuilds the rest from the base backbone recorded in the config (base_ref.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from gptcls.classifier.base_ref import load_base
from gptcls.classifier.config import FORMAT_VERSION, ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.errors import GptclsError
from gptcls.files import atomic_write_text, save_safetensors
from gptcls.models import build_backbone
from gptcls.models.tokenizers import load_tokenizer
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.weights.pretrained import assign_weights, params_on_meta
from gptcls.options import SAVE_MODES

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BASE_KEYS = ("model", "weights", "path", "sha256")  # what a delta run's config.backbone needs


def weights_state_dict(model: ClassifierModel) -> dict[str, torch.Tensor]:
    """The state dict without the tied LM head copy (safetensors refuses shared tensors)."""
    sd = model.state_dict()
    if model.backbone.config.tie_embeddings:
        sd.pop("backbone.out_head.weight", None)
    return {k: v.contiguous() for k, v in sd.items()}


def load_weights(model: ClassifierModel, sd: dict[str, torch.Tensor]) -> None:
    """`sd` into `model` by assignment (the model takes the tensors: no second copy), so the
    backbone may have been built with its parameters on the meta device."""
    if model.backbone.config.tie_embeddings and "backbone.tok_emb.weight" in sd:
        sd = {**sd, "backbone.out_head.weight": sd["backbone.tok_emb.weight"]}
    missing, unexpected = assign_weights(model, sd)
    if missing or unexpected:
        raise GptclsError(f"weights do not match the model: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")


def changed_keys(config: ClassifierConfig, model: ClassifierModel) -> set[str]:
    """The state-dict keys training changed, which a delta run stores: the head, the final norm
    and the embeddings when they train, the trainable blocks, LoRA's adapters (unmerged) or the
    weights they were merged into, and anything else that requires grad."""
    n_layers, lora = config.model.n_layers, config.lora if config.trainable == "lora" else None
    prefixes = ["head."]
    if config.train_final_norm:
        prefixes.append("backbone.final_norm.")
    if config.train_embeddings:
        prefixes += [f"backbone.{name}." for name, m in model.backbone.named_children()
                     if isinstance(m, nn.Embedding)]
    if lora is None:
        prefixes += [f"backbone.blocks.{i}."
                     for i in range(n_layers - config.trainable_blocks, n_layers)]
    keys = {k for k in model.state_dict() if k.startswith(tuple(prefixes)) or ".lora_" in k}
    if lora is not None and lora.get("merged"):
        keys |= {f"backbone.blocks.{i}.{target}.weight" for target in lora["targets"]
                 for i in range(n_layers - lora["blocks"], n_layers)}
    return keys | {k for k, p in model.named_parameters() if p.requires_grad}


def save_run(directory: Path, config: ClassifierConfig, model: ClassifierModel,
             tokenizer: Tokenizer) -> None:
    """Write the run directory: every weight (config.save "full"), or only the changed ones
    ("delta", when config.backbone identifies a base to rebuild the rest from)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.tokenizer = tokenizer.save(directory)
    config.format_version = FORMAT_VERSION
    if config.save != "full" and not all(config.backbone.get(k) for k in BASE_KEYS):
        config.save = "full"  # no base that can be found again: keep everything
    sd = weights_state_dict(model)
    if config.save == "delta":
        keep = changed_keys(config, model)
        sd = {k: v for k, v in sd.items() if k in keep}
    save_safetensors(directory / WEIGHTS_FILE, sd,
                     metadata={"format": "pt", "gptcls_format_version": str(FORMAT_VERSION),
                               "gptcls_save": config.save})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def parse_run_config(path: Path, owner: Path) -> ClassifierConfig:
    """A run config file read back (JSON, format version, fields); `owner` is what the version
    message names (the run directory, or the file itself)."""
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclsError(f"{path} is not valid JSON: {exc}") from None
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise GptclsError(f"{owner} has run format {version!r}; this gptcls reads up to "
                          f"{FORMAT_VERSION}: upgrade gptcls")
    try:
        return ClassifierConfig.from_dict(raw)
    except (KeyError, TypeError) as exc:
        raise GptclsError(f"{path} is malformed: {exc}") from None


def read_run_config(directory: Path) -> ClassifierConfig:
    directory = Path(directory)
    if not directory.is_dir():
        raise GptclsError(f"run directory not found: {directory}")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise GptclsError(f"incomplete run directory {directory}: {name} is missing")
    config = parse_run_config(directory / CONFIG_FILE, directory)
    missing = [k for k in BASE_KEYS if not config.backbone.get(k)]
    if config.save not in SAVE_MODES or (config.save == "delta" and missing):
        raise GptclsError(f"{directory / CONFIG_FILE} is malformed: save {config.save!r}"
                          + (f" without backbone {', '.join(missing)}" if missing else ""))
    return config


def load_run(directory: Path, merge_lora: bool = True
             ) -> tuple[ClassifierConfig, ClassifierModel, Tokenizer]:
    """Rebuild a saved classifier, with no pickle; a delta run's base is found as training found
    it (which may download it) and checked by sha256. A run saved with unmerged LoRA adapters
    gets them back before its weights load; `merge_lora` then folds them in (the config
    returned says so), which inference and export want."""
    from safetensors.torch import load_file

    config = read_run_config(directory)
    with params_on_meta():  # the saved weights replace them: no random init, no second copy
        backbone = build_backbone(config.model)
    model = ClassifierModel(backbone, len(config.labels), config.pooling)
    c = config
    if c.trainable == "lora" and c.lora and not c.lora.get("merged"):
        lora = {k: c.lora[k] for k in ("rank", "alpha", "targets")}
        model.set_policy("lora", c.lora.get("blocks"), final_norm=c.train_final_norm,
                         embeddings=c.train_embeddings, lora=lora)
    else:
        model.set_trainable(c.trainable_blocks, c.train_final_norm, c.train_embeddings)
    sd = load_file(str(Path(directory) / WEIGHTS_FILE))
    if config.save == "delta":  # the base's tensors, then the saved ones over them
        base = load_base(config.backbone, Path(directory))
        sd = {**{f"backbone.{k}": v for k, v in base.items()}, **sd}
    load_weights(model, sd)
    if merge_lora and model.lora and not model.lora["merged"]:
        model.merge_lora()
        config.lora = model.lora
    tokenizer = load_tokenizer(config.tokenizer, Path(directory))
    return config, model.eval(), tokenizer


def merge_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Merge an unmerged LoRA run directory, in place or into `out` (a copy of the run)."""
    src = Path(run_dir)
    config = read_run_config(src)
    if not config.lora or config.lora.get("merged"):
        state = "is already merged" if config.lora else "has no LoRA adapters"
        raise GptclsError(f"{src} {state}: nothing to merge")
    config, model, tokenizer = load_run(src, merge_lora=True)
    dest = src if out is None else Path(out)
    if dest.resolve() != src.resolve():
        shutil.copytree(src, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(WEIGHTS_FILE, CONFIG_FILE))
        save_run(dest, config, model, tokenizer)
        return dest
    with tempfile.TemporaryDirectory(dir=src) as tmp:  # write fully, then swap the files in
        save_run(Path(tmp), config, model, tokenizer)
        for path in sorted(Path(tmp).iterdir(), key=lambda p: p.name == CONFIG_FILE):
            path.replace(src / path.name)
    return dest
