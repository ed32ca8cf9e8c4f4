"""bench/infer_speed.py's options and its GEMM-limit table (made-up results; nothing runs)."""


import pytest
from helpers import bench_modules


@pytest.fixture(scope="module")
def infer_speed():
    with bench_modules("infer_speed") as (module,):
        yield module


def limit(precision: str, limit_msg_s: float) -> dict:
    return {"precision": precision, "tokens_msg": 24.3, "flop_msg": 4.15e9, "gemm_rate": 100.0,
            "limit_msg_s": limit_msg_s, "best": "int8", "best_limit_msg_s": 50.0}


def test_model_option_names_the_gptcls_rows(infer_speed):
    args = infer_speed.parse_args(["--model", "smollm2-135m-instruct-q4", "--contenders",
                                   "gptcls,gptcls-int8"])
    assert args.model == "smollm2-135m-instruct-q4" and args.gemm_repeats == 5
    assert infer_speed.title("gptcls-int8", args.model) == (
        "gptcls smollm2-135m-instruct-q4 --precision int8")
    assert infer_speed.parse_args([]).model == "gpt2-small"


def test_every_gptcls_row_has_a_precision(infer_speed):
    gptcls_rows = [c for c in infer_speed.CONTENDERS if c not in ("chapter", "hf")]
    assert set(gptcls_rows) == set(infer_speed.PRECISION)


def test_limit_lines_rows_with_their_achieved_share(infer_speed):
    results = {"gptcls": {"seconds": 10.0, "limit": limit("fp32", 25.0)},
               "gptcls-int8": {"seconds": 5.0, "limit": limit("int8", 50.0)},
               "chapter": {"seconds": 100.0}, "gptcls-bf16": {"error": "boom"}}
    lines = infer_speed.limit_lines(results, 200, "gpt2-small")
    assert "(>= 80%)" in lines[0]
    assert len(lines) == 4  # header, rule, the two rows with a limit
    assert lines[2] == ("| gptcls gpt2-small fp32 | fp32 | 24.3 | 4.15e+09 | 100.0 | 25.0 | 80% "
                        "| 40% int8 |")
    assert lines[3].endswith("| int8 | 24.3 | 4.15e+09 | 100.0 | 50.0 | 80% | 80% int8 |")


def test_report_includes_the_limit_table(infer_speed):
    results = {"gptcls": {"seconds": 10.0, "probs": None, "load_s": 1.0,
                          "limit": limit("fp32", 25.0)}}
    text = infer_speed.report(results, 200, 120, None, "gpt2-small")
    assert "| gptcls gpt2-small fp32 | 20.0 | 10.0 | n/a |" in text
    assert "| gptcls row | precision |" in text
    assert infer_speed.limit_lines({"hf": {"seconds": 1.0}}, 10, "gpt2-small") == []
