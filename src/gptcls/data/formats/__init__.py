"""One streaming reader per file format, all yielding rows of a `Table` (see table.py)."""
