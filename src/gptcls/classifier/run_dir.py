"""The run directory: a trained classifier on disk (config.json, model.safetensors and the
tokenizer's files), read back with no pickle and no network."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch

from gptcls.classifier.config import FORMAT_VERSION, ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.errors import GptclsError
from gptcls.files import atomic_write_text, save_safetensors
from gptcls.models import build_backbone
from gptcls.models.tokenizers import load_tokenizer
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.models.weights.pretrained import assign_weights, params_on_meta

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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


def save_run(directory: Path, config: ClassifierConfig, model: ClassifierModel,
             tokenizer: Tokenizer) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.tokenizer = tokenizer.save(directory)
    save_safetensors(directory / WEIGHTS_FILE, weights_state_dict(model),
                     metadata={"format": "pt", "gptcls_format_version": str(FORMAT_VERSION)})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")


def read_run_config(directory: Path) -> ClassifierConfig:
    directory = Path(directory)
    if not directory.is_dir():
        raise GptclsError(f"run directory not found: {directory}")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise GptclsError(f"incomplete run directory {directory}: {name} is missing")
    try:
        raw = json.loads((directory / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclsError(f"{directory / CONFIG_FILE} is not valid JSON: {exc}") from None
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise GptclsError(f"{directory} has run format {version!r}; this gptcls reads up to "
                          f"{FORMAT_VERSION}: upgrade gptcls")
    try:
        return ClassifierConfig.from_dict(raw)
    except (KeyError, TypeError) as exc:
        raise GptclsError(f"{directory / CONFIG_FILE} is malformed: {exc}") from None


def load_run(directory: Path, merge_lora: bool = True
             ) -> tuple[ClassifierConfig, ClassifierModel, Tokenizer]:
    """Rebuild a saved classifier: no pickle, no network. A run saved with unmerged LoRA
    adapters gets them back before its weights load; `merge_lora` then folds them in (the
    config returned says so), which inference and export want."""
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
    load_weights(model, load_file(str(Path(directory) / WEIGHTS_FILE)))
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
