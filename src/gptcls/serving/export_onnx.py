"""Export a run directory as ONNX, and run it with onnxruntime.

ONNX graph: inputs `input_ids`, `attention_mask` (int64, dynamic batch and sequence, right
padding), output `logits` at the last real token (lengths = attention_mask.sum(1)), divided by
the run's calibration temperature (so softmax(logits) is gptcls' probability). Exported
with torch.export (torch.onnx.export(dynamo=True), the default since torch 2.9; it needs
`onnxscript`, in the onnx extra). The deprecated TorchScript exporter (dynamo=False) cannot
export our RMSNorm (aten::rms_norm). Tests run the graph on batch and sequence sizes other
than the ones it was traced with.

`export_onnx(run, "x.onnx")` writes that one file. Any other `out` is a directory laid out as
optimum's ORTModelForSequenceClassification and transformers.js expect:

    model.onnx          the graph
    model_int8.onnx     with int8=True: MatMul weights in int8, activations quantized per
                        batch at run time (onnxruntime.quantization.quantize_dynamic)
    config.json, tokenizer files
                        as `gptcls export --format hf` writes them (id2label, label2id,
                        pad_token_id), plus tokenizer.json for GPT-2 (transformers.js reads
                        only that); families transformers has no class for: labels only
    gptcls/             gptcls' own config.json and tokenizer files (a run directory without
                        weights), so that OnnxClassifier.from_dir needs nothing else
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.run_dir import CONFIG_FILE, load_run, parse_run_config, read_run_config
from gptcls.errors import GptclsError
from gptcls.files import atomic_write_text
from gptcls.models.tokenizers import load_tokenizer
from gptcls.models.tokenizers.base import Tokenizer

ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
GPTCLS_DIR = "gptcls"
EXTRA_MISSING = "ONNX export needs the onnx extra: pip install 'gptcls[onnx]'"


class _OnnxGraph(nn.Module):
    """(input_ids, attention_mask) -> logits at the last real token, as gptcls computes them,
    divided by the run's calibration temperature: softmax of the output is gptcls'
    probability for runtimes that know nothing of gptcls (optimum, transformers.js)."""

    def __init__(self, model: ClassifierModel, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask.sum(1)) / self.temperature


def export_onnx(run_dir: str | os.PathLike, out: str | os.PathLike, int8: bool = False
                ) -> Path:
    """`out` ending in .onnx: that one graph file. Otherwise the directory described above
    (int8=True adds model_int8.onnx). Written in full or not at all."""
    out = Path(out)
    if out.suffix == ".onnx":
        if int8:
            raise GptclsError(f"--int8 writes {INT8_FILE} into an ONNX directory: give a "
                              f"directory, not the file {out}")
        if out.is_dir():
            raise GptclsError(f"{out} is a directory; an ONNX file path cannot be one")
        _check_extra()
        config, model, _tokenizer = load_run(Path(run_dir))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        _save_graph(_trace(config, model), config, tmp)
        os.replace(tmp, out)
        return out
    if out.exists() and not out.is_dir():
        raise GptclsError(f"{out} exists and is not a directory")
    _check_extra()
    config, model, tokenizer = load_run(Path(run_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as staging:
        tmp = Path(staging)
        _save_graph(_trace(config, model), config, tmp / ONNX_FILE)
        if int8:
            quantize_int8(tmp / ONNX_FILE, tmp / INT8_FILE)
        write_hf_files(tmp, config, tokenizer)
        gptcls_dir = tmp / GPTCLS_DIR
        gptcls_dir.mkdir()
        saved = ClassifierConfig.from_dict(config.to_dict())
        saved.tokenizer = tokenizer.save(gptcls_dir)
        atomic_write_text(gptcls_dir / CONFIG_FILE, json.dumps(saved.to_dict(), indent=2) + "\n")
        out.mkdir(exist_ok=True)
        # A previous export's int8 graph would not match this model.onnx: it goes too.
        for stale in (out / GPTCLS_DIR, out / INT8_FILE):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        for path in tmp.iterdir():
            os.replace(path, out / path.name)
    return out


def _check_extra() -> None:
    try:
        import onnxruntime  # noqa: F401 - int8 quantization and OnnxClassifier need it
        import onnxscript  # noqa: F401 - torch's exporter needs it; fail with a clear line
    except ImportError:
        raise GptclsError(EXTRA_MISSING) from None


def _trace(config: ClassifierConfig, model: ClassifierModel) -> Any:
    """The torch.onnx ONNXProgram of the run's model, dynamic in batch and sequence."""
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
            graph = _OnnxGraph(model.eval(), config.temperature)
            return torch.onnx.export(graph, (ids, mask), dynamo=True,
                                     verbose=False, dynamic_shapes=shapes,
                                     input_names=["input_ids", "attention_mask"],
                                     output_names=["logits"])
    except Exception as exc:  # torch.export raises many types; keep the first line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise GptclsError(f"ONNX export failed ({type(exc).__name__}: {first})") from None
    finally:
        logger.setLevel(level)


def _save_graph(program: Any, config: ClassifierConfig, path: Path) -> None:
    """The graph with gptcls metadata (labels, pooling, max_length) riding along."""
    program.model.metadata_props.update({
        "gptcls_labels": json.dumps(config.labels), "gptcls_pooling": config.pooling,
        "gptcls_max_length": str(config.max_length),
        "gptcls_temperature": str(config.temperature)})  # already applied: see _OnnxGraph
    program.save(str(path))


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic int8: MatMul weights stored int8 (per tensor), each batch's activations
    quantized on the fly; embeddings, norms and the rest stay fp32. Metadata is kept."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing" advice, logged on the root logger
    try:
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return dst


def write_hf_files(out: Path, config: ClassifierConfig, tokenizer: Tokenizer) -> None:
    """config.json and tokenizer files as the transformers export writes them (the stock class
    of the family names the architecture: optimum reads model_type; the graph does the
    pooling). Families transformers has no class for get a config.json of labels only."""
    from gptcls.classifier.hf_compat import STOCK_CLASSES
    from gptcls.serving.export_hf_config import hf_config, write_hf_tokenizer

    try:
        doc = hf_config(config, tokenizer, STOCK_CLASSES[config.model.family][1])
    except (KeyError, GptclsError):
        labels = config.labels
        doc = {"id2label": {str(i): lab for i, lab in enumerate(labels)},
               "label2id": {lab: i for i, lab in enumerate(labels)},
               "problem_type": "single_label_classification"}
    else:
        write_hf_tokenizer(out, config, tokenizer)
        if not (out / "tokenizer.json").is_file() and (out / "vocab.json").is_file():
            _gpt2_tokenizer_json(out)
    doc.setdefault("gptcls", {})["pooling"] = config.pooling
    atomic_write_text(out / "config.json", json.dumps(doc, indent=2) + "\n")


def _gpt2_tokenizer_json(out: Path) -> None:
    """tokenizer.json from GPT-2's vocab.json and merges.txt: transformers.js and other
    runtimes without the Python slow tokenizers read only this file. Same ids as gptcls (no
    prefix space; <|endoftext|> special, as in the transformers export)."""
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer(str(out / "vocab.json"), str(out / "merges.txt"),
                                add_prefix_space=False, trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(out / "tokenizer.json"))


def is_onnx_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a directory written by export_onnx (not a run directory)."""
    p = Path(path)
    return (p / ONNX_FILE).is_file() and (p / GPTCLS_DIR / CONFIG_FILE).is_file()


def _read_gptcls_config(directory: Path) -> ClassifierConfig:
    path = directory / GPTCLS_DIR / CONFIG_FILE
    if not path.is_file():
        raise GptclsError(f"{directory} is not an ONNX directory from gptcls export: "
                          f"{GPTCLS_DIR}/{CONFIG_FILE} is missing")
    return parse_run_config(path, path)


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
        meta = self.session.get_modelmeta().custom_metadata_map
        # Graphs exported before calibration was folded in leave the temperature to us.
        self.temperature = 1.0 if "gptcls_temperature" in meta else config.temperature
        saved = meta.get("gptcls_labels")
        if saved is not None and json.loads(saved) != config.labels:
            raise GptclsError(f"{onnx_path} was exported from a run with labels "
                              f"{json.loads(saved)}, not {config.labels}")

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, int8: bool = False) -> OnnxClassifier:
        """An ONNX directory from export_onnx, alone: its model.onnx (or model_int8.onnx)."""
        d = Path(directory)
        if not d.is_dir():
            raise GptclsError(f"ONNX directory not found: {d}")
        config = _read_gptcls_config(d)
        graph = d / (INT8_FILE if int8 else ONNX_FILE)
        if not graph.is_file():
            hint = " (export with --int8 to write it)" if int8 else ""
            raise GptclsError(f"{graph} not found{hint}")
        return cls(config, load_tokenizer(config.tokenizer, d / GPTCLS_DIR), graph)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, onnx_path: str | os.PathLike | None = None
                 ) -> OnnxClassifier:
        """`onnx_path` None or a directory: OnnxClassifier.from_dir. A file: that graph, with
        the config and tokenizer of `run_dir` (a run directory or an ONNX directory)."""
        if onnx_path is None or Path(onnx_path).is_dir():
            return cls.from_dir(run_dir if onnx_path is None else onnx_path)
        path = Path(onnx_path)
        if not path.is_file():
            raise GptclsError(f"ONNX file not found: {path}")
        if is_onnx_dir(run_dir):
            config, files = _read_gptcls_config(Path(run_dir)), Path(run_dir) / GPTCLS_DIR
        else:
            config, files = read_run_config(Path(run_dir)), Path(run_dir)
        return cls(config, load_tokenizer(config.tokenizer, files), path)

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
            logits = logits / self.temperature  # 1.0 where the graph applies calibration
            if self.config.multi_label:  # a sigmoid per label
                probs[chunk] = 1.0 / (1.0 + np.exp(-logits))
            else:
                e = np.exp(logits - logits.max(-1, keepdims=True))
                probs[chunk] = e / e.sum(-1, keepdims=True)
            start += len(chunk)
        return probs
