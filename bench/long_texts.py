"""Long texts with the defaults: the max_length chosen, what was cut, and the trunk pass's rate
beside the machine's matrix-product rate, for short (SMS) and long (synthesized) texts.

Run:

    .venv/bin/python bench/long_texts.py                                  # the default backbone
    .venv/bin/python bench/long_texts.py --model gpt2-tiny --weights random --epochs 1 \\
        --train-texts 400 --test-texts 400                               # a quick check (<2 min)

Long texts: AG News descriptions (../shared/data/ag_news/test.csv) of one class joined until a
document reaches a length drawn from a log-normal around 1,300 characters (some reach several
thousand), labelled with that class: --train-texts / --validation-texts / --test-texts
documents (2,000 / 500 / 2,000), each split from its own seed, so deterministic. Splits share
descriptions (7,600 of them feed 4,500 documents): fine for speed, not an accuracy benchmark.
Short texts: the SMS Spam Collection with the default split. Both train through
`gptcls.train` with the backbone's defaults (only --epochs, --precision and --long-text, if
given, change).

Figures per data set:
  max_length       as the run chose it (its one-line message says why); truncated: the share
                   of training texts longer than it.
  trunk tokens/s   real tokens of the distinct texts of all three splits (after truncation)
                   over the run's trunk-pass time (metrics.json times.trunk_cache_s).
  FLOP/token       bench/roofline.py's count over the frozen blocks: 2 x the weights of
                   their Linear layers + causal attention (QK^T and AV), per real token.
                   Padding is not counted: it is work, not useful work.
  GFLOP/s          FLOP/token x tokens/s (int8 trunk: GOP/s); "of GEMM": the % of the GEMM
                   rate of the trunk's precision (metrics.json trunk_precision); "of best":
                   the % of the machine's fastest rate of the three, named.
  padding          the share of the trunk pass's positions that are padding (exact), and of
                   the same texts in file order in batches of the same sizes (what length
                   sorting saves).
GEMM (bench/roofline.py): 4,096 rows at every Linear shape of one trunk block, best of
--gemm-repeats, total FLOP over total time: fp32 and bf16 torch.matmul, and int8 through
classifier/int8.py's quantized Linear on fp32 inputs (what the int8 trunk runs).
Timings are wall-clock on whatever else the machine runs.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from roofline import (
    GEMM_ROWS,
    best_precision,
    forward_flop,
    gemm_line,
    gemm_rates,
    linear_shapes,
    linear_weights,
    shares,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
AG_NEWS = DATA / "ag_news" / "test.csv"
SMS = DATA / "sms_spam_collection" / "SMSSpamCollection"
AG_LABELS = {"1": "world", "2": "sports", "3": "business", "4": "sci/tech"}


def long_documents(n: int, seed: int, mean_chars: int = 1300) -> list[tuple[str, str]]:
    """(text, label) documents of AG News descriptions of one class, ~mean_chars long."""
    by_label: dict[str, list[str]] = {}
    with AG_NEWS.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            by_label.setdefault(AG_LABELS[row["label"]], []).append(row["description"].strip())
    rng, labels = random.Random(seed), sorted(by_label)
    sigma = 0.6  # log-normal: mean = median x exp(sigma^2 / 2)
    median = mean_chars / math.exp(sigma**2 / 2)
    docs = []
    for _ in range(n):
        label = rng.choice(labels)
        target, parts, size = rng.lognormvariate(math.log(median), sigma), [], 0
        while size < target:
            parts.append(rng.choice(by_label[label]))
            size += len(parts[-1]) + 1
        docs.append((" ".join(parts), label))
    return docs


def write_split(path: Path, docs: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(docs)
    return path


def train_run(out: Path, model: str, weights: str, epochs: int | None,
              long_text: str = "truncate", precision: str = "auto", **data: str) -> dict:
    """Train with the defaults; the run's metrics, its Classifier and seconds end to end."""
    import json

    from gptcls import train

    extra = {"epochs": epochs} if epochs else {}
    extra.update(long_text=long_text, precision=precision)
    t0 = time.perf_counter()
    clf = train(out=str(out), model=model, weights=weights, **extra, **data)
    seconds = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    return {"metrics": metrics, "clf": clf, "seconds": seconds, "out": out}


def trunk_figures(run: dict) -> dict:
    """Tokens, FLOP/token, padding and the share truncated, from the run directory."""
    from gptcls.classifier.encoding import (
        fit_ids,
        length_batches,
        padding_fraction,
        unique_sequences,
    )
    from gptcls.classifier.windows import split_windows
    from gptcls.data.splits import read_split_csv

    m, clf = run["metrics"], run["clf"]
    cfg, n = clf.model.backbone.config, m["max_length"]
    raw = {s: clf.tokenizer.encode_batch([e.text for e in read_split_csv(run["out"] / f"{s}.csv")])
           for s in ("train", "validation", "test")}
    truncated = sum(len(s) > n for s in raw["train"]) / len(raw["train"])
    lengths: list[int] = []
    padded = real = in_order = 0.0
    for seqs in raw.values():
        if clf.config.long_text == "chunk":  # the windows the run's trunk pass saw
            seqs = split_windows(seqs, n)[0]
        ids = fit_ids(seqs, n, clf.tokenizer.pad_id, clf.config.pooling, clf.config.truncate)
        first, _ = unique_sequences(ids)
        ls = [len(ids[i]) for i in first]
        batches = length_batches(ls, GEMM_ROWS, max_batch=512)
        file_order, start = [], 0
        for b in batches:  # the same batch sizes, texts in file order
            file_order.append(list(range(start, start + len(b))))
            start += len(b)
        real += sum(ls)
        padded += sum(ls) / (1 - padding_fraction(ls, batches))
        in_order += sum(ls) / (1 - padding_fraction(ls, file_order))
        lengths += ls
    first_trainable = cfg.n_layers - m["trainable_blocks"]
    blocks = list(clf.model.backbone.blocks)[:first_trainable]
    flop = forward_flop(lengths, linear_weights(blocks), first_trainable, cfg.n_heads,
                        cfg.head_dim)
    seconds = m["times"]["trunk_cache_s"]
    return {"max_length": n, "truncated": truncated, "tokens": real, "seconds": seconds,
            "tokens_s": real / seconds if seconds else float("nan"),
            "flop_token": flop / real, "trunk_blocks": first_trainable,
            "padding": 1 - real / padded, "padding_file_order": 1 - real / in_order,
            "precision": m["trunk_precision"], "blocks": blocks}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="backbone (default: gptcls's default)")
    p.add_argument("--weights", default="pretrained")
    p.add_argument("--epochs", type=int, help="default: the backbone's recipe")
    p.add_argument("--train-texts", type=int, default=2000)
    p.add_argument("--validation-texts", type=int, default=500)
    p.add_argument("--test-texts", type=int, default=2000)
    p.add_argument("--no-sms", action="store_true", help="long texts only")
    p.add_argument("--long-text", choices=("truncate", "chunk"), default="truncate",
                   help="train with --long-text chunk: long texts become windows (trunc is "
                   "then the share of training texts cut into windows)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                   help="train with this --precision (the frozen trunk's compute dtype; "
                   "default auto)")
    p.add_argument("--gemm-repeats", type=int, default=5)
    p.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = p.parse_args(argv)
    from gptcls.options import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    root = Path(args.out or tempfile.mkdtemp(prefix="gptcls-long-"))
    root.mkdir(parents=True, exist_ok=True)
    counts = {"train": args.train_texts, "validation": args.validation_texts,
              "test": args.test_texts}
    files = {s: str(write_split(root / f"long-{s}.csv", long_documents(k, seed)))
             for seed, (s, k) in enumerate(counts.items(), start=1)}
    runs = {"long": train_run(root / "long", model, args.weights, args.epochs, args.long_text,
                              args.precision, **files)}
    if not args.no_sms:
        runs["sms"] = train_run(root / "sms", model, args.weights, args.epochs, args.long_text,
                                args.precision, data=str(SMS))
    figures = {name: trunk_figures(run) for name, run in runs.items()}
    blocks = figures["long"]["blocks"]
    gemm = gemm_rates(linear_shapes(blocks) or [(576, 576)], args.gemm_repeats)
    print_table(model, args.weights, runs, figures, gemm)
    return 0


def print_table(model: str, weights: str, runs: dict, figures: dict, gemm: dict) -> None:
    print(f"\n{model} ({weights} weights), {torch.get_num_threads()} threads; "
          f"GEMM at the trunk's shapes ({GEMM_ROWS} rows): {gemm_line(gemm)}")
    head = ("texts", "max_len", "trunc", "trunk_s", "tokens", "tok/s", "FLOP/tok", "GFLOP/s",
            "of GEMM", "of best", "pad", "pad unsorted", "run_s")
    print(f"{'':6}" + "".join(f"{h:>13}" for h in head))
    for name, f in figures.items():
        m = runs[name]["metrics"]
        rate = f["flop_token"] * f["tokens_s"] / 1e9
        cells = (sum(m["examples"].values()), f["max_length"], f"{f['truncated']:.1%}",
                 f"{f['seconds']:.1f}", f"{f['tokens']:,.0f}", f"{f['tokens_s']:,.0f}",
                 f"{f['flop_token']:.3g}", f"{rate:.1f}", *shares(rate, f["precision"], gemm),
                 f"{f['padding']:.2%}", f"{f['padding_file_order']:.1%}",
                 f"{runs[name]['seconds']:.0f}")
        print(f"{name:6}" + "".join(f"{c:>13}" for c in cells))
    print("(trunk: the frozen blocks below the trainable ones, "
          f"{figures['long']['trunk_blocks']} here, computed in "
          f"{figures['long']['precision']}; 'of best': against the fastest GEMM of the "
          f"machine, {best_precision(gemm)}; timings are noisy wall-clock)")


if __name__ == "__main__":
    sys.exit(main())
