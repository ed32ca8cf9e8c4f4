"""`gptcls predict` under torchrun: the input's chunks shared out by rank, one output file.

Every process reads the input (reading is cheap beside the model) and classifies the chunks
whose number k has k % world == rank, each into `OUTPUT.partial/part-<k>.data` (written to a
temporary name, then renamed: a part that exists is complete). Rank 0 then joins the parts in
chunk order exactly as a single process does. A part's existence is the resume record, so
`--resume` works with any number of processes, as long as the chunk size is the same (it is in
the fingerprint).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gptcls.data.sources import RowSource
from gptcls.distributed import Dist, barrier
from gptcls.errors import GptclsError
from gptcls.serving.predict import (
    PredictReport,
    _assemble,
    _Layout,
    _PartialState,
    _write_part,
    classify_rows,
)


def predict_sharded(clf: Any, source: RowSource, layout: _Layout, out: Path,
                    fingerprint: dict[str, Any], d: Dist, resume: bool, progress: bool,
                    long_text: str, chunk_reduce: str) -> PredictReport:
    """This process's share of the chunks; rank 0 assembles. Every rank gets the report."""
    state = _PartialState(out, {**fingerprint, "sharded_chunk_size": source.chunk_size})
    _agree(d, lambda: state.open_dir(resume))  # rank 0 checks/creates it; all see errors
    begin = time.perf_counter()
    mine = shard_chunks(clf, source, layout, state, d, progress, long_text, chunk_reduce)
    totals = _sum_over_ranks(mine, d)
    state.parts, state.rows_done = mine["chunks"], totals["rows"]
    _agree(d, lambda: _assemble(state, layout, out))
    return PredictReport(str(out), totals["rows"], totals["predicted"], totals["empty"],
                         totals["resumed"], time.perf_counter() - begin)


def shard_chunks(clf: Any, source: RowSource, layout: _Layout, state: _PartialState, d: Dist,
                 progress: bool, long_text: str, chunk_reduce: str) -> dict[str, int]:
    """Classify chunk k where k % world == rank and its part is missing; counts as a dict."""
    from tqdm import tqdm

    n = {"chunks": 0, "rows": 0, "predicted": 0, "empty": 0, "resumed": 0}
    share = source.total // d.world if source.total is not None else None
    with tqdm(total=share, unit="msg", desc=f"predict (rank {d.rank} of {d.world})",
              disable=None if progress and d.main else True) as bar:
        for k, rows in enumerate(source.chunks()):
            first = n["rows"]
            n["chunks"], n["rows"] = k + 1, first + len(rows)
            if k % d.world != d.rank:
                continue
            part = state.part(k)
            if part.exists():  # finished before an interruption
                n["resumed"] += len(rows)
                continue
            out_rows, kept = classify_rows(clf, source, layout, rows, first, long_text,
                                           chunk_reduce)
            tmp = state.dir / f".part-{k:06d}.rank{d.rank}.tmp"
            _write_part(layout, out_rows, tmp)
            os.replace(tmp, part)
            n["predicted"] += kept
            n["empty"] += len(rows) - kept
            bar.update(len(rows))
    return n


def _sum_over_ranks(mine: dict[str, int], d: Dist) -> dict[str, int]:
    """Rows and chunks are counted by every rank alike; the rest is each rank's own work."""
    import torch.distributed as dist

    parts: list[dict[str, int] | None] = [None] * d.world
    dist.all_gather_object(parts, mine)
    own = ("predicted", "empty", "resumed")
    return {k: sum(p[k] for p in parts if p) if k in own else mine[k] for k in mine}


def _agree(d: Dist, step: Any) -> None:
    """Run `step` on rank 0, then let every rank raise the same error or go on together
    (a lone failing rank would leave the others waiting at the next collective)."""
    import torch.distributed as dist

    error = [None]
    if d.main:
        try:
            step()
        except GptclsError as exc:
            error = [str(exc)]
    dist.broadcast_object_list(error, src=0)
    barrier(d)
    if error[0] is not None:
        raise GptclsError(error[0])
