"""Recipes compared by k-fold cross-validation on the chapter's SMS training + validation
messages (1,194), for a backbone whose 149 validation messages cannot tell recipes apart.

Each recipe (a setting of recipe options over the backbone's own) trains once per fold on the
other folds and is scored on its fold; the table sums the folds' errors. Test messages (the
chapter's 300) are never read: the chosen recipe is then run once per seed on the chapter's
split by bench/size_ladder.py. All runs share the process's trunk memo (MEMO.sharing): the
frozen trunk runs once per message (for a trainable depth and precision), whatever fold or
recipe needs it first; the rest cost their training only.

    .venv/bin/python bench/recipe_cv.py --model gemma3-270m-q4 \\
        --grid "trainable_blocks=1,2;pooling=last,last+mean;head_lr=5e-5,1e-3"

Prints one Markdown table (recipe, CV errors of 1,194, CV accuracy, mean fold validation loss,
seconds), best first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from common import SMS_FILE

from gptcls.data.examples import Example


def parse_grid(text: str) -> list[dict]:
    """"a=1,2;b=x,y" -> the product of the values, as option dicts (values as on the command
    line; an option not named keeps the recipe's value)."""
    axes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, values = part.partition("=")
        axes.append([(name.strip(), v.strip()) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] or [{}]


def folds(examples: list[Example], k: int, seed: int) -> list[list[Example]]:
    """k stratified folds, as the label audit makes them: copies of one text share a fold (a
    message in both a fold's training and its validation would flatter every recipe)."""
    from gptcls.evaluation.audit import assign_folds

    labels = sorted({ex.label for ex in examples})
    first: dict[str, int] = {}
    groups = [first.setdefault(ex.text, len(first)) for ex in examples]
    fold_of = assign_folds([labels.index(ex.label) for ex in examples], groups, k, seed)
    return [[ex for ex, f in zip(examples, fold_of, strict=True) if f == j] for j in range(k)]


def run_fold(model: str, setting: dict, fold_dir: Path, run_dir: Path, seed: int) -> dict:
    from gptcls.recipes import options_with_recipe
    from gptcls.training.pipeline import run_training

    opts = options_with_recipe(run_dir, model, train=str(fold_dir / "train.csv"),
                               validation=str(fold_dir / "validation.csv"),
                               test=str(fold_dir / "validation.csv"), seed=seed, **setting)
    m = run_training(opts)
    val = m["reports"]["validation"]
    return {"n": val["n"], "errors": round((1 - val["accuracy"]) * val["n"]),
            "val_loss": m["final"]["validation"]["loss"]}


def cv_row(args: argparse.Namespace, setting: dict, runs: Path, root: Path, n: int) -> dict:
    """One recipe trained on each fold: its summed errors, per fold, mean validation loss."""
    from gptcls.log import cli_logging

    t0 = time.perf_counter()
    with cli_logging(30):  # warnings only: one line per recipe below
        results = [run_fold(args.model, setting, root / f"fold{k}", runs / f"f{k}", args.seed)
                   for k in range(args.folds)]
    row = {"setting": setting, "errors": sum(r["errors"] for r in results), "n": n,
           "per_fold": [r["errors"] for r in results],
           "val_loss": sum(r["val_loss"] for r in results) / len(results),
           "seconds": time.perf_counter() - t0}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    from gptcls.data.splits import load_splits, write_split_csv
    from gptcls.options import DataOptions
    from gptcls.training.trunk_memo import MEMO

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--grid", default="", help='recipe options to vary, e.g. '
                    '"trainable_blocks=1,2;pooling=last,last+mean" (default: the recipe alone)')
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=123, help="training seed (and the folds')")
    ap.add_argument("--out", type=Path, help="keep runs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="gptcls-cv-"))
    splits = load_splits(DataOptions(data=str(SMS_FILE)), None, lambda _: None)
    pool = list(splits.train) + list(splits.validation)  # never the test split
    parts = folds(pool, args.folds, args.seed)
    for k, part in enumerate(parts):
        rest = [ex for j, p in enumerate(parts) if j != k for ex in p]
        write_split_csv(root / f"fold{k}" / "train.csv", rest, splits.labels)
        write_split_csv(root / f"fold{k}" / "validation.csv", part, splits.labels)
    rows = []
    with MEMO.sharing(limit_mb=8192):
        for i, setting in enumerate(parse_grid(args.grid)):
            rows.append(cv_row(args, setting, root / f"r{i}", root, len(pool)))
    rows.sort(key=lambda r: (r["errors"], r["val_loss"]))
    print(f"\n{args.model}, {args.folds}-fold CV on the chapter's {len(pool):,} training + "
          f"validation SMS, seed {args.seed}\n")
    print("| recipe options | CV errors | per fold | CV accuracy | mean val loss | seconds |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        name = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["setting"].items())
        print(f"| {name or '(the recipe)'} | {r['errors']} | {r['per_fold']} "
              f"| {(1 - r['errors'] / r['n']) * 100:.2f}% | {r['val_loss']:.4f} "
              f"| {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
