"""The one reader behind train, evaluate and predict, and the data stage's dry run."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SMS_PATH

from gptcls.data.examples import Example
from gptcls.data.labelled import read_labelled
from gptcls.data.sources import open_source
from gptcls.data.splits import describe_splits, load_splits
from gptcls.errors import GptclsError
from gptcls.options import DataOptions


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def _rows(path: Path, **kw) -> list[list]:
    source = open_source(path, kw.get("format"), None, kw.get("encoding", "utf-8"), 4)
    try:
        return [row for chunk in source.chunks() for row in chunk]
    finally:
        source.close()


def test_train_and_predict_read_the_same_rows(tmp_path: Path) -> None:
    # CR-only line ends (old Mac), a BOM and a quoted newline: one reader, one answer.
    p = _write(tmp_path, "d.csv", b'\xef\xbb\xbftext,label\r"a\nb",x\rc,y\r')
    examples, _ = read_labelled(p)
    assert examples == [Example("a\nb", "x"), Example("c", "y")]
    assert _rows(p) == [["a\nb", "x"], ["c", "y"]]


def test_decode_error_offset_deep_in_a_streamed_file(tmp_path: Path) -> None:
    body = b"".join(b"hello %d,x\n" % i for i in range(20_000))  # past the reader's buffers
    p = _write(tmp_path, "d.csv", b"text,label\n" + body + b"caf\xe9,y\n")
    offset = len(b"text,label\n" + body) + 3
    message = (f"{p} is not valid utf-8: byte 0xe9 at offset {offset} (line 20002); "
               "pass --encoding latin-1 (or the file's real encoding)")
    with pytest.raises(GptclsError) as err:
        read_labelled(p)
    assert str(err.value) == message
    with pytest.raises(GptclsError) as err:
        _rows(p)
    assert str(err.value) == message


def test_predict_messages_name_the_input_file(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="input file not found: "):
        open_source(tmp_path / "nope.csv", None, None, "utf-8", 4)
    with pytest.raises(GptclsError, match="input file is empty: "):
        open_source(_write(tmp_path, "e.csv", b"\n\n"), None, None, "utf-8", 4)
    p = _write(tmp_path, "a.json", b'[{"text": "a"}]')
    with pytest.raises(GptclsError, match="holds one JSON array, which cannot be streamed"):
        open_source(p, None, None, "utf-8", 4)
    assert read_labelled(p, require_labels=False)[0] == [Example("a", "")]


def test_second_bom_does_not_hide_a_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", b"\xef\xbb\xbf\xef\xbb\xbftext,label\na,x\n")
    assert read_labelled(p)[0] == [Example("a", "x")]


@pytest.mark.parametrize("encoding", ["base64", "rot13", "nope"])
def test_encodings_that_are_not_text(tmp_path: Path, encoding: str) -> None:
    p = _write(tmp_path, "d.csv", b"text,label\na,x\n")
    with pytest.raises(GptclsError, match=f"unknown encoding '{encoding}'"):
        read_labelled(p, encoding=encoding)


def test_utf16_without_bom_is_one_clear_error(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\na,x\n".encode("utf-16-le"))
    with pytest.raises(GptclsError, match="not valid utf-16 .*does not start with BOM"):
        read_labelled(p, encoding="utf-16")


@pytest.mark.parametrize(("line", "message"), [
    (b'{"text": "a", "label": ' + b"1" * 5000 + b"}", r":1: not valid JSON \(Exceeds the limit"),
    (b'{"text": "a\\ud800", "label": "x"}', r":1: a \\u escape makes an unpaired surrogate"),
    (b"[" * 100_000 + b"]" * 100_000, r":1: not valid JSON \(nested too deeply\)"),
])
def test_json_that_parses_into_no_text(tmp_path: Path, line: bytes, message: str) -> None:
    with pytest.raises(GptclsError, match=message):
        read_labelled(_write(tmp_path, "d.jsonl", line + b"\n"))


def test_json_surrogate_pairs_are_text(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.jsonl", b'{"text": "\\ud83d\\ude00", "label": "x"}\n')
    assert read_labelled(p)[0] == [Example("\U0001f600", "x")]


def test_dry_run_writes_nothing_and_describes(tmp_path: Path) -> None:
    logged: list[str] = []
    out = tmp_path / "run"
    splits = load_splits(DataOptions(data=str(SMS_PATH)), None, logged.append)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert [len(splits[n]) for n in ("train", "validation", "test")] == [1045, 149, 300]
    text = describe_splits(splits)
    assert text.splitlines()[0] == (f"source: {SMS_PATH} (format sms, text column 'text', label "
                                    "column 'label'): 5,574 rows read, none dropped")
    assert "balance: undersample (1,494 of 5,574 rows kept)" in text
    assert [line.split() for line in text.splitlines()[2:6]] == [
        ["2", "labels", "train", "validation", "test"], ["ham", "528", "70", "149"],
        ["spam", "517", "79", "151"], ["total", "1,045", "149", "300"]]
    assert "leakage: 32 texts of test (36 rows) also appear in train" in text
    assert any(line.startswith("read 5,574 rows") for line in logged)


def test_dry_run_describes_drops_and_weights(tmp_path: Path) -> None:
    rows = "".join(f"t{i},{'a' if i % 3 else 'b'}\n" for i in range(60)) + " ,a\nu,\n"
    p = _write(tmp_path, "d.csv", ("text,label\n" + rows).encode())
    splits = load_splits(DataOptions(data=str(p), balance="weighted"), None, lambda _: None)
    text = describe_splits(splits)
    assert "62 rows read, dropped 1 row with empty text and 1 row with no label" in text
    assert "balance: weighted (loss weights a 0.667, b 1.33)" in text
    assert "leakage: no text is in two splits" in text
    totals = text.splitlines()[-2].split()
    assert totals[0] == "total" and sum(int(n) for n in totals[1:]) == 60


def test_failed_split_writes_no_csv(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", b"text,label\na,x\nb,y\nc,x\n")
    with pytest.raises(GptclsError, match="split is empty"):
        load_splits(DataOptions(data=str(p), balance="none"), tmp_path / "run", lambda _: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, content", [
    ("d.csv", "text,label\nfirst,a\n,a\n\nthird,b\nfourth,\nfifth,b\n"),
    ("d.jsonl", '{"text": "first", "label": "a"}\n{"text": "", "label": "a"}\n\n'
                '{"text": "third", "label": "b"}\n{"text": "fourth", "label": null}\n'
                '{"text": "fifth", "label": "b"}\n'),
])
def test_number_rows_gives_each_examples_data_row(tmp_path, name, content):
    # Data rows 2 (empty text) and 4 (no label) are dropped; the blank line is no row.
    path = tmp_path / name
    path.write_text(content)
    examples, report = read_labelled(path, number_rows=True)
    assert [e.text for e in examples] == ["first", "third", "fifth"]
    assert report.data_rows == [1, 3, 5] and report.rows_read == 5
    assert read_labelled(path)[1].data_rows is None  # only when asked: no list for training
