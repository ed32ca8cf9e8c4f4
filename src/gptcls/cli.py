"""Command line: parse, call the library, print. Errors become one line and exit status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptcls.errors import GptclsError

EXAMPLES = [
    "You are a winner you have been specially selected to receive $1000 cash or a $2000 award.",
    "Hey, just wanted to check if we're still on for dinner tonight? Let me know!",
]


def _add_train(sub: argparse._SubParsersAction) -> None:
    from gptcls.classifier import POOLINGS, TRAINABLE_POLICIES, TRUNCATIONS
    from gptcls.pipeline import DEFAULT_MODEL
    from gptcls.splits import BALANCE_MODES
    from gptcls.train import EARLY_STOPPING, LR_SCHEDULES, PRECISIONS

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
    p.add_argument("--pooling", choices=POOLINGS,
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
    from gptcls.lora import DEFAULT_ALPHA, DEFAULT_RANK, DEFAULT_TARGETS

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
    from gptcls.tabular import FORMATS

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


def _add_long_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("--long-text", choices=("truncate", "chunk"), default="truncate",
                   help="texts longer than max_length: truncate (default) or average over "
                   "overlapping windows")
    p.add_argument("--chunk-reduce", choices=("mean", "max"), default="mean")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a run directory on any labelled file")
    p.add_argument("run_dir")
    _add_data_options(p, training=False)
    _add_long_text(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="fp32 (default, exact) or bf16 (faster on AVX512-BF16/AMX CPUs and GPUs)")
    p.add_argument("--out", help="write the report as JSON here")


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="label texts with a trained run directory")
    p.add_argument("run_dir")
    p.add_argument("texts", nargs="*", help="texts; '-' reads one text per line from stdin")
    p.add_argument("--file", help="read one text per line from this file")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="fp32 (default, exact) or bf16 (faster on AVX512-BF16/AMX CPUs and GPUs)")
    p.add_argument("--onnx", metavar="PATH",
                   help="run this ONNX export of the run with onnxruntime instead of PyTorch")
    _add_long_text(p)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from gptcls.tabular import FORMATS

    p = sub.add_parser("predict", help="label every row of a CSV, TSV, JSONL or Parquet file")
    p.add_argument("run_dir")
    p.add_argument("input", help="file to label; a label column in it is kept, not needed")
    p.add_argument("output", help="where to write: .csv, .tsv, .jsonl or .parquet (the input "
                   "columns plus label, prob_<label> per class and threshold)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from the extension)")
    p.add_argument("--text-column", help="column holding the text (default: detected)")
    p.add_argument("--encoding", default="utf-8", help="text encoding, e.g. latin-1")
    p.add_argument("--chunk-size", type=int, default=1024, help="rows read and written at a time")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUTPUT.partial/")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="fp32 (default, exact) or bf16 (faster on AVX512-BF16/AMX CPUs and GPUs)")
    _add_long_text(p)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a run directory: JSON API, web page and docs")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="fp32 (default, exact) or bf16 (faster on AVX512-BF16/AMX CPUs and GPUs)")
    p.add_argument("--max-batch", type=int, default=64, help="texts per model call")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its model call")
    p.add_argument("--max-texts", type=int, default=256, help="texts per request")
    p.add_argument("--max-chars", type=int, default=10000, help="characters per text")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body size")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run as a transformers model or an ONNX graph")
    p.add_argument("run_dir")
    p.add_argument("out", help="hf: a directory; onnx: a .onnx file")
    p.add_argument("--format", choices=("hf", "onnx"), required=True)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a backbone (sanity check)")
    p.add_argument("prompt")
    p.add_argument("--model", default="gpt2-small")
    p.add_argument("--weights", default="pretrained")
    p.add_argument("--cache")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int, default=123)


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="fold a run's LoRA adapters into its weights")
    p.add_argument("run_dir")
    p.add_argument("--out", help="write the merged run here (default: in place)")


def _add_grid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="train every combination of some settings; tabulate them")
    p.add_argument("config", nargs="?", help="YAML file: base: {option: value}, grid: "
                   "{option: [values]}, out: DIR")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=A,B,C",
                   help="vary a train option over these values (repeatable; quote a value to "
                   "keep it text)")
    p.add_argument("--out", help="grid directory (default: the config's out, or runs/grid)")
    p.add_argument("--data", help="labelled file for every run (default: the config's)")


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-book", help="turn the chapter's review_classifier.pth into a run")
    p.add_argument("pth")
    p.add_argument("out")
    p.add_argument("--labels", default="ham,spam")
    p.add_argument("--max-length", type=int, default=120,
                   help="the chapter's padded length (120 with its data loading)")
    p.add_argument("--n-heads", type=int, help="attention heads, for widths that are no GPT-2 size")


def build_parser() -> argparse.ArgumentParser:
    from gptcls import __version__

    parser = argparse.ArgumentParser(
        prog="gptcls", description="Fine-tune pretrained GPT-style language models into text "
        "classifiers, then classify, evaluate, serve and export them.")
    parser.add_argument("--version", action="version", version=f"gptcls {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_classify, _add_evaluate, _add_generate, _add_import,
                _add_predict, _add_serve, _add_export, _add_merge, _add_grid):
        add(sub)
    return parser


def cmd_train(args: argparse.Namespace) -> None:
    from gptcls.inference import Classifier
    from gptcls.pipeline import resume_options, run_training

    if args.resume:
        opts = resume_options(args.resume)
        print(f"resuming {args.resume} with the options it started with", file=sys.stderr)
    else:
        opts = _train_options(args)
    if opts.weights == "random":
        print("NOTE: --weights random: the backbone is randomly initialised, not pretrained; "
              "expect chance-level features (the chapter's random-weights experiment).")
    m = run_training(opts, resume=bool(args.resume))
    _print_training_summary(m, opts.out)
    texts = EXAMPLES if args.classify is None else args.classify
    if texts:
        _print_predictions(Classifier.load(opts.out, device=args.device), texts)


def _train_options(args: argparse.Namespace):
    from gptcls.pipeline import (
        check_model_name,
        options_with_recipe,
        parse_context,
        trainable_policy,
    )
    from gptcls.splits import parse_fractions

    check_model_name(args.model)
    opts = options_with_recipe(
        Path(args.out), args.model, weights=args.weights, cache=args.cache,
        data=args.data, train=args.train, validation=args.validation, test=args.test,
        format=args.format, text_column=args.text_column, label_column=args.label_column,
        encoding=args.encoding, strict=args.strict, normalize_labels=args.normalize_labels,
        split=parse_fractions(args.split), truncate=args.truncate, threshold=args.threshold,
        max_fpr=args.max_fpr,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
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
    from gptcls.metrics import format_report

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


def _print_predictions(clf, texts: list[str], long_text: str = "truncate",
                       chunk_reduce: str = "mean") -> None:
    probs = clf.predict_proba(texts, long_text=long_text, chunk_reduce=chunk_reduce)
    for text, label, p in zip(texts, clf.labels_from_proba(probs), probs, strict=True):
        print(f"{label}\t{p[clf.labels.index(label)]:.4f}\t{text}")


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts = [t for t in args.texts if t != "-"]
    if "-" in args.texts:
        texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise GptclsError(f"file not found: {path}")
        texts += [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    if not texts:
        raise GptclsError("no texts to classify: give them as arguments, --file, or '-' for stdin")
    return texts


def cmd_classify(args: argparse.Namespace) -> None:
    from gptcls.inference import Classifier

    texts = _read_texts(args)
    if args.onnx:
        from gptcls.export import OnnxClassifier

        clf = OnnxClassifier.from_run(args.run_dir, args.onnx)
    else:
        clf = Classifier.load(args.run_dir, device=args.device, precision=args.precision)
    _print_predictions(clf, texts, args.long_text, args.chunk_reduce)


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from gptcls.inference import Classifier
    from gptcls.metrics import format_report

    clf = Classifier.load(args.run_dir, device=args.device, precision=args.precision)
    report = clf.evaluate(args.data, format=args.format, text_column=args.text_column,
                          label_column=args.label_column, encoding=args.encoding,
                          strict=args.strict, normalize_labels=args.normalize_labels,
                          long_text=args.long_text, chunk_reduce=args.chunk_reduce)
    print(format_report(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    from gptcls.generate import generate
    from gptcls.models import build_backbone
    from gptcls.weights import load_checkpoint

    ckpt = load_checkpoint(args.model, args.weights, cache=args.cache, seed=args.seed)
    model = build_backbone(ckpt.config)
    model.load_state_dict(ckpt.state_dict, strict=False)
    model.tie_weights()
    model.eval()
    idx = torch.tensor([ckpt.tokenizer.encode(args.prompt)])
    if idx.shape[1] == 0:
        raise GptclsError("the prompt is empty")
    gen = torch.Generator().manual_seed(args.seed)
    out = generate(model, idx, args.max_new_tokens, args.temperature, args.top_k,
                   eos_id=ckpt.tokenizer.eot_id, generator=gen)
    print(ckpt.tokenizer.decode(out[0].tolist()))


def cmd_merge(args: argparse.Namespace) -> None:
    from gptcls.lora import merge_run

    print(f"merged LoRA adapters into {merge_run(args.run_dir, args.out)}")


def cmd_grid(args: argparse.Namespace) -> None:
    from gptcls.grid import build_spec, run_grid

    spec = build_spec(args.config, args.sets, args.data)
    out = args.out or spec.out or "runs/grid"
    rows = run_grid(spec, out)
    print((Path(out) / "grid.md").read_text(), end="")
    failed = sum(r["status"] == "failed" for r in rows)
    print(f"{len(rows)} runs ({failed} failed); tables and plot: {Path(out) / 'grid'}.md/.csv/.png")


def cmd_import_book(args: argparse.Namespace) -> None:
    from gptcls.inference import import_book_state_dict

    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    import_book_state_dict(args.pth, args.out, labels, args.max_length, args.n_heads)
    print(f"wrote run directory {args.out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from gptcls.batch_predict import predict_file
    from gptcls.inference import Classifier

    clf = Classifier.load(args.run_dir, device=args.device, precision=args.precision)
    report = predict_file(clf, args.input, args.output, format=args.format,
                          text_column=args.text_column, encoding=args.encoding,
                          chunk_size=args.chunk_size, resume=args.resume,
                          long_text=args.long_text, chunk_reduce=args.chunk_reduce,
                          device=args.device)
    print(report.line())


def cmd_serve(args: argparse.Namespace) -> None:
    from gptcls.serve import serve

    serve(args.run_dir, precision=args.precision, host=args.host, port=args.port,
          device=args.device, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes)


def cmd_export(args: argparse.Namespace) -> None:
    from gptcls.export import export_hf, export_onnx

    path = (export_hf if args.format == "hf" else export_onnx)(args.run_dir, args.out)
    print(f"wrote {path}")


COMMANDS = {"train": cmd_train, "classify": cmd_classify, "evaluate": cmd_evaluate,
            "generate": cmd_generate,
            "import-book": cmd_import_book, "predict": cmd_predict, "serve": cmd_serve,
            "export": cmd_export, "merge": cmd_merge, "grid": cmd_grid}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from gptcls.train import configure_threads

        configure_threads()
        COMMANDS[args.command](args)
    except GptclsError as exc:
        print(f"gptcls: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gptcls: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
