"""Command line: parse, call the library, print. Errors become one line and exit status 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gptcls.cli.audit import add_audit, cmd_audit
from gptcls.cli.common import add_options, add_verbosity, print_predictions
from gptcls.cli.train import add_train, cmd_train
from gptcls.errors import GptclsError
from gptcls.options import PRECISIONS, READ_OPTIONS

RUN_DIR_HELP = "a run directory written by `gptcls train`"
DEVICE_HELP = "auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:1, mps"
PRECISION_HELP = ("auto (default: bf16 where this CPU/GPU has fast native bf16, else fp32), "
                  "fp32 (exact), bf16, or int8 (CPU: the blocks' linear layers in int8)")


def _add_long_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("--long-text", choices=("truncate", "chunk"), default=None,
                   help="texts longer than max_length: truncate, or average over "
                   "overlapping windows (chunk); default: as the run trained (chunk after "
                   "train --long-text chunk, else truncate)")
    p.add_argument("--chunk-reduce", choices=("mean", "max"), default="mean",
                   help="with --long-text chunk: combine the windows' probabilities by mean "
                   "(default) or max")


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a run directory on any labelled file")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("file", nargs="?", metavar="FILE", help="the labelled file (or --data FILE)")
    add_options(p, READ_OPTIONS, defaults=True)
    _add_long_text(p)
    _add_runtime(p)
    p.add_argument("--out", help="write the report as JSON here")
    p.add_argument("--json", action="store_true", help="print the report as JSON, not a table")


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="label texts with a trained run directory")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("texts", nargs="*", help="texts; '-' reads one text per line from stdin")
    p.add_argument("--file", help="read one text per line from this file ('-': stdin)")
    _add_runtime(p)
    p.add_argument("--onnx", metavar="PATH",
                   help="run this ONNX export of the run (a .onnx file or an export "
                   "directory) with onnxruntime instead of PyTorch; RUN_DIR may itself be an "
                   "ONNX export directory")
    p.add_argument("--json", action="store_true", help="print one JSON object per text "
                   "(JSON Lines): text, label, probabilities per label")
    _add_long_text(p)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="label every row of a CSV, TSV, JSONL or Parquet file")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("input", help="file to label; a label column in it is kept, not needed")
    p.add_argument("output", help="where to write: .csv, .tsv, .jsonl or .parquet (the input "
                   "columns plus label, prob_<label> per class and threshold)")
    add_options(p, ("format", "text_column", "encoding", "no_header"), defaults=True)
    p.add_argument("--chunk-size", type=int, default=1024, help="rows read and written at a time")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from OUTPUT.partial/")
    _add_runtime(p)
    _add_long_text(p)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a run directory: JSON API, web page and docs")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    _add_runtime(p)
    p.add_argument("--max-batch", type=int, default=64, help="texts per model call")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to share its model call")
    p.add_argument("--max-texts", type=int, default=256, help="texts per request")
    p.add_argument("--max-chars", type=int, default=10000, help="characters per text")
    p.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body size")
    p.add_argument("--max-batch-tokens", type=int, default=4096,
                   help="padded tokens per model call (texts x longest)")
    p.add_argument("--api-key", help="require `Authorization: Bearer KEY` on the API (default: "
                   "$GPTCLS_API_KEY); needed to listen beyond loopback")
    p.add_argument("--insecure", action="store_true",
                   help="listen beyond loopback without an API key")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run as a transformers model or an ONNX graph")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("out", help="hf: a directory; onnx: a directory (model.onnx, config.json, "
                   "tokenizer files, as optimum lays it out), or one graph if it ends in .onnx")
    p.add_argument("--format", choices=("hf", "onnx"), required=True,
                   help="hf: a transformers model directory; onnx: an ONNX graph")
    p.add_argument("--int8", action="store_true", help="onnx directory: also write "
                   "model_int8.onnx (int8 MatMul weights, onnxruntime dynamic quantization)")


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a backbone (sanity check)")
    p.add_argument("prompt", help="the text to continue")
    p.add_argument("--model", default="gpt2-small", help="backbone preset, path or hub "
                   "ID owner/name (default: gpt2-small)")
    p.add_argument("--weights", default="pretrained",
                   help="pretrained (default), random, or a path to local weights")
    p.add_argument("--cache", help="download cache directory (default: $GPTCLS_CACHE or "
                   "~/.cache/gptcls)")
    p.add_argument("--max-new-tokens", type=int, default=20,
                   help="tokens to generate (default: 20)")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="sampling temperature; 0 (default) picks the likeliest token")
    p.add_argument("--top-k", type=int, help="sample among the k likeliest tokens only")
    p.add_argument("--seed", type=int, default=123, help="sampling seed (default: 123)")


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="fold a run's LoRA adapters into its weights")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
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
    p.add_argument("pth", help="the chapter's saved state_dict (review_classifier.pth)")
    p.add_argument("out", help="run directory to write")
    p.add_argument("--labels", default="ham,spam",
                   help="class names in the head's order (default: ham,spam)")
    p.add_argument("--max-length", type=int, default=120,
                   help="the chapter's padded length (120 with its data loading)")
    p.add_argument("--n-heads", type=int, help="attention heads, for widths that are no GPT-2 size")


def build_parser() -> argparse.ArgumentParser:
    from gptcls import __version__

    parser = argparse.ArgumentParser(
        prog="gptcls", description="Fine-tune pretrained GPT-style language models into text "
        "classifiers, then classify, evaluate, serve and export them.")
    parser.add_argument("--version", action="version", version=f"gptcls {__version__}")
    add_verbosity(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_train, _add_classify, _add_evaluate, _add_generate, _add_import,
                _add_predict, _add_serve, _add_export, _add_merge, _add_grid, add_audit):
        add(sub)
    for p in sub.choices.values():  # -q/-v also after the command
        add_verbosity(p, default=argparse.SUPPRESS)
    return parser


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts = [t for t in args.texts if t != "-"]
    if "-" in args.texts:
        texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if args.file == "-":
        texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
    elif args.file:
        path = Path(args.file)
        if not path.is_file():
            raise GptclsError(f"file not found: {path}")
        texts += [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip()]
    if not texts:
        raise GptclsError("no texts to classify: give them as arguments, --file, or '-' for stdin")
    return texts


def cmd_classify(args: argparse.Namespace) -> None:
    from gptcls.classifier.classifier import Classifier
    from gptcls.serving.export_onnx import OnnxClassifier, is_onnx_dir

    texts = _read_texts(args)
    if args.onnx or is_onnx_dir(args.run_dir):  # an ONNX directory needs no --onnx
        clf = OnnxClassifier.from_run(args.run_dir, args.onnx)
    else:
        clf = Classifier.load(args.run_dir, device=args.device, precision=args.precision)
    print_predictions(clf, texts, args.long_text, args.chunk_reduce, as_json=args.json)


def evaluate_file(args: argparse.Namespace) -> str:
    """evaluate's labelled file: FILE or --data FILE (checked before torch is imported)."""
    if args.file and args.data and args.file != args.data:
        raise GptclsError(f"evaluate: two labelled files ({args.file} and --data {args.data}); "
                          "give one")
    if not (args.file or args.data):
        raise GptclsError("evaluate: which labelled file? gptcls evaluate RUN_DIR FILE (or "
                          "--data FILE)")
    return args.file or args.data


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from gptcls.classifier.classifier import Classifier
    from gptcls.data.columns import joined_spec
    from gptcls.evaluation.metrics import format_report

    clf = Classifier.load(args.run_dir, device=args.device, precision=args.precision)
    report = clf.evaluate(args.data, format=args.format,
                          text_column=args.text_column or joined_spec(clf.config.text_column),
                          label_column=args.label_column, encoding=args.encoding,
                          strict=args.strict, normalize_labels=args.normalize_labels,
                          no_header=args.no_header, label_level=args.label_level,
                          label_names=args.label_names, long_text=args.long_text,
                          chunk_reduce=args.chunk_reduce)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


def cmd_generate(args: argparse.Namespace) -> None:
    import torch

    from gptcls.models.generate import generate
    from gptcls.models.weights.pretrained import load_backbone, load_pretrained

    pretrained = load_pretrained(args.model, args.weights, cache=args.cache, seed=args.seed)
    model = load_backbone(pretrained.config, pretrained.state_dict).eval()
    idx = torch.tensor([pretrained.tokenizer.encode(args.prompt)])
    if idx.shape[1] == 0:
        raise GptclsError("the prompt is empty")
    gen = torch.Generator().manual_seed(args.seed)
    out = generate(model, idx, args.max_new_tokens, args.temperature, args.top_k,
                   eos_id=pretrained.tokenizer.eot_id, generator=gen)
    print(pretrained.tokenizer.decode(out[0].tolist()))


def cmd_merge(args: argparse.Namespace) -> None:
    from gptcls.classifier.run_dir import merge_run

    print(f"merged LoRA adapters into {merge_run(args.run_dir, args.out)}")


def cmd_grid(args: argparse.Namespace) -> None:
    from gptcls.training.grid import build_spec, run_grid

    spec = build_spec(args.config, args.sets, args.data)
    out = args.out or spec.out or "runs/grid"
    rows = run_grid(spec, out)
    print((Path(out) / "grid.md").read_text(), end="")
    failed = sum(r["status"] == "failed" for r in rows)
    print(f"{len(rows)} runs ({failed} failed); tables and plot: {Path(out) / 'grid'}.md/.csv/.png")


def cmd_import_book(args: argparse.Namespace) -> None:
    from gptcls.classifier.book import import_book_state_dict

    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    import_book_state_dict(args.pth, args.out, labels, args.max_length, args.n_heads)
    print(f"wrote run directory {args.out}")


def cmd_predict(args: argparse.Namespace) -> None:
    from gptcls.classifier.classifier import Classifier
    from gptcls.device import device_for
    from gptcls.distributed import finish, from_env, local_device
    from gptcls.serving.predict import predict_file

    # Under torchrun each process takes its own GPU (LOCAL_RANK) and every world-th chunk.
    device = local_device(device_for(args.device))
    d = from_env(device)
    clf = Classifier.load(args.run_dir, device=str(device), precision=args.precision)
    report = predict_file(clf, args.input, args.output, format=args.format,
                          text_column=args.text_column, encoding=args.encoding,
                          no_header=args.no_header, chunk_size=args.chunk_size, resume=args.resume,
                          long_text=args.long_text, chunk_reduce=args.chunk_reduce,
                          device=str(device), dist=d)
    finish(d)
    if d.main:
        print(report.line() + (f" by {d.world} processes" if d.active else ""))


def cmd_serve(args: argparse.Namespace) -> None:
    from gptcls.serving.server import serve

    serve(args.run_dir, precision=args.precision, host=args.host, port=args.port,
          device=args.device, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
          max_batch_tokens=args.max_batch_tokens, api_key=args.api_key, insecure=args.insecure)


def cmd_export(args: argparse.Namespace) -> None:
    from gptcls.serving.export_hf import export_hf
    from gptcls.serving.export_onnx import export_onnx

    if args.format == "hf" and args.int8:
        raise GptclsError("--int8 is for --format onnx (it adds model_int8.onnx)")
    path = export_hf(args.run_dir, args.out) if args.format == "hf" \
        else export_onnx(args.run_dir, args.out, int8=args.int8)
    print(f"wrote {path}")


def _run(args: argparse.Namespace) -> None:
    if args.command == "evaluate":
        args.data = evaluate_file(args)
    if args.command != "train":  # train checks its options first, torch-free
        from gptcls.device import configure_threads

        configure_threads()
    COMMANDS[args.command](args)


COMMANDS = {"train": cmd_train, "classify": cmd_classify, "evaluate": cmd_evaluate,
            "generate": cmd_generate,
            "import-book": cmd_import_book, "predict": cmd_predict, "serve": cmd_serve,
            "export": cmd_export, "merge": cmd_merge, "grid": cmd_grid,
            "audit": cmd_audit}


def main(argv: list[str] | None = None) -> int:
    from gptcls.log import cli_logging, verbosity_level

    parser = build_parser()
    # classify RUN --long-text chunk "TEXT": argparse has already closed the texts list when an
    # option follows the run directory; the texts after it come back as extras.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "classify" and not any(e.startswith("-") for e in extra):
        args.texts = [*args.texts, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.quiet and args.verbose:
        parser.error("-q/--quiet and -v/--verbose contradict each other: give one")
    try:
        with cli_logging(verbosity_level(args.quiet, args.verbose)):
            _run(args)
    except GptclsError as exc:
        print(f"gptcls: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gptcls: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
