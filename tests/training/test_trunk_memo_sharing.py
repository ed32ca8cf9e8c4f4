"""MEMO.sharing: in-process trainings over overlapping texts (bench/recipe_cv.py's folds) run
the frozen trunk once per text, with the same results as computing each split's trunk."""

import csv

import pytest

from gptcls.recipes import options_with_recipe
from gptcls.training.pipeline import run_training
from gptcls.training.trunk_memo import MEMO

WORDS = ["free prize call now", "see you at lunch", "win cash text stop", "ok running late",
         "claim your reward", "thanks for dinner", "urgent award waiting", "call me later"]


def write(path, rows) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)


def fold(tmp_path, name, rows):
    """train / validation / test files of one fold: `rows` split 3:1:1 in order."""
    d = tmp_path / name
    d.mkdir()
    n = len(rows) // 5
    parts = {"train": rows[: 3 * n], "validation": rows[3 * n: 4 * n], "test": rows[4 * n:]}
    for split, part in parts.items():
        write(d / f"{split}.csv", part)
    return {split: str(d / f"{split}.csv") for split in parts}


def train(files, out):
    opts = options_with_recipe(out, "gpt2-tiny", weights="random", epochs=1, batch_size=4,
                               seed=7, **files)
    return run_training(opts)


@pytest.fixture
def folds(tmp_path):
    rows = [(f"{WORDS[i % 8]} {i}", "spam" if i % 2 == 0 else "ham") for i in range(40)]
    # Two folds over the same 40 texts, the rows rotated by 8: the splits differ.
    return fold(tmp_path, "a", rows), fold(tmp_path, "b", rows[8:] + rows[:8])


def test_shared_memo_runs_the_trunk_once_per_text(tmp_path, folds):
    MEMO.clear()  # other tests' estimators leave texts in the process's memo
    before = MEMO.stats()["computed"]
    with MEMO.sharing(limit_mb=64):
        shared = [train(files, tmp_path / f"shared{i}") for i, files in enumerate(folds)]
        assert MEMO.stats()["texts"] == 40
    assert MEMO.stats()["computed"] - before == 40  # not 80: fold b reused fold a's texts
    assert MEMO.stats()["texts"] == 0  # emptied on leaving
    alone = [train(files, tmp_path / f"alone{i}") for i, files in enumerate(folds)]
    assert MEMO.stats()["computed"] - before == 40  # outside sharing the memo is not used
    for s, a in zip(shared, alone, strict=True):
        for split in ("train", "validation", "test"):
            assert s["final"][split]["loss"] == pytest.approx(a["final"][split]["loss"],
                                                              rel=1e-5, abs=1e-6)
            assert s["final"][split]["accuracy"] == a["final"][split]["accuracy"]
