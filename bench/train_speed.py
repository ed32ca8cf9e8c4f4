"""Training speed: chapter 6's run (GPT-2 small -> SMS spam), three ways, on one machine.

Setup, once (installs llms-from-scratch --no-deps, pandas, psutil, transformers into .venv):

    bash bench/setup.sh

Run (every contender, 5 epochs: about 45 minutes on 2 CPU cores, nearly all of it the book's
code and transformers'):

    .venv/bin/python bench/train_speed.py
    .venv/bin/python bench/train_speed.py --quick --limit 80       # a check in a few minutes
    .venv/bin/python bench/train_speed.py --quick --limit 80 --contenders gptcls-fp32,gptcls-int8

Contenders, one after another, each in its own subprocess (`--only NAME --json FILE`, run by
this script) so that peak memory is per contender:

  gptcls  gptcls.training.pipeline.run_training with the gpt2-small preset and its chapter
          recipe, every default on: the frozen trunk runs once per distinct text, in bf16
          where the CPU has native bf16 measured faster than fp32 (precision "auto";
          metrics.json says which).
  gptcls-fp32  the same with precision "fp32": the exact path.
  gptcls-int8  the same with precision "int8" (CPU): the frozen trunk's Linear layers in
          dynamic int8 (classifier/int8.py), the trainable block in fp32.
  book    the book's own code (pip package llms-from-scratch): ch04 GPTModel, ch06 SpamDataset,
          DataLoaders, train_classifier_simple and calc_accuracy_loader, as the chapter uses them.
  hf      transformers' GPT2ForSequenceClassification in a plain PyTorch loop, batches padded
          to their longest text (attention_mask).

All: gpt2-small shape with RANDOM weights (timing does not depend on the values), last
block + final norm + a new 2-class head trainable, AdamW lr 5e-5 weight decay 0.1, batch 8,
5 epochs (--quick: 1), a loss evaluation every 50 steps on 5 batches, accuracy on 5 batches
after each epoch, then accuracy on the full train/validation/test sets. The splits (balanced,
70/10/20, seed 123) are written once with gptcls.data.sms into WORKDIR/splits (and, in the
chapter's Label/Text format, WORKDIR/book); every contender trains on exactly those examples.
All use tiktoken's GPT-2 encoding as gptcls builds it offline (tiktoken.get_encoding("gpt2")
would download its files). Results: markdown tables on stdout and in WORKDIR/results.md,
everything in WORKDIR/results.json. The speed-up table gives, for each gptcls contender that
ran, the book's total time and training time over its own (target: >= 40x in total, issue 16)
and transformers' (>= 4x), with its test accuracy; a baseline that did not run is named with
the reason.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

PROCESS_START = time.perf_counter()

import torch  # noqa: E402
from _common import (  # noqa: E402
    BATCH,
    BOOK_LABELS,
    DEFAULT_DATA,
    EVAL_FREQ,
    EVAL_ITER,
    LR,
    SEED,
    SPLITS,
    WEIGHT_DECAY,
    book_model,
    device,
    split_examples,
)
from train_report import TITLES, ratio_table, results_table  # noqa: E402
from train_speed_hf import run_hf  # noqa: E402

from gptcls.data import examples as gexamples  # noqa: E402
from gptcls.data import partition  # noqa: E402
from gptcls.data import sms as gdata  # noqa: E402
from gptcls.data import splits as gsplits  # noqa: E402
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer  # noqa: E402

BENCH = Path(__file__).resolve().parent
CONTENDERS = ("gptcls", "gptcls-fp32", "gptcls-int8", "book", "hf")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the SMSSpamCollection file")
    p.add_argument("--workdir", type=Path, default=BENCH / "runs" / "train_speed")
    p.add_argument("--quick", action="store_true", help="1 epoch instead of 5")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument("--limit", type=int, default=None,
                   help="use about N training examples (validation/test shrink in proportion)")
    p.add_argument("--contenders", default=",".join(CONTENDERS),
                   help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each run")
    p.add_argument("--only", choices=CONTENDERS, help=argparse.SUPPRESS)  # child process
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # child process: result file
    args = p.parse_args(argv)
    args.epochs = args.epochs if args.epochs is not None else (1 if args.quick else 5)
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contender(s) {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    return args


# --------------------------------------------------------------------------- data (parent)


def prepare_data(args: argparse.Namespace, work: Path) -> dict:
    """Split once with gptcls.data.sms: gptcls CSVs in work/splits, the chapter's in work/book."""
    source = args.data
    if args.limit:
        source = write_subset(args.data, work / "SMSSpamCollection.subset", args.limit)
    examples = gdata.read_sms_file(source)
    labels = gexamples.label_mapping(examples, order=gdata.SMS_LABELS)
    examples = partition.balance_undersample(examples, seed=SEED)
    parts = dict(zip(SPLITS, partition.random_split(examples, seed=SEED), strict=True))
    for name, part in parts.items():
        gsplits.write_split_csv(work / "splits" / f"{name}.csv", part, labels)
        write_book_csv(work / "book" / f"{name}.csv", part)
    info = {"source": str(Path(source).resolve()), "sizes": {n: len(p) for n, p in parts.items()}}
    (work / "data.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def write_subset(source: Path, dest: Path, n_train: int) -> Path:
    """The first k spam and first k ham lines of `source` (file order), k chosen so that the
    70% training split of the 2k balanced examples holds about n_train texts."""
    k = math.ceil(n_train / (2 * 0.7))
    taken: dict[str, int] = {}
    lines = []
    for ex in gdata.read_sms_file(source):
        if taken.get(ex.label, 0) < k:
            taken[ex.label] = taken.get(ex.label, 0) + 1
            lines.append(f"{ex.label}\t{ex.text}\n")
    dest.write_text("".join(lines), encoding="utf-8")
    return dest


def write_book_csv(path: Path, examples: list[gexamples.Example]) -> None:
    """The chapter's CSV: columns Label (0 ham, 1 spam) and Text, as pandas' to_csv writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["Label", "Text"])
        writer.writerows([BOOK_LABELS[ex.label], ex.text] for ex in examples)


# --------------------------------------------------------------------------- gptcls


def run_gptcls(args: argparse.Namespace, work: Path, precision: str = "auto") -> dict:
    from gptcls.recipes import options_with_recipe
    from gptcls.training.pipeline import run_training

    out = work / f"gptcls_run_{precision}"
    t0 = time.perf_counter()
    opts = options_with_recipe(out, "gpt2-small", weights="random", epochs=args.epochs,
                               precision=precision, **gptcls_data_args(work))
    metrics = run_training(opts)
    total = time.perf_counter() - t0
    check_same_splits(out, work)
    t = metrics["times"]  # its total_s stops before the run directory is written
    train_s = t["trunk_cache_s"] + t["train_s"]
    return {"setup_s": t["total_s"] - train_s - t["final_eval_s"], "train_s": train_s,
            "eval_s": t["final_eval_s"], "save_s": total - t["total_s"], "total_s": total,
            "accuracy": {n: metrics[f"{n}_accuracy"] for n in SPLITS},
            "trunk_precision": metrics["trunk_precision"],
            "gptcls_times": t, "history": metrics["history"]}


def gptcls_data_args(work: Path) -> dict:
    """The split CSVs themselves where gptcls takes separate train/validation/test files;
    otherwise the source file, which gptcls splits with the same seed. Either way
    check_same_splits verifies that gptcls trained on exactly the shared splits."""
    try:
        from gptcls.options import DataOptions
    except ImportError:
        DataOptions = None  # noqa: N806
    if DataOptions is not None and "train" in {f.name for f in dataclasses.fields(DataOptions)}:
        return {n: str(work / "splits" / f"{n}.csv") for n in SPLITS}
    return {"data": json.loads((work / "data.json").read_text())["source"]}


def check_same_splits(run_dir: Path, work: Path) -> None:
    ours = split_examples(work)
    for name in SPLITS:
        theirs = gsplits.read_split_csv(run_dir / f"{name}.csv")
        if theirs != ours[name]:
            raise RuntimeError(f"gptcls's {name} split differs from {work / 'splits'}")


# --------------------------------------------------------------------------- the book's code


def run_book(args: argparse.Namespace, work: Path) -> dict:
    from llms_from_scratch.ch06 import calc_accuracy_loader, train_classifier_simple

    dev = device()
    t0 = time.perf_counter()
    loaders = book_loaders(work)
    model = book_model(dev)
    t1 = time.perf_counter()
    torch.manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    hist = train_classifier_simple(model, loaders["train"], loaders["validation"], optimizer,
                                   dev, num_epochs=args.epochs, eval_freq=EVAL_FREQ,
                                   eval_iter=EVAL_ITER)
    t2 = time.perf_counter()
    acc = {n: calc_accuracy_loader(loader, model, dev) for n, loader in loaders.items()}
    t3 = time.perf_counter()
    keys = ("train_losses", "val_losses", "train_accs", "val_accs", "examples_seen")
    return {"setup_s": t1 - t0, "train_s": t2 - t1, "eval_s": t3 - t2, "total_s": t3 - t0,
            "accuracy": acc, "history": dict(zip(keys, hist, strict=True)),
            "max_length": loaders["train"].dataset.max_length}


def book_loaders(work: Path) -> dict:
    """Datasets and DataLoaders exactly as chapter 6 builds them (section 6.3)."""
    from llms_from_scratch.ch06 import SpamDataset
    from torch.utils.data import DataLoader

    tokenizer = gpt2_tokenizer()  # .encode(text): tiktoken "gpt2" ids, built offline
    d = work / "book"
    train_ds = SpamDataset(csv_file=d / "train.csv", max_length=None, tokenizer=tokenizer)
    sets = {"train": train_ds}
    for name in SPLITS[1:]:
        sets[name] = SpamDataset(csv_file=d / f"{name}.csv", max_length=train_ds.max_length,
                                 tokenizer=tokenizer)
    expected = split_examples(work)
    for name, ds in sets.items():  # pandas must have read back exactly the shared texts
        if list(ds.data["Text"]) != [ex.text for ex in expected[name]]:
            raise RuntimeError(f"pandas read {d / name}.csv differently from the shared split")
    torch.manual_seed(SEED)
    return {name: DataLoader(dataset=ds, batch_size=BATCH, shuffle=name == "train",
                             num_workers=0, drop_last=name == "train")
            for name, ds in sets.items()}


# --------------------------------------------------------------------------- processes


RUNNERS = {"gptcls": run_gptcls, "gptcls-fp32": lambda a, w: run_gptcls(a, w, "fp32"),
           "gptcls-int8": lambda a, w: run_gptcls(a, w, "int8"), "book": run_book,
           "hf": run_hf}


def peak_rss_mb() -> dict[str, float]:
    """VmHWM: this process's own peak RSS. (ru_maxrss can include the parent's peak on
    Linux, which vfork+exec carries over; it is reported too.)"""
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"ru_maxrss_mb": ru / (1 << 20 if sys.platform == "darwin" else 1 << 10)}
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {**out, "peak_rss_mb": out["ru_maxrss_mb"]}
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return {**out, "peak_rss_mb": int(hwm.split()[1]) / 1024}


def run_child(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = RUNNERS[args.only](args, args.workdir)
    except ModuleNotFoundError as exc:  # the parent's table says which, not only "exit 1"
        args.json.write_text(json.dumps({"error": f"no module {exc.name!r}"}) + "\n")
        raise
    result.update(peak_rss_mb(), process_s=time.perf_counter() - PROCESS_START,
                  threads=torch.get_num_threads(), device=str(device()), epochs=args.epochs)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run_contender(name: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", name, "--json", str(out),
           "--workdir", str(work), "--epochs", str(args.epochs)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    print(f"\n=== {TITLES[name]} ===", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    if rc != 0 or not out.is_file():
        return {"error": json.loads(out.read_text())["error"] if out.is_file()
                else f"exit status {rc}"}
    return {**json.loads(out.read_text()), "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------- report


def report(results: dict[str, dict], info: dict, args: argparse.Namespace) -> str:
    first = next((r for r in results.values() if "threads" in r), {})
    lines = [f"## Training speed: gpt2-small (random weights) -> SMS spam, {args.epochs} "
             f"epoch(s), train/val/test = {'/'.join(str(info['sizes'][n]) for n in SPLITS)}",
             "", f"torch {torch.__version__}, device {first.get('device', '?')}, "
             f"{first.get('threads', '?')} threads" + (f", --limit {args.limit}"
                                                      if args.limit else ""), ""]
    lines += results_table(results) + [""] + ratio_table(results)
    lines += ["", *(f"{TITLES[n]}: frozen trunk computed in {r['trunk_precision']}"
                    for n, r in results.items() if "trunk_precision" in r)]
    lines += ["", "setup = reading the splits, tokenizing, building the model; gptcls's train "
              "time includes its frozen-trunk cache pass; save = gptcls writing its run "
              "directory (weights, metrics, plots; the others save nothing); total = all of "
              "these, timed in each contender's own process after its imports. Speed-ups "
              "compare totals."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only:
        return run_child(args)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    info = prepare_data(args, work)
    print(f"splits in {work / 'splits'}: {info['sizes']}", flush=True)
    results = {name: run_contender(name, args, work) for name in args.contenders}
    text = report(results, info, args)
    print("\n" + text)
    (work / "results.json").write_text(json.dumps(
        {"data": info, "epochs": args.epochs, "results": results}, indent=2) + "\n")
    (work / "results.md").write_text(text + "\n")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
