"""Tests for gptcls.data.labelled: every format, column detection, the bad-input matrix, splits."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import SMS_PATH

from gptcls.data.examples import Example
from gptcls.data.labelled import read_labelled
from gptcls.data.partition import (
    balance_undersample,
    class_weights,
    leakage_warnings,
    random_split,
    stratified_split,
)
from gptcls.data.sms import read_sms_file
from gptcls.data.splits import check_trainable
from gptcls.errors import GptclsError
from gptcls.schema import parse_fractions

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # the Parquet tests then fail loudly; every other test still runs
    pa = pq = None

REAL_SMS = SMS_PATH


@pytest.fixture(scope="module")
def sms_path() -> Path:
    if not REAL_SMS.is_file():
        pytest.fail(f"the real SMS Spam Collection is missing at {REAL_SMS}")
    return REAL_SMS


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def _need_pyarrow() -> None:
    if pa is None:
        pytest.fail("the Parquet tests need pyarrow (pip install pyarrow)")


def _parquet(tmp_path: Path, name: str = "d.parquet", **columns: list) -> Path:
    _need_pyarrow()
    p = tmp_path / name
    pq.write_table(pa.table(columns), p)
    return p


# --------------------------------------------------------------------------- formats


def test_csv_quoted_newlines_commas_and_bom(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", '\ufefftext,label\n"line one\nline two, with comma",spam\n'
               '"she said ""hi""",ham\r\nplain,ham\n')
    examples, report = read_labelled(p)
    assert examples == [Example("line one\nline two, with comma", "spam"),
                        Example('she said "hi"', "ham"), Example("plain", "ham")]
    assert (report.format, report.text_column, report.label_column) == ("csv", "text", "label")
    assert report.rows_read == 3
    assert report.label_counts == {"ham": 2, "spam": 1}


def test_csv_error_names_the_starting_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", 'text,label\nok,ham\n"' + "x" * 200_000 + '",spam\n')
    with pytest.raises(GptclsError, match=r"d\.csv:3: cannot parse CSV: field larger"):
        read_labelled(p)


def test_tsv_with_header_uses_csv_quoting(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.tsv", 'label\ttext\nham\t"two\nlines"\nspam\tx\n')
    examples, report = read_labelled(p)
    assert report.format == "tsv"
    assert examples == [Example("two\nlines", "ham"), Example("x", "spam")]


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.ndjson", "d.JSONL"])
def test_json_lines(tmp_path: Path, name: str) -> None:
    rows = [{"text": "a\u2028b", "label": 1}, {"text": "c", "label": 0, "extra": [1]},
            {"text": "d", "label": None}, {"label": 1}, {"text": "e", "label": True}]
    p = _write(tmp_path, name, "\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples, report = read_labelled(p)
    assert report.format == "jsonl"
    assert examples == [Example("a\u2028b", "1"), Example("c", "0"), Example("e", "true")]
    assert (report.dropped_missing_label, report.dropped_empty_text) == (1, 1)


def test_json_array_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.json", json.dumps([{"Message": "hi", "Category": "A"},
                                               {"Message": "yo", "Category": "b"}], indent=2))
    examples, report = read_labelled(p)
    assert examples == [Example("hi", "a"), Example("yo", "b")]
    assert (report.text_column, report.label_column) == ("Message", "Category")


def test_parquet(tmp_path: Path) -> None:
    p = _parquet(tmp_path, text=["a", "b", None, "d"], label=[1.0, float("nan"), 0.0, 0.0],
                 other=[1, 2, 3, 4])
    examples, report = read_labelled(p)
    assert report.format == "parquet"
    assert examples == [Example("a", "1"), Example("d", "0")]
    assert (report.dropped_empty_text, report.dropped_missing_label) == (1, 1)


def test_parquet_dictionary_column_and_magic_detection(tmp_path: Path) -> None:
    _need_pyarrow()
    p = tmp_path / "data.bin"
    text = pa.array(["x", "y", "x"]).dictionary_encode()
    pq.write_table(pa.table({"sentence": text, "y": ["p", "q", "p"]}), p)
    examples, report = read_labelled(p)
    assert report.format == "parquet"
    assert [ex.text for ex in examples] == ["x", "y", "x"]


@pytest.mark.parametrize("name", ["sms.tsv", "sms.txt", "SMSData"])
def test_headerless_label_tab_text(tmp_path: Path, name: str) -> None:
    # Detection looks at line one (exactly 2 fields); later lines split on the first tab only.
    p = _write(tmp_path, name, 'spam\t"q" x\r\n\nham\ta\tb  \r\nham\tno newline at end')
    examples, report = read_labelled(p)
    assert report.format == "sms"
    assert examples == [Example('"q" x', "spam"), Example("a\tb  ", "ham"),
                        Example("no newline at end", "ham")]


def test_two_field_tsv_with_header_is_not_headerless(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.txt", "Category\tMessage\nham\thello\n")
    examples, report = read_labelled(p)
    assert report.format == "tsv"
    assert examples == [Example("hello", "ham")]


def test_named_columns_in_first_line_mean_a_header(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.tsv", "kind\tbody_text\nham\thello\n")
    examples, _ = read_labelled(p, text_column="body_text", label_column="kind")
    assert examples == [Example("hello", "ham")]


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.txt", "text,label\nhi,a\n")
    assert read_labelled(p, format="CSV")[1].format == "csv"
    assert read_labelled(p)[1].format == "csv"  # .txt without tabs: CSV


@pytest.mark.parametrize(
    ("header", "text_col", "label_col"),
    [("v1,v2", "v2", "v1"), ("Review,Sentiment", "Review", "Sentiment"),
     (" MESSAGE , Category ", " MESSAGE ", " Category "), ("id,body,class", "body", "class"),
     ("comment,text,y", "text", "y"), ("document,target,labels", "document", "labels")],
)
def test_column_auto_detection(tmp_path: Path, header: str, text_col: str, label_col: str) -> None:
    row = ",".join("x" for _ in header.split(","))
    p = _write(tmp_path, "d.csv", f"{header}\n{row}\n")
    _, report = read_labelled(p)
    assert (report.text_column, report.label_column) == (text_col, label_col)


def test_named_columns_are_case_insensitive(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "Tweet,Mood\nhello,Happy\n")
    examples, report = read_labelled(p, text_column="tweet", label_column="MOOD")
    assert (report.text_column, report.label_column) == ("Tweet", "Mood")
    assert examples == [Example("hello", "happy")]


# --------------------------------------------------------------------------- the real SMS file


def test_real_sms_file(sms_path: Path) -> None:
    examples, report = read_labelled(sms_path)
    assert len(examples) == 5574
    assert Counter(ex.label for ex in examples) == {"ham": 4827, "spam": 747}
    assert examples == read_sms_file(sms_path)
    assert report.format == "sms" and report.warnings == [] and report.merged_labels == {}
    assert report.lines() == [
        f"read 5,574 rows from {sms_path} (format sms, text column 'text', label column 'label')",
        "2 classes: ham 4,827; spam 747",
    ]
    check_trainable(examples)


def test_leakage_on_real_sms_split(sms_path: Path) -> None:
    examples, _ = read_labelled(sms_path)
    train, val, test = random_split(balance_undersample(examples, seed=123), seed=123)
    warnings = leakage_warnings(train, val, test)
    # The SMS file repeats 403 messages, so a random split leaks; these counts are exact.
    assert warnings[0].startswith("32 texts of test (36 rows) also appear in train")
    assert warnings[1].startswith("12 texts of validation (13 rows) also appear in train")
    assert warnings[2].startswith("6 texts of test (7 rows) also appear in validation")
    assert leakage_warnings(train, [], [Example("never seen", "ham")]) == []


# --------------------------------------------------------------------------- encodings


def test_latin1_with_and_without_encoding(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\nok,ham\ncaf\xe9 cr\xe8me,spam\n".encode("latin-1"))
    with pytest.raises(GptclsError) as err:
        read_labelled(p)
    assert str(err.value) == (
        f"{p} is not valid utf-8: byte 0xe9 at offset 21 (line 3); "
        "pass --encoding latin-1 (or the file's real encoding)"
    )
    for codec in ("latin-1", "ISO-8859-1", "cp1252"):
        examples, _ = read_labelled(p, encoding=codec)
        assert examples[1] == Example("café crème", "spam")


def test_offset_counts_the_bom(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", b"\xef\xbb\xbftext,label\nab\xff,x\n")
    with pytest.raises(GptclsError, match="byte 0xff at offset 16 \\(line 2\\)"):
        read_labelled(p)


def test_other_codec_errors_do_not_suggest_latin1(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(GptclsError, match="not valid ascii: byte 0xe9 .*real encoding"):
        read_labelled(p, encoding="ascii")


def test_utf16_needs_encoding(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\nhi,a\n".encode("utf-16"))
    with pytest.raises(GptclsError, match="looks like UTF-16 text; pass --encoding utf-16"):
        read_labelled(p)
    assert read_labelled(p, encoding="utf-16")[0] == [Example("hi", "a")]


# --------------------------------------------------------------------------- labels / report


def test_label_merging_report(tmp_path: Path) -> None:
    rows = ["Spam"] * 23 + [" spam"] * 2 + ["spam"] * 10 + ["HAM"] * 4
    p = _write(tmp_path, "d.csv", "text,label\n" + "".join(f"t{i},{r}\n" for i, r in
                                                          enumerate(rows)))
    examples, report = read_labelled(p)
    assert Counter(ex.label for ex in examples) == {"spam": 35, "ham": 4}
    assert report.merged_labels == {"ham": {"HAM": 4}, "spam": {"Spam": 23, " spam": 2}}
    assert 'labels renamed: "HAM" -> "ham" (4 rows)' in report.lines()
    assert 'labels merged: "Spam", " spam" -> "spam" (25 rows)' in report.lines()
    raw, raw_report = read_labelled(p, normalize_labels=False)
    assert Counter(ex.label for ex in raw)[" spam"] == 2 and raw_report.merged_labels == {}


def test_dropped_rows_are_counted_and_reported(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\na,x\n  ,x\nb,\nc, \nd\ne,y\n")
    examples, report = read_labelled(p)
    assert examples == [Example("a", "x"), Example("e", "y")]
    assert (report.rows_read, report.dropped_empty_text, report.dropped_missing_label) == (6, 1, 3)
    assert "dropped 1 row with empty text" in report.lines()
    assert "dropped 3 rows with no label" in report.lines()


@pytest.mark.parametrize(
    ("content", "message"),
    [("text,label\na,x\n  ,x\n", r"d\.csv:3: empty text in column 'text'"),
     ("text,label\na,x\n\n\"b\nc\",\n", r"d\.csv:4: no label in column 'label'")],
)
def test_strict_names_the_first_bad_row(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(GptclsError, match=message):
        read_labelled(_write(tmp_path, "d.csv", content), strict=True)


def test_unlabelled_data(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,id\na,1\nb,2\n")
    examples, report = read_labelled(p, require_labels=False)
    assert examples == [Example("a", ""), Example("b", "")] and report.label_column is None
    assert "no label column" in report.lines()[0]
    q = _write(tmp_path, "e.csv", "text,label\na,x\nb,\n")
    assert read_labelled(q, require_labels=False, strict=True)[0][1] == Example("b", "")
    with pytest.raises(GptclsError, match="1 row without a label"):
        check_trainable(read_labelled(q, require_labels=False)[0])


def test_wide_rows_warning(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\nhello, world,x\nok,y\n")
    _, report = read_labelled(p)
    assert report.warnings == ["1 row had more fields than the header (unquoted commas in "
                               "the text?); extra fields ignored"]


def test_many_distinct_labels_warns(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\n" + "".join(f"x,sentence {i}\n" for i in range(150)))
    _, report = read_labelled(p)
    assert report.warnings == ["label column 'label' has 150 distinct values in 150 rows; "
                               "is this the text column?"]
    assert report.lines()[1].startswith("150 classes: sentence 0 1; sentence 1 1; ")
    assert report.lines()[1].endswith("; sentence 106 1; ... (140 more)")
    assert "warning: label column 'label' has 150" in report.lines()[-1]


# --------------------------------------------------------------------------- bad-input matrix


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.csv", b"", "data file is empty: "),
        ("d.csv", b"\n  \n", "data file is empty: "),
        ("d.jsonl", b"\n", "data file is empty: "),
        ("d.csv", b"text,label\n", "has column names but no data rows"),
        ("d.tsv", b"text\tlabel\r\n\r\n", "has column names but no data rows"),
        ("d.csv", b"a,b\n1,2\n",
         r"cannot tell which column holds the text; available columns: 'a', 'b'; "
         r"pass --text-column NAME"),
        ("d.csv", b"text,b\n1,2\n",
         r"cannot tell which column holds the label; available columns: 'text', 'b'; "
         r"pass --label-column NAME"),
        ("d.csv", b"text,label\n,x\n\"  \",y\n",
         r"no usable rows in .*: 2 read, 2 with empty text, 0 with no label"),
        ("d.bin", b"PK\x03\x04\x00\x00junk", "d.bin is a zip archive: extract the data file"),
        ("d.bin", b"\x00\x01\x02junk", "looks like a binary file \\(NUL bytes in the first"),
        ("d.csv", b"text,label\nhi,\xff\n", "not valid utf-8: byte 0xff at offset 14 \\(line 2\\)"),
        ("d.jsonl", b'{"text": "a", "label": 1}\n{"text": oops}\n', r"d\.jsonl:2: not valid JSON"),
        ("d.jsonl", b'[1, 2]\n', r"d\.jsonl: item 1: expected a JSON object, got int"),
        ("d.jsonl", b'"just a string"\n', r"d\.jsonl:1: expected a JSON object, got str"),
        ("d.json", b'[{"text": "a",\n "label": }]', r"d\.json:2: not valid JSON"),
        ("d.jsonl", b'{"text": 5, "label": "a"}\n',
         r"d\.jsonl:1: text in column 'text' is int, not a string"),
        ("d.jsonl", b'{"text": "a", "label": [1]}\n', r"d\.jsonl:1: label is list, expected"),
        ("d.txt", b"ham\tok\nno tab here\n", r"d\.txt:2: expected 'label<TAB>text'"),
        ("d.parquet", b"PAR1 not really parquet", "is not a readable Parquet file"),
    ],
)
def test_bad_input(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    with pytest.raises(GptclsError, match=message):
        read_labelled(_write(tmp_path, name, content))


def test_file_not_found_and_directory(tmp_path: Path) -> None:
    with pytest.raises(GptclsError, match="data file not found: .*nope.csv"):
        read_labelled(tmp_path / "nope.csv")
    with pytest.raises(GptclsError, match="data file is a directory: "):
        read_labelled(tmp_path)


def test_missing_named_column_lists_the_available_ones(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\na,b\n")
    with pytest.raises(GptclsError, match=r"no column 'txt'; available columns: 'text', 'label'"):
        read_labelled(p, text_column="txt")
    with pytest.raises(GptclsError, match="text and label are both column 'text'"):
        read_labelled(p, text_column="text", label_column="TEXT")
    header = ",".join(f"c{i}" for i in range(25))
    many = _write(tmp_path, "w.csv", f"{header}\n" + "x," * 24 + "x\n")
    with pytest.raises(GptclsError, match=r"'c19', \.\.\. \(5 more\)"):
        read_labelled(many)


def test_unknown_encoding_and_format(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.csv", "text,label\na,b\n")
    with pytest.raises(GptclsError, match="unknown encoding 'utf-9'; use a Python codec name"):
        read_labelled(p, encoding="utf-9")
    with pytest.raises(GptclsError, match="unknown data format 'xlsx'; use one of csv, tsv"):
        read_labelled(p, format="xlsx")


def test_headerless_file_has_no_named_columns(tmp_path: Path) -> None:
    p = _write(tmp_path, "d.txt", "ham\thello\n")
    with pytest.raises(GptclsError, match="has no header row"):
        read_labelled(p, format="sms", text_column="message")


def test_parquet_text_column_not_strings(tmp_path: Path) -> None:
    p = _parquet(tmp_path, text=[1, 2], label=["a", "b"])
    with pytest.raises(GptclsError, match="text column 'text' holds int64, not strings"):
        read_labelled(p)


def test_parquet_without_rows(tmp_path: Path) -> None:
    _need_pyarrow()
    p = _parquet(tmp_path, text=pa.array([], pa.string()), label=pa.array([], pa.string()))
    with pytest.raises(GptclsError, match="has column names but no data rows"):
        read_labelled(p)


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, "d.parquet", b"PAR1 contents never read")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(GptclsError, match=r"reading Parquet needs pyarrow: pip install pyarrow"):
        read_labelled(p)


def test_check_trainable() -> None:
    with pytest.raises(GptclsError, match=r"only one class \('ham'\) in the data"):
        check_trainable([Example("a", "ham"), Example("b", "ham")])
    with pytest.raises(GptclsError, match="all texts are empty"):
        check_trainable([Example(" ", "a"), Example("", "b")])
    with pytest.raises(GptclsError, match="no examples to train on"):
        check_trainable([])
    check_trainable([Example("a", "x"), Example("b", "y")])


# --------------------------------------------------------------------------- splits / weights


def test_parse_fractions() -> None:
    assert parse_fractions(" 0.7, 0.1 ,0.2") == (0.7, 0.1, 0.2)
    for spec, message in [("0.7,x,0.2", "'x' is not a number"), ("0.8,0.2", "need 3 split"),
                          ("0.7,0,0.3", "must all be positive"), ("0.7,0.2,0.2", "sum to 1"),
                          ("nan,0.5,0.5", "positive"), ("", "'' is not a number")]:
        with pytest.raises(GptclsError, match=message):
            parse_fractions(spec)


def _classes(**sizes: int) -> list[Example]:
    return [Example(f"{label}{i}", label) for label, n in sizes.items() for i in range(n)]


def test_stratified_split_keeps_class_proportions() -> None:
    data = _classes(a=1000, b=100, c=10, d=3, e=2, f=1)
    train, val, test = stratified_split(data, (0.7, 0.1, 0.2), seed=5)
    counts = [Counter(ex.label for ex in split) for split in (train, val, test)]
    assert [c["a"] for c in counts] == [700, 100, 200]
    assert [c["b"] for c in counts] == [70, 10, 20]
    assert [c["c"] for c in counts] == [7, 1, 2]
    assert [c["d"] for c in counts] == [1, 1, 1]  # a rare class still reaches val and test
    assert [c["e"] for c in counts] == [1, 0, 1] and [c["f"] for c in counts] == [0, 0, 1]
    assert Counter(train + val + test) == Counter(data)
    assert stratified_split(data, seed=5) == (train, val, test)
    assert stratified_split(data, seed=6) != (train, val, test)
    assert [ex.label for ex in train[:50]] != sorted(ex.label for ex in train[:50])  # mixed


def test_stratified_split_on_real_sms(sms_path: Path) -> None:
    examples, _ = read_labelled(sms_path)
    splits = stratified_split(examples, seed=123)
    spam = [sum(ex.label == "spam" for ex in s) / len(s) for s in splits]
    assert all(abs(share - 747 / 5574) < 0.005 for share in spam)


def test_class_weights() -> None:
    data = _classes(a=30, b=10)
    assert class_weights(data, ["a", "b"]) == pytest.approx([0.5, 1.5])
    assert class_weights(_classes(a=5, b=5, c=5), ["c", "a", "b"]) == pytest.approx([1, 1, 1])
    with pytest.raises(GptclsError, match=r"class\(es\) \['c'\] have no training examples"):
        class_weights(data, ["a", "b", "c"])
    with pytest.raises(GptclsError, match="not in the label order"):
        class_weights(data, ["a"])
