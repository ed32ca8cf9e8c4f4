"""bench/roofline.py: the FLOP count shared by bench/long_texts.py and bench/infer_speed.py,
the GEMM-limit figures and their formatting. No timing is asserted."""

import math
from types import SimpleNamespace

import pytest
from helpers import bench_modules, tiny_classifier


@pytest.fixture(scope="module")
def roofline():
    with bench_modules("roofline") as (module,):
        yield module


def test_forward_flop_counts_weights_per_token_and_causal_pairs(roofline):
    # 2 texts of 3 and 1 tokens: 4 tokens; causal pairs 3*4/2 + 1*2/2 = 7.
    flop = roofline.forward_flop([3, 1], n_weights=100, n_layers=2, n_heads=3, head_dim=5)
    assert flop == pytest.approx(2 * 100 * 4 + 2 * 4 * 3 * 5 * 7)


def test_forward_flop_of_nothing_is_zero(roofline):
    assert roofline.forward_flop([], 100, 2, 3, 5) == 0


def test_linear_weights_and_shapes_of_gpt2_tiny(roofline):
    blocks = list(tiny_classifier("gpt2-tiny").backbone.blocks)  # emb 16, hidden 64, 2 blocks
    # per block: query, key, value, out (16 x 16 each) + the MLP's 16 x 64 and 64 x 16
    assert roofline.linear_weights(blocks) == 2 * (4 * 16 * 16 + 2 * 16 * 64)
    assert roofline.linear_shapes(blocks) == [(16, 16), (16, 64), (64, 16)]
    assert roofline.linear_shapes([]) == []


def test_gemm_rates_measures_each_precision(roofline):
    rates = roofline.gemm_rates([(8, 16)], repeats=1, rows=32)
    assert set(rates) == {"fp32", "bf16", "int8"}
    assert all(r > 0 and math.isfinite(r) for r in rates.values())


def test_best_precision_and_gemm_line_name_the_fastest(roofline):
    rates = {"fp32": 290.0, "bf16": 165.0, "int8": 850.0}
    assert roofline.best_precision(rates) == "int8"
    assert roofline.best_precision({"fp32": math.nan, "bf16": 1.0}) == "bf16"
    assert roofline.gemm_line(rates) == ("fp32 290.0 GFLOP/s, bf16 165.0 GFLOP/s, "
                                         "int8 850.0 GOP/s (best: int8)")


def test_shares_against_own_and_best_rate(roofline):
    rates = {"fp32": 200.0, "bf16": 100.0, "int8": 800.0}
    assert roofline.shares(160.0, "fp32", rates) == ("80% fp32", "20% int8")
    assert roofline.shares(400.0, "int8", rates) == ("50% int8", "50% int8")


def test_message_limit_uses_distinct_sequences_and_all_blocks(roofline):
    model = tiny_classifier("gpt2-tiny", blocks=1)
    ids = [[1, 2, 3], [1, 2, 3], [4]]  # the duplicate runs once
    clf = SimpleNamespace(model=model, encode_long=lambda texts: (ids, [0, 1, 2]))
    rates = {"fp32": 2.0, "bf16": 1.0, "int8": 8.0}
    limit = roofline.message_limit(clf, ["a", "a", "b"], "fp32", rates)
    flop = roofline.forward_flop([3, 1], 2 * (4 * 16 * 16 + 2 * 16 * 64), 2, 2, 8)
    assert limit["flop_msg"] == pytest.approx(flop / 3)
    assert limit["tokens_msg"] == pytest.approx(4 / 3)
    assert limit["limit_msg_s"] == pytest.approx(2e9 / (flop / 3))
    assert limit["best"] == "int8"
    assert limit["best_limit_msg_s"] == pytest.approx(8e9 / (flop / 3))


def test_limit_cells_give_the_achieved_share(roofline):
    limit = {"precision": "bf16", "tokens_msg": 24.25, "flop_msg": 4.15e9, "gemm_rate": 400.0,
             "limit_msg_s": 96.4, "best": "int8", "best_limit_msg_s": 200.0}
    assert roofline.limit_cells(77.12, limit) == ["bf16", "24.2", "4.15e+09", "400.0", "96.4",
                                                  "80%", "39% int8"]
