"""Backbone mechanics on tiny random models: shapes, causality, the pooled-position block."""

import pytest
import torch

from gptcls.errors import GptclsError
from gptcls.models import PRESETS, build_backbone, preset_config
from gptcls.models.generate import generate

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
