"""The SMS Spam Collection: download it (verified, cached) and parse it exactly as written."""

from __future__ import annotations

import http.client
import io
import logging
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from gptcls.data.examples import Example, PathLike
from gptcls.data.formats.headerless import headerless_rows
from gptcls.data.formats.text import DecodeError, TextFile, read_head
from gptcls.errors import GptclsError
from gptcls.files import atomic_write_bytes, cache_dir, sha256_bytes, sha256_file

SMS_URLS: tuple[str, ...] = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)
# Checksum of the extracted member, not the zip: mirrors re-zip the same data differently.
SMS_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
SMS_MEMBER = "SMSSpamCollection"
SMS_SUBDIR = "sms_spam_collection"
# ham -> 0, spam -> 1, as in the book (and what sorted() gives, but stated explicitly).
SMS_LABELS: tuple[str, ...] = ("ham", "spam")

_CHUNK = 1 << 16
# The real member is ~470 KB; refuse to inflate anything absurd a broken mirror might serve.
_MAX_MEMBER_BYTES = 64 << 20

# --------------------------------------------------------------------------- download


def fetch_sms_spam(
    cache: PathLike | None = None,
    urls: Sequence[str] = SMS_URLS,
    sha256: str = SMS_SHA256,
    timeout: float = 30,
) -> Path:
    """Return the path of a verified `SMSSpamCollection`, downloading it only if needed."""
    target = cache_dir(cache) / SMS_SUBDIR / SMS_MEMBER
    if target.is_file():
        if sha256_file(target) == sha256:
            return target
        _note(f"cached {target} has the wrong checksum; downloading it again")

    last_reason = "no URLs given"
    mismatch: str | None = None
    for i, url in enumerate(urls):
        try:
            data = _extract_member(_download(url, timeout), SMS_MEMBER)
        except _DOWNLOAD_ERRORS as exc:
            last_reason = _reason(exc)
        else:
            actual = sha256_bytes(data)
            if actual == sha256:
                _write_cache(target, data)
                return target
            last_reason = "checksum mismatch"
            mismatch = (
                f"checksum mismatch for the SMS Spam Collection from {url}: "
                f"expected sha256 {sha256}, got {actual}"
            )
        if i + 1 < len(urls):
            _note(f"download from {url} failed ({last_reason}); trying {urls[i + 1]}")

    # A wrong checksum is not a network problem, so don't blame the network for it.
    if mismatch is not None:
        raise GptclsError(mismatch)
    raise GptclsError(
        "could not download the SMS Spam Collection (no network?); "
        f"pass --data PATH to use a local copy (last error: {last_reason})"
    )


# What a dead mirror, a bad URL or a corrupt archive can raise; anything else is a bug.
_DOWNLOAD_ERRORS = (
    OSError,  # includes URLError, HTTPError and socket timeouts
    ValueError,  # unknown URL scheme
    http.client.HTTPException,
    zipfile.BadZipFile,
    KeyError,  # member missing from the archive
)


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        buf = bytearray()
        # disable=None: tqdm stays silent when stderr is not a terminal (CI, logs).
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="SMS Spam Collection",
            disable=None if total else True,
            leave=False,
        ) as bar:
            while chunk := resp.read(_CHUNK):
                buf += chunk
                bar.update(len(chunk))
    return bytes(buf)


def _extract_member(archive: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        # Match on the basename: some re-zipped mirrors put the files in a folder.
        matches = [i for i in zf.infolist() if i.filename.rsplit("/", 1)[-1] == name]
        if not matches:
            raise KeyError(f"archive has no {name}")
        if matches[0].file_size > _MAX_MEMBER_BYTES:
            raise zipfile.BadZipFile(f"{name} in the archive is implausibly large")
        return zf.read(matches[0])


def _write_cache(target: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise GptclsError(
            f"cannot write to the cache at {target.parent} ({exc.strerror or exc}); "
            "set GPTCLS_CACHE to a writable directory"
        ) from exc


def _reason(exc: BaseException) -> str:
    """A short, single-line reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        text = str(exc.reason)
    elif isinstance(exc, KeyError):
        text = str(exc.args[0]) if exc.args else "member missing from archive"
    elif isinstance(exc, zipfile.BadZipFile):
        text = f"bad zip file: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _note(message: str) -> None:
    logging.getLogger(__name__).warning(f"gptcls: {message}")


# --------------------------------------------------------------------------- parsing


def read_sms_file(path: PathLike) -> list[Example]:
    """Parse `label<TAB>text` lines exactly as written (the shared headerless reader, strict).

    No quote handling: the chapter's pandas read treats a leading `"` as a CSV quote and
    silently merges lines (5,572 rows); here every line is one message (5,574). Strict UTF-8
    (a BOM is tolerated): guessing another encoding would silently change the text the model
    trains on, so a clear error is better than a wrong guess.
    """
    path = Path(path)
    read_head(path)  # not found / a directory: the usual messages
    src = TextFile(path, "utf-8", "\n")
    examples: list[Example] = []
    try:
        for lineno, (label, message) in headerless_rows(src, src.lines()):
            if not label.strip():
                line = f"{label}\t{message}"
                raise GptclsError(f"{path}:{lineno}: expected 'label<TAB>text', got {line[:40]!r}")
            examples.append(Example(text=message, label=label.strip()))
    except DecodeError as exc:
        raise GptclsError(f"{path} is not UTF-8 (bad byte at offset {exc.offset}); re-save it "
                          "as UTF-8") from None
    finally:
        src.close()
    if not examples:
        raise GptclsError(f"no examples found in {path}")
    return examples
