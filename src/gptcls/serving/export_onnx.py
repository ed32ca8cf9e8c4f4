"""Export a run directory as ONNX, and run it with onnxruntime.

ONNX (`export_onnx`): inputs `input_ids`, `attention_mask` (int64, dynamic batch and sequence,
right padding), output `logits` at the last real token (lengths = attention_mask.sum(1)).
Exported with torch.export (torch.onnx.export(dynamo=True), the default since torch 2.9; it
needs `onnxscript`, in the onnx extra). The deprecated TorchScript exporter (dynamo=False)
cannot export our RMSNorm (aten::rms_norm). Tests run the graph on batch and sequence sizes
other than the ones it was traced with.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.run_dir import load_run, read_run_config
from gptcls.errors import GptclsError
from gptcls.models.tokenizers import load_tokenizer
from gptcls.models.tokenizers.base import Tokenizer


class _OnnxGraph(nn.Module):
    """(input_ids, attention_mask) -> logits at the last real token, as gptcls computes them."""

    def __init__(self, model: ClassifierModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask.sum(1))


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write an ONNX graph of the run; gptcls metadata (labels, max_length) rides along."""
    try:
        import onnxscript  # noqa: F401 - torch's exporter needs it; fail with a clear line
    except ImportError:
        raise GptclsError("ONNX export needs the onnx extra: pip install 'gptcls[onnx]'"
                          ) from None
    config, model, _tokenizer = load_run(Path(run_dir))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Traced on a batch of 2 with different lengths, so no two sizes coincide by accident.
    ids = (torch.arange(10, dtype=torch.long).reshape(2, 5) + 100) % config.model.vocab_size
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.long)
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence", max=config.model.context_length)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_OnnxGraph(model.eval()), (ids, mask), dynamo=True,
                                        verbose=False, dynamic_shapes=shapes,
                                        input_names=["input_ids", "attention_mask"],
                                        output_names=["logits"])
    except Exception as exc:  # torch.export raises many types; keep the first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise GptclsError(f"ONNX export failed ({type(exc).__name__}: {first})") from None
    finally:
        logger.setLevel(level)
    program.model.metadata_props.update({
        "gptcls_labels": json.dumps(config.labels), "gptcls_pooling": config.pooling,
        "gptcls_max_length": str(config.max_length)})
    tmp = out.with_name(out.name + ".tmp")
    program.save(str(tmp))
    os.replace(tmp, out)
    return out


class OnnxClassifier(Classifier):
    """A Classifier whose model runs in onnxruntime: same tokenization, batching, outputs."""

    def __init__(self, config: ClassifierConfig, tokenizer: Tokenizer, onnx_path: Path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise GptclsError("running ONNX needs the onnx extra: pip install 'gptcls[onnx]'"
                              ) from None
        self.config, self.tokenizer, self.device = config, tokenizer, torch.device("cpu")
        self.model = None  # type: ignore[assignment]
        try:
            self.session = ort.InferenceSession(str(onnx_path),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise GptclsError(f"cannot load {onnx_path} as ONNX: {exc}") from None
        saved = self.session.get_modelmeta().custom_metadata_map.get("gptcls_labels")
        if saved is not None and json.loads(saved) != config.labels:
            raise GptclsError(f"{onnx_path} was exported from a run with labels "
                              f"{json.loads(saved)}, not {config.labels}")

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, onnx_path: str | os.PathLike
                 ) -> OnnxClassifier:
        path = Path(onnx_path)
        if not path.is_file():
            raise GptclsError(f"ONNX file not found: {path}")
        config = read_run_config(Path(run_dir))
        return cls(config, load_tokenizer(config.tokenizer, Path(run_dir)), path)

    def save(self, run_dir: str | os.PathLike) -> None:
        raise GptclsError("an ONNX classifier has no PyTorch weights to save")

    def _run(self, ids: Sequence[Sequence[int]], batch_tokens: int = 8192,
             max_batch: int = 128) -> np.ndarray:
        """Like Classifier._run: sorted by length, right-padded, with an attention mask."""
        probs = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            longest = len(ids[order[min(start + max_batch, len(order)) - 1]])
            chunk = order[start:start + max(1, min(max_batch, batch_tokens // longest))]
            width = max(len(ids[i]) for i in chunk)
            x = np.full((len(chunk), width), self.tokenizer.pad_id, dtype=np.int64)
            mask = np.zeros_like(x)
            for row, i in enumerate(chunk):
                x[row, :len(ids[i])], mask[row, :len(ids[i])] = ids[i], 1
            logits = self.session.run(["logits"], {"input_ids": x, "attention_mask": mask})[0]
            e = np.exp(logits - logits.max(-1, keepdims=True))
            probs[chunk] = e / e.sum(-1, keepdims=True)
            start += len(chunk)
        return probs
