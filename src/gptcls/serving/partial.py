"""OUTPUT.partial/: the state of an unfinished `gptcls predict`, the same for any number of
processes.

The input is cut into chunks of --chunk-size rows; chunk k becomes `part-<k>.data`, written
under a temporary name and renamed, so a part that exists is complete whichever process wrote
it. The parts present are the whole resume record: `--resume` skips them, with one process or
many, as long as the chunks are the same (the chunk size is in the fingerprint, beside the
input, the run and the options). Only when every chunk is done are the parts joined into a
temporary file beside OUTPUT and renamed over it, so OUTPUT is never half written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from gptcls.data.sources import RowSource
from gptcls.errors import GptclsError
from gptcls.files import atomic_write
from gptcls.serving.output import OutputLayout, compressor, join_parts, write_rows

FINGERPRINT_FILE = "fingerprint.json"


def fingerprint(src: Path, run: Any, source: RowSource, layout: OutputLayout, long_text: str,
                chunk_reduce: str) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption."""
    stat = src.stat()
    run_id = str(Path(run).resolve()) if isinstance(run, (str, os.PathLike)) else "<object>"
    return {"input": str(src.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "run": run_id, "text_column": source.columns[source.text_index],
            "columns": layout.columns, "format": layout.fmt, "long_text": long_text,
            "chunk_reduce": chunk_reduce, "chunk_size": source.chunk_size}


class PartialDir:
    """OUTPUT.partial/: fingerprint.json and one part file per finished chunk."""

    def __init__(self, out: Path, fingerprint: dict[str, Any]):
        self.out = out
        self.dir = out.with_name(out.name + ".partial")
        self.fingerprint = fingerprint

    def open(self, resume: bool) -> None:
        """Check the directory of the interrupted run being resumed, or create a fresh one.
        One process does this before any writes a part."""
        saved_path = self.dir / FINGERPRINT_FILE
        if self.dir.exists() and not resume:
            raise GptclsError(f"{self.dir} holds an interrupted run: pass --resume to continue "
                              "it, or delete it to start again")
        if resume and saved_path.is_file():
            saved = json.loads(saved_path.read_text())
            if saved != self.fingerprint:
                raise GptclsError(self._mismatch(saved))
            for tmp in self.dir.glob(".*.tmp"):  # a part cut off mid-write
                tmp.unlink()
            return
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        tmp = self.dir / ".fingerprint.tmp"
        tmp.write_text(json.dumps(self.fingerprint, indent=1) + "\n")
        os.replace(tmp, saved_path)

    def _mismatch(self, saved: dict[str, Any]) -> str:
        size = saved.get("chunk_size")
        if size != self.fingerprint["chunk_size"] and \
                {**saved, "chunk_size": None} == {**self.fingerprint, "chunk_size": None}:
            return f"cannot resume: {self.dir} was cut into chunks of {size} rows; " \
                   f"pass --chunk-size {size}"
        return (f"cannot resume: {self.dir} was made from another input, run or set of "
                "options; delete it to start again")

    def part(self, k: int) -> Path:
        return self.dir / f"part-{k:06d}.data"

    def write_part(self, k: int, layout: OutputLayout, rows: list[list[Any]], tag: str) -> None:
        """Chunk k's output rows; `tag` keeps concurrent writers' temporary names apart."""
        tmp = self.dir / f".part-{k:06d}.{tag}.tmp"
        write_rows(layout, rows, tmp)
        os.replace(tmp, self.part(k))

    def join(self, layout: OutputLayout, n_chunks: int) -> None:
        """Parts 0..n_chunks-1 into a temporary file beside OUTPUT, renamed over it; then the
        directory goes."""
        parts = [self.part(k) for k in range(n_chunks)]
        missing = [p.name for p in parts if not p.is_file()]
        if missing:  # a process died without saying so: never write a file with a hole
            raise GptclsError(f"{self.dir} lacks {len(missing)} part(s) ({missing[0]}, ...); "
                              "run again with --resume")
        atomic_write(self.out, lambda fh: join_parts(layout, parts, fh, compressor(self.out)))
        shutil.rmtree(self.dir, ignore_errors=True)
