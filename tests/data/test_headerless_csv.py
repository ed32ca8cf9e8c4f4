"""Headerless CSV/TSV (detected or --no-header, columns by 1-based position) and 8-bit
encodings read with --encoding."""

import csv

import pytest
from helpers import SMS_PATH

from gptcls.data.formats.header import data_evidence
from gptcls.data.labelled import read_labelled
from gptcls.data.readers import open_table
from gptcls.errors import GptclsError

AG_NEWS = SMS_PATH.parents[1] / "ag_news" / "test.csv"


@pytest.fixture
def ag_headerless(tmp_path):
    """The real AG News test split as the original release ships it: no header row."""
    path = tmp_path / "ag.csv"
    path.write_bytes(b"".join(AG_NEWS.open("rb").readlines()[1:301]))
    return path


def test_headerless_csv_is_detected_and_named_by_position(ag_headerless):
    examples, report = read_labelled(ag_headerless, text_column="2,3", label_column="1")
    assert report.rows_read == len(examples) == 300  # the first row is data, kept
    assert examples[0].text.startswith("Fears for T N pension after talks\nUnions")
    assert report.notes == ["no header row (column 1's first value '3' is a number like the "
                            "rest of the column): columns are named by position 1-3; name "
                            "them with --text-column/--label-column N"]
    assert report.notes[0] in report.lines()


def test_headerless_without_columns_asks_for_positions(ag_headerless):
    with pytest.raises(GptclsError, match=r"available columns: '1', '2', '3'; pass "
                                          r"--text-column"):
        read_labelled(ag_headerless)


def test_a_header_row_stays_a_header():
    table = open_table(AG_NEWS)
    assert table.columns == ["label", "title", "description"] and table.notes == []
    table.close()


def test_no_header_flag_forces_positions(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("category\tmessage body\nspam\tWin a prize now\nham\tSee you at 5\n")
    table = open_table(path)
    assert table.columns == ["category", "message body"]  # detected: a header
    table.close()
    examples, report = read_labelled(path, no_header=True, text_column="2",
                                     label_column="1")
    assert len(examples) == 3 and examples[0].label == "category"
    assert report.notes[0].startswith("no header row (--no-header)")


@pytest.mark.parametrize(("first", "rows", "why"), [
    (["ham", "hello there"], [["spam", "win"], ["ham", "ok"]], "column 1's first value 'ham' "
     "repeats below it"),
    (["3", "x"], [["1", "y"], ["2", "z"]], "column 1's first value '3' is a number"),
    (["x1", "A bank said on Monday that its profits rose by a lot"],
     [[f"y{i}", "Another long sentence of news text goes right here ok"] for i in range(3)],
     "column 2's first value reads as text"),
])
def test_first_row_reads_as_data(first, rows, why):
    assert data_evidence(first, rows, set()).startswith(why)


@pytest.mark.parametrize(("first", "rows", "names"), [
    (["label", "text"], [["ham", "label"], ["ham", "x"]], set()),  # a known name
    (["score", "review"], [["1", "ok"], ["2", "bad"]], set()),  # a name over numbers
    (["kind", "body"], [["kind", "x"]], {"body"}),  # a name the user gave
    (["How satisfied are you with the product overall today?", "id"],
     [["yes", "1"], ["no", "2"]], set()),  # a long question above short answers
    (["a", "b"], [], set()),  # nothing below: keep the header
])
def test_first_row_stays_header(first, rows, names):
    assert data_evidence(first, rows, names) is None


def test_latin1_and_cp1252_files_read_with_encoding(tmp_path):
    rows = [["text", "label"], ["Café crème à 2 €", "ham"], ["Naïve “quotes”", "spam"]]
    for codec, sample in (("cp1252", "Naïve “quotes”"), ("latin-1", "Naïve")):
        path = tmp_path / f"{codec}.csv"
        with path.open("w", encoding=codec, newline="", errors="replace") as fh:
            csv.writer(fh).writerows(rows if codec == "cp1252" else
                                     [[t.replace("€", "E").replace("“", '"').replace("”", '"'),
                                       lab] for t, lab in rows])
        examples, _ = read_labelled(path, encoding=codec)
        assert examples[1].text.startswith(sample)
        with pytest.raises(GptclsError) as err:  # the default utf-8 stops, naming --encoding
            read_labelled(path)
        assert "is not valid utf-8" in str(err.value) and "--encoding" in str(err.value)
        assert "\n" not in str(err.value)


def test_a_file_invalid_in_the_given_encoding_names_encoding(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text,label\nabc \x81 def,ham\nok,spam\n")  # 0x81: undefined in cp1252
    with pytest.raises(GptclsError) as err:
        read_labelled(path, encoding="cp1252")
    assert str(err.value) == (f"{path} is not valid cp1252: byte 0x81 at offset 15 (line 2); "
                              "pass the file's real encoding with --encoding")
