"""`gptcls predict`: correctness against predict_proba, every format, resume, streaming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gptcls.classifier.classifier import Classifier
from gptcls.cli.main import main
from gptcls.data.sources import open_source
from gptcls.distributed import Dist
from gptcls.errors import GptclsError
from gptcls.serving import partial as partial_module
from gptcls.serving.output import OutputLayout
from gptcls.serving.partial import PartialDir, fingerprint
from gptcls.serving.predict import predict_chunks, predict_file


@pytest.fixture(scope="module")
def clf(tiny_run) -> Classifier:
    return Classifier.load(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def rows(tiny_run) -> list[dict[str, str]]:
    """The tiny run's real SMS test split (text, label), plus one row with empty text."""
    with (tiny_run / "test.csv").open(newline="") as fh:
        data = list(csv.DictReader(fh))
    return data[:3] + [{"text": "  ", "label": "ham"}] + data[3:120]


def _write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_output(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))


def _check_predictions(out_rows: list[dict], rows: list[dict], clf: Classifier) -> None:
    assert len(out_rows) == len(rows)
    keep = [i for i, r in enumerate(rows) if r["text"].strip()]
    probs = clf.predict_proba([rows[i]["text"] for i in keep])
    labels = clf.labels_from_proba(probs)
    for j, i in enumerate(keep):
        got = out_rows[i]
        assert got["text"] == rows[i]["text"]
        assert got["input_label"] == rows[i]["label"]  # the true label, renamed, kept
        assert got["label"] == labels[j]
        for k, lab in enumerate(clf.labels):
            assert float(got[f"prob_{lab}"]) == pytest.approx(probs[j, k], abs=1e-6)
        assert got["threshold"] in ("", None)  # the tiny run has no threshold
    empty = out_rows[3]
    assert empty["label"] == "" and empty["prob_spam"] in ("", None)


def test_cli_predict_csv_matches_predict_proba(tiny_run, rows, clf, tmp_path, capsys):
    src = _write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    assert main(["predict", str(tiny_run), str(src), str(out), "--chunk-size", "50"]) == 0
    assert f"wrote {len(rows)} rows" in capsys.readouterr().out
    _check_predictions(_read_output(out), rows, clf)
    assert not (tmp_path / "out.csv.partial").exists()


@pytest.mark.parametrize("in_fmt,out_ext", [("jsonl", ".parquet"), ("parquet", ".jsonl"),
                                            ("tsv", ".tsv"), ("parquet", ".parquet")])
def test_every_input_and_output_format(in_fmt, out_ext, rows, clf, tmp_path):
    src = tmp_path / f"in.{in_fmt}"
    if in_fmt == "jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif in_fmt == "tsv":
        _write_csv(src, rows, delimiter="\t")
    else:
        pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=40)
    out = tmp_path / f"out{out_ext}"
    report = predict_file(clf, src, out, chunk_size=32, progress=False)
    assert report.rows == len(rows) and report.empty == 1
    _check_predictions(_read_output(out), rows, clf)


def test_headerless_sms_file_and_options(sms_path, clf, tmp_path):
    head = "\n".join(sms_path.read_text(encoding="utf-8").split("\n")[:40]) + "\n"
    src = tmp_path / "sms.txt"
    src.write_text(head, encoding="latin-1", errors="replace")
    out = tmp_path / "sms.jsonl"
    predict_file(clf, src, out, format="sms", encoding="latin-1", progress=False)
    got = _read_output(out)
    assert len(got) == 40 and set(got[0]) == {"input_label", "text", "label", "prob_ham",
                                              "prob_spam", "threshold"}


def test_resume_after_interruption_gives_the_same_file(rows, clf, tmp_path, monkeypatch):
    src = _write_csv(tmp_path / "in.csv", rows)
    reference = tmp_path / "reference.csv"
    predict_file(clf, src, reference, chunk_size=16, progress=False)

    out = tmp_path / "out.csv"

    def interrupt(rows_done: int) -> None:
        if rows_done >= 48:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, src, out, chunk_size=16, progress=False, on_chunk=interrupt)
    assert not out.exists(), "OUTPUT must never hold a partial result"
    assert _parts(tmp_path / "out.csv.partial") == [0, 1, 2]  # the chunks done: 48 rows
    with pytest.raises(GptclsError, match="--resume"):
        predict_file(clf, src, out, chunk_size=16, progress=False)

    # A crash in the middle of writing a part leaves a cut-off temporary file, never a part.
    real_write = partial_module.write_rows
    calls = {"n": 0}

    def crash_once(layout, rows, path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            path.write_text("half a ro")
            raise OSError("disk went away")
        real_write(layout, rows, path)

    monkeypatch.setattr(partial_module, "write_rows", crash_once)
    with pytest.raises(OSError):
        predict_file(clf, src, out, chunk_size=16, resume=True, progress=False)
    monkeypatch.setattr(partial_module, "write_rows", real_write)
    assert _parts(tmp_path / "out.csv.partial") == [0, 1, 2, 3]  # 3 + 1 done
    assert len(list((tmp_path / "out.csv.partial").glob(".*.tmp"))) == 1  # the cut-off one

    report = predict_file(clf, src, out, chunk_size=16, resume=True, progress=False)
    assert report.resumed_from == 64 and report.rows == len(rows)
    # Byte for byte (same chunks, so the same batches): no duplicated, no missing rows.
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / "out.csv.partial").exists()


def _parts(partial_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1].split(".")[0]) for p in partial_dir.glob("part-*"))


def _interrupt_after_one_chunk(clf: Classifier, src: Path, out: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, src, out, chunk_size=16, progress=False,
                     on_chunk=lambda n: (_ for _ in ()).throw(KeyboardInterrupt))


def test_resume_refuses_a_changed_input(rows, clf, tmp_path):
    src = _write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.jsonl"
    _interrupt_after_one_chunk(clf, src, out)
    _write_csv(src, rows[:50])
    with pytest.raises(GptclsError, match="another input"):
        predict_file(clf, src, out, resume=True, progress=False)


def test_csv_reader_streams_instead_of_loading_the_file(tmp_path):
    src = tmp_path / "big.csv"
    with src.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text"])
        for i in range(60_000):
            writer.writerow([i, f"message number {i}, with a comma and \"quotes\" inside"])
    size = src.stat().st_size
    assert size > 3_000_000
    source = open_source(src, None, None, "utf-8", 100)
    chunks = source.chunks()
    first = next(chunks)
    assert len(first) == 100 and first[0] == ["0", first[0][1]]
    # Only the first buffered block(s) have been read, not the whole file.
    assert source.position() < 100_000, (source.position(), size)
    assert sum(len(c) for c in chunks) == 60_000 - 100
    source.close()


def test_parquet_reader_goes_batch_by_batch(tmp_path):
    src = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(10_000)],
                             "n": np.arange(10_000)}), src, row_group_size=2_500)
    source = open_source(src, None, None, "utf-8", 300)
    assert source.total == 10_000
    sizes = [len(c) for c in source.chunks()]
    assert sizes[0] == 300 and sum(sizes) == 10_000 and max(sizes) <= 300


@pytest.mark.parametrize("args,message", [
    (["IN", "out.xlsx"], "output format"),
    (["IN", "IN"], "overwrite the input"),
    (["missing.csv", "out.csv"], "not found"),
    (["IN", "out.csv", "--text-column", "nope"], "no column 'nope'"),
    (["IN", "out.csv", "--chunk-size", "0"], "chunk size"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tiny_run, tmp_path, capsys,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("text\nhello\n")
    args = [str(tmp_path / "in.csv") if a == "IN" else a for a in args]
    assert main(["predict", str(tiny_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gptcls: error:") and message in err and "\n" not in err


def test_non_string_text_is_one_clear_error(clf, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n{"text": 42}\n')
    with pytest.raises(GptclsError, match="data row 2: the text is int"):
        predict_file(clf, src, tmp_path / "out.csv", progress=False)
    assert not (tmp_path / "out.csv").exists()


# --- torchrun: chunks shared out by rank (the collectives are tested in test_distributed.py) -


class _Interrupting:
    """A Classifier that raises KeyboardInterrupt on its n-th call (a killed process)."""

    def __init__(self, clf: Classifier, calls: int):
        self.clf, self.left = clf, calls

    def __getattr__(self, name: str):
        return getattr(self.clf, name)

    def predict_proba(self, *args, **kwargs):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return self.clf.predict_proba(*args, **kwargs)


def _job(src: Path, out: Path, clf: Classifier, chunk_size: int):
    """What predict_file sets up: the source, the output layout and the partial directory."""
    source = open_source(src, None, None, "utf-8", chunk_size)
    layout = OutputLayout.build(source, clf.labels, None, "csv")
    fp = fingerprint(src, clf, source, layout, "truncate", "mean")
    return source, layout, PartialDir(out, fp)


def _rank(rank: int, world: int, model, src: Path, out: Path, clf: Classifier,
          resume: bool = False) -> dict[str, int]:
    """One in-process rank of `world`; rank 0 checks or creates the directory first, as
    predict_file does before any process starts (the collectives are tested under torchrun)."""
    source, layout, partial = _job(src, out, clf, 16)
    if rank == 0:
        partial.open(resume)
    try:
        return predict_chunks(model, source, layout, partial, Dist(rank, world), False,
                              "truncate", "mean")
    finally:
        source.close()


def _join(src: Path, out: Path, clf: Classifier, n_chunks: int) -> None:
    source, layout, partial = _job(src, out, clf, 16)
    source.close()
    partial.join(layout, n_chunks)


def test_ranks_share_the_chunks_and_resume_to_the_single_process_file(rows, clf, tmp_path):
    src = _write_csv(tmp_path / "in.csv", rows)  # 121 rows: 7 chunks of 16, then 9
    reference = tmp_path / "reference.csv"
    predict_file(clf, src, reference, chunk_size=16, progress=False)
    out = tmp_path / "out.csv"

    first = _rank(0, 2, clf, src, out, clf)
    assert first == {"chunks": 8, "rows": 121, "predicted": 63, "empty": 1, "resumed": 0}
    with pytest.raises(KeyboardInterrupt):  # rank 1 dies after two of its four chunks
        _rank(1, 2, _Interrupting(clf, 2), src, out, clf)
    assert _parts(tmp_path / "out.csv.partial") == [0, 1, 2, 3, 4, 6]
    # Resumed (rank 0 checks the directory again): only chunks 5 and 7 are classified.
    again = [_rank(0, 2, _Interrupting(clf, 0), src, out, clf, resume=True),
             _rank(1, 2, clf, src, out, clf)]
    assert [a["predicted"] + a["empty"] for a in again] == [0, 25]  # chunk 7: the last 9
    assert [a["resumed"] for a in again] == [64, 32]
    _join(src, out, clf, 8)
    assert out.read_bytes() == reference.read_bytes()  # same chunks, same rows, same order
    assert not (tmp_path / "out.csv.partial").exists()


def test_a_partial_started_by_one_process_is_finished_by_two_ranks(rows, clf, tmp_path):
    """One chunk/partial layout: the number of processes may change between runs."""
    src = _write_csv(tmp_path / "in.csv", rows)
    reference = tmp_path / "reference.csv"
    predict_file(clf, src, reference, chunk_size=16, progress=False)
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        predict_file(clf, src, out, chunk_size=16, progress=False,
                     on_chunk=lambda n: (_ for _ in ()).throw(KeyboardInterrupt) if n >= 48
                     else None)
    assert _parts(tmp_path / "out.csv.partial") == [0, 1, 2]
    again = [_rank(0, 2, clf, src, out, clf, resume=True), _rank(1, 2, clf, src, out, clf)]
    assert [a["resumed"] for a in again] == [32, 16]  # chunks 0, 2 and 1
    assert sum(a["predicted"] + a["empty"] for a in again) == len(rows) - 48
    _join(src, out, clf, 8)
    assert out.read_bytes() == reference.read_bytes()


def test_a_partial_started_by_two_ranks_is_finished_by_one_process(rows, clf, tmp_path):
    src = _write_csv(tmp_path / "in.csv", rows)
    reference = tmp_path / "reference.csv"
    predict_file(clf, src, reference, chunk_size=16, progress=False)
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):  # rank 0 dies before its first chunk is done
        _rank(0, 2, _Interrupting(clf, 0), src, out, clf)
    assert _rank(1, 2, clf, src, out, clf)["predicted"] == 16 * 3 + 9
    assert _parts(tmp_path / "out.csv.partial") == [1, 3, 5, 7]
    with pytest.raises(GptclsError, match="pass --chunk-size 16"):  # other chunks: refused
        predict_file(clf, src, out, chunk_size=32, resume=True, progress=False)
    report = predict_file(clf, src, out, chunk_size=16, resume=True, progress=False)
    assert (report.rows, report.resumed_from, report.predicted + report.empty) == (121, 57, 64)
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / "out.csv.partial").exists()


def test_join_refuses_a_missing_part(rows, clf, tmp_path):
    src = _write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    source, layout, partial = _job(src, out, clf, 16)
    source.close()
    partial.open(resume=False)
    with pytest.raises(GptclsError, match="lacks 8 part"):
        partial.join(layout, 8)
    assert not out.exists() and (tmp_path / "out.csv.partial").is_dir()


def test_output_gets_the_usual_file_mode(rows, clf, tmp_path):
    import os

    src = _write_csv(tmp_path / "in.csv", rows[:20])
    mask = os.umask(0o022)
    os.umask(mask)
    for ext in (".csv", ".parquet"):
        out = tmp_path / f"out{ext}"
        predict_file(clf, src, out, chunk_size=8, progress=False)
        assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
