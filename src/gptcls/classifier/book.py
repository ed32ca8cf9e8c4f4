"""The book's chapter-6 classifier (`review_classifier.pth`, a GPTModel state_dict) -> a run
directory that `Classifier.load` and every command read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.errors import GptclsError


def import_book_state_dict(pth: str | Path, out_dir: str | Path,
                           labels: Sequence[str] = ("ham", "spam"), max_length: int = 120,
                           n_heads: int | None = None) -> Classifier:
    """Turn the chapter's `review_classifier.pth` (a GPTModel state_dict) into a run directory.

    Loaded with torch.load(weights_only=True): no arbitrary pickle code runs. The chapter pads
    every text to max_length and reads the last position, so that pooling is kept.
    """
    from gptcls.models import build_backbone
    from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
    from gptcls.models.weights.book import convert_book_state_dict

    path = Path(pth)
    if not path.is_file():
        raise GptclsError(f"state dict not found: {path}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise GptclsError(f"{path} is not a PyTorch state dict: {str(exc).splitlines()[0]}"
                          ) from None
    mconfig, backbone_sd, head_sd = convert_book_state_dict(sd, n_heads)
    if not head_sd:
        raise GptclsError(f"{path} holds a language model (chapter 5), not a classifier")
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
