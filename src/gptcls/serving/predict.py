"""Label a whole file with a run directory: streamed in chunks, resumable, written atomically.

Rows are read a chunk at a time (CSV/TSV/JSON lines line by line, Parquet batch by batch), so
memory stays flat however big the file is. Each finished chunk becomes one part file inside
`OUTPUT.partial/` and `progress.json` there records how many input rows are done; `--resume`
skips exactly those rows. Only when every row is done are the parts joined into a temporary
file beside OUTPUT and renamed over it, so OUTPUT is never half written.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcls.data.sources import RowSource, open_source
from gptcls.distributed import Dist, from_env
from gptcls.errors import GptclsError

OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl",
                  ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
PROGRESS_FILE = "progress.json"


@dataclass
class PredictReport:
    output: str
    rows: int  # input rows written (including skipped-on-resume ones)
    predicted: int  # rows classified in this call
    empty: int  # rows with empty text in this call: written with empty predictions
    resumed_from: int
    seconds: float

    def line(self) -> str:
        rate = self.predicted / self.seconds if self.seconds > 0 else 0.0
        resumed = f", resumed after {self.resumed_from:,}" if self.resumed_from else ""
        empty = f", {self.empty:,} with empty text left unlabelled" if self.empty else ""
        return (f"wrote {self.rows:,} rows to {self.output} ({self.predicted:,} classified in "
                f"{self.seconds:.1f} s, {rate:,.0f} messages/s{resumed}{empty})")


def output_format(path: Path) -> str:
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise GptclsError(f"cannot tell the output format of {path}: use one of the extensions "
                          f"{', '.join(sorted(OUTPUT_FORMATS))}")
    return fmt


def predict_file(run: Any, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                 format: str | None = None, text_column: str | None = None,
                 encoding: str = "utf-8", chunk_size: int = 1024, resume: bool = False,
                 long_text: str = "truncate", chunk_reduce: str = "mean", device: str = "auto",
                 progress: bool = True,
                 on_chunk: Callable[[int], None] | None = None,
                 dist: Dist | None = None) -> PredictReport:
    """Classify every row of `input_path` into `output_path` (format from its extension).

    `run`: a run directory or a loaded `Classifier`. `on_chunk(rows_done)` is called after each
    chunk is safely on disk (tests use it to simulate an interruption). Under torchrun (or a
    `dist` with several processes) the chunks are shared out by rank (gptcls.serving.shard).
    """
    from gptcls.classifier.classifier import Classifier

    src_path, out = Path(input_path), Path(output_path)
    out_fmt = output_format(out)
    if chunk_size < 1:
        raise GptclsError(f"chunk size must be at least 1, got {chunk_size}")
    if src_path.resolve() == out.resolve():
        raise GptclsError("the output would overwrite the input; choose another output path")
    clf = run if isinstance(run, Classifier) else Classifier.load(run, device=device)
    dist = from_env(clf.device) if dist is None else dist
    source = open_source(src_path, format, text_column, encoding, chunk_size)
    try:
        layout = _Layout.build(source, clf.labels, clf.config.threshold, out_fmt)
        fingerprint = _fingerprint(src_path, run, source, layout, long_text)
        if dist.active:
            from gptcls.serving.shard import predict_sharded

            return predict_sharded(clf, source, layout, out, fingerprint, dist, resume,
                                   progress, long_text, chunk_reduce)
        state = _PartialState(out, fingerprint)
        done = state.start(resume)
        start = time.perf_counter()
        predicted, empty = _run_chunks(clf, source, layout, state, done, progress, on_chunk,
                                       long_text, chunk_reduce)
    finally:
        source.close()
    _assemble(state, layout, out)
    return PredictReport(str(out), state.rows_done, predicted, empty, done,
                         time.perf_counter() - start)


def _run_chunks(clf: Any, source: RowSource, layout: _Layout, state: _PartialState, done: int,
                progress: bool, on_chunk: Callable[[int], None] | None, long_text: str,
                chunk_reduce: str) -> tuple[int, int]:
    from tqdm import tqdm

    predicted = empty = 0
    # disable=None: silent when stderr is not a terminal; the rate reads as messages/s.
    with tqdm(total=source.total, initial=done, unit="msg", desc="predict",
              disable=None if progress else True) as bar:
        for rows in _skip_rows(source.chunks(), done):
            out_rows, n = classify_rows(clf, source, layout, rows, state.rows_done, long_text,
                                        chunk_reduce)
            state.add_part(layout, out_rows)
            predicted, empty = predicted + n, empty + len(rows) - n
            bar.update(len(rows))
            if on_chunk is not None:
                on_chunk(state.rows_done)
    return predicted, empty


def classify_rows(clf: Any, source: RowSource, layout: _Layout, rows: list[list[Any]],
                  first_row: int, long_text: str, chunk_reduce: str
                  ) -> tuple[list[list[Any]], int]:
    """(output rows, how many had text to classify) for one chunk starting at `first_row`."""
    texts = [_text_of(row[source.text_index], source, first_row + i)
             for i, row in enumerate(rows)]
    keep = [i for i, t in enumerate(texts) if t.strip()]
    probs = clf.predict_proba([texts[i] for i in keep], long_text, chunk_reduce) if keep else []
    labels = clf.labels_from_proba(probs) if keep else []
    results: list[tuple[str, list[float]] | None] = [None] * len(rows)
    for j, i in enumerate(keep):
        results[i] = (labels[j], [float(p) for p in probs[j]])
    return [layout.row(r, res) for r, res in zip(rows, results, strict=True)], len(keep)


def _skip_rows(chunks: Iterable[list[Any]], n: int) -> Iterator[list[Any]]:
    """Drop the first n rows (resume), whatever chunk size the interrupted run used."""
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:]
        n = 0


def _text_of(value: object, source: RowSource, row: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise GptclsError(f"{source.where(row)}: the text is {type(value).__name__}, not a "
                          "string; is --text-column the right column?")
    return value


# --------------------------------------------------------------------------- output layout


@dataclass
class _Layout:
    """Output columns: the input's (renamed on a clash) + label, prob_<label>..., threshold."""

    fmt: str
    input_columns: list[str]
    columns: list[str]
    threshold: float | None
    arrow_schema: Any = None  # Parquet output only
    inputs_as_text: bool = False  # Parquet output of CSV/JSON input: input columns as strings

    @classmethod
    def build(cls, source: RowSource, labels: list[str], threshold: float | None,
              fmt: str) -> _Layout:
        ours = ["label", *(f"prob_{lab}" for lab in labels), "threshold"]
        if len(set(ours)) != len(ours):
            raise GptclsError(f"labels {labels} give clashing prob_ column names")
        taken, renamed = set(ours), []
        for c in source.columns:
            # A true-label column called "label" must not be confused with the prediction.
            name = c
            while name in taken:
                name = f"input_{name}"
            taken.add(name)
            renamed.append(name)
        layout = cls(fmt, renamed, renamed + ours, threshold)
        if fmt == "parquet":
            layout.arrow_schema = _arrow_schema(source, renamed, ours)
            layout.inputs_as_text = source.arrow_schema is None
        return layout

    def row(self, values: list[Any], result: tuple[str, list[float]] | None) -> list[Any]:
        n_probs = len(self.columns) - len(self.input_columns) - 2
        label, probs = result if result is not None else ("", [None] * n_probs)
        if self.fmt in ("csv", "tsv"):
            return [*(_cell(v) for v in values), label,
                    *("" if p is None else format(p, ".7g") for p in probs),
                    "" if self.threshold is None else self.threshold]
        if self.inputs_as_text:
            values = [None if v is None else _cell(v) for v in values]
        return [*values, label, *probs, self.threshold]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _arrow_schema(source: RowSource, inputs: list[str], ours: list[str]) -> Any:
    import pyarrow as pa

    if source.arrow_schema is not None:  # Parquet in, Parquet out: keep the column types
        fields = [f.with_name(n) for f, n in zip(source.arrow_schema, inputs, strict=True)]
    else:  # CSV/JSON values: strings (non-string JSON values as their JSON text)
        fields = [pa.field(n, pa.string()) for n in inputs]
    fields += [pa.field("label", pa.string())]
    fields += [pa.field(n, pa.float64()) for n in ours[1:]]
    return pa.schema(fields)


# --------------------------------------------------------------------------- partial state


class _PartialState:
    """OUTPUT.partial/: numbered part files and progress.json (rows done, run fingerprint)."""

    def __init__(self, out: Path, fingerprint: dict[str, Any]):
        self.dir = out.with_name(out.name + ".partial")
        self.fingerprint = fingerprint
        self.rows_done = self.parts = 0

    def start(self, resume: bool) -> int:
        """Open the directory; a resumed run continues after its recorded rows."""
        saved = self.open_dir(resume)
        if saved is not None:
            self.rows_done, self.parts = int(saved["rows_done"]), int(saved["parts"])
            for stale in self.dir.glob("part-*"):  # written after the last progress update
                if int(stale.name.split("-")[1].split(".")[0]) >= self.parts:
                    stale.unlink()
        return self.rows_done

    def open_dir(self, resume: bool) -> dict[str, Any] | None:
        """The saved progress of the interrupted run being resumed, or None after creating a
        fresh directory. Used as is by torchrun's sharded predict (batch_shard.py)."""
        progress = self.dir / PROGRESS_FILE
        if self.dir.exists() and not resume:
            raise GptclsError(f"{self.dir} holds an interrupted run: pass --resume to continue "
                              "it, or delete it to start again")
        if resume and progress.is_file():
            saved = json.loads(progress.read_text())
            if saved.get("fingerprint") != self.fingerprint:
                raise GptclsError(self._mismatch(saved.get("fingerprint", {})))
            return saved
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self._save()
        return None

    def _mismatch(self, saved: dict[str, Any]) -> str:
        size, ours = saved.get("sharded_chunk_size"), self.fingerprint.get("sharded_chunk_size")
        if size is not None and ours is None:
            return (f"{self.dir} was started under torchrun: resume it under torchrun too "
                    f"(--chunk-size {size}), or delete it")
        if size is None and ours is not None:
            return (f"cannot resume {self.dir} under torchrun: a single process started it; "
                    "resume it without torchrun")
        if size != ours:
            return f"cannot resume: {self.dir} was cut into chunks of {size} rows; " \
                   f"pass --chunk-size {size}"
        return (f"cannot resume: {self.dir} was made from another input, run or set of "
                "options; delete it to start again")

    def part(self, i: int) -> Path:
        return self.dir / f"part-{i:06d}.data"

    def add_part(self, layout: _Layout, rows: list[list[Any]]) -> None:
        tmp = self.dir / ".part.tmp"
        _write_part(layout, rows, tmp)
        os.replace(tmp, self.part(self.parts))
        # Progress moves only after the part is in place: a crash in between leaves a stale
        # part that the next resume deletes, never a duplicated or missing row.
        self.parts += 1
        self.rows_done += len(rows)
        self._save()

    def _save(self) -> None:
        data = {"fingerprint": self.fingerprint, "rows_done": self.rows_done,
                "parts": self.parts}
        tmp = self.dir / ".progress.tmp"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, self.dir / PROGRESS_FILE)


def _fingerprint(src: Path, run: Any, source: RowSource, layout: _Layout,
                 long_text: str) -> dict[str, Any]:
    stat = src.stat()
    run_id = str(Path(run).resolve()) if isinstance(run, (str, os.PathLike)) else "<object>"
    return {"input": str(src.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "run": run_id, "text_column": source.columns[source.text_index],
            "columns": layout.columns, "format": layout.fmt, "long_text": long_text}


def _write_part(layout: _Layout, rows: list[list[Any]], path: Path) -> None:
    if layout.fmt in ("csv", "tsv"):
        with path.open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh, delimiter="\t" if layout.fmt == "tsv" else ",",
                       lineterminator="\n").writerows(rows)
    elif layout.fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                record = dict(zip(layout.columns, row, strict=True))
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(zip(*rows, strict=True))
        arrays = [pa.array(list(col), type=f.type)
                  for col, f in zip(columns, layout.arrow_schema, strict=True)]
        pq.write_table(pa.Table.from_arrays(arrays, schema=layout.arrow_schema), path)


def _assemble(state: _PartialState, layout: _Layout, out: Path) -> None:
    """Join the parts into a temporary file beside `out`, fsync, rename; drop the partial dir."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if layout.fmt == "parquet":
            _join_parquet(state, layout, tmp)
        else:
            with tmp.open("wb") as fh:
                if layout.fmt in ("csv", "tsv"):
                    header = _csv_line(layout.columns, "\t" if layout.fmt == "tsv" else ",")
                    fh.write(header.encode("utf-8"))
                for i in range(state.parts):
                    with state.part(i).open("rb") as part:
                        shutil.copyfileobj(part, fh)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    shutil.rmtree(state.dir, ignore_errors=True)


def _csv_line(values: list[str], delimiter: str) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _join_parquet(state: _PartialState, layout: _Layout, tmp: Path) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(tmp, layout.arrow_schema) as writer:
        for i in range(state.parts):  # one part in memory at a time
            writer.write_table(pq.read_table(state.part(i), schema=layout.arrow_schema))
