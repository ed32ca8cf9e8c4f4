"""Data as users bring it: several text columns joined, label-prefixed lines (TREC, fastText)."""

from collections import Counter
from pathlib import Path

import pytest
from helpers import SMS_PATH

from gptcls.data.columns import TEXT_SEPARATOR, join_cells, split_spec
from gptcls.data.labelled import read_labelled
from gptcls.data.readers import open_table
from gptcls.data.sources import open_source
from gptcls.errors import GptclsError

DATA = SMS_PATH.parents[1]
AG_NEWS = DATA / "ag_news" / "test.csv"
TREC_TRAIN = DATA / "trec" / "train_5500.label"
TREC_TEST = DATA / "trec" / "TREC_10.label"


def test_ag_news_title_and_description_are_joined():
    examples, report = read_labelled(AG_NEWS, text_column="title,description")
    assert report.rows_read == len(examples) == 7600
    assert report.label_counts == {"1": 1900, "2": 1900, "3": 1900, "4": 1900}
    assert report.text_columns == ["title", "description"]
    # The first data row of the real file, joined with the recorded separator.
    assert examples[0].text.startswith("Fears for T N pension after talks\nUnions representing")
    assert "text columns 'title' + 'description' joined by '\\n'" in report.lines()[0]


def test_one_text_column_reads_as_before():
    examples, report = read_labelled(AG_NEWS, text_column="title")
    assert examples[0].text == "Fears for T N pension after talks"
    assert "text column 'title'" in report.lines()[0]


def test_a_list_naming_a_missing_column_is_one_line_naming_the_columns():
    with pytest.raises(GptclsError) as err:
        read_labelled(AG_NEWS, text_column="title,body")
    msg = str(err.value)
    assert "\n" not in msg and "no column 'body' (of --text-column title,body)" in msg
    assert "available columns: 'label', 'title', 'description'" in msg


def test_text_columns_by_name_case_and_position():
    examples, _ = read_labelled(AG_NEWS, text_column="TITLE, 3")
    by_name, _ = read_labelled(AG_NEWS, text_column="title,description")
    assert examples[:50] == by_name[:50]
    with pytest.raises(GptclsError, match="names a column twice"):
        read_labelled(AG_NEWS, text_column="title,2")
    with pytest.raises(GptclsError, match="text and label are both column 'label'"):
        read_labelled(AG_NEWS, text_column="title,label")


def test_join_leaves_blank_cells_out_and_a_comma_name_is_one_column():
    assert join_cells(["Title", "  ", None], "f:2", ["a", "b", "c"]) == "Title"
    assert join_cells(["A", "B"], "f:2", ["a", "b"]) == "A" + TEXT_SEPARATOR + "B"
    assert split_spec("a,b", ["a,b", "a", "b"]) == ["a,b"]
    assert split_spec("a, b", ["a", "b"]) == ["a", "b"]
    with pytest.raises(GptclsError, match="empty name"):
        split_spec("a,,b", ["a", "b"])
    with pytest.raises(GptclsError, match="text in column 'b' is int"):
        join_cells(["x", 3], "f:2", ["a", "b"])


def test_predict_source_joins_the_same_way(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("id,title,description\n1,Stocks rally,Markets rose today.\n2,Cup final,\n")
    src = open_source(path, None, "title,description", "utf-8", 10)
    rows = [r for chunk in src.chunks() for r in chunk]
    src.close()
    assert [src.text(r, i) for i, r in enumerate(rows)] == [
        "Stocks rally\nMarkets rose today.", "Cup final"]
    # Not given: the run's recorded list is used; the file must have its columns.
    src = open_source(path, None, None, "utf-8", 10, trained_column="title,description")
    assert src.text_indices == [1, 2]
    src.close()
    with pytest.raises(GptclsError, match="no column 'body'.*trained on --text-column "
                                          "title,body"):
        open_source(path, None, None, "utf-8", 10, trained_column="title,body")


def test_trec_coarse_and_fine_on_the_real_files():
    coarse, report = read_labelled(TREC_TRAIN)
    assert report.format == "trec" and report.rows_read == 5444
    assert set(report.label_counts) == {"abbr", "desc", "enty", "hum", "loc", "num"}
    assert coarse[0].text == "How did serfdom develop in and then leave Russia ?"
    fine, report = read_labelled(TREC_TRAIN, label_level="fine")
    # 50 fine classes, plus the one line of the real file whose fine label is a typo
    # ("NUM:How count many innings ...", line 4451): seen once, so its row is recorded.
    assert len(report.label_counts) == 51 and report.label_counts["num:how"] == 1
    assert report.label_rows == {"num:how": [f"{TREC_TRAIN}:4451"]}
    assert Counter(e.label.partition(":")[0] for e in fine) == Counter(e.label for e in coarse)
    raw, _ = read_labelled(TREC_TRAIN, label_level="fine", normalize_labels=False)
    assert raw[0].label == "DESC:manner"
    test, report = read_labelled(TREC_TEST)
    assert len(test) == 499 and len(report.label_counts) == 6


def test_trec_report_summarises_its_renamed_labels():
    _, report = read_labelled(TREC_TRAIN, label_level="fine")
    renamed = [ln for ln in report.lines() if "renamed" in ln]
    assert len(renamed) == 1 and renamed[0].startswith("51 labels renamed")


def test_fasttext_lines_detected_from_content(tmp_path):
    path = tmp_path / "reviews.txt"
    path.write_text("__label__pos great phone, love it\n"
                    "__label__neg  __label__spam\tbroken on arrival\n"
                    "\n"
                    "__label__pos works \"fine\"\n")
    examples, report = read_labelled(path)
    assert report.format == "fasttext"
    assert [(e.label, e.text) for e in examples] == [
        ("pos", "great phone, love it"), ("neg", "broken on arrival"), ("pos", 'works "fine"')]
    assert report.warnings == ["1 row had several __label__ labels; kept the first of each "
                               "(multi-label data is not supported yet)"]


def test_label_prefixed_lines_without_a_label_drop_or_stop(tmp_path):
    path = tmp_path / "questions.label"
    path.write_text("NUM:dist How far is it ?\nWhat is this ?\nHUM:ind Who won ?\n")
    examples, report = read_labelled(path)
    assert report.dropped_missing_label == 1 and [e.label for e in examples] == ["num", "hum"]
    assert "dropped 1 row with no label" in report.lines()
    with pytest.raises(GptclsError) as err:
        read_labelled(path, strict=True)
    assert str(err.value) == (f"{path}:2: no label (expected 'COARSE:fine text' lines)")
    ft = tmp_path / "x.txt"
    ft.write_text("__label__a one\n__label__b two\n")
    ft.write_text(ft.read_text() + "three, no label\n")
    with pytest.raises(GptclsError, match=r"x.txt:3: no label \(expected '__label__x text'"):
        read_labelled(ft, format="fasttext", strict=True)


def test_format_detection_leaves_other_files_alone(tmp_path):
    sms = open_table(SMS_PATH)
    assert sms.format == "sms"
    sms.close()
    note = tmp_path / "notes.txt"
    note.write_text("label,text\nham,Note: call me\n")  # CSV, although 'Note:' has a colon
    table = open_table(note)
    assert table.format == "csv"
    table.close()
    forced = tmp_path / "q.csv"
    forced.write_text("LOC:city Where is Paris ?\nHUM:ind Who is he ?\n")
    assert read_labelled(forced, format="trec")[1].label_counts == {"hum": 1, "loc": 1}


def test_label_level_coarse_applies_to_any_format(tmp_path):
    path = tmp_path / "topics.csv"
    path.write_text("text,label\na,Sport:football\nb,Sport:tennis\nc,News:local\n")
    assert read_labelled(path)[1].label_counts == {"news:local": 1, "sport:football": 1,
                                                   "sport:tennis": 1}
    assert read_labelled(path, label_level="coarse")[1].label_counts == {"news": 1, "sport": 2}


def test_prefixed_columns_are_label_and_text(tmp_path):
    path = Path(tmp_path / "q.label")
    path.write_text("LOC:city Where is Paris ?\n")
    with pytest.raises(GptclsError, match="headerless 'COARSE:fine text' lines"):
        read_labelled(path, text_column="question")
