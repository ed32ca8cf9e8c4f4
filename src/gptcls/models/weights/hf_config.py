"""Our ModelConfig from a Hugging Face config.json, for every family gptcls runs.

Both config layouts are read: transformers 4 (`rope_theta` + `rope_scaling`, Gemma's
`rope_local_base_freq`) and transformers 5 (`rope_parameters`, per layer type for Gemma 3).
A key the file leaves out takes transformers' default for that model type.
"""

from __future__ import annotations

from typing import Any

from gptcls.errors import GptclsError
from gptcls.models.base import ModelConfig
from gptcls.models.rope import rope_type

MODEL_TYPES = ("gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gemma3")
LAYER_TYPES = ("full_attention", "sliding_attention")
# Gemma3TextConfig's defaults: multimodal Gemma 3 configs spell out only a few text fields.
GEMMA3_DEFAULTS = {"vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
                   "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
                   "head_dim": 256, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
                   "rope_theta": 1e6, "rope_local_base_freq": 1e4, "query_pre_attn_scalar": 256,
                   "sliding_window": 4096, "tie_word_embeddings": True,
                   "hidden_activation": "gelu_pytorch_tanh"}


def config_from_hf(d: dict[str, Any]) -> ModelConfig:
    """Our ModelConfig from a Hugging Face config.json (any of MODEL_TYPES)."""
    kind = d.get("model_type")
    if kind == "gpt2":
        return _gpt2(d)
    if kind == "gemma3":  # the multimodal wrapper: its language model is a gemma3_text
        return _gemma3({**d.get("text_config", {}), "model_type": "gemma3_text"})
    if kind == "gemma3_text":
        return _gemma3(d)
    if kind in ("llama", "mistral", "qwen2", "qwen3"):
        return _llama_like(d, kind)
    raise GptclsError(f"model_type {kind!r} is not supported (supported: "
                      f"{', '.join(MODEL_TYPES)})")


def _require(d: dict[str, Any], allowed: dict[str, tuple[Any, ...]]) -> None:
    for key, ok in allowed.items():
        if d.get(key) not in ok:
            raise GptclsError(f"config.json {key}={d.get(key)!r} is not supported")


def _gpt2(d: dict[str, Any]) -> ModelConfig:
    _require(d, {"activation_function": ("gelu_new", "gelu_pytorch_tanh"),
                 "scale_attn_by_inverse_layer_idx": (False, None)})
    emb, heads = d["n_embd"], d["n_head"]
    return ModelConfig(
        family="gpt2", vocab_size=d["vocab_size"],
        context_length=d.get("n_positions") or d["n_ctx"], emb_dim=emb,
        n_layers=d["n_layer"], n_heads=heads, n_kv_heads=heads,
        hidden_dim=d.get("n_inner") or 4 * emb, qkv_bias=True,
        norm_eps=d.get("layer_norm_epsilon", 1e-5),
        tie_embeddings=d.get("tie_word_embeddings", True), rope_theta=0.0)


def rope_from_hf(d: dict[str, Any], layer_type: str | None = None,
                 theta_key: str = "rope_theta", default_theta: float = 10000.0
                 ) -> tuple[float, dict[str, Any] | None]:
    """(base, scaling or None) from either layout; layer_type picks Gemma 3's per-type entry
    (transformers 4 Gemma: the sliding layers take rope_local_base_freq and no scaling)."""
    params = d.get("rope_parameters")
    if params is not None and layer_type is not None and set(params) & set(LAYER_TYPES):
        params = params.get(layer_type) or {}
    if params is None:  # transformers 4
        params = d.get("rope_scaling") if layer_type != "sliding_attention" else None
    params = dict(params or {})
    theta = float(params.pop("rope_theta", None) or d.get(theta_key) or default_theta)
    if float(params.get("partial_rotary_factor", 1.0)) != 1.0:
        raise GptclsError("RoPE on part of each head (partial_rotary_factor) is not supported")
    kind = rope_type(params)  # one line naming the supported types if unknown
    if kind == "default":
        return theta, None
    params.pop("type", None)
    params.pop("partial_rotary_factor", None)
    return theta, {"rope_type": kind, **{k: v for k, v in params.items() if k != "rope_type"}}


def _layer_types(d: dict[str, Any], n_layers: int) -> list[str] | None:
    types = d.get("layer_types")
    if types is None:
        return None
    if len(types) != n_layers or any(t not in LAYER_TYPES for t in types):
        raise GptclsError(f"config.json layer_types must be {n_layers} of {LAYER_TYPES}")
    return list(types)


def _llama_like(d: dict[str, Any], kind: str) -> ModelConfig:
    """llama (incl. Llama 3.x), mistral, qwen2, qwen3."""
    _require(d, {"hidden_act": ("silu", None), "mlp_bias": (False, None)})
    if kind != "qwen2":  # Qwen2 always has q/k/v biases; the others have none
        _require(d, {"attention_bias": (False, None)})
    emb, heads, n_layers = d["hidden_size"], d["num_attention_heads"], d["num_hidden_layers"]
    theta, scaling = rope_from_hf(d)
    window, types = _window(d, kind, n_layers)
    return ModelConfig(
        family=kind, vocab_size=d["vocab_size"],
        context_length=d["max_position_embeddings"], emb_dim=emb, n_layers=n_layers,
        n_heads=heads, n_kv_heads=d.get("num_key_value_heads") or heads,
        hidden_dim=d["intermediate_size"], qkv_bias=kind == "qwen2",
        norm_eps=d["rms_norm_eps"], tie_embeddings=d.get("tie_word_embeddings", False),
        rope_theta=theta, head_dim=d.get("head_dim") or emb // heads,
        qk_norm=kind == "qwen3", rope_scaling=scaling, sliding_window=window,
        layer_types=types, mlp_act="silu")


def _window(d: dict[str, Any], kind: str, n_layers: int) -> tuple[int, list[str] | None]:
    """(sliding_window, layer_types): Mistral slides on every layer when it has a window; Qwen
    only with use_sliding_window, on the layers from max_window_layers on (transformers' rule)."""
    window = d.get("sliding_window") or 0
    if kind == "mistral":
        return window, None
    if kind == "llama" or not d.get("use_sliding_window") or not window:
        return 0, None
    types = _layer_types(d, n_layers) or [
        "sliding_attention" if i >= d.get("max_window_layers", 28) else "full_attention"
        for i in range(n_layers)]
    return window, types


def _gemma3(text: dict[str, Any]) -> ModelConfig:
    d = {**GEMMA3_DEFAULTS, **text}
    _require(d, {"hidden_activation": ("gelu_pytorch_tanh", "gelu_tanh"),
                 "attention_bias": (False, None), "final_logit_softcapping": (None,),
                 "attn_logit_softcapping": (None,), "use_bidirectional_attention": (False, None)})
    emb, n_layers = d["hidden_size"], d["num_hidden_layers"]
    pattern = d.get("sliding_window_pattern") or d.get("_sliding_window_pattern") or 6
    types = _layer_types(d, n_layers) or [
        "sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    theta, scaling = rope_from_hf(d, "full_attention", "rope_theta", 1e6)
    local_theta, local_scaling = rope_from_hf(d, "sliding_attention", "rope_local_base_freq",
                                              1e4)
    if local_scaling is not None:
        raise GptclsError("RoPE scaling on Gemma 3's sliding-window layers is not supported")
    return ModelConfig(
        family="gemma3", vocab_size=d["vocab_size"],
        context_length=d["max_position_embeddings"], emb_dim=emb, n_layers=n_layers,
        n_heads=d["num_attention_heads"], n_kv_heads=d["num_key_value_heads"],
        hidden_dim=d["intermediate_size"], qkv_bias=False, norm_eps=d["rms_norm_eps"],
        tie_embeddings=d["tie_word_embeddings"], rope_theta=theta, head_dim=d["head_dim"],
        qk_norm=True, rope_scaling=scaling, rope_local_theta=local_theta,
        sliding_window=d["sliding_window"] or 0, layer_types=types,
        embed_scale=emb ** 0.5, attn_scale=float(d["query_pre_attn_scalar"]) ** -0.5,
        mlp_act="gelu_tanh")
