"""Quality harness (issue 14): gptcls' defaults against classical baselines on the real data.

Datasets (each split once, written as train/validation/test.csv under OUT/data/<dataset>, and
given to gptcls as --train/--validation/--test, so every contender sees the same rows):
  sms-chapter   the SMS file balanced by undersampling, the chapter's random 70/10/20 split,
                split seed 123 (exactly what `gptcls train --data SMSSpamCollection` does)
  sms-natural   all 5,574 messages, stratified 70/10/20, no balancing (`--balance none`)
  ag-news       the 7,600 AG News test rows, stratified 70/10/20; text = title + description
                joined as `--text-column title,description` does
  trec-coarse   TREC, 6 coarse labels: train_5500 -> stratified 90/10 train/validation,
                TREC_10 -> test (`--format trec --label-level coarse`)
  trec-fine     the same split with the 50 fine labels (`--label-level fine`)
Labels seen in only 1-2 rows of a dataset are dropped from all three splits, as gptcls' loader
does (data/rare.py), before anything trains.

Contenders: gptcls with its defaults (the backbone's recipe) for each --models backbone at each
--seeds training seed, one child process per run (a failed run is a row with its error; a
rerun with the same --out reuses finished runs); and TF-IDF word 1-2 / char_wb 2-5 / both x
logistic regression / linear SVM, C in {0.1, 1, 10, 100} chosen on validation macro-F1, refitted
on train, tested once (bench/common.py). The baseline with the best validation macro-F1 is the
"selected" one (marked *) that the target is checked against: gptcls' test errors <= 0.7x the
baseline's, both 1 - accuracy and 1 - macro-F1, and on sms-chapter <= 3 errors of 300.

    .venv/bin/python bench/quality.py --out runs/quality          # the default backbone
    .venv/bin/python bench/quality.py --models offline --out runs/quality   # every offline one
    .venv/bin/python bench/quality.py --baselines-only --out /tmp/q          # seconds-minutes
    .venv/bin/python bench/quality.py --models gpt2-tiny --weights random --limit 200 \\
        --seeds 123 --datasets sms-chapter,trec-coarse --out /tmp/q-smoke  # a smoke check
    .venv/bin/python bench/quality.py --models gemma3-270m-q4 --datasets ag-news \
        --set trainable_blocks=2 --out runs/quality   # a recipe override, named in the table

Prints one Markdown table; writes OUT/quality.md, OUT/quality.csv (one row per run) and
OUT/quality.png. Columns: accuracy, macro-F1, ECE (gptcls: metrics.json's calibrated test ECE;
LR: its predict_proba; SVM: n/a), train s (gptcls: the run's total time, and the seeds after
the first reuse the frozen-trunk cache of OUT/trunk-cache; baselines: the refit with the chosen
C), predict msg/s (test texts / predict time, tokenizing included). Timings on a shared
machine are noisy. Needs scikit-learn and matplotlib (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    AG_NEWS_FILE,
    SMS_FILE,
    TREC_TEST_FILE,
    TREC_TRAIN_FILE,
    all_baselines,
    offline_presets,
    parse_set,
    set_label,
)
from quality_report import render, write_csv, write_plot

from gptcls.data.examples import Example
from gptcls.options import DEFAULT_MODEL

Split3 = tuple[list[Example], list[Example], list[Example]]
DATASETS = ("sms-chapter", "sms-natural", "ag-news", "trec-coarse", "trec-fine")
POSITIVE = "spam"  # the class whose precision/recall/F1 the SMS rows also report


# --------------------------------------------------------------------------- datasets


def load_split(data: Path, **options: object) -> Split3:
    """What `gptcls train --data FILE [options]` trains, validates and tests on."""
    from gptcls.data.splits import load_splits
    from gptcls.options import DataOptions

    s = load_splits(DataOptions(data=str(data), **options), None, log=lambda _: None)
    return s.train, s.validation, s.test


def trec_split(level: str) -> Split3:
    """train_5500 -> train/validation (stratified 90/10, seed 123), TREC_10 -> test."""
    from gptcls.data.labelled import read_labelled

    train, _ = read_labelled(TREC_TRAIN_FILE, "trec", label_level=level)
    test, _ = read_labelled(TREC_TEST_FILE, "trec", label_level=level)
    by_label: dict[str, list[Example]] = {}
    for ex in train:
        by_label.setdefault(ex.label, []).append(ex)
    rng = random.Random(123)
    fit, validation = [], []
    for label in sorted(by_label):  # sorted: independent of which class comes first
        items = by_label[label]
        rng.shuffle(items)
        n_val = int(len(items) * 0.1 + 0.5)
        validation += items[:n_val]
        fit += items[n_val:]
    rng.shuffle(fit)
    rng.shuffle(validation)
    return fit, validation, test


SOURCES: dict[str, tuple[str, Callable[[], Split3]]] = {
    "sms-chapter": ("SMS balanced by undersampling, random 70/10/20, split seed 123",
                    lambda: load_split(SMS_FILE)),
    "sms-natural": ("SMS all rows, stratified 70/10/20, split seed 123",
                    lambda: load_split(SMS_FILE, balance="none")),
    "ag-news": ("AG News test.csv, title+description, stratified 70/10/20, split seed 123",
                lambda: load_split(AG_NEWS_FILE, text_column="title,description",
                                   balance="none")),
    "trec-coarse": ("TREC coarse: train_5500 stratified 90/10 (seed 123), TREC_10 as test",
                    lambda: trec_split("coarse")),
    "trec-fine": ("TREC fine: train_5500 stratified 90/10 (seed 123), TREC_10 as test",
                  lambda: trec_split("fine")),
}


def prepare(name: str, limit: int | None, root: Path) -> tuple[Split3, str]:
    """The dataset's three splits (at most `limit` rows each, a seeded sample), written to
    root/<name>/{train,validation,test}.csv; and a one-line description."""
    from gptcls.data.rare import drop_rare
    from gptcls.data.splits import write_split_csv

    what, make = SOURCES[name]
    parts = [list(p) for p in make()]
    if limit is not None:
        parts = [random.Random(0).sample(p, min(limit, len(p))) for p in parts]
        what += f"; --limit {limit}"
    dropped = drop_rare(parts, {}, keep=False, strict=False, log=lambda _: None)
    if dropped:
        what += (f"; {sum(dropped.values())} row(s) of {len(dropped)} label(s) seen in only 1-2 "
                 "rows dropped (as gptcls does)")
    labels = sorted({e.label for p in parts for e in p})
    for split, part in zip(("train", "validation", "test"), parts, strict=True):
        write_split_csv(root / name / f"{split}.csv", part, labels)
    sizes = "/".join(f"{len(p):,}" for p in parts)
    return (parts[0], parts[1], parts[2]), f"{what}: {sizes} rows, {len(labels)} labels"


# --------------------------------------------------------------------------- gptcls runs


def child(spec: dict) -> dict:
    """In a fresh process: train one backbone at one seed with gptcls' defaults (as
    `gptcls train` does), then time Classifier.predict on the test texts."""
    from gptcls.classifier.classifier import Classifier
    from gptcls.data.splits import read_split_csv
    from gptcls.device import configure_threads
    from gptcls.options import check_values
    from gptcls.recipes import options_with_recipe
    from gptcls.training.pipeline import run_training

    configure_threads()
    d = Path(spec["split_dir"])
    given = {"train": str(d / "train.csv"), "validation": str(d / "validation.csv"),
             "test": str(d / "test.csv"), "seed": spec["seed"], "weights": spec["weights"],
             "epochs": spec["epochs"], "trunk_cache_dir": spec["trunk_cache"],
             "balance": spec.get("balance"), **spec.get("set", {})}
    opts = options_with_recipe(spec["run_dir"], spec["model"], **given)
    check_values(opts)
    m = run_training(opts)
    sizes = {n: len(read_split_csv(d / f"{n}.csv")) for n in ("train", "validation", "test")}
    if m["examples"] != sizes:  # gptcls dropped rows: it no longer sees the baselines' rows
        raise SystemExit(f"gptcls trained on {m['examples']} rows, the split files have {sizes}")
    texts = [e.text for e in read_split_csv(d / "test.csv")]
    clf = Classifier.load(opts.out, device=opts.device)
    t0 = time.perf_counter()
    clf.predict(texts)
    predict_s = time.perf_counter() - t0
    report = m["reports"]["test"]
    row = {"contender": contender(spec["model"], spec.get("balance"), spec.get("set")),
           "seed": spec["seed"],
           "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
           "ece": (m.get("calibration") or {}).get("test", {}).get("ece_after"),
           "train_s": m["times"]["total_s"], "predict_per_s": len(texts) / predict_s,
           "n_test": report["n"]}
    spam = report["per_class"].get(POSITIVE)
    if spam is not None:
        row.update(pos_p=spam["precision"], pos_r=spam["recall"], pos_f1=spam["f1"])
    return row


def contender(model: str, balance: str | None, overrides: dict[str, str] | None = None) -> str:
    return (f"gptcls {model}" + (f" --balance {balance}" if balance else "")
            + (f" {set_label(overrides)}" if overrides else ""))


def run_gptcls(dataset: str, model: str, seed: int, args: argparse.Namespace) -> dict:
    """One run in a child process; its result is reused when the same spec finished before."""
    name = f"{model}-seed{seed}" + (f"-{args.balance}" if args.balance else "")
    name += "".join(f"-{k}={v}" for k, v in args.overrides.items())
    run_dir = args.out / "runs" / dataset / name
    spec = {"split_dir": str(args.out / "data" / dataset), "run_dir": str(run_dir),
            "model": model, "seed": seed, "weights": args.weights, "epochs": args.epochs,
            "trunk_cache": str(args.out / "trunk-cache"), "limit": args.limit}
    if args.balance:
        spec["balance"] = args.balance
    if args.overrides:
        spec["set"] = args.overrides
    result = run_dir.parent / f"{name}.json"
    if result.exists() and json.loads(result.read_text()).get("spec") == spec:
        return json.loads(result.read_text())
    log = run_dir.parent / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  gptcls {model} seed {seed} on {dataset} (log: {log})", file=sys.stderr)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                              stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        print(f"  failed ({tail[0]})", file=sys.stderr)
        return {"contender": contender(model, args.balance, args.overrides), "seed": seed,
                "error": tail[0]}
    row = json.loads((run_dir / "quality-row.json").read_text())
    row["spec"], row["wall_s"] = spec, time.perf_counter() - t0
    result.write_text(json.dumps(row))
    return row


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help=f"comma-separated subset of {','.join(DATASETS)}")
    ap.add_argument("--models", "--model", default=DEFAULT_MODEL,
                    help="comma-separated presets for gptcls, or 'offline' for every offline "
                    f"backbone; default {DEFAULT_MODEL}")
    ap.add_argument("--seeds", default="123,1,2", help="gptcls training seeds")
    ap.add_argument("--limit", type=int, help="at most N rows per split (a quick check)")
    ap.add_argument("--epochs", type=int, help="override the recipe's epochs (quick checks)")
    ap.add_argument("--weights", help="gptcls --weights (e.g. random, for a smoke check)")
    ap.add_argument("--balance", choices=("none", "weighted", "undersample"),
                    help="gptcls --balance for the training split (default: gptcls' own); the "
                    "rows are the same, the contender is named with it")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a recipe option in every gptcls run (repeatable), e.g. "
                    "trainable_blocks=2; the contender is named with it")
    ap.add_argument("--baselines-only", action="store_true", help="skip the gptcls runs")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="only the gptcls runs (e.g. on another machine); a later run with the "
                    "same --out reuses them and adds the baselines and targets")
    ap.add_argument("--out", type=Path, default=Path("runs/quality"),
                    help="splits, runs, quality.md/.csv/.png (default runs/quality)")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one run's spec, as JSON
    args = ap.parse_args(argv)
    try:
        args.overrides = parse_set(args.set)
    except ValueError as exc:
        ap.error(str(exc))
    if args.epochs is not None and "epochs" in args.overrides:
        ap.error("--epochs and --set epochs=N say the same thing: give one")
    if args.baselines_only and args.skip_baselines:
        ap.error("--baselines-only and --skip-baselines leave nothing to run")
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(args.datasets) - set(DATASETS))
    if unknown or not args.datasets:
        ap.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(DATASETS)}")
    args.models = (offline_presets() if args.models == "offline"
                   else [m.strip() for m in args.models.split(",") if m.strip()])
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        spec = json.loads(args.child)
        row = child(spec)
        (Path(spec["run_dir"]) / "quality-row.json").write_text(json.dumps(row))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    notes: dict[str, str] = {}
    for dataset in args.datasets:
        print(f"{dataset}: splitting", file=sys.stderr)
        (train, validation, test), notes[dataset] = prepare(dataset, args.limit,
                                                             args.out / "data")
        positive = POSITIVE if any(e.label == POSITIVE for e in train) else None
        if not args.skip_baselines:
            print(f"{dataset}: baselines", file=sys.stderr)
            rows += [{"dataset": dataset, "seed": None, **r}
                     for r in all_baselines(train, validation, test, positive)]
        if not args.baselines_only:
            rows += [{"dataset": dataset, **run_gptcls(dataset, model, seed, args)}
                     for model in args.models for seed in args.seeds]
        # After each dataset: an hours-long run shows its finished datasets as it goes.
        table = render(rows, notes, list(notes))
        (args.out / "quality.md").write_text(table + "\n")
        write_csv(rows, args.out / "quality.csv")
        write_plot(rows, list(notes), args.out / "quality.png")
    print(table)
    print(f"\nwritten: {args.out / 'quality.md'}, quality.csv, quality.png", file=sys.stderr)


if __name__ == "__main__":
    main()
