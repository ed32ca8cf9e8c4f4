"""Inference speed: messages per second classifying the whole SMS Spam Collection (5,574 texts).

Setup, once (installs llms-from-scratch --no-deps, pandas, psutil, transformers into .venv):

    bash bench/setup.sh

Run:

    .venv/bin/python bench/infer_speed.py                  # all texts, all contenders
    .venv/bin/python bench/infer_speed.py --limit 200      # a quick check
    .venv/bin/python bench/infer_speed.py --chapter-limit 500   # time the (slow) chapter loop
                                                           # on 500 texts only; rate extrapolated
    .venv/bin/python bench/infer_speed.py --run runs/gpt2  # a trained gptcls gpt2-small run:
                                                           # adds accuracy (and int8's cost in it)

Contenders (one process, one after another; each gets a warm-up call on 8 texts first, not
timed; tokenization is inside every timing):

  gptcls         Classifier.predict_proba on all texts (batched, sorted by length), gpt2-small.
                 Random weights unless --run: built with
                 gptcls.models.weights.pretrained.load_pretrained, saved
                 with save_run and loaded back with Classifier.load, as a user would.
  gptcls-bf16    the same model with Classifier(precision="bf16"): matrix products in bf16
                 (native on AVX512-BF16/AMX CPUs); reports the largest probability change.
  gptcls-int8    the same model with Classifier(precision="int8"): the blocks' nn.Linear layers
                 dynamically quantized (classifier/int8.py), CPU only; reports the largest
                 probability change and the label agreement against fp32.
  chapter        chapter 6's classify_review (copied below): one text at a time, padded to
                 max_length, with the book's GPTModel (llms_from_scratch ch04), random weights.
  hf             transformers GPT2ForSequenceClassification, random weights, batches of 32 in
                 file order, padded to the batch's longest text, under inference_mode.
  smollm         gptcls with its default backbone, smollm2-135m-instruct-q4 (pretrained GGUF
                 weights, an untrained head).

max_length (truncation) is the chapter's: the longest text of the balanced training split.
All GPT-2 contenders use tiktoken's GPT-2 encoding as gptcls builds it offline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import (
    DEFAULT_DATA,
    SEED,
    book_model,
    chapter_max_length,
    device,
    hf_model,
    pad_collate,
)

from gptcls.data import sms as gdata
from gptcls.models.tokenizers.gpt2 import gpt2_tokenizer

CONTENDERS = ("gptcls", "gptcls-bf16", "gptcls-int8", "chapter", "hf", "smollm")
TITLES = {"gptcls": "gptcls gpt2-small fp32", "gptcls-bf16": "gptcls gpt2-small --precision bf16",
          "gptcls-int8": "gptcls gpt2-small int8 dynamic",
          "chapter": "chapter 6 classify_review loop (book GPTModel)",
          "hf": "transformers GPT2ForSequenceClassification, batch 32",
          "smollm": "gptcls smollm2-135m-instruct-q4 fp32"}
TARGET_RATE, TARGET_SPEEDUP = 25.0, 8.0  # gptcls gpt2-small fp32: msg/s, x the chapter loop
WARMUP = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the SMSSpamCollection file")
    p.add_argument("--limit", type=int, default=None, help="classify only the first N texts")
    p.add_argument("--chapter-limit", type=int, default=None,
                   help="time the chapter loop on the first N texts only and extrapolate")
    p.add_argument("--contenders", default=",".join(CONTENDERS),
                   help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--run", type=Path, default=None,
                   help="a trained gptcls gpt2-small run directory (instead of random weights)")
    p.add_argument("--hf-batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        p.error(f"unknown contender(s) {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    return args


# --------------------------------------------------------------------------- the chapter's code


def classify_review(text, model, tokenizer, device, max_length=None, pad_token_id=50256):
    """Copied from chapter 6 (llms_from_scratch.ch06.classify_review), unchanged."""
    model.eval()

    # Prepare inputs to the model
    input_ids = tokenizer.encode(text)
    supported_context_length = model.pos_emb.weight.shape[0]

    # Truncate sequences if they too long
    input_ids = input_ids[:min(max_length, supported_context_length)]

    # Pad sequences to the longest sequence
    input_ids += [pad_token_id] * (max_length - len(input_ids))
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)  # add batch dimension

    # Model inference
    with torch.no_grad():
        logits = model(input_tensor)[:, -1, :]  # Logits of the last output token
    predicted_label = torch.argmax(logits, dim=-1).item()

    # Return the classified result
    return "spam" if predicted_label == 1 else "not spam"


# --------------------------------------------------------------------------- contenders


def timed(predict: Callable[[list[str]], object], texts: list[str]) -> tuple[object, float]:
    predict(texts[:WARMUP])
    t0 = time.perf_counter()
    out = predict(texts)
    return out, time.perf_counter() - t0


def build_gptcls(model_name: str, data: Path, max_length: int | None, tmp: Path):
    """A gptcls classifier with an untrained head, written as a run directory and loaded back.
    gpt2 presets get random weights; others (smollm2) their pretrained ones."""
    from gptcls.classifier.classifier import Classifier
    from gptcls.classifier.config import ClassifierConfig
    from gptcls.classifier.model import ClassifierModel
    from gptcls.classifier.run_dir import save_run
    from gptcls.models import build_backbone
    from gptcls.models.weights.pretrained import load_pretrained
    from gptcls.recipes import recipe_for

    weights = "random" if model_name.startswith("gpt2") else "pretrained"
    loaded = load_pretrained(model_name, weights, seed=SEED)
    torch.manual_seed(SEED)
    backbone = build_backbone(loaded.config)
    sd = loaded.state_dict
    if loaded.config.tie_embeddings and "out_head.weight" not in sd:
        sd = {**sd, "out_head.weight": sd["tok_emb.weight"]}
    backbone.load_state_dict(sd, strict=True)
    model = ClassifierModel(backbone, 2, "last")
    trainable = recipe_for(model_name)["trainable_blocks"]
    model.set_trainable(trainable)
    if max_length is None:
        max_length = min(chapter_max_length(data, loaded.tokenizer),
                         loaded.config.context_length)
    config = ClassifierConfig(model=loaded.config, labels=list(gdata.SMS_LABELS),
                              max_length=max_length, tokenizer={}, pooling="last",
                              trainable_blocks=trainable,
                              backbone={"model": model_name, "weights": weights,
                                        "source": loaded.source})
    run_dir = tmp / model_name
    save_run(run_dir, config, model, loaded.tokenizer)
    del model, backbone, loaded, sd
    return Classifier.load(run_dir)


def load_classifier(args: argparse.Namespace, max_length: int, tmp: Path):
    from gptcls.classifier.classifier import Classifier

    t0 = time.perf_counter()
    clf = Classifier.load(args.run) if args.run else build_gptcls("gpt2-small", args.data,
                                                                   max_length, tmp)
    return clf, time.perf_counter() - t0


def run_gptcls(clf, texts: list[str]) -> dict:
    probs, secs = timed(clf.predict_proba, texts)
    return {"seconds": secs, "probs": probs}


def compare(out: dict, fp32: dict | None) -> dict:
    if fp32 is not None:
        out["max_abs_prob_diff"] = float(np.abs(out["probs"] - fp32["probs"]).max())
        out["same_label"] = float((out["probs"].argmax(1) == fp32["probs"].argmax(1)).mean())
    return out


def run_bf16(clf, texts: list[str], fp32: dict | None) -> dict:
    from gptcls.classifier.classifier import Classifier

    bclf = Classifier(clf.config, clf.model, clf.tokenizer, device=str(clf.device),
                      precision="bf16")
    probs, secs = timed(bclf.predict_proba, texts)
    return compare({"seconds": secs, "probs": probs}, fp32)


def run_int8(clf, texts: list[str], fp32: dict | None) -> dict:
    from gptcls.classifier.classifier import Classifier

    qclf = Classifier(clf.config, clf.model, clf.tokenizer, device="cpu", precision="int8")
    qclf.int8_model()  # quantizing (about 1 s for SmolLM2) is load time, not per message
    probs, secs = timed(qclf.predict_proba, texts)
    return compare({"seconds": secs, "probs": probs}, fp32)


def run_chapter(texts: list[str], max_length: int, limit: int | None) -> dict:
    dev = device()
    model = book_model(dev)
    tokenizer = gpt2_tokenizer()  # .encode(text): tiktoken "gpt2" ids, built offline
    sample = texts[:limit] if limit else texts

    def loop(batch: list[str]) -> list[str]:
        return [classify_review(t, model, tokenizer, dev, max_length=max_length) for t in batch]

    labels, secs = timed(loop, sample)
    return {"seconds": secs * len(texts) / len(sample), "measured_texts": len(sample),
            "measured_seconds": secs, "labels": labels}


def run_hf(texts: list[str], max_length: int, batch_size: int) -> dict:
    dev = device()
    model = hf_model(dev).eval()
    tokenizer = gpt2_tokenizer()

    @torch.inference_mode()
    def predict(batch_texts: list[str]) -> np.ndarray:
        ids = [s[:max_length] for s in tokenizer.encode_batch(batch_texts)]
        out = []
        for b in range(0, len(ids), batch_size):
            batch = pad_collate([(torch.tensor(s), 0) for s in ids[b:b + batch_size]])
            logits = model(input_ids=batch["input_ids"].to(dev),
                           attention_mask=batch["attention_mask"].to(dev)).logits
            out.append(torch.softmax(logits.float(), -1).cpu())
        return torch.cat(out).numpy()

    probs, secs = timed(predict, texts)
    return {"seconds": secs, "probs": probs}


def run_smollm(texts: list[str], data: Path, tmp: Path) -> dict:
    from gptcls.options import DEFAULT_MODEL

    t0 = time.perf_counter()
    clf = build_gptcls(DEFAULT_MODEL, data, None, tmp)
    load_s = time.perf_counter() - t0
    return {**run_gptcls(clf, texts), "load_s": load_s, "max_length": clf.config.max_length}


# --------------------------------------------------------------------------- driver


def run_one(name: str, args: argparse.Namespace, texts: list[str], ctx: dict) -> dict:
    if name == "gptcls":
        return {**run_gptcls(ctx["clf"], texts), "load_s": ctx["load_s"]}
    if name == "gptcls-bf16":
        return run_bf16(ctx["clf"], texts, ctx["results"].get("gptcls"))
    if name == "gptcls-int8":
        return run_int8(ctx["clf"], texts, ctx["results"].get("gptcls"))
    if name == "chapter":
        return run_chapter(texts, ctx["max_length"], args.chapter_limit)
    if name == "hf":
        return run_hf(texts, ctx["max_length"], args.hf_batch_size)
    return run_smollm(texts, args.data, ctx["tmp"])


def run_all(args: argparse.Namespace, texts: list[str]) -> tuple[dict[str, dict], int]:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gptcls-infer-") as tmp:
        ctx = {"tmp": Path(tmp), "results": results, "clf": None, "load_s": None,
               "max_length": chapter_max_length(args.data, gpt2_tokenizer())}
        if {"gptcls", "gptcls-bf16", "gptcls-int8"} & set(args.contenders):
            ctx["clf"], ctx["load_s"] = load_classifier(args, ctx["max_length"], ctx["tmp"])
            ctx["max_length"] = ctx["clf"].config.max_length
        for name in args.contenders:
            print(f"{TITLES[name]} ...", file=sys.stderr, flush=True)
            try:
                results[name] = run_one(name, args, texts, ctx)
            except Exception as exc:  # one failing contender must not hide the others
                import traceback

                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
                continue
            rate = len(texts) / results[name]["seconds"]
            print(f"  {rate:.1f} messages/s", file=sys.stderr, flush=True)
    return results, ctx["max_length"]


def notes(name: str, r: dict, n: int, truth: np.ndarray | None) -> str:
    parts = []
    if r.get("load_s") is not None:
        parts.append(f"model ready in {r['load_s']:.1f} s (not timed)")
    if "max_abs_prob_diff" in r:
        parts.append(f"largest probability change vs fp32 {r['max_abs_prob_diff']:.4f}, "
                     f"same label {r['same_label'] * 100:.2f}%")
    if r.get("measured_texts", n) != n:
        parts.append(f"timed on {r['measured_texts']} texts ({r['measured_seconds']:.1f} s), "
                     "extrapolated")
    if "max_length" in r:
        parts.append(f"max_length {r['max_length']}")
    if truth is not None and name.startswith("gptcls") and "probs" in r:
        parts.append(f"accuracy {(r['probs'].argmax(1) == truth).mean() * 100:.2f}%")
    return "; ".join(parts)


def report(results: dict[str, dict], n: int, max_length: int, truth: np.ndarray | None) -> str:
    chapter = results.get("chapter", {}).get("seconds")
    lines = [f"## Inference speed: {n} SMS, max_length {max_length}", "",
             f"torch {torch.__version__}, device {device()}, {torch.get_num_threads()} threads",
             "", "| contender | messages/s | seconds | x chapter loop | notes |",
             "|---|---:|---:|---:|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {TITLES[name]} | failed | | | {r['error']} |")
            continue
        ratio = f"{chapter / r['seconds']:.1f}x" if chapter else "n/a"
        lines.append(f"| {TITLES[name]} | {n / r['seconds']:.1f} | {r['seconds']:.1f} | {ratio} "
                     f"| {notes(name, r, n, truth)} |")
    return "\n".join(lines + [""] + target_lines(results, n))


def target_lines(results: dict[str, dict], n: int) -> list[str]:
    ours, chapter = results.get("gptcls", {}), results.get("chapter", {})
    if "seconds" not in ours:
        return []
    rate = n / ours["seconds"]
    lines = ["| target | measured | met |", "|---|---:|---|",
             f"| gptcls gpt2-small fp32 >= {TARGET_RATE:g} messages/s | {rate:.1f} "
             f"| {'yes' if rate >= TARGET_RATE else 'NO'} |"]
    if "seconds" in chapter:
        speedup = chapter["seconds"] / ours["seconds"]
        lines.append(f"| gptcls gpt2-small fp32 >= {TARGET_SPEEDUP:g}x the chapter loop "
                     f"| {speedup:.1f}x | {'yes' if speedup >= TARGET_SPEEDUP else 'NO'} |")
        bf16 = results.get("gptcls-bf16", {})
        if "seconds" in bf16:
            speedup = chapter["seconds"] / bf16["seconds"]
            lines.append(f"| gptcls gpt2-small bf16 >= {TARGET_SPEEDUP:g}x the chapter loop "
                         f"| {speedup:.1f}x | {'yes' if speedup >= TARGET_SPEEDUP else 'NO'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    examples = gdata.read_sms_file(args.data)[: args.limit]
    texts = [ex.text for ex in examples]
    truth = None
    if args.run:
        labels = json.loads((args.run / "config.json").read_text())["labels"]
        truth = np.array([labels.index(ex.label) for ex in examples])
    results, max_length = run_all(args, texts)
    print(report(results, len(texts), max_length, truth))
    if args.json:
        slim = {k: {f: v for f, v in r.items() if f not in ("probs", "labels")}
                for k, r in results.items()}
        args.json.write_text(json.dumps({"texts": len(texts), "max_length": max_length,
                                         "results": slim}, indent=2) + "\n")
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
