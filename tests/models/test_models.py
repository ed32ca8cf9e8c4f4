"""Backbone mechanics on tiny random models: shapes, causality, the pooled-position block."""

import pytest
import torch

from gptcls.errors import GptclsError
from gptcls.models import PRESETS, build_backbone, preset_config
from gptcls.models.attention import MATH_MAX_T, Attention, attend, causal_attention_bf16
from gptcls.models.base import ModelConfig
from gptcls.models.generate import generate
from gptcls.models.rope import RoPE

TINY = ["gpt2-tiny", "llama-tiny"]


def tiny(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_backbone(preset_config(name)).eval()


def test_preset_sizes_match_the_published_parameter_counts():
    # Parameter counts without the tied LM head: 124M, 355M for GPT-2; 135M for SmolLM2.
    for name, millions in [("gpt2-small", 124.4), ("gpt2-medium", 354.8),
                           ("smollm2-135m", 134.5)]:
        cfg = PRESETS[name][0]
        with torch.device("meta"):
            model = build_backbone(cfg)
        n = sum(p.numel() for p in model.parameters()) / 1e6
        assert n == pytest.approx(millions, abs=0.1), name


def test_every_preset_names_its_source():
    for name, (_cfg, source) in PRESETS.items():
        assert source or name.endswith("-tiny"), name


@pytest.mark.parametrize("name", TINY)
def test_causal_future_tokens_do_not_change_the_past(name):
    model = tiny(name)
    idx = torch.randint(0, 200, (1, 12))
    longer = torch.cat([idx, torch.randint(0, 200, (1, 5))], dim=1)
    torch.testing.assert_close(model(idx), model(longer)[:, :12], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TINY)
def test_pooled_position_block_equals_the_full_block(name):
    model = tiny(name)
    idx = torch.randint(0, 200, (3, 10))
    pos = torch.tensor([9, 4, 0])
    full = model.final_norm(model.run_blocks(model.embed(idx)))  # (B, T, C)
    pooled = model.final_norm(model.run_blocks(model.embed(idx), query_pos=pos))[:, 0]
    torch.testing.assert_close(pooled, full[torch.arange(3), pos], atol=1e-5, rtol=0)


def test_too_long_input_is_a_clear_error():
    model = tiny("llama-tiny")
    with pytest.raises(GptclsError, match="context length"):
        model(torch.zeros(1, 513, dtype=torch.long))


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(GptclsError, match="unknown model preset 'gpt5'"):
        preset_config("gpt5")


def test_generate_greedy_is_deterministic_and_sampling_is_seeded():
    model = tiny("gpt2-tiny")
    idx = torch.tensor([[1, 2, 3]])
    a, b = generate(model, idx, 8), generate(model, idx, 8)
    assert a.shape == (1, 11) and torch.equal(a, b)
    s1 = generate(model, idx, 8, temperature=1.0, top_k=5,
                  generator=torch.Generator().manual_seed(1))
    s2 = generate(model, idx, 8, temperature=1.0, top_k=5,
                  generator=torch.Generator().manual_seed(1))
    assert torch.equal(s1, s2)


# ---- the newer families' pieces: sliding windows, config fields --------------------------------

W = 4  # a window much shorter than the test sequences


def windowed_attention(causal: bool) -> Attention:
    torch.manual_seed(0)
    return Attention(16, 4, 2, 8, bias=True, proj_bias=False, causal=causal, qk_norm_eps=1e-6,
                     window=W, scale=0.3).eval()


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_sees_exactly_its_neighbours(causal):
    attn, rope = windowed_attention(causal), RoPE(8, 64, 10000.0)
    x = torch.randn(1, 16, 16)
    i = 9
    with torch.no_grad():
        base = attn(x, rope)[0, i]
        for j in range(16):
            y = x.clone()
            y[0, j] += 1.0
            moved = (attn(y, rope)[0, i] - base).abs().max().item() > 1e-6
            seen = (0 <= i - j < W) if causal else abs(i - j) < W
            assert moved == seen, (j, moved)


@pytest.mark.parametrize("causal", [True, False])
def test_sliding_window_query_pos_and_padding_agree_with_the_full_path(causal):
    attn, rope = windowed_attention(causal), RoPE(8, 64, 10000.0)
    x = torch.randn(3, 20, 16)
    lengths = torch.tensor([20, 11, 3])
    pos = lengths - 1
    with torch.no_grad():
        full = attn(x, rope, None, lengths)  # (B, T, C)
        pooled = attn(x, rope, pos, lengths)[:, 0]
        assert torch.isfinite(full).all()
        torch.testing.assert_close(pooled, full[torch.arange(3), pos], atol=1e-5, rtol=0)
        for b, n in enumerate(lengths.tolist()):  # each row as if alone, unpadded
            alone = attn(x[b:b + 1, :n], rope, None, lengths[b:b + 1])[0]
            torch.testing.assert_close(full[b, :n], alone, atol=1e-5, rtol=0)


def test_old_model_config_json_loads_with_the_new_fields_defaulted():
    old = {"family": "llama", "vocab_size": 100, "context_length": 64, "emb_dim": 16,
           "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "hidden_dim": 32, "qkv_bias": False,
           "drop_rate": 0.0, "norm_eps": 1e-5, "tie_embeddings": True, "rope_theta": 1e4,
           "causal": True}
    c = ModelConfig.from_dict(old)
    assert (c.head_dim, c.sliding_window, c.rope_scaling, c.qk_norm) == (4, 0, None, False)
    assert ModelConfig.from_dict(c.to_dict()) == c
    assert build_backbone(c).blocks[0].attn.head_dim == 4


@pytest.mark.parametrize("name", TINY)
def test_padded_batches_skip_the_padding_and_give_each_text_its_own_result(name):
    from gptcls.models.layers import packing_for

    model = tiny(name)
    lengths = torch.tensor([12, 5, 2])  # 53% padding: the blocks run on 19 packed rows
    packing = packing_for(lengths, 12)
    assert packing.real.tolist() == [*range(12), 12, 13, 14, 15, 16, 24, 25]
    assert packing.starts.tolist() == [0, 12, 17]
    assert packing_for(torch.tensor([12, 12, 11]), 12) is None  # 3% padding: not worth it
    idx = torch.randint(0, 200, (3, 12))
    with torch.no_grad():
        h = model.run_blocks(model.embed(idx), lengths=lengths)  # (B, T, C)
        for b, n in enumerate(lengths.tolist()):
            alone = model.run_blocks(model.embed(idx[b:b + 1, :n]), lengths=lengths[b:b + 1])
            torch.testing.assert_close(h[b, :n], alone[0], atol=1e-5, rtol=1e-5)
            last = model.run_blocks(model.embed(idx), query_pos=lengths - 1, lengths=lengths)
            torch.testing.assert_close(last[b, 0], alone[0, -1], atol=1e-5, rtol=1e-5)
        assert torch.isfinite(h).all() and not h[1, 5:].any()  # padding rows: 0


@pytest.mark.parametrize("causal", [True, False])
def test_bf16_training_attends_in_fp32_and_matches_the_bf16_forward(monkeypatch, causal):
    """Under CPU bf16 autocast, attention that autograd differentiates runs SDPA on fp32
    copies (bf16's CPU backward is several times slower); inference stays bf16 (plain causal
    attention of short texts by two bf16 products, anything else by SDPA). All give the fp32
    result to bf16's rounding, and the gradients follow the fp32 ones."""
    torch.manual_seed(0)
    attn = Attention(16, 4, 2, 8, bias=True, proj_bias=True, causal=causal)
    rope = RoPE(8, 64, 10000.0)
    x = torch.randn(3, 12, 16, requires_grad=True)
    lengths = torch.tensor([12, 7, 4])
    seen = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def sdpa(q, *a, **k):
        seen.append(q.dtype)
        return real_sdpa(q, *a, **k)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    ref = attn(x, rope, None, lengths)
    ref.square().sum().backward()
    ref_grad = x.grad.clone()
    x.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, rope, None, lengths)
        with torch.no_grad():
            frozen = attn(x, rope, None, lengths)
    out.float().square().sum().backward()
    # the reference, the training forward; then inference: no SDPA call where it is causal
    assert seen == [torch.float32, torch.float32] + ([] if causal else [torch.bfloat16])
    assert out.dtype == frozen.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(frozen.float(), ref, atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(x.grad, ref_grad, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("heads,kv,T,scale", [(9, 3, 16, None), (4, 4, 33, None),
                                              (8, 2, 128, 0.3)])
def test_bf16_causal_attention_matches_sdpa(heads, kv, T, scale):
    """The explicit bf16 route (short causal texts, no grad) equals fp32 SDPA with the same
    grouped heads and scale, to bf16's rounding; longer texts go to SDPA."""
    torch.manual_seed(0)
    q = torch.randn(3, heads, T, 16)
    k, v = torch.randn(3, kv, T, 16), torch.randn(3, kv, T, 16)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(heads // kv, 1), v.repeat_interleave(heads // kv, 1),
        is_causal=True, scale=scale)
    out = causal_attention_bf16(q, k, v, scale)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for t in (T, MATH_MAX_T + 1):
            x = [torch.randn(1, heads, t, 16), torch.randn(1, kv, t, 16),
                 torch.randn(1, kv, t, 16)]
            torch.nn.functional.scaled_dot_product_attention = lambda *a, **kw: (
                calls.append(a[0].shape[2]) or real(*a, **kw))
            try:
                attend(*x, None, True, 0.0, scale, {"enable_gqa": True} if kv != heads else {})
            finally:
                torch.nn.functional.scaled_dot_product_attention = real
    assert calls == [MATH_MAX_T + 1]
