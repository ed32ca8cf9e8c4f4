"""The run directory's files: written with the usual permissions (0666/0777 & ~umask), never
0600, by every writer (weights, config, tokenizer, metrics, splits, plots, trunk cache,
checkpoint)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import tiny_classifier

from gptcls.classifier.config import ClassifierConfig
from gptcls.classifier.run_dir import load_run, save_run
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer
from gptcls.training.checkpoint import Checkpointer, LoopState


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """Relative path -> octal permission bits, for the root and everything under it."""
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in [root, *sorted(root.rglob("*"))]}


def write_csv(path: Path, n: int = 60) -> Path:
    rows = ["text,label"]
    for i in range(n):
        spam = i % 2 == 1
        rows.append(f"{'win a prize now call' if spam else 'see you at lunch'} {i},"
                    f"{'spam' if spam else 'ham'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_trained_run_directory_gets_the_usual_permissions(tmp_path, umask_022):
    from gptcls.cli.main import main

    out = tmp_path / "run"
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--epochs", "1",
               "--data", str(write_csv(tmp_path / "small.csv")), "--out", str(out),
               "--trunk-cache-dir", str(out / "trunk-cache")])
    assert rc == 0
    found = modes(out)
    for name in ("model.safetensors", "config.json", "metrics.json", "train.csv"):
        assert name in found  # the writers this test is about did write
    assert list((out / "trunk-cache").glob("trunk-*.safetensors"))
    wrong = {name: mode for name, mode in found.items()
             if mode != ("0o755" if (out / name).is_dir() else "0o644")}
    assert not wrong, f"files not 0644 / directories not 0755 under umask 022: {wrong}"


def test_save_run_and_checkpoints_follow_the_umask_not_a_fixed_mode(tmp_path):
    old = os.umask(0o027)
    try:
        model = tiny_classifier()
        config = ClassifierConfig(model=model.backbone.config, labels=["a", "b"], max_length=8,
                                  tokenizer={})
        save_run(tmp_path / "run", config, model, gpt2_tokenizer())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        ckpt = Checkpointer(tmp_path / "run" / "checkpoint", every=1)
        ckpt.save(model, opt, sched, torch.Generator(), LoopState())
    finally:
        os.umask(old)
    found = modes(tmp_path / "run")
    assert found["model.safetensors"] == found["config.json"] == "0o640"
    assert found["checkpoint/train-state.pt"] == "0o640"
    assert found["checkpoint"] == "0o750"
    assert not list((tmp_path / "run").rglob("*.tmp"))
    _, loaded, _ = load_run(tmp_path / "run")  # and what was written reads back
    x = torch.tensor([[1, 2, 3]])
    # Same weights; a BLAS may still round differently for differently aligned copies.
    torch.testing.assert_close(loaded(x, torch.tensor([3])), model.eval()(x, torch.tensor([3])),
                               atol=1e-6, rtol=0)
