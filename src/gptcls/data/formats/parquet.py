"""Parquet, record batch by record batch (needs pyarrow, imported only when used)."""

from __future__ import annotations

from pathlib import Path

from gptcls.data.formats.table import Rows, Table
from gptcls.errors import GptclsError

BATCH_ROWS = 1024


def parquet_table(path: Path, batch_rows: int = BATCH_ROWS) -> Table:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise GptclsError("reading Parquet needs pyarrow: pip install pyarrow") from None
    errors = (pa.ArrowException, OSError, ValueError)
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        total = pf.metadata.num_rows
    except errors as exc:
        raise GptclsError(f"{path} is not a readable Parquet file ({_one_line(exc)})") from None
    columns = list(schema.names)

    def read(select: list[int] | None) -> Rows:
        names = columns if select is None else [columns[i] for i in select]
        n = 0
        try:
            # One record batch at a time: a row group is never read whole into Python objects.
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(dict.fromkeys(names))):
                for record in batch.to_pylist():
                    n += 1
                    yield n, [record.get(c) for c in names]
        except errors as exc:
            raise GptclsError(f"{path} is not a readable Parquet file ({_one_line(exc)})"
                              ) from None

    closers = [pf.close] if hasattr(pf, "close") else []
    return Table(path, "parquet", columns, read, lambda n: f"{path}: row {n}", empty=total == 0,
                 total=total, arrow_schema=schema, closers=closers)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
