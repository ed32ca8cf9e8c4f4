"""`gptcls train`: its flags (from gptcls.options) and the command. Torch-free until it runs."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from gptcls.cli.common import EXAMPLES, add_options, given_options, print_predictions
from gptcls.options import RunOptions, check_values, default_run_dir
from gptcls.recipes import options_with_recipe

_LOG = logging.getLogger(__name__)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier and save a run directory")
    p.add_argument("--out", metavar="RUN_DIR",
                   help="run directory to write (default: runs/<data file name>, or "
                   "runs/sms-spam for the SMS Spam Collection)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a checkpointed run that was interrupted (its own options)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the options and the data, print what would be trained on, and "
                   "write nothing")
    p.add_argument("--classify", nargs="*", default=None, metavar="TEXT",
                   help="texts to classify after training (default: the chapter's two "
                   "examples for spam/ham labels, else the first two texts of the test split; "
                   "none: --classify alone)")
    add_options(p)


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume:
        opts, started = _resumed(args.resume)
    else:
        opts, started = train_options(args), False
    if args.dry_run:
        dry_run(opts)
        return
    from gptcls.classifier.classifier import Classifier
    from gptcls.device import configure_threads
    from gptcls.training.pipeline import run_training

    configure_threads()
    m = run_training(opts, resume=started)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 alone reports (and wrote the run directory)
    _print_training_summary(m, opts.out)
    texts = default_examples(m["labels"], Path(opts.out)) if args.classify is None \
        else args.classify
    if texts:
        print_predictions(Classifier.load(opts.out, device=opts.device), texts)


def default_examples(labels: list[str], run_dir: Path) -> list[str]:
    """What a run classifies when --classify is not given: the chapter's two messages for a
    spam/ham classifier; for any other labels (SMS examples mean nothing to a news classifier)
    the first two texts of the run's test split, their true labels said first."""
    if sorted(label.lower() for label in labels) == ["ham", "spam"]:
        return EXAMPLES
    from gptcls.data.splits import read_split_csv

    test = run_dir / "test.csv"
    examples = read_split_csv(test)[:2] if test.is_file() else []
    if examples:
        _LOG.info(f"the first {len(examples)} texts of the test split ({test}; true labels: "
                  f"{', '.join(ex.label for ex in examples)}):")
    return [ex.text for ex in examples]


def _resumed(run_dir: str) -> tuple[RunOptions, bool]:
    from gptcls.training.pipeline import resume_options

    opts, started = resume_options(run_dir)
    if started:
        _LOG.info(f"resuming {run_dir} with the options it started with")
    else:
        _LOG.info(f"{run_dir} stopped before its first checkpoint: starting it over with the "
                  "options it started with")
    return opts, started


def train_options(args: argparse.Namespace) -> RunOptions:
    """The run's options: defaults, the model's recipe, then the flags given."""
    given = given_options(args)
    opts = options_with_recipe(args.out or default_run_dir(given), **given)
    check_values(opts)  # bad values fail here, before torch is imported
    return opts


def dry_run(opts: RunOptions) -> None:
    """Resolve and check the options, read, check and split the data; write nothing."""
    from gptcls.data.splits import describe_splits, load_splits
    from gptcls.evaluation.prior import decide_prior
    from gptcls.recipes import describe
    from gptcls.training.pipeline import check_options

    check_options(opts)
    splits = load_splits(opts.data, None)  # its messages: the log
    decide_prior(opts.prior, splits, chapter=not (opts.data.data or opts.data.train))  # labels
    print(describe(opts))
    print(f"run directory: {opts.out} (not written: --dry-run)")
    print(describe_splits(splits))


def _print_training_summary(m: dict, out: Path) -> None:
    from gptcls.evaluation.metrics import format_report

    t = m["times"]
    print(f"model: {m['model']} ({m['weights']} weights), run directory: {out}")
    if "search" in m:  # --search: the tries and the recipe chosen on validation
        print(m["search"]["line"])
    print("Test set:")
    print(format_report(m["reports"]["test"]))
    print(f"Training accuracy: {m['train_accuracy'] * 100:.2f}%")
    print(f"Validation accuracy: {m['validation_accuracy'] * 100:.2f}%")
    print(f"Test accuracy: {m['test_accuracy'] * 100:.2f}%")
    if "prior" in m:  # calibration and the class prior the decisions are made at
        from gptcls.evaluation.prior import format_decisions

        print(format_decisions(m, out))
    print(f"Training completed in {t['train_s'] / 60:.2f} minutes "
          f"(total {t['total_s']:.1f} s, trunk cache {t['trunk_cache_s']:.1f} s)")
