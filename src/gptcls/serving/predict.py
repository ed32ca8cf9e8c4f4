"""Label a whole file with a run directory: streamed in chunks, resumable, written atomically.

Rows are read a chunk at a time (CSV/TSV/JSON lines line by line, Parquet batch by batch), so
memory stays flat however big the file is. One process is the world-of-one case of torchrun's
sharded run: every process reads the input (reading is cheap beside the model) and classifies
the chunks k with k % world == rank whose part is not yet in OUTPUT.partial/ (partial.py); the
first process then joins the parts in chunk order into OUTPUT. So `--resume` works the same
with any number of processes, as long as --chunk-size is the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptcls.data.sources import RowSource, open_source
from gptcls.distributed import Dist, barrier, from_env
from gptcls.errors import GptclsError
from gptcls.progress import progress as progress_bar
from gptcls.serving.output import OutputLayout, output_format
from gptcls.serving.partial import PartialDir, fingerprint


@dataclass
class PredictReport:
    output: str
    rows: int  # input rows written (including skipped-on-resume ones)
    predicted: int  # rows classified in this call
    empty: int  # rows with empty text in this call: written with empty predictions
    resumed_from: int  # rows already done by the interrupted run(s)
    seconds: float

    def line(self) -> str:
        rate = self.predicted / self.seconds if self.seconds > 0 else 0.0
        resumed = f", resumed after {self.resumed_from:,}" if self.resumed_from else ""
        empty = f", {self.empty:,} with empty text left unlabelled" if self.empty else ""
        return (f"wrote {self.rows:,} rows to {self.output} ({self.predicted:,} classified in "
                f"{self.seconds:.1f} s, {rate:,.0f} messages/s{resumed}{empty})")


def predict_file(run: Any, input_path: str | os.PathLike, output_path: str | os.PathLike, *,
                 format: str | None = None, text_column: str | None = None,
                 encoding: str = "utf-8", no_header: bool = False, chunk_size: int = 1024,
                 resume: bool = False,
                 long_text: str | None = None, chunk_reduce: str = "mean", device: str = "auto",
                 progress: bool = True,
                 on_chunk: Callable[[int], None] | None = None,
                 dist: Dist | None = None) -> PredictReport:
    """Classify every row of `input_path` into `output_path` (format from its extension).

    `run`: a run directory or a loaded `Classifier`. `on_chunk(rows_read)` is called after each
    chunk this process classified is safely on disk (tests use it to simulate an
    interruption). Under torchrun (or a `dist` with several processes) the chunks are shared
    out by rank; every process gets the report.
    """
    from gptcls.classifier.classifier import Classifier

    src_path, out = Path(input_path), Path(output_path)
    out_fmt = output_format(out)
    if chunk_size < 1:
        raise GptclsError(f"chunk size must be at least 1, got {chunk_size}")
    if src_path.resolve() == out.resolve():
        raise GptclsError("the output would overwrite the input; choose another output path")
    clf = run if isinstance(run, Classifier) else Classifier.load(run, device=device)
    long_text = long_text or clf.config.long_text  # None: as the run trained
    d = from_env(clf.device) if dist is None else dist
    # The run's --text-column (a list: the columns it joined) unless another is given.
    source = open_source(src_path, format, text_column, encoding, chunk_size, no_header,
                         clf.config.text_column, clf.config.text_separator)
    try:
        layout = OutputLayout.build(source, clf.labels, clf.config.threshold, out_fmt,
                                    "labels" if clf.config.multi_label else "label")
        partial = PartialDir(out, fingerprint(src_path, run, source, layout, long_text,
                                              chunk_reduce))
        _agree(d, lambda: partial.open(resume))  # one process checks or creates it
        begin = time.perf_counter()
        mine = predict_chunks(clf, source, layout, partial, d, progress, long_text,
                              chunk_reduce, on_chunk)
    finally:
        source.close()
    n = _sum_over_ranks(mine, d)
    _agree(d, lambda: partial.join(layout, n["chunks"]))
    return PredictReport(str(out), n["rows"], n["predicted"], n["empty"], n["resumed"],
                         time.perf_counter() - begin)


def predict_chunks(clf: Any, source: RowSource, layout: OutputLayout, partial: PartialDir,
                   d: Dist, progress: bool, long_text: str, chunk_reduce: str,
                   on_chunk: Callable[[int], None] | None = None) -> dict[str, int]:
    """Classify chunk k where k % world == rank and its part is missing. Counts: chunks and
    rows of the whole input; predicted, empty and resumed rows of this process's chunks."""
    n = {"chunks": 0, "rows": 0, "predicted": 0, "empty": 0, "resumed": 0}
    share = -(-source.total // d.world) if source.total is not None else None
    desc = f"predict (rank {d.rank} of {d.world})" if d.active else "predict"
    with progress_bar(share, desc, "messages", enabled=progress and d.main) as bar:
        for k, rows in enumerate(source.chunks()):
            first = n["rows"]
            n["chunks"], n["rows"] = k + 1, first + len(rows)
            if k % d.world != d.rank:
                continue
            bar.update(len(rows))
            if partial.part(k).exists():  # finished before an interruption
                n["resumed"] += len(rows)
                continue
            out_rows, kept = classify_rows(clf, source, layout, rows, first, long_text,
                                           chunk_reduce)
            partial.write_part(k, layout, out_rows, f"rank{d.rank}")
            n["predicted"] += kept
            n["empty"] += len(rows) - kept
            if on_chunk is not None:
                on_chunk(n["rows"])
    return n


def classify_rows(clf: Any, source: RowSource, layout: OutputLayout, rows: list[list[Any]],
                  first_row: int, long_text: str, chunk_reduce: str
                  ) -> tuple[list[list[Any]], int]:
    """(output rows, how many had text to classify) for one chunk starting at `first_row`."""
    texts = [source.text(row, first_row + i) for i, row in enumerate(rows)]
    keep = [i for i, t in enumerate(texts) if t.strip()]
    probs = clf.predict_proba([texts[i] for i in keep], long_text, chunk_reduce) if keep else []
    labels = clf.labels_from_proba(probs) if keep else []
    results: list[tuple[str, list[float]] | None] = [None] * len(rows)
    for j, i in enumerate(keep):
        label = labels[j]
        if isinstance(label, list):  # multi-label: the set, as the run's files write it
            label = clf.config.label_separator.join(label)
        results[i] = (label, [float(p) for p in probs[j]])
    return [layout.row(r, res) for r, res in zip(rows, results, strict=True)], len(keep)


def _sum_over_ranks(mine: dict[str, int], d: Dist) -> dict[str, int]:
    """Chunks and rows are counted by every rank alike; the rest is each rank's own work."""
    if not d.active:
        return mine
    import torch.distributed as dist

    parts: list[dict[str, int] | None] = [None] * d.world
    dist.all_gather_object(parts, mine)
    own = ("predicted", "empty", "resumed")
    return {k: sum(p[k] for p in parts if p) if k in own else mine[k] for k in mine}


def _agree(d: Dist, step: Callable[[], object]) -> None:
    """Run `step` on rank 0, then let every rank raise the same error or go on together
    (a lone failing rank would leave the others waiting at the next collective)."""
    if not d.active:
        step()
        return
    import torch.distributed as dist

    error: list[str | None] = [None]
    if d.main:
        try:
            step()
        except GptclsError as exc:
            error = [str(exc)]
    dist.broadcast_object_list(error, src=0)
    barrier(d)
    if error[0] is not None:
        raise GptclsError(error[0])
