"""What a trained classifier is made of, as stored in its run directory's config.json, and how
its trainable policy resolves to a number of trainable blocks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gptcls.data.columns import TEXT_SEPARATOR
from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.options import TRAINABLE_POLICIES

FORMAT_VERSION = 2  # 2: delta run directories (save), base identity in backbone
# The poolings (see gptcls.options.POOLINGS) that read one position of the top block's output.
SINGLE_POSITION_POOLINGS = ("last", "last-position", "first")


@dataclass
class ClassifierConfig:
    """Everything needed to rebuild a trained classifier, stored as config.json."""

    model: ModelConfig
    labels: list[str]
    max_length: int
    tokenizer: dict[str, Any]
    pooling: str = "last"
    head_bias: bool = True  # False: the head's bias is held at zero (stock HF `score` layers)
    trainable_blocks: int = 1
    train_final_norm: bool = True
    backbone: dict[str, Any] = field(default_factory=dict)  # preset name and weight source
    # "full": model.safetensors holds every weight; "delta": only what training changed, over
    # the base that backbone identifies by path and sha256 (classifier/base_ref.py).
    save: str = "full"
    threshold: float | None = None  # binary tasks: P(labels[1]) >= threshold -> labels[1]
    # Probabilities are softmax(logits / temperature), fitted on validation after training
    # (evaluation/calibration.py); runs written before calibration load with 1.0 (none).
    temperature: float = 1.0
    truncate: str = "head"  # keep the first max_length tokens (head) or the last (tail)
    # "chunk": trained on (and by default predicts from) half-overlapping windows of long texts
    # (classifier/windows.py); runs written before it load with "truncate".
    long_text: str = "truncate"
    # The trainable policy (None: named from trainable_blocks, its resolved block count).
    trainable: str | None = None
    train_embeddings: bool = False
    # lora policy: rank, alpha, targets (qualified names), blocks, merged (adapters folded in)
    lora: dict[str, Any] | None = None
    # --text-column as given at training (None: detected); a list of columns is joined with
    # text_separator into the one text, by predict too (gptcls.data.columns).
    text_column: str | None = None
    text_separator: str = TEXT_SEPARATOR
    # --label-names as given at training: the labels above are the names; evaluate renames a
    # file's codes with it (gptcls.data.label_names). None: labels as written.
    label_names: str | None = None
    # Multi-label runs: a sigmoid per label, labels[k] predicted when its probability >=
    # thresholds[k] (chosen on validation); label_separator joins label sets in files.
    multi_label: bool = False
    thresholds: list[float] | None = None
    label_separator: str = "|"
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
