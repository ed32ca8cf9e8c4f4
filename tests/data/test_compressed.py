"""Compressed data files read as what they hold; spreadsheets and zip archives are refused
with what to do; a truncated compressed file is one line naming it."""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zipfile
from pathlib import Path

import pytest
from helpers import SMS_PATH

from gptcls.cli.main import main
from gptcls.data.labelled import read_labelled
from gptcls.data.sources import open_source
from gptcls.errors import GptclsError
from gptcls.options import default_run_dir

COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def _streamed(path: Path) -> list[list]:
    source = open_source(path, None, None, "utf-8", 100)
    try:
        return [row for chunk in source.chunks() for row in chunk]
    finally:
        source.close()


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_a_compressed_csv_reads_as_the_csv_it_holds(tmp_path, suffix):
    raw = b"review,sentiment\n\"good, really\",pos\nbad,neg\n"
    plain = tmp_path / "d.csv"
    plain.write_bytes(raw)
    packed = tmp_path / f"d.csv{suffix}"
    packed.write_bytes(COMPRESSORS[suffix](raw))
    examples, report = read_labelled(packed)
    assert examples == read_labelled(plain)[0]
    assert (report.format, report.text_column, report.label_column) == ("csv", "review",
                                                                       "sentiment")
    assert _streamed(packed) == _streamed(plain) == [["good, really", "pos"], ["bad", "neg"]]


def test_the_real_sms_file_gzipped_without_an_extension_is_detected_by_its_content(tmp_path):
    packed = tmp_path / "SMSSpamCollection"  # no suffix: told by the magic bytes alone
    packed.write_bytes(gzip.compress(SMS_PATH.read_bytes()))
    examples, report = read_labelled(packed)
    assert report.format == "sms" and len(examples) == 5574
    assert examples == read_labelled(SMS_PATH)[0]


def test_a_truncated_compressed_file_is_one_line_naming_it(tmp_path):
    packed = tmp_path / "sms.tsv.gz"
    packed.write_bytes(gzip.compress(SMS_PATH.read_bytes())[:100_000])  # about half of it
    with pytest.raises(GptclsError, match=r"sms.tsv.gz is a truncated or corrupt gzip file"):
        read_labelled(packed)


def test_compressed_input_through_the_cli(tiny_run, tmp_path, capsys):
    test = tiny_run / "test.csv"
    packed = tmp_path / "test.csv.xz"
    packed.write_bytes(lzma.compress(test.read_bytes()))
    assert main(["predict", str(tiny_run), str(test), str(tmp_path / "plain.csv")]) == 0
    assert main(["predict", str(tiny_run), str(packed), str(tmp_path / "packed.csv")]) == 0
    assert (tmp_path / "packed.csv").read_text() == (tmp_path / "plain.csv").read_text()
    assert main(["evaluate", str(tiny_run), str(packed), "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out


def test_a_compressed_training_file_names_its_run_directory_without_the_suffixes():
    assert default_run_dir({"data": "data/tickets.csv.gz"}) == Path("runs/tickets")
    assert default_run_dir({"train": "x/train.jsonl.xz"}) == Path("runs/train")


def _xlsx(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return path


def _xls(path: Path) -> Path:
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64))  # OLE2: Excel 97-2003
    return path


@pytest.mark.parametrize("make", [
    lambda d: _xlsx(d / "tickets.xlsx"),
    lambda d: _xlsx(d / "tickets.csv"),  # an Excel file saved under a .csv name
    lambda d: _xls(d / "export.dat"),  # told by its first bytes alone
])
def test_a_spreadsheet_is_refused_with_how_to_convert_it(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(GptclsError, match="is a spreadsheet, which gptcls does not read: save "
                       r"it as CSV \(UTF-8\) or Parquet"):
        read_labelled(path)


def test_a_zip_archive_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data.csv", "text,label\na,b\n")
    with pytest.raises(GptclsError, match="data.zip is a zip archive: extract the data file"):
        read_labelled(path)


def test_a_compressed_parquet_file_is_refused(tmp_path):
    path = tmp_path / "d.parquet.gz"
    path.write_bytes(gzip.compress(b"PAR1" + bytes(100)))
    with pytest.raises(GptclsError, match="compressed Parquet file: decompress it"):
        read_labelled(path)


def test_tab_separated_text_under_a_spreadsheet_name_still_reads(tmp_path):
    path = tmp_path / "export.xls"  # what some web apps call an Excel export
    path.write_bytes(b"text\tlabel\nhello there\tham\nwin cash now\tspam\n")
    examples, report = read_labelled(path, format="tsv")
    assert [e.label for e in examples] == ["ham", "spam"]


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open),
                                            (".xz", lzma.open)])
def test_predict_writes_compressed_text_output(tiny_run, tmp_path, suffix, opener):
    test = tiny_run / "test.csv"
    assert main(["predict", str(tiny_run), str(test), str(tmp_path / "plain.jsonl")]) == 0
    packed = tmp_path / f"out.jsonl{suffix}"
    assert main(["predict", str(tiny_run), str(test), str(packed)]) == 0
    with opener(packed, "rb") as fh:
        assert fh.read() == (tmp_path / "plain.jsonl").read_bytes()


@pytest.mark.parametrize("name, message", [
    ("out.parquet.gz", "Parquet compresses its own columns; write out.parquet"),
    ("out.csv.zip", r"the text ones may end in \.gz, \.bz2, \.xz too"),
])
def test_predict_refuses_outputs_it_cannot_write(tiny_run, tmp_path, capsys, name, message):
    assert main(["predict", str(tiny_run), str(tiny_run / "test.csv"), str(tmp_path / name)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / name).exists()
