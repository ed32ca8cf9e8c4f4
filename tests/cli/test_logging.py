"""-q/-v on the command line, and Python logging for applications that embed gptcls: the
library logs (never prints) and adds no handler but a NullHandler; the CLI shows the log."""

import csv
import logging
from pathlib import Path

import pytest

from gptcls import progress
from gptcls.cli import main as cli_main
from gptcls.cli.main import build_parser, main
from gptcls.log import StderrHandler, line_logger


def write_data(path: Path, n: int = 60, rare: bool = False) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([f"message number {i} about {'prizes' if i % 2 else 'lunch'}",
                        "spam" if i % 2 else "ham"])
        if rare:
            w.writerow(["a text with a label seen once", "odd"])
    return path


@pytest.mark.parametrize("argv, quiet, verbose", [
    (["classify", "run", "hi"], False, False),
    (["-q", "classify", "run", "hi"], True, False),
    (["classify", "run", "hi", "-q"], True, False),
    (["classify", "--quiet", "run", "hi"], True, False),
    (["-v", "evaluate", "run", "--data", "d.csv"], False, True),
    (["evaluate", "run", "--data", "d.csv", "--verbose"], False, True),
    (["-q", "train", "--dry-run"], True, False),  # before the command: kept by the subparser
])
def test_quiet_and_verbose_go_before_or_after_the_command(argv, quiet, verbose):
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.verbose) == (quiet, verbose)


def test_quiet_and_verbose_together_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-q", "classify", "run", "hi", "-v"])
    assert exc.value.code == 2 and "-q/--quiet and -v/--verbose" in capsys.readouterr().err


def _said(monkeypatch, capsys, argv: list[str]) -> tuple[str, str, bool]:
    """What a command that logs at every level prints (stdout, stderr), and whether progress
    was silenced while it ran."""
    seen = {}

    def command(args) -> None:
        log = logging.getLogger("gptcls.somewhere")
        log.debug("a debugging detail")
        log.info("an info line")
        log.warning("warning: a warning")
        seen["quiet"] = progress.is_quiet()
        print("the result")

    monkeypatch.setitem(cli_main.COMMANDS, "merge", command)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    return out, err, seen["quiet"]


def test_levels_of_the_command_line(monkeypatch, capsys):
    out, err, quiet = _said(monkeypatch, capsys, ["merge", "run"])
    assert out == "the result\n"
    assert err == "an info line\nwarning: a warning\n" and not quiet  # plain lines, stderr
    out, err, quiet = _said(monkeypatch, capsys, ["merge", "run", "-q"])
    assert out == "the result\n" and err == "warning: a warning\n" and quiet
    out, err, quiet = _said(monkeypatch, capsys, ["-v", "merge", "run"])
    assert err == "a debugging detail\nan info line\nwarning: a warning\n" and not quiet


def test_the_command_line_puts_logging_back(monkeypatch, capsys):
    logger = logging.getLogger("gptcls")
    before = (logger.level, logger.propagate, list(logger.handlers), progress.is_quiet())
    _said(monkeypatch, capsys, ["-q", "merge", "run"])
    assert (logger.level, logger.propagate, list(logger.handlers),
            progress.is_quiet()) == before
    assert not any(isinstance(h, StderrHandler) for h in logger.handlers)
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)


def test_warning_lines_of_a_log_callback_are_warnings(caplog):
    caplog.set_level(logging.DEBUG, logger="gptcls")
    log = line_logger("gptcls.test")
    log("read 10 rows")
    log("warning: 1 row dropped")
    log("NOTE: random weights")
    assert [(r.name, r.levelno) for r in caplog.records] == [
        ("gptcls.test", logging.INFO), ("gptcls.test", logging.WARNING),
        ("gptcls.test", logging.WARNING)]


def test_quiet_dry_run_keeps_the_plan_and_the_warnings(tmp_path, monkeypatch, capsys):
    data = write_data(tmp_path / "d.csv", n=200, rare=True)  # 1 row of 201: a rare label
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dry-run", "--data", str(data), "--model", "gpt2-tiny"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "run directory:" in out
    info = [line for line in err.splitlines() if not line.startswith("warning:")]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert info and warnings and 'label "odd"' in warnings[0]  # the rare label, named
    assert main([*argv, "-q"]) == 0
    quiet_out, quiet_err = capsys.readouterr()
    assert quiet_out == out  # the plan is output, not log
    assert quiet_err.splitlines() == warnings


def _tiny_train(tmp_path: Path):
    import gptcls

    return gptcls.train(data=write_data(tmp_path / "d.csv"), out=tmp_path / "run",
                        model="gpt2-tiny", weights="random", epochs=1, batch_size=16,
                        balance="none")


@pytest.fixture
def gptcls_at_warning():
    """An application that silenced gptcls: logging.getLogger("gptcls").setLevel(WARNING)."""
    logger = logging.getLogger("gptcls")
    saved = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(saved)


def test_the_python_api_logs_and_prints_nothing(gptcls_at_warning, tmp_path, caplog, capsys,
                                                monkeypatch):
    # Not a line on stdout or stderr, progress included (however slow the machine is today).
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)  # any progress line would show
    clf = _tiny_train(tmp_path)
    assert clf.labels == ["ham", "spam"]
    assert capsys.readouterr() == ("", "")
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]


def test_the_python_api_log_reaches_the_applications_handlers(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO, logger="gptcls")
    _tiny_train(tmp_path)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("gptcls.")]
    assert any(m.startswith("backbone: ") for m in messages)
    assert any(m.startswith("Training accuracy: ") for m in messages)  # the loop's lines
    out, err = capsys.readouterr()
    assert out == "" and "backbone: " not in err and "Training accuracy" not in err


@pytest.mark.parametrize("quiet", [False, True])
def test_the_random_weights_note_is_log_that_quiet_silences(quiet, tmp_path, capsys):
    argv = ["train", "--data", str(write_data(tmp_path / "d.csv")), "--model", "gpt2-tiny",
            "--weights", "random", "--epochs", "1", "--batch-size", "16", "--balance", "none",
            "--out", str(tmp_path / "run"), "--classify"]
    assert main([*argv, *(["-q"] if quiet else [])]) == 0
    out, err = capsys.readouterr()
    assert "randomly initialised" not in out and "Test accuracy" in out  # log, not output
    assert ("note: --weights random: the backbone is randomly initialised" in err) is not quiet


def test_the_multi_label_thresholds_line_is_log(tmp_path, caplog, capsys):
    import gptcls

    data = tmp_path / "tags.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "labels"])
        w.writerows([f"item {i} about {'goals' if i % 2 else 'votes'}",
                     "sports" if i % 2 else "politics|news"] for i in range(60))
    caplog.set_level(logging.INFO, logger="gptcls")
    clf = gptcls.train(data=data, out=tmp_path / "run", model="gpt2-tiny", weights="random",
                       epochs=1, batch_size=16, multi_label=True)
    assert clf.config.multi_label
    assert [r.levelno for r in caplog.records if r.name == "gptcls.training.multilabel"
            and r.getMessage().startswith("per-label thresholds chosen")] == [logging.INFO]
    out, err = capsys.readouterr()  # no print(): nothing on stdout, the line not on stderr
    assert out == "" and "per-label thresholds" not in err
