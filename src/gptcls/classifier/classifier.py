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
    fit_ids,
    length_batches,
    pad_batch,
    unique_sequences,
)
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.multilabel import evaluate_multilabel, label_sets, run_thresholds
from gptcls.classifier.run_dir import load_run, save_run
from gptcls.classifier.twin import kept_twin
from gptcls.classifier.windows import (
    CHUNK_REDUCTIONS,
    reduce_windows,
    split_windows,
)
from gptcls.device import autocast, check_int8_device, device_for
from gptcls.errors import GptclsError
from gptcls.evaluation.multilabel import decide
from gptcls.models.tokenizers.base import Tokenizer
from gptcls.options import LONG_TEXTS, PRECISIONS


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
        if precision == "int8":
            check_int8_device(self.device)
        self.model = model.to(self.device).eval()

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", precision: str = "auto"
             ) -> Classifier:
        """precision="bf16": matrix products in bf16 (faster where the CPU has AVX512-BF16 or
        AMX and bf16 measures faster; probabilities move by about 1e-3); "int8" (CPU only): the
        blocks' linear layers dynamically quantized (classifier/int8.py; 2.2x fp32 on a 2-core
        Xeon; 99.3% of the SMS labels as fp32, a probability may move by 0.4); "auto": bf16
        where the device has fast native bf16, else fp32 (the exact path)."""
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

    def encode_long(self, texts: Sequence[str], long_text: str | None = None
                    ) -> tuple[list[list[int]], list[int]]:
        """(token ids, the text of each): one sequence per text as `encode` cuts it, or with
        long_text "chunk" (None: the run's, config.long_text) a long text's windows
        (classifier/windows.py), as training read them."""
        long_text = long_text or self.config.long_text
        if long_text not in LONG_TEXTS:
            raise GptclsError(f"unknown long-text mode {long_text!r}; choose one of: "
                              f"{', '.join(LONG_TEXTS)}")
        if long_text == "truncate":
            return self.encode(texts), list(range(len(texts)))
        _check_texts(texts)
        c = self.config
        chunks, owner = split_windows(self.tokenizer.encode_batch(list(texts)), c.max_length)
        return fit_ids(chunks, c.max_length, self.tokenizer.pad_id, c.pooling), owner

    def predict_proba(self, texts: str | Sequence[str], long_text: str | None = None,
                      chunk_reduce: str = "mean") -> np.ndarray:
        """(N, num_classes) probabilities, in input order; one string gives (num_classes,).
        Multi-label runs: each label's own sigmoid probability (rows need not sum to 1).

        long_text="chunk": a text longer than max_length is cut into half-overlapping windows
        whose probabilities are averaged (chunk_reduce="mean") or max-pooled per class ("max");
        None (the default): as the run was trained (config.long_text, "truncate" unless it
        trained with --long-text chunk).
        """
        if isinstance(texts, str):  # one text, one answer (as scikit-learn pipelines expect)
            return self.predict_proba([texts], long_text, chunk_reduce)[0]
        if chunk_reduce not in CHUNK_REDUCTIONS:
            raise GptclsError(f"unknown chunk reduction {chunk_reduce!r}; choose one of: "
                              f"{', '.join(CHUNK_REDUCTIONS)}")
        ids, owner = self.encode_long(texts, long_text)
        if len(ids) == len(texts):  # one sequence per text: nothing to combine
            return self._run(ids)
        return reduce_windows(self._run(ids), owner, len(texts), chunk_reduce,
                              self.config.multi_label)

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
        model = self.twin_model()
        for chunk in length_batches([len(ids[i]) for i in first], batch_tokens, max_batch):
            x, lengths = pad_batch([torch.tensor(ids[first[j]]) for j in chunk])
            with autocast(self.device, self.precision):
                logits = model(x.to(self.device), lengths.to(self.device)).float()
            probs[chunk] = self.probabilities(logits).cpu().numpy()
        return probs[owner]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) probabilities of (N, K) logits: softmax(logits / temperature), the run's
        calibration; multi-label runs: each label's own sigmoid."""
        if self.config.multi_label:
            return torch.sigmoid(logits)
        return torch.softmax(logits / self.config.temperature, -1)

    def twin_model(self) -> ClassifierModel:
        """What predictions run: under int8 or bf16, the model with every block's linear
        layers in that precision (twin.py; the fp32 `model` stays, for saving and exports),
        built at the first call, again when its blocks' weights have changed; else `model`."""
        return kept_twin(self.model, self.precision)

    def evaluate(self, path: str | Path, long_text: str | None = None, chunk_reduce: str = "mean",
                 label_names: str | None = None, **read_options) -> dict:
        """Score a labelled file (any format read_labelled takes): the metrics report dict.
        Its labels are renamed by `label_names` (default: the run's --label-names)."""
        from gptcls.data.examples import label_mapping
        from gptcls.data.label_names import parse_label_names, rename_labels
        from gptcls.data.labelled import read_labelled
        from gptcls.evaluation.metrics import classification_report

        if self.config.multi_label:
            if label_names:
                raise GptclsError("--label-names is for single-label runs")
            return evaluate_multilabel(self, path, long_text, chunk_reduce, **read_options)
        examples, _report = read_labelled(path, **read_options)
        spec = label_names or self.config.label_names
        if spec:
            normalize = read_options.get("normalize_labels", True)
            examples = rename_labels(examples, parse_label_names(spec, normalize), str(path),
                                     normalize)
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
            return label_sets(self.decide(probs), self.labels)
        return [self.labels[int(i)] for i in self.decide(probs)]

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The decisions of (N, K) probabilities, as indices into `labels`: (N,) classes (two
        labels and a run threshold t, e.g. the class prior's: the second where its probability
        is >= t; else the most probable); multi-label runs: (N, K) 0/1 at each label's
        threshold."""
        probs = np.asarray(probs)
        if self.config.multi_label:
            return decide(probs, run_thresholds(self.config.thresholds, len(self.labels))
                          ).astype(np.int64)
        t = self.config.threshold
        if t is not None and probs.shape[1] == 2:
            return (probs[:, 1] >= t).astype(np.int64)
        return probs.argmax(-1)

    def decision_scores(self, logits: torch.Tensor) -> np.ndarray:
        """Scores of (N, K) logits whose sign or argmax is `decide`'s answer (scikit-learn's
        decision_function), float32 as the logits. Two labels: (N,) log(p1 / p0) less
        log(t / (1 - t)) for the run's threshold t (none: 0), > 0 where the second label is
        chosen; more: the (N, K) calibrated logits (argmax); multi-label: (N, K) each logit
        less its threshold's logit, > 0 where the label is chosen. Exactly at the boundary (0)
        `decide` chooses."""
        z = logits.float().cpu().numpy()
        with np.errstate(divide="ignore"):  # a threshold of 0 or 1: an infinite offset
            if self.config.multi_label:
                t = np.asarray(run_thresholds(self.config.thresholds, z.shape[1]))
                return z - (np.log(t) - np.log1p(-t)).astype(np.float32)
            z = z / np.float32(self.config.temperature)
            if z.shape[1] != 2:
                return z
            t = self.config.threshold
            return z[:, 1] - z[:, 0] - np.float32(0.0 if t is None else np.log(t) - np.log1p(-t))

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
