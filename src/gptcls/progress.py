"""Progress of a long pass: a tqdm bar on a terminal, a plain line every ~10% elsewhere.

Every pass that can take more than a few seconds (the frozen-trunk pass, each training epoch,
the final evaluation, file prediction) reports through `progress(...)`, so one switch
(`set_quiet`, for a `-q` flag) silences them all. When stderr is not a terminal (a log file,
CI) a bar would be noise, and silence hides a pass that runs for half an hour: there each
tenth of the work prints one line with done/total, the rate and the time left:

    trunk pass (train): 40% (20,480/51,200 tokens) 1,310 tokens/s, ETA 23s

A pass that ends within `MIN_SECONDS` prints nothing (tqdm's `delay` on a terminal), and so
does every pass when the "gptcls" logger is set above INFO (an application silencing gptcls).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

MIN_SECONDS = 3.0  # a pass shorter than this shows no progress at all
IDLE_SECONDS = 30.0  # with no known total, a plain line at most this often
LOADING = "loading backbone"  # the name of the weights-loading pass
_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress bar and line of this process."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def silenced() -> bool:
    """True under `set_quiet` (-q) or when an application set the "gptcls" logger itself
    above INFO: either way gptcls was asked to keep quiet. (The logger's effective level is not
    asked: with logging unconfigured that is the root's WARNING, and a plain script would lose
    its progress lines.)"""
    level = logging.getLogger("gptcls").level
    return _quiet or level > logging.INFO


def format_duration(seconds: float) -> str:
    """12s, 1m38s, 2h05m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


class Silent:
    """What a disabled or quiet pass reports to: nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **_: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LineProgress(Silent):
    """Plain lines at each 10% step (and a final 100% line), for a stream that is not a
    terminal. Steps crossed before `min_seconds` are not printed; the first update after it
    prints the step reached, so a short pass stays silent and a long one is never blind."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO,
                 min_seconds: float, clock: Callable[[], float] = time.monotonic,
                 step: float = 0.1):
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.min_seconds, self.clock, self.steps = min_seconds, clock, round(1 / step)
        self.start = self.last_line = clock()
        self.done, self.next_step, self.finished = 0, 1, False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        elapsed = now - self.start
        if self.finished or elapsed < self.min_seconds:
            return
        if not self.total:
            if now - self.last_line >= IDLE_SECONDS:
                self.last_line = now
                self._line(f"{self.done:,} {self.unit} {self._rate(elapsed)}")
            return
        if self.done >= self.total:
            self.finished = True
            self._line(f"100% ({self.done:,}/{self.total:,} {self.unit}) {self._rate(elapsed)}, "
                       f"{format_duration(elapsed)}")
            return
        reached = self.done * self.steps // self.total
        if reached >= self.next_step:
            self.next_step = reached + 1
            eta = elapsed / self.done * (self.total - self.done)
            self._line(f"{reached * 100 // self.steps}% ({self.done:,}/{self.total:,} "
                       f"{self.unit}) {self._rate(elapsed)}, ETA {format_duration(eta)}")

    def close(self) -> None:
        elapsed = self.clock() - self.start
        if not self.total and not self.finished and elapsed >= self.min_seconds:
            self.finished = True
            self._line(f"done, {self.done:,} {self.unit} {self._rate(elapsed)}, "
                       f"{format_duration(elapsed)}")

    def _rate(self, elapsed: float) -> str:
        return f"{format_rate(self.done / max(elapsed, 1e-9))} {self.unit}/s"

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.stream, flush=True)


def progress(total: int | None, desc: str, unit: str = "texts", *, enabled: bool = True,
             stream: TextIO | None = None, tty: bool | None = None,
             min_seconds: float | None = None,
             clock: Callable[[], float] = time.monotonic) -> Silent | Any:
    """A progress reporter for `total` units of work (None: unknown): `.update(n)`,
    `.set_postfix(...)`, `.close()`, or use it as a context manager. `unit` is plural
    ("texts", "steps"). A tqdm bar when `stream` (stderr) is a terminal, `LineProgress`
    otherwise, nothing when disabled (another rank, a caller's switch) or quiet."""
    stream = stream if stream is not None else sys.stderr
    wait = MIN_SECONDS if min_seconds is None else min_seconds
    if not enabled or silenced():
        return Silent()
    if tty is None:
        tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit.rstrip("s") or unit, file=stream,
                    delay=wait, leave=False, dynamic_ncols=True)
    return LineProgress(total, desc, unit, stream, wait, clock)
