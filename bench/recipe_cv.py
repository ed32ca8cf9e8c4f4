"""Recipes compared by k-fold cross-validation on the chapter's SMS training + validation
messages (1,194), for a backbone whose 149 validation messages cannot tell recipes apart.

Each recipe (a setting of recipe options over the backbone's own) trains once per fold on the
other folds and is scored on its fold; the table sums the folds' errors. Test messages (the
chapter's 300) are never read: the chosen recipe is then run once per seed on the chapter's
split by bench/size_ladder.py. Every run shares one trunk-cache folder: the first recipe
computes each fold's frozen trunk (one cache file per split), the other recipes read them back
and cost their training only (for the same trainable depth).

    .venv/bin/python bench/recipe_cv.py --model gemma3-270m-q4 \\
        --grid "trainable_blocks=1,2;pooling=last,last+mean;head_lr=5e-5,1e-3"

Prints one Markdown table (recipe, CV errors of 1,194, CV accuracy, mean fold validation loss,
seconds), best first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
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
    """k folds, each class dealt round-robin after a seeded shuffle (stratified)."""
    out: list[list[Example]] = [[] for _ in range(k)]
    by_label: dict[str, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    i = 0
    for label in sorted(by_label):
        rows = by_label[label]
        random.Random(seed).shuffle(rows)
        for ex in rows:
            out[i % k].append(ex)
            i += 1
    return out


def run_fold(model: str, setting: dict, fold_dir: Path, run_dir: Path, cache: Path,
             seed: int) -> dict:
    from gptcls.recipes import options_with_recipe
    from gptcls.training.pipeline import run_training

    opts = options_with_recipe(run_dir, model, train=str(fold_dir / "train.csv"),
                               validation=str(fold_dir / "validation.csv"),
                               test=str(fold_dir / "validation.csv"), seed=seed,
                               trunk_cache_dir=str(cache), **setting)
    m = run_training(opts)
    val = m["reports"]["validation"]
    return {"n": val["n"], "errors": round((1 - val["accuracy"]) * val["n"]),
            "val_loss": m["final"]["validation"]["loss"]}


def main(argv: list[str] | None = None) -> None:
    from gptcls.data.splits import load_splits, write_split_csv
    from gptcls.log import cli_logging
    from gptcls.options import DataOptions

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
    for i, setting in enumerate(parse_grid(args.grid)):
        t0 = time.perf_counter()
        with cli_logging(30):  # warnings only: one line per fold below
            results = [run_fold(args.model, setting, root / f"fold{k}", root / f"r{i}-f{k}",
                                root / "trunk-cache", args.seed) for k in range(args.folds)]
        row = {"setting": setting, "errors": sum(r["errors"] for r in results),
               "n": len(pool), "per_fold": [r["errors"] for r in results],
               "val_loss": sum(r["val_loss"] for r in results) / len(results),
               "seconds": time.perf_counter() - t0}
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
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
