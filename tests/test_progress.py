"""gptcls.progress: plain lines every ~10% when stderr is not a terminal, silence when quick."""

import io
import re

import pytest

from gptcls import progress as prog


class Clock:
    """A fake clock: each reading advances `step` seconds."""

    def __init__(self, step: float):
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def run(total: int, updates: list[int], min_seconds: float, step: float, **kw) -> list[str]:
    out = io.StringIO()
    with prog.progress(total, "trunk pass", "texts", stream=out, tty=False,
                       min_seconds=min_seconds, clock=Clock(step), **kw) as bar:
        for n in updates:
            bar.update(n)
    return out.getvalue().splitlines()


def test_lines_at_each_tenth_then_a_final_100_percent_line():
    lines = run(2000, [50] * 40, min_seconds=0, step=1.0)
    percents = [int(re.search(r": (\d+)% ", line).group(1)) for line in lines]
    assert percents == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    # the clock reads 1 s at the start and 1 s more at each update: 800 texts in 16 s
    assert lines[3] == "trunk pass: 40% (800/2,000 texts) 50.0 texts/s, ETA 24s"
    assert "(2,000/2,000 texts)" in lines[-1] and "ETA" not in lines[-1]


def test_rate_and_eta_follow_the_clock():
    lines = run(100_000, [10_000] * 10, min_seconds=0, step=45.0)  # 10,000 texts per 45 s
    assert "(40,000/100,000 texts)" in lines[3]
    rate = float(re.search(r"\) ([\d.,]+) texts/s", lines[3]).group(1))
    assert rate == pytest.approx(10_000 / 45, abs=0.5)  # shown as a whole number from 100/s
    assert lines[3].endswith("ETA 4m30s")  # 60,000 texts at 222.2 texts/s
    assert lines[-1].endswith("222 texts/s, 7m30s")


def test_a_pass_shorter_than_the_threshold_prints_nothing():
    assert run(2000, [50] * 40, min_seconds=100, step=1.0) == []


def test_steps_crossed_before_the_threshold_print_once_it_is_reached():
    lines = run(100, [5] * 20, min_seconds=7.5, step=1.0)
    # 1 s per update: the 8th (40%) is the first past 7.5 s; 10-30% were crossed in silence
    assert lines[0].startswith("trunk pass: 40% (40/100 texts)")
    assert [line.split("%")[0] for line in lines] == [
        f"trunk pass: {p}" for p in (40, 50, 60, 70, 80, 90, 100)]


def test_big_updates_print_one_line_per_update_not_per_step_crossed():
    lines = run(10, [3, 3, 4], min_seconds=0, step=1.0)
    assert [line.split("%")[0].split()[-1] for line in lines] == ["30", "60", "100"]


def test_quiet_switch_and_disabled_passes_print_nothing():
    prog.set_quiet(True)
    try:
        assert prog.is_quiet() and run(100, [10] * 10, min_seconds=0, step=1.0) == []
    finally:
        prog.set_quiet(False)
    assert run(100, [10] * 10, min_seconds=0, step=1.0, enabled=False) == []
    assert len(run(100, [10] * 10, min_seconds=0, step=1.0)) == 10


def test_unknown_total_prints_a_closing_line_with_the_count():
    lines = run(None, [7] * 3, min_seconds=0, step=1.0)
    assert lines == [lines[-1]] and lines[-1].startswith("trunk pass: done, 21 texts ")


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    bar = prog.progress(10, "x", stream=io.StringIO(), tty=True, min_seconds=0)
    assert isinstance(bar, tqdm)
    bar.close()


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (12, "12s"), (98, "1m38s"),
                                           (3600 * 2 + 300, "2h05m")])
def test_durations(seconds, text):
    assert prog.format_duration(seconds) == text
