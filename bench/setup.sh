#!/usr/bin/env bash
# Installs what the benchmarks in bench/ need into the project's own .venv (idempotent).
#
#   bash bench/setup.sh        # after `make demo` / `make test` created .venv
#
# - llms-from-scratch: the book's own code (chapter 4 GPTModel, chapter 6 SpamDataset,
#   train_classifier_simple, calc_accuracy_loader, classify_review). Installed with --no-deps:
#   its declared dependencies (jupyterlab, tensorflow, ...) are not needed by ch04/ch06.
# - pandas: imported by llms_from_scratch.ch06 at import time (SpamDataset reads CSVs with it).
#   matplotlib and tiktoken (also imported there) are already gptcls dependencies.
# - psutil, transformers: as in the `bench` extra of pyproject.toml (transformers is contender
#   (c)); installed by name, not via `pip install -e .[bench]`, so gptcls itself is not
#   reinstalled.
# pip then warns that llms-from-scratch "requires jupyterlab, tensorflow, numpy<2.1, ...":
# expected with --no-deps, and harmless for the modules the benchmarks import (checked below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "bench/setup.sh: $PY not found; run 'make test' (or 'make demo') first" >&2
  exit 1
fi
"$PY" -m pip install --quiet 'psutil>=5.9' 'transformers>=4.45' 'pandas>=2.0'
"$PY" -m pip install --quiet --no-deps 'llms-from-scratch>=1.0.19'
"$PY" - <<'PY'
import llms_from_scratch.ch04, llms_from_scratch.ch06, psutil, transformers  # noqa: F401
print("bench environment ready")
PY
