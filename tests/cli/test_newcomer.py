"""Newcomer fixes: help on every option, `--file -`, run names from the data file, resuming a
run stopped before its first checkpoint, and `train --dry-run`."""

import argparse
import io
import json
import sys
from pathlib import Path

import pytest

from gptcls.cli.main import build_parser, main
from gptcls.options import default_run_dir
from gptcls.recipes import options_with_recipe


def test_every_option_of_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"train", "classify", "evaluate", "predict", "serve", "grid"}
    missing = [f"{name} {a.option_strings or a.dest}"
               for name, p in [("gptcls", parser), *sub.choices.items()]
               for a in p._actions
               if not isinstance(a, argparse._SubParsersAction) and not (a.help or "").strip()]
    assert missing == []


def test_classify_file_dash_reads_stdin(tiny_run, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("first from stdin\n\nsecond one\n"))
    assert main(["classify", str(tiny_run), "--file", "-"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[2] for line in out] == ["first from stdin", "second one"]


@pytest.fixture(scope="module")
def sms_head(sms_path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sms-head.tsv"
    path.write_bytes(b"".join(sms_path.open("rb").readlines()[:600]))
    return path


TINY = ["--model", "gpt2-tiny", "--weights", "random", "--epochs", "1", "--batch-size", "32",
        "--eval-freq", "1000", "--format", "sms", "--classify"]


def test_run_is_named_after_the_data_file(sms_head, tmp_path, monkeypatch, capsys):
    assert default_run_dir({}) == Path("runs/sms-spam")  # the SMS download, as before
    assert default_run_dir({"train": "x/train-part.csv"}) == Path("runs/train-part")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(sms_head), *TINY]) == 0
    assert "run directory: runs/sms-head" in capsys.readouterr().out
    assert (tmp_path / "runs" / "sms-head" / "metrics.json").is_file()


def test_resume_before_the_first_checkpoint_starts_over(sms_head, tmp_path, capsys):
    from gptcls.training.pipeline import CHECKPOINT_DIR, save_options

    run = tmp_path / "run"
    opts = options_with_recipe(run, "gpt2-tiny", weights="random", data=str(sms_head),
                               format="sms", epochs=1, batch_size=32, eval_freq=1000,
                               checkpoint_every=5)
    save_options(opts, run / CHECKPOINT_DIR / "options.json")  # killed right after this
    assert main(["train", "--resume", str(run), "--classify"]) == 0
    err = capsys.readouterr().err
    assert "stopped before its first checkpoint: starting it over" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_config"]["checkpoint_every"] == 5
    assert not (run / CHECKPOINT_DIR).exists()


def test_dry_run_prints_the_plan_and_writes_nothing(sms_head, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dry-run", "--data", str(sms_head), "--model", "gpt2-tiny",
                 "--format", "sms", "--pool", "mean"]) == 0
    out = capsys.readouterr().out
    assert "model: gpt2-tiny (pretrained weights)" in out and "--pooling mean" in out
    assert "--trainable-blocks" not in out  # gpt2's recipe: 1 block, the default
    assert "runs/sms-head (not written: --dry-run)" in out
    assert "ham" in out and "spam" in out  # the splits' labels
    assert list(tmp_path.iterdir()) == []


def test_dry_run_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "one-class.csv"
    bad.write_text("text,label\nhi,a\nyo,a\n")
    assert main(["train", "--dry-run", "--data", str(bad), "--model", "gpt2-tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("gptcls: error:") and "only one class" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one-class.csv"]
