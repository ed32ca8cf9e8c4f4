"""GGUF Llama models give transformers' logits: a tiny file we write, and the real SmolLM2 one.

The real-model tests load the 98 MB SmolLM2-135M-Instruct Q4_1 GGUF (fetched once into the gptcls
cache by tests/_smollm.py) into our Llama and into transformers' LlamaForCausalLM, once each.
"""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from helpers import (  # shared helpers: our model, HF greedy loop
    SMS_PATH,
    byte_alphabet,
    hf_greedy,
    ours,
    smollm_gguf_path,
)
from torch import nn

from gptcls.models.generate import generate
from gptcls.models.weights.gguf import unpermute_qk
from gptcls.models.weights.offline import SMOLLM2_ENV
from gptcls.models.weights.pretrained import Pretrained, load_pretrained

SMS = SMS_PATH




@torch.no_grad()
def hf_greedy_cached(model: nn.Module, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy with transformers' KV cache (a 135M model on CPU: 20 full passes are slow)."""
    # transformers >= 5.2x renamed past_key_values to cache (argument and output field).
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(ids, use_cache=True)
    for _ in range(n):
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
        out = model(nxt, use_cache=True, **{key: getattr(out, key)})
    return ids


# ---- the pieces ------------------------------------------------------------------------------


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: rotate-half rows -> interleaved pairs."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def test_unpermute_inverts_llama_cpp_permute() -> None:
    w = np.random.default_rng(0).standard_normal((24, 5)).astype(np.float32)
    for heads in (1, 2, 3):
        back = unpermute_qk(torch.from_numpy(llama_cpp_permute(w, heads)), heads)
        assert torch.equal(back, torch.from_numpy(w))


# ---- a tiny GGUF written the way llama.cpp's converter writes one -----------------------------


def write_tiny_gguf(path: Path, hf: tf.LlamaForCausalLM) -> None:
    import gguf

    c = hf.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(100000.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    tokens = [*byte_alphabet(), "he", "<|endoftext|>"]
    tokens += [f"<extra{i}>" for i in range(c.vocab_size - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if len(t) > 1 and t.startswith("<") else 1 for t in tokens])
    w.add_token_merges(["h e"])
    w.add_eos_token_id(257)
    names = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for key, value in hf.state_dict().items():
        arr = value.numpy()
        if key == "lm_head.weight" and c.tie_word_embeddings:
            continue
        top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
               "output_norm.weight", "lm_head.weight": "output.weight"}
        if key in top:
            w.add_tensor(top[key], arr)
            continue
        i, rest = key.removeprefix("model.layers.").split(".", 1)
        module = rest.removesuffix(".weight")
        if module == "self_attn.q_proj":
            arr = llama_cpp_permute(arr, c.num_attention_heads)
        elif module == "self_attn.k_proj":
            arr = llama_cpp_permute(arr, c.num_key_value_heads)
        w.add_tensor(f"blk.{i}.{names[module]}.weight", np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("tie", [True, False])
def test_tiny_gguf_matches_transformers(tie: bool, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         rope_theta=100000.0, max_position_embeddings=64, rms_norm_eps=1e-6,
                         tie_word_embeddings=tie)
    hf = tf.LlamaForCausalLM(cfg).eval()
    write_tiny_gguf(tmp_path / "tiny.gguf", hf)
    loaded = load_pretrained(str(tmp_path / "tiny.gguf"))
    c = loaded.config
    assert (c.n_heads, c.n_kv_heads, c.hidden_dim, c.rope_theta, c.tie_embeddings) == (
        4, 2, 32, 100000.0, tie)
    assert loaded.tokenizer.encode("hehe") == [256, 256] and loaded.tokenizer.eot_id == 257
    model = ours(loaded)
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() < 1e-5
    assert torch.equal(generate(model, ids[:1, :4], 20), hf_greedy(hf, ids[:1, :4], 20))


# ---- the real SmolLM2-135M-Instruct Q4_1 GGUF -------------------------------------------------


@pytest.fixture(scope="module")
def smollm() -> tuple[Pretrained, nn.Module, nn.Module]:
    path = smollm_gguf_path()
    with pytest.MonkeyPatch.context() as mp:  # the preset resolves to this very file
        mp.setenv(SMOLLM2_ENV, str(path))
        t0 = time.perf_counter()
        loaded = load_pretrained("smollm2-135m-instruct-q4")
        print(f"\ngptcls GGUF load: {time.perf_counter() - t0:.2f}s")
    t0 = time.perf_counter()
    hf = tf.LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                             dtype=torch.float32).eval()
    print(f"transformers GGUF load: {time.perf_counter() - t0:.2f}s")
    return loaded, ours(loaded), hf


def sms_messages(n: int) -> list[str]:
    if not SMS.is_file():
        raise FileNotFoundError(f"the SMS Spam Collection is missing: {SMS}")
    lines = SMS.read_text(encoding="utf-8").splitlines()[:n]
    return [line.split("\t", 1)[1] for line in lines]


def test_smollm2_preset_config(smollm: tuple[Pretrained, nn.Module, nn.Module]) -> None:
    loaded = smollm[0]
    c = loaded.config
    assert (c.n_layers, c.emb_dim, c.n_heads, c.n_kv_heads, c.hidden_dim, c.vocab_size) == (
        30, 576, 9, 3, 1536, 49152)
    assert c.tie_embeddings and c.rope_theta == 100000.0
    assert os.fspath(smollm_gguf_path()) in loaded.source


def test_smollm2_logits_match_transformers(smollm: tuple[Pretrained, nn.Module, nn.Module]
                                           ) -> None:
    loaded, model, hf = smollm
    worst = 0.0
    for text in sms_messages(4):
        ids = torch.tensor([loaded.tokenizer.encode(text)])
        with torch.no_grad():
            worst = max(worst, (model(ids) - hf(ids).logits).abs().max().item())
    print(f"\nSmolLM2 max |logit diff| vs transformers: {worst:.3g}")
    assert worst < 1e-4


def test_smollm2_greedy_continuation_matches(smollm: tuple[Pretrained, nn.Module, nn.Module]
                                             ) -> None:
    loaded, model, hf = smollm
    ids = torch.tensor([loaded.tokenizer.encode(sms_messages(1)[0])])
    ours_out, hf_out = generate(model, ids, 20), hf_greedy_cached(hf, ids, 20)
    assert torch.equal(ours_out, hf_out), (loaded.tokenizer.decode(ours_out[0].tolist()),
                                           loaded.tokenizer.decode(hf_out[0].tolist()))
