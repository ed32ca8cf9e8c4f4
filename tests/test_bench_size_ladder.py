"""bench/size_ladder.py: --precision reaches every run and the table records it (nothing
trains: the run itself is replaced)."""


import pytest
from helpers import bench_modules


@pytest.fixture(scope="module")
def ladder():
    with bench_modules("size_ladder") as (module,):
        yield module


def test_child_passes_precision(ladder, monkeypatch, tmp_path):
    seen = {}

    def fake_run(model, seed, data, out, trunk_cache, precision="auto"):
        seen.update(model=model, seed=seed, precision=precision)
        return {"model": model}

    monkeypatch.setattr(ladder, "one_run", fake_run)
    result = tmp_path / "r.json"
    ladder.main(["--out", str(tmp_path), "--precision", "int8",
                 "--child", "gemma3-270m-q4", "1", str(result)])
    assert seen == {"model": "gemma3-270m-q4", "seed": 1, "precision": "int8"}
    assert result.read_text() == '{"model": "gemma3-270m-q4"}'


def test_unknown_precision_is_refused(ladder):
    with pytest.raises(SystemExit):
        ladder.main(["--precision", "fp8"])


def test_table_records_asked_and_trunk_precision(ladder, capsys):
    row = {"model": "qwen", "seed": 123, "precision": "int8", "trunk_precision": "int8",
           "test_accuracy": 0.99, "errors": 3, "validation_accuracy": 0.98, "trunk_s": 100.0,
           "train_s": 200.0, "total_s": 400.0, "peak_rss_mb": 3000.0}
    ladder.print_table([row], 5)
    out = capsys.readouterr().out
    assert "| precision (trunk) |" in out
    assert "| qwen | 123 | int8 (int8) | 99.00% | 3 | 98.00% | 100 | 200 | 400 | 3000 |" in out
    assert "target met" in out
