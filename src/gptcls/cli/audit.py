"""`gptcls audit`: probable label errors and duplicates of a labelled file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gptcls.cli.common import add_options
from gptcls.options import PRECISIONS, READ_OPTIONS

# The audit reports labels as the file writes them (the rows to fix): no --label-names.
_READ = tuple(n for n in READ_OPTIONS if n not in ("data", "label_names"))
_MODEL = ("model", "weights", "cache", "pooling", "max_length", "truncate", "device")


def add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="find probable label errors, duplicates and texts "
                       "shared across splits in a labelled file")
    p.add_argument("data", nargs="?", help="labelled file to audit (or give --train, "
                   "--validation, --test)")
    p.add_argument("--out", metavar="DIR", help="where to write audit.csv, duplicates.csv and "
                   "summary.json (default: runs/audit-<data file name>)")
    p.add_argument("--folds", type=int, default=5,
                   help="heads fitted on k-1 folds, each scoring the fold it did not see "
                   "(default: 5)")
    p.add_argument("--seed", type=int, default=123,
                   help="seed of the folds and of --weights random (default: 123)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="compute dtype of the frozen backbone pass (default: auto)")
    add_options(p, (*_READ, "train", "validation", "test"), defaults=True)
    add_options(p, _MODEL, defaults=True)
    p.set_defaults(pooling=None)  # None: the model's recipe


def cmd_audit(args: argparse.Namespace) -> None:
    from gptcls.evaluation.audit_report import summary_lines, write_audit
    from gptcls.evaluation.audit_run import audit_rows, backbone_features, read_rows

    if args.folds < 2:  # before any reading or loading
        from gptcls.errors import GptclsError

        raise GptclsError(f"--folds must be at least 2, got {args.folds}")
    rows = read_rows(args.data, {s: getattr(args, s) for s in ("train", "validation", "test")},
                     **{n: getattr(args, n) for n in _READ})
    for report in rows.reports:
        print("\n".join(report.lines()))
    features, info = backbone_features(
        rows.texts, args.model, args.weights, args.cache, args.pooling, args.max_length,
        args.truncate, args.device, args.precision, args.seed)
    result = audit_rows(rows, features, args.folds, args.seed, info)
    source = args.data or args.train
    out = Path(args.out or Path("runs") / f"audit-{Path(source).stem}")
    print("\n".join(summary_lines(result, write_audit(result, out), out)))
