"""GGUF reading: quant kernels against gguf's, the architectures against transformers through tiny
GGUFs written the way llama.cpp's converter writes them, Llama 3's rope_freqs, and bad files."""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers as tf

from gptcls.errors import GptclsError
from gptcls.models.weights.gguf import (
    config_from_gguf,
    llama3_scaling_from_factors,
    load_gguf,
    open_reader,
    state_dict_from_gguf,
)
from gptcls.models.weights.gguf_quants import dequantize_tensor, supported_types
from gptcls.models.weights.pretrained import load_backbone

Q = gguf.GGMLQuantizationType


# ---- quant kernels --------------------------------------------------------------------------


def _random_blocks(qtype: Q, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random K-quant blocks (gguf cannot quantise these) with finite f16 scale fields."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    scales = rng.uniform(-0.1, 0.1, (n_blocks, 2)).astype(np.float16).view(np.uint8)
    if qtype == Q.Q6_K:
        raw[:, 208:210] = scales[:, :2]  # d is last
    else:
        raw[:, :4] = scales  # d, dmin first
    return raw


@pytest.mark.parametrize("name", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"])
def test_fast_dequantize_is_bit_identical_to_gguf(name: str) -> None:
    from gguf.quants import dequantize, quantize

    qtype, rng = Q[name], np.random.default_rng(1)
    if name.endswith("_K"):
        data = _random_blocks(qtype, 6, rng)
        shape = (6 * 256,)
    else:
        data = quantize(rng.standard_normal((8, 64)).astype(np.float32), qtype)
        shape = (8, 64)
    got = supported_types()[qtype](torch.from_numpy(data.copy())).reshape(shape)
    want = torch.from_numpy(dequantize(data, qtype).reshape(shape))
    assert torch.equal(got, want)


# ---- tiny GGUFs from tiny transformers models ------------------------------------------------

_HF_TO_GGUF = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
}


def _gguf_name(hf_name: str, arch: str) -> str:
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
           "output_norm.weight", "lm_head.weight": "output.weight"}
    if hf_name in top:
        return top[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    module, _, kind = rest.rpartition(".")
    post = "post_attention_norm" if arch == "gemma3" else "ffn_norm"
    return f"blk.{layer}.{_HF_TO_GGUF.get(module, post)}.{kind}"


def write_gguf(path: Path, arch: str, meta: dict, tensors: dict[str, np.ndarray],
               n_tokens: int, raw: dict[str, tuple[np.ndarray, Q]] | None = None) -> Path:
    w = gguf.GGUFWriter(str(path), arch)
    for key, value in meta.items():
        full = f"{arch}.{key}"
        if isinstance(value, float):
            w.add_float32(full, value)
        else:
            w.add_uint32(full, value)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_tokens)])
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    for name, (arr, qtype) in (raw or {}).items():
        w.add_tensor(name, arr, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _tiny_hf(arch: str) -> tf.PreTrainedModel:
    common = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-6)
    if arch == "qwen2":
        cfg = tf.Qwen2Config(**common, rope_theta=1e6, tie_word_embeddings=False)
    elif arch == "qwen3":
        cfg = tf.Qwen3Config(**common, head_dim=16, rope_theta=1e6, tie_word_embeddings=True)
    else:  # gemma3 in llama.cpp's layout: 6-layer pattern, local base 10k, query scalar head_dim
        cfg = tf.Gemma3TextConfig(**{**common, "num_hidden_layers": 7}, head_dim=16,
                                  sliding_window=4, query_pre_attn_scalar=16,
                                  rope_theta=1e6, rope_local_base_freq=10000.0)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # norms away from their init, so a wrong +1 would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.1, 0.3)
    return model


def _to_gguf(model: tf.PreTrainedModel, arch: str, path: Path) -> Path:
    c = model.config
    meta = {"context_length": c.max_position_embeddings, "embedding_length": c.hidden_size,
            "block_count": c.num_hidden_layers, "feed_forward_length": c.intermediate_size,
            "attention.head_count": c.num_attention_heads,
            "attention.head_count_kv": c.num_key_value_heads,
            "attention.layer_norm_rms_epsilon": float(c.rms_norm_eps),
            "rope.freq_base": 1e6,
            "attention.key_length": getattr(c, "head_dim", None) or c.hidden_size // 4}
    if arch == "gemma3":
        meta["attention.sliding_window"] = c.sliding_window
    tensors = {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        arr = p.detach().float().numpy()
        if arch == "gemma3" and name.endswith("norm.weight"):
            arr = arr + 1  # convert_hf_to_gguf's Gemma3Model: the file holds 1 + w
        tensors[_gguf_name(name, arch)] = arr
    return write_gguf(path, arch, meta, tensors, c.vocab_size)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "gemma3"])
def test_tiny_gguf_matches_transformers(arch: str, tmp_path: Path) -> None:
    hf = _tiny_hf(arch)
    reader = open_reader(_to_gguf(hf, arch, tmp_path / "tiny.gguf"))
    config = config_from_gguf(reader)
    assert config.family == arch and config.head_dim == (16 if arch != "qwen2" else 8)
    ours = load_backbone(config, state_dict_from_gguf(reader, config)).eval()
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        diff = (ours(ids) - hf(ids).logits).abs().max().item()
    assert diff < 1e-4
    if arch == "gemma3":
        assert config.layer_types == [*["sliding_attention"] * 5, "full_attention",
                                      "sliding_attention"]
        assert config.embed_scale == pytest.approx(math.sqrt(32))


def _llama3_factors(theta: float, head_dim: int, s: dict) -> torch.Tensor:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors: the rope_freqs tensor."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    low_wl = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wl = s["original_max_position_embeddings"] / s["high_freq_factor"]
    out = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_wl:
            out.append(1.0)
        elif wavelen > low_wl:
            out.append(s["factor"])
        else:
            smooth = ((s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"])
                      / (s["high_freq_factor"] - s["low_freq_factor"]))
            out.append(1 / ((1 - smooth) / s["factor"] + smooth))
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("factor", [8.0, 32.0])  # Llama 3.1, Llama 3.2
def test_rope_freqs_gives_back_the_llama3_scaling(factor: float) -> None:
    s = {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert llama3_scaling_from_factors(_llama3_factors(500000.0, 64, s), 500000.0, 64) == s
    assert llama3_scaling_from_factors(torch.ones(32), 500000.0, 64) is None
    with pytest.raises(GptclsError, match="rope_freqs"):
        llama3_scaling_from_factors(torch.linspace(1, 3, 32), 500000.0, 64)


def _llama_meta() -> dict:
    return {"context_length": 32, "embedding_length": 8, "block_count": 1,
            "feed_forward_length": 16, "attention.head_count": 2,
            "attention.layer_norm_rms_epsilon": 1e-5}


def test_llama_gguf_with_rope_freqs_loads_with_llama3_scaling(tmp_path: Path) -> None:
    s = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 8192}
    meta = {**_llama_meta(), "rope.freq_base": 5e5, "embedding_length": 128}  # head_dim 64
    path = write_gguf(tmp_path / "l.gguf", "llama", meta,
                      {"rope_freqs.weight": _llama3_factors(5e5, 64, s).numpy()}, 10)
    assert config_from_gguf(open_reader(path)).rope_scaling == s


# ---- bad files: one line each ----------------------------------------------------------------


def test_unsupported_architecture_and_quant_type(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "p.gguf", "phi3", _llama_meta(), {}, 10)
    with pytest.raises(GptclsError, match="architecture 'phi3' is not supported.*qwen2"):
        load_gguf(path)
    blocks = np.zeros((1, gguf.GGML_QUANT_SIZES[Q.Q2_K][1]), dtype=np.uint8)
    path = write_gguf(tmp_path / "q.gguf", "llama", _llama_meta(), {},
                      10, raw={"token_embd.weight": (blocks, Q.Q2_K)})
    reader = open_reader(path)
    with pytest.raises(GptclsError, match="quant type Q2_K, which is not supported"):
        state_dict_from_gguf(reader, config_from_gguf(reader))


def test_truncated_and_corrupted_files(tmp_path: Path) -> None:
    emb = np.ones((10, 8), dtype=np.float32)
    path = write_gguf(tmp_path / "t.gguf", "llama", _llama_meta(), {"token_embd.weight": emb}, 10)
    data = path.read_bytes()
    assert torch.equal(dequantize_tensor(open_reader(path).tensors[0]), torch.ones(10, 8))
    for cut, message in [(len(data) - 7, "truncated"), (40, "truncated"), (3, "truncated")]:
        (tmp_path / "cut.gguf").write_bytes(data[:cut])
        with pytest.raises(GptclsError, match=message):
            load_gguf(tmp_path / "cut.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64)
    with pytest.raises(GptclsError, match="GGUF"):
        load_gguf(tmp_path / "junk.gguf")
