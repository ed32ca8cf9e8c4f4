"""`gptcls grid` and bench/bonus_table.py: tiny models, 1 epoch, a slice of the real SMS file."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from helpers import TESTS

from gptcls.errors import GptclsError
from gptcls.training import grid

BENCH = TESTS.parent / "bench" / "bonus_table.py"


@pytest.fixture(scope="module")
def sms_slice(sms_path, tmp_path_factory) -> Path:
    """The first 600 lines of the real file (88 spam): enough to train, fast on 2 busy cores."""
    path = tmp_path_factory.mktemp("data") / "SMSSpamCollection"
    lines = sms_path.read_text(encoding="utf-8").splitlines(keepends=True)[:600]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(sms_slice) -> dict:
    return {"model": "gpt2-tiny", "weights": "random", "data": str(sms_slice), "epochs": 1,
            "batch_size": 32, "lr": 1e-3, "eval_freq": 1000, "eval_iter": 1}


@pytest.fixture(scope="module")
def grid_2x2(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "g"
    spec = grid.GridSpec(base=base, grid={"pooling": ["last", "first"],
                                          "trainable_blocks": [1, 2]})
    return out, spec, grid.run_grid(spec, out)


def test_set_values_are_typed_and_quotes_keep_text():
    g = grid.parse_set(["lr=1e-3,5e-5", "trainable-blocks=1,2", "head_lr=none",
                        "cache_trunk=true,False", "seed=\"5\",6", "data='a,b.csv'",
                        "pooling= last , first"])
    assert g == {"lr": [1e-3, 5e-5], "trainable_blocks": [1, 2], "head_lr": [None],
                 "cache_trunk": [True, False], "seed": ["5", 6], "data": ["a,b.csv"],
                 "pooling": ["last", "first"]}
    assert isinstance(g["trainable_blocks"][0], int)
    for bad in (["lr"], ["=1"], ["lr=1", "lr=2"], ["data='a.csv"]):
        with pytest.raises(GptclsError):
            grid.parse_set(bad)


def test_yaml_config_and_set_override(tmp_path):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text("base:\n  model: gpt2-tiny\n  max-length: 32\n  split: [0.8, 0.1, 0.1]\n"
                   "grid:\n  pooling: [last, first]\n  lr: 0.001\nout: somewhere\n")
    spec = grid.build_spec(cfg, ["lr=1e-4,1e-3", "max_length=16,32"], data="x.tsv")
    assert spec.base == {"model": "gpt2-tiny", "split": [0.8, 0.1, 0.1], "data": "x.tsv"}
    assert spec.grid == {"pooling": ["last", "first"], "lr": [1e-4, 1e-3],
                         "max_length": [16, 32]}
    assert spec.out == "somewhere"
    runs = grid.combinations(spec)
    assert len(runs) == 8 and runs[0]["pooling"] == "last" and runs[-1]["max_length"] == 32
    assert grid.options_for(runs[0], tmp_path).data.split == (0.8, 0.1, 0.1)
    cfg.write_text("base: {}\nruns: []\n")
    with pytest.raises(GptclsError, match="expected a mapping"):
        grid.load_config(cfg)


def test_valid_keys_come_from_the_option_schema():
    from dataclasses import fields

    from gptcls.options import OPTIONS, TrainConfig

    keys = grid.valid_keys()
    assert keys == set(OPTIONS)
    # every TrainConfig field but the class weights, which come from the data
    assert {f.name for f in fields(TrainConfig)} - {"class_weights"} <= keys
    assert {"model", "weights", "pooling", "trainable_blocks", "max_length", "data"} <= keys
    assert "out" not in keys


def test_bad_key_or_model_fails_before_any_run(monkeypatch, tmp_path, base):
    def boom(opts):
        raise AssertionError("nothing may train")

    monkeypatch.setattr("gptcls.training.pipeline.run_training", boom)
    spec = grid.GridSpec(base=base, grid={"pooling": ["last"], "bogus_key": [1, 2]})
    with pytest.raises(GptclsError, match="bogus_key.*valid keys.*trainable_blocks"):
        grid.run_grid(spec, tmp_path / "g")
    with pytest.raises(GptclsError, match="unknown model"):
        grid.run_grid(grid.GridSpec(base=base, grid={"model": ["gpt2-tiny", "gpt9"]}),
                      tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_2x2_grid_writes_runs_and_tables(grid_2x2):
    out, _, rows = grid_2x2
    names = ["1-pooling-last_trainable_blocks-1", "2-pooling-last_trainable_blocks-2",
             "3-pooling-first_trainable_blocks-1", "4-pooling-first_trainable_blocks-2"]
    assert [r["run"] for r in rows] == [f"0{n}" for n in names]
    with (out / "grid.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    for row, csv_row in zip(rows, table, strict=True):
        m = json.loads((out / row["run"] / "metrics.json").read_text())
        assert row["status"] == "ok"
        assert float(csv_row["test_accuracy"]) == pytest.approx(m["test_accuracy"])
        assert float(csv_row["validation_accuracy"]) == pytest.approx(m["validation_accuracy"])
        assert float(csv_row["test_macro_f1"]) == pytest.approx(m["reports"]["test"]["macro_f1"])
        assert csv_row["token_position"] == m["pooling"]
        assert int(csv_row["context_length"]) == m["max_length"]
        assert csv_row["trainable_blocks"] == str(row["settings"]["trainable_blocks"])
    assert [r["trainable_layers"] for r in rows] == ["last 1 block", "all 2 blocks"] * 2
    md = (out / "grid.md").read_text().splitlines()
    assert md[0].startswith("| run | model | weights | token position | trainable layers |")
    assert len(md) == 6 and all("gpt2-tiny" in line for line in md[2:])
    assert f"{rows[2]['test_accuracy'] * 100:.2f}%" in md[4]
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_reuses_finished_runs(grid_2x2, monkeypatch):
    out, spec, first = grid_2x2
    monkeypatch.setattr("gptcls.training.pipeline.run_training",
                        lambda opts: pytest.fail("a finished run was trained again"))
    again = grid.run_grid(spec, out)
    assert [r["status"] for r in again] == ["reused"] * 4
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in first]


def test_changed_settings_are_not_reused(tmp_path):
    run = tmp_path / "01-x"
    run.mkdir()
    (run / grid.SETTINGS_FILE).write_text(json.dumps({"lr": 0.001, "split": [0.7, 0.1, 0.2]}))
    (run / "metrics.json").write_text('{"test_accuracy": 0.5}')
    assert grid._completed(run, {"lr": 0.001, "split": (0.7, 0.1, 0.2)}) is not None
    assert grid._completed(run, {"lr": 0.001, "split": (0.7, 0.1, 0.2), "epochs": 2}) is None


@pytest.mark.parametrize("settings, message", [
    ({"trainable_blocks": 5}, "trainable blocks must be between 0 and 2, got 5"),
    ({"trainable": "lora", "lora_blocks": 3}, "LoRA blocks must be between 1 and 2, got 3"),
    ({"trainable": "lora", "lora_rank": 0}, "--lora-rank must be a positive integer"),
    ({"trainable": "lora", "lora_targets": "attn,ffn"}, "unknown LoRA target 'ffn'"),
    ({"lora_rank": 8}, "--lora-rank: only with --trainable lora"),
    ({"trainable": "last-2-blocks"}, "unknown trainable policy"),
    ({"pooling": "max"}, "unknown pooling 'max'"),
    ({"lr_schedule": "step"}, "unknown lr_schedule"),
    ({"context": "long"}, "--context must be"),
    ({"grad_accum": 0}, "grad_accum must be at least 1"),
])
def test_bad_options_fail_before_any_run(settings, message, base, tmp_path, monkeypatch):
    monkeypatch.setattr("gptcls.training.pipeline.run_training",
                        lambda opts: pytest.fail("nothing may train"))
    runs = [dict(base), {**base, **settings}]  # the bad one second: still nothing trains
    with pytest.raises(GptclsError, match=message):
        grid.run_runs(runs, tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_failed_run_is_recorded_and_the_grid_goes_on(base, tmp_path, monkeypatch):
    out = tmp_path / "g"
    missing = str(tmp_path / "gone.tsv")  # only found missing when the run loads its data
    spec = grid.GridSpec(base=base, grid={"data": [missing, base["data"]]})
    rows = grid.run_grid(spec, out)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "gone.tsv" in rows[0]["error"] and rows[0]["test_accuracy"] is None
    assert (out / rows[0]["run"] / "error.txt").is_file()
    assert "| failed: " in (out / "grid.md").read_text()
    calls = []

    def still_bad(opts):
        calls.append(opts.out)
        raise RuntimeError("still bad")

    monkeypatch.setattr("gptcls.training.pipeline.run_training", still_bad)
    again = grid.run_grid(spec, out)  # the failed run is retried, the finished one reused
    assert [r["status"] for r in again] == ["failed", "reused"] and len(calls) == 1


def test_cli_grid_prints_the_table(base, tmp_path, capsys):
    from gptcls.cli.main import main

    cfg = tmp_path / "grid.yaml"
    settings = {k: v for k, v in base.items() if k != "data"}
    cfg.write_text("base:\n" + "".join(f"  {k}: {v}\n" for k, v in settings.items()))
    rc = main(["grid", str(cfg), "--set", "pooling=mean", "--data", base["data"],
               "--out", str(tmp_path / "g")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| run | model | weights | token position |" in out
    assert "| 01-run | gpt2-tiny | random | mean |" in out
    assert (tmp_path / "g" / "01-run" / "metrics.json").is_file()
    assert main(["grid", str(cfg), "--set", "nope=1", "--out", str(tmp_path / "h")]) == 2
    assert "unknown grid key" in capsys.readouterr().err


# --- bench/bonus_table.py: the row -> settings mapping, no training ------------------------

@pytest.fixture(scope="module")
def bonus():
    spec = importlib.util.spec_from_file_location("bonus_table", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bonus_table"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bonus_table", None)


def test_bonus_table_has_the_books_19_rows(bonus):
    rows = bonus.BOOK_ROWS
    assert [r.n for r in rows] == list(range(1, 20))
    assert (rows[0].train, rows[0].val, rows[0].test) == (96.63, 99.33, 95.00)
    assert rows[18].test == 96.33 and rows[18].args == {"average_embeddings": True}
    assert bonus.parse_rows("1-3,19") == [1, 2, 3, 19] and len(bonus.parse_rows(None)) == 19


def test_bonus_rows_map_to_gptcls_settings(bonus):
    row = {r.n: r for r in bonus.BOOK_ROWS}
    keys = grid.valid_keys() - {"trainable", "causal_mask", "context", "grad_accum"}
    s1, _ = bonus.row_settings(row[1], "offline", keys)
    assert s1 == {"model": "smollm2-135m-instruct-q4", "weights": "pretrained",
                  "pooling": "last-position", "trainable_blocks": 1}
    assert bonus.row_settings(row[2], "gpt2", keys)[0]["pooling"] == "first"
    s3, note = bonus.row_settings(row[3], "gpt2", keys)
    assert (s3["trainable_blocks"], s3["train_final_norm"], note) == (0, False, "head only")
    assert bonus.row_settings(row[4], "gpt2", keys)[0]["trainable_blocks"] == 2
    s5, note = bonus.row_settings(row[5], "gpt2", keys)
    assert s5["trainable_blocks"] == 12 and "approximation" in note
    assert bonus.row_settings(row[5], "gpt2", keys | {"trainable"})[0]["trainable"] == "all"
    assert bonus.row_settings(row[6], "gpt2", keys)[0]["model"] == "gpt2-medium"
    s6, why = bonus.row_settings(row[6], "offline", keys)
    assert s6 is None and why.startswith("not yet supported")
    assert bonus.row_settings(row[11], "gpt2", keys)[0] is None  # no 'trainable' option
    s11, note = bonus.row_settings(row[11], "gpt2", keys | {"trainable"})
    assert (s11["trainable"], s11["lora_rank"], s11["lora_alpha"]) == ("lora", 16, 256.0)
    assert bonus.row_settings(row[13], "gpt2", keys)[0] is None
    assert bonus.row_settings(row[14], "gpt2", keys)[0]["batch_size"] == 1
    assert bonus.row_settings(row[15], "gpt2", keys)[0] is None
    s15, _ = bonus.row_settings(row[15], "gpt2", keys | {"grad_accum"})
    assert (s15["pooling"], s15["batch_size"], s15["grad_accum"]) == ("last", 1, 8)
    s13, _ = bonus.row_settings(row[13], "gpt2", keys | {"context"})
    assert (s13["context"], s13["pooling"]) == ("model", "last-position")
    s13, note = bonus.row_settings(row[13], "offline", keys | {"context"})
    assert s13["context"] == 1024 and "8192" in note  # SmolLM2's own context: 8x the work
    assert bonus.row_settings(row[16], "gpt2", keys)[0]["pooling"] == "last"
    assert bonus.row_settings(row[17], "gpt2", keys)[0] is None
    assert bonus.row_settings(row[17], "gpt2", keys | {"causal_mask"})[0]["causal_mask"] is False
    assert bonus.row_settings(row[18], "gpt2", keys)[0] == bonus.row_settings(row[1], "gpt2")[0]
    assert bonus.row_settings(row[19], "gpt2", keys)[0]["pooling"] == "mean"


def test_full_model_rows_can_run_fewer_epochs(bonus):
    row = {r.n: r for r in bonus.BOOK_ROWS}
    for n in (5, 10, 11):  # trainable all (pretrained, random), LoRA on every block
        s, note = bonus.fewer_epochs(*bonus.row_settings(row[n], "offline"), 1)
        assert s["epochs"] == 1 and "--full-model-epochs" in note
    for n in (1, 4, 6):  # a frozen trunk to cache, or not runnable offline: unchanged
        planned = bonus.row_settings(row[n], "offline")
        assert bonus.fewer_epochs(*planned, 1) == planned


def test_bonus_settings_are_valid_grid_keys_and_render(bonus):
    planned = {r.n: bonus.row_settings(r, "gpt2") for r in bonus.BOOK_ROWS}
    assert all(s is not None for s, _ in planned.values())  # every row runs on GPT-2
    grid.check_keys({k for s, _ in planned.values() if s for k in s})
    planned = {r.n: bonus.row_settings(r, "offline") for r in bonus.BOOK_ROWS}
    results = {1: {"status": "ok", "train_accuracy": 0.9, "validation_accuracy": 0.95,
                   "test_accuracy": 0.9667, "time_s": 12.0},
               2: {"status": "failed", "error": "RuntimeError: boom"}}
    table = bonus.comparison_table(bonus.BOOK_ROWS, planned, results).splitlines()
    assert len(table) == 21
    assert "| 96.63 / 99.33 / 95.00 | 90.00 / 95.00 / 96.67 | 12 |" in table[2]
    assert "| failed |" in table[3] and "boom" in table[3]
    assert "not yet supported" in table[7]  # row 6: gpt2-medium has no offline counterpart


def test_bonus_table_script_trains_and_prints(bonus, base, tmp_path, monkeypatch, capsys):
    """Row 10 (random weights, everything trains) on gpt2-tiny; row 6 has no offline model."""
    monkeypatch.setitem(bonus.FAMILIES, "offline", {"small": "gpt2-tiny"})
    monkeypatch.setattr("sys.argv", ["bonus_table.py", "--rows", "10,6", "--quick",
                                     "--data", base["data"], "--out", str(tmp_path),
                                     "--set", "batch_size=32", "--set", "eval_freq=1000",
                                     "--set", "pooling=first"])
    bonus.main()
    lines = capsys.readouterr().out.splitlines()
    row10 = next(line for line in lines if line.startswith("| 10 |"))
    m = json.loads((tmp_path / "row10" / "metrics.json").read_text())
    assert f"{m['test_accuracy'] * 100:.2f} |" in row10 and "trainable=all" in row10
    assert m["train_config"]["batch_size"] == 32 and m["pooling"] == "last-position"  # row wins
    assert "not yet supported" in next(line for line in lines if line.startswith("| 6 |"))
    assert (tmp_path / "bonus_table.md").is_file() and (tmp_path / "grid.md").is_file()
