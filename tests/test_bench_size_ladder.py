"""bench/size_ladder.py: --precision and --set reach every run and the table records them
(nothing trains: the run itself is replaced)."""


import pytest
from helpers import bench_modules


@pytest.fixture(scope="module")
def ladder():
    with bench_modules("size_ladder") as (module,):
        yield module


def test_child_passes_precision(ladder, monkeypatch, tmp_path):
    seen = {}

    def fake_run(model, seed, data, out, trunk_cache, precision="auto", overrides=None):
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


def test_set_overrides_reach_the_child_run(ladder, monkeypatch, tmp_path):
    seen = {}

    def fake_run(model, seed, data, out, trunk_cache, precision="auto", overrides=None):
        seen.update(overrides)
        return {"model": model}

    monkeypatch.setattr(ladder, "one_run", fake_run)
    ladder.main(["--out", str(tmp_path), "--set", "trainable-blocks=2", "--set", "epochs=3",
                 "--child", "smollm2-135m-instruct-q4", "123", str(tmp_path / "r.json")])
    assert seen == {"trainable_blocks": "2", "epochs": "3"}


def test_set_overrides_beat_the_recipe(ladder, monkeypatch, tmp_path):
    import gptcls.training.pipeline as pipeline

    seen = {}

    def fake_training(opts):
        seen.update(blocks=opts.trainable_blocks, epochs=opts.train.epochs,
                    lr=opts.train.lr)
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "run_training", fake_training)
    with pytest.raises(RuntimeError, match="stop here"):
        ladder.one_run("smollm2-135m-instruct-q4", 1, "data.csv", tmp_path / "run",
                       tmp_path / "cache", overrides={"trainable_blocks": "2", "epochs": "3"})
    assert seen == {"blocks": 2, "epochs": 3, "lr": 1e-4}  # lr: still the recipe's


@pytest.mark.parametrize("item", ["epochs", "foo=1", "seed=2"])
def test_set_refuses_what_is_not_a_recipe_option(ladder, item, capsys):
    with pytest.raises(SystemExit) as exc:
        ladder.main(["--set", item])
    assert exc.value.code == 2
    assert f"--set {item!r}: give NAME=VALUE with a recipe option" in capsys.readouterr().err
