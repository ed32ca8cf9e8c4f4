"""The classifier: a backbone, a pooling rule and a linear head; and its run directory.

The model is split at the first trainable block (the lowest one with any trainable parameter,
LoRA adapters included). Everything below (the "trunk") is frozen, so its output for a text
never changes during training and can be computed once (train.py caches it); only the "top"
(trainable blocks, final norm, head) runs every step.

Trainable policies: last-layer (head and final norm only), last-block, last-N-blocks, all (every
block), lora (frozen weights plus low-rank adapters); embeddings train only when asked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gptcls.errors import GptclsError
from gptcls.models import Backbone, ModelConfig, build_backbone
from gptcls.models.lora import apply_lora, has_lora, lora_spec
from gptcls.models.lora import merge_lora as merge_adapters
from gptcls.models.tokenizers import Tokenizer, load_tokenizer

FORMAT_VERSION = 1
# last: the last real token (default; independent of padding). last-position: the last position
# of a sequence padded to max_length, as the book does (it reads a pad token for short texts).
SINGLE_POSITION_POOLINGS = ("last", "last-position", "first")
# mean: the average of every real token's output; last+mean: both, side by side (2C features,
# the bonus table's "last + pooled embeddings").
POOLINGS = (*SINGLE_POSITION_POOLINGS, "mean", "last+mean")
TRUNCATIONS = ("head", "tail")
TRAINABLE_POLICIES = ("last-layer", "last-block", "last-N-blocks", "all", "lora")


@dataclass
class ClassifierConfig:
    """Everything needed to rebuild a trained classifier, stored as config.json."""

    model: ModelConfig
    labels: list[str]
    max_length: int
    tokenizer: dict[str, Any]
    pooling: str = "last"
    trainable_blocks: int = 1
    train_final_norm: bool = True
    backbone: dict[str, Any] = field(default_factory=dict)  # preset name and weight source
    threshold: float | None = None  # binary tasks: P(labels[1]) >= threshold -> labels[1]
    truncate: str = "head"  # keep the first max_length tokens (head) or the last (tail)
    # The trainable policy (None: named from trainable_blocks, its resolved block count).
    trainable: str | None = None
    train_embeddings: bool = False
    # lora policy: rank, alpha, targets (qualified names), blocks, merged (adapters folded in)
    lora: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.trainable is None:  # also runs written before trainable policies
            self.trainable = policy_name(self.trainable_blocks)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        d = dict(d)
        d["model"] = ModelConfig.from_dict(d["model"])
        return cls(**d)


def policy_name(n_blocks: int) -> str:
    """The policy that trains the last n_blocks blocks."""
    return {0: "last-layer", 1: "last-block"}.get(n_blocks, "last-N-blocks")


def policy_blocks(policy: str, n_blocks: int | None, n_layers: int) -> int:
    """How many top blocks a policy trains (or adapts, for lora)."""
    if policy not in TRAINABLE_POLICIES:
        raise GptclsError(f"unknown trainable policy {policy!r}; choose one of: "
                          f"{', '.join(TRAINABLE_POLICIES)}")
    fixed = {"last-layer": 0, "last-block": 1, "all": n_layers}
    if policy in fixed:
        if n_blocks is not None and n_blocks != fixed[policy]:
            raise GptclsError(f"--trainable {policy} trains {fixed[policy]} blocks; "
                              f"--trainable-blocks goes with last-N-blocks or lora")
        return fixed[policy]
    if n_blocks is None and policy == "last-N-blocks":
        raise GptclsError("--trainable last-N-blocks needs --trainable-blocks N")
    return n_layers if n_blocks is None else n_blocks


class ClassifierModel(nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int, pooling: str = "last"):
        super().__init__()
        if pooling not in POOLINGS:
            raise GptclsError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        self.backbone = backbone
        width = backbone.config.emb_dim * (2 if pooling == "last+mean" else 1)
        self.head = nn.Linear(width, num_classes)
        self.pooling = pooling
        self.first_trainable = backbone.config.n_layers  # set by set_trainable / set_policy
        self.lora: dict[str, Any] | None = None  # the LoRA options in use, set by set_policy

    def set_trainable(self, n_blocks: int, final_norm: bool = True,
                      embeddings: bool = False) -> None:
        """Freeze the backbone but its last `n_blocks` blocks (and final norm); the head trains."""
        n_layers = self.backbone.config.n_layers
        if not 0 <= n_blocks <= n_layers:
            raise GptclsError(f"trainable blocks must be between 0 and {n_layers}, got {n_blocks}")
        self.backbone.requires_grad_(False)
        for block in self.backbone.blocks[n_layers - n_blocks:]:
            block.requires_grad_(True)
        self._set_ends(final_norm, embeddings)

    def set_policy(self, policy: str, n_blocks: int | None = None, *, final_norm: bool = True,
                   embeddings: bool = False, lora: dict[str, Any] | None = None) -> int:
        """Apply a trainable policy; returns its block count. `lora` (rank, alpha, targets) is
        for the lora policy only: it replaces the target projections of the last `n_blocks`
        blocks (default: all) by adapters, the only backbone weights that then train."""
        n_layers = self.backbone.config.n_layers
        n = policy_blocks(policy, n_blocks, n_layers)
        if policy != "lora":
            if lora is not None:
                raise GptclsError("LoRA options (--lora-rank, --lora-alpha, --lora-targets) "
                                  "need --trainable lora")
            self.set_trainable(n, final_norm, embeddings)
            return n
        if has_lora(self):
            raise GptclsError("this model already has LoRA adapters")
        spec = lora_spec(**(lora or {}))
        self.backbone.requires_grad_(False)
        targets = apply_lora(self.backbone, spec["rank"], spec["alpha"], spec["targets"], n)
        self.lora = {**spec, "targets": targets, "blocks": n, "merged": False}
        self._set_ends(final_norm, embeddings)
        return n

    def merge_lora(self) -> None:
        """Fold the LoRA adapters into the base weights (same logits, a plain model)."""
        merge_adapters(self.backbone)
        if self.lora is not None:
            self.lora = {**self.lora, "merged": True}

    def _set_ends(self, final_norm: bool, embeddings: bool) -> None:
        """Final norm, embeddings and head; then the trunk/top split."""
        self.backbone.final_norm.requires_grad_(final_norm)
        for emb in self.embeddings():
            emb.requires_grad_(embeddings)
        self.head.requires_grad_(True)
        blocks = self.backbone.blocks
        self.first_trainable = next(
            (i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())),
            len(blocks))

    def embeddings(self) -> list[nn.Module]:
        """Token (and, for GPT-2, position) embeddings."""
        return [m for m in self.backbone.children() if isinstance(m, nn.Embedding)]

    def trunk(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (B, T, C) activations entering the first trainable block."""
        return self.backbone.run_blocks(self.backbone.embed(idx), 0, self.first_trainable,
                                        lengths=lengths)

    def top(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, C) trunk activations and (B,) real lengths -> (B, num_classes) logits."""
        bb, start = self.backbone, self.first_trainable
        if self.pooling in SINGLE_POSITION_POOLINGS:
            pos = lengths - 1 if self.pooling != "first" else torch.zeros_like(lengths)
            if start < bb.config.n_layers:
                # The last block queries only the pooled position: keys/values still see all.
                x = bb.run_blocks(x, start, None, query_pos=pos, lengths=lengths)[:, 0]  # (B, C)
            else:
                x = x[torch.arange(x.shape[0], device=x.device), pos]  # (B, C)
            return self.head(bb.final_norm(x))
        x = bb.final_norm(bb.run_blocks(x, start, lengths=lengths))  # (B, T, C)
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x.dtype)
        pooled = (x * mask[..., None]).sum(1) / lengths[:, None].to(x.dtype)  # (B, C)
        if self.pooling == "last+mean":
            last = x[torch.arange(x.shape[0], device=x.device), lengths - 1]  # (B, C)
            pooled = torch.cat([last, pooled], dim=-1)  # (B, 2C)
        return self.head(pooled)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor, cached: bool = False
                ) -> torch.Tensor:
        """(B, T) ids -> logits; with `cached`, (B, T, C) trunk activations -> logits (the
        form DistributedDataParallel calls when the trunk is cached)."""
        if cached:
            return self.top(idx, lengths)
        return self.top(self.trunk(idx, lengths), lengths)

    def trunk_is_cacheable(self) -> bool:
        """True when the trunk is frozen and deterministic, so its output can be computed once."""
        return self.trunk_uncacheable_reason() is None

    def trunk_uncacheable_reason(self) -> str | None:
        """Why the trunk's output cannot be computed once, or None when it can."""
        if any(p.requires_grad for m in self.embeddings() for p in m.parameters()):
            return "the embeddings train (--train-embeddings)"
        if any(p.requires_grad for b in self.backbone.blocks[: self.first_trainable]
               for p in b.parameters()):
            return "blocks below the trainable top train"
        if self.backbone.config.drop_rate != 0.0:
            return "dropout makes the frozen layers' output random"
        return None


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_length: int,
                 pooling: str = "last", truncate: str = "head") -> list[list[int]]:
    """Token ids of texts, fitted to max_length by `fit_ids`."""
    return fit_ids(tokenizer.encode_batch(list(texts)), max_length, tokenizer.pad_id, pooling,
                   truncate)


def fit_ids(seqs: Sequence[list[int]], max_length: int, pad_id: int, pooling: str = "last",
            truncate: str = "head") -> list[list[int]]:
    """Truncate token ids to max_length, keeping the start (head, as the book does) or the end.

    For `last-position` pooling every text is padded to max_length with the pad token, which
    reproduces the book's fixed-length batches: its pooled position is the last one.
    """
    if truncate not in TRUNCATIONS:
        raise GptclsError(f"unknown truncation {truncate!r}; use head or tail")
    ids = [seq[:max_length] if truncate == "head" else seq[-max_length:] for seq in seqs]
    for i, seq in enumerate(ids):
        if not seq:
            raise GptclsError(f"text {i + 1} is empty after tokenization; nothing to classify")
    if pooling == "last-position":
        ids = [seq + [pad_id] * (max_length - len(seq)) for seq in ids]
    return ids


def pad_batch(seqs: Sequence[torch.Tensor], pad_value: float | int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (T_i, ...) tensors to (B, T_max, ...); also return (B,) lengths."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = seqs[0].new_full((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), pad_value)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def weights_state_dict(model: ClassifierModel) -> dict[str, torch.Tensor]:
    """The state dict without the tied LM head copy (safetensors refuses shared tensors)."""
    sd = model.state_dict()
    if model.backbone.config.tie_embeddings:
        sd.pop("backbone.out_head.weight", None)
    return {k: v.contiguous() for k, v in sd.items()}


def load_weights(model: ClassifierModel, sd: dict[str, torch.Tensor]) -> None:
    if model.backbone.config.tie_embeddings:
        sd = {**sd, "backbone.out_head.weight": sd["backbone.tok_emb.weight"]}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise GptclsError(f"weights do not match the model: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    model.backbone.tie_weights()


def save_run(directory: Path, config: ClassifierConfig, model: ClassifierModel,
             tokenizer: Tokenizer) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.tokenizer = tokenizer.save(directory)
    save_file(weights_state_dict(model), str(directory / "model.safetensors"),
              metadata={"format": "pt", "gptcls_format_version": str(FORMAT_VERSION)})
    (directory / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def read_run_config(directory: Path) -> ClassifierConfig:
    directory = Path(directory)
    if not directory.is_dir():
        raise GptclsError(f"run directory not found: {directory}")
    for name in ("config.json", "model.safetensors"):
        if not (directory / name).is_file():
            raise GptclsError(f"incomplete run directory {directory}: {name} is missing")
    try:
        raw = json.loads((directory / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclsError(f"{directory / 'config.json'} is not valid JSON: {exc}") from None
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise GptclsError(f"{directory} has run format {version!r}; this gptcls reads up to "
                          f"{FORMAT_VERSION}: upgrade gptcls")
    try:
        return ClassifierConfig.from_dict(raw)
    except (KeyError, TypeError) as exc:
        raise GptclsError(f"{directory / 'config.json'} is malformed: {exc}") from None


def load_run(directory: Path, merge_lora: bool = True
             ) -> tuple[ClassifierConfig, ClassifierModel, Tokenizer]:
    """Rebuild a saved classifier: no pickle, no network. A run saved with unmerged LoRA
    adapters gets them back before its weights load; `merge_lora` then folds them in (the
    config returned says so), which inference and export want."""
    config = read_run_config(directory)
    model = ClassifierModel(build_backbone(config.model), len(config.labels), config.pooling)
    c = config
    if c.trainable == "lora" and c.lora and not c.lora.get("merged"):
        lora = {k: c.lora[k] for k in ("rank", "alpha", "targets")}
        model.set_policy("lora", c.lora.get("blocks"), final_norm=c.train_final_norm,
                         embeddings=c.train_embeddings, lora=lora)
    else:
        model.set_trainable(c.trainable_blocks, c.train_final_norm, c.train_embeddings)
    load_weights(model, load_file(str(Path(directory) / "model.safetensors")))
    if merge_lora and model.lora and not model.lora["merged"]:
        model.merge_lora()
        config.lora = model.lora
    tokenizer = load_tokenizer(config.tokenizer, Path(directory))
    return config, model.eval(), tokenizer
