"""Accuracy on the chapter's SMS setup: the default backbone and recipe vs a TF-IDF baseline.

Balanced data, random 70/10/20 split (seed 123, 300 test messages); the default backbone
(smollm2-135m-instruct-q4, offline) with its default recipe at several training seeds, against
character 2-5-gram TF-IDF + logistic regression fitted on the same split in the same run, its C
chosen on the validation split (bench/common.py's tuned baseline, as quality.py's).

    .venv/bin/python bench/accuracy.py                 # seeds 123,1,2,3
    .venv/bin/python bench/accuracy.py --seeds 123 --model gpt2-small

The seeds share one split, hence one frozen-trunk pass: it is computed for the first seed and
read back from ROOT/trunk-cache for the others (the run's trunk_cache_s shows which).

Targets (issue 3): >= 98.67% test accuracy (<= 4 errors of 300) at seed 123, >= 98.0% at 1, 2, 3.
Needs scikit-learn (the dev extra).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import SMS_FILE as DEFAULT_DATA
from common import tuned_baseline

BASELINE = ("char_wb 2-5", "LR")  # bench/common.py's features and classifier


def tfidf_baseline(run_dir: Path) -> dict:
    """The TF-IDF baseline on a run directory's split files: C chosen on its validation split,
    fitted on train, scored on test once."""
    from gptcls.data.splits import read_split_csv

    train, validation, test = (read_split_csv(run_dir / f"{n}.csv")
                               for n in ("train", "validation", "test"))
    row = tuned_baseline(*BASELINE, train, validation, test)
    return {"test_accuracy": row["accuracy"], "C": row["C"],
            "errors": round((1 - row["accuracy"]) * row["n_test"]), "seconds": row["train_s"]}


def main() -> None:
    from gptcls.options import DEFAULT_MODEL
    from gptcls.recipes import options_with_recipe, recipe_for
    from gptcls.training.pipeline import run_training

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--weights", default="pretrained")
    ap.add_argument("--seeds", default="123,1,2,3")
    ap.add_argument("--out", help="keep run directories here (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="gptcls-accuracy-"))
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        opts = options_with_recipe(root / f"seed{seed}", args.model, weights=args.weights,
                                   data=args.data, seed=seed,
                                   trunk_cache_dir=str(root / "trunk-cache"))
        m = run_training(opts)
        errors = round((1 - m["test_accuracy"]) * m["examples"]["test"])
        rows.append((f"gptcls {args.model} (seed {seed})", m["train_accuracy"],
                     m["validation_accuracy"], m["test_accuracy"], errors, m["times"]["total_s"]))
    base = tfidf_baseline(root / f"seed{args.seeds.split(',')[0]}")
    rows.append((f"TF-IDF char 2-5 + logistic regression (C={base['C']:g}, chosen on "
                 "validation)", None, None, base["test_accuracy"], base["errors"],
                 base["seconds"]))
    print(f"\nrecipe: {recipe_for(args.model)}\n")
    print("| contender | train acc | val acc | test acc | test errors | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, tr, va, te, err, sec in rows:
        fmt = lambda v: "–" if v is None else f"{v * 100:.2f}%"  # noqa: E731
        print(f"| {name} | {fmt(tr)} | {fmt(va)} | {fmt(te)} | {err} | {sec:.0f} |")
    seeds = [int(s) for s in args.seeds.split(",")]
    for (name, _, _, te, errors, _), seed in zip(rows, seeds, strict=False):
        # In errors, not a rounded percentage: 98.67% means 296 of 300 (0.98666...).
        allowed = 4 if seed == 123 else 6
        print(f"target {'met' if errors <= allowed else 'MISSED'}: {name} {te * 100:.2f}% "
              f"({errors} errors; target <= {allowed} of 300, "
              f"{'>= 98.67%' if seed == 123 else '>= 98.00%'})")


if __name__ == "__main__":
    main()
