"""bench/long_texts.py: --precision reaches training, and the table gives the trunk's rate as a
share of its own precision's GEMM rate and of the machine's best (made-up figures)."""

import json
from pathlib import Path

import pytest
from helpers import bench_modules


@pytest.fixture(scope="module")
def long_texts():
    with bench_modules("long_texts") as (module,):
        yield module


def test_train_run_passes_precision_and_long_text(long_texts, monkeypatch, tmp_path):
    import gptcls

    seen = {}

    def fake_train(out: str, **kwargs):
        seen.update(kwargs)
        Path(out).mkdir(parents=True)
        (Path(out) / "metrics.json").write_text(json.dumps({"trunk_precision": "int8"}))
        return "clf"

    monkeypatch.setattr(gptcls, "train", fake_train)
    run = long_texts.train_run(tmp_path / "run", "gpt2-tiny", "random", None, "chunk", "int8",
                               data="x.csv")
    assert seen == {"model": "gpt2-tiny", "weights": "random", "long_text": "chunk",
                    "precision": "int8", "data": "x.csv"}
    assert run["metrics"]["trunk_precision"] == "int8" and run["clf"] == "clf"


def test_table_names_own_and_best_gemm_share(long_texts, capsys):
    figures = {"long": {"max_length": 512, "truncated": 0.25, "seconds": 10.0,
                        "tokens": 1e6, "tokens_s": 1e5, "flop_token": 2e6, "trunk_blocks": 26,
                        "padding": 0.01, "padding_file_order": 0.4, "precision": "fp32"}}
    runs = {"long": {"metrics": {"examples": {"train": 2000, "test": 2000}}, "seconds": 60.0}}
    gemm = {"fp32": 250.0, "bf16": 150.0, "int8": 800.0}  # the trunk runs at 200 GFLOP/s
    long_texts.print_table("smollm", "pretrained", runs, figures, gemm)
    out = capsys.readouterr().out
    assert "fp32 250.0 GFLOP/s, bf16 150.0 GFLOP/s, int8 800.0 GOP/s (best: int8)" in out
    row = next(line for line in out.splitlines() if line.startswith("long"))
    assert "80% fp32" in row and "25% int8" in row and "200.0" in row
    assert "of GEMM" in out and "of best" in out
