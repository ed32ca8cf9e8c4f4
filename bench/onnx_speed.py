"""PyTorch fp32/bf16 vs onnxruntime fp32/int8 on the same run: messages/s and label agreement.

    python bench/onnx_speed.py [RUN_DIR] [--messages 2000] [--repeats 3] [--export-dir DIR]

Without RUN_DIR it trains a gpt2-tiny run first (see load_test.py). The run is exported with
`gptcls export --format onnx --int8` into a temporary folder (or --export-dir); every row uses
gptcls' own tokenization, length-sorted batching and softmax, so only the model runtime and
its precision differ. Prints one markdown table (best of --repeats after one warm-up): msg/s,
and the labels and probabilities compared with PyTorch fp32 on the same SMS texts. bf16 is
what `--precision bf16` does (autocast); it is slower than fp32 on CPUs without native bf16.
PyTorch int8 (torch.ao dynamic quantization) is not a row: torch 2.13 marks torch.ao.quantization
deprecated (scheduled for removal) in favour of torchao, which gptcls does not depend on.
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
    from gptcls.device import has_native_bf16
    from gptcls.serving.export_onnx import INT8_FILE, ONNX_FILE, OnnxClassifier, export_onnx

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--export-dir", help="write the ONNX export here (default: a temporary "
                   "folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="gptcls-onnx-") as tmp:
        run = ensure_run(args.run_dir, Path(tmp))
        t0 = time.perf_counter()
        onnx_dir = export_onnx(run, args.export_dir or Path(tmp) / "onnx", int8=True)
        export_s = time.perf_counter() - t0
        texts = sms_texts(limit=args.messages)
        runtimes = {
            "PyTorch fp32": Classifier.load(run, device="cpu", precision="fp32"),
            "PyTorch bf16": Classifier.load(run, device="cpu", precision="bf16"),
            "onnxruntime fp32": OnnxClassifier.from_dir(onnx_dir),
            "onnxruntime int8": OnnxClassifier.from_dir(onnx_dir, int8=True),
        }
        results = {name: best_rate(clf.predict_proba, texts, args.repeats)
                   for name, clf in runtimes.items()}
        sizes = {name: (onnx_dir / name).stat().st_size / 1e6 for name in (ONNX_FILE, INT8_FILE)}
    ref = runtimes["PyTorch fp32"]
    ref_labels = ref.labels_from_proba(results["PyTorch fp32"][1])
    print(f"run {run} ({ref.config.backbone.get('model', '?')}), {len(texts):,} SMS messages, "
          f"torch threads {torch.get_num_threads()}, native bf16: "
          f"{has_native_bf16(torch.device('cpu'))}, export {export_s:.1f} s; {ONNX_FILE} "
          f"{sizes[ONNX_FILE]:.1f} MB, {INT8_FILE} {sizes[INT8_FILE]:.1f} MB\n")
    print("| runtime | messages/s | ms per message | labels as PyTorch fp32 | "
          "largest probability difference |")
    print("| --- | --- | --- | --- | --- |")
    for name, (rate, probs) in results.items():
        labels = ref.labels_from_proba(probs)
        same = sum(a == b for a, b in zip(labels, ref_labels, strict=True))
        diff = float(np.abs(probs - results["PyTorch fp32"][1]).max())
        print(f"| {name} | {rate:,.0f} | {1000 / rate:.3f} | {same:,}/{len(texts):,} "
              f"({same / len(texts):.2%}) | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
