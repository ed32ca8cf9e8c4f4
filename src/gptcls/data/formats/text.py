"""Bytes -> lines of text, streamed: opening, encodings, BOMs and decode errors in one place.

Every text format (CSV, TSV, JSON lines, headerless `label<TAB>text`) reads through `TextFile`,
so a bad byte gets the same message everywhere: its offset from the first byte of the file
(a BOM included; of the decompressed bytes for a compressed file), its line and a hint.
A gzip, bzip2 or xz file (told by its first bytes, whatever its name) reads as what it holds:
`train.csv.gz` is a CSV.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import itertools
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gptcls.errors import GptclsError

PROBE_BYTES = 8192
_SCAN_CHUNK = 1 << 16
# Compression: the kind a file's first bytes say, the suffix a name ends in, and the opener,
# which also takes a file object (and leaves it open when closed: predict's output).
OPENERS = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
COMPRESSED_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}
# What a truncated or corrupt compressed stream raises while it is read.
_STREAM_ERRORS = (EOFError, OSError, lzma.LZMAError, zlib.error)
_WIDE = ("utf-16", "utf-32")  # codecs whose text is full of NUL bytes


class DecodeError(GptclsError):
    """Bytes the codec cannot decode; `offset` counts from the file's first byte."""

    def __init__(self, path: Path, encoding: str, byte: int, offset: int, line: int) -> None:
        self.offset, self.line, self.byte = offset, line, byte
        hint = ("pass --encoding latin-1 (or the file's real encoding)"
                if codecs.lookup(encoding).name == "utf-8"
                else "pass the file's real encoding with --encoding")
        super().__init__(f"{path} is not valid {encoding}: byte 0x{byte:02x} at offset {offset} "
                         f"(line {line}); {hint}")


def read_head(path: Path, noun: str = "data file") -> bytes:
    """The first PROBE_BYTES of the file (decompressed); a missing file or a directory is a
    clear error."""
    compressed = None
    try:
        compressed = compression(path)
        with open_bytes(path) as fh:
            return fh.read(PROBE_BYTES)
    except FileNotFoundError:
        raise GptclsError(f"{noun} not found: {path}") from None
    except IsADirectoryError:
        raise GptclsError(f"{noun} is a directory: {path}") from None
    except _STREAM_ERRORS as exc:
        if compressed is None and isinstance(exc, OSError):
            raise GptclsError(f"cannot read {path} ({exc.strerror or exc})") from None
        raise corrupt(path, compressed, exc) from None


def compression(path: Path) -> str | None:
    """"gzip", "bzip2" or "xz" when the file's first bytes say it is compressed, else None."""
    with path.open("rb") as fh:
        magic = fh.read(10)
    if magic.startswith(b"\x1f\x8b"):
        return "gzip"
    if magic[:3] == b"BZh" and magic[4:10] == b"1AY&SY":  # header, then a block's pi magic
        return "bzip2"
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


def open_bytes(path: Path) -> BinaryIO:
    """The file's bytes, decompressed if it is a gzip, bzip2 or xz file."""
    kind = compression(path)
    return OPENERS[kind](path, "rb") if kind else path.open("rb")


def inner_path(path: Path) -> Path:
    """train.csv.gz -> train.csv: the name of what a compressed file holds (for its format)."""
    return path.with_suffix("") if path.suffix.lower() in COMPRESSED_SUFFIXES else path


def corrupt(path: Path, kind: str | None, exc: BaseException) -> GptclsError:
    return GptclsError(f"{path} is a truncated or corrupt {kind or 'compressed'} file ({exc})")


def codec_name(encoding: str) -> str:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    # base64, rot13, zlib...: codecs, but not from bytes to text (TextIOWrapper refuses them).
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise GptclsError(f"unknown encoding {encoding!r}; use a Python codec name such as "
                          "utf-8, latin-1, cp1252")
    return info.name


_SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")


def check_not_container(path: Path, head: bytes) -> None:
    """Spreadsheets and zip archives are not text: say what to do instead of "binary". Told by
    the first bytes (some tools write tab-separated text under an .xls name: that reads)."""
    zipped, ole2 = head.startswith(b"PK\x03\x04"), head.startswith(b"\xd0\xcf\x11\xe0")
    if ole2 or (zipped and (path.suffix.lower() in _SPREADSHEET_SUFFIXES or b"xl/" in head
                            or b"opendocument.spreadsheet" in head)):
        raise GptclsError(f"{path} is a spreadsheet, which gptcls does not read: save it as CSV "
                          "(UTF-8) or Parquet, e.g. pandas.read_excel(path).to_csv('data.csv', "
                          "index=False)")
    if zipped:
        raise GptclsError(f"{path} is a zip archive: extract the data file and give that")


def check_text(path: Path, head: bytes, codec: str) -> None:
    """Refuse binary files and UTF-16 read as something else, from the first bytes."""
    if codec.startswith(_WIDE):
        return
    utf16_bom = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    # NUL never occurs in real text in byte-oriented encodings; UTF-16/32 are full of it.
    if b"\x00" in head or (utf16_bom and codec == "utf-8"):
        if utf16_bom:
            raise GptclsError(f"{path} looks like UTF-16 text; pass --encoding utf-16")
        raise GptclsError(f"{path} looks like a binary file (NUL bytes in the first 8 KB), "
                          "not CSV, TSV, JSON lines or Parquet")


def first_line(head: bytes, codec: str) -> str | None:
    """The first non-blank line of the head (all of it if longer), for format detection."""
    return next(iter(head_lines(head, codec, 1)), None)


def head_lines(head: bytes, codec: str, n: int = 5) -> list[str]:
    """Up to `n` non-blank lines of the head (the last may be cut short), for detection."""
    try:
        text = codecs.getincrementaldecoder(codec)("replace").decode(head, final=False)
    except UnicodeError:  # e.g. UTF-16 without a BOM; reading the file will say what is wrong
        return []
    lines = text.removeprefix("\ufeff").split("\n")
    return [ln.removesuffix("\r") for ln in lines if ln.strip()][:n]


class TextFile:
    """A text file opened for streaming lines in `codec`, the BOM dropped.

    newline="" splits at \\n, \\r\\n and \\r without translating them (what the csv module
    wants); newline="\\n" splits at \\n only (line formats, where \\r may be data).
    """

    def __init__(self, path: Path, encoding: str, newline: str, noun: str = "data file"):
        self.path, self.encoding, self.noun = path, encoding, noun
        self.codec = codec_name(encoding)
        # utf-8-sig drops the BOM Excel and Notepad put first; offsets are still counted on the
        # file's (decompressed) bytes (see locate_error), so they include it.
        wrapper_codec = "utf-8-sig" if self.codec == "utf-8" else self.codec
        self.handle = io.TextIOWrapper(open_bytes(path), encoding=wrapper_codec, newline=newline)
        self.skipped = 0  # blank lines before the first line with content

    def lines(self) -> Iterator[str]:
        """Every line with its ending; a decode error becomes a DecodeError (offset + hint)."""
        try:
            yield from self.handle
        except UnicodeDecodeError:
            raise self.locate_error() from None
        except UnicodeError as exc:  # not about one byte: "UTF-16 stream does not start with BOM"
            raise GptclsError(f"{self.path} is not valid {self.encoding} ({exc}); pass the "
                              "file's real encoding with --encoding") from None
        except _STREAM_ERRORS as exc:  # a compressed file that ends early or is damaged
            raise corrupt(self.path, compression(self.path), exc) from None

    def content(self) -> Iterator[str]:
        """lines(), after checking the file has a non-blank line (else "... is empty")."""
        lines = self.lines()
        for line in lines:
            if line.strip():
                # Blank lines come back as bare "\n" so line numbers stay right.
                return itertools.chain(itertools.repeat("\n", self.skipped), [line], lines)
            self.skipped += 1
        raise GptclsError(f"{self.noun} is empty: {self.path}")

    def close(self) -> None:
        self.handle.close()

    def locate_error(self) -> GptclsError:
        """Find the first undecodable byte by decoding the (decompressed) bytes again (errors
        only)."""
        try:
            found = self._first_bad_byte()
        except _STREAM_ERRORS as exc:  # a compressed file, damaged before or after that byte
            return corrupt(self.path, compression(self.path), exc)
        return found or GptclsError(f"{self.path} is not valid {self.encoding}; pass the "
                                    "file's real encoding with --encoding")

    def _first_bad_byte(self) -> DecodeError | None:
        decoder = codecs.getincrementaldecoder(self.codec)("strict")
        offset, line = 0, 1
        with open_bytes(self.path) as fh:
            while True:
                chunk = fh.read(_SCAN_CHUNK)
                pending = decoder.getstate()[0]  # bytes of a character split across chunks
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeError as exc:
                    if not isinstance(exc, UnicodeDecodeError):
                        return None
                    data = pending + chunk
                    at = exc.start
                    line += data.count(b"\n", len(pending), max(at, len(pending)))
                    return DecodeError(self.path, self.encoding, data[at] if at < len(data)
                                       else 0, offset - len(pending) + at, line)
                if not chunk:
                    return None
                offset += len(chunk)
                line += chunk.count(b"\n")
