"""Where downloaded files live, and how they are written safely."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

ENV_VAR = "GPTCLS_CACHE"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache directory: explicit override > $GPTCLS_CACHE > ~/.cache/gptcls."""
    if override:
        path = Path(override)
    elif os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR])
    else:
        path = Path.home() / ".cache" / "gptcls"
    return path.expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a temporary file beside `path`, then rename: readers never see half a
    file. The file gets the usual mode (0666 & ~umask), as open() would give it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_safetensors(path: str | os.PathLike, tensors: dict[str, Any],
                     metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file, atomically and with the usual mode. save_file streams the
    tensors to disk (no second copy of a model in memory) but makes its file 0600, so the
    temporary file's own mode (0666 & ~umask, from _create_temp) is put back afterwards."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp(path)
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new hidden file beside `path`, opened for writing. mkstemp would make it 0600; mode
    0666 here lets the kernel apply the umask, so nothing needs a chmod afterwards."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
