"""gptcls: fine-tune pretrained GPT-style language models into text classifiers.

`from gptcls import Classifier, train` loads torch only when those names are first used (and
`GPTClassifier`, scikit-learn), so
`import gptcls` (and the command line's help) stays fast.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from gptcls.errors import GptclsError

# The library logs, the application decides what is shown (gptcls/log.py).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"
__all__ = ["Classifier", "GPTClassifier", "GptclsError", "__version__", "train"]
_LAZY = {"Classifier": "gptcls.classifier.classifier", "train": "gptcls.api",
         "GPTClassifier": "gptcls.estimator"}  # GPTClassifier needs scikit-learn


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gptcls' has no attribute {name!r}")
