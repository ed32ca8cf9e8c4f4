"""`gptcls train`: its options and the command (cli.py holds the other commands)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gptcls.errors import GptclsError


def _add_train(sub: argparse._SubParsersAction) -> None:
    from gptcls.classifier.model import POOLINGS, TRAINABLE_POLICIES, TRUNCATIONS
    from gptcls.data.splits import BALANCE_MODES
    from gptcls.training.loop import EARLY_STOPPING, LR_SCHEDULES, PRECISIONS
    from gptcls.training.pipeline import DEFAULT_MODEL

    p = sub.add_parser("train", help="fine-tune a classifier and save a run directory")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"backbone preset or path (default: {DEFAULT_MODEL})")
    p.add_argument("--weights", default="pretrained",
                   help="pretrained (default), random, or a path to local weights")
    _add_data_options(p, training=True)
    p.add_argument("--out", default="runs/sms-spam", help="run directory to write")
    p.add_argument("--cache", help="cache directory (default: $GPTCLS_CACHE or ~/.cache/gptcls)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--no-padding", action="store_true",
                   help="batches of one text, so nothing is ever padded (use --grad-accum N "
                   "for the effect of batch N)")
    p.add_argument("--lr", type=float, help="learning rate of the trainable blocks")
    p.add_argument("--head-lr", type=float, help="learning rate of the head (default: --lr)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--trainable-blocks", type=int,
                   help="how many top blocks to fine-tune (last-N-blocks), or to give LoRA "
                   "adapters (lora; default: all)")
    p.add_argument("--trainable", choices=TRAINABLE_POLICIES,
                   help="what trains besides the head and final norm: nothing (last-layer), the "
                   "last block, the last --trainable-blocks blocks, all blocks, or LoRA "
                   "adapters (default: the model's recipe, last-N-blocks)")
    p.add_argument("--train-embeddings", action="store_true", default=None,
                   help="also train the token (and position) embeddings")
    _add_lora_options(p)
    p.add_argument("--pooling", "--pool", choices=POOLINGS,
                   help="which outputs the head reads: last real token (GPT-2's default), "
                   "last+mean (SmolLM2's default), mean, first, or last-position (the book's)")
    p.add_argument("--max-length", type=int, help="cap on tokens per text")
    p.add_argument("--seed", type=int, help="training seed (default 123)")
    p.add_argument("--split-seed", type=int, default=123)
    p.add_argument("--split", default="0.7,0.1,0.2", help="train,validation,test fractions")
    p.add_argument("--balance", choices=BALANCE_MODES, default="undersample",
                   help="undersample the majority classes (default, the chapter's), keep the "
                   "data as it is (none), or weight the loss by inverse class frequency")
    p.add_argument("--truncate", choices=TRUNCATIONS, default="head",
                   help="keep the first (head) or last (tail) max-length tokens of long texts")
    p.add_argument("--threshold", type=float,
                   help="binary tasks: predict the second label when its probability >= this")
    p.add_argument("--max-fpr", type=float,
                   help="binary tasks: choose the threshold on validation for this false-"
                   "positive rate")
    p.add_argument("--eval-freq", type=int)
    p.add_argument("--eval-iter", type=int)
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="constant (default, the chapter's), or linear/cosine decay to 0")
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warmup steps")
    p.add_argument("--early-stopping", choices=EARLY_STOPPING,
                   help="score all of validation each epoch and keep the best epoch's weights")
    p.add_argument("--patience", type=int,
                   help="with --early-stopping: stop after this many epochs without improvement")
    p.add_argument("--context", default="longest",
                   help="tokens per text: longest (the longest training text, default), model "
                   "(the model's context length) or a number")
    p.add_argument("--no-causal-mask", dest="causal_mask", action="store_false", default=True,
                   help="let every token attend to every real token (bidirectional)")
    p.add_argument("--grad-accum", type=int,
                   help="micro-batches per optimizer step (with --batch-size 1: no padding at "
                   "all, the bonus table's rows 14-15)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="checkpoint every N steps and at each epoch end, for --resume")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a checkpointed run that was interrupted (its own options)")
    p.add_argument("--trunk-cache-dir", metavar="DIR",
                   help="keep frozen-trunk activations here and reuse them in later runs with "
                   "the same weights, texts, depth and precision (seeds, grids)")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="compute dtype of the frozen layers: auto (default: bf16 where the "
                   "hardware has native bf16 - CUDA, AVX512-BF16/AMX CPUs, about 2.5x faster - "
                   "else fp32), fp32 (exact) or bf16; the trained layers stay fp32 on CPU")
    p.add_argument("--no-cache-trunk", dest="cache_trunk", action="store_false", default=None,
                   help="run the frozen layers every step instead of caching their output")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--classify", nargs="*", default=None, metavar="TEXT",
                   help="texts to classify after training (default: two examples)")


def _add_lora_options(p: argparse.ArgumentParser) -> None:
    from gptcls.models.lora import DEFAULT_ALPHA, DEFAULT_RANK, DEFAULT_TARGETS

    p.add_argument("--lora-rank", type=int, help=f"LoRA rank (default {DEFAULT_RANK})")
    p.add_argument("--lora-alpha", type=float,
                   help=f"LoRA alpha; updates are scaled by alpha/rank (default {DEFAULT_ALPHA:g})")
    p.add_argument("--lora-targets",
                   help=f"comma-separated projections to adapt (default {DEFAULT_TARGETS}): "
                   "attn, mlp, all, or q, k, v, attn.proj, fc, mlp.proj (GPT-2), gate, up, down "
                   "(Llama)")
    p.add_argument("--no-merge-lora", dest="merge_lora", action="store_false", default=None,
                   help="save the LoRA adapters separately instead of merging them into the "
                   "weights (merge later with `gptcls merge`)")


def _add_data_options(p: argparse.ArgumentParser, training: bool) -> None:
    from gptcls.data.labelled import FORMATS

    p.add_argument("--data", help="labelled file: CSV, TSV, JSONL, Parquet or the headerless "
                   "SMSSpamCollection" + (" (default: download the SMS Spam Collection)"
                                          if training else ""), required=not training)
    if training:
        p.add_argument("--train", help="training file (with --validation and --test)")
        p.add_argument("--validation", help="validation file")
        p.add_argument("--test", help="test file")
    p.add_argument("--format", choices=FORMATS, help="file format (default: from the extension)")
    p.add_argument("--text-column", help="column holding the text (default: detected)")
    p.add_argument("--label-column", help="column holding the label (default: detected)")
    p.add_argument("--encoding", default="utf-8", help="text encoding, e.g. latin-1")
    p.add_argument("--strict", action="store_true",
                   help="reject rows with empty text or no label instead of dropping them")
    p.add_argument("--no-normalize-labels", dest="normalize_labels", action="store_false",
                   help="keep labels exactly as written (default: strip and case-fold)")


def cmd_train(args: argparse.Namespace) -> None:
    from gptcls.classifier.classifier import Classifier
    from gptcls.training.pipeline import resume_options, run_training

    if args.resume:
        opts = resume_options(args.resume)
        print(f"resuming {args.resume} with the options it started with", file=sys.stderr)
    else:
        opts = _train_options(args)
    if opts.weights == "random":
        print("NOTE: --weights random: the backbone is randomly initialised, not pretrained; "
              "expect chance-level features (the chapter's random-weights experiment).")
    m = run_training(opts, resume=bool(args.resume))
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 alone reports (and wrote the run directory)
    _print_training_summary(m, opts.out)
    from gptcls.cli.main import EXAMPLES, _print_predictions

    texts = EXAMPLES if args.classify is None else args.classify
    if texts:
        _print_predictions(Classifier.load(opts.out, device=args.device), texts)


def _train_options(args: argparse.Namespace):
    from gptcls.data.splits import parse_fractions
    from gptcls.training.pipeline import (
        check_model_name,
        options_with_recipe,
        parse_context,
        trainable_policy,
    )

    check_model_name(args.model)
    opts = options_with_recipe(
        Path(args.out), args.model, weights=args.weights, cache=args.cache,
        data=args.data, train=args.train, validation=args.validation, test=args.test,
        format=args.format, text_column=args.text_column, label_column=args.label_column,
        encoding=args.encoding, strict=args.strict, normalize_labels=args.normalize_labels,
        split=parse_fractions(args.split), truncate=args.truncate, threshold=args.threshold,
        max_fpr=args.max_fpr,
        epochs=args.epochs, batch_size=_batch_size(args), lr=args.lr, head_lr=args.head_lr,
        weight_decay=args.weight_decay, **_trainable_options(args),
        pooling=args.pooling, max_length=args.max_length, seed=args.seed,
        split_seed=args.split_seed, balance=args.balance, eval_freq=args.eval_freq,
        eval_iter=args.eval_iter, cache_trunk=args.cache_trunk, device=args.device,
        lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
        early_stopping=args.early_stopping, patience=args.patience, precision=args.precision,
        trunk_cache_dir=args.trunk_cache_dir, grad_accum=args.grad_accum,
        context=args.context, causal_mask=args.causal_mask,
        checkpoint_every=args.checkpoint_every)
    trainable_policy(opts)  # bad trainable/LoRA options fail before anything is written
    if opts.context not in ("longest", "model"):
        parse_context(opts.context)
    return opts


def _print_training_summary(m: dict, out: Path) -> None:
    from gptcls.evaluation.metrics import format_report

    t = m["times"]
    print(f"model: {m['model']} ({m['weights']} weights), run directory: {out}")
    print("Test set:")
    print(format_report(m["reports"]["test"]))
    print(f"Training accuracy: {m['train_accuracy'] * 100:.2f}%")
    print(f"Validation accuracy: {m['validation_accuracy'] * 100:.2f}%")
    print(f"Test accuracy: {m['test_accuracy'] * 100:.2f}%")
    print(f"Training completed in {t['train_s'] / 60:.2f} minutes "
          f"(total {t['total_s']:.1f} s, trunk cache {t['trunk_cache_s']:.1f} s)")


def _trainable_options(args: argparse.Namespace) -> dict:
    """The RunOptions of --trainable and friends; --trainable-blocks means lora_blocks for lora."""
    policy, blocks = args.trainable, args.trainable_blocks
    if policy in ("last-layer", "last-block", "all") and blocks is not None:
        raise GptclsError(f"--trainable-blocks goes with --trainable last-N-blocks or lora, "
                          f"not {policy}")
    if args.merge_lora is not None and policy != "lora":
        raise GptclsError("--no-merge-lora needs --trainable lora")
    lora = policy == "lora"
    return {"trainable": policy, "trainable_blocks": None if lora else blocks,
            "lora_blocks": blocks if lora else None, "train_embeddings": args.train_embeddings,
            "lora_rank": args.lora_rank, "lora_alpha": args.lora_alpha,
            "lora_targets": args.lora_targets, "merge_lora": args.merge_lora}


def _batch_size(args: argparse.Namespace) -> int | None:
    if not args.no_padding:
        return args.batch_size
    if args.batch_size not in (None, 1):
        raise GptclsError(f"--no-padding means batches of one text; drop --batch-size "
                          f"{args.batch_size} (use --grad-accum {args.batch_size} instead)")
    return 1
