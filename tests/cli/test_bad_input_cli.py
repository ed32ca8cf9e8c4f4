"""The bad-input matrix through `gptcls train`: one line on stderr, exit 2, nothing written."""

import pytest

from gptcls.cli.main import main


def _parquet_with_int_text(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [1, 2, 3], "label": ["a", "b", "a"]}), path)


CASES = {
    "empty.csv": (b"", "is empty"),
    "header.csv": (b"text,label\n", "no data rows"),
    "nocol.csv": (b"id,body,label\n1,hi,a\n2,yo,b\n", "no column 'message'"),
    "oneclass.csv": (b"text,label\nhi,a\nyo,a\n", "only one class"),
    "blank.csv": (b"text,label\n ,a\n,b\n", "no usable rows"),
    "model.bin": (b"\x00\x01\x02" * 100, "binary file"),
    "latin.csv": ("text,label\ncaf\u00e9,a\nthé,b\n".encode("latin-1"), "--encoding latin-1"),
    "bad.jsonl": (b'{"text": "hi", "label": "a"}\nnot json\n', "bad.jsonl:2: not valid JSON"),
    "ints.parquet": (None, "not strings"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_training_file(name, tmp_path, capsys):
    content, message = CASES[name]
    path = tmp_path / name
    if content is None:
        _parquet_with_int_text(path)
    else:
        path.write_bytes(content)
    out = tmp_path / "run"
    argv = ["train", "--data", str(path), "--model", "gpt2-tiny", "--weights", "random",
            "--out", str(out)]
    if name == "nocol.csv":
        argv += ["--text-column", "message"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    # Info lines about what was read may come first; the error itself is one line, last.
    assert err.splitlines()[-1].startswith("gptcls: error:") and "Traceback" not in err
    assert message in err.splitlines()[-1], err
    assert not out.exists()  # nothing written half-way


def test_many_distinct_labels_warn(tmp_path, capsys):
    path = tmp_path / "swapped.csv"
    rows = "".join(f"{'spam' if i % 2 else 'ham'},message number {i}\n" for i in range(150))
    path.write_text("label,text\n" + rows)
    # Columns swapped by the user: the "labels" are all distinct, which gets a warning.
    main(["train", "--data", str(path), "--text-column", "label", "--label-column", "text",
          "--model", "gpt2-tiny", "--weights", "random", "--out", str(tmp_path / "run"),
          "--epochs", "0"])
    assert "is this the text column?" in capsys.readouterr().err
