"""A run on long texts: it says which max_length it chose, and its passes report progress in
plain lines when stderr is not a terminal."""

import csv
import json
import random
import re

from gptcls import progress
from gptcls.cli.main import main


def write_long_texts(path, n=80, seed=0) -> None:
    """Texts of 20-120 words, and two of ~2,000 words (GPT-2 tokens: well past 512)."""
    rng = random.Random(seed)
    words = "the film was slow but the acting kept me watching until the very end".split()
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            k = 2000 if i in (5, 50) else rng.randint(20, 120)
            w.writerow([" ".join(rng.choice(words) for _ in range(k)), "pos" if i % 2 else "neg"])


def test_long_text_run_says_its_max_length_and_reports_progress(tmp_path, capsys, monkeypatch):
    data = tmp_path / "reviews.csv"
    write_long_texts(data)
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)  # every pass reports, however quick
    rc = main(["train", "--model", "gpt2-tiny", "--weights", "random", "--data", str(data),
               "--out", str(tmp_path / "run"), "--epochs", "1", "--balance", "none",
               "--batch-size", "4"])
    assert rc == 0
    err = capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    n = config["max_length"]
    assert n % 16 == 0 and n < 512  # not the 2,000-word outliers
    line = next(x for x in err.splitlines() if x.startswith(f"max_length {n} (covers "))
    assert re.search(r"cut to their first \d+ tokens; --max-length N to change", line), line
    for name in ("trunk pass (train)", "epoch 1/1", "evaluation (test)"):
        assert re.search(rf"^{re.escape(name)}: 100% \(", err, re.M), (name, err)
    # In tokens: the texts run shortest first, so the ETA must weigh them by length.
    assert re.search(r"^trunk pass \(train\): \d+% \([\d,]+/[\d,]+ tokens\) [\d.,]+ tokens/s, "
                     r"ETA ", err, re.M), err
