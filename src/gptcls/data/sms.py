"""Datasets: get a source file, parse it into labelled examples, balance and split them.

The pipeline is sources -> examples -> splits. Only the SMS Spam Collection source exists
so far; other formats plug in by producing `list[Example]` and reusing everything after.
"""

from __future__ import annotations

import csv
import http.client
import io
import os
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

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
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")

_CHUNK = 1 << 16
# The real member is ~470 KB; refuse to inflate anything absurd a broken mirror might serve.
_MAX_MEMBER_BYTES = 64 << 20

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Example:
    """One labelled text. Frozen so examples can be hashed, counted and shared safely."""

    text: str
    label: str


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
    print(f"gptcls: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- parsing


def read_sms_file(path: PathLike) -> list[Example]:
    """Parse `label<TAB>text` lines exactly as written.

    No quote handling: the chapter's pandas read treats a leading `"` as a CSV quote and
    silently merges lines (5,572 rows); here every line is one message (5,574).
    """
    path = Path(path)
    text = _read_utf8(path)
    examples: list[Example] = []
    # split("\n"), not splitlines(): splitlines() also breaks on U+0085, U+2028, \f etc.,
    # and this file already holds stray C1 controls (U+0091-U+0096) inside messages.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        label, sep, message = line.partition("\t")
        label = label.strip()
        if not sep or not label:
            raise GptclsError(f"{path}:{lineno}: expected 'label<TAB>text', got {line[:40]!r}")
        examples.append(Example(text=message, label=label))
    if not examples:
        raise GptclsError(f"no examples found in {path}")
    return examples


def _read_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GptclsError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise GptclsError(f"data file is a directory: {path}") from None
    # Strict UTF-8 (a BOM is tolerated): guessing another encoding would silently change
    # the text the model trains on, so a clear error is better than a wrong guess.
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GptclsError(
            f"{path} is not UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8"
        ) from None


# --------------------------------------------------------------------------- labels


def label_mapping(examples: Iterable[Example], order: Sequence[str] | None = None) -> list[str]:
    """Class names in index order: `order` if given (checked), else sorted unique labels."""
    present = {ex.label for ex in examples}
    if order is None:
        return sorted(present)
    names = list(order)
    if len(set(names)) != len(names):
        raise GptclsError(f"duplicate class names in label order {names}")
    unknown = sorted(present - set(names))
    if unknown:
        raise GptclsError(f"labels {unknown} are not in the label order {names}")
    return names


# --------------------------------------------------------------------------- balance / split


def balance_undersample(examples: Sequence[Example], seed: int = 123) -> list[Example]:
    """Undersample every class to the size of the smallest one, the way the chapter does.

    The chapter draws `df[ham].sample(n_spam, random_state=seed)` and appends all spam; pandas
    draws with numpy's RandomState(seed).choice(n, k, replace=False), and so do we, one
    RandomState for the classes in sorted order. Drawn rows keep their drawn order.
    """
    by_label: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(i)
    if not by_label:
        return []
    n = min(len(idx) for idx in by_label.values())
    rng = np.random.RandomState(seed)
    keep: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        keep.extend(idx if len(idx) == n else [idx[j] for j in rng.choice(len(idx), n, False)])
    return [examples[i] for i in keep]


def random_split(
    examples: Sequence[Example],
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 123,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Seeded shuffle, then train/validation/test cut the way the book does it.

    The shuffle is pandas' `df.sample(frac=1, random_state=seed)`: RandomState(seed)'s
    permutation. train_end = int(n * f_train), val_end = train_end + int(n * f_val); test gets
    the rest, so rounding losses land in the test split.
    """
    _check_fractions(fractions)
    order = np.random.RandomState(seed).permutation(len(examples))
    shuffled = [examples[i] for i in order]
    train_end = int(len(shuffled) * fractions[0])
    val_end = train_end + int(len(shuffled) * fractions[1])
    return shuffled[:train_end], shuffled[train_end:val_end], shuffled[val_end:]


def _check_fractions(fractions: Sequence[float]) -> None:
    if len(fractions) != 3:
        raise GptclsError(f"need 3 split fractions (train, validation, test), got {fractions}")
    if any(not f > 0 for f in fractions):
        raise GptclsError(f"split fractions must all be positive, got {list(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise GptclsError(f"split fractions must sum to 1, got {list(fractions)}")


# --------------------------------------------------------------------------- CSV splits


def write_split_csv(path: PathLike, examples: Iterable[Example], labels: Sequence[str]) -> None:
    """Write `text,label` rows (label as class name), atomically, as UTF-8."""
    known = set(labels)
    buf = io.StringIO()
    # QUOTE_ALL + "\n": every text survives quotes, commas, \r and \n, and the file
    # reads back identically with any RFC 4180 reader.
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["text", "label"])
    for ex in examples:
        if ex.label not in known:
            raise GptclsError(f"label {ex.label!r} is not one of the classes {list(labels)}")
        writer.writerow([ex.text, ex.label])
    try:
        atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
    except OSError as exc:
        raise GptclsError(f"cannot write {path} ({exc.strerror or exc})") from exc


def read_split_csv(path: PathLike) -> list[Example]:
    """Read a split written by `write_split_csv` (any CSV with `text` and `label` columns)."""
    path = Path(path)
    # newline="" lets the csv module see \r and \n inside quoted fields unchanged.
    reader = csv.DictReader(io.StringIO(_read_utf8(path), newline=""))
    missing = {"text", "label"} - set(reader.fieldnames or [])
    if missing:
        raise GptclsError(f"{path}: missing column(s) {sorted(missing)}")
    examples = []
    for row in reader:
        if row["text"] is None or row["label"] is None:
            raise GptclsError(f"{path}:{reader.line_num}: row has too few fields")
        examples.append(Example(text=row["text"], label=row["label"]))
    return examples


# --------------------------------------------------------------------------- convenience


def prepare_sms_splits(
    data_path: PathLike | None,
    out_dir: PathLike,
    cache: PathLike | None = None,
    seed: int = 123,
    balance: bool = True,
) -> dict:
    """Local file or download -> parse -> (balance) -> split -> train/validation/test.csv.

    Returns {"train", "validation", "test": list[Example], "labels": list[str],
    "source": Path}.
    """
    source = Path(data_path) if data_path is not None else fetch_sms_spam(cache)
    examples = read_sms_file(source)
    labels = label_mapping(examples, order=SMS_LABELS)
    if balance:
        examples = balance_undersample(examples, seed=seed)
    splits = dict(zip(SPLIT_NAMES, random_split(examples, seed=seed), strict=True))
    out = Path(out_dir)
    for name, split in splits.items():
        write_split_csv(out / f"{name}.csv", split, labels)
    return {**splits, "labels": labels, "source": source}
