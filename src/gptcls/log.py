"""How gptcls talks: through Python `logging` (the "gptcls" logger and its children), never
`print`, so an application embedding gptcls decides what it shows.

The library adds nothing but a NullHandler (gptcls/__init__.py). An application silences gptcls,
its progress lines included, with `logging.getLogger("gptcls").setLevel(logging.WARNING)`, or
shows its log with `logging.basicConfig(level=logging.INFO)`. The command line installs
`StderrHandler` for the length of one command (`cli_logging`): the plain lines users have always
seen on stderr, INFO by default, WARNING with -q (no progress either), DEBUG with -v.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from gptcls import progress

LOGGER_NAME = "gptcls"
WARNING_PREFIXES = ("warning:", "NOTE:")  # a log line starting so is logged at WARNING


def line_logger(name: str) -> Callable[[str], None]:
    """A `log(msg)` callback (what the data readers and the training loop take) that logs on
    the logger `name`: "warning: ..." lines at WARNING (they survive -q), the rest at INFO."""
    logger = logging.getLogger(name)

    def log(msg: str) -> None:
        level = logging.WARNING if msg.startswith(WARNING_PREFIXES) else logging.INFO
        logger.log(level, msg)

    return log


class StderrHandler(logging.Handler):
    """Each record as one plain line on the *current* sys.stderr (a test's capture, a
    redirection made after start-up), through tqdm.write on a terminal so a bar in progress
    is not torn."""

    def __init__(self, level: int = logging.NOTSET):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            stream = sys.stderr
            if getattr(stream, "isatty", lambda: False)():
                from tqdm import tqdm

                tqdm.write(msg, file=stream)
            else:
                print(msg, file=stream, flush=True)
        except Exception:  # noqa: BLE001 - logging's contract: a failing handler never raises
            self.handleError(record)


def verbosity_level(quiet: bool, verbose: bool) -> int:
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


@contextmanager
def cli_logging(level: int) -> Iterator[None]:
    """For one command: gptcls' records at `level` and above go to stderr (and not on to the
    root logger, so nothing shows twice); above INFO the progress lines are silenced too.
    Everything is put back afterwards (a test, or a program calling `main` twice)."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = StderrHandler()
    saved = logger.level, logger.propagate, progress.is_quiet()
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    progress.set_quiet(saved[2] or level > logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        progress.set_quiet(saved[2])


def plural(n: int, word: str) -> str:
    """"1 block", "26 blocks", "1,045 texts": a count in a message."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")
