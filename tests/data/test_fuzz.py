"""Fuzz the data stage: the real files in ../shared/data, mutated a few hundred seeded ways.

Every case runs `gptcls train --dry-run` in-process and must end with exit 0, or exit 2 with
one "gptcls: error:" line last on stderr; never a traceback or another exception, and nothing
written (OUT never exists). bench/fuzz_data.py runs the same generator for 1,000 cases.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import functools
import gzip
import io
import json
import lzma
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from helpers import AG_NEWS_PATH, SMS_PATH, TREC_PATH

CASES = 300  # the test's share; the benchmark runs 1,000
SEED = 20240
BASE_LINES = 300  # most cases mutate the first lines of a real file, to stay fast
BIG_LINE = 10 << 20


# --------------------------------------------------------------------------- bases


def _head(path: Path, lines: int) -> bytes:
    with path.open("rb") as fh:
        return b"".join(fh.readline() for _ in range(lines))


def _sms_rows(lines: int) -> list[tuple[str, str]]:
    text = _head(SMS_PATH, lines).decode("utf-8")
    return [tuple(line.split("\t", 1)) for line in text.split("\n") if "\t" in line]


def _csv_bytes(rows: list[tuple[str, str]], delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["label", "text"])
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _parquet_bytes(rows: list[tuple[str, str]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"label": [r[0] for r in rows], "text": [r[1] for r in rows]}), buf,
                   row_group_size=64)
    return buf.getvalue()


@functools.cache
def bases() -> dict[str, tuple[bytes, str, tuple[str, ...]]]:
    """name -> (file bytes, file extension, extra train arguments)."""
    rows = _sms_rows(BASE_LINES)
    ag = ("--text-column", "description")
    trec = b"".join(line.replace(b" ", b"\t", 1) for line in
                    _head(TREC_PATH, BASE_LINES).splitlines(keepends=True))
    return {
        "sms": (_head(SMS_PATH, BASE_LINES), "", ()),
        "sms_csv": (_csv_bytes(rows), ".csv", ()),
        "sms_tsv": (_csv_bytes(rows, "\t"), ".tsv", ()),
        "sms_jsonl": ("".join(json.dumps({"text": t, "label": lab}) + "\n" for lab, t in rows
                              ).encode("utf-8"), ".jsonl", ()),
        "sms_parquet": (_parquet_bytes(rows), ".parquet", ()),
        "ag_news": (_head(AG_NEWS_PATH, BASE_LINES), ".csv", ag),
        "trec": (_head(TREC_PATH, BASE_LINES), ".label", ()),
        "trec_tab": (trec, ".txt", ()),
    }


# --------------------------------------------------------------------------- mutations

Mutation = Callable[[random.Random, bytes], bytes]


def _cut(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _cut_mid_line(rng: random.Random, data: bytes) -> bytes:
    ends = [i for i, b in enumerate(data) if b == 0x0A] or [len(data)]
    end = rng.choice(ends)
    start = data.rfind(b"\n", 0, end) + 1
    return data[:rng.randrange(start, end + 1)]


def _cut_mid_char(rng: random.Random, data: bytes) -> bytes:
    starts = [i for i, b in enumerate(data) if b >= 0xC2 and b <= 0xF4]
    if not starts:
        data, starts = data + "é£€".encode(), [len(data)]
    return data[:rng.choice(starts) + 1]


def _random_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 20)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _nuls(rng: random.Random, data: bytes) -> bytes:
    at = rng.choice([0, rng.randrange(len(data) + 1), max(len(data) - 10, 0)])
    return data[:at] + b"\x00" * rng.randint(1, 4) + data[at:]


def _bom(rng: random.Random, data: bytes) -> bytes:
    return rng.choice([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe"]) + data


def _utf16(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("utf-8", "replace")
    return text.encode(rng.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))


def _crlf(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _cr(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r")


def _mixed_ends(rng: random.Random, data: bytes) -> bytes:
    return b"".join(line.rstrip(b"\r\n") + rng.choice([b"\n", b"\r\n", b"\r", b"\n\n"])
                    for line in data.splitlines(keepends=True))


def _mixed_delimiters(rng: random.Random, data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b",\t;|" and rng.random() < 0.3:
            b = rng.choice(b",\t;|")
        out.append(b)
    return bytes(out)


def _quotes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        out.insert(rng.randrange(len(out) + 1), ord('"'))
    return bytes(out)


def _big_line(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True) or [b""]
    at = rng.randrange(len(lines) + 1)
    big = rng.choice([b"x", b"ham\t", b'"', b"{"]) + b"word " * (BIG_LINE // 5) + b"\n"
    return b"".join(lines[:at]) + big + b"".join(lines[at:])


def _invalid_utf8(rng: random.Random, data: bytes) -> bytes:
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80",
                      "café".encode("latin-1")])
    at = rng.randrange(len(data) + 1)
    return data[:at] + bad + data[at:]


def _empty_columns(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    for i in rng.sample(range(len(lines)), k=min(len(lines), rng.randint(1, 50))):
        sep = b"\t" if b"\t" in lines[i] else b","
        head, _, _ = lines[i].partition(sep)
        lines[i] = rng.choice([head + sep + b"\n", sep + lines[i].partition(sep)[2], b"\n",
                               sep * 3 + b"\n"])
    return b"".join(lines)


def _header_only(rng: random.Random, data: bytes) -> bytes:
    return data.split(b"\n", 1)[0] + rng.choice([b"", b"\n", b"\r\n", b"\n\n  \n"])


def _empty(rng: random.Random, data: bytes) -> bytes:
    return rng.choice([b"", b"\n", b" \r\n\t\n", b"\xef\xbb\xbf", b" " * 9000])


def _garbage(rng: random.Random, data: bytes) -> bytes:
    n = rng.choice([1, 100, 9000, 70000])
    head = rng.choice([b"", b"PK\x03\x04", b"PAR1", b"\x1f\x8b\x08", b"\x89PNG\r\n\x1a\n"])
    return head + rng.randbytes(n)


def _compress(rng: random.Random, data: bytes) -> bytes:
    """gzip, bzip2 or xz (read as what they hold), a third of them cut short."""
    packed = rng.choice([gzip.compress, bz2.compress, lzma.compress])(data)
    return packed[:rng.randrange(len(packed) + 1)] if rng.random() < 0.3 else packed


def _few_rows(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    return b"".join(lines[:rng.randint(1, 6)])


def _one_class(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    first = lines[1][:3] if len(lines) > 1 else b""
    return b"".join(line for i, line in enumerate(lines) if i == 0 or line.startswith(first))


def _shuffle_lines(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    rng.shuffle(lines)
    return b"".join(lines)


def _drop_tabs(rng: random.Random, data: bytes) -> bytes:
    return data.replace(b"\t", rng.choice([b" ", b"", b",,"]))


def _controls(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 10)):
        c = rng.choice(["\u2028", "\x85", "\x0c", "\x1c", "\x1b[2J", "\ufeff", "\u202e"])
        out[rng.randrange(len(out) + 1):0] = c.encode("utf-8")
    return bytes(out)


def _latin1(rng: random.Random, data: bytes) -> bytes:
    return data.decode("utf-8", "replace").encode("latin-1", "replace")


def _deep_json(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([100, 5000, 200_000])
    line = rng.choice([b"[" * depth + b"]" * depth, b'{"text": ' + b"[" * depth + b"1"])
    return line + b"\n" + data


def _json_values(rng: random.Random, data: bytes) -> bytes:
    odd = [b"null", b"1" * 5000, b'"\\ud800"', b'"\\ud83d\\ude00"', b"NaN", b"-Infinity",
           b"1e999", b"true", b"[]", b'{"a": {}}', b'"' + b"\\u0000" * 3 + b'"', b"0.5"]
    lines = data.splitlines(keepends=True)
    for i in rng.sample(range(len(lines)), k=min(len(lines), rng.randint(1, 30))):
        for key in (b'"text": ', b'"label": '):
            at = lines[i].find(key)
            if at >= 0 and rng.random() < 0.6:
                end = lines[i].find(b'"', lines[i].find(b'"', at + len(key)) + 1) + 1
                lines[i] = lines[i][:at + len(key)] + rng.choice(odd) + lines[i][end:]
    return b"".join(lines)


def _duplicate_header(rng: random.Random, data: bytes) -> bytes:
    first, _, rest = data.partition(b"\n")
    return rng.choice([first + b"\n" + first + b"\n" + rest, first.replace(b"label", b"text")
                       + b"\n" + rest, first[::-1] + b"\n" + rest])


MUTATIONS: dict[str, Mutation] = {
    f.__name__.lstrip("_"): f for f in (
        _cut, _cut_mid_line, _cut_mid_char, _random_bytes, _nuls, _bom, _utf16, _crlf, _cr,
        _mixed_ends, _mixed_delimiters, _quotes, _invalid_utf8, _empty_columns, _header_only,
        _empty, _garbage, _compress, _few_rows, _one_class, _shuffle_lines, _drop_tabs, _controls,
        _latin1, _deep_json, _json_values, _duplicate_header)
}
EXTENSIONS = ("", ".csv", ".tsv", ".txt", ".jsonl", ".json", ".parquet")
FORMAT_ARGS = ("csv", "tsv", "jsonl", "sms", "parquet")
ENCODING_ARGS = ("latin-1", "utf-16", "utf-32", "ascii", "cp037", "utf-7", "shift_jis",
                 "base64", "rot13", "nope")


@dataclass(frozen=True)
class Case:
    index: int
    base: str
    mutations: tuple[str, ...]
    ext: str
    args: tuple[str, ...]
    whole: bool = False  # the whole real file, not its first lines
    seed: int = SEED


def make_cases(n: int, seed: int = SEED) -> list[Case]:
    """The case list: the first few are the slow, whole-file ones; the rest are random."""
    rng = random.Random(seed)
    cases = [Case(0, "sms", ("crlf",), "", (), True, seed),
             Case(1, "ag_news", ("bom",), ".csv", bases()["ag_news"][2], True, seed),
             Case(2, "sms", ("big_line",), "", (), False, seed),
             Case(3, "sms_csv", ("big_line",), ".csv", (), False, seed)][:n]
    names = sorted(bases())
    while len(cases) < n:
        base = rng.choice(names)
        k = rng.choice([1, 1, 1, 2, 3])
        muts = tuple(rng.sample(sorted(set(MUTATIONS) - {"big_line"}), k))
        ext = bases()[base][1] if rng.random() < 0.85 else rng.choice(EXTENSIONS)
        args = bases()[base][2]
        if rng.random() < 0.1:
            args += rng.choice([("--format", rng.choice(FORMAT_ARGS)),
                                ("--encoding", rng.choice(ENCODING_ARGS)),
                                ("--strict",), ("--balance", "none"), ("--text-column", "nope")])
        cases.append(Case(len(cases), base, muts, ext, args, False, seed))
    return cases


def case_bytes(case: Case) -> bytes:
    if case.whole:
        data = {"sms": SMS_PATH, "ag_news": AG_NEWS_PATH}[case.base].read_bytes()
    else:
        data = bases()[case.base][0]
    rng = random.Random(f"{case.seed}-{case.index}")
    for name in case.mutations:
        data = _big_line(rng, data) if name == "big_line" else MUTATIONS[name](rng, data)
    return data


# --------------------------------------------------------------------------- running a case


@dataclass
class Outcome:
    code: int | None  # None: an exception escaped
    error: str  # the error line, or the exception
    crash: bool


def run_case(case: Case, workdir: Path) -> Outcome:
    """Write the case's file, run `gptcls train --dry-run` on it in-process, judge the result."""
    from gptcls.cli.main import main

    path = workdir / f"case{case.index}{case.ext}"
    out = workdir / f"run{case.index}"
    path.write_bytes(case_bytes(case))
    argv = ["train", "--dry-run", "--data", str(path), "--out", str(out), *case.args]
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(argv)
    except BaseException as exc:  # noqa: BLE001 (anything escaping is the bug we look for)
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:300], True)
    finally:
        path.unlink()
    err = stderr.getvalue()
    try:  # what a UTF-8 terminal would have to show
        (stdout.getvalue() + err).encode("utf-8")
    except UnicodeEncodeError as exc:
        return Outcome(code, f"output a terminal cannot print: {exc}", True)
    lines = err.rstrip("\n").split("\n")
    errors = [ln for ln in err.split("\n") if ln.startswith("gptcls: error:")]
    wrote = out.exists()
    if code == 0:
        ok = not errors and not wrote and "Traceback" not in err
        return Outcome(0, "" if ok else f"exit 0 but stderr/out: {err[-300:]!r}", not ok)
    ok = (code == 2 and len(errors) == 1 and lines[-1] == errors[0] and "\r" not in errors[0]
          and "Traceback" not in err and not wrote)
    return Outcome(code, errors[0] if errors else err[-300:], not ok)


def message_kind(error: str) -> str:
    """The error line without paths and numbers, for the benchmark's tally."""
    import re

    text = error.removeprefix("gptcls: error: ")
    text = re.sub(r"\S*/case\d+\S*", "FILE", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\(.*\)|0x[0-9a-f]+|(?<![\w-])\d[\d,.]*", "_", text)
    return text[:80]


def tally(outcomes: list[Outcome]) -> Counter:
    return Counter("crash" if o.crash else "exit 0" if o.code == 0 else
                   f"exit 2: {message_kind(o.error)}" for o in outcomes)


# --------------------------------------------------------------------------- the test


def test_fuzz_data_stage(tmp_path: Path) -> None:
    cases = make_cases(CASES)
    outcomes = [run_case(case, tmp_path) for case in cases]
    crashes = [(c, o.error) for c, o in zip(cases, outcomes, strict=True) if o.crash]
    assert not crashes, "\n".join(f"{c}: {e}" for c, e in crashes[:20])
    counts = tally(outcomes)
    # The generator must reach both ends: files that train and files refused with a message.
    assert counts["exit 0"] >= 30 and sum(v for k, v in counts.items() if k != "exit 0") >= 100
    assert list(tmp_path.iterdir()) == []  # nothing written besides the cases' own files


def test_generator_is_seeded() -> None:
    assert make_cases(40) == make_cases(40)
    assert [case_bytes(c) for c in make_cases(12)[4:]] == [case_bytes(c) for c in
                                                            make_cases(12)[4:]]
    assert make_cases(40, seed=1) != make_cases(40)
