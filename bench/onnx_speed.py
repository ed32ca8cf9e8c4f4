"""onnxruntime vs PyTorch on the same run: messages/s of predict_proba on real SMS texts.

    python bench/onnx_speed.py [RUN_DIR] [--messages 2000] [--repeats 3]

Without RUN_DIR it trains a gpt2-tiny run first (see load_test.py). The run is exported with
`gptcls export --format onnx` into a temporary folder; both sides use gptcls' own tokenization,
length-sorted batching and softmax, so only the model runtime differs. Prints a markdown table
(best of --repeats after one warm-up) and the largest probability difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import ensure_run, sms_texts  # noqa: E402


def best_rate(predict, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    probs = predict(texts[:64])  # warm-up: first-call allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        probs = predict(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best, probs


def main() -> int:
    from gptcls.classifier.classifier import Classifier
    from gptcls.serving.export_onnx import OnnxClassifier, export_onnx

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gptcls-onnx-") as tmp:
        run = ensure_run(args.run_dir, Path(tmp))
        t0 = time.perf_counter()
        onnx_path = export_onnx(run, Path(tmp) / "model.onnx")
        export_s = time.perf_counter() - t0
        texts = sms_texts(limit=args.messages)
        torch_clf = Classifier.load(run, device="cpu")
        onnx_clf = OnnxClassifier.from_run(run, onnx_path)
        torch_rate, torch_probs = best_rate(torch_clf.predict_proba, texts, args.repeats)
        onnx_rate, onnx_probs = best_rate(onnx_clf.predict_proba, texts, args.repeats)
    diff = float(np.abs(torch_probs - onnx_probs).max())
    print(f"run {run} ({torch_clf.config.backbone.get('model', '?')}), {len(texts):,} SMS "
          f"messages, torch threads {torch.get_num_threads()}, export {export_s:.1f} s\n")
    print("| runtime | messages/s | ms per message |")
    print("| --- | --- | --- |")
    for name, rate in (("PyTorch (gptcls)", torch_rate), ("onnxruntime", onnx_rate)):
        print(f"| {name} | {rate:,.0f} | {1000 / rate:.3f} |")
    print(f"\nonnxruntime / PyTorch: {onnx_rate / torch_rate:.2f}x; "
          f"largest probability difference {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
