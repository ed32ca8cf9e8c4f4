"""The Classifier: a run directory loaded for prediction, with its training preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np
import torch

from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.encoding import (
    encode_texts,
    length_batches,
    pad_batch,
    unique_sequences,
    windows,
)
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.multilabel import evaluate_multilabel, label_sets
from gptcls.classifier.run_dir import load_run, save_run
from gptcls.device import autocast, device_for
from gptcls.errors import GptclsError
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.options import PRECISIONS


class Classifier:
    """A trained classifier with exactly its training preprocessing.

    >>> clf = Classifier.load("runs/sms")
    >>> clf.predict(["You won a prize! Call now", "See you at lunch?"])
    ['spam', 'ham']
    """

    def __init__(self, config: ClassifierConfig, model: ClassifierModel, tokenizer: Tokenizer,
                 device: str = "auto", precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise GptclsError(f"unknown precision {precision!r}; choose one of: "
                              f"{', '.join(PRECISIONS)}")
        self.config, self.tokenizer, self.precision = config, tokenizer, precision
        self.device = device_for(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", precision: str = "auto"
             ) -> Classifier:
        """precision="bf16": matrix products in bf16 (faster where the CPU has AVX512-BF16 or
        AMX and bf16 measures faster; probabilities move by about 1e-3); "auto" (the default):
        bf16 where the device has fast native bf16, else fp32 (the exact path)."""
        config, model, tokenizer = load_run(Path(run_dir))
        return cls(config, model, tokenizer, device, precision)

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def save(self, run_dir: str | Path) -> None:
        save_run(Path(run_dir), self.config, self.model.cpu(), self.tokenizer)
        self.model.to(self.device)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids exactly as in training (truncation, pooling padding)."""
        _check_texts(texts)
        c = self.config
        return encode_texts(self.tokenizer, texts, c.max_length, c.pooling, c.truncate)

    def predict_proba(self, texts: str | Sequence[str], long_text: str = "truncate",
                      chunk_reduce: str = "mean") -> np.ndarray:
        """(N, num_classes) probabilities, in input order; one string gives (num_classes,).
        Multi-label runs: each label's own sigmoid probability (rows need not sum to 1).

        long_text="chunk": a text longer than max_length is cut into half-overlapping windows
        whose probabilities are averaged (chunk_reduce="mean") or max-pooled per class ("max").
        """
        if isinstance(texts, str):  # one text, one answer (as scikit-learn pipelines expect)
            return self.predict_proba([texts], long_text, chunk_reduce)[0]
        if long_text == "truncate":
            return self._run(self.encode(texts))
        if long_text != "chunk" or chunk_reduce not in ("mean", "max"):
            raise GptclsError(f"unknown long-text mode {long_text!r}/{chunk_reduce!r}")
        _check_texts(texts)
        chunks, owner = [], []
        for i, seq in enumerate(self.tokenizer.encode_batch(list(texts))):
            for w in windows(seq, self.config.max_length):
                chunks.append(w)
                owner.append(i)
        if self.config.pooling == "last-position":
            pad = self.tokenizer.pad_id
            chunks = [w + [pad] * (self.config.max_length - len(w)) for w in chunks]
        probs, index = self._run(chunks), np.array(owner)
        out = np.zeros((len(texts), probs.shape[1]), dtype=np.float32)
        if chunk_reduce == "mean":
            np.add.at(out, index, probs)
            return out / np.bincount(index, minlength=len(texts))[:, None]
        np.maximum.at(out, index, probs)
        return out if self.config.multi_label else out / out.sum(1, keepdims=True)

    def predict_proba_ids(self, ids: Sequence[Sequence[int]], batch_tokens: int = 4096,
                          max_batch: int = 128) -> np.ndarray:
        """(N, num_classes) probabilities of already-encoded texts (`encode`'s output), in
        input order: the server tokenizes off its model thread and batches the ids itself."""
        return self._run(list(ids), batch_tokens, max_batch)

    @torch.inference_mode()
    def _run(self, ids: list[list[int]], batch_tokens: int = 4096, max_batch: int = 128
             ) -> np.ndarray:
        """Each distinct text runs once, sorted by length so batches hold little padding;
        probabilities come back in input order."""
        first, owner = unique_sequences(ids)
        probs = np.zeros((len(first), len(self.labels)), dtype=np.float32)
        for chunk in length_batches([len(ids[i]) for i in first], batch_tokens, max_batch):
            x, lengths = pad_batch([torch.tensor(ids[first[j]]) for j in chunk])
            with autocast(self.device, self.precision):
                logits = self.model(x.to(self.device), lengths.to(self.device)).float()
            probs[chunk] = (torch.sigmoid(logits) if self.config.multi_label else torch.softmax(
                logits / self.config.temperature, -1)).cpu().numpy()
        return probs[owner]

    def evaluate(self, path: str | Path, long_text: str = "truncate", chunk_reduce: str = "mean",
                 **read_options) -> dict:
        """Score a labelled file (any format read_labelled takes): the metrics report dict."""
        from gptcls.data.examples import label_mapping
        from gptcls.data.labelled import read_labelled
        from gptcls.evaluation.metrics import classification_report

        if self.config.multi_label:
            return evaluate_multilabel(self, path, long_text, chunk_reduce, **read_options)
        examples, _report = read_labelled(path, **read_options)
        unknown = sorted({e.label for e in examples} - set(self.labels))
        if unknown:
            raise GptclsError(f"labels the run does not know: {unknown[:10]}; it knows "
                              f"{self.labels}")
        label_mapping(examples, order=self.labels)
        probs = self.predict_proba([e.text for e in examples], long_text, chunk_reduce)
        y = [self.labels.index(e.label) for e in examples]
        return classification_report(y, probs, self.labels, self.config.threshold)

    def labels_from_proba(self, probs: np.ndarray) -> list[str] | list[list[str]]:
        """A label per row; multi-label runs: the list of labels at or above their thresholds
        (possibly empty)."""
        if self.config.multi_label:
            return label_sets(probs, self.labels, self.config.thresholds)
        t = self.config.threshold
        if t is not None and len(self.labels) == 2:
            return [self.labels[int(p[1] >= t)] for p in probs]
        return [self.labels[int(i)] for i in probs.argmax(-1)]

    @overload
    def predict(self, texts: str) -> str: ...

    @overload
    def predict(self, texts: Sequence[str]) -> list[str]: ...

    def predict(self, texts: str | Sequence[str]) -> str | list[str] | list[list[str]]:
        """A label per text, in input order; one string gives one label. Multi-label runs: a
        list of labels per text."""
        if isinstance(texts, str):
            return self.predict([texts])[0]
        return self.labels_from_proba(self.predict_proba(texts))


def _check_texts(texts: Sequence[str]) -> None:
    if isinstance(texts, str):
        raise GptclsError("pass a list of texts, not a single string")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise GptclsError(f"text {i + 1} is empty; nothing to classify")
