"""bench/accuracy.py's TF-IDF baseline is bench/common.py's tuned one (C chosen on validation),
read from a run directory's split files; no gptcls training."""

import csv
import random
from pathlib import Path

import pytest
from helpers import bench_modules

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def bench():
    with bench_modules("accuracy", "common") as modules:
        yield modules


def write_split_dir(root: Path) -> Path:
    """A run directory's train/validation/test.csv: spam and ham of word soup, a few overlaps."""
    rng = random.Random(0)
    words = {"spam": "win prize free call claim cash urgent txt".split(),
             "ham": "lunch see you later home mum dinner sorry".split()}
    for name, n in (("train", 80), ("validation", 30), ("test", 40)):
        with (root / f"{name}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["text", "label"])
            for i in range(n):
                label = "spam" if i % 2 else "ham"
                other = "ham" if label == "spam" else "spam"
                text = rng.choices(words[label], k=4) + rng.choices(words[other], k=2)
                w.writerow([" ".join(text), label])
    return root


def test_the_baseline_is_commons_tuned_one(bench, tmp_path):
    accuracy, common = bench
    assert accuracy.DEFAULT_DATA == common.SMS_FILE
    assert accuracy.tuned_baseline is common.tuned_baseline  # no TF-IDF of its own
    run_dir = write_split_dir(tmp_path)
    base = accuracy.tfidf_baseline(run_dir)
    from gptcls.data.splits import read_split_csv

    train, validation, test = (read_split_csv(run_dir / f"{n}.csv")
                               for n in ("train", "validation", "test"))
    row = common.tuned_baseline("char_wb 2-5", "LR", train, validation, test)
    assert base["C"] == row["C"] and base["C"] in common.C_GRID
    assert base["test_accuracy"] == pytest.approx(row["accuracy"])
    assert base["errors"] == round((1 - row["accuracy"]) * 40)
    assert 0.5 < base["test_accuracy"] <= 1.0 and base["seconds"] >= 0
