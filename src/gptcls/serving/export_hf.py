"""Export a run directory for Hugging Face transformers.

Runs that transformers' own classes can express load as the stock `*ForSequenceClassification`
of their family (no remote code; classifier/hf_compat.py says which): last-token pooling and a
head whose bias is zero (`--no-head-bias`) or, for GPT-2, folded away exactly (its final
LayerNorm has a bias that only feeds `score`: solve head.weight @ d = head.bias, add d to
ln_f.bias). RMSNorm has no bias and its output is scale-free, so nothing in a stock Llama, Qwen,
Gemma or Mistral can carry a constant: those runs, and mean or last+mean pooling, export with
`Gptcls<Family>ForSequenceClassification`, a subclass shipped beside the weights in
modeling_gptcls.py (trust_remote_code=True).

HF pools at the rightmost token that is not `pad_token_id` (= our pad id, often eos); gptcls
pools at the last real token by length. They agree on any text whose last token is not the pad
token: always true for gptcls' own tokenization, which never yields special ids from text.
HF tokenizers do turn a literally typed special token (e.g. "<|endoftext|>") into its id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.hf_compat import (
    STOCK_CLASSES,
    STOCK_OPTIONS,
    remote_code_reasons,
    unsupported_reason,
)
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.model_card import write_model_card
from gptcls.classifier.run_dir import load_run
from gptcls.errors import GptclsError
from gptcls.files import save_safetensors
from gptcls.serving.export_hf_config import check_expressible, hf_config, write_hf_tokenizer

MODELING_FILE = "modeling_gptcls.py"
MODELING_SOURCE = '''"""Written by gptcls export: {base} with gptcls' head and pooling."""

import torch
from torch import nn
from transformers import {base}
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class {cls}({base}):
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


def remote_class(family: str) -> str:
    """modeling_gptcls.py's class for a family, e.g. GptclsLlamaForSequenceClassification."""
    return f"Gptcls{STOCK_CLASSES[family][1]}"


def export_hf(run_dir: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write `out/` (config.json, model.safetensors, tokenizer files, README.md model card) for
    transformers; stock classes where the run allows, else modeling_gptcls.py."""
    config, model, tokenizer = load_run(Path(run_dir))
    m = config.model
    reason = unsupported_reason(m.family, config.pooling, m.causal)
    if reason is not None:
        raise GptclsError(f"{reason}; export it to ONNX instead")
    check_expressible(m)
    # gptcls' probabilities are softmax(logits / temperature) (calibration); transformers'
    # are softmax(logits): the temperature goes into the head, exactly.
    temperature = float(getattr(config, "temperature", 1.0))
    with torch.no_grad():
        model.head.weight.div_(temperature)
        model.head.bias.div_(temperature)
    sd = _hf_gpt2(model) if m.family == "gpt2" else _hf_decoder(model)
    bias = sd.pop("score.bias", None)  # GPT-2: already folded into ln_f
    reasons = remote_code_reasons(m.family, config.pooling,
                                  bias is not None and bool(bias.abs().max() > 0))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if reasons:
        cls, base = remote_class(m.family), STOCK_CLASSES[m.family][1]
        sd["score.bias"] = bias if bias is not None else torch.zeros(len(config.labels))
        (out / MODELING_FILE).write_text(MODELING_SOURCE.format(base=base, cls=cls))
        doc = hf_config(config, tokenizer, cls, {"AutoModelForSequenceClassification":
                                                 f"{MODELING_FILE[:-3]}.{cls}"})
    else:
        (out / MODELING_FILE).unlink(missing_ok=True)  # from an earlier export to `out`
        doc = hf_config(config, tokenizer, STOCK_CLASSES[m.family][1])
    save_safetensors(out / "model.safetensors", {k: v.contiguous() for k, v in sd.items()},
                     metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_hf_tokenizer(out, config, tokenizer)
    metrics_path = Path(run_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    write_model_card(out, config, metrics, usage=_usage(config, reasons), library="transformers")
    return out


def _usage(config: ClassifierConfig, reasons: list[str]) -> str:
    """How to load the export, and the ways transformers differs from gptcls."""
    remote = ", trust_remote_code=True" if reasons else ""
    side = "left" if config.truncate == "tail" else "right"
    how = (f"This export needs `trust_remote_code=True` ({'; '.join(reasons)}): its class is "
           f"in `{MODELING_FILE}`. Training with `{STOCK_OPTIONS}` gives a stock export."
           if reasons else f"A stock `{STOCK_CLASSES[config.model.family][1]}`: no remote code.")
    return f"""## Use with transformers

{how}

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained(PATH{remote})
tok = AutoTokenizer.from_pretrained(PATH)
enc = tok(texts, padding=True, truncation=True, max_length={config.max_length},
          return_tensors="pt")
probs = torch.softmax(model(**enc).logits, -1)
```

- Same logits as gptcls (within 1e-4, fp32) with right padding and truncation to
  {config.max_length} tokens (truncation side: {side}). Written for transformers 5
  (`rope_parameters`, `dtype`).
- The model reads the rightmost token that is not the pad token (id in config.json). gptcls
  never produces special-token ids from text; this tokenizer turns a typed special token (e.g.
  `<|endoftext|>`) into its id, and a text ending in the pad token is pooled one token early.
- Binary threshold chosen in training: {config.threshold} (not applied by transformers).
- The calibration temperature ({getattr(config, "temperature", 1.0):.4g}) is folded into the
  head: softmax of these logits gives gptcls' calibrated probabilities."""


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


def _hf_decoder(model: ClassifierModel) -> dict[str, Tensor]:
    """Ours -> HF Llama, Mistral, Qwen2/3 or Gemma 3: the reverse of
    weights.hf.convert_hf_decoder (a renaming; Gemma's norm weights back from 1 + w to w)."""
    from gptcls.models.weights.hf import GEMMA3_NORM_NAMES, LLAMA_BLOCK_NAMES

    sd = {k.removeprefix("backbone."): v.detach().float() for k, v in model.state_dict().items()}
    c = model.backbone.config
    names = dict(LLAMA_BLOCK_NAMES)
    if c.family == "gemma3":
        names.update(GEMMA3_NORM_NAMES)
    if c.qk_norm:
        names.update({"self_attn.q_norm": "attn.q_norm", "self_attn.k_norm": "attn.k_norm"})
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"],
           "model.norm.weight": sd["final_norm.weight"],
           "score.weight": sd["head.weight"], "score.bias": sd["head.bias"]}
    for i in range(c.n_layers):
        for theirs, ours in names.items():
            out[f"model.layers.{i}.{theirs}.weight"] = sd[f"blocks.{i}.{ours}.weight"]
        if c.qkv_bias:
            for p in "qkv":
                out[f"model.layers.{i}.self_attn.{p}_proj.bias"] = sd[f"blocks.{i}.attn.{p}.bias"]
    if c.family == "gemma3":
        out = {k: v - 1.0 if "norm" in k else v for k, v in out.items()}  # HF applies 1 + w
    return out
