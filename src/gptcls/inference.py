"""The user-facing Python API: load a run directory, classify texts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gptcls.classifier import (
    ClassifierConfig,
    ClassifierModel,
    encode_texts,
    load_run,
    pad_batch,
    save_run,
)
from gptcls.errors import GptclsError
from gptcls.tokenizers import Tokenizer
from gptcls.train import autocast, device_for


class Classifier:
    """A trained classifier with exactly its training preprocessing.

    >>> clf = Classifier.load("runs/sms")
    >>> clf.predict(["You won a prize! Call now", "See you at lunch?"])
    ['spam', 'ham']
    """

    def __init__(self, config: ClassifierConfig, model: ClassifierModel, tokenizer: Tokenizer,
                 device: str = "auto"):
        self.config, self.tokenizer = config, tokenizer
        self.device = device_for(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto") -> Classifier:
        config, model, tokenizer = load_run(Path(run_dir))
        return cls(config, model, tokenizer, device)

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def save(self, run_dir: str | Path) -> None:
        save_run(Path(run_dir), self.config, self.model.cpu(), self.tokenizer)
        self.model.to(self.device)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise GptclsError("pass a list of texts, not a single string")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise GptclsError(f"text {i + 1} is empty; nothing to classify")
        return encode_texts(self.tokenizer, texts, self.config.max_length, self.config.pooling)

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_tokens: int = 8192,
                      max_batch: int = 128) -> np.ndarray:
        """(N, num_classes) probabilities. Texts are run sorted by length, so batches hold
        little padding; results come back in input order."""
        ids = self.encode(texts)
        probs = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            longest = len(ids[order[min(start + max_batch, len(order)) - 1]])
            size = max(1, min(max_batch, batch_tokens // longest))
            chunk = order[start:start + size]
            x, lengths = pad_batch([torch.tensor(ids[i]) for i in chunk])
            with autocast(self.device):
                logits = self.model(x.to(self.device), lengths.to(self.device)).float()
            probs[chunk] = torch.softmax(logits, -1).cpu().numpy()
            start += size
        return probs

    def labels_from_proba(self, probs: np.ndarray) -> list[str]:
        t = self.config.threshold
        if t is not None and len(self.labels) == 2:
            return [self.labels[int(p[1] >= t)] for p in probs]
        return [self.labels[int(i)] for i in probs.argmax(-1)]

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.labels_from_proba(self.predict_proba(texts))


def import_book_state_dict(pth: str | Path, out_dir: str | Path,
                           labels: Sequence[str] = ("ham", "spam"), max_length: int = 120
                           ) -> Classifier:
    """Turn the chapter's `review_classifier.pth` (a GPTModel state_dict) into a run directory.

    Loaded with torch.load(weights_only=True): no arbitrary pickle code runs. The chapter pads
    every text to max_length and reads the last position, so that pooling is kept.
    """
    from gptcls.models import build_backbone
    from gptcls.tokenizers import gpt2_tokenizer
    from gptcls.weights import convert_book_state_dict

    path = Path(pth)
    if not path.is_file():
        raise GptclsError(f"state dict not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise GptclsError(f"{path} is not a PyTorch state dict: {str(exc).splitlines()[0]}"
                          ) from None
    mconfig, backbone_sd, head_sd = convert_book_state_dict(sd)
    if head_sd["weight"].shape[0] != len(labels):
        raise GptclsError(f"the head has {head_sd['weight'].shape[0]} outputs but "
                          f"{len(labels)} labels were given")
    model = ClassifierModel(build_backbone(mconfig), len(labels), "last-position")
    model.backbone.load_state_dict(backbone_sd, strict=False)
    model.backbone.tie_weights()
    model.head.weight.data.copy_(head_sd["weight"])
    if "bias" in head_sd:
        model.head.bias.data.copy_(head_sd["bias"])
    else:
        model.head.bias.data.zero_()
    model.set_trainable(1)
    tok = gpt2_tokenizer()
    config = ClassifierConfig(model=mconfig, labels=list(labels), max_length=max_length,
                              tokenizer=tok.spec(), pooling="last-position",
                              backbone={"model": "book-state-dict", "source": str(path)})
    clf = Classifier(config, model, tok, device="cpu")
    clf.save(out_dir)
    return clf
